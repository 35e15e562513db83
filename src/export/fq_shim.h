/* fq_shim.h — TEMPORARY stand-in for the part of simd/simd.h (branch `simd`, not merged yet)
 * that the exporters call: qv_fq and qv_fq_codes, declared exactly as simd.h declares them.
 * When `simd` lands in main: delete fq_shim.h and fq_shim.c and include "simd.h" instead
 * (src/export/wquant.c is the only includer). */
#ifndef QV_EXPORT_FQ_SHIM_H
#define QV_EXPORT_FQ_SHIM_H

#include <stdbool.h>
#include <stdint.h>

#include "qvlm.h"

typedef enum qv_fq_div {
    QV_FQ_DIV_CUDA = 0,
    QV_FQ_DIV_CPU,
} qv_fq_div;

typedef struct qv_fq {
    int n_bits;
    bool zero_point;
    int64_t group;
    qv_fq_div division;
} qv_fq;

qv_status qv_fq_codes(uint8_t *codes, float *scales, uint8_t *zeros, const void *w, qv_dtype dt, int64_t rows,
                      int64_t cols, const qv_fq *p, int64_t *bad_group, const char **why);

#endif
