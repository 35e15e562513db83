/* layerwise.c — the layer loop of AWQ/MBQ with captures, distort chain and clip search
 * (layerwise.h; ALGORITHMS.md §3.1, §3.5, §5.2, §5.7). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qlayer.h"
#include "layerwise.h"

/* ---- result list -------------------------------------------------------------------------- */

void qv_qresult_free(qv_qresult *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        qv_free(r->e[i].scale);
        qv_free(r->e[i].act_scale);
    }
    for (size_t i = 0; i < r->n_clip; i++)
        qv_free(r->clip[i].max_val);
    qv_free(r->e);
    qv_free(r->clip);
    memset(r, 0, sizeof *r);
}

qv_status qv_qresult_add(qv_qresult *r, const qv_qentry *e)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? 2 * r->cap : 16;
        qv_qentry *p = qv_realloc(r->e, nc * sizeof *p, "scale list");
        if (!p)
            return QV_ERR_NOMEM;
        r->e = p;
        r->cap = nc;
    }
    r->e[r->n++] = *e;
    return QV_OK;
}

qv_status qv_qresult_add_clip(qv_qresult *r, const qv_qclip *c)
{
    if (r->n_clip == r->cap_clip) {
        size_t nc = r->cap_clip ? 2 * r->cap_clip : 16;
        qv_qclip *p = qv_realloc(r->clip, nc * sizeof *p, "clip list");
        if (!p)
            return QV_ERR_NOMEM;
        r->clip = p;
        r->cap_clip = nc;
    }
    r->clip[r->n_clip++] = *c;
    return QV_OK;
}

/* ---- captures ----------------------------------------------------------------------------- */

typedef struct caps {
    float *in[4];   /* by qv_group_input: attn_in [T,C], o_in [T,Hd], mlp_in [T,C], down_in [T,I] */
    int64_t w[4];
} caps;

static void caps_free(caps *c)
{
    for (int i = 0; i < 4; i++)
        qv_free(c->in[i]);
    memset(c, 0, sizeof *c);
}

static qv_status caps_alloc(const qv_llm *m, int64_t T, caps *c)
{
    memset(c, 0, sizeof *c);
    c->w[QV_GROUP_IN_ATTN] = m->C;
    c->w[QV_GROUP_IN_O] = m->H * m->d;
    c->w[QV_GROUP_IN_MLP] = m->C;
    c->w[QV_GROUP_IN_DOWN] = m->I;
    for (int i = 0; i < 4; i++) {
        c->in[i] = qv_malloc((size_t)(T * c->w[i]) * sizeof(float), "captured layer inputs");
        if (!c->in[i]) {
            caps_free(c);
            return QV_ERR_NOMEM;
        }
    }
    return QV_OK;
}

static qv_llm_capture caps_view(caps *c)
{
    return (qv_llm_capture){.attn_in = c->in[QV_GROUP_IN_ATTN], .o_in = c->in[QV_GROUP_IN_O],
                            .mlp_in = c->in[QV_GROUP_IN_MLP], .down_in = c->in[QV_GROUP_IN_DOWN]};
}

/* Which captured input a linear reads. */
static qv_group_input lin_input(qv_llm_lin l)
{
    switch (l) {
    case QV_LIN_O: return QV_GROUP_IN_O;
    case QV_LIN_GATE:
    case QV_LIN_UP: return QV_GROUP_IN_MLP;
    case QV_LIN_DOWN: return QV_GROUP_IN_DOWN;
    default: return QV_GROUP_IN_ATTN;
    }
}

/* ---- clip search (llm-awq auto_clip, §3.5) -------------------------------------------------- */

static float tround(float v, qv_dtype T)
{
    return T == QV_BF16 ? qv_round_bf16(v) : T == QV_F16 ? qv_round_f16(v) : v;
}

/* Whether llm-awq clips this linear: its layer-relative name contains none of q_, k_, query,
 * key, Wqkv (case-sensitive substrings; InternLM2's "attention.wqkv" is therefore clipped). */
static bool clip_wanted(const char *suffix)
{
    static const char *skip[] = {"q_", "k_", "query", "key", "Wqkv"};
    for (size_t i = 0; i < QV_ARRAY_LEN(skip); i++)
        if (strstr(suffix, skip[i]))
            return false;
    return true;
}

static qv_status clip_search(const qv_llm *m, const qv_quant_opts *o, qv_llm_lin lin, const float *w, const float *x,
                             int64_t tokens, float *best_max)
{
    const int64_t co = qv_llm_lin_out(m, lin), ci = qv_llm_lin_in(m, lin), g = o->w_group;
    if (g <= 0 || ci % g)
        return qv_fail(QV_ERR_INVALID, "auto_clip needs a group size dividing the inputs (w_group %lld, %lld inputs)",
                       (long long)g, (long long)ci);
    const int64_t ng = ci / g, ob = co % 256 == 0 ? 256 : 64;
    if (co % ob)
        return qv_fail(QV_ERR_INVALID, "auto_clip: %s has %lld outputs, not a multiple of 64",
                       qv_llm_lin_suffix(m, lin), (long long)co);
    const int64_t step = QV_MAX((int64_t)1, tokens / 512), nt = (tokens + step - 1) / step;
    const qv_fq p = {.n_bits = o->w_bit, .zero_point = o->zero_point, .group = g, .division = o->division};
    const qv_kernel_table *k = qv_kernels();
    qv_status st = QV_OK;
#pragma omp parallel for schedule(dynamic)
    for (int64_t r = 0; r < co; r++) {
        /* each output row independently: per group, 10 shrink factors */
        float wc[4096], wq[4096];
        float *y0 = NULL, *err = NULL;
        bool ok = g <= 4096;
        if (ok) {
            y0 = qv_malloc((size_t)(nt * ng) * sizeof *y0, "clip search");
            err = qv_malloc((size_t)ng * sizeof *err, "clip search");
            ok = y0 && err;
        }
        if (!ok) {
#pragma omp critical
            st = QV_ERR_NOMEM;
            qv_free(y0);
            qv_free(err);
            continue;
        }
        const float *wr = w + r * ci;
        for (int64_t gi = 0; gi < ng; gi++) {
            float m0 = 0;
            for (int64_t j = 0; j < g; j++)
                m0 = fmaxf(m0, fabsf(wr[gi * g + j]));
            for (int64_t t = 0; t < nt; t++) {
                const float *xr = x + (t * step) * ci + gi * g;
                float acc = 0;
                for (int64_t j = 0; j < g; j++)
                    acc += tround(xr[j] * wr[gi * g + j], o->T);
                y0[t * ng + gi] = tround(acc, o->T);
            }
            float emin = 1e9f, best = m0;
            for (int i = 0; i < 10; i++) {
                float mx = tround((float)((double)m0 * (1.0 - (double)i / 20.0)), o->T);
                for (int64_t j = 0; j < g; j++)
                    wc[j] = fminf(fmaxf(wr[gi * g + j], -mx), mx);
                k->fq_rows(wq, QV_F32, wc, QV_F32, NULL, QV_FQ_SCALE_NONE, 1, g, &p);
                if (o->T != QV_F32) /* quantize in T: round the clamped values and the result */
                    for (int64_t j = 0; j < g; j++)
                        wq[j] = tround(wq[j], o->T);
                double e = 0;
                for (int64_t t = 0; t < nt; t++) {
                    const float *xr = x + (t * step) * ci + gi * g;
                    float acc = 0;
                    for (int64_t j = 0; j < g; j++)
                        acc += tround(xr[j] * wq[j], o->T);
                    float d = tround(tround(acc, o->T) - y0[t * ng + gi], o->T);
                    e += (double)d * d;
                }
                float ef = tround((float)(e / (double)nt), o->T);
                if (ef < emin) {
                    emin = ef;
                    best = mx;
                }
            }
            best_max[r * ng + gi] = best;
        }
        qv_free(y0);
        qv_free(err);
    }
    if (st != QV_OK)
        return qv_fail(st, "auto_clip: out of memory or group larger than 4096");
    return QV_OK;
}

/* ---- the layer loop --------------------------------------------------------------------------- */

static qv_status fc_weights_T(const qv_llm *m, const qv_qlayer *q, qv_dtype T, void *out[QV_LIN_COUNT])
{
    const qv_kernel_table *k = qv_kernels();
    for (int l = 0; l < QV_LIN_COUNT; l++) {
        out[l] = NULL;
        if (!q->w[l])
            continue;
        size_t n = (size_t)(qv_llm_lin_out(m, (qv_llm_lin)l) * qv_llm_lin_in(m, (qv_llm_lin)l));
        if (T == QV_F32) {
            out[l] = q->w[l]; /* borrowed */
            continue;
        }
        out[l] = qv_malloc(n * 2, "layer weights in T");
        if (!out[l])
            return QV_ERR_NOMEM;
        (T == QV_BF16 ? k->f32_to_bf16 : k->f32_to_f16)(out[l], q->w[l], n);
    }
    return QV_OK;
}

static void fc_weights_free(qv_dtype T, void *w[QV_LIN_COUNT])
{
    if (T == QV_F32)
        return;
    for (int l = 0; l < QV_LIN_COUNT; l++)
        qv_free(w[l]);
}

/* The distorted input of group j (§5.7): the inputs recorded when the layer with the scales of
 * groups 0..j−1 applied and every linear quantized runs on Xq (j = 0: the FP layer). */
static qv_status distort_capture(qv_llm *m, const qv_quant_opts *o, const qv_llm_layer *fp, const qv_scale_group *g,
                                 const float *const *scales, int j, const qv_llm_ctx *ctx, const float *xq, caps *out,
                                 float *yq)
{
    qv_llm_capture cv = caps_view(out);
    if (j == 0)
        return qv_llm_layer_forward(m, &fp->w, ctx, xq, yq, QV_F32, &cv);
    qv_qlayer q;
    qv_llm_layer tmp = {0};
    QV_TRY(qv_qlayer_from(m, fp, o->T, &q));
    for (int i = 0; i < j; i++)
        qv_qlayer_apply_group(m, &q, &g[i], scales[i], o->T);
    qv_status st = qv_qlayer_quantize(m, &q, o);
    if (st == QV_OK) {
        /* a private layer: qv_qlayer_store writes weights, norms and biases */
        st = qv_llm_layer_load(m, fp->index, &tmp);
        if (st == QV_OK)
            st = qv_qlayer_store(m, &q, &tmp, o);
        /* W-A: the linears quantize their inputs per token inside; the captures record the
         * inputs as given to them, i.e. before that quantization (§5.7) */
        if (st == QV_OK)
            st = qv_llm_layer_forward(m, &tmp.w, ctx, xq, yq, QV_F32, &cv);
    }
    qv_llm_layer_release(m, &tmp);
    qv_qlayer_free(&q);
    return st;
}

qv_status qv_quantize_layers(const qv_layerwise *lw, qv_qresult *res)
{
    qv_llm *m = lw->m;
    const qv_quant_opts *o = lw->o;
    const qv_llm_batch *b = lw->b;
    const int64_t B = b->B, L = b->L, T = B * L, C = m->C, NL = m->c->n_layers;
    qv_status st = QV_OK;
    qv_llm_ctx ctx = {0};
    caps cp = {0}, cq = {0};
    float *x = NULL, *y = NULL, *xq = NULL, *yq = NULL;
    qv_llm_layer layer = {0};
    QV_TRY(qv_llm_ctx_init(m, &ctx, B, L, b->attention_mask, b->position_ids, b->mrope_position_ids));
    x = qv_malloc((size_t)(T * C) * sizeof *x, "layer input");
    y = qv_malloc((size_t)(T * C) * sizeof *y, "layer output");
    if (!x || !y) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    memcpy(x, lw->x0, (size_t)(T * C) * sizeof *x);
    QV_CHECK(st = caps_alloc(m, T, &cp), done);
    if (o->distort) {
        xq = qv_malloc((size_t)(T * C) * sizeof *xq, "distorted layer input");
        yq = qv_malloc((size_t)(T * C) * sizeof *yq, "distorted layer output");
        if (!xq || !yq) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        memcpy(xq, lw->x0, (size_t)(T * C) * sizeof *xq);
        QV_CHECK(st = caps_alloc(m, T, &cq), done);
    }
    /* masks over the T token rows, only with reweighting (§5.2) */
    const uint8_t *cap_mask = NULL, *vis_mask = NULL;
    if (lw->r_attn && lw->r_mlp) {
        if (!b->caption_mask || !b->vision_mask) {
            st = qv_fail(QV_ERR_INVALID, "%s: reweight needs caption_mask and vision_mask", b->path);
            goto done;
        }
        cap_mask = b->caption_mask;
        vis_mask = b->vision_mask;
    }
    qv_scale_group groups[4];
    const int ng = qv_scale_groups(m, groups);

    for (int64_t l = 0; l < NL && st == QV_OK; l++) {
        size_t first_entry = res->n, first_clip = res->n_clip;
        bool cached = lw->cached && lw->cached(lw->cb_ctx, l, res);
        QV_CHECK(st = qv_llm_layer_load(m, l, &layer), done);
        qv_llm_capture cv = caps_view(&cp);
        QV_CHECK(st = qv_llm_layer_forward(m, &layer.w, &ctx, x, y, QV_F32, cached && !o->distort ? NULL : &cv), done);
        qv_qlayer q = {0};
        void *wT[QV_LIN_COUNT] = {0};
        float *scales[4] = {0};
        if (!cached) {
            for (int i = 0; i < 4; i++)
                qv_round_values(cp.in[i], T * cp.w[i], o->T);
            QV_CHECK(st = qv_qlayer_from(m, &layer, o->T, &q), layer_done);
            QV_CHECK(st = fc_weights_T(m, &q, o->T, wT), layer_done);
            for (int j = 0; j < ng; j++) {
                const qv_scale_group *g = &groups[j];
                const int64_t n = qv_group_in_width(m, g);
                qv_qentry e = {.layer = l, .n = n, .n_grid = o->n_grid, .ratio = NAN};
                qv_group_prev_name(m, g, l, e.prev_op, sizeof e.prev_op);
                e.n_fcs = g->n_fcs;
                for (int f = 0; f < g->n_fcs; f++)
                    qv_llm_lin_name(m, l, g->fcs[f], e.fcs[f], sizeof e.fcs[f]);
                e.scale = qv_malloc((size_t)n * sizeof(float), "scale");
                e.act_scale = qv_malloc((size_t)n * sizeof(float), "act scale");
                if (!e.scale || !e.act_scale) {
                    qv_free(e.scale);
                    qv_free(e.act_scale);
                    st = QV_ERR_NOMEM;
                    goto layer_done;
                }
                if (cap_mask)
                    e.ratio = g->mlp_ratio ? lw->r_mlp[l] : lw->r_attn[l];
                const float *x_q = NULL;
                if (o->distort) {
                    QV_CHECK(st = distort_capture(m, o, &layer, groups, (const float *const *)scales, j, &ctx, xq,
                                                  &cq, yq),
                             entry_fail);
                    qv_round_values(cq.in[g->input], T * cq.w[g->input], o->T);
                    x_q = cq.in[g->input];
                }
                qv_group_search s = {.m = m, .g = g, .w = &layer.w, .ctx = &ctx, .T = T, .x = cp.in[g->input],
                                     .x_q = x_q, .cap_mask = cap_mask, .vis_mask = vis_mask, .ratio = e.ratio,
                                     .o = o, .scale = e.scale, .act_scale = e.act_scale};
                for (int f = 0; f < g->n_fcs; f++)
                    s.fc_w[f] = wT[g->fcs[f]];
                QV_CHECK(st = qv_search_group(&s), entry_fail);
                e.best = s.best;
                memcpy(e.loss, s.loss, (size_t)o->n_grid * sizeof(double));
                scales[j] = e.scale;
                QV_CHECK(st = qv_qresult_add(res, &e), entry_fail);
                continue;
            entry_fail:
                qv_free(e.scale);
                qv_free(e.act_scale);
                st = qv_fail_prefix(st, "layer %lld group %d", (long long)l, j);
                goto layer_done;
            }
            if (o->auto_clip) {
                /* llm-awq: apply the scales (weights and recorded inputs), then clip every linear
                 * it clips, on the scaled weights (§3.4, §3.5) */
                for (int j = 0; j < ng; j++) {
                    qv_qlayer_apply_group(m, &q, &groups[j], scales[j], o->T);
                    float *xin = cp.in[groups[j].input];
                    const int64_t n = qv_group_in_width(m, &groups[j]);
                    for (int64_t t = 0; t < T; t++)
                        for (int64_t c = 0; c < n; c++)
                            xin[t * n + c] = tround(xin[t * n + c] / scales[j][c], o->T);
                }
                for (int li = 0; li < QV_LIN_COUNT; li++) {
                    if (!q.w[li] || !clip_wanted(qv_llm_lin_suffix(m, (qv_llm_lin)li)))
                        continue;
                    qv_qclip c = {.co = qv_llm_lin_out(m, (qv_llm_lin)li)};
                    c.ng = qv_llm_lin_in(m, (qv_llm_lin)li) / (o->w_group > 0 ? o->w_group : 1);
                    qv_llm_lin_name(m, l, (qv_llm_lin)li, c.name, sizeof c.name);
                    c.max_val = qv_malloc((size_t)(c.co * c.ng) * sizeof(float), "clip values");
                    if (!c.max_val) {
                        st = QV_ERR_NOMEM;
                        goto layer_done;
                    }
                    st = clip_search(m, o, (qv_llm_lin)li, q.w[li], cp.in[lin_input((qv_llm_lin)li)], T, c.max_val);
                    if (st == QV_OK)
                        st = qv_qresult_add_clip(res, &c);
                    if (st != QV_OK) {
                        qv_free(c.max_val);
                        st = qv_fail_prefix(st, "layer %lld %s", (long long)l, c.name);
                        goto layer_done;
                    }
                }
            }
            if (lw->done)
                QV_CHECK(st = lw->done(lw->cb_ctx, l, res, first_entry, first_clip), layer_done);
        }
        if (o->distort) {
            /* Xq <- the scaled, quantized layer on Xq (§5.7) */
            for (size_t i = first_entry, j = 0; i < res->n && j < 4; i++, j++)
                scales[j] = res->e[i].scale;
            QV_CHECK(st = distort_capture(m, o, &layer, groups, (const float *const *)scales, ng, &ctx, xq, &cq, yq),
                     layer_done);
            float *t2 = xq;
            xq = yq;
            yq = t2;
        }
    layer_done:
        fc_weights_free(o->T, wT);
        qv_qlayer_free(&q);
        qv_llm_layer_release(m, &layer);
        if (st != QV_OK)
            goto done;
        float *t = x;
        x = y;
        y = t;
        qv_progress_step(lw->prog, 1, NULL);
    }
done:
    qv_llm_layer_release(m, &layer);
    qv_llm_ctx_free(&ctx);
    caps_free(&cp);
    caps_free(&cq);
    qv_free(x);
    qv_free(y);
    qv_free(xq);
    qv_free(yq);
    return st;
}
