/* qvlm.h — public C API of qvlm, a CPU engine that quantizes vision-language models.
 *
 * Conventions (after oneDNN's dnnl.h and ggml's gguf.h):
 *   - every fallible call returns a qv_status; QV_OK is 0;
 *   - on failure a one-line message "<file or object>: <problem>" is kept per thread and is
 *     read with qv_last_error(); library code never prints and never exits;
 *   - handles are opaque; every open/new call has a close/free call that accepts NULL;
 *   - [in] / [out] mark pointer parameters where it is not obvious.
 */
#ifndef QVLM_H
#define QVLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QVLM_VERSION_MAJOR 0
#define QVLM_VERSION_MINOR 1
#define QVLM_VERSION_PATCH 0

typedef enum qv_status {
    QV_OK = 0,
    QV_ERR_IO,          /* a file could not be opened, read, written or mapped */
    QV_ERR_FORMAT,      /* a file's content violates its format (corrupt header, bad JSON, ...) */
    QV_ERR_INVALID,     /* a valid file or argument whose value is not acceptable */
    QV_ERR_UNSUPPORTED, /* a well-formed request qvlm does not implement (architecture, dtype, ...) */
    QV_ERR_NOMEM,       /* an allocation failed or a size computation overflowed */
    QV_ERR_INTERRUPTED, /* the run was interrupted (signal) */
    QV_ERR_INTERNAL     /* a library bug: an invariant did not hold */
} qv_status;

/* Message of the last failure on this thread ("" when none). Valid until the next failure. */
const char *qv_last_error(void);
/* Name of a status code, e.g. "format error". */
const char *qv_status_name(qv_status st);

/* Element types, with the safetensors spelling in comments. */
typedef enum qv_dtype {
    QV_F32 = 0,  /* F32 */
    QV_F16,      /* F16 */
    QV_BF16,     /* BF16 */
    QV_F8_E4M3,  /* F8_E4M3 (OCP E4M3FN) */
    QV_I8,       /* I8 */
    QV_U8,       /* U8 */
    QV_I32,      /* I32 */
    QV_I64,      /* I64 */
    QV_BOOL,     /* BOOL */
    QV_F64,      /* F64 */
    QV_I16,      /* I16 */
    QV_U16,      /* U16 */
    QV_U32,      /* U32 */
    QV_U64,      /* U64 */
    QV_F8_E5M2,  /* F8_E5M2 */
    QV_F8_E8M0,  /* F8_E8M0 */
    QV_DTYPE_COUNT
} qv_dtype;

const char *qv_dtype_name(qv_dtype dt);   /* safetensors spelling */
size_t qv_dtype_size(qv_dtype dt);         /* bytes per element */

/* ---- checkpoints (memory-mapped safetensors, single file or sharded) -------------------- */

typedef struct qv_checkpoint qv_checkpoint;

/* Opens a Hugging Face model folder (model.safetensors or model.safetensors.index.json) or a
 * single .safetensors file. Every header is validated; tensors stay in the map. */
qv_status qv_checkpoint_open(const char *path, qv_checkpoint **out);
void qv_checkpoint_close(qv_checkpoint *ck);
size_t qv_checkpoint_n_tensors(const qv_checkpoint *ck);

/* ---- kernels -------------------------------------------------------------------------- */

/* Name of the kernel set chosen on this host ("scalar", "avx2", "avx512", "amx"). The choice
 * honours the QVLM_ISA environment variable. */
const char *qv_isa_name(void);

#ifdef __cplusplus
}
#endif
#endif /* QVLM_H */
