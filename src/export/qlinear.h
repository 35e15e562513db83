/* qlinear.h — one quantized Linear as every exporter sees it: unsigned integer codes, per-group
 * scales and zero points (integer formats), or FP8 E4M3 codes with per-row or per-tensor scales
 * (FORMATS.md §4.4, §7.1, ALGORITHMS-2.md §4.4). Produced from a weight that already carries the
 * searched scales (src/quant/apply.h), consumed by the packers (pack.h) and by verify.
 *
 * Dequantization, the contract the packed files are checked against:
 *   integer: w[n][k] = T((u[n][k] − z[n][g]) · s[n][g]), g = k / group   (exact difference)
 *   fp8:     w[n][k] = T(e4m3(c[n][k]) · s[n])                           (s[0] when per tensor)
 * which is bit for bit the fake-quantized weight of ALGORITHMS.md §1 / ALGORITHMS-2.md §4.4. */
#ifndef QV_EXPORT_QLINEAR_H
#define QV_EXPORT_QLINEAR_H

#include "core/common.h"

typedef struct qv_qlinear {
    int64_t co, ci;   /* weight [co, ci] */
    int bits;         /* 2..8 */
    int64_t group;    /* group size along ci (ci for one group per row) */
    int64_t ng;       /* ci / group */
    bool sym;         /* symmetric: z = 2^(bits-1) everywhere, u = q + 2^(bits-1) */
    qv_dtype T;       /* dtype of the scales and of the dequantized values (F32/BF16/F16) */
    uint8_t *u;       /* [co, ci] codes, 0..2^bits-1 */
    uint8_t *z;       /* [co, ng] zero points, 0..2^bits-1 */
    float *s;         /* [co, ng] scales (T values) */
} qv_qlinear;

typedef struct qv_fp8linear {
    int64_t co, ci;
    bool per_tensor;  /* one scale (FP8 static) instead of one per output row (FP8_DYNAMIC) */
    qv_dtype T;
    uint8_t *c;       /* [co, ci] E4M3FN codes */
    float *s;         /* [co] or [1] scales (T values) */
} qv_fp8linear;

/* Division form of the quantizer's `range / qmax` (ALGORITHMS.md §0.3 rule (E)). */
typedef enum qv_wq_div { QV_WQ_DIV_CUDA = 0, QV_WQ_DIV_CPU } qv_wq_div;

typedef struct qv_wq_spec {
    int bits;
    int64_t group;    /* > 0, or -1 for one group per output row */
    bool sym;         /* false: asymmetric with zero point (W-only); true: absmax (W-A) */
    qv_dtype T;
    qv_wq_div div;
} qv_wq_spec;

/* Quantizes w ([co, ci] values exactly representable in spec->T) the way ALGORITHMS.md §1
 * fake-quantizes it. `name` is used in errors ("<name>: group 3 of row 7 holds NaN or Inf"). */
qv_status qv_qlinear_quantize(qv_qlinear *q, const float *w, int64_t co, int64_t ci, const qv_wq_spec *spec,
                              const char *name);
/* Empty qv_qlinear with buffers for the given geometry (readers fill it). */
qv_status qv_qlinear_alloc(qv_qlinear *q, int64_t co, int64_t ci, int bits, int64_t group, bool sym, qv_dtype T);
void qv_qlinear_free(qv_qlinear *q);
/* out[co*ci] = the dequantized weight (T values). */
void qv_qlinear_dequant(const qv_qlinear *q, float *out);

/* FP8 E4M3 weights as compressed-tensors quantizes them (ALGORITHMS-2.md §4.4): per row (or
 * tensor) s = T(max(|min(w,0)|, max(w,0)) / 448), 0 → eps(T); code = e4m3(clamp(T(w / s), ±448)). */
qv_status qv_fp8linear_quantize(qv_fp8linear *q, const float *w, int64_t co, int64_t ci, bool per_tensor, qv_dtype T,
                                const char *name);
qv_status qv_fp8linear_alloc(qv_fp8linear *q, int64_t co, int64_t ci, bool per_tensor, qv_dtype T);
void qv_fp8linear_free(qv_fp8linear *q);
void qv_fp8linear_dequant(const qv_fp8linear *q, float *out);

/* T(x): the value a T store keeps (round to nearest even). */
float qv_round_to(float x, qv_dtype T);
/* torch.finfo(T).eps: BF16 2^-7, F16 2^-10, F32 2^-23 (the zero-scale replacement of CT). */
float qv_dtype_eps(qv_dtype T);

#endif
