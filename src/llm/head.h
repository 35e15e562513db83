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
/* dnormed [n, C] += gradient of Σ_r scale[r] · nll[r] (lse from qv_llm_head_nll). */
qv_status qv_llm_head_backward(const qv_llm *m, const float *normed, int64_t n, const int64_t *targets,
                               const float *lse, const float *scale, float *dnormed);

#endif
