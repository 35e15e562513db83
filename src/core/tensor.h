/* tensor.h — dtypes, strided tensor views and element conversion (FORMATS.md §1.4, §7).
 *
 * A qv_tensor is a view: it never owns its data. The data pointer borrows from a mapped
 * checkpoint, an arena or a caller's buffer; whoever owns that memory decides the lifetime.
 * Shapes are row-major; strides are in elements. */
#ifndef QV_TENSOR_H
#define QV_TENSOR_H

#include "common.h"

#define QV_MAX_DIMS 8

typedef struct qv_tensor {
    qv_dtype dtype;
    int ndim;
    int64_t shape[QV_MAX_DIMS];
    int64_t stride[QV_MAX_DIMS]; /* elements */
    void *data;
} qv_tensor;

/* Parses a safetensors dtype string ("BF16"); false when unknown. */
bool qv_dtype_parse(const char *s, size_t n, qv_dtype *out);
/* Bits per element (8 for BOOL). */
int qv_dtype_bits(qv_dtype dt);
bool qv_dtype_is_float(qv_dtype dt);

/* Contiguous view over data. */
void qv_tensor_view(qv_tensor *t, qv_dtype dt, void *data, int ndim, const int64_t *shape);
/* numel; returns false (and sets the error) when the product overflows int64. */
bool qv_shape_numel(int ndim, const int64_t *shape, int64_t *numel);
int64_t qv_tensor_numel(const qv_tensor *t);
bool qv_tensor_is_contiguous(const qv_tensor *t);
size_t qv_tensor_nbytes(const qv_tensor *t); /* contiguous size */
/* Formats a shape as "[a,b,c]" into buf. */
const char *qv_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* Element conversion between any two of F32/F64/F16/BF16/F8_E4M3/integers/BOOL (n elements,
 * contiguous). Float narrowing rounds to nearest even; F8_E4M3 saturates to +-448 (the
 * quantizers' rule) — use qv_convert_raw for the unsaturated torch cast. Float to integer
 * rounds to nearest even and saturates. */
qv_status qv_convert(void *dst, qv_dtype dst_dt, const void *src, qv_dtype src_dt, size_t n);
/* Reads element i of a contiguous buffer as double / f32. */
double qv_load_f64(const void *p, qv_dtype dt, size_t i);
float qv_load_f32(const void *p, qv_dtype dt, size_t i);
void qv_store_f32(void *p, qv_dtype dt, size_t i, float v);

#endif
