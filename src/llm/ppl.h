/* ppl.h — perplexity of the decoder over a token stream in non-overlapping windows (spec CLI.md
 * `qvlm eval --task ppl`), the evaluation AWQ/GPTQ report:
 *     windows w = 0 .. ⌊n / seqlen⌋ − 1 of seqlen tokens (the tail is dropped),
 *     loss_w = mean NLL of the window's seqlen − 1 next-token predictions,
 *     ppl = exp(mean_w loss_w)          (= exp(Σ_w loss_w·seqlen / (n_windows·seqlen)))
 * Text inputs: a .jsonl file → the "text" field of every non-empty line, joined with "\n\n"
 * (wikitext-style); any other file → its whole content; tokenized once with the tokenizer's
 * default special tokens (InternLM2 prepends <s>). A .safetensors file holds pre-tokenized ids
 * (tensor input_ids, any integer dtype, read row-major as one stream).
 *
 * The tokenizer is reached through a narrow function-pointer interface so that this module
 * does not depend on the tokenizer's implementation. */
#ifndef QV_LLM_PPL_H
#define QV_LLM_PPL_H

#include "../core/progress.h"
#include "llm.h"

typedef struct qv_text_encoder {
    void *ctx;
    /* Appends the ids (int32_t) of text[0..len) to ids (qv_vec of int32_t), special tokens as
     * the tokenizer adds them by default. */
    qv_status (*encode)(void *ctx, const char *text, size_t len, qv_vec *ids);
} qv_text_encoder;

/* The text of a data file (see above); caller frees *text with qv_free. */
qv_status qv_ppl_read_text(const char *path, char **text, size_t *len);
/* Token ids of a data file: pre-tokenized .safetensors, else text through enc (NULL enc on a
 * text file is QV_ERR_UNSUPPORTED). Caller frees *ids. */
qv_status qv_ppl_load_ids(const char *path, const qv_text_encoder *enc, int64_t **ids, int64_t *n);

typedef struct qv_ppl_result {
    double ppl;
    double mean_nll;    /* mean over windows of loss_w */
    int64_t n_windows;
    int64_t n_tokens;   /* tokens in the stream (the dropped tail included) */
} qv_ppl_result;

/* `what` names the token source in errors; windows go through the forward `batch` at a time
 * (1 keeps memory lowest); prog steps once per window. */
qv_status qv_llm_ppl(qv_llm *m, const int64_t *ids, int64_t n, int64_t seqlen, int64_t batch, const char *what,
                     qv_progress *prog, qv_ppl_result *res);

#endif
