/* olist.c — output tensor lists shared by the format writers, and format names (formats.h). */
#include "formats.h"

#include <string.h>

static const char *format_names[QV_FMT_COUNT] = {"fake", "awq", "gptq", "compressed-tensors", "fp8", "mbq-pt"};

const char *qv_format_name(qv_fmt f) { return (unsigned)f < QV_FMT_COUNT ? format_names[f] : "?"; }

bool qv_format_parse(const char *s, qv_fmt *f)
{
    for (int i = 0; i < QV_FMT_COUNT; i++)
        if (strcmp(s, format_names[i]) == 0) {
            *f = (qv_fmt)i;
            return true;
        }
    return false;
}

void qv_olist_init(qv_olist *l) { memset(l, 0, sizeof *l); }

void qv_olist_free(qv_olist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        qv_free(l->items[i].name);
        qv_free(l->items[i].data);
    }
    qv_free(l->items);
    memset(l, 0, sizeof *l);
}

int64_t qv_otensor_numel(const qv_otensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

qv_otensor *qv_olist_add(qv_olist *l, const char *module, const char *suffix, qv_dtype dt, int ndim,
                         const int64_t *shape, bool with_data)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        qv_otensor *ni = qv_realloc(l->items, cap * sizeof *ni, "output tensors");
        if (!ni)
            return NULL;
        l->items = ni;
        l->cap = cap;
    }
    qv_otensor *t = &l->items[l->n];
    memset(t, 0, sizeof *t);
    t->name = suffix ? qv_asprintf("%s.%s", module, suffix) : qv_strdup(module);
    if (!t->name)
        return NULL;
    t->dtype = dt;
    t->ndim = ndim;
    int64_t numel;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    if (!qv_shape_numel(ndim, shape, &numel) || !qv_mul_size((size_t)numel, qv_dtype_size(dt), &t->nbytes)) {
        qv_free(t->name);
        qv_fail(QV_ERR_NOMEM, "%s: tensor too large", module);
        return NULL;
    }
    if (with_data) {
        t->data = qv_calloc(t->nbytes ? t->nbytes : 1, 1, t->name);
        if (!t->data) {
            qv_free(t->name);
            return NULL;
        }
    }
    l->n++;
    return t;
}
