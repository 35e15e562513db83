/* batch.h — a text or multimodal batch for the decoder, read from a safetensors file with the
 * goldens' keys (fixtures README §5, §10; spec CLI.md `qvlm forward --batch`).
 *
 * Keys (all [B, L] unless stated; integer or BOOL dtypes are accepted for ids and masks):
 *   input_ids        token ids (optional when inputs_embeds is given)
 *   labels           next-token targets, −100 = none (optional: then input_ids with −100 where
 *                    attention_mask is 0, as for the qwen2-tiny text golden)
 *   attention_mask   1 = real token (optional: all real)
 *   vision_mask, caption_mask   (optional; MBQ's gradient statistics need both)
 *   position_ids     [B, L], or [3, B, L] M-RoPE streams (optional: 0..L−1 on every row, which
 *                    is what MBQ's wrappers pass; ALGORITHMS.md §8.1, §8.4)
 *   inputs_embeds    F32 [B, L, C] (optional; else from --inputs-embeds or the token embedding)
 * Loss rows: every (b, t) with labels[b, t+1] ≠ −100, in row-major order (README §1). */
#ifndef QV_LLM_BATCH_H
#define QV_LLM_BATCH_H

#include "llm.h"

typedef struct qv_llm_batch {
    char *path;                 /* the file, for errors */
    int64_t B, L;
    int64_t *input_ids;         /* [B, L] or NULL */
    int64_t *labels;            /* [B, L] */
    uint8_t *attention_mask;    /* [B, L] */
    uint8_t *vision_mask;       /* [B, L] or NULL */
    uint8_t *caption_mask;      /* [B, L] or NULL */
    int64_t *position_ids;      /* [B, L] or NULL */
    int64_t *mrope_position_ids; /* [3, B, L] or NULL */
    float *inputs_embeds;       /* [B, L, C] or NULL */
    int64_t C;                  /* width of inputs_embeds (0 when absent) */
} qv_llm_batch;

qv_status qv_llm_batch_load(const char *path, qv_llm_batch *b);
/* Replaces inputs_embeds by tensor `key` of file `path` (F32/BF16/F16 [B, L, C]). */
qv_status qv_llm_batch_load_embeds(qv_llm_batch *b, const char *path, const char *key);
/* A batch of B rows of L ids (no padding; labels = ids) — for perplexity windows. */
qv_status qv_llm_batch_from_ids(qv_llm_batch *b, const int64_t *ids, int64_t B, int64_t L, const char *what);
/* Checks the batch against the model: embeddings width, L ≤ max_position_embeddings, ids and
 * labels inside the vocabulary. Errors name the batch file. */
qv_status qv_llm_batch_check(const qv_llm_batch *b, const qv_llm *m);
void qv_llm_batch_free(qv_llm_batch *b);
/* A copy of samples [b0, b0 + nb) of src (every per-sample array; inputs_embeds when present). */
qv_status qv_llm_batch_slice(const qv_llm_batch *src, int64_t b0, int64_t nb, qv_llm_batch *dst);

/* Loss rows of the batch: n (b, t) pairs in row-major order into idx [n, 2] (caller frees). */
qv_status qv_llm_batch_loss_rows(const qv_llm_batch *b, int64_t **idx, int64_t *n);

#endif
