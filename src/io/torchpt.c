/* torchpt.c — torch.save files: the document model and a restricted unpickler (torchpt.h; the
 * writer is torchpt_save.c). Pickle opcodes as defined by CPython Lib/pickle.py; the tensor and
 * storage conventions of torch/serialization.py (`_save`, `_load`, persistent ids
 * ('storage', <torch.XStorage>, key, location, numel)) and torch/_utils.py
 * (`_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)`). */
#include "torchpt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/strmap.h"
#include "zipstore.h"

struct qv_pt {
    qv_vec nodes; /* qv_pt_value * */
    qv_pt_value *root;
};

/* ---- document --------------------------------------------------------------------------------- */

qv_status qv_pt_new(qv_pt **doc)
{
    *doc = qv_calloc(1, sizeof **doc, "torch document");
    if (!*doc)
        return QV_ERR_NOMEM;
    qv_vec_init(&(*doc)->nodes, sizeof(qv_pt_value *));
    return QV_OK;
}

void qv_pt_free(qv_pt *doc)
{
    if (!doc)
        return;
    for (size_t i = 0; i < doc->nodes.len; i++) {
        qv_pt_value *v = QV_VEC_AT(&doc->nodes, qv_pt_value *, i);
        qv_free(v->s);
        qv_free(v->items);
        if (v->kind == QV_PT_TENSOR)
            qv_free(v->t.data);
        qv_free(v);
    }
    qv_vec_free(&doc->nodes);
    qv_free(doc);
}

const qv_pt_value *qv_pt_root(const qv_pt *doc) { return doc->root; }

static qv_pt_value *node(qv_pt *doc, qv_pt_kind kind)
{
    qv_pt_value *v = qv_calloc(1, sizeof *v, "torch value");
    if (!v)
        return NULL;
    if (qv_vec_push(&doc->nodes, &v) != QV_OK) {
        qv_free(v);
        return NULL;
    }
    v->kind = kind;
    return v;
}

qv_pt_value *qv_pt_none(qv_pt *doc) { return node(doc, QV_PT_NONE); }

qv_pt_value *qv_pt_int(qv_pt *doc, int64_t x)
{
    qv_pt_value *v = node(doc, QV_PT_INT);
    if (v)
        v->i = x;
    return v;
}

qv_pt_value *qv_pt_bool(qv_pt *doc, bool x)
{
    qv_pt_value *v = node(doc, QV_PT_BOOL);
    if (v)
        v->i = x;
    return v;
}

qv_pt_value *qv_pt_float(qv_pt *doc, double x)
{
    qv_pt_value *v = node(doc, QV_PT_FLOAT);
    if (v)
        v->f = x;
    return v;
}

static qv_pt_value *str_n(qv_pt *doc, qv_pt_kind kind, const char *s, size_t n)
{
    qv_pt_value *v = node(doc, kind);
    if (!v)
        return NULL;
    v->s = qv_strndup(s, n);
    v->len = n;
    return v->s ? v : NULL;
}

qv_pt_value *qv_pt_str(qv_pt *doc, const char *s) { return str_n(doc, QV_PT_STR, s, strlen(s)); }
qv_pt_value *qv_pt_seq(qv_pt *doc, qv_pt_kind kind) { return node(doc, kind); }
qv_pt_value *qv_pt_dict(qv_pt *doc) { return node(doc, QV_PT_DICT); }

static qv_status push_item(qv_pt_value *c, qv_pt_value *item)
{
    if (c->len + 1 > c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        qv_pt_value **ni = qv_realloc(c->items, cap * sizeof *ni, "torch container");
        if (!ni)
            return QV_ERR_NOMEM;
        c->items = ni;
        c->cap = cap;
    }
    c->items[c->len++] = item;
    return QV_OK;
}

qv_status qv_pt_append(qv_pt_value *seq, qv_pt_value *item)
{
    if (!item)
        return QV_ERR_NOMEM;
    return push_item(seq, item);
}

qv_status qv_pt_set(qv_pt_value *dict, qv_pt_value *key, qv_pt_value *value)
{
    if (!key || !value)
        return QV_ERR_NOMEM;
    if (2 * dict->len + 2 > dict->cap) {
        size_t cap = dict->cap ? 2 * dict->cap : 8;
        while (cap < 2 * dict->len + 2)
            cap *= 2;
        qv_pt_value **ni = qv_realloc(dict->items, cap * sizeof *ni, "torch dict");
        if (!ni)
            return QV_ERR_NOMEM;
        dict->items = ni;
        dict->cap = cap;
    }
    dict->items[2 * dict->len] = key;
    dict->items[2 * dict->len + 1] = value;
    dict->len++;
    return QV_OK;
}

qv_pt_value *qv_pt_tensor(qv_pt *doc, qv_dtype dt, int ndim, const int64_t *shape, const void *data)
{
    int64_t numel;
    if (ndim < 0 || ndim > QV_MAX_DIMS || !qv_shape_numel(ndim, shape, &numel)) {
        qv_fail(QV_ERR_INVALID, "torch tensor: bad shape");
        return NULL;
    }
    qv_pt_value *v = node(doc, QV_PT_TENSOR);
    if (!v)
        return NULL;
    size_t bytes = (size_t)numel * qv_dtype_size(dt);
    void *copy = qv_malloc(bytes ? bytes : 1, "torch tensor");
    if (!copy)
        return NULL;
    if (bytes)
        memcpy(copy, data, bytes);
    qv_tensor_view(&v->t, dt, copy, ndim, shape);
    return v;
}

const qv_pt_value *qv_pt_get(const qv_pt_value *dict, const char *key)
{
    if (!dict || dict->kind != QV_PT_DICT)
        return NULL;
    for (size_t i = 0; i < dict->len; i++) {
        const qv_pt_value *k = dict->items[2 * i];
        if (k->kind == QV_PT_STR && strcmp(k->s, key) == 0)
            return dict->items[2 * i + 1];
    }
    return NULL;
}

const char *qv_pt_kind_name(qv_pt_kind k)
{
    static const char *names[] = {"None", "bool", "int", "float", "str", "tuple", "list", "dict", "tensor", "global", "storage"};
    return (unsigned)k < QV_ARRAY_LEN(names) ? names[k] : "?";
}

/* ---- storage classes --------------------------------------------------------------------------- */

static const struct {
    const char *cls;
    qv_dtype dt;
} storage_types[] = {
    {"FloatStorage", QV_F32},  {"DoubleStorage", QV_F64},    {"HalfStorage", QV_F16},
    {"BFloat16Storage", QV_BF16}, {"LongStorage", QV_I64},   {"IntStorage", QV_I32},
    {"ShortStorage", QV_I16},  {"CharStorage", QV_I8},       {"ByteStorage", QV_U8},
    {"BoolStorage", QV_BOOL},  {"Float8_e4m3fnStorage", QV_F8_E4M3}, {"Float8_e5m2Storage", QV_F8_E5M2},
    {"UntypedStorage", QV_U8},
};

static bool storage_dtype(const char *global, qv_dtype *dt)
{
    if (strncmp(global, "torch.", 6) != 0)
        return false;
    for (size_t i = 0; i < QV_ARRAY_LEN(storage_types); i++)
        if (strcmp(global + 6, storage_types[i].cls) == 0) {
            *dt = storage_types[i].dt;
            return true;
        }
    return false;
}

const char *qv_pt_storage_class(qv_dtype dt)
{
    for (size_t i = 0; i < QV_ARRAY_LEN(storage_types); i++)
        if (storage_types[i].dt == dt)
            return storage_types[i].cls;
    return NULL;
}

/* =========================================================================================
 * Unpickler
 * ========================================================================================= */

#define MEMO_MAX ((size_t)1 << 24)

typedef struct upk {
    qv_pt *doc;
    const char *what;
    const uint8_t *p, *end;
    qv_vec stack;       /* qv_pt_value * */
    qv_vec marks;       /* size_t */
    qv_pt_value **memo; /* sparse by index */
    size_t memo_cap, memo_n;
    const qv_zip *zip;
    const char *prefix; /* "<archive>/" */
} upk;

static qv_status bad(upk *u, const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg);
    return qv_fail(QV_ERR_FORMAT, "%s: data.pkl at byte %ld: %s", u->what, (long)(u->end - u->p), msg);
}

static qv_status need(upk *u, size_t n)
{
    if ((size_t)(u->end - u->p) < n)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl is truncated", u->what);
    return QV_OK;
}

static qv_status push(upk *u, qv_pt_value *v)
{
    if (!v)
        return QV_ERR_NOMEM;
    return qv_vec_push(&u->stack, &v);
}

static qv_status pop(upk *u, qv_pt_value **v)
{
    size_t floor = u->marks.len ? QV_VEC_AT(&u->marks, size_t, u->marks.len - 1) : 0;
    if (u->stack.len <= floor)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: stack underflow", u->what);
    *v = QV_VEC_AT(&u->stack, qv_pt_value *, --u->stack.len);
    return QV_OK;
}

static qv_status top(upk *u, qv_pt_value **v)
{
    size_t floor = u->marks.len ? QV_VEC_AT(&u->marks, size_t, u->marks.len - 1) : 0;
    if (u->stack.len <= floor)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: stack underflow", u->what);
    *v = QV_VEC_AT(&u->stack, qv_pt_value *, u->stack.len - 1);
    return QV_OK;
}

/* Items above the last mark: [*first, stack.len). Removes the mark. */
static qv_status pop_mark(upk *u, size_t *first)
{
    if (!u->marks.len)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: missing MARK", u->what);
    *first = QV_VEC_AT(&u->marks, size_t, --u->marks.len);
    return QV_OK;
}

static qv_status memo_put(upk *u, size_t idx)
{
    qv_pt_value *v;
    QV_TRY(top(u, &v));
    if (idx >= MEMO_MAX)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: data.pkl: memo index %zu too large", u->what, idx);
    if (idx >= u->memo_cap) {
        size_t cap = u->memo_cap ? u->memo_cap : 64;
        while (cap <= idx)
            cap *= 2;
        qv_pt_value **nm = qv_realloc(u->memo, cap * sizeof *nm, "pickle memo");
        if (!nm)
            return QV_ERR_NOMEM;
        memset(nm + u->memo_cap, 0, (cap - u->memo_cap) * sizeof *nm);
        u->memo = nm;
        u->memo_cap = cap;
    }
    if (!u->memo[idx])
        u->memo_n++;
    u->memo[idx] = v;
    return QV_OK;
}

static qv_status memo_get(upk *u, size_t idx)
{
    if (idx >= u->memo_cap || !u->memo[idx])
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: memo index %zu was never stored", u->what, idx);
    return push(u, u->memo[idx]);
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }

static qv_status seq_from_stack(upk *u, qv_pt_kind kind, size_t first)
{
    qv_pt_value *t = node(u->doc, kind);
    if (!t)
        return QV_ERR_NOMEM;
    for (size_t i = first; i < u->stack.len; i++)
        QV_TRY(push_item(t, QV_VEC_AT(&u->stack, qv_pt_value *, i)));
    u->stack.len = first;
    return push(u, t);
}

static qv_status persistent_load(upk *u, qv_pt_value *pid, qv_pt_value **out)
{
    if (pid->kind != QV_PT_TUPLE || pid->len < 5 || pid->items[0]->kind != QV_PT_STR ||
        strcmp(pid->items[0]->s, "storage") != 0)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: data.pkl: unsupported persistent id (not a storage)", u->what);
    qv_pt_value *cls = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    qv_dtype dt;
    if (cls->kind != QV_PT_GLOBAL || !storage_dtype(cls->s, &dt))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: data.pkl: unsupported storage type %s", u->what,
                       cls->kind == QV_PT_GLOBAL ? cls->s : qv_pt_kind_name(cls->kind));
    if (key->kind != QV_PT_STR || numel->kind != QV_PT_INT || numel->i < 0)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: malformed storage reference", u->what);
    char *rec = qv_asprintf("%sdata/%s", u->prefix, key->s);
    if (!rec)
        return QV_ERR_NOMEM;
    const qv_zip_entry *e = qv_zip_find(u->zip, rec);
    qv_free(rec);
    if (!e)
        return qv_fail(QV_ERR_FORMAT, "%s: storage record data/%s is missing", u->what, key->s);
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t)numel->i, (uint64_t)qv_dtype_size(dt), &bytes) || bytes > e->size)
        return qv_fail(QV_ERR_FORMAT, "%s: storage data/%s holds %llu bytes, %lld elements of %s declared", u->what,
                       key->s, (unsigned long long)e->size, (long long)numel->i, qv_dtype_name(dt));
    qv_pt_value *s = node(u->doc, QV_PT_STORAGE);
    if (!s)
        return QV_ERR_NOMEM;
    s->t.dtype = dt;
    s->i = numel->i;
    s->raw = e->data;
    s->raw_len = bytes;
    *out = s;
    return QV_OK;
}

static bool int_tuple(const qv_pt_value *v, int max, int64_t *out, int *n)
{
    if (v->kind != QV_PT_TUPLE && v->kind != QV_PT_LIST)
        return false;
    if (v->len > (size_t)max)
        return false;
    for (size_t i = 0; i < v->len; i++) {
        if (v->items[i]->kind != QV_PT_INT)
            return false;
        out[i] = v->items[i]->i;
    }
    *n = (int)v->len;
    return true;
}

static qv_status rebuild_tensor(upk *u, qv_pt_value *args, qv_pt_value **out)
{
    int64_t shape[QV_MAX_DIMS], stride[QV_MAX_DIMS];
    int nd, ns;
    if (args->kind != QV_PT_TUPLE || args->len < 4 || args->items[0]->kind != QV_PT_STORAGE ||
        args->items[1]->kind != QV_PT_INT || !int_tuple(args->items[2], QV_MAX_DIMS, shape, &nd) ||
        !int_tuple(args->items[3], QV_MAX_DIMS, stride, &ns) || nd != ns)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: malformed _rebuild_tensor arguments", u->what);
    const qv_pt_value *st = args->items[0];
    int64_t off = args->items[1]->i, numel = 1, last = off;
    if (off < 0)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: negative storage offset", u->what);
    for (int d = 0; d < nd; d++) {
        int64_t span;
        if (shape[d] < 0 || stride[d] < 0 || !qv_mul_i64(numel, shape[d], &numel))
            return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: bad tensor shape or stride", u->what);
        if (shape[d] > 0 && (!qv_mul_i64(shape[d] - 1, stride[d], &span) || __builtin_add_overflow(last, span, &last)))
            return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: tensor extent overflows", u->what);
    }
    if (numel > 0 && last >= st->i)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: tensor reaches element %lld of a %lld-element storage", u->what,
                       (long long)last, (long long)st->i);
    qv_pt_value *t = node(u->doc, QV_PT_TENSOR);
    if (!t)
        return QV_ERR_NOMEM;
    size_t es = qv_dtype_size(st->t.dtype), bytes;
    if (!qv_mul_size((size_t)numel, es, &bytes))
        return qv_fail(QV_ERR_NOMEM, "%s: tensor too large", u->what);
    uint8_t *dst = qv_malloc(bytes ? bytes : 1, "torch tensor");
    if (!dst)
        return QV_ERR_NOMEM;
    qv_tensor_view(&t->t, st->t.dtype, dst, nd, shape);
    /* gather in row-major order of the view */
    int64_t idx[QV_MAX_DIMS] = {0};
    for (int64_t k = 0; k < numel; k++) {
        int64_t e = off;
        for (int d = 0; d < nd; d++)
            e += idx[d] * stride[d];
        memcpy(dst + (size_t)k * es, st->raw + (size_t)e * es, es);
        for (int d = nd - 1; d >= 0; d--) {
            if (++idx[d] < shape[d])
                break;
            idx[d] = 0;
        }
    }
    *out = t;
    return QV_OK;
}

static qv_status reduce(upk *u)
{
    qv_pt_value *args, *fn, *res = NULL;
    QV_TRY(pop(u, &args));
    QV_TRY(pop(u, &fn));
    if (fn->kind != QV_PT_GLOBAL)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: data.pkl: call of a non-global", u->what);
    if (!strcmp(fn->s, "torch._utils._rebuild_tensor_v2") || !strcmp(fn->s, "torch._utils._rebuild_tensor")) {
        QV_TRY(rebuild_tensor(u, args, &res));
    } else if (!strcmp(fn->s, "torch._utils._rebuild_parameter") ||
               !strcmp(fn->s, "torch._utils._rebuild_parameter_with_state")) {
        if (args->kind != QV_PT_TUPLE || args->len < 1 || args->items[0]->kind != QV_PT_TENSOR)
            return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: malformed _rebuild_parameter arguments", u->what);
        res = args->items[0];
    } else if (!strcmp(fn->s, "collections.OrderedDict")) {
        if (args->kind != QV_PT_TUPLE || args->len != 0)
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: data.pkl: OrderedDict built from arguments", u->what);
        res = node(u->doc, QV_PT_DICT);
    } else {
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: data.pkl: unsupported object %s (only tensors and plain containers are read)",
                       u->what, fn->s);
    }
    return push(u, res);
}

static qv_status read_str(upk *u, size_t n, qv_pt_kind kind)
{
    QV_TRY(need(u, n));
    qv_pt_value *v = str_n(u->doc, kind, (const char *)u->p, n);
    u->p += n;
    return push(u, v);
}

static qv_status read_global(upk *u, const char *mod, size_t ml, const char *name, size_t nl)
{
    qv_pt_value *v = node(u->doc, QV_PT_GLOBAL);
    if (!v)
        return QV_ERR_NOMEM;
    v->s = qv_asprintf("%.*s.%.*s", (int)ml, mod, (int)nl, name);
    return v->s ? push(u, v) : QV_ERR_NOMEM;
}

static qv_status line(upk *u, const char **s, size_t *n)
{
    const uint8_t *nl = memchr(u->p, '\n', (size_t)(u->end - u->p));
    if (!nl)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl is truncated", u->what);
    *s = (const char *)u->p;
    *n = (size_t)(nl - u->p);
    u->p = nl + 1;
    return QV_OK;
}

static qv_status setitems(upk *u, size_t first)
{
    qv_pt_value *d;
    if (first == 0 || first > u->stack.len || (u->stack.len - first) % 2)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: SETITEMS with an odd number of items", u->what);
    d = QV_VEC_AT(&u->stack, qv_pt_value *, first - 1);
    if (d->kind != QV_PT_DICT)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: SETITEM on a %s", u->what, qv_pt_kind_name(d->kind));
    for (size_t i = first; i < u->stack.len; i += 2)
        QV_TRY(qv_pt_set(d, QV_VEC_AT(&u->stack, qv_pt_value *, i), QV_VEC_AT(&u->stack, qv_pt_value *, i + 1)));
    u->stack.len = first;
    return QV_OK;
}

static qv_status appends(upk *u, size_t first)
{
    if (first == 0 || first > u->stack.len)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: APPENDS without a list", u->what);
    qv_pt_value *l = QV_VEC_AT(&u->stack, qv_pt_value *, first - 1);
    if (l->kind != QV_PT_LIST)
        return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: APPEND on a %s", u->what, qv_pt_kind_name(l->kind));
    for (size_t i = first; i < u->stack.len; i++)
        QV_TRY(push_item(l, QV_VEC_AT(&u->stack, qv_pt_value *, i)));
    u->stack.len = first;
    return QV_OK;
}

static qv_status run(upk *u)
{
    qv_pt_value *v, *w;
    size_t first;
    const char *s1 = NULL, *s2 = NULL;
    size_t n1 = 0, n2 = 0;
    while (u->p < u->end) {
        uint8_t op = *u->p++;
        switch (op) {
        case 0x80: /* PROTO */
            QV_TRY(need(u, 1));
            if (*u->p > 5)
                return qv_fail(QV_ERR_UNSUPPORTED, "%s: data.pkl: pickle protocol %u", u->what, *u->p);
            u->p++;
            break;
        case 0x95: /* FRAME */
            QV_TRY(need(u, 8));
            u->p += 8;
            break;
        case '.': /* STOP */
            QV_TRY(pop(u, &v));
            u->doc->root = v;
            return QV_OK;
        case '(':
            first = u->stack.len;
            QV_TRY(qv_vec_push(&u->marks, &first));
            break;
        case '0':
            QV_TRY(pop(u, &v));
            break;
        case '1':
            QV_TRY(pop_mark(u, &first));
            u->stack.len = first;
            break;
        case '2':
            QV_TRY(top(u, &v));
            QV_TRY(push(u, v));
            break;
        case 'N':
            QV_TRY(push(u, qv_pt_none(u->doc)));
            break;
        case 0x88:
        case 0x89:
            QV_TRY(push(u, qv_pt_bool(u->doc, op == 0x88)));
            break;
        case 'J':
            QV_TRY(need(u, 4));
            QV_TRY(push(u, qv_pt_int(u->doc, (int32_t)le32(u->p))));
            u->p += 4;
            break;
        case 'K':
            QV_TRY(need(u, 1));
            QV_TRY(push(u, qv_pt_int(u->doc, *u->p++)));
            break;
        case 'M':
            QV_TRY(need(u, 2));
            QV_TRY(push(u, qv_pt_int(u->doc, u->p[0] | (u->p[1] << 8))));
            u->p += 2;
            break;
        case 0x8a: { /* LONG1: little-endian two's complement */
            QV_TRY(need(u, 1));
            size_t n = *u->p++;
            QV_TRY(need(u, n));
            if (n > 8)
                return qv_fail(QV_ERR_UNSUPPORTED, "%s: data.pkl: integer wider than 64 bits", u->what);
            uint64_t x = 0;
            for (size_t i = 0; i < n; i++)
                x |= (uint64_t)u->p[i] << (8 * i);
            if (n && n < 8 && (u->p[n - 1] & 0x80))
                x |= ~(uint64_t)0 << (8 * n);
            u->p += n;
            QV_TRY(push(u, qv_pt_int(u->doc, (int64_t)x)));
            break;
        }
        case 'G': {
            QV_TRY(need(u, 8));
            uint64_t x = 0;
            for (int i = 0; i < 8; i++)
                x = (x << 8) | u->p[i];
            double d;
            memcpy(&d, &x, 8);
            u->p += 8;
            QV_TRY(push(u, qv_pt_float(u->doc, d)));
            break;
        }
        case 'X':
        case 'T':
        case 'B':
            QV_TRY(need(u, 4));
            n1 = le32(u->p);
            u->p += 4;
            QV_TRY(read_str(u, n1, QV_PT_STR));
            break;
        case 0x8c:
        case 'U':
        case 'C':
            QV_TRY(need(u, 1));
            n1 = *u->p++;
            QV_TRY(read_str(u, n1, QV_PT_STR));
            break;
        case ')':
            QV_TRY(push(u, qv_pt_seq(u->doc, QV_PT_TUPLE)));
            break;
        case 't':
            QV_TRY(pop_mark(u, &first));
            QV_TRY(seq_from_stack(u, QV_PT_TUPLE, first));
            break;
        case 0x85:
        case 0x86:
        case 0x87: {
            size_t n = (size_t)(op - 0x84);
            size_t floor = u->marks.len ? QV_VEC_AT(&u->marks, size_t, u->marks.len - 1) : 0;
            if (u->stack.len < floor + n)
                return qv_fail(QV_ERR_FORMAT, "%s: data.pkl: stack underflow", u->what);
            QV_TRY(seq_from_stack(u, QV_PT_TUPLE, u->stack.len - n));
            break;
        }
        case ']':
            QV_TRY(push(u, qv_pt_seq(u->doc, QV_PT_LIST)));
            break;
        case 'l':
            QV_TRY(pop_mark(u, &first));
            QV_TRY(seq_from_stack(u, QV_PT_LIST, first));
            break;
        case 'a':
            QV_TRY(pop(u, &v));
            QV_TRY(top(u, &w));
            if (w->kind != QV_PT_LIST)
                return bad(u, "APPEND on a %s", qv_pt_kind_name(w->kind));
            QV_TRY(push_item(w, v));
            break;
        case 'e':
            QV_TRY(pop_mark(u, &first));
            QV_TRY(appends(u, first));
            break;
        case '}':
            QV_TRY(push(u, qv_pt_dict(u->doc)));
            break;
        case 'd': {
            QV_TRY(pop_mark(u, &first));
            qv_pt_value *d = qv_pt_dict(u->doc);
            if (!d)
                return QV_ERR_NOMEM;
            if ((u->stack.len - first) % 2)
                return bad(u, "%s", "DICT with an odd number of items");
            for (size_t i = first; i < u->stack.len; i += 2)
                QV_TRY(qv_pt_set(d, QV_VEC_AT(&u->stack, qv_pt_value *, i), QV_VEC_AT(&u->stack, qv_pt_value *, i + 1)));
            u->stack.len = first;
            QV_TRY(push(u, d));
            break;
        }
        case 's':
            if (u->stack.len < 3)
                return bad(u, "%s", "SETITEM stack underflow");
            QV_TRY(setitems(u, u->stack.len - 2));
            break;
        case 'u':
            QV_TRY(pop_mark(u, &first));
            QV_TRY(setitems(u, first));
            break;
        case 'q':
            QV_TRY(need(u, 1));
            QV_TRY(memo_put(u, *u->p++));
            break;
        case 'r':
            QV_TRY(need(u, 4));
            QV_TRY(memo_put(u, le32(u->p)));
            u->p += 4;
            break;
        case 0x94: /* MEMOIZE */
            QV_TRY(memo_put(u, u->memo_n));
            break;
        case 'h':
            QV_TRY(need(u, 1));
            QV_TRY(memo_get(u, *u->p++));
            break;
        case 'j':
            QV_TRY(need(u, 4));
            QV_TRY(memo_get(u, le32(u->p)));
            u->p += 4;
            break;
        case 'c':
            QV_TRY(line(u, &s1, &n1));
            QV_TRY(line(u, &s2, &n2));
            QV_TRY(read_global(u, s1, n1, s2, n2));
            break;
        case 0x93: /* STACK_GLOBAL */
            QV_TRY(pop(u, &w));
            QV_TRY(pop(u, &v));
            if (v->kind != QV_PT_STR || w->kind != QV_PT_STR)
                return bad(u, "%s", "STACK_GLOBAL needs two strings");
            QV_TRY(read_global(u, v->s, v->len, w->s, w->len));
            break;
        case 'R':
            QV_TRY(reduce(u));
            break;
        case 'Q':
            QV_TRY(pop(u, &v));
            QV_TRY(persistent_load(u, v, &w));
            QV_TRY(push(u, w));
            break;
        case 'b': /* BUILD: only empty states (OrderedDict, parameters without attributes) */
            QV_TRY(pop(u, &v));
            if (!(v->kind == QV_PT_NONE || (v->kind == QV_PT_DICT && v->len == 0) ||
                  (v->kind == QV_PT_TUPLE && v->len == 0)))
                return qv_fail(QV_ERR_UNSUPPORTED, "%s: data.pkl: object state (BUILD) is not supported", u->what);
            break;
        default: {
            char hex[8];
            snprintf(hex, sizeof hex, "0x%02x", op);
            return bad(u, "unsupported pickle opcode %s", hex);
        }
        }
    }
    return qv_fail(QV_ERR_FORMAT, "%s: data.pkl ends without STOP", u->what);
}

static qv_status load_zip(const qv_zip *z, const char *what, qv_pt **out)
{
    *out = NULL;
    const qv_zip_entry *pkl = NULL;
    char prefix[256] = "";
    for (size_t i = 0; i < z->n && !pkl; i++) {
        const char *nm = z->entries[i].name, *slash = strchr(nm, '/');
        if (slash && strcmp(slash, "/data.pkl") == 0 && (size_t)(slash - nm) < sizeof prefix - 1) {
            pkl = &z->entries[i];
            memcpy(prefix, nm, (size_t)(slash - nm) + 1);
            prefix[slash - nm + 1] = 0;
        }
    }
    if (!pkl)
        return qv_fail(QV_ERR_FORMAT, "%s: not a torch.save archive (no <archive>/data.pkl)", what);
    char rec[300];
    snprintf(rec, sizeof rec, "%sbyteorder", prefix);
    const qv_zip_entry *bo = qv_zip_find(z, rec);
    if (bo && !(bo->size == 6 && memcmp(bo->data, "little", 6) == 0))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: big-endian torch archives are not supported", what);
    qv_pt *doc;
    QV_TRY(qv_pt_new(&doc));
    upk u = {.doc = doc, .what = what, .p = pkl->data, .end = pkl->data + pkl->size, .zip = z, .prefix = prefix};
    qv_vec_init(&u.stack, sizeof(qv_pt_value *));
    qv_vec_init(&u.marks, sizeof(size_t));
    qv_status st = run(&u);
    qv_vec_free(&u.stack);
    qv_vec_free(&u.marks);
    qv_free(u.memo);
    if (st != QV_OK) {
        qv_pt_free(doc);
        return st;
    }
    *out = doc;
    return QV_OK;
}

static qv_status check_legacy(const uint8_t *b, size_t len, const char *what)
{
    if (len >= 2 && b[0] == 0x80 && b[1] <= 5)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: legacy (pre-1.6, non-zip) torch.save format; re-save it with a current torch",
                       what);
    return QV_OK;
}

qv_status qv_pt_load_mem(const uint8_t *buf, size_t len, const char *what, qv_pt **out)
{
    *out = NULL;
    QV_TRY(check_legacy(buf, len, what));
    qv_zip *z;
    QV_TRY(qv_zip_parse(buf, len, what, &z));
    qv_status st = load_zip(z, what, out);
    qv_zip_close(z);
    return st;
}

qv_status qv_pt_load(const char *path, qv_pt **out)
{
    *out = NULL;
    qv_zip *z;
    qv_status st = qv_zip_open(path, &z);
    if (st != QV_OK) {
        /* name the legacy format explicitly instead of "not a zip archive" */
        FILE *f = fopen(path, "rb");
        if (f) {
            uint8_t h[2];
            size_t n = fread(h, 1, 2, f);
            fclose(f);
            if (n == 2 && check_legacy(h, 2, path) != QV_OK)
                return QV_ERR_UNSUPPORTED;
        }
        return st;
    }
    st = load_zip(z, path, out);
    qv_zip_close(z);
    return st;
}
