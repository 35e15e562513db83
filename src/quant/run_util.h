/* run_util.h — the small helpers one `qvlm quantize` run and its fp8 variant (fp8_run.c) share
 * (defined in quantize.c). */
#ifndef QV_QUANT_RUN_UTIL_H
#define QV_QUANT_RUN_UTIL_H

#include "quantize.h"

/* printf to io->log and flush; nothing when io->log is NULL. */
void qv_run_log(const qv_quantize_io *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The config's dtype word for T: bfloat16, float16 or float32. */
const char *qv_run_dtype_word(qv_dtype T);

#endif
