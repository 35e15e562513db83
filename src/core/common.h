/* common.h — what every qvlm source file needs: the status type, the per-thread error message,
 * checked size arithmetic and allocation wrappers.
 *
 * Errors: a failing function records one line, "<file or object>: <problem>", with qv_fail()
 * and returns the status; callers propagate with QV_TRY. Only the CLI prints. The message is
 * per thread because parsers are also called from fuzzers and OpenMP workers that hold no
 * context object; the first failure inside a parallel region should be copied out by the
 * region's owner (see qv_error_save/qv_error_restore).
 */
#ifndef QV_COMMON_H
#define QV_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qvlm.h"

#define QV_ERROR_MAX 1024

qv_status qv_fail(qv_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
qv_status qv_vfail(qv_status st, const char *fmt, va_list ap);
/* Prefixes the current message with "<prefix>: " (adds context on the way up). */
qv_status qv_fail_prefix(qv_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qv_clear_error(void);

/* Copy of an error message, to carry a failure out of a worker thread. */
typedef struct qv_error_state {
    qv_status status;
    char msg[QV_ERROR_MAX];
} qv_error_state;
void qv_error_save(qv_error_state *es, qv_status st);
qv_status qv_error_restore(const qv_error_state *es);

/* The first failure inside an OpenMP parallel region, carried out of it: zero-initialise, call
 * qv_par_error_set from any thread (only the first call is kept), test `failed` to skip the
 * remaining work, and after the region return qv_par_error_status. */
typedef struct qv_par_error {
    volatile int failed;
    qv_error_state es;
} qv_par_error;
void qv_par_error_set(qv_par_error *pe, qv_status st);
qv_status qv_par_error_status(const qv_par_error *pe);

#define QV_TRY(expr)                      \
    do {                                  \
        qv_status qv_try_s_ = (expr);     \
        if (qv_try_s_ != QV_OK)           \
            return qv_try_s_;             \
    } while (0)

/* Jump to a cleanup label: `QV_CHECK(st = f(), done);` */
#define QV_CHECK(expr, label)             \
    do {                                  \
        if ((expr) != QV_OK)              \
            goto label;                   \
    } while (0)

#define QV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define QV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QV_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Checked arithmetic on untrusted sizes: return false on overflow. */
static inline bool qv_mul_size(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool qv_add_size(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool qv_mul_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }

/* Allocation: on failure these record "out of memory (<n> bytes for <what>)" and return NULL.
 * Memory from qv_malloc/qv_calloc/qv_aligned_alloc is released with qv_free. */
void *qv_malloc(size_t n, const char *what);
void *qv_calloc(size_t count, size_t size, const char *what);
void *qv_realloc(void *p, size_t n, const char *what);
void *qv_aligned_alloc(size_t align, size_t n, const char *what);
void qv_free(void *p);
char *qv_strdup(const char *s);
char *qv_strndup(const char *s, size_t n);
/* Allocates and formats; NULL on OOM (with the error set). */
char *qv_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Growable array of elements of one size, for builders (tokens, lists). */
typedef struct qv_vec {
    void *data;
    size_t len, cap, elem;
} qv_vec;
void qv_vec_init(qv_vec *v, size_t elem);
qv_status qv_vec_reserve(qv_vec *v, size_t cap);
qv_status qv_vec_push(qv_vec *v, const void *item);
void qv_vec_free(qv_vec *v);
#define QV_VEC_AT(v, type, i) (((type *)(v)->data)[i])

#endif /* QV_COMMON_H */
