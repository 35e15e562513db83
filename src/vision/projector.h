/* projector.h — the vision-to-LLM projectors (private to src/vision):
 *
 *   InternVL mlp1 (fixtures README §2, ALGORITHMS.md §8.1): drop CLS → g×g grid → pixel shuffle
 *     ×0.5 → LayerNorm(4Cv, eps 1e-5) → Linear 4Cv→C → GELU → Linear C→C;
 *   Qwen2-VL PatchMerger (MODELS.md §1.4 step 5, §1.10): ln_q (LayerNorm, or RMSNorm for 2.5-VL)
 *     on every patch of width Cv → the 4 rows of a 2×2 merge block concatenated (4Cv) → Linear →
 *     GELU → Linear;
 *   LLaVA mlp2x_gelu (MODELS.md §2.3 step 4): Linear Cv→C → GELU → Linear C→C, plus the learned
 *     image_newline appended after a single crop's features (ALGORITHMS.md §8.2).
 * All three are "optional norm, Linear, GELU, Linear": one struct, qv_proj_mlp, with the norm
 * applied to rows of norm_width before the rows are read as the first linear's input width
 * (norm_width = in for mlp1, in / 4 for the merger). Weights are held for the projector's
 * lifetime (widened to F32 in parity mode; BF16 copies in fast mode). */
#ifndef QV_VISION_PROJECTOR_H
#define QV_VISION_PROJECTOR_H

#include "vit_block.h"

typedef enum qv_ps_version { QV_PS_V1 = 1, QV_PS_V2 = 2 } qv_ps_version;

/* InternVL's pixel_shuffle(scale 0.5) on n grids x [n, g, g, C] (row-major tokens):
 * out [n, (g/2)², 4C]. v2: output token (i, j) is the concatenation of input tokens (2i, 2j),
 * (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1); v1 (the original, transposed) of (2j, 2i), (2j, 2i+1),
 * (2j+1, 2i), (2j+1, 2i+1). g must be even. out must not alias x. */
void qv_pixel_shuffle(float *out, const float *x, int64_t n, int64_t g, int64_t C, qv_ps_version v);

typedef struct qv_proj_names {
    const char *norm_w, *norm_b; /* NULL = no norm / no bias */
    const char *w1, *b1, *w2, *b2;
} qv_proj_names;

typedef struct qv_proj_mlp {
    qv_norm_kind norm;
    bool has_norm;
    float eps;
    int64_t norm_width, in, hidden, out;
    qv_act act;
    qv_dtype dt;
    float *norm_w, *norm_b;  /* [norm_width] F32 */
    void *w1, *w2;           /* [hidden, in], [out, hidden] in dt */
    float *b1, *b2;          /* F32 */
    const qv_vision_hook *hook; /* per-Linear hook (vision_hook.h), or NULL; borrowed */
    bool hooked[2];          /* the hook wants linear 1 / 2 */
    char module[2][192];     /* their checkpoint module names */
} qv_proj_mlp;

/* Reads the projector's tensors (checking shapes); `p` must be filled with the dims, norm,
 * activation and hook beforehand; the weights are loaded in p->dt (after the hook's weight
 * callback, for the linears it wants). */
qv_status qv_proj_mlp_load(qv_proj_mlp *p, const qv_checkpoint *ck, const qv_proj_names *nm);
void qv_proj_mlp_free(qv_proj_mlp *p);
/* y [rows, out] = projector(x [rows, in]); x is not modified. */
qv_status qv_proj_mlp_forward(const qv_proj_mlp *p, const float *x, int64_t rows, float *y);

#endif
