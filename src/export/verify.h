/* verify.h — `qvlm verify`: read a quantized checkpoint (qvlm's or another tool's AutoAWQ GEMM,
 * GPTQ v1/v2, compressed-tensors pack-/int-/naive-/float-quantized, or a fake-quantized model),
 * unpack and dequantize every quantized Linear, and compare with the fake-quantized weights that
 * the original model and scale list give (CLI.md `verify`).
 *
 * With --against MODEL [--scales DIR]: the reference is MODEL with the scales applied
 * (apply.h) and every decoder linear fake-quantized with the checkpoint's own bits, group and
 * symmetry, in MODEL's dtype. Integer formats must match bit for bit after dequantization;
 * FP8 codes must equal the E4M3 codes of the reference weight under the checkpoint's scales;
 * every other tensor must equal the reference in the checkpoint's dtype.
 * Without --against: each quantized module is unpacked, re-packed and compared byte for byte
 * with the file (a layout check that needs no model). */
#ifndef QV_EXPORT_VERIFY_H
#define QV_EXPORT_VERIFY_H

#include "core/common.h"

typedef void (*qv_verify_line_fn)(void *ctx, const char *tensor, const char *what, double max_abs, bool ok);

typedef struct qv_verify_opts {
    const char *path;     /* the quantized checkpoint folder */
    const char *against;  /* original model folder, or NULL */
    const char *scales;   /* scales DIR / .pt applied to `against`, or NULL */
    double atol;          /* accepted |difference| (0: exact) */
    qv_dtype dtype;       /* compute dtype; QV_DTYPE_COUNT: the original model's */
    int division;         /* -1: from the scales' config, 0 cuda, 1 cpu */
    qv_verify_line_fn line;
    void *ctx;
} qv_verify_opts;

typedef struct qv_verify_result {
    char format[64];      /* "awq gemm 4-bit g128", ... */
    size_t n_quantized;   /* quantized modules read */
    size_t n_checked;     /* tensors compared */
    size_t n_mismatch;
    double max_abs;       /* over all comparisons */
} qv_verify_result;

/* QV_OK when the checkpoint could be read (mismatches are counted in r, not errors). */
qv_status qv_verify_run(const qv_verify_opts *o, qv_verify_result *r);

#endif
