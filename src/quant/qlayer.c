/* qlayer.c — working copies of a decoder layer, scale application, fake quantization and the
 * quantized-model layer hook (qlayer.h). */
#include <stdio.h>
#include <string.h>

#include "qlayer.h"

qv_status qv_qlayer_from(qv_llm *m, const qv_llm_layer *src, qv_dtype T, qv_qlayer *q)
{
    memset(q, 0, sizeof *q);
    q->index = src->index;
    for (int l = 0; l < QV_LIN_COUNT; l++) {
        if (!qv_llm_has_lin(m, (qv_llm_lin)l))
            continue;
        int64_t o = qv_llm_lin_out(m, (qv_llm_lin)l), n = o * qv_llm_lin_in(m, (qv_llm_lin)l);
        q->w[l] = qv_aligned_alloc(64, (size_t)n * sizeof(float), "layer copy");
        if (!q->w[l]) {
            qv_qlayer_free(q);
            return QV_ERR_NOMEM;
        }
        qv_status st = qv_llm_layer_get(m, src, (qv_llm_lin)l, q->w[l]);
        if (st != QV_OK) {
            qv_qlayer_free(q);
            return st;
        }
        qv_round_values(q->w[l], n, T);
        if (src->w.bias[l]) {
            q->bias[l] = qv_malloc((size_t)o * sizeof(float), "layer copy");
            if (!q->bias[l]) {
                qv_qlayer_free(q);
                return QV_ERR_NOMEM;
            }
            memcpy(q->bias[l], src->w.bias[l], (size_t)o * sizeof(float));
            qv_round_values(q->bias[l], o, T);
        }
    }
    for (int n = 0; n < QV_LLM_NORM_COUNT; n++) {
        q->norm[n] = qv_malloc((size_t)m->C * sizeof(float), "layer copy");
        if (!q->norm[n]) {
            qv_qlayer_free(q);
            return QV_ERR_NOMEM;
        }
        memcpy(q->norm[n], src->w.norm[n], (size_t)m->C * sizeof(float));
        qv_round_values(q->norm[n], m->C, T);
    }
    return QV_OK;
}

void qv_qlayer_free(qv_qlayer *q)
{
    if (!q)
        return;
    for (int l = 0; l < QV_LIN_COUNT; l++) {
        qv_free(q->w[l]);
        qv_free(q->bias[l]);
    }
    for (int n = 0; n < QV_LLM_NORM_COUNT; n++)
        qv_free(q->norm[n]);
    memset(q, 0, sizeof *q);
}

void qv_qlayer_apply_group(const qv_llm *m, qv_qlayer *q, const qv_scale_group *g, const float *s, qv_dtype T)
{
    const int64_t n = qv_group_in_width(m, g);
    if (g->prev_is_norm) {
        qv_apply_scale_norm(q->norm[g->prev_norm], NULL, s, n, T);
    } else {
        qv_llm_lin p = g->prev_lin;
        qv_apply_scale_rows(q->w[p], q->bias[p], qv_llm_lin_out(m, p), qv_llm_lin_in(m, p), s, n, T);
    }
    for (int f = 0; f < g->n_fcs; f++)
        qv_apply_scale_cols(q->w[g->fcs[f]], qv_llm_lin_out(m, g->fcs[f]), n, s, T);
}

qv_status qv_qlayer_quantize(const qv_llm *m, qv_qlayer *q, const qv_quant_opts *o)
{
    const qv_kernel_table *k = qv_kernels();
    qv_fq p = qv_quant_weight_fq(o);
    for (int l = 0; l < QV_LIN_COUNT; l++) {
        if (!q->w[l])
            continue;
        const int64_t co = qv_llm_lin_out(m, (qv_llm_lin)l), ci = qv_llm_lin_in(m, (qv_llm_lin)l);
        const char *why = qv_fq_check(&p, o->T, QV_F32, QV_FQ_SCALE_NONE, NULL, ci);
        if (why)
            return qv_fail(QV_ERR_INVALID, "%s: %s", qv_llm_lin_suffix(m, (qv_llm_lin)l), why);
        /* the copy holds T values as F32: quantize in T through a T buffer when T is 16-bit */
        const size_t es = qv_dtype_size(o->T);
        void *tmp = o->T == QV_F32 ? NULL : qv_malloc((size_t)(co * ci) * es, "fake quantization");
        if (o->T != QV_F32 && !tmp)
            return QV_ERR_NOMEM;
        if (tmp)
            (o->T == QV_BF16 ? k->f32_to_bf16 : k->f32_to_f16)(tmp, q->w[l], (size_t)(co * ci));
        const int64_t rb = 16;
#pragma omp parallel for schedule(static)
        for (int64_t r0 = 0; r0 < co; r0 += rb) {
            const int64_t nr = QV_MIN(rb, co - r0);
            if (tmp)
                k->fq_rows(q->w[l] + r0 * ci, QV_F32, (const char *)tmp + (size_t)(r0 * ci) * es, o->T, NULL,
                           QV_FQ_SCALE_NONE, nr, ci, &p);
            else
                k->fq_rows(q->w[l] + r0 * ci, QV_F32, q->w[l] + r0 * ci, QV_F32, NULL, QV_FQ_SCALE_NONE, nr, ci, &p);
        }
        qv_free(tmp);
    }
    return QV_OK;
}

qv_status qv_qlayer_store(qv_llm *m, const qv_qlayer *q, qv_llm_layer *dst, const qv_quant_opts *o)
{
    for (int l = 0; l < QV_LIN_COUNT; l++) {
        if (!q->w[l])
            continue;
        QV_TRY(qv_llm_layer_set(m, dst, (qv_llm_lin)l, q->w[l], q->bias[l]));
        if (o && o->wa && o->a_bit < 16) {
            dst->w.act_bits[l] = (int8_t)o->a_bit;
            dst->w.act_div = (uint8_t)o->division;
            dst->w.act_dt = o->T;
        }
    }
    for (int n = 0; n < QV_LLM_NORM_COUNT; n++)
        QV_TRY(qv_llm_layer_set_norm(m, dst, (qv_llm_norm)n, q->norm[n]));
    return QV_OK;
}

/* ---- the quantized-model hook ------------------------------------------------------------------ */

typedef struct layer_names {
    char lin[QV_LIN_COUNT][448];
    char norm[QV_LLM_NORM_COUNT][448];
} layer_names;

static float *find_module(const qv_llm *m, qv_qlayer *q, const layer_names *nm, const char *name, bool *is_norm,
                          int *which)
{
    for (int l = 0; l < QV_LIN_COUNT; l++)
        if (q->w[l] && !strcmp(nm->lin[l], name)) {
            *is_norm = false;
            *which = l;
            return q->w[l];
        }
    for (int n = 0; n < QV_LLM_NORM_COUNT; n++)
        if (!strcmp(nm->norm[n], name)) {
            *is_norm = true;
            *which = n;
            return q->norm[n];
        }
    (void)m;
    return NULL;
}

/* Applies the entries of the list that belong to this layer (every name of an entry must then
 * be one of its modules). */
static qv_status apply_entries(qv_qmodel *qm, qv_llm *m, qv_qlayer *q, const layer_names *nm)
{
    const qv_scales *sc = qm->sc;
    const qv_dtype T = qm->o.T;
    for (size_t e = 0; e < sc->n; e++) {
        const qv_scale_entry *en = &sc->entries[e];
        bool pn;
        int pw;
        size_t found = find_module(m, q, nm, en->prev_op, &pn, &pw) ? 1 : 0;
        for (size_t f = 0; f < en->n_layers; f++) {
            bool fn;
            int fw;
            found += find_module(m, q, nm, en->layers[f], &fn, &fw) && !fn;
        }
        if (!found)
            continue;
        if (found != en->n_layers + 1)
            return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu (%s) does not match the modules of layer %lld", sc->path,
                           e, en->prev_op, (long long)q->index);
        if (pn) {
            if (en->n != m->C)
                return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu has %lld values, %s has %lld channels", sc->path, e,
                               (long long)en->n, en->prev_op, (long long)m->C);
            qv_apply_scale_norm(q->norm[pw], NULL, en->s, en->n, T);
        } else {
            int64_t co = qv_llm_lin_out(m, (qv_llm_lin)pw);
            if (en->n > co)
                return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu has %lld values, %s has %lld rows", sc->path, e,
                               (long long)en->n, en->prev_op, (long long)co);
            qv_apply_scale_rows(q->w[pw], q->bias[pw], co, qv_llm_lin_in(m, (qv_llm_lin)pw), en->s, en->n, T);
        }
        for (size_t f = 0; f < en->n_layers; f++) {
            bool fn;
            int fw;
            find_module(m, q, nm, en->layers[f], &fn, &fw);
            if (qv_llm_lin_in(m, (qv_llm_lin)fw) != en->n)
                return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu has %lld values, %s has %lld inputs", sc->path, e,
                               (long long)en->n, en->layers[f], (long long)qv_llm_lin_in(m, (qv_llm_lin)fw));
            qv_apply_scale_cols(q->w[fw], qv_llm_lin_out(m, (qv_llm_lin)fw), en->n, en->s, T);
        }
        qm->n_applied++;
    }
    for (size_t c = 0; c < sc->n_clip; c++) {
        const qv_clip_entry *ce = &sc->clips[c];
        bool fn;
        int fw;
        if (!find_module(m, q, nm, ce->layer, &fn, &fw) || fn)
            continue;
        int64_t co = qv_llm_lin_out(m, (qv_llm_lin)fw), ci = qv_llm_lin_in(m, (qv_llm_lin)fw);
        if (ce->co != co || ce->ng <= 0 || ci % ce->ng)
            return qv_fail(QV_ERR_INVALID, "%s: clip of %s has shape [%lld,%lld], the layer is [%lld,%lld]", sc->path,
                           ce->layer, (long long)ce->co, (long long)ce->ng, (long long)co, (long long)ci);
        qv_apply_clip(q->w[fw], co, ci, ce->ng, ce->max_val, T);
        qm->n_clips_applied++;
    }
    return QV_OK;
}

qv_status qv_qmodel_hook(void *ctx, qv_llm *m, qv_llm_layer *layer)
{
    qv_qmodel *qm = ctx;
    qv_qlayer q;
    QV_TRY(qv_qlayer_from(m, layer, qm->o.T, &q));
    layer_names nm;
    for (int l = 0; l < QV_LIN_COUNT; l++)
        if (qv_llm_has_lin(m, (qv_llm_lin)l))
            qv_llm_lin_name(m, layer->index, (qv_llm_lin)l, nm.lin[l], sizeof nm.lin[l]);
        else
            nm.lin[l][0] = 0;
    for (int n = 0; n < QV_LLM_NORM_COUNT; n++)
        qv_llm_norm_name(m, layer->index, (qv_llm_norm)n, nm.norm[n], sizeof nm.norm[n]);
    qv_status st = qm->sc ? apply_entries(qm, m, &q, &nm) : QV_OK;
    if (st == QV_OK && qm->quantize)
        st = qv_qlayer_quantize(m, &q, &qm->o);
    if (st == QV_OK)
        st = qv_qlayer_store(m, &q, layer, qm->quantize ? &qm->o : NULL);
    qv_qlayer_free(&q);
    return st;
}

void qv_qmodel_attach(qv_llm *m, qv_qmodel *qm)
{
    m->layer_hook = qv_qmodel_hook;
    m->layer_hook_ctx = qm;
}

qv_status qv_qmodel_from_scales(qv_qmodel *qm, const qv_scales *sc, int w_bit, int a_bit, int64_t w_group)
{
    memset(qm, 0, sizeof *qm);
    qm->sc = sc;
    qm->quantize = true;
    qv_quant_opts *o = &qm->o;
    const qv_search_config *c = &sc->cfg;
    o->w_bit = w_bit > 0 ? w_bit : c->present ? c->w_bit : 0;
    o->a_bit = a_bit > 0 ? a_bit : c->present ? c->a_bit : 16;
    o->w_group = w_group ? w_group : c->present ? c->w_group : 128;
    o->zero_point = c->present ? c->zero_point : true;
    o->division = c->division_cpu ? QV_FQ_DIV_CPU : QV_FQ_DIV_CUDA;
    o->T = c->dtype;
    o->n_grid = 20;
    o->method = QV_METHOD_MBQ;
    if (!strcmp(c->method, "fp8"))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: holds an FP8 calibration (method fp8), not a scale list; its FP8 model's "
                       "loss is in eval.json, and qvlm export --format fp8 writes it", sc->path);
    if (!strcmp(c->method, "rtn"))
        o->method = QV_METHOD_RTN;
    else if (!strcmp(c->method, "awq"))
        o->method = QV_METHOD_AWQ;
    else if (!strcmp(c->method, "smoothquant"))
        o->method = QV_METHOD_SMOOTHQUANT;
    if (o->w_bit < 2 || o->w_bit > 8)
        return qv_fail(QV_ERR_INVALID, "%s: no usable w_bit (%d): the scale list has no search config; give the bits",
                       sc->path, o->w_bit);
    /* SmoothQuant always quantizes W-A (ALGORITHMS.md §4.3): per-channel weights, and per-token
     * activations when a_bit < 16 */
    o->wa = (o->w_bit < 16 && o->a_bit < 16) || o->method == QV_METHOD_SMOOTHQUANT;
    return QV_OK;
}
