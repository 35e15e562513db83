/* layerwise.c — the layer loop of AWQ/MBQ with captures, distort chain and clip search
 * (layerwise.h; ALGORITHMS.md §3.1, §3.5, §5.2, §5.7). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/comm.h"
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

/* ---- captures: the linear groups' inputs in T, filled chunk by chunk -------------------------- */

typedef struct caps {
    qv_acts in[4];        /* by qv_group_input: attn_in [T,C], o_in [T,H·d], mlp_in [T,C], down_in [T,I] */
    float *scratch[4];    /* F32 rows of one chunk */
} caps;

static void caps_free(caps *c)
{
    for (int i = 0; i < 4; i++) {
        qv_acts_free(&c->in[i]);
        qv_free(c->scratch[i]);
    }
    memset(c, 0, sizeof *c);
}

/* Allocates the captures whose bit is set in `which` (1 << qv_group_input); the others stay
 * empty and are not recorded by forward_chunked. */
static qv_status caps_alloc(const qv_llm *m, qv_dtype T, int64_t rows, int64_t chunk_rows, unsigned which, caps *c)
{
    memset(c, 0, sizeof *c);
    const int64_t w[4] = {m->C, m->H * m->d, m->C, m->I};
    for (int i = 0; i < 4; i++) {
        if (!(which & (1u << i)))
            continue;
        qv_status st = qv_acts_alloc(&c->in[i], T, rows, w[i], "captured layer inputs");
        c->scratch[i] = st == QV_OK ? qv_malloc((size_t)(chunk_rows * w[i]) * sizeof(float), "layer inputs chunk") : NULL;
        if (!c->scratch[i]) {
            caps_free(c);
            return st == QV_OK ? QV_ERR_NOMEM : st;
        }
    }
    return QV_OK;
}

/* y ← layer(x) over the batch in chunks of samples, recording the groups' inputs into c (may
 * be NULL) and the output into y (may be NULL). xf/yf: F32 scratch of one chunk. */
static qv_status forward_chunked(qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, int64_t chunk,
                                 const qv_acts *x, qv_acts *y, caps *c, float *xf, float *yf)
{
    const int64_t B = ctx->B, L = ctx->L;
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
        const int64_t nb = QV_MIN(chunk, B - b0), r0 = b0 * L, nr = nb * L;
        qv_llm_ctx view;
        qv_llm_ctx_slice(ctx, b0, nb, &view);
        qv_acts_get(x, r0, nr, xf);
        qv_llm_capture cv = {0};
        if (c)
            cv = (qv_llm_capture){.attn_in = c->scratch[QV_GROUP_IN_ATTN], .o_in = c->scratch[QV_GROUP_IN_O],
                                  .mlp_in = c->scratch[QV_GROUP_IN_MLP], .down_in = c->scratch[QV_GROUP_IN_DOWN]};
        QV_TRY(qv_llm_layer_forward(m, w, &view, xf, yf, QV_F32, c ? &cv : NULL));
        if (y)
            qv_acts_put(y, r0, nr, yf);
        if (c)
            for (int i = 0; i < 4; i++)
                if (c->scratch[i])
                    qv_acts_put(&c->in[i], r0, nr, c->scratch[i]);
    }
    return QV_OK;
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

/* x: [nt, ci] the sampled token rows (every tokens//512-th, §3.5), already divided by the scale. */
static qv_status clip_search(const qv_llm *m, const qv_quant_opts *o, qv_llm_lin lin, const float *w, const float *x,
                             int64_t nt, float *best_max)
{
    const int64_t co = qv_llm_lin_out(m, lin), ci = qv_llm_lin_in(m, lin), g = o->w_group;
    if (g <= 0 || ci % g)
        return qv_fail(QV_ERR_INVALID, "auto_clip needs a group size dividing the inputs (w_group %lld, %lld inputs)",
                       (long long)g, (long long)ci);
    const int64_t ng = ci / g, ob = co % 256 == 0 ? 256 : 64;
    if (co % ob)
        return qv_fail(QV_ERR_INVALID, "auto_clip: %s has %lld outputs, not a multiple of 64",
                       qv_llm_lin_suffix(m, lin), (long long)co);
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
                const float *xr = x + t * ci + gi * g;
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
                    const float *xr = x + t * ci + gi * g;
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
 * groups 0..j−1 applied and every linear quantized runs on Xq (j = 0: the FP layer). With j =
 * n_groups and yq, the step of the distorted chain itself. */
static qv_status distort_pass(qv_llm *m, const qv_quant_opts *o, const qv_llm_layer *fp, const qv_scale_group *g,
                              const float *const *scales, int j, const qv_llm_ctx *ctx, int64_t chunk, const qv_acts *xq,
                              qv_acts *yq, caps *cq, float *xf, float *yf)
{
    if (j == 0)
        return forward_chunked(m, &fp->w, ctx, chunk, xq, yq, cq, xf, yf);
    qv_qlayer q;
    qv_llm_layer tmp = {0};
    QV_TRY(qv_qlayer_from(m, fp, o->T, &q));
    for (int i = 0; i < j; i++)
        qv_qlayer_apply_group(m, &q, &g[i], scales[i], o->T);
    qv_status st = qv_qlayer_quantize(m, &q, o);
    /* a private layer: qv_qlayer_store writes weights, norms and biases */
    if (st == QV_OK)
        st = qv_llm_layer_load(m, fp->index, &tmp);
    if (st == QV_OK)
        st = qv_qlayer_store(m, &q, &tmp, o);
    /* W-A: the linears quantize their inputs per token inside; the captures record the inputs as
     * given to them, i.e. before that quantization (§5.7) */
    if (st == QV_OK)
        st = forward_chunked(m, &tmp.w, ctx, chunk, xq, yq, cq, xf, yf);
    qv_llm_layer_release(m, &tmp);
    qv_qlayer_free(&q);
    return st;
}

/* The token rows the clip search samples (every tokens//512-th token of the whole batch, §3.5)
 * of linear li's input, divided by the scale of the group that scaled li (if any) and rounded to
 * T; this rank holds rows [row0, row0 + rows) of the batch and contributes the sampled ones among
 * them, gathered in order from every rank. */
static qv_status clip_rows(const qv_quant_opts *o, const caps *cp, const qv_scale_group *groups, int ng,
                           float *const *scales, qv_llm_lin li, int64_t row0, int64_t total_rows, float **out,
                           int64_t *nt)
{
    const qv_acts *src = &cp->in[lin_input(li)];
    const int64_t ci = src->cols, step = QV_MAX((int64_t)1, total_rows / 512);
    *nt = (total_rows + step - 1) / step;
    const int64_t first = (row0 + step - 1) / step, last = (row0 + src->rows + step - 1) / step; /* [first, last) */
    const int64_t nl = last - first;
    double *mine = qv_malloc((size_t)(nl * ci) * sizeof *mine + 8, "clip search input");
    double *all = qv_malloc((size_t)(*nt * ci) * sizeof *all + 8, "clip search input");
    float *x = qv_malloc((size_t)(*nt * ci) * sizeof *x + 8, "clip search input"), *row = qv_malloc((size_t)ci * sizeof *row, "clip search input");
    qv_status st = mine && all && x && row ? QV_OK : QV_ERR_NOMEM;
    const float *s = NULL;
    for (int j = 0; j < ng; j++)
        for (int f = 0; f < groups[j].n_fcs; f++)
            if (groups[j].fcs[f] == li)
                s = scales[j];
    for (int64_t t = first; st == QV_OK && t < last; t++) {
        qv_acts_get(src, t * step - row0, 1, row);
        for (int64_t c = 0; c < ci; c++)
            mine[(t - first) * ci + c] = s ? tround(row[c] / s[c], o->T) : row[c];
    }
    if (st == QV_OK)
        st = qv_comm_allgather_rows(mine, nl, ci, all, *nt);
    if (st == QV_OK)
        for (int64_t i = 0; i < *nt * ci; i++)
            x[i] = (float)all[i];
    qv_free(mine);
    qv_free(all);
    qv_free(row);
    if (st != QV_OK) {
        qv_free(x);
        return st;
    }
    *out = x;
    return QV_OK;
}

qv_status qv_quantize_layers(const qv_layerwise *lw, qv_qresult *res)
{
    qv_llm *m = lw->m;
    const qv_quant_opts *o = lw->o;
    const qv_llm_batch *b = lw->b;
    const int64_t B = b->B, L = b->L, T = B * L, C = m->C, NL = m->c->n_layers;
    const int64_t chunk = lw->chunk > 0 ? QV_MIN(lw->chunk, B) : B, crow = chunk * L;
    const qv_dtype Td = o->T;
    qv_status st = QV_OK;
    qv_llm_ctx ctx = {0};
    caps cp = {0}, cq = {0};
    qv_acts x = {0}, y = {0}, xq = {0}, yq = {0};
    float *xf = NULL, *yf = NULL;
    qv_llm_layer layer = {0};
    QV_TRY(qv_llm_ctx_init(m, &ctx, B, L, b->attention_mask, b->position_ids, b->mrope_position_ids));
    QV_CHECK(st = qv_acts_alloc(&x, Td, T, C, "layer input"), done);
    QV_CHECK(st = qv_acts_alloc(&y, Td, T, C, "layer output"), done);
    xf = qv_malloc((size_t)(crow * C) * sizeof *xf, "layer input chunk");
    yf = qv_malloc((size_t)(crow * C) * sizeof *yf, "layer output chunk");
    if (!xf || !yf) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
        const int64_t nr = QV_MIN(chunk, B - b0) * L;
        qv_acts_put(&x, b0 * L, nr, lw->x0 + b0 * L * C);
    }
    /* Memory: without clipping or distort, the down projection's input [T, I] (3.5x a hidden
     * state) is not recorded with the others; it is recorded by a second forward of the layer
     * from the same input (same chunks, so the same values bit for bit) just before its group is
     * searched, after the other captures, which no later step reads, are freed. At InternVL2-8B
     * with 128 samples x 474 tokens that lowers the peak by about 1.5 GB for one more layer
     * forward (about 4 % of a layer's search). */
    const bool lazy_down = !o->auto_clip && !o->distort;
    const unsigned all_in = 0xfu, first_in = lazy_down ? all_in & ~(1u << QV_GROUP_IN_DOWN) : all_in;
    if (o->distort) {
        QV_CHECK(st = qv_acts_alloc(&xq, Td, T, C, "distorted layer input"), done);
        QV_CHECK(st = qv_acts_alloc(&yq, Td, T, C, "distorted layer output"), done);
        memcpy(xq.p, x.p, qv_acts_bytes(&x));
        QV_CHECK(st = caps_alloc(m, Td, T, crow, all_in, &cq), done);
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
        bool cached = false;
        if (lw->cached)
            QV_CHECK(st = lw->cached(lw->cb_ctx, l, res, &cached), done);
        QV_CHECK(st = qv_llm_layer_load(m, l, &layer), done);
        if (!cached)
            QV_CHECK(st = caps_alloc(m, Td, T, crow, first_in, &cp), done);
        QV_CHECK(st = forward_chunked(m, &layer.w, &ctx, chunk, &x, &y, cached ? NULL : &cp, xf, yf), done);
        qv_qlayer q = {0};
        void *wT[QV_LIN_COUNT] = {0};
        float *scales[4] = {0};
        if (!cached) {
            QV_CHECK(st = qv_qlayer_from(m, &layer, Td, &q), layer_done);
            QV_CHECK(st = fc_weights_T(m, &q, Td, wT), layer_done);
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
                if (!cp.in[g->input].p) { /* the lazily recorded input (lazy_down) */
                    caps_free(&cp);
                    QV_CHECK(st = caps_alloc(m, Td, T, crow, 1u << g->input, &cp), entry_fail);
                    QV_CHECK(st = forward_chunked(m, &layer.w, &ctx, chunk, &x, NULL, &cp, xf, yf), entry_fail);
                }
                const qv_acts *x_q = NULL;
                if (o->distort) {
                    QV_CHECK(st = distort_pass(m, o, &layer, groups, (const float *const *)scales, j, &ctx, chunk, &xq,
                                               NULL, &cq, xf, yf),
                             entry_fail);
                    x_q = &cq.in[g->input];
                }
                qv_group_search s = {.m = m, .g = g, .w = &layer.w, .ctx = &ctx, .chunk = chunk,
                                     .x = &cp.in[g->input], .x_q = x_q, .cap_mask = cap_mask, .vis_mask = vis_mask,
                                     .ratio = e.ratio, .o = o, .scale = e.scale, .act_scale = e.act_scale};
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
                /* llm-awq: apply the scales, then clip every linear it clips on the scaled weights,
                 * with the recorded inputs divided by the scales (§3.4, §3.5) */
                for (int j = 0; j < ng; j++)
                    qv_qlayer_apply_group(m, &q, &groups[j], scales[j], Td);
                for (int li = 0; li < QV_LIN_COUNT; li++) {
                    if (!q.w[li] || !clip_wanted(qv_llm_lin_suffix(m, (qv_llm_lin)li)))
                        continue;
                    qv_qclip c = {.co = qv_llm_lin_out(m, (qv_llm_lin)li)};
                    c.ng = qv_llm_lin_in(m, (qv_llm_lin)li) / (o->w_group > 0 ? o->w_group : 1);
                    qv_llm_lin_name(m, l, (qv_llm_lin)li, c.name, sizeof c.name);
                    c.max_val = qv_malloc((size_t)(c.co * c.ng) * sizeof(float), "clip values");
                    float *xs = NULL;
                    int64_t nt = 0;
                    st = c.max_val ? clip_rows(o, &cp, groups, ng, scales, (qv_llm_lin)li, lw->b0 * L,
                                               (lw->n_total ? lw->n_total : B) * L, &xs, &nt)
                                   : QV_ERR_NOMEM;
                    if (st == QV_OK)
                        st = clip_search(m, o, (qv_llm_lin)li, q.w[li], xs, nt, c.max_val);
                    qv_free(xs);
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
            QV_CHECK(st = distort_pass(m, o, &layer, groups, (const float *const *)scales, ng, &ctx, chunk, &xq, &yq,
                                       NULL, xf, yf),
                     layer_done);
            qv_acts t2 = xq;
            xq = yq;
            yq = t2;
        }
    layer_done:
        caps_free(&cp);
        fc_weights_free(Td, wT);
        qv_qlayer_free(&q);
        qv_llm_layer_release(m, &layer);
        if (st != QV_OK)
            goto done;
        qv_acts t = x;
        x = y;
        y = t;
        qv_progress_step(lw->prog, 1, NULL);
    }
done:
    qv_llm_layer_release(m, &layer);
    qv_llm_ctx_free(&ctx);
    caps_free(&cp);
    caps_free(&cq);
    qv_acts_free(&x);
    qv_acts_free(&y);
    qv_acts_free(&xq);
    qv_acts_free(&yq);
    qv_free(xf);
    qv_free(yf);
    return st;
}
