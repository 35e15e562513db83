/* acts.h — calibration activations kept in the reference dtype T (BF16 for a BF16 model: half the
 * memory of F32, and the values the reference's own T tensors hold), read and written in row
 * ranges as F32 (ARCHITECTURE.md "Memory": activations in BF16, processed in chunks).
 *
 * The layer-by-layer search holds, per layer, the layer input X, its output, the inputs of the
 * linear groups and one inspect module's FP output: all of them as qv_acts; the runner works on
 * F32 copies of one chunk of samples at a time. */
#ifndef QV_QUANT_ACTS_H
#define QV_QUANT_ACTS_H

#include "../core/common.h"

typedef struct qv_acts {
    qv_dtype dt;       /* F32, BF16 or F16 */
    int64_t rows, cols;
    void *p;           /* [rows, cols] */
} qv_acts;

qv_status qv_acts_alloc(qv_acts *a, qv_dtype dt, int64_t rows, int64_t cols, const char *what);
void qv_acts_free(qv_acts *a);
/* dst [n, cols] = rows [r0, r0+n) widened to F32 (exact). */
void qv_acts_get(const qv_acts *a, int64_t r0, int64_t n, float *dst);
/* rows [r0, r0+n) = src rounded to dt (round to nearest even). */
void qv_acts_put(qv_acts *a, int64_t r0, int64_t n, const float *src);
/* Address of row r (for kernels that take the storage dtype directly). */
static inline void *qv_acts_row(const qv_acts *a, int64_t r)
{
    return (char *)a->p + (size_t)(r * a->cols) * qv_dtype_size(a->dt);
}
/* Bytes of the buffer. */
static inline size_t qv_acts_bytes(const qv_acts *a) { return (size_t)(a->rows * a->cols) * qv_dtype_size(a->dt); }

#endif
