/* ctensors.c — compressed-tensors tensors of one Linear (FORMATS.md §4.3, §4.4; compressed-tensors
 * 0.18 compressors/pack_quantized and the int/float quantized compressors):
 *   pack-quantized:  weight_packed I32 [out, ceil(in*b/32)] (dense stream of u = q + 2^(b-1)),
 *                    weight_scale T [out, groups], weight_zero_point I32 [ceil(out*b/32), groups]
 *                    (asymmetric only, packed along out, stores zp + 2^(b-1)), weight_shape I64 [2];
 *   int-quantized:   weight I8 [out, in] (signed codes), weight_scale T [out, 1];
 *   float-quantized: weight F8_E4M3 [out, in], weight_scale T [out, 1] or [1], input_scale T [1].
 * The signed/offset convention makes the stored fields equal MBQ's unsigned codes and zero points:
 * CT's q = u - 2^(b-1) and zp = z - 2^(b-1) give (q - zp)·s = (u - z)·s. */
#include <string.h>

#include "formats.h"
#include "fp.h"
#include "pack.h"

qv_status qv_ct_pack_check(const qv_qgeom *g, const char *module)
{
    if (g->bits < 1 || g->bits > 8 || g->ci % g->group)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: pack-quantized holds 1..8-bit codes with whole groups (bits %d, group %lld, in %lld)",
                       module, g->bits, (long long)g->group, (long long)g->ci);
    return QV_OK;
}

static void store_scales_T(void *dst, const float *s, size_t n, qv_dtype T) { qv_convert(dst, T, s, QV_F32, n); }

qv_status qv_ct_pack_emit(qv_olist *out, const char *module, const qv_qgeom *g, const qv_qlinear *q)
{
    const int64_t co = g->co, ci = g->ci, ng = ci / g->group, wpr = qv_pack_words(ci, g->bits);
    const bool data = q != NULL;
    int64_t s_w[2] = {co, wpr}, s_s[2] = {co, ng}, s_z[2] = {qv_pack_words(co, g->bits), ng}, s_shape[1] = {2};
    qv_otensor *w = qv_olist_add(out, module, "weight_packed", QV_I32, 2, s_w, data);
    if (!w)
        return QV_ERR_NOMEM;
    uint32_t *words = NULL;
    if (data) {
        size_t nz = (size_t)(s_z[0] * ng), nw = (size_t)(co * wpr);
        words = qv_malloc((nw > nz ? nw : nz) * 4, "packed words");
        if (!words)
            return QV_ERR_NOMEM;
        for (int64_t n = 0; n < co; n++)
            qv_pack_stream(words + n * wpr, 1, q->u + n * ci, 1, ci, g->bits);
        qv_words_store(w->data, words, nw);
    }
    qv_otensor *s = qv_olist_add(out, module, "weight_scale", g->T, 2, s_s, data);
    qv_status st = s ? QV_OK : QV_ERR_NOMEM;
    if (st == QV_OK && data)
        store_scales_T(s->data, q->s, (size_t)(co * ng), g->T);
    if (st == QV_OK && !g->sym) {
        qv_otensor *z = qv_olist_add(out, module, "weight_zero_point", QV_I32, 2, s_z, data);
        st = z ? QV_OK : QV_ERR_NOMEM;
        if (st == QV_OK && data) {
            for (int64_t gi = 0; gi < ng; gi++) /* word w of group gi at [w][gi] */
                qv_pack_stream(words + gi, ng, q->z + gi, ng, co, g->bits);
            qv_words_store(z->data, words, (size_t)(s_z[0] * ng));
        }
    }
    if (st == QV_OK) {
        qv_otensor *sh = qv_olist_add(out, module, "weight_shape", QV_I64, 1, s_shape, data);
        st = sh ? QV_OK : QV_ERR_NOMEM;
        if (st == QV_OK && data) {
            int64_t v[2] = {co, ci};
            qv_convert(sh->data, QV_I64, v, QV_I64, 2);
        }
    }
    qv_free(words);
    return st;
}

qv_status qv_ct_int_emit(qv_olist *out, const char *module, const qv_qgeom *g, const qv_qlinear *q)
{
    const int64_t co = g->co, ci = g->ci, ng = ci / g->group;
    const bool data = q != NULL;
    int64_t s_w[2] = {co, ci}, s_s[2] = {co, ng};
    if (!g->sym || g->bits > 8)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: int-quantized export needs symmetric codes of at most 8 bits", module);
    qv_otensor *w = qv_olist_add(out, module, "weight", QV_I8, 2, s_w, data);
    if (!w)
        return QV_ERR_NOMEM;
    if (data) {
        int off = 1 << (g->bits - 1);
        for (int64_t i = 0; i < co * ci; i++)
            ((int8_t *)w->data)[i] = (int8_t)((int)q->u[i] - off);
    }
    qv_otensor *s = qv_olist_add(out, module, "weight_scale", g->T, 2, s_s, data);
    if (!s)
        return QV_ERR_NOMEM;
    if (data)
        store_scales_T(s->data, q->s, (size_t)(co * ng), g->T);
    return QV_OK;
}

qv_status qv_ct_fp8_emit(qv_olist *out, const char *module, int64_t co, int64_t ci, bool per_tensor, qv_dtype T,
                         const qv_fp8linear *q, const float *input_scale)
{
    const bool data = q != NULL;
    int64_t s_w[2] = {co, ci}, s_s[2] = {co, 1}, s_one[1] = {1};
    qv_otensor *w = qv_olist_add(out, module, "weight", QV_F8_E4M3, 2, s_w, data);
    if (!w)
        return QV_ERR_NOMEM;
    if (data)
        memcpy(w->data, q->c, (size_t)(co * ci));
    qv_otensor *s = per_tensor ? qv_olist_add(out, module, "weight_scale", T, 1, s_one, data)
                               : qv_olist_add(out, module, "weight_scale", T, 2, s_s, data);
    if (!s)
        return QV_ERR_NOMEM;
    if (data)
        store_scales_T(s->data, q->s, per_tensor ? 1 : (size_t)co, T);
    if (input_scale) {
        qv_otensor *is = qv_olist_add(out, module, "input_scale", T, 1, s_one, data);
        if (!is)
            return QV_ERR_NOMEM;
        if (data)
            store_scales_T(is->data, input_scale, 1, T);
    }
    return QV_OK;
}

/* ---- reading --------------------------------------------------------------------------------- */

static qv_status scale_f32(const qv_tensor *t, float *dst, const char *path, const char *module)
{
    if (!qv_dtype_is_float(t->dtype) || t->dtype == QV_F8_E4M3)
        return qv_fail(QV_ERR_FORMAT, "%s: %s.weight_scale has dtype %s", path, module, qv_dtype_name(t->dtype));
    return qv_convert(dst, QV_F32, t->data, t->dtype, (size_t)qv_tensor_numel(t));
}

qv_status qv_ct_pack_read(const qv_checkpoint *ck, const char *module, int bits, bool sym, qv_qlinear *q)
{
    qv_tensor wp, ws, shp, zp;
    QV_TRY(qv_ck_get_typed(ck, module, "weight_packed", QV_I32, 2, &wp));
    QV_TRY(qv_ck_get_typed(ck, module, "weight_scale", (qv_dtype)-1, 2, &ws));
    QV_TRY(qv_ck_get_typed(ck, module, "weight_shape", (qv_dtype)-1, 1, &shp));
    if (shp.shape[0] != 2 || (shp.dtype != QV_I64 && shp.dtype != QV_I32))
        return qv_fail(QV_ERR_FORMAT, "%s: %s.weight_shape must be 2 integers", ck->path, module);
    int64_t co = (int64_t)qv_load_f64(shp.data, shp.dtype, 0), ci = (int64_t)qv_load_f64(shp.data, shp.dtype, 1);
    int64_t ng = ws.shape[1];
    if (co <= 0 || ci <= 0 || wp.shape[0] != co || ws.shape[0] != co || ng <= 0 || ci % ng)
        return qv_fail(QV_ERR_FORMAT, "%s: %s: weight_packed/weight_scale/weight_shape disagree", ck->path, module);
    bool dense = wp.shape[1] == qv_pack_words(ci, bits), floor = wp.shape[1] == qv_pack_words_floor(ci, bits);
    if (!dense && !floor)
        return qv_fail(QV_ERR_FORMAT, "%s: %s.weight_packed has %lld words per row, neither the dense (%lld) nor the 0.17 (%lld) %d-bit packing",
                       ck->path, module, (long long)wp.shape[1], (long long)qv_pack_words(ci, bits),
                       (long long)qv_pack_words_floor(ci, bits), bits);
    QV_TRY(qv_qlinear_alloc(q, co, ci, bits, ci / ng, sym, ws.dtype));
    size_t nw = (size_t)(co * wp.shape[1]);
    uint32_t *w = qv_malloc(nw * 4, "packed words");
    if (!w) {
        qv_qlinear_free(q);
        return QV_ERR_NOMEM;
    }
    qv_words_load(w, wp.data, nw);
    for (int64_t n = 0; n < co; n++) {
        if (dense)
            qv_unpack_stream(q->u + n * ci, 1, w + n * wp.shape[1], 1, ci, bits);
        else
            qv_unpack_floor(q->u + n * ci, w + n * wp.shape[1], ci, bits);
    }
    qv_free(w);
    qv_status st = scale_f32(&ws, q->s, ck->path, module);
    if (st == QV_OK && sym)
        memset(q->z, 1 << (bits - 1), (size_t)(co * ng));
    if (st == QV_OK && !sym) {
        st = qv_ck_get_typed(ck, module, "weight_zero_point", QV_I32, 2, &zp);
        bool zd = st == QV_OK && zp.shape[0] == qv_pack_words(co, bits), zf = st == QV_OK && zp.shape[0] == qv_pack_words_floor(co, bits);
        if (st == QV_OK && (zp.shape[1] != ng || (!zd && !zf)))
            st = qv_fail(QV_ERR_FORMAT, "%s: %s.weight_zero_point has shape [%lld, %lld]", ck->path, module,
                         (long long)zp.shape[0], (long long)zp.shape[1]);
        if (st == QV_OK) {
            size_t nz = (size_t)(zp.shape[0] * ng);
            uint32_t *zw = qv_malloc(nz * 4, "zero words");
            uint32_t *colw = qv_malloc((size_t)zp.shape[0] * 4, "zero column");
            uint8_t *col = qv_malloc((size_t)co, "zero column");
            if (!zw || !colw || !col) {
                st = QV_ERR_NOMEM;
            } else {
                qv_words_load(zw, zp.data, nz);
                for (int64_t gi = 0; gi < ng; gi++) {
                    if (zd) {
                        qv_unpack_stream(q->z + gi, ng, zw + gi, ng, co, bits);
                    } else {
                        for (int64_t k = 0; k < zp.shape[0]; k++)
                            colw[k] = zw[k * ng + gi];
                        qv_unpack_floor(col, colw, co, bits);
                        for (int64_t n = 0; n < co; n++)
                            q->z[n * ng + gi] = col[n];
                    }
                }
            }
            qv_free(zw);
            qv_free(colw);
            qv_free(col);
        }
    }
    if (st != QV_OK)
        qv_qlinear_free(q);
    return st;
}

qv_status qv_ct_int_read(const qv_checkpoint *ck, const char *module, int bits, qv_qlinear *q)
{
    qv_tensor w, ws, zp;
    QV_TRY(qv_ck_get_typed(ck, module, "weight", QV_I8, 2, &w));
    QV_TRY(qv_ck_get_typed(ck, module, "weight_scale", (qv_dtype)-1, 2, &ws));
    int64_t co = w.shape[0], ci = w.shape[1], ng = ws.shape[1];
    if (ws.shape[0] != co || ng <= 0 || ci % ng)
        return qv_fail(QV_ERR_FORMAT, "%s: %s: weight and weight_scale shapes disagree", ck->path, module);
    char *zn = qv_asprintf("%s.weight_zero_point", module);
    if (!zn)
        return QV_ERR_NOMEM;
    bool asym = qv_checkpoint_find(ck, zn, NULL) != NULL;
    qv_free(zn);
    QV_TRY(qv_qlinear_alloc(q, co, ci, bits, ci / ng, !asym, ws.dtype));
    int off = 1 << (bits - 1);
    qv_status st = QV_OK;
    for (int64_t i = 0; i < co * ci && st == QV_OK; i++) {
        int v = ((const int8_t *)w.data)[i] + off;
        if (v < 0 || v >= (1 << bits))
            st = qv_fail(QV_ERR_FORMAT, "%s: %s: code %d outside %d bits", ck->path, module, v - off, bits);
        q->u[i] = (uint8_t)v;
    }
    if (st == QV_OK)
        st = scale_f32(&ws, q->s, ck->path, module);
    if (st == QV_OK && asym) { /* naive-quantized (older CT): unpacked I8 zero points [out, groups] */
        st = qv_ck_get_typed(ck, module, "weight_zero_point", QV_I8, 2, &zp);
        if (st == QV_OK && (zp.shape[0] != co || zp.shape[1] != ng))
            st = qv_fail(QV_ERR_FORMAT, "%s: %s.weight_zero_point shape disagrees", ck->path, module);
        for (int64_t i = 0; st == QV_OK && i < co * ng; i++)
            q->z[i] = (uint8_t)(((const int8_t *)zp.data)[i] + off);
    } else if (st == QV_OK) {
        memset(q->z, off, (size_t)(co * ng));
    }
    if (st != QV_OK)
        qv_qlinear_free(q);
    return st;
}

qv_status qv_ct_fp8_read(const qv_checkpoint *ck, const char *module, qv_fp8linear *q)
{
    qv_tensor w, ws;
    QV_TRY(qv_ck_get_typed(ck, module, "weight", QV_F8_E4M3, 2, &w));
    char *n = qv_asprintf("%s.weight_scale", module);
    if (!n)
        return QV_ERR_NOMEM;
    qv_status st = qv_checkpoint_get(ck, n, &ws);
    qv_free(n);
    QV_TRY(st);
    int64_t co = w.shape[0], ci = w.shape[1], ns = qv_tensor_numel(&ws);
    if (ns != 1 && ns != co)
        return qv_fail(QV_ERR_FORMAT, "%s: %s.weight_scale has %lld values (per tensor or per row expected; block scales are not supported)",
                       ck->path, module, (long long)ns);
    QV_TRY(qv_fp8linear_alloc(q, co, ci, ns == 1 && co != 1, ws.dtype));
    memcpy(q->c, w.data, (size_t)(co * ci));
    st = scale_f32(&ws, q->s, ck->path, module);
    if (st != QV_OK)
        qv_fp8linear_free(q);
    return st;
}
