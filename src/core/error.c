/* error.c — the per-thread one-line error message and the allocation wrappers (common.h). */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char tl_msg[QV_ERROR_MAX];
static _Thread_local qv_status tl_status;

const char *qv_last_error(void) { return tl_msg; }

const char *qv_status_name(qv_status st)
{
    switch (st) {
    case QV_OK: return "ok";
    case QV_ERR_IO: return "i/o error";
    case QV_ERR_FORMAT: return "format error";
    case QV_ERR_INVALID: return "invalid input";
    case QV_ERR_UNSUPPORTED: return "unsupported";
    case QV_ERR_NOMEM: return "out of memory";
    case QV_ERR_INTERRUPTED: return "interrupted";
    case QV_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

/* Messages are one line: control characters (a newline inside a tensor name, say) are
 * replaced so that a hostile input cannot forge extra output lines. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

qv_status qv_vfail(qv_status st, const char *fmt, va_list ap)
{
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    sanitize(tl_msg);
    tl_status = st;
    return st;
}

qv_status qv_fail(qv_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qv_vfail(st, fmt, ap);
    va_end(ap);
    return st;
}

qv_status qv_fail_prefix(qv_status st, const char *fmt, ...)
{
    char prefix[QV_ERROR_MAX], old[QV_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tl_msg, sizeof old);
    size_t used = n < 0 ? 0 : QV_MIN((size_t)n, sizeof tl_msg - 1);
    memcpy(tl_msg, prefix, used);
    if (used + 2 < sizeof tl_msg) {
        memcpy(tl_msg + used, ": ", 2);
        used += 2;
        size_t rest = QV_MIN(strlen(old), sizeof tl_msg - 1 - used);
        memcpy(tl_msg + used, old, rest);
        used += rest;
    }
    tl_msg[used] = 0;
    sanitize(tl_msg);
    tl_status = st;
    return st;
}

void qv_clear_error(void)
{
    tl_msg[0] = 0;
    tl_status = QV_OK;
}

void qv_error_save(qv_error_state *es, qv_status st)
{
    es->status = st;
    memcpy(es->msg, tl_msg, sizeof es->msg);
}

void qv_par_error_set(qv_par_error *pe, qv_status st)
{
#pragma omp critical(qv_par_error)
    {
        if (!pe->failed) {
            qv_error_save(&pe->es, st);
            pe->failed = 1;
        }
    }
}

qv_status qv_par_error_status(const qv_par_error *pe) { return pe->failed ? qv_error_restore(&pe->es) : QV_OK; }

qv_status qv_error_restore(const qv_error_state *es)
{
    memcpy(tl_msg, es->msg, sizeof tl_msg);
    tl_status = es->status;
    return es->status;
}

/* ---- allocation ------------------------------------------------------------------------- */

static void oom(size_t n, const char *what)
{
    qv_fail(QV_ERR_NOMEM, "out of memory (%zu bytes for %s)", n, what ? what : "buffer");
}

void *qv_malloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n, what);
    return p;
}

void *qv_calloc(size_t count, size_t size, const char *what)
{
    size_t n;
    if (!qv_mul_size(count, size, &n)) {
        qv_fail(QV_ERR_NOMEM, "size overflow (%zu x %zu bytes for %s)", count, size, what ? what : "buffer");
        return NULL;
    }
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        oom(n, what);
    return p;
}

void *qv_realloc(void *p, size_t n, const char *what)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n, what);
    return q;
}

void *qv_aligned_alloc(size_t align, size_t n, const char *what)
{
    void *p = NULL;
    if (align < sizeof(void *))
        align = sizeof(void *);
    if (posix_memalign(&p, align, n ? n : 1) != 0) {
        oom(n, what);
        return NULL;
    }
    return p;
}

void qv_free(void *p) { free(p); }

char *qv_strdup(const char *s) { return qv_strndup(s, strlen(s)); }

char *qv_strndup(const char *s, size_t n)
{
    char *d = qv_malloc(n + 1, "string");
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *qv_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        qv_fail(QV_ERR_INTERNAL, "bad format string");
        return NULL;
    }
    char *s = qv_malloc((size_t)n + 1, "string");
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- qv_vec ----------------------------------------------------------------------------- */

void qv_vec_init(qv_vec *v, size_t elem)
{
    v->data = NULL;
    v->len = v->cap = 0;
    v->elem = elem;
}

qv_status qv_vec_reserve(qv_vec *v, size_t cap)
{
    if (cap <= v->cap)
        return QV_OK;
    size_t ncap = v->cap ? v->cap : 8, bytes;
    while (ncap < cap)
        if (!qv_mul_size(ncap, 2, &ncap))
            return qv_fail(QV_ERR_NOMEM, "array size overflow");
    if (!qv_mul_size(ncap, v->elem, &bytes))
        return qv_fail(QV_ERR_NOMEM, "array size overflow");
    void *p = qv_realloc(v->data, bytes, "array");
    if (!p)
        return QV_ERR_NOMEM;
    v->data = p;
    v->cap = ncap;
    return QV_OK;
}

qv_status qv_vec_push(qv_vec *v, const void *item)
{
    if (v->len == v->cap)
        QV_TRY(qv_vec_reserve(v, v->len + 1));
    memcpy((char *)v->data + v->len * v->elem, item, v->elem);
    v->len++;
    return QV_OK;
}

void qv_vec_free(qv_vec *v)
{
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}
