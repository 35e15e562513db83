/* gptq.c — GPTQ v1 tensors of one Linear (FORMATS.md §3; AutoGPTQ/GPTQModel QuantLinear as read by
 * vLLM's gptq.py): qweight I32 [in*b/32, out] packed along the input dimension, qzeros I32
 * [groups, out*b/32] packed along the output dimension holding z - 1 ("gptq" checkpoint_format;
 * kernels add the 1 back per field), scales F16 [groups, out], g_idx I32 [in] = k / group
 * (desc_act false), bias F16. b in {2, 3, 4, 8}; 3 bits use the 96-bit stream of 32 values. */
#include <string.h>

#include "formats.h"
#include "fp.h"
#include "pack.h"

qv_status qv_gptq_check(const qv_qgeom *g, const char *module)
{
    if (g->bits != 2 && g->bits != 3 && g->bits != 4 && g->bits != 8)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: GPTQ stores 2, 3, 4 or 8-bit weights, not %d", module, g->bits);
    if ((g->ci * g->bits) % 32 || (g->co * g->bits) % 32 || (g->bits == 3 && (g->ci % 32 || g->co % 32)))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: GPTQ %d-bit packing needs in and out multiples of %d (shape [%lld, %lld])",
                       module, g->bits, g->bits == 3 ? 32 : 32 / g->bits, (long long)g->co, (long long)g->ci);
    return QV_OK;
}

qv_status qv_gptq_emit(qv_olist *out, const char *module, const qv_qgeom *g, const qv_qlinear *q, const float *bias,
                       size_t *inexact)
{
    const int64_t co = g->co, ci = g->ci, ng = ci / g->group;
    const int b = g->bits;
    const bool data = q != NULL;
    int64_t s_qw[2] = {ci * b / 32, co}, s_qz[2] = {ng, co * b / 32}, s_sc[2] = {ng, co}, s_gi[1] = {ci}, s_b[1] = {co};
    qv_otensor *qw = qv_olist_add(out, module, "qweight", QV_I32, 2, s_qw, data);
    if (!qw)
        return QV_ERR_NOMEM;
    if (data) {
        uint32_t *w = qv_malloc((size_t)(ci * b / 32) * (size_t)co * 4, "gptq qweight");
        if (!w)
            return QV_ERR_NOMEM;
        for (int64_t n = 0; n < co; n++)
            qv_pack_stream(w + n, co, q->u + n * ci, 1, ci, b);
        qv_words_store(qw->data, w, (size_t)(ci * b / 32) * (size_t)co);
        qv_free(w);
    }
    qv_otensor *qz = qv_olist_add(out, module, "qzeros", QV_I32, 2, s_qz, data);
    if (!qz)
        return QV_ERR_NOMEM;
    if (data) {
        uint8_t *zm1 = qv_malloc((size_t)(co * ng), "gptq zeros");
        uint32_t *w = qv_malloc((size_t)(ng * co * b / 32) * 4, "gptq qzeros");
        qv_status st = zm1 && w ? QV_OK : QV_ERR_NOMEM;
        for (int64_t i = 0; st == QV_OK && i < co * ng; i++) {
            if (q->z[i] == 0)
                st = qv_fail(QV_ERR_UNSUPPORTED,
                             "%s: output %lld, group %lld has zero point 0, which GPTQ v1 (stores zero - 1) cannot hold; "
                             "export this asymmetric search as awq or compressed-tensors",
                             module, (long long)(i / ng), (long long)(i % ng));
            else
                zm1[i] = (uint8_t)(q->z[i] - 1);
        }
        for (int64_t gi = 0; st == QV_OK && gi < ng; gi++)
            qv_pack_stream(w + gi * (co * b / 32), 1, zm1 + gi, ng, co, b);
        if (st == QV_OK)
            qv_words_store(qz->data, w, (size_t)(ng * co * b / 32));
        qv_free(zm1);
        qv_free(w);
        QV_TRY(st);
    }
    qv_otensor *sc = qv_olist_add(out, module, "scales", QV_F16, 2, s_sc, data);
    if (!sc)
        return QV_ERR_NOMEM;
    if (data) {
        float *t = qv_malloc((size_t)(ng * co) * sizeof *t, "gptq scales");
        if (!t)
            return QV_ERR_NOMEM;
        for (int64_t gi = 0; gi < ng; gi++)
            for (int64_t n = 0; n < co; n++)
                t[gi * co + n] = q->s[n * ng + gi];
        qv_status st = qv_scales_to_f16(sc->data, t, (size_t)(ng * co), module, inexact);
        qv_free(t);
        QV_TRY(st);
    }
    qv_otensor *gi = qv_olist_add(out, module, "g_idx", QV_I32, 1, s_gi, data);
    if (!gi)
        return QV_ERR_NOMEM;
    if (data) {
        uint32_t *w = qv_malloc((size_t)ci * 4, "g_idx");
        if (!w)
            return QV_ERR_NOMEM;
        for (int64_t k = 0; k < ci; k++)
            w[k] = (uint32_t)(k / g->group);
        qv_words_store(gi->data, w, (size_t)ci);
        qv_free(w);
    }
    if (g->has_bias) {
        qv_otensor *bt = qv_olist_add(out, module, "bias", QV_F16, 1, s_b, data);
        if (!bt)
            return QV_ERR_NOMEM;
        if (data)
            for (int64_t n = 0; n < co; n++)
                ((uint16_t *)bt->data)[n] = qv_f32_to_f16(bias[n]);
    }
    return QV_OK;
}

qv_status qv_gptq_read(const qv_checkpoint *ck, const char *module, int bits, bool v2, qv_qlinear *q)
{
    qv_tensor qw, qz, sc, gidx;
    QV_TRY(qv_ck_get_typed(ck, module, "qweight", QV_I32, 2, &qw));
    QV_TRY(qv_ck_get_typed(ck, module, "qzeros", QV_I32, 2, &qz));
    QV_TRY(qv_ck_get_typed(ck, module, "scales", (qv_dtype)-1, 2, &sc));
    const int b = bits;
    int64_t ci = qw.shape[0] * 32 / b, co = qw.shape[1], ng = sc.shape[0];
    if ((qw.shape[0] * 32) % b || ng <= 0 || ci % ng || sc.shape[1] != co || qz.shape[0] != ng ||
        qz.shape[1] != qv_pack_words(co, b) || !qv_dtype_is_float(sc.dtype))
        return qv_fail(QV_ERR_FORMAT, "%s: %s: qweight/qzeros/scales shapes disagree for %d bits", ck->path, module, b);
    char *gname = qv_asprintf("%s.g_idx", module);
    if (!gname)
        return QV_ERR_NOMEM;
    bool has_g = qv_checkpoint_find(ck, gname, NULL) != NULL;
    qv_free(gname);
    if (has_g) {
        QV_TRY(qv_ck_get_typed(ck, module, "g_idx", QV_I32, 1, &gidx));
        if (gidx.shape[0] != ci)
            return qv_fail(QV_ERR_FORMAT, "%s: %s.g_idx has %lld entries, expected %lld", ck->path, module,
                           (long long)gidx.shape[0], (long long)ci);
        for (int64_t k = 0; k < ci; k++) {
            uint32_t v;
            qv_words_load(&v, (const uint8_t *)gidx.data + 4 * k, 1);
            if ((int64_t)v != k / (ci / ng))
                return qv_fail(QV_ERR_UNSUPPORTED, "%s: %s: act-order g_idx (desc_act) is not supported", ck->path, module);
        }
    }
    QV_TRY(qv_qlinear_alloc(q, co, ci, b, ci / ng, false, sc.dtype));
    size_t nqw = (size_t)qw.shape[0] * (size_t)co, nqz = (size_t)(ng * qz.shape[1]);
    uint32_t *w = qv_malloc((nqw > nqz ? nqw : nqz) * 4, "gptq words");
    float *s = qv_malloc((size_t)(ng * co) * sizeof *s, "gptq scales");
    if (!w || !s) {
        qv_free(w);
        qv_free(s);
        qv_qlinear_free(q);
        return QV_ERR_NOMEM;
    }
    qv_words_load(w, qw.data, nqw);
    for (int64_t n = 0; n < co; n++)
        qv_unpack_stream(q->u + n * ci, 1, w + n, co, ci, b);
    qv_words_load(w, qz.data, nqz);
    const int mask = (1 << b) - 1;
    qv_status st = QV_OK;
    for (int64_t gi = 0; gi < ng; gi++) {
        qv_unpack_stream(q->z + gi, ng, w + gi * qz.shape[1], 1, co, b);
        for (int64_t n = 0; n < co && !v2; n++) {
            int z = q->z[n * ng + gi] + 1;
            if (z > mask && st == QV_OK) /* field 2^b-1: z - 1 borrowed from the next field */
                st = qv_fail(QV_ERR_FORMAT, "%s: %s: output %lld, group %lld: zero field %d + 1 exceeds %d bits (a v2 checkpoint labelled v1?)",
                             ck->path, module, (long long)n, (long long)gi, z - 1, b);
            q->z[n * ng + gi] = (uint8_t)z;
        }
    }
    qv_convert(s, QV_F32, sc.data, sc.dtype, (size_t)(ng * co));
    for (int64_t gi = 0; gi < ng; gi++)
        for (int64_t n = 0; n < co; n++)
            q->s[n * ng + gi] = s[gi * co + n];
    qv_free(w);
    qv_free(s);
    if (st != QV_OK)
        qv_qlinear_free(q);
    return st;
}
