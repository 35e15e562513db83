/* awq.c — AutoAWQ "GEMM" tensors of one Linear (FORMATS.md §2; AutoAWQ awq/modules/linear/gemm.py
 * WQLinear_GEMM as read by vLLM's awq.py): qweight I32 [in, out/8] and qzeros I32 [in/G, out/8]
 * with the (0,2,4,6,1,3,5,7) nibble order, scales F16 [in/G, out], bias F16 [out]. Zero points are
 * unsigned with no offset; 4 bits only (vLLM's AWQ path accepts nothing else). */
#include <math.h>
#include <string.h>

#include "formats.h"
#include "fp.h"
#include "pack.h"

qv_status qv_awq_check(const qv_qgeom *g, const char *module)
{
    if (g->bits != 4)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: AWQ stores 4-bit weights only (this search has %d bits); use gptq or compressed-tensors",
                       module, g->bits);
    if (g->sym)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: AWQ GEMM always carries zero points; a symmetric search exports as gptq or compressed-tensors",
                       module);
    if (g->group == g->ci && g->ci > 128)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: AWQ needs group quantization (w_group > 0), not one group per output channel",
                       module);
    if (g->co % 8 || g->ci % g->group)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: AWQ needs out %% 8 == 0 and in %% group == 0 (shape [%lld, %lld], group %lld)",
                       module, (long long)g->co, (long long)g->ci, (long long)g->group);
    return QV_OK;
}

qv_status qv_scales_to_f16(uint16_t *dst, const float *s, size_t n, const char *module, size_t *inexact)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h = qv_f32_to_f16(s[i]);
        if ((h & 0x7c00u) == 0x7c00u)
            return qv_fail(QV_ERR_INVALID, "%s: scale %g does not fit in F16", module, (double)s[i]);
        if (qv_f16_to_f32(h) != s[i] && inexact)
            (*inexact)++;
        dst[i] = h;
    }
    return QV_OK;
}

qv_status qv_awq_emit(qv_olist *out, const char *module, const qv_qgeom *g, const qv_qlinear *q, const float *bias,
                      size_t *inexact)
{
    const int64_t co = g->co, ci = g->ci, ng = ci / g->group;
    const bool data = q != NULL;
    int64_t s_qw[2] = {ci, co / 8}, s_qz[2] = {ng, co / 8}, s_sc[2] = {ng, co}, s_b[1] = {co};
    qv_otensor *qw = qv_olist_add(out, module, "qweight", QV_I32, 2, s_qw, data);
    if (!qw)
        return QV_ERR_NOMEM;
    uint32_t *words = data ? qv_malloc((size_t)(co / 8 > 0 ? co / 8 : 1) * 4, "awq words") : NULL;
    uint8_t *col = data ? qv_malloc((size_t)co, "awq codes") : NULL;
    if (data && (!words || !col)) {
        qv_free(words);
        qv_free(col);
        return QV_ERR_NOMEM;
    }
    /* qweight[k][j]: the codes of input k for outputs 8j..8j+7 */
    for (int64_t k = 0; data && k < ci; k++) {
        for (int64_t n = 0; n < co; n++)
            col[n] = q->u[n * ci + k];
        qv_pack_awq(words, col, co);
        qv_words_store((uint8_t *)qw->data + (size_t)k * (size_t)(co / 8) * 4, words, (size_t)(co / 8));
    }
    qv_otensor *qz = qv_olist_add(out, module, "qzeros", QV_I32, 2, s_qz, data);
    qv_status st = qz ? QV_OK : QV_ERR_NOMEM;
    for (int64_t gi = 0; st == QV_OK && data && gi < ng; gi++) {
        for (int64_t n = 0; n < co; n++)
            col[n] = q->z[n * ng + gi];
        qv_pack_awq(words, col, co);
        qv_words_store((uint8_t *)qz->data + (size_t)gi * (size_t)(co / 8) * 4, words, (size_t)(co / 8));
    }
    qv_free(words);
    qv_free(col);
    QV_TRY(st);
    qv_otensor *sc = qv_olist_add(out, module, "scales", QV_F16, 2, s_sc, data);
    if (!sc)
        return QV_ERR_NOMEM;
    if (data) {
        float *t = qv_malloc((size_t)ng * (size_t)co * sizeof *t, "awq scales");
        if (!t)
            return QV_ERR_NOMEM;
        for (int64_t gi = 0; gi < ng; gi++)
            for (int64_t n = 0; n < co; n++)
                t[gi * co + n] = q->s[n * ng + gi];
        st = qv_scales_to_f16(sc->data, t, (size_t)(ng * co), module, inexact);
        qv_free(t);
        QV_TRY(st);
    }
    if (g->has_bias) {
        qv_otensor *b = qv_olist_add(out, module, "bias", QV_F16, 1, s_b, data);
        if (!b)
            return QV_ERR_NOMEM;
        if (data)
            for (int64_t n = 0; n < co; n++)
                ((uint16_t *)b->data)[n] = qv_f32_to_f16(bias[n]);
    }
    return QV_OK;
}

/* ---- reading --------------------------------------------------------------------------------- */

qv_status qv_ck_get_typed(const qv_checkpoint *ck, const char *module, const char *suffix, qv_dtype dt, int ndim,
                          qv_tensor *t)
{
    char *n = qv_asprintf("%s.%s", module, suffix);
    if (!n)
        return QV_ERR_NOMEM;
    qv_status st = qv_checkpoint_get(ck, n, t);
    if (st == QV_OK && ((int)dt >= 0 && t->dtype != dt))
        st = qv_fail(QV_ERR_FORMAT, "%s: %s has dtype %s, expected %s", ck->path, n, qv_dtype_name(t->dtype), qv_dtype_name(dt));
    if (st == QV_OK && t->ndim != ndim)
        st = qv_fail(QV_ERR_FORMAT, "%s: %s has %d dimensions, expected %d", ck->path, n, t->ndim, ndim);
    qv_free(n);
    return st;
}

qv_status qv_awq_read(const qv_checkpoint *ck, const char *module, qv_qlinear *q)
{
    qv_tensor qw, qz, sc;
    QV_TRY(qv_ck_get_typed(ck, module, "qweight", QV_I32, 2, &qw));
    QV_TRY(qv_ck_get_typed(ck, module, "qzeros", QV_I32, 2, &qz));
    QV_TRY(qv_ck_get_typed(ck, module, "scales", (qv_dtype)-1, 2, &sc));
    int64_t ci = qw.shape[0], co = qw.shape[1] * 8, ng = sc.shape[0];
    if (ng <= 0 || ci % ng || sc.shape[1] != co || qz.shape[0] != ng || qz.shape[1] != co / 8 || !qv_dtype_is_float(sc.dtype))
        return qv_fail(QV_ERR_FORMAT, "%s: %s: qweight/qzeros/scales shapes disagree", ck->path, module);
    QV_TRY(qv_qlinear_alloc(q, co, ci, 4, ci / ng, false, sc.dtype));
    uint32_t *words = qv_malloc((size_t)(co / 8) * 4, "awq words");
    uint8_t *row = qv_malloc((size_t)co, "awq codes");
    float *s = qv_malloc((size_t)(ng * co) * sizeof *s, "awq scales");
    if (!words || !row || !s) {
        qv_free(words);
        qv_free(row);
        qv_free(s);
        qv_qlinear_free(q);
        return QV_ERR_NOMEM;
    }
    for (int64_t k = 0; k < ci; k++) {
        qv_words_load(words, (const uint8_t *)qw.data + (size_t)k * (size_t)(co / 8) * 4, (size_t)(co / 8));
        qv_unpack_awq(row, words, co);
        for (int64_t n = 0; n < co; n++)
            q->u[n * ci + k] = row[n];
    }
    for (int64_t gi = 0; gi < ng; gi++) {
        qv_words_load(words, (const uint8_t *)qz.data + (size_t)gi * (size_t)(co / 8) * 4, (size_t)(co / 8));
        qv_unpack_awq(row, words, co);
        for (int64_t n = 0; n < co; n++)
            q->z[n * ng + gi] = row[n];
    }
    qv_convert(s, QV_F32, sc.data, sc.dtype, (size_t)(ng * co));
    for (int64_t gi = 0; gi < ng; gi++)
        for (int64_t n = 0; n < co; n++)
            q->s[n * ng + gi] = s[gi * co + n];
    qv_free(words);
    qv_free(row);
    qv_free(s);
    return QV_OK;
}
