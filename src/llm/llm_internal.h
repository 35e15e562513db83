/* llm_internal.h — pieces of the decoder layer shared by the forward runner (layer.c), the
 * gradient pass (backward.c) and the head (head.c). Not for other modules. */
#ifndef QV_LLM_INTERNAL_H
#define QV_LLM_INTERNAL_H

#include "../nn/attention.h"
#include "llm.h"

/* Rows per chunk of the token-chunked MLP (bounds its scratch to MLP_CHUNK·(2I + C) floats). */
#define QV_LLM_MLP_CHUNK 512

/* y [T, N] (+)= x [T, K] · W[lin]ᵀ (+ bias); BF16 mode rounds x to BF16 first. flags: QV_MM_ACCUMULATE. */
qv_status qv_llm_lin_apply(const qv_llm *m, const qv_llm_weights *w, qv_llm_lin lin, int64_t T, const float *x,
                           float *y, unsigned flags);
/* dx [T, in] (+)= dy [T, out] · W[lin] (the activation gradient of a linear). */
qv_status qv_llm_lin_backward(const qv_llm *m, const qv_llm_weights *w, qv_llm_lin lin, int64_t T, const float *dy,
                              float *dx, unsigned flags);
/* Generic y [M, N] (+)= x [M, K] · Wᵀ for a weight in the compute dtype (W [N, K] row-major);
 * used for the LM head. */
qv_status qv_llm_matmul_nk(const qv_llm *m, int64_t M, int64_t N, int64_t K, const float *x, const void *w,
                           float *y, unsigned flags);

/* q [T, H·d], k/v [T, KV·d] from normed rows, after RoPE (and the FP8 KV-cache fake
 * quantization when w->fp8 asks for it). qkv_tmp [T, (H+2KV)·d] is needed for
 * InternLM2's packed wqkv (may be NULL otherwise). */
qv_status qv_llm_qkv(const qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, const float *n1, float *q,
                     float *k, float *v, float *qkv_tmp);
/* The attention description of a context (causal, key-padding mask, GQA). */
void qv_llm_attn_desc(const qv_llm *m, const qv_llm_ctx *ctx, qv_attn_desc *a);

#endif
