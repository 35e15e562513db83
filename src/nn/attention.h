/* attention.h — scaled dot-product attention for the decoders and the vision towers, forward
 * and backward, tiled so that memory is O(tile) instead of O(L²) per head
 * (ALGORITHMS.md §6.3; fixtures README §1 "eager attention", §13.5 fully masked rows).
 *
 * Layout: tokens in batch order, t = b·L + i. Query head h of token t starts at
 * q[t·ldq + h·d]; key/value head g at k[t·ldk + g·d] / v[t·ldv + g·d]; output head h at
 * out[t·ldo + h·d] (the [B, L, H·d] layout an o_proj consumes). GQA: query head h reads
 * key/value head h / (H/KV) (transformers' repeat_kv).
 *
 * Masking — what eager attention with the reference's additive 4-D mask computes: query i may
 * attend key j iff
 *     (not causal or j ≤ i)  and  key_mask[b][j]  and  (no segments or seg[b][i] == seg[b][j]).
 * So with right padding the padded keys are masked while padded queries still attend the real
 * prefix. A query with no allowed key at all (left padding) gets output 0 — the
 * flash-attention rule the Qwen2-VL goldens use (fixtures README §13.5); right padding never
 * produces such rows.
 *
 * Arithmetic: s = (q·k) · scale (the matmul, then the scale, in f32), softmax in f32 computed
 * flash-style per query block: a running max and sum over key blocks, the output rescaled as
 * the max grows, divided by the sum at the end. Tiles: 64 queries × 128 keys; the products are
 * oneDNN matmuls run on the calling thread. Work items are (batch, head, query block) in the
 * forward and the dQ pass, (batch, KV head, key block) in the dK/dV pass; each item is computed
 * by one thread in a fixed order, so results do not depend on the thread count.
 * Memory: per thread one [64×128] score tile, one [64×128] probability tile and a [64×d] (or
 * [128×d]) accumulator; lse is [B, H, L]. */
#ifndef QV_NN_ATTENTION_H
#define QV_NN_ATTENTION_H

#include "../core/common.h"

typedef struct qv_attn_desc {
    int64_t B, L;              /* batch, sequence length (queries = keys) */
    int64_t H, KV, d;          /* query heads, key/value heads (H % KV == 0), head dimension */
    int64_t ldq, ldk, ldv, ldo; /* row strides (elements) of q, k, v and out (and of their gradients) */
    bool causal;
    const uint8_t *key_mask;   /* [B, L], nonzero = key may be attended; NULL = every key */
    const int32_t *segment;    /* [B, L] block-diagonal segment ids; NULL = one segment */
    float scale;               /* multiplies q·k; usually 1/sqrt(d) */
} qv_attn_desc;

/* out = softmax(mask(q·kᵀ·scale)) · v. lse (may be NULL) receives [B, H, L] the log-sum-exp of
 * every query row's masked scores (−inf for a row with no allowed key), which the backward
 * needs. */
qv_status qv_attention(const qv_attn_desc *a, float *out, const float *q, const float *k, const float *v, float *lse);

/* Gradients of the attention inputs given dout, the forward's inputs, its output and lse
 * (activations only). dq/dk/dv are overwritten (strides ldq/ldk/ldv); rows of keys nobody may
 * attend are exactly 0. */
qv_status qv_attention_backward(const qv_attn_desc *a, float *dq, float *dk, float *dv, const float *dout,
                                const float *q, const float *k, const float *v, const float *out, const float *lse);

/* Plain reference in double (full score rows, no tiles), for tests. lse may be NULL. */
void qv_attention_ref(const qv_attn_desc *a, float *out, const float *q, const float *k, const float *v, float *lse);
void qv_attention_backward_ref(const qv_attn_desc *a, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v);

#endif
