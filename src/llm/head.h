/* head.h — the LM head on selected rows: logits, log-sum-exp, next-token NLL and its gradient,
 * streamed over vocabulary chunks so that [rows, V] logits are never held (V is 150k on the
 * real models). Inputs are rows after the final norm. Fixtures README §1 (loss rows, nll).
 *
 * nll[r] = logsumexp(z_r) − z_r[target_r], z_r = W_head · normed_r (f32 matmul; the
 * log-sum-exp is formed online over chunks of 4096 vocabulary rows with a double sum).
 * In F32 mode each chunk of a BF16 head is widened into a 4096·C buffer when it is used. */
#ifndef QV_LLM_HEAD_H
#define QV_LLM_HEAD_H

#include "llm.h"

/* For n rows: lse[r] (may be NULL) and nll[r] (may be NULL; needs targets, each in [0, V));
 * keep (may be NULL) marks rows whose full logits are copied, in order, into logits [n_keep, V]. */
qv_status qv_llm_head_nll(const qv_llm *m, const float *normed, int64_t n, const int64_t *targets, float *lse,
                          float *nll, const uint8_t *keep, float *logits);
/* Next-token statistics of several models on the same n rows (the quality evaluation, spec CLI.md
 * `qvlm eval`): rows[0] are the reference model's final-norm outputs [n, C] (the full-precision
 * model), rows[1..nm] those of the models compared with it, each [n, C]. For model k and row r,
 * stats[k·n + r] gets, from FP32 logits z (reference a, model b), accumulated in double:
 *   nll    = logsumexp(b) − b[target_r]                          (needs targets in [0, V))
 *   kl     = KL(softmax(a) ‖ softmax(b)) = Σ_v p_v·(a_v − b_v) − lse(a) + lse(b), clamped at 0;
 *            exactly 0 when b equals a bit for bit (the reference's own row: 0)
 *   argmax = the first index of the largest logit.
 * One pass over the vocabulary: every head chunk is multiplied with all models' rows, the
 * reference's shift and Σ p·(a − b) are rescaled online like the log-sum-exp. Rows are
 * independent (parallel), each row's sums run in vocabulary order: thread-count independent. */
typedef struct qv_llm_head_stat {
    double nll, kl;
    int64_t argmax;
} qv_llm_head_stat;
qv_status qv_llm_head_compare(const qv_llm *m, const float *const *rows, int nm, int64_t n, const int64_t *targets,
                              qv_llm_head_stat *stats);

/* dnormed [n, C] += gradient of Σ_r scale[r] · nll[r] (lse from qv_llm_head_nll). */
qv_status qv_llm_head_backward(const qv_llm *m, const float *normed, int64_t n, const int64_t *targets,
                               const float *lse, const float *scale, float *dnormed);

#endif
