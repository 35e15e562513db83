/* forward.h — the full decoder forward on a batch: embeddings (or given inputs_embeds) → every
 * layer → final norm → LM head on the loss rows → per-row NLL and the mean loss, with optional
 * streaming of intermediates (fixtures README §6, §10; spec CLI.md `qvlm forward`).
 *
 * Layer-major: the hidden states of the whole batch [B·L, C] stay in F32 and each layer is
 * loaded once, run on all samples, and released. Peak memory ≈ B·L·C·4 bytes (hidden states)
 * + one layer's weights (F32 mode: its F32 copy) + the layer scratch of llm.h on B·L tokens +
 * the LM-head tiles (4096·C + 256·4096 floats) + sample 0's kept logits (n0·V floats).
 * [B, L, V] logits and L×L attention matrices are never formed. */
#ifndef QV_LLM_FORWARD_H
#define QV_LLM_FORWARD_H

#include "../core/progress.h"
#include "batch.h"

/* Streaming of intermediates. Names: "llm.inputs_embeds", "llm.layers.{i}.out" (decoder-layer
 * outputs), "llm.norm.out" (final norm of every position), each [B·L, C]; "logits" [B·L, V]
 * (every position, computed in row chunks only when wanted). put() receives rows
 * [row0, row0 + nrows) of the tensor, possibly in several calls. */
typedef struct qv_llm_dump {
    void *ctx;
    bool (*want)(void *ctx, const char *name);
    qv_status (*put)(void *ctx, const char *name, int64_t row0, int64_t nrows, const float *rows);
} qv_llm_dump;

typedef struct qv_llm_result {
    double loss;        /* mean NLL over the loss rows (NaN when there are none) */
    int64_t n_rows;     /* M */
    float *nll;         /* [M] */
    int64_t *index;     /* [M, 2] (b, t) */
    int64_t n_rows0;    /* loss rows of sample 0 */
    float *logits0;     /* [n_rows0, V] */
    int64_t *index0;    /* [n_rows0, 2] */
} qv_llm_result;

enum {
    QV_LLM_FWD_NO_LOGITS0 = 1 /* skip sample 0's loss-row logits (n0·V floats; perplexity runs) */
};

/* dump and prog may be NULL; flags: QV_LLM_FWD_*. The batch is checked against the model first. */
qv_status qv_llm_forward(qv_llm *m, const qv_llm_batch *b, const qv_llm_dump *dump, qv_progress *prog,
                         unsigned flags, qv_llm_result *res);
void qv_llm_result_free(qv_llm_result *r);

/* Bytes the forward of a [B, L] batch needs at its peak (the estimate behind --max-memory):
 * hidden states, one layer's weights in the compute dtype, the layer scratch, the head tiles,
 * n0 rows of kept logits and, with norm_dump, the final-norm copy. */
uint64_t qv_llm_forward_bytes(const qv_llm *m, int64_t B, int64_t L, int64_t n0, bool norm_dump);

/* Layer-0 input of a batch: inputs_embeds when present, else the token embeddings; [B·L, C]. */
qv_status qv_llm_batch_embeds(const qv_llm *m, const qv_llm_batch *b, float *out);

#endif
