/* smooth.c — SmoothQuant statistics and scales (smooth.h, ALGORITHMS.md §4). */
#include "smooth.h"

#include <math.h>
#include <string.h>

#include "../core/comm.h"
#include "qlayer.h"

static float tr(float v, qv_dtype T) { return T == QV_BF16 ? qv_round_bf16(v) : T == QV_F16 ? qv_round_f16(v) : v; }

/* pow(tensor, α) in T: exponent rounded to T, 0 and 0.5 special (rule (E)). */
static float tpow(float x, double alpha, qv_dtype T)
{
    float e = tr((float)alpha, T);
    if (e == 0.0f)
        return 1.0f;
    if (e == 0.5f)
        return tr(sqrtf(x), T);
    return tr(powf(x, e), T);
}

/* max over the masked rows of |x| per column (fp32, exact). */
static void col_absmax(float *out, const float *x, int64_t T, int64_t C, const uint8_t *mask)
{
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < C; c0 += 64) {
        const int64_t nc = QV_MIN((int64_t)64, C - c0);
        float acc[64] = {0};
        for (int64_t t = 0; t < T; t++) {
            if (mask && !mask[t])
                continue;
            for (int64_t c = 0; c < nc; c++)
                acc[c] = fmaxf(acc[c], fabsf(x[t * C + c0 + c]));
        }
        memcpy(out + c0, acc, (size_t)nc * sizeof *acc);
    }
}

/* One (norm -> fcs) pair of layer l (§4.2): e gets the pair's names, act_scale = T(a) and
 * scale = max(T(a)^α / w^(1−α), 1e-5) from the maxima a [C] and the weights of q. Takes nothing;
 * on success e owns two new arrays. */
static qv_status pair_entry(qv_llm *m, const qv_quant_opts *o, const qv_qlayer *q, const qv_scale_group *g, int64_t l,
                            const float *a_in, qv_qentry *e)
{
    const int64_t C = m->C;
    *e = (qv_qentry){.layer = l, .n = C, .n_grid = 1, .best = 0, .ratio = NAN};
    qv_group_prev_name(m, g, l, e->prev_op, sizeof e->prev_op);
    e->n_fcs = g->n_fcs;
    for (int f = 0; f < g->n_fcs; f++)
        qv_llm_lin_name(m, l, g->fcs[f], e->fcs[f], sizeof e->fcs[f]);
    e->scale = qv_malloc((size_t)C * sizeof(float), "smoothing scale");
    e->act_scale = qv_malloc((size_t)C * sizeof(float), "activation maxima");
    if (!e->scale || !e->act_scale) {
        qv_free(e->scale);
        qv_free(e->act_scale);
        return QV_ERR_NOMEM;
    }
    for (int64_t c = 0; c < C; c++) {
        float a = tr(a_in[c], o->T), w = 0;
        for (int f = 0; f < g->n_fcs; f++) {
            const float *W = q->w[g->fcs[f]];
            const int64_t co = qv_llm_lin_out(m, g->fcs[f]);
            for (int64_t r = 0; r < co; r++)
                w = fmaxf(w, fabsf(W[r * C + c]));
        }
        w = tr(fmaxf(w, 1e-5f), o->T);
        float s = tr(tpow(a, o->alpha, o->T) / tpow(w, 1.0 - o->alpha, o->T), o->T);
        e->scale[c] = tr(fmaxf(s, 1e-5f), o->T);
        e->act_scale[c] = a;
    }
    return QV_OK;
}

static qv_status add_entry(qv_qresult *res, qv_qentry *e)
{
    qv_status st = qv_qresult_add(res, e);
    if (st != QV_OK) {
        qv_free(e->scale);
        qv_free(e->act_scale);
    }
    return st;
}

qv_status qv_smooth_search(qv_llm *m, const qv_quant_opts *o, const qv_llm_batch *b, const float *x0, qv_qresult *res)
{
    const int64_t T = b->B * b->L, C = m->C, NL = m->c->n_layers;
    qv_status st = QV_OK;
    qv_llm_ctx ctx = {0};
    qv_llm_layer layer = {0};
    float *x = qv_malloc((size_t)(T * C) * sizeof *x, "layer input"), *y = qv_malloc((size_t)(T * C) * sizeof *y, "layer output");
    float *attn_in = qv_malloc((size_t)(T * C) * sizeof(float), "captured inputs");
    float *mlp_in = qv_malloc((size_t)(T * C) * sizeof(float), "captured inputs");
    float *a = qv_malloc((size_t)C * sizeof *a, "activation maxima");
    if (!x || !y || !attn_in || !mlp_in || !a) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    memcpy(x, x0, (size_t)(T * C) * sizeof *x);
    QV_CHECK(st = qv_llm_ctx_init(m, &ctx, b->B, b->L, b->attention_mask, b->position_ids, b->mrope_position_ids), done);
    qv_scale_group groups[4];
    int ng = qv_scale_groups(m, groups);
    for (int64_t l = 0; l < NL && st == QV_OK; l++) {
        QV_CHECK(st = qv_llm_layer_load(m, l, &layer), done);
        qv_llm_capture cap = {.attn_in = attn_in, .mlp_in = mlp_in};
        QV_CHECK(st = qv_llm_layer_forward(m, &layer.w, &ctx, x, y, QV_F32, &cap), done);
        qv_qlayer q;
        QV_CHECK(st = qv_qlayer_from(m, &layer, o->T, &q), done);
        for (int j = 0; j < ng && st == QV_OK; j++) {
            const qv_scale_group *g = &groups[j];
            if (!g->prev_is_norm) /* o_proj / down_proj are not smoothed (§4.2) */
                continue;
            col_absmax(a, g->input == QV_GROUP_IN_ATTN ? attn_in : mlp_in, T, C, b->attention_mask);
            if (qv_comm_world()->size > 1) { /* every rank's maxima (max is order-free) */
                const int P = qv_comm_world()->size;
                double *mine = qv_malloc((size_t)C * sizeof *mine, "maxima"), *all = qv_malloc((size_t)(P * C) * sizeof *all, "maxima");
                st = mine && all ? QV_OK : QV_ERR_NOMEM;
                for (int64_t c = 0; st == QV_OK && c < C; c++)
                    mine[c] = a[c];
                if (st == QV_OK)
                    st = qv_comm_allgather_rows(mine, 1, C, all, P);
                for (int64_t c = 0; st == QV_OK && c < C; c++)
                    for (int k = 0; k < P; k++)
                        a[c] = fmaxf(a[c], (float)all[k * C + c]);
                qv_free(mine);
                qv_free(all);
                if (st != QV_OK)
                    break;
            }
            qv_qentry e;
            if ((st = pair_entry(m, o, &q, g, l, a, &e)) == QV_OK)
                st = add_entry(res, &e);
        }
        qv_qlayer_free(&q);
        qv_llm_layer_release(m, &layer);
        float *t = x;
        x = y;
        y = t;
    }
done:
    qv_llm_layer_release(m, &layer);
    qv_llm_ctx_free(&ctx);
    qv_free(x);
    qv_free(y);
    qv_free(attn_in);
    qv_free(mlp_in);
    qv_free(a);
    return st;
}

qv_status qv_smooth_from_maxima(qv_llm *m, const qv_quant_opts *o, qv_smooth_maxima_fn maxima, void *ctx, qv_qresult *res)
{
    const int64_t NL = m->c->n_layers;
    qv_status st = QV_OK;
    qv_llm_layer layer = {0};
    qv_scale_group groups[4];
    int ng = qv_scale_groups(m, groups);
    for (int64_t l = 0; l < NL && st == QV_OK; l++) {
        QV_CHECK(st = qv_llm_layer_load(m, l, &layer), done);
        qv_qlayer q;
        QV_CHECK(st = qv_qlayer_from(m, &layer, o->T, &q), done);
        for (int j = 0; j < ng && st == QV_OK; j++) {
            const qv_scale_group *g = &groups[j];
            if (!g->prev_is_norm)
                continue;
            char first[448];
            qv_llm_lin_name(m, l, g->fcs[0], first, sizeof first);
            const float *a = NULL;
            if ((st = maxima(ctx, first, m->C, &a)) != QV_OK)
                break;
            qv_qentry e;
            if ((st = pair_entry(m, o, &q, g, l, a, &e)) == QV_OK)
                st = add_entry(res, &e);
        }
        qv_qlayer_free(&q);
        qv_llm_layer_release(m, &layer);
    }
done:
    qv_llm_layer_release(m, &layer);
    return st;
}
