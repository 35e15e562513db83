/* search.c — the grid search of one scale group (quant.h): ALGORITHMS.md §3.2 (AWQ), §5.5 (MBQ
 * weight-only losses with the modality masks and ratio), §5.6 (weight-activation: WALinear on
 * W ⊙ s with the input divided by s) and §5.7 (distort: statistic and candidate on the input of
 * the quantized chain, reference output on the clean input).
 *
 * Per grid point k: s_k from the act_scale m (qv_grid_scale), the candidate weights of the
 * group's fcs built by the fused simd kernel (row-parallel), the inspect module re-run through
 * the runner (oneDNN), the difference to the FP output reduced per token row by the simd loss
 * kernel and summed in row order. Loop over k is sequential; everything inside is parallel over
 * disjoint outputs, so the losses do not depend on the thread count. Memory: two [T, C'] outputs
 * in T, one candidate copy of the fcs' weights, and (W-A) the scaled input [T, ci]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../simd/fp.h"
#include "quant.h"

static qv_status run_inspect(qv_group_search *s, const qv_llm_weights *w, const float *x, float *y)
{
    switch (s->g->inspect) {
    case QV_INSPECT_ATTN: return qv_llm_attn_forward(s->m, w, s->ctx, x, y, NULL);
    case QV_INSPECT_MLP: return qv_llm_mlp_forward(s->m, w, s->T, x, y, NULL);
    case QV_INSPECT_LINEAR: return qv_llm_linear_forward(s->m, w, s->g->inspect_lin, s->T, x, y);
    }
    return qv_fail(QV_ERR_INTERNAL, "search: bad inspect kind");
}

/* F32 values -> T storage (2-byte types) or a copy (F32). */
static void store_T(void *dst, const float *src, int64_t n, qv_dtype T)
{
    const qv_kernel_table *k = qv_kernels();
    if (T == QV_F32)
        memcpy(dst, src, (size_t)n * sizeof(float));
    else if (T == QV_BF16)
        k->f32_to_bf16(dst, src, (size_t)n);
    else
        k->f32_to_f16(dst, src, (size_t)n);
}

/* Σ over rows of the per-row |D| and D² sums, with D = fp32(T(a − b)); rows filtered by mask.
 * Per-row sums are computed in parallel and added in row order. */
static void masked_sums(const void *a, const void *b, qv_dtype T, int64_t rows, int64_t cols, const uint8_t *mask,
                        double *row_abs, double *row_sq, double *sum_abs, double *sum_sq, int64_t *count)
{
    const qv_kernel_table *k = qv_kernels();
    const size_t es = qv_dtype_size(T);
    const int64_t chunk = 64;
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int64_t nr = QV_MIN(chunk, rows - r0);
        k->loss_rows(row_abs + r0, row_sq + r0, (const char *)a + (size_t)(r0 * cols) * es,
                     (const char *)b + (size_t)(r0 * cols) * es, T, nr, cols, mask ? mask + r0 : NULL);
    }
    double sa = 0, sq = 0;
    int64_t n = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (mask && !mask[r])
            continue;
        sa += row_abs[r];
        sq += row_sq[r];
        n++;
    }
    *sum_abs = sa;
    *sum_sq = sq;
    *count = n;
}

/* ALGORITHMS.md §5.5 (the reference's loss expressions, in double). */
static double group_loss(qv_group_search *s, const void *y0, const void *y, int64_t cout, double *row_abs,
                         double *row_sq)
{
    const qv_quant_opts *o = s->o;
    const bool mae = o->loss_mode == QV_LOSS_MODE_MAE;
    double sa, sq;
    int64_t n;
    if (s->cap_mask && s->vis_mask && !isnan(s->ratio)) {
        double aa, aq, va, vq;
        int64_t na, nv;
        masked_sums(y0, y, o->T, s->T, cout, s->cap_mask, row_abs, row_sq, &aa, &aq, &na);
        masked_sums(y0, y, o->T, s->T, cout, s->vis_mask, row_abs, row_sq, &va, &vq, &nv);
        double r = s->ratio, c = (double)cout;
        if (mae)
            return (aa + r * va) / (c * (double)na + c * (double)nv);
        return aq / (c * (double)na) + r * (vq / (c * (double)nv));
    }
    masked_sums(y0, y, o->T, s->T, cout, NULL, row_abs, row_sq, &sa, &sq, &n);
    double denom = (double)n * (double)cout;
    return (mae ? sa : sq) / denom;
}

qv_status qv_search_group(qv_group_search *s)
{
    qv_llm *m = s->m;
    const qv_scale_group *g = s->g;
    const qv_quant_opts *o = s->o;
    const qv_kernel_table *k = qv_kernels();
    const int64_t ci = qv_group_in_width(m, g), cout = qv_group_out_width(m, g), T = s->T;
    const qv_dtype Td = o->T, cdt = m->dt;
    const size_t tes = qv_dtype_size(Td), ces = qv_dtype_size(cdt);
    if (o->n_grid < 1 || o->n_grid > QV_MAX_GRID)
        return qv_fail(QV_ERR_INVALID, "n_grid %d out of range (1..%d)", o->n_grid, QV_MAX_GRID);
    if (cdt == QV_BF16 && Td != QV_BF16)
        return qv_fail(QV_ERR_UNSUPPORTED, "search: BF16 compute needs the BF16 reference dtype");
    const float *xq = s->x_q ? s->x_q : s->x; /* the candidate's input (§5.7) */
    qv_fq wq = qv_quant_weight_fq(o);
    const char *why = NULL;
    for (int f = 0; f < g->n_fcs && !why; f++)
        why = qv_fq_check(&wq, Td, cdt == Td ? Td : QV_F32,
                          o->wa ? QV_FQ_SCALE_MUL : QV_FQ_SCALE_MULDIV, s->fc_w[f] /* any non-NULL */, ci);
    if (why)
        return qv_fail(QV_ERR_INVALID, "%s: %s", qv_llm_lin_suffix(m, g->fcs[0]), why);

    qv_status st = QV_OK;
    void *y0 = NULL, *yc = NULL, *s_T = NULL, *cand[3] = {0};
    float *y = NULL, *sk = NULL, *xs = NULL;
    double *row_abs = NULL, *row_sq = NULL;
    y0 = qv_malloc((size_t)(T * cout) * tes, "search: reference output");
    yc = qv_malloc((size_t)(T * cout) * tes, "search: candidate output");
    y = qv_malloc((size_t)(T * cout) * sizeof *y, "search: output");
    sk = qv_malloc((size_t)ci * sizeof *sk, "search: scale");
    s_T = qv_malloc((size_t)ci * tes, "search: scale");
    row_abs = qv_malloc((size_t)T * sizeof *row_abs, "search: loss rows");
    row_sq = qv_malloc((size_t)T * sizeof *row_sq, "search: loss rows");
    if (!y0 || !yc || !y || !sk || !s_T || !row_abs || !row_sq) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    for (int f = 0; f < g->n_fcs; f++) {
        int64_t co = qv_llm_lin_out(m, g->fcs[f]);
        cand[f] = qv_aligned_alloc(64, (size_t)(co * ci) * ces, "search: candidate weights");
        if (!cand[f]) {
            st = QV_ERR_NOMEM;
            goto done;
        }
    }
    if (o->wa) {
        xs = qv_malloc((size_t)(T * ci) * sizeof *xs, "search: scaled input");
        if (!xs) {
            st = QV_ERR_NOMEM;
            goto done;
        }
    }

    /* the statistic from the candidate's input; the reference output from the clean input */
    qv_act_scale(s->act_scale, xq, T, ci, Td, o->division);
    QV_CHECK(st = run_inspect(s, s->w, s->x, y), done);
    qv_round_values(y, T * cout, Td);
    store_T(y0, y, T * cout, Td);

    double best = INFINITY;
    s->best = -1;
    for (int kk = 0; kk < o->n_grid; kk++) {
        qv_grid_scale(sk, s->act_scale, ci, kk, o->n_grid, Td);
        store_T(s_T, sk, ci, Td);
        qv_llm_weights cw = *s->w;
        for (int f = 0; f < g->n_fcs; f++) {
            const int64_t co = qv_llm_lin_out(m, g->fcs[f]);
            const qv_dtype out_dt = cdt == Td ? Td : QV_F32;
            const qv_fq_scale mode = o->wa ? QV_FQ_SCALE_MUL : QV_FQ_SCALE_MULDIV;
            const int64_t rb = 16;
#pragma omp parallel for schedule(static)
            for (int64_t r0 = 0; r0 < co; r0 += rb)
                k->fq_rows((char *)cand[f] + (size_t)(r0 * ci) * qv_dtype_size(out_dt), out_dt,
                           (const char *)s->fc_w[f] + (size_t)(r0 * ci) * tes, Td, s_T, mode, QV_MIN(rb, co - r0), ci,
                           &wq);
            cw.w[g->fcs[f]] = cand[f];
            if (o->wa) {
                cw.act_bits[g->fcs[f]] = (int8_t)o->a_bit;
                cw.act_div = (uint8_t)o->division;
                cw.act_dt = Td;
            }
        }
        const float *xin = xq;
        if (o->wa) { /* §5.6: the WALinear sees x ⊘ s, rounded to T */
#pragma omp parallel for schedule(static) if (T * ci >= 65536)
            for (int64_t t = 0; t < T; t++)
                for (int64_t j = 0; j < ci; j++) {
                    float v = xq[t * ci + j] / sk[j];
                    xs[t * ci + j] = Td == QV_BF16 ? qv_round_bf16(v) : Td == QV_F16 ? qv_round_f16(v) : v;
                }
            xin = xs;
        }
        QV_CHECK(st = run_inspect(s, &cw, xin, y), done);
        qv_round_values(y, T * cout, Td);
        store_T(yc, y, T * cout, Td);
        double loss = group_loss(s, y0, yc, cout, row_abs, row_sq);
        s->loss[kk] = loss;
        if (loss < best) { /* strict: the first minimum wins */
            best = loss;
            s->best = kk;
            memcpy(s->scale, sk, (size_t)ci * sizeof *sk);
        }
    }
    if (s->best < 0)
        st = qv_fail(QV_ERR_INVALID, "%s: every candidate loss is NaN (empty caption or vision mask?)",
                     qv_llm_lin_suffix(m, g->fcs[0]));
done:
    qv_free(y0);
    qv_free(yc);
    qv_free(y);
    qv_free(sk);
    qv_free(s_T);
    qv_free(xs);
    qv_free(row_abs);
    qv_free(row_sq);
    for (int f = 0; f < 3; f++)
        qv_free(cand[f]);
    return st;
}
