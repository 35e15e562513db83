/* vit_block.h — the pre-norm transformer encoder block shared by the vision towers (InternViT,
 * the Qwen2-VL / Qwen2.5-VL ViT, SigLIP): one table of weight slots, a loader that maps a tower's
 * tensor names onto the slots, and the block forward on T tokens. Private to src/vision.
 *
 * A block computes, on hidden states x [T, D] (fixtures README §2, §13.1, §15.1; MODELS.md §1.4,
 * §1.10, §2.3, §3.1):
 *     a = O( attention( rope(q), rope(k), v ) ),  q,k,v = split(QKV(n1)) or Q(n1), K(n1), V(n1),
 *         n1 = norm1(x), optional RMS qk-normalisation of the whole D-wide q and k (InternViT-6B)
 *     x = x + ls1 ⊙ a                                 (ls1 = 1 when the tower has no layer scale)
 *     m = FC2( act( FC1(n2) ) )   or   DOWN( act(GATE(n2)) ⊙ UP(n2) )  (gated, Qwen2.5-VL)
 *     x = x + ls2 ⊙ m,    n2 = norm2(x)
 * Norms are LayerNorm (weight, bias) or RMSNorm (weight); attention is bidirectional inside each
 * sequence (optionally block-diagonal by segment ids), scale 1/sqrt(head_dim), softmax in f32 —
 * the eager attention of every reference (nn/attention.h). The fused QKV weight [3D, D] holds
 * q, k, v rows in that order, heads contiguous inside each (reshape(T, 3, H, d)).
 *
 * Weights: F32 mode widens a layer's BF16 tensors into copies owned by the loaded layer (one
 * layer resident at a time, as the decoder does); BF16 mode uses the mmap views and rounds the
 * activations to BF16 at each matmul input (nn/linear.h). Norm weights, biases and layer scales
 * are always widened to F32.
 *
 * Memory of a forward on T tokens (F32): T·6·D floats plus a 512-row MLP chunk of I (2·I gated). */
#ifndef QV_VISION_VIT_BLOCK_H
#define QV_VISION_VIT_BLOCK_H

#include "../io/safetensors.h"
#include "../model/config.h"
#include "../nn/act.h"
#include "vision_hook.h"

/* Linear slots. FC1 is the gate projection of a gated MLP, FC2 its down projection. */
typedef enum qv_vit_lin {
    QV_VIT_QKV = 0, /* [3D, D] */
    QV_VIT_Q,       /* [D, D] */
    QV_VIT_K,
    QV_VIT_V,
    QV_VIT_O,       /* [D, D] */
    QV_VIT_FC1,     /* [I, D] */
    QV_VIT_UP,      /* [I, D] (gated only) */
    QV_VIT_FC2,     /* [D, I] */
    QV_VIT_LIN_COUNT
} qv_vit_lin;

/* Vector slots, all [D]. */
typedef enum qv_vit_vec {
    QV_VIT_NORM1_W = 0,
    QV_VIT_NORM1_B,
    QV_VIT_NORM2_W,
    QV_VIT_NORM2_B,
    QV_VIT_QNORM,
    QV_VIT_KNORM,
    QV_VIT_LS1,
    QV_VIT_LS2,
    QV_VIT_VEC_COUNT
} qv_vit_vec;

typedef struct qv_vit_dims {
    int64_t D, H, d, I;     /* hidden, heads, head dim (H·d = D), MLP width */
    qv_norm_kind norm;
    float eps;              /* norm1/norm2 epsilon */
    qv_act act;
    bool gated;             /* SiLU-style gated MLP (GATE = FC1, UP, DOWN = FC2) */
    bool qk_norm;           /* RMS over the whole q / k (weights QNORM, KNORM), eps = eps */
    qv_dtype dt;            /* compute dtype of the linears: F32 or BF16 */
    const qv_vision_hook *hook; /* per-Linear hook (vision_hook.h), or NULL; borrowed */
} qv_vit_dims;

/* Tensor names of one layer relative to its prefix ("vision_model.encoder.layers.3."); NULL =
 * the tower has no such tensor. lin_w / lin_b are the weight and bias of each linear. */
typedef struct qv_vit_names {
    const char *lin_w[QV_VIT_LIN_COUNT];
    const char *lin_b[QV_VIT_LIN_COUNT];
    const char *vec[QV_VIT_VEC_COUNT];
} qv_vit_names;

typedef struct qv_vit_layer {
    const void *w[QV_VIT_LIN_COUNT];   /* in dims.dt; NULL = absent */
    const float *b[QV_VIT_LIN_COUNT];  /* F32 or NULL */
    const float *vec[QV_VIT_VEC_COUNT];
    void *own[QV_VIT_LIN_COUNT];       /* widened copies (F32 mode) */
    float *small;                      /* biases and vectors, F32 */
    qv_tensor src[QV_VIT_LIN_COUNT];   /* mmap views, for releasing their pages */
    bool hooked[QV_VIT_LIN_COUNT];     /* dims.hook wants this linear */
    char module[QV_VIT_LIN_COUNT][192]; /* its checkpoint module name (hooked linears) */
} qv_vit_layer;

/* Output / input width of a linear slot. */
int64_t qv_vit_lin_out(const qv_vit_dims *dm, qv_vit_lin l);
int64_t qv_vit_lin_in(const qv_vit_dims *dm, qv_vit_lin l);

/* Checks that every named tensor of the layer exists with its shape ("<ck>: tensor <name> has
 * shape [..], expected [..]" / "not found"), without reading any data. */
qv_status qv_vit_layer_check(const qv_checkpoint *ck, const qv_vit_dims *dm, const qv_vit_names *nm,
                             const char *prefix);
/* Loads a layer in the compute dtype; linears the dims' hook wants get its weight callback here
 * and its input callback at every call of the forward. Release with qv_vit_layer_release (also
 * after failure). */
qv_status qv_vit_layer_load(const qv_checkpoint *ck, const qv_vit_dims *dm, const qv_vit_names *nm,
                            const char *prefix, qv_vit_layer *layer);
void qv_vit_layer_release(const qv_checkpoint *ck, qv_vit_layer *layer);

/* Token layout of a block call: T = B·L tokens, attention within each of the B sequences,
 * further restricted to equal segment ids when segment is given. cos/sin: [T, d/2] rotary
 * tables (NULL = no rotary). */
typedef struct qv_vit_seq {
    int64_t B, L;
    const int32_t *segment;
    const float *cos, *sin;
} qv_vit_seq;

/* x [T, D] is updated in place. */
qv_status qv_vit_layer_forward(const qv_vit_dims *dm, const qv_vit_layer *w, const qv_vit_seq *s, float *x);

/* y [rows, C] = norm(x) with the kind's weight / bias (bias ignored for RMS); y may equal x. */
void qv_vit_norm(qv_norm_kind kind, float *y, const float *x, const float *w, const float *b, int64_t rows,
                 int64_t C, float eps);

/* Patch rows of a stride-p, kernel-p Conv2d on n images [n, 3, h, w]: cols [n·gh·gw, 3·p·p],
 * row (t, y, x) raster order, values in (c, ky, kx) order; gh = h / p, gw = w / p (trailing
 * pixels that fill no whole patch are not read, as the convolution ignores them). */
void qv_vit_patchify(float *cols, const float *pixels, int64_t n, int64_t h, int64_t w, int64_t p);

/* Widens (or copies) n elements of a float tensor view into F32. */
qv_status qv_vit_widen(float *dst, const qv_tensor *t, size_t n);

#endif
