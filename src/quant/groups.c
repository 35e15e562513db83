/* groups.c — the scale groups of each decoder type, searched and saved in this order
 * (ALGORITHMS.md §6.2), and the run options (quant.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/comm.h"
#include "quant.h"

void qv_quant_opts_from_run(qv_quant_opts *o, const qv_run_config *rc, qv_dtype T)
{
    memset(o, 0, sizeof *o);
    o->method = rc->method;
    o->w_bit = rc->w_bit;
    o->a_bit = rc->a_bit;
    o->w_group = rc->w_group;
    o->zero_point = rc->zero_point;
    o->division = rc->division == QV_DIVISION_CPU ? QV_FQ_DIV_CPU : QV_FQ_DIV_CUDA;
    o->wa = qv_run_config_is_wa(rc) || rc->method == QV_METHOD_SMOOTHQUANT; /* SQ: always W-A (§4.3) */
    o->n_grid = rc->n_grid;
    o->loss_mode = rc->loss_mode;
    o->reweight = rc->reweight;
    if (rc->method == QV_METHOD_AWQ) {
        /* AWQ's objective: the MSE over every position, no modality weighting (§3.2, §3.8) */
        o->loss_mode = QV_LOSS_MODE_MSE;
        o->reweight = false;
    }
    o->distort = rc->distort;
    o->auto_clip = rc->auto_clip;
    o->alpha = rc->alpha;
    o->T = T;
}

qv_fq qv_quant_weight_fq(const qv_quant_opts *o)
{
    qv_fq p = {.n_bits = o->w_bit, .division = o->division};
    if (o->wa) { /* WALinear weights: symmetric absmax per output channel (§1.5) */
        p.zero_point = false;
        p.group = -1;
    } else {     /* §1.6: asymmetric with zero point, per group */
        p.zero_point = o->zero_point;
        p.group = o->w_group;
    }
    return p;
}

int qv_scale_groups(const qv_llm *m, qv_scale_group g[4])
{
    int n = 0;
    const bool packed = qv_llm_has_lin(m, QV_LIN_QKV);
    /* 1: attention input */
    g[n] = (qv_scale_group){.prev_is_norm = true, .prev_norm = QV_LLM_NORM_ATTN, .inspect = QV_INSPECT_ATTN,
                            .input = QV_GROUP_IN_ATTN, .mlp_ratio = false};
    if (packed) {
        g[n].n_fcs = 1;
        g[n].fcs[0] = QV_LIN_QKV;
    } else {
        g[n].n_fcs = 3;
        g[n].fcs[0] = QV_LIN_Q, g[n].fcs[1] = QV_LIN_K, g[n].fcs[2] = QV_LIN_V;
    }
    n++;
    /* 2: v_proj -> o_proj, only when both weights have the same shape (no GQA). For InternLM2 the
     * previous op would be wqkv, whose shape never equals wo's (§6.2, §11 item 4). */
    qv_llm_lin prev = packed ? QV_LIN_QKV : QV_LIN_V;
    if (qv_llm_lin_out(m, prev) == qv_llm_lin_out(m, QV_LIN_O) && qv_llm_lin_in(m, prev) == qv_llm_lin_in(m, QV_LIN_O))
        g[n++] = (qv_scale_group){.prev_is_norm = false, .prev_lin = prev, .n_fcs = 1, .fcs = {QV_LIN_O},
                                  .inspect = QV_INSPECT_LINEAR, .inspect_lin = QV_LIN_O, .input = QV_GROUP_IN_O,
                                  .mlp_ratio = false};
    /* 3: MLP input */
    g[n++] = (qv_scale_group){.prev_is_norm = true, .prev_norm = QV_LLM_NORM_MLP, .n_fcs = 2,
                              .fcs = {QV_LIN_GATE, QV_LIN_UP}, .inspect = QV_INSPECT_MLP, .input = QV_GROUP_IN_MLP,
                              .mlp_ratio = true};
    /* 4: up_proj (w3) -> down_proj (w2) */
    g[n++] = (qv_scale_group){.prev_is_norm = false, .prev_lin = QV_LIN_UP, .n_fcs = 1, .fcs = {QV_LIN_DOWN},
                              .inspect = QV_INSPECT_LINEAR, .inspect_lin = QV_LIN_DOWN, .input = QV_GROUP_IN_DOWN,
                              .mlp_ratio = true};
    return n;
}

int64_t qv_group_in_width(const qv_llm *m, const qv_scale_group *g) { return qv_llm_lin_in(m, g->fcs[0]); }

int64_t qv_group_out_width(const qv_llm *m, const qv_scale_group *g)
{
    return g->inspect == QV_INSPECT_LINEAR ? qv_llm_lin_out(m, g->inspect_lin) : m->C;
}

const char *qv_group_prev_name(const qv_llm *m, const qv_scale_group *g, int64_t layer, char *buf, size_t n)
{
    return g->prev_is_norm ? qv_llm_norm_name(m, layer, g->prev_norm, buf, n) : qv_llm_lin_name(m, layer, g->prev_lin, buf, n);
}

/* ---- T arithmetic helpers -------------------------------------------------------------------- */

static float to_T(float v, qv_dtype T)
{
    switch (T) {
    case QV_BF16: return qv_round_bf16(v);
    case QV_F16: return qv_round_f16(v);
    default: return v;
    }
}

void qv_round_values(float *x, int64_t n, qv_dtype T)
{
    if (T == QV_F32)
        return;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++)
        x[i] = to_T(x[i], T);
}

void qv_grid_scale(float *out, const float *m, int64_t n, int k, int n_grid, qv_dtype T)
{
    /* pow(tensor, scalar): the exponent is rounded to T first; 0 and 0.5 are special (§0.3) */
    float e = to_T((float)((double)k / (double)n_grid), T);
    for (int64_t j = 0; j < n; j++) {
        float v;
        if (e == 0.0f)
            v = 1.0f;
        else if (e == 0.5f)
            v = to_T(sqrtf(m[j]), T);
        else
            v = to_T(powf(m[j], e), T);
        out[j] = to_T(v < 1e-4f ? 1e-4f : v, T); /* clamp(min=1e-4) */
    }
    float mx = out[0], mn = out[0];
    for (int64_t j = 1; j < n; j++) {
        mx = out[j] > mx ? out[j] : mx;
        mn = out[j] < mn ? out[j] : mn;
    }
    float norm = to_T(sqrtf(to_T(mx * mn, T)), T);
    for (int64_t j = 0; j < n; j++)
        out[j] = to_T(out[j] / norm, T);
}

static float load_t(const qv_acts *a, int64_t r, int64_t c)
{
    const size_t i = (size_t)(r * a->cols + c);
    switch (a->dt) {
    case QV_BF16: return qv_bf16_to_f32(((const uint16_t *)a->p)[i]);
    case QV_F16: return qv_f16_to_f32(((const uint16_t *)a->p)[i]);
    default: return ((const float *)a->p)[i];
    }
}

qv_status qv_act_scale(float *out, const qv_acts *x, int64_t L, qv_dtype T, qv_fq_div division)
{
    /* The reference reduces on the GPU in a tree; double sums rounded once to fp32 are the closest
     * portable stand-in (a sequential fp32 sum drifts by ~1e-6 over 10^3 tokens, enough to move
     * the candidate scales by an ulp and flip near-tie weight codes). Per sample (rows in order),
     * then over samples in sample order on every rank (qv_comm_sum_rows): the result does not
     * depend on the thread count, the chunking or the number of ranks. */
    const int64_t rows = x->rows, cols = x->cols, B = rows / L, block = 64;
    double *part = qv_malloc((size_t)(B * cols) * sizeof *part + 8, "act_scale sums");
    double *tot = qv_malloc((size_t)cols * sizeof *tot, "act_scale sums");
    if (!part || !tot) {
        qv_free(part);
        qv_free(tot);
        return QV_ERR_NOMEM;
    }
#pragma omp parallel for collapse(2) schedule(static) if (rows * cols >= 65536)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c0 = 0; c0 < cols; c0 += block) {
            double acc[64] = {0};
            const int64_t nc = QV_MIN(block, cols - c0);
            for (int64_t r = b * L; r < (b + 1) * L; r++)
                for (int64_t c = 0; c < nc; c++)
                    acc[c] += fabs((double)load_t(x, r, c0 + c));
            memcpy(part + b * cols + c0, acc, (size_t)nc * sizeof *acc);
        }
    qv_status st = qv_comm_sum_rows(part, B, cols, tot);
    if (st == QV_OK) {
        int64_t n_tokens = rows;
        for (int64_t c = 0; c < cols; c++)
            out[c] = (float)tot[c];
        /* the token count of the whole batch (every rank's samples) */
        double nloc[1] = {(double)rows}, ntot[1];
        st = qv_comm_sum_rows(nloc, 1, 1, ntot);
        n_tokens = (int64_t)ntot[0];
        if (st == QV_OK)
            qv_absmean_finish(out, T, out, cols, n_tokens, cols, division);
    }
    qv_free(part);
    qv_free(tot);
    return st;
}
