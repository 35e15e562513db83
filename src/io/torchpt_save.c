/* torchpt_save.c — the torch.save writer (torchpt.h): a protocol-2 pickle with the opcode choices
 * of CPython's Pickler for these types (BINPUT memo, TUPLE1-3, EMPTY_LIST/DICT with APPENDS /
 * SETITEMS batches of 1000), tensors as torch._utils._rebuild_tensor_v2 calls on persistent-id
 * storages, and the record order of torch 2.x `_save` plus PyTorchStreamWriter's trailing
 * records (torch/serialization.py, caffe2/serialize/inline_container.cc). */
#include <stdio.h>
#include <string.h>

#include "../core/strmap.h"
#include "torchpt.h"
#include "zipstore.h"

/* =========================================================================================
 * Pickler (protocol 2, the opcode choices of CPython's Pickler for these types)
 * ========================================================================================= */

typedef struct pkw {
    qv_vec out;        /* uint8_t */
    uint32_t memo;     /* next memo index */
    qv_strmap strs;    /* string -> memo index (strings are immutable; sharing is exact) */
    int64_t g_rebuild, g_odict, g_storage_cls[QV_DTYPE_COUNT]; /* memo indexes of globals, -1 = not yet */
    qv_vec storages;   /* const qv_pt_value * (tensors), key = position */
    int depth;
} pkw;

static qv_status emit(pkw *w, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        QV_TRY(qv_vec_push(&w->out, &b[i]));
    return QV_OK;
}

static qv_status emit1(pkw *w, uint8_t c) { return qv_vec_push(&w->out, &c); }

static qv_status emit_u32(pkw *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return emit(w, b, 4);
}

static qv_status memoize(pkw *w, uint32_t *idx)
{
    *idx = w->memo++;
    if (*idx < 256) {
        QV_TRY(emit1(w, 'q'));
        return emit1(w, (uint8_t)*idx);
    }
    QV_TRY(emit1(w, 'r'));
    return emit_u32(w, *idx);
}

static qv_status memo_ref(pkw *w, uint32_t idx)
{
    if (idx < 256) {
        QV_TRY(emit1(w, 'h'));
        return emit1(w, (uint8_t)idx);
    }
    QV_TRY(emit1(w, 'j'));
    return emit_u32(w, idx);
}

static qv_status put_int(pkw *w, int64_t v)
{
    if (v >= 0 && v < 256) {
        QV_TRY(emit1(w, 'K'));
        return emit1(w, (uint8_t)v);
    }
    if (v >= 0 && v < 65536) {
        QV_TRY(emit1(w, 'M'));
        QV_TRY(emit1(w, (uint8_t)v));
        return emit1(w, (uint8_t)(v >> 8));
    }
    if (v >= INT32_MIN && v <= INT32_MAX) {
        QV_TRY(emit1(w, 'J'));
        return emit_u32(w, (uint32_t)(int32_t)v);
    }
    /* LONG1 with the minimal two's complement length, as pickle.encode_long */
    uint8_t b[9];
    int n = 0;
    uint64_t x = (uint64_t)v;
    for (n = 1; n <= 8; n++) {
        int64_t lo = -((int64_t)1 << (8 * n - 1)), hi = ((int64_t)1 << (8 * n - 1)) - 1;
        if (n == 8 || (v >= lo && v <= hi))
            break;
    }
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(x >> (8 * i));
    QV_TRY(emit1(w, 0x8a));
    QV_TRY(emit1(w, (uint8_t)n));
    return emit(w, b, (size_t)n);
}

static qv_status put_str(pkw *w, const char *s, size_t n)
{
    int64_t idx;
    if (qv_strmap_get(&w->strs, s, n, &idx))
        return memo_ref(w, (uint32_t)idx);
    QV_TRY(emit1(w, 'X'));
    QV_TRY(emit_u32(w, (uint32_t)n));
    QV_TRY(emit(w, s, n));
    uint32_t m;
    QV_TRY(memoize(w, &m));
    return qv_strmap_put(&w->strs, s, n, m, NULL);
}

static qv_status put_global(pkw *w, int64_t *slot, const char *mod, const char *name)
{
    if (*slot >= 0)
        return memo_ref(w, (uint32_t)*slot);
    QV_TRY(emit1(w, 'c'));
    QV_TRY(emit(w, mod, strlen(mod)));
    QV_TRY(emit1(w, '\n'));
    QV_TRY(emit(w, name, strlen(name)));
    QV_TRY(emit1(w, '\n'));
    uint32_t m;
    QV_TRY(memoize(w, &m));
    *slot = m;
    return QV_OK;
}

static qv_status save(pkw *w, const qv_pt_value *v);

static qv_status put_int_tuple(pkw *w, int n, const int64_t *x)
{
    uint32_t m;
    if (n == 0)
        return emit1(w, ')');
    if (n > 3)
        QV_TRY(emit1(w, '('));
    for (int i = 0; i < n; i++)
        QV_TRY(put_int(w, x[i]));
    QV_TRY(emit1(w, n > 3 ? 't' : (uint8_t)(0x84 + n)));
    return memoize(w, &m);
}

static qv_status put_tensor(pkw *w, const qv_pt_value *v)
{
    const char *cls = qv_pt_storage_class(v->t.dtype);
    if (!cls)
        return qv_fail(QV_ERR_UNSUPPORTED, "torch writer: dtype %s has no storage class", qv_dtype_name(v->t.dtype));
    int slot = (int)v->t.dtype;
    uint32_t m;
    size_t key = w->storages.len;
    QV_TRY(qv_vec_push(&w->storages, &v));
    QV_TRY(put_global(w, &w->g_rebuild, "torch._utils", "_rebuild_tensor_v2"));
    QV_TRY(emit1(w, '('));
    /* persistent id ('storage', torch.<cls>, key, 'cpu', numel), then BINPERSID */
    QV_TRY(emit1(w, '('));
    QV_TRY(put_str(w, "storage", 7));
    QV_TRY(put_global(w, &w->g_storage_cls[slot], "torch", cls));
    char ks[32];
    snprintf(ks, sizeof ks, "%zu", key);
    QV_TRY(put_str(w, ks, strlen(ks)));
    QV_TRY(put_str(w, "cpu", 3));
    QV_TRY(put_int(w, qv_tensor_numel(&v->t)));
    QV_TRY(emit1(w, 't'));
    QV_TRY(memoize(w, &m));
    QV_TRY(emit1(w, 'Q'));
    QV_TRY(put_int(w, 0)); /* storage offset */
    int64_t stride[QV_MAX_DIMS], acc = 1;
    for (int d = v->t.ndim - 1; d >= 0; d--) {
        stride[d] = acc;
        acc *= v->t.shape[d] ? v->t.shape[d] : 1;
    }
    QV_TRY(put_int_tuple(w, v->t.ndim, v->t.shape));
    QV_TRY(put_int_tuple(w, v->t.ndim, stride));
    QV_TRY(emit1(w, 0x89)); /* requires_grad False */
    QV_TRY(put_global(w, &w->g_odict, "collections", "OrderedDict"));
    QV_TRY(emit1(w, ')'));
    QV_TRY(emit1(w, 'R'));
    QV_TRY(memoize(w, &m));
    QV_TRY(emit1(w, 't'));
    QV_TRY(memoize(w, &m));
    QV_TRY(emit1(w, 'R'));
    return memoize(w, &m);
}

static qv_status save_items(pkw *w, const qv_pt_value *v, size_t per, uint8_t one, uint8_t many)
{
    size_t n = v->len;
    for (size_t b = 0; b < n; b += 1000) {
        size_t k = QV_MIN(1000, n - b);
        if (k > 1)
            QV_TRY(emit1(w, '('));
        for (size_t i = b * per; i < (b + k) * per; i++)
            QV_TRY(save(w, v->items[i]));
        QV_TRY(emit1(w, k > 1 ? many : one));
    }
    return QV_OK;
}

static qv_status save(pkw *w, const qv_pt_value *v)
{
    uint32_t m;
    if (++w->depth > 64)
        return qv_fail(QV_ERR_UNSUPPORTED, "torch writer: nesting deeper than 64");
    qv_status st = QV_OK;
    switch (v->kind) {
    case QV_PT_NONE:
        st = emit1(w, 'N');
        break;
    case QV_PT_BOOL:
        st = emit1(w, v->i ? 0x88 : 0x89);
        break;
    case QV_PT_INT:
        st = put_int(w, v->i);
        break;
    case QV_PT_FLOAT: {
        uint64_t x;
        memcpy(&x, &v->f, 8);
        st = emit1(w, 'G');
        for (int i = 7; i >= 0 && st == QV_OK; i--)
            st = emit1(w, (uint8_t)(x >> (8 * i)));
        break;
    }
    case QV_PT_STR:
        st = put_str(w, v->s, v->len);
        break;
    case QV_PT_TUPLE:
        if (v->len == 0) {
            st = emit1(w, ')');
            break;
        }
        if (v->len > 3)
            QV_CHECK(st = emit1(w, '('), done);
        for (size_t i = 0; i < v->len; i++)
            QV_CHECK(st = save(w, v->items[i]), done);
        QV_CHECK(st = emit1(w, v->len > 3 ? 't' : (uint8_t)(0x84 + v->len)), done);
        st = memoize(w, &m);
        break;
    case QV_PT_LIST:
        QV_CHECK(st = emit1(w, ']'), done);
        QV_CHECK(st = memoize(w, &m), done);
        st = save_items(w, v, 1, 'a', 'e');
        break;
    case QV_PT_DICT:
        QV_CHECK(st = emit1(w, '}'), done);
        QV_CHECK(st = memoize(w, &m), done);
        st = save_items(w, v, 2, 's', 'u');
        break;
    case QV_PT_TENSOR:
        st = put_tensor(w, v);
        break;
    default:
        st = qv_fail(QV_ERR_INVALID, "torch writer: cannot save a %s", qv_pt_kind_name(v->kind));
    }
done:
    w->depth--;
    return st;
}

qv_status qv_pt_save(const char *path, const qv_pt_value *root)
{
    pkw w = {.g_rebuild = -1, .g_odict = -1};
    for (size_t i = 0; i < QV_ARRAY_LEN(w.g_storage_cls); i++)
        w.g_storage_cls[i] = -1;
    qv_vec_init(&w.out, 1);
    qv_vec_init(&w.storages, sizeof(const qv_pt_value *));
    qv_strmap_init(&w.strs);
    qv_zip_writer z;
    qv_zip_writer_init(&z);
    static const uint8_t proto[2] = {0x80, 0x02};
    qv_status st = emit(&w, proto, 2);
    if (st == QV_OK)
        st = save(&w, root);
    if (st == QV_OK)
        st = emit1(&w, '.');
    /* record order of torch 2.x `_save`, then what the stream writer adds at the end */
    if (st == QV_OK)
        st = qv_zip_writer_add(&z, "archive/data.pkl", w.out.data, w.out.len);
    if (st == QV_OK)
        st = qv_zip_writer_add(&z, "archive/.format_version", "1", 1);
    if (st == QV_OK)
        st = qv_zip_writer_add(&z, "archive/.storage_alignment", "64", 2);
    if (st == QV_OK)
        st = qv_zip_writer_add(&z, "archive/byteorder", "little", 6);
    uint64_t name_hash = 1469598103934665603ull, crc_comb = 0;
    for (size_t i = 0; st == QV_OK && i < w.storages.len; i++) {
        const qv_pt_value *t = QV_VEC_AT(&w.storages, const qv_pt_value *, i);
        char name[64];
        snprintf(name, sizeof name, "archive/data/%zu", i);
        st = qv_zip_writer_add(&z, name, t->t.data, qv_tensor_nbytes(&t->t));
        if (st == QV_OK)
            crc_comb = crc_comb * 31 + z.entries[z.n - 1].crc;
    }
    if (st == QV_OK)
        st = qv_zip_writer_add(&z, "archive/version", "3\n", 2);
    if (st == QV_OK) {
        for (size_t i = 0; i < z.n; i++)
            name_hash = (name_hash ^ qv_hash_bytes(z.entries[i].name, strlen(z.entries[i].name))) * 1099511628211ull;
        char id[48];
        snprintf(id, sizeof id, "%020llu%020llu", (unsigned long long)name_hash, (unsigned long long)crc_comb);
        st = qv_zip_writer_add(&z, "archive/.data/serialization_id", id, 40);
    }
    if (st == QV_OK)
        st = qv_zip_writer_finish(&z, path);
    qv_zip_writer_free(&z);
    qv_vec_free(&w.out);
    qv_vec_free(&w.storages);
    qv_strmap_free(&w.strs);
    return st;
}
