/* fq_avx2.c — AVX2 fake quantization (8 lanes): fq_body.h over vec_avx2.h. Scalar twin: fq_ref.c.
 * Tail strategy: scalar tail (the last len % 8 elements of each group through qv_fq_elem);
 * groups with NaN/±Inf go whole to qv_fq_group_ref. */
#include "vec_avx2.h"

#include "fq_body.h"

void qv_fq_rows_avx2(void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s, qv_fq_scale mode,
                     int64_t rows, int64_t cols, const qv_fq *p)
{
    fqb_rows(out, out_dt, w, dt, s, mode, rows, cols, p);
}
