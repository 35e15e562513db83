/* rope.h — rotary position embedding in the rotate_half layout of Hugging Face models
 * (ALGORITHMS.md §6.3; MODELS.md §1.6 for M-RoPE; fixtures README §13.1).
 *
 * Frequencies, as torch computes them in f32:
 *     inv_freq[j] = 1 / θ'^(2j/dim)          j < dim/2, powf in f32, θ' = θ unless scaled
 *     angle       = float(pos) · inv_freq[j]  (f32 product)
 *     cos/sin     = f32 cos/sin of the f32 angle (duplicated to dim in the reference: emb =
 *                   cat(freqs, freqs); tables here keep the dim/2 distinct values)
 * Applying to one head x[dim] (x1 = x[:dim/2], x2 = x[dim/2:]):
 *     y1 = x1·cos − x2·sin,   y2 = x2·cos + x1·sin
 * The backward is the same rotation with −sin.
 *
 * Scaling rules:
 *   - LINEAR: positions divided by the factor (in f32) before the product (InternLM2's
 *     LinearScaling, older transformers' Llama);
 *   - DYNAMIC_NTK: InternLM2's DynamicNTKScaling. Only when the sequence length exceeds
 *     max_positions, θ' = θ · (factor·seq_len/max_positions − (factor−1))^(dim/(dim−2)) (double),
 *     otherwise plain θ. seq_len is the batch's (padded) length: the reference sizes its cos/sin
 *     cache by the key length.
 *   - M-RoPE (Qwen2-VL): three position streams (temporal, height, width); frequency j takes the
 *     stream s with j in section s (mrope_section, sum = dim/2). Equal streams = 1-D RoPE.
 *
 * Tables are [n, dim/2] floats, one row per token; the vision tower's 2-D rotary builds its
 * own tables and uses qv_rope_apply as well. */
#ifndef QV_NN_ROPE_H
#define QV_NN_ROPE_H

#include "../core/common.h"

typedef enum qv_rope_scaling {
    QV_ROPE_SCALING_NONE = 0,
    QV_ROPE_SCALING_LINEAR,
    QV_ROPE_SCALING_DYNAMIC_NTK
} qv_rope_scaling;

typedef struct qv_rope_params {
    int64_t dim;            /* rotary dimensions = head_dim, even */
    double theta;           /* rope_theta (base) */
    qv_rope_scaling scaling;
    double factor;          /* LINEAR / DYNAMIC_NTK factor */
    int64_t max_positions;  /* DYNAMIC_NTK threshold (max_position_embeddings) */
    int mrope_section[3];   /* all zero: 1-D positions; else sum must be dim/2 */
} qv_rope_params;

/* inv_freq[dim/2] for a batch of padded length seq_len. */
void qv_rope_inv_freq(const qv_rope_params *p, int64_t seq_len, float *inv_freq);

/* cos/sin tables [n, dim/2] for n tokens. 1-D: pos[n] (NULL = 0..n−1). M-RoPE: pos3[s][n] for
 * the three streams (any NULL stream falls back to pos). Fails on an M-RoPE section that does
 * not add up to dim/2 or a negative position. */
qv_status qv_rope_tables(const qv_rope_params *p, int64_t seq_len, int64_t n, const int64_t *pos,
                         const int64_t *const pos3[3], float *cos_t, float *sin_t);

/* Rotates x in place: n tokens × heads heads of dim values; token t's head h starts at
 * x[t·ld + h·dim]; token t uses row t of the tables. */
void qv_rope_apply(float *x, int64_t n, int64_t heads, int64_t dim, int64_t ld, const float *cos_t,
                   const float *sin_t);
/* Backward (the transposed rotation), in place on the gradient. */
void qv_rope_apply_backward(float *dx, int64_t n, int64_t heads, int64_t dim, int64_t ld, const float *cos_t,
                            const float *sin_t);

#endif
