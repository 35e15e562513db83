/* backward.c — checkpointed activation gradients of the decoder and MBQ's gradient statistics
 * (backward.h). */
#include "backward.h"

#include "../core/comm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../nn/act.h"
#include "../nn/attention.h"
#include "../nn/matmul.h"
#include "../nn/norm.h"
#include "../nn/rope.h"
#include "forward.h"
#include "head.h"
#include "llm_internal.h"

static qv_status hook(const qv_llm *m, const qv_llm_grad_sink *sink, int64_t layer, qv_llm_lin lin, int64_t b0,
                      int64_t row0, int64_t nrows, const float *g)
{
    if (!sink || !sink->put || !qv_llm_lin_hooked(m, lin))
        return QV_OK;
    char name[160];
    snprintf(name, sizeof name, "layers.%lld.%s", (long long)layer, qv_llm_lin_suffix(m, lin));
    return sink->put(sink->ctx, layer, lin, name, b0, row0, nrows, qv_llm_lin_out(m, lin), g);
}

/* ---- one layer ------------------------------------------------------------------------------- */

/* x [T, C]: the layer's input; g [T, C]: in — gradient w.r.t. the layer's output, out — w.r.t.
 * its input. Recomputes the layer's activations from x. */
static qv_status layer_backward(qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, const float *x, float *g,
                                const qv_llm_grad_sink *sink, int64_t layer, int64_t b0)
{
    const int64_t T = ctx->B * ctx->L, C = m->C, I = m->I, qd = m->H * m->d, kd = m->KV * m->d;
    const bool packed = w->w[QV_LIN_QKV] != NULL;
    const int64_t R = QV_MIN(T, (int64_t)QV_LLM_MLP_CHUNK);
    /* attention half: n1, q, k, v, a, x1, da, dq, dk, dv, lse (+ packed qkv scratch) */
    size_t n_att = (size_t)T * (size_t)(2 * C + 4 * qd + 4 * kd + (packed ? qd + 2 * kd : 0)) +
                   (size_t)(ctx->B * m->H * ctx->L);
    size_t n_mlp = (size_t)R * (size_t)(2 * C + 5 * I);
    float *buf = qv_aligned_alloc(64, (n_att + n_mlp) * sizeof(float) + 64, "layer backward activations");
    if (!buf)
        return QV_ERR_NOMEM;
    float *n1 = buf, *x1 = n1 + T * C, *q = x1 + T * C, *a = q + T * qd, *da = a + T * qd, *dq = da + T * qd;
    float *k = dq + T * qd, *v = k + T * kd, *dk = v + T * kd, *dv = dk + T * kd;
    float *lse = dv + T * kd, *qkv = lse + ctx->B * m->H * ctx->L;
    float *mb = qkv + (packed ? T * (qd + 2 * kd) : 0);
    float *n2 = mb, *dn2 = n2 + R * C, *gt = dn2 + R * C, *ut = gt + R * I, *dh = ut + R * I, *dg = dh + R * I,
          *du = dg + R * I;
    qv_attn_desc ad;
    qv_llm_attn_desc(m, ctx, &ad);
    qv_status st;
    /* recompute: x1 = x + o(attention(rmsnorm(x))) */
    qv_rmsnorm(n1, x, w->norm[QV_LLM_NORM_ATTN], T, C, m->eps);
    QV_CHECK(st = qv_llm_qkv(m, w, ctx, n1, q, k, v, qkv), done);
    QV_CHECK(st = qv_attention(&ad, a, q, k, v, lse), done);
    QV_CHECK(st = qv_llm_lin_apply(m, w, QV_LIN_O, T, a, x1, 0), done);
    for (int64_t i = 0; i < T * C; i++)
        x1[i] = x[i] + x1[i];
    /* MLP half, per token chunk: g ← g + rmsnorm_bwd(gate/up backward(down backward(g))) */
    QV_CHECK(st = hook(m, sink, layer, QV_LIN_DOWN, b0, 0, T, g), done);
    for (int64_t r0 = 0; r0 < T; r0 += R) {
        const int64_t mr = QV_MIN(R, T - r0);
        qv_rmsnorm(n2, x1 + r0 * C, w->norm[QV_LLM_NORM_MLP], mr, C, m->eps);
        QV_CHECK(st = qv_llm_lin_apply(m, w, QV_LIN_GATE, mr, n2, gt, 0), done);
        QV_CHECK(st = qv_llm_lin_apply(m, w, QV_LIN_UP, mr, n2, ut, 0), done);
        QV_CHECK(st = qv_llm_lin_backward(m, w, QV_LIN_DOWN, mr, g + r0 * C, dh, 0), done);
        qv_swiglu_backward(dg, du, dh, gt, ut, mr * I);
        QV_CHECK(st = hook(m, sink, layer, QV_LIN_GATE, b0, r0, mr, dg), done);
        QV_CHECK(st = hook(m, sink, layer, QV_LIN_UP, b0, r0, mr, du), done);
        QV_CHECK(st = qv_llm_lin_backward(m, w, QV_LIN_GATE, mr, dg, dn2, 0), done);
        QV_CHECK(st = qv_llm_lin_backward(m, w, QV_LIN_UP, mr, du, dn2, QV_MM_ACCUMULATE), done);
        qv_rmsnorm_backward(g + r0 * C, dn2, x1 + r0 * C, w->norm[QV_LLM_NORM_MLP], mr, C, m->eps, true);
    }
    /* attention half: g is now the gradient at x1 = the o_proj output's gradient */
    QV_CHECK(st = hook(m, sink, layer, QV_LIN_O, b0, 0, T, g), done);
    QV_CHECK(st = qv_llm_lin_backward(m, w, QV_LIN_O, T, g, da, 0), done);
    QV_CHECK(st = qv_attention_backward(&ad, dq, dk, dv, da, q, k, v, a, lse), done);
    QV_CHECK(st = hook(m, sink, layer, QV_LIN_V, b0, 0, T, dv), done);
    qv_rope_apply_backward(dq, T, m->H, m->d, qd, ctx->cos, ctx->sin);
    qv_rope_apply_backward(dk, T, m->KV, m->d, kd, ctx->cos, ctx->sin);
    float *dn1 = n1; /* n1 is not needed any more: reuse it for the gradient */
    if (packed) {
        /* back into wqkv's grouped layout, then one matmul */
        const int64_t grp = m->H / m->KV, W = qd + 2 * kd, d = m->d;
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < m->KV; j++) {
                float *dst = qkv + t * W + j * (grp + 2) * d;
                memcpy(dst, dq + t * qd + j * grp * d, (size_t)(grp * d) * sizeof *dst);
                memcpy(dst + grp * d, dk + t * kd + j * d, (size_t)d * sizeof *dst);
                memcpy(dst + (grp + 1) * d, dv + t * kd + j * d, (size_t)d * sizeof *dst);
            }
        QV_CHECK(st = qv_llm_lin_backward(m, w, QV_LIN_QKV, T, qkv, dn1, 0), done);
    } else {
        QV_CHECK(st = qv_llm_lin_backward(m, w, QV_LIN_Q, T, dq, dn1, 0), done);
        QV_CHECK(st = qv_llm_lin_backward(m, w, QV_LIN_K, T, dk, dn1, QV_MM_ACCUMULATE), done);
        QV_CHECK(st = qv_llm_lin_backward(m, w, QV_LIN_V, T, dv, dn1, QV_MM_ACCUMULATE), done);
    }
    qv_rmsnorm_backward(g, dn1, x, w->norm[QV_LLM_NORM_ATTN], T, C, m->eps, true);
done:
    qv_free(buf);
    return st;
}

/* ---- the pass ------------------------------------------------------------------------------- */

qv_status qv_llm_backward(qv_llm *m, const qv_llm_batch *b, int64_t b0, int64_t nb, double loss_div,
                          const qv_llm_grad_sink *sink, double *loss_sum)
{
    if (b0 < 0 || nb <= 0 || b0 + nb > b->B)
        return qv_fail(QV_ERR_INVALID, "%s: samples [%lld, %lld) outside the batch of %lld", b->path, (long long)b0,
                       (long long)(b0 + nb), (long long)b->B);
    QV_TRY(qv_llm_batch_check(b, m));
    const int64_t L = b->L, C = m->C, T = nb * L, NL = m->c->n_layers;
    size_t hs_n;
    if (!qv_mul_size((size_t)(NL + 1), (size_t)(T * C), &hs_n))
        return qv_fail(QV_ERR_NOMEM, "%s: batch too large", b->path);
    float *hs = qv_aligned_alloc(64, hs_n * sizeof(float), "layer inputs (checkpoints)");
    float *grad = qv_aligned_alloc(64, (size_t)(T * C) * sizeof(float), "hidden-state gradient");
    int64_t *mrope = NULL, *rows = NULL, *targets = NULL;
    float *normed = NULL, *lse = NULL, *nll = NULL, *scale = NULL, *dn = NULL;
    qv_llm_ctx ctx = {0};
    qv_llm_layer layer = {0};
    qv_status st = QV_OK;
    if (!hs || !grad) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    /* layer-0 input of the samples */
    if (b->inputs_embeds) {
        memcpy(hs, b->inputs_embeds + b0 * L * C, (size_t)(T * C) * sizeof *hs);
    } else if ((st = qv_llm_embed(m, b->input_ids + b0 * L, T, hs)) != QV_OK) {
        st = qv_fail_prefix(st, "%s", b->path);
        goto done;
    }
    if (b->mrope_position_ids) {
        mrope = qv_malloc((size_t)(3 * T) * sizeof *mrope, "M-RoPE positions");
        if (!mrope) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        for (int s = 0; s < 3; s++)
            memcpy(mrope + s * T, b->mrope_position_ids + (s * b->B + b0) * L, (size_t)T * sizeof *mrope);
    }
    QV_CHECK(st = qv_llm_ctx_init(m, &ctx, nb, L, b->attention_mask + b0 * L,
                                  b->position_ids ? b->position_ids + b0 * L : NULL, mrope),
             done);
    /* forward, keeping every layer's input */
    for (int64_t i = 0; i < NL; i++) {
        QV_CHECK(st = qv_llm_layer_load(m, i, &layer), done);
        QV_CHECK(st = qv_llm_layer_forward(m, &layer.w, &ctx, hs + i * T * C, hs + (i + 1) * T * C, QV_F32, NULL),
                 done);
        qv_llm_layer_release(m, &layer);
    }
    /* head: loss rows of these samples, per-row scale 1 / (rows of its sample · loss_div) */
    const float *hl = hs + NL * T * C;
    int64_t M = 0;
    for (int64_t r = 0; r < nb; r++)
        for (int64_t t = 0; t + 1 < L; t++)
            M += b->labels[(b0 + r) * L + t + 1] != -100;
    rows = qv_malloc((size_t)(M + 1) * sizeof *rows, "loss rows");
    targets = qv_malloc((size_t)(M + 1) * sizeof *targets, "targets");
    normed = qv_malloc((size_t)((M + 1) * C) * sizeof *normed, "normed rows");
    dn = qv_calloc((size_t)((M + 1) * C), sizeof *dn, "normed-row gradients");
    lse = qv_malloc((size_t)(M + 1) * sizeof *lse, "log-sum-exp");
    nll = qv_malloc((size_t)(M + 1) * sizeof *nll, "nll");
    scale = qv_malloc((size_t)(M + 1) * sizeof *scale, "loss scales");
    if (!rows || !targets || !normed || !dn || !lse || !nll || !scale) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    int64_t k = 0;
    double total = 0;
    for (int64_t r = 0; r < nb; r++) {
        int64_t k0 = k;
        for (int64_t t = 0; t + 1 < L; t++)
            if (b->labels[(b0 + r) * L + t + 1] != -100) {
                rows[k] = r * L + t;
                targets[k] = b->labels[(b0 + r) * L + t + 1];
                k++;
            }
        for (int64_t j = k0; j < k; j++)
            scale[j] = (float)(1.0 / ((double)(k - k0) * loss_div));
    }
    for (int64_t j = 0; j < M; j++)
        memcpy(normed + j * C, hl + rows[j] * C, (size_t)C * sizeof *normed);
    qv_llm_final_norm(m, normed, M, normed);
    QV_CHECK(st = qv_llm_head_nll(m, normed, M, targets, lse, nll, NULL, NULL), done);
    for (int64_t r = 0, j = 0; r < nb; r++) {
        double s = 0;
        int64_t cnt = 0;
        for (; j < M && rows[j] / L == r; j++, cnt++)
            s += nll[j];
        if (cnt)
            total += s / (double)cnt;
    }
    QV_CHECK(st = qv_llm_head_backward(m, normed, M, targets, lse, scale, dn), done);
    memset(grad, 0, (size_t)(T * C) * sizeof *grad);
    for (int64_t j = 0; j < M; j++)
        qv_rmsnorm_backward(grad + rows[j] * C, dn + j * C, hl + rows[j] * C, m->final_norm, 1, C, m->eps, false);
    /* backward through the layers, recomputing each from its stored input */
    for (int64_t i = NL - 1; i >= 0; i--) {
        QV_CHECK(st = qv_llm_layer_load(m, i, &layer), done);
        QV_CHECK(st = layer_backward(m, &layer.w, &ctx, hs + i * T * C, grad, sink, i, b0), done);
        qv_llm_layer_release(m, &layer);
    }
    if (loss_sum)
        *loss_sum = total;
done:
    qv_llm_layer_release(m, &layer);
    qv_llm_ctx_free(&ctx);
    qv_free(hs);
    qv_free(grad);
    qv_free(mrope);
    qv_free(rows);
    qv_free(targets);
    qv_free(normed);
    qv_free(dn);
    qv_free(lse);
    qv_free(nll);
    qv_free(scale);
    return st;
}

/* ---- MBQ statistics ------------------------------------------------------------------------- */

typedef struct stat_acc {
    const qv_llm_batch *b;
    qv_mbq_grad_stats *st;
    double *vsum, *csum; /* [n_layers][QV_LIN_COUNT] for the current sample */
} stat_acc;

static qv_status stat_put(void *ctx, int64_t layer, qv_llm_lin lin, const char *name, int64_t b0, int64_t row0,
                          int64_t nrows, int64_t co, const float *g)
{
    (void)name;
    stat_acc *a = ctx;
    const int64_t L = a->b->L;
    double vs = 0, cs = 0;
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t row = row0 + r, bb = b0 + row / L, t = row % L;
        const bool vm = a->b->vision_mask[bb * L + t], cm = a->b->caption_mask[bb * L + t];
        if (!vm && !cm)
            continue;
        double s = 0;
        for (int64_t c = 0; c < co; c++)
            s += fabs((double)g[r * co + c]);
        if (vm)
            vs += s;
        if (cm)
            cs += s;
    }
    a->vsum[layer * QV_LIN_COUNT + lin] += vs;
    a->csum[layer * QV_LIN_COUNT + lin] += cs;
    return QV_OK;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

double qv_median(const double *v, int64_t n)
{
    if (n <= 0)
        return NAN;
    double *s = qv_malloc((size_t)n * sizeof *s, "median");
    if (!s)
        return NAN;
    for (int64_t i = 0; i < n; i++) {
        if (v[i] != v[i]) { /* numpy: any NaN → NaN */
            qv_free(s);
            return NAN;
        }
        s[i] = v[i];
    }
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double r = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
    qv_free(s);
    return r;
}

void qv_mbq_grad_stats_free(qv_mbq_grad_stats *st)
{
    if (!st)
        return;
    qv_free(st->vis);
    qv_free(st->cap);
    qv_free(st->vis_avg);
    qv_free(st->cap_avg);
    qv_free(st->attn_ratio);
    qv_free(st->mlp_ratio);
    qv_free(st->reweight_attn);
    qv_free(st->reweight_mlp);
    qv_free(st->loss);
    memset(st, 0, sizeof *st);
}

static qv_status grad_stats_alloc(qv_mbq_grad_stats *st, int64_t NL, int64_t n)
{
    const int64_t NS = NL * QV_LIN_COUNT;
    st->n_layers = NL, st->n_samples = n;
    st->vis = qv_malloc((size_t)(NS * n) * sizeof(double) + 8, "grad stats");
    st->cap = qv_malloc((size_t)(NS * n) * sizeof(double) + 8, "grad stats");
    st->vis_avg = qv_malloc((size_t)NS * sizeof(double), "grad stats");
    st->cap_avg = qv_malloc((size_t)NS * sizeof(double), "grad stats");
    st->attn_ratio = qv_malloc((size_t)NL * sizeof(double), "grad stats");
    st->mlp_ratio = qv_malloc((size_t)NL * sizeof(double), "grad stats");
    st->reweight_attn = qv_malloc((size_t)NL * sizeof(double), "grad stats");
    st->reweight_mlp = qv_malloc((size_t)NL * sizeof(double), "grad stats");
    st->loss = qv_malloc((size_t)n * sizeof(double) + 8, "grad stats");
    if (!st->vis || !st->cap || !st->vis_avg || !st->cap_avg || !st->attn_ratio || !st->mlp_ratio ||
        !st->reweight_attn || !st->reweight_mlp || !st->loss)
        return QV_ERR_NOMEM;
    for (int64_t i = 0; i < NS * n; i++)
        st->vis[i] = st->cap[i] = NAN;
    return QV_OK;
}

qv_status qv_llm_mbq_grad_samples(qv_llm *m, const qv_llm_batch *b, int64_t n_total, qv_progress *prog,
                                  qv_mbq_grad_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!b->vision_mask || !b->caption_mask)
        return qv_fail(QV_ERR_INVALID, "%s: MBQ's gradient statistics need vision_mask and caption_mask", b->path);
    const int64_t NL = m->c->n_layers, n = b->B, L = b->L, NS = NL * QV_LIN_COUNT;
    double *vsum = qv_malloc((size_t)NS * sizeof(double), "grad sums");
    double *csum = qv_malloc((size_t)NS * sizeof(double), "grad sums");
    qv_status s = grad_stats_alloc(st, NL, n);
    if (s == QV_OK && (!vsum || !csum))
        s = QV_ERR_NOMEM;
    if (s != QV_OK)
        goto done;
    stat_acc acc = {b, st, vsum, csum};
    qv_llm_grad_sink sink = {&acc, stat_put};
    for (int64_t i = 0; i < n; i++) {
        memset(vsum, 0, (size_t)NS * sizeof *vsum);
        memset(csum, 0, (size_t)NS * sizeof *csum);
        QV_CHECK(s = qv_llm_backward(m, b, i, 1, (double)n_total, &sink, &st->loss[i]), done);
        int64_t nv = 0, nc = 0;
        for (int64_t t = 0; t < L; t++) {
            nv += b->vision_mask[i * L + t] != 0;
            nc += b->caption_mask[i * L + t] != 0;
        }
        for (int64_t l = 0; l < NL; l++)
            for (int lin = 0; lin < QV_LIN_COUNT; lin++) {
                if (!qv_llm_lin_hooked(m, (qv_llm_lin)lin))
                    continue;
                const double co = (double)qv_llm_lin_out(m, (qv_llm_lin)lin);
                const size_t at = qv_mbq_stat_at(st, l, (qv_llm_lin)lin, i);
                st->vis[at] = nv ? vsum[l * QV_LIN_COUNT + lin] / ((double)nv * co) : NAN;
                st->cap[at] = nc ? csum[l * QV_LIN_COUNT + lin] / ((double)nc * co) : NAN;
            }
        char what[48];
        snprintf(what, sizeof what, "sample %lld", (long long)i);
        qv_progress_step(prog, 1, what);
    }
done:
    qv_free(vsum);
    qv_free(csum);
    if (s != QV_OK)
        qv_mbq_grad_stats_free(st);
    return s;
}

qv_status qv_mbq_grad_finish(qv_mbq_grad_stats *st)
{
    const int64_t NL = st->n_layers, NS = NL * QV_LIN_COUNT, nl = st->n_samples, W = 2 * NS + 1;
    /* every rank's samples, in sample order: rows [vis.., cap.., loss] per sample */
    double *local = qv_malloc((size_t)(nl * W) * sizeof *local + 8, "grad stats");
    if (!local)
        return QV_ERR_NOMEM;
    for (int64_t i = 0; i < nl; i++) {
        for (int64_t k = 0; k < NS; k++) {
            local[i * W + k] = st->vis[k * nl + i];
            local[i * W + NS + k] = st->cap[k * nl + i];
        }
        local[i * W + 2 * NS] = st->loss[i];
    }
    double cnt[1] = {(double)nl}, tot[1];
    qv_status s = qv_comm_sum_rows(cnt, 1, 1, tot);
    const int64_t n = (int64_t)tot[0];
    double *all = s == QV_OK ? qv_malloc((size_t)(n * W) * sizeof *all + 8, "grad stats") : NULL;
    if (s == QV_OK && !all)
        s = QV_ERR_NOMEM;
    if (s == QV_OK)
        s = qv_comm_allgather_rows(local, nl, W, all, n);
    qv_free(local);
    if (s != QV_OK) {
        qv_free(all);
        return s;
    }
    /* the per-sample arrays now cover the whole batch */
    qv_mbq_grad_stats full = {0};
    s = grad_stats_alloc(&full, NL, n);
    if (s != QV_OK) {
        qv_free(all);
        qv_mbq_grad_stats_free(&full);
        return s;
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < NS; k++) {
            full.vis[k * n + i] = all[i * W + k];
            full.cap[k * n + i] = all[i * W + NS + k];
        }
        full.loss[i] = all[i * W + 2 * NS];
    }
    qv_free(all);
    qv_mbq_grad_stats_free(st);
    *st = full;
    for (int64_t l = 0; l < NL; l++)
        for (int lin = 0; lin < QV_LIN_COUNT; lin++) {
            double vs = 0, cs = 0;
            for (int64_t i = 0; i < n; i++) {
                vs += st->vis[qv_mbq_stat_at(st, l, (qv_llm_lin)lin, i)];
                cs += st->cap[qv_mbq_stat_at(st, l, (qv_llm_lin)lin, i)];
            }
            st->vis_avg[l * QV_LIN_COUNT + lin] = vs / (double)n;
            st->cap_avg[l * QV_LIN_COUNT + lin] = cs / (double)n;
        }
    for (int64_t l = 0; l < NL; l++) {
        st->attn_ratio[l] = st->vis_avg[l * QV_LIN_COUNT + QV_LIN_O] / st->cap_avg[l * QV_LIN_COUNT + QV_LIN_O];
        st->mlp_ratio[l] = st->vis_avg[l * QV_LIN_COUNT + QV_LIN_DOWN] / st->cap_avg[l * QV_LIN_COUNT + QV_LIN_DOWN];
    }
    st->attn_median = qv_median(st->attn_ratio, NL);
    st->mlp_median = qv_median(st->mlp_ratio, NL);
    for (int64_t l = 0; l < NL; l++) {
        st->reweight_attn[l] = fmax(st->attn_ratio[l], st->attn_median);
        st->reweight_mlp[l] = fmax(st->mlp_ratio[l], st->mlp_median);
    }
    return QV_OK;
}

qv_status qv_llm_mbq_grad_stats(qv_llm *m, const qv_llm_batch *b, qv_progress *prog, qv_mbq_grad_stats *st)
{
    QV_TRY(qv_llm_mbq_grad_samples(m, b, b->B, prog, st));
    qv_status s = qv_mbq_grad_finish(st);
    if (s != QV_OK)
        qv_mbq_grad_stats_free(st);
    return s;
}

