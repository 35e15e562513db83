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
 * in T, one candidate copy of the fcs' weights, and (W-A) the scaled input [T, ci].
 *
 * Packed path (BF16 compute on a host with AMX or AVX-512-BF16, src/nn/fqgemm.h): the inspect
 * module's linears are packed once per group and run on the tile kernels; the reference output
 * Y0 uses them unquantized. The fcs' candidates come from s_k in one of two ways: when a chunk
 * holds at least QVLM_FQGEMM_FLY_ROWS rows (default 8192) the GEMM fake-quantizes each
 * thread's panel on the fly in every call (no candidate copy); with smaller chunks (one sample
 * at a time, the default of the driver) the whole candidate is fake-quantized once per grid point
 * into a packed copy (the memory the oneDNN path's candidate copy takes) and every chunk runs
 * the plain GEMM on it, since per-call fake quantization would then cost more than the GEMM.
 * The packed path is opt-in (QVLM_FQGEMM=1): measured on the AMX Xeon it is slower than oneDNN's
 * own AMX brgemm (bench/README.md, search-layer). F32 compute never takes it, except under
 * QVLM_FQGEMM=emu-amx (tests: the emulated AMX set, any compute dtype, BF16 reference T). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../simd/fp.h"
#include "../core/comm.h"
#include "../core/prof.h"
#include "../nn/fqgemm.h"
#include "quant.h"

/* The inspect module on rows [b0·L, (b0+nb)·L) of the batch: x [nb·L, ci] -> y [nb·L, cout]. */
static qv_status run_inspect(qv_group_search *s, const qv_llm_weights *w, int64_t b0, int64_t nb, const float *x,
                             float *y)
{
    const int64_t rows = nb * s->ctx->L;
    switch (s->g->inspect) {
    case QV_INSPECT_ATTN: {
        qv_llm_ctx view;
        qv_llm_ctx_slice(s->ctx, b0, nb, &view);
        return qv_llm_attn_forward(s->m, w, &view, x, y, NULL);
    }
    case QV_INSPECT_MLP: return qv_llm_mlp_forward(s->m, w, rows, x, y, NULL);
    case QV_INSPECT_LINEAR: return qv_llm_linear_forward(s->m, w, s->g->inspect_lin, rows, x, y);
    }
    return qv_fail(QV_ERR_INTERNAL, "search: bad inspect kind");
}

/* Per-sample partial sums of the loss terms, then totals over all samples in sample order (on
 * every rank: qv_comm_sum_rows), so the loss does not depend on how samples are split between
 * ranks or chunks. Columns: Σ|D|, ΣD², count over caption rows; the same over vision rows; the
 * same over all rows. */
enum { LS_CAP_ABS, LS_CAP_SQ, LS_CAP_N, LS_VIS_ABS, LS_VIS_SQ, LS_VIS_N, LS_ALL_ABS, LS_ALL_SQ, LS_ALL_N, LS_W };

static void sample_sums(const qv_group_search *s, const double *row_abs, const double *row_sq, int64_t B, int64_t L,
                        double *part)
{
    for (int64_t b = 0; b < B; b++) {
        double *p = part + b * LS_W;
        memset(p, 0, LS_W * sizeof *p);
        for (int64_t t = b * L; t < (b + 1) * L; t++) {
            if (s->cap_mask && s->cap_mask[t])
                p[LS_CAP_ABS] += row_abs[t], p[LS_CAP_SQ] += row_sq[t], p[LS_CAP_N] += 1;
            if (s->vis_mask && s->vis_mask[t])
                p[LS_VIS_ABS] += row_abs[t], p[LS_VIS_SQ] += row_sq[t], p[LS_VIS_N] += 1;
            p[LS_ALL_ABS] += row_abs[t], p[LS_ALL_SQ] += row_sq[t], p[LS_ALL_N] += 1;
        }
    }
}

/* ALGORITHMS.md §5.5 (the reference's loss expressions, in double) from the totals. */
static double group_loss(const qv_group_search *s, const double *tot, int64_t cout)
{
    const bool mae = s->o->loss_mode == QV_LOSS_MODE_MAE;
    const double c = (double)cout;
    if (s->cap_mask && s->vis_mask && !isnan(s->ratio)) {
        if (mae)
            return (tot[LS_CAP_ABS] + s->ratio * tot[LS_VIS_ABS]) / (c * tot[LS_CAP_N] + c * tot[LS_VIS_N]);
        return tot[LS_CAP_SQ] / (c * tot[LS_CAP_N]) + s->ratio * (tot[LS_VIS_SQ] / (c * tot[LS_VIS_N]));
    }
    return (mae ? tot[LS_ALL_ABS] : tot[LS_ALL_SQ]) / (tot[LS_ALL_N] * c);
}

/* ---- the packed path -------------------------------------------------------------------------- */

/* The linears the inspect module runs (attention: q/k/v or wqkv and o; MLP: gate, up, down). */
static int inspect_lins(const qv_llm *m, const qv_scale_group *g, qv_llm_lin out[4])
{
    int n = 0;
    switch (g->inspect) {
    case QV_INSPECT_ATTN:
        if (qv_llm_has_lin(m, QV_LIN_QKV))
            out[n++] = QV_LIN_QKV;
        else
            out[n++] = QV_LIN_Q, out[n++] = QV_LIN_K, out[n++] = QV_LIN_V;
        out[n++] = QV_LIN_O;
        break;
    case QV_INSPECT_MLP: out[n++] = QV_LIN_GATE, out[n++] = QV_LIN_UP, out[n++] = QV_LIN_DOWN; break;
    case QV_INSPECT_LINEAR: out[n++] = g->inspect_lin; break;
    }
    return n;
}

/* The kernel set of the packed path, or NULL for the oneDNN path. */
static const qv_gemm_kernels *packed_kernels(const qv_group_search *s, const qv_fq *wq)
{
    const char *e = getenv("QVLM_FQGEMM");
    const qv_gemm_kernels *k = NULL;
    /* opt-in: on the AMX Xeon oneDNN 2.6's brgemm ran the InternVL2-8B layer search in 236 s,
     * the packed kernels in 258 s (on the fly) and 281 s (prepared) (bench/README.md) */
    if (s->o->T != QV_BF16 || !e || !*e || !strcmp(e, "0"))
        return NULL;
    if (!strcmp(e, "emu-amx"))
        k = qv_gemm_kernels_get(QV_GEMM_EMU_AMX);
    else if (s->m->dt == QV_BF16)
        k = qv_gemm_kernels_active();
    qv_llm_lin l[4];
    const int n = inspect_lins(s->m, s->g, l);
    for (int i = 0; i < n && k; i++)
        if (!s->w->w[l[i]] || !qv_fqgemm_supports(qv_llm_lin_in(s->m, l[i]), wq))
            k = NULL;
    return k;
}

/* Packs linear l of the inspect module: the fcs from fc_w (what their candidates start from),
 * the others from the layer view, rounded to BF16 when the compute dtype is F32 (test hook). */
static qv_status pack_lin(const qv_group_search *s, const qv_gemm_kernels *k, qv_llm_lin l, qv_fqgemm_w **out)
{
    const int64_t N = qv_llm_lin_out(s->m, l), K = qv_llm_lin_in(s->m, l);
    for (int f = 0; f < s->g->n_fcs; f++)
        if (s->g->fcs[f] == l)
            return qv_fqgemm_pack(k, s->fc_w[f], N, K, out);
    if (s->m->dt == QV_BF16)
        return qv_fqgemm_pack(k, s->w->w[l], N, K, out);
    uint16_t *b = qv_malloc((size_t)(N * K) * sizeof *b, "search: BF16 weight");
    if (!b)
        return QV_ERR_NOMEM;
    qv_kernels()->f32_to_bf16(b, s->w->w[l], (size_t)(N * K));
    qv_status st = qv_fqgemm_pack(k, b, N, K, out);
    qv_free(b);
    return st;
}

/* Rows per inspect call from which the GEMM fake-quantizes on the fly (QVLM_FQGEMM_FLY_ROWS). */
static int64_t fly_rows(void)
{
    const char *e = getenv("QVLM_FQGEMM_FLY_ROWS");
    return e && *e ? strtoll(e, NULL, 10) : 8192;
}

qv_status qv_search_group(qv_group_search *s)
{
    qv_llm *m = s->m;
    const qv_scale_group *g = s->g;
    const qv_quant_opts *o = s->o;
    const qv_kernel_table *k = qv_kernels();
    const int64_t ci = qv_group_in_width(m, g), cout = qv_group_out_width(m, g);
    const int64_t B = s->ctx->B, L = s->ctx->L, T = B * L, chunk = QV_MAX((int64_t)1, QV_MIN(s->chunk, B));
    const int64_t crow = chunk * L;
    const qv_dtype Td = o->T, cdt = m->dt;
    const size_t tes = qv_dtype_size(Td), ces = qv_dtype_size(cdt);
    if (o->n_grid < 1 || o->n_grid > QV_MAX_GRID)
        return qv_fail(QV_ERR_INVALID, "n_grid %d out of range (1..%d)", o->n_grid, QV_MAX_GRID);
    if (cdt == QV_BF16 && Td != QV_BF16)
        return qv_fail(QV_ERR_UNSUPPORTED, "search: BF16 compute needs the BF16 reference dtype");
    if (s->x->rows != T || s->x->cols != ci || s->x->dt != Td || (s->x_q && (s->x_q->rows != T || s->x_q->dt != Td)))
        return qv_fail(QV_ERR_INTERNAL, "search: input is [%lld,%lld] %s, expected [%lld,%lld] %s", (long long)s->x->rows,
                       (long long)s->x->cols, qv_dtype_name(s->x->dt), (long long)T, (long long)ci, qv_dtype_name(Td));
    const qv_acts *xq = s->x_q ? s->x_q : s->x; /* the candidate's input (§5.7) */
    qv_fq wq = qv_quant_weight_fq(o);
    const qv_fq_scale mode = o->wa ? QV_FQ_SCALE_MUL : QV_FQ_SCALE_MULDIV;
    const qv_dtype out_dt = cdt == Td ? Td : QV_F32;
    const char *why = NULL;
    for (int f = 0; f < g->n_fcs && !why; f++)
        why = qv_fq_check(&wq, Td, out_dt, mode, s->fc_w[f] /* any non-NULL: a scale is given */, ci);
    if (why)
        return qv_fail(QV_ERR_INVALID, "%s: %s", qv_llm_lin_suffix(m, g->fcs[0]), why);

    const qv_gemm_kernels *pkk = packed_kernels(s, &wq);
    const bool packed = pkk != NULL, fly = packed && crow >= fly_rows();
    qv_fqgemm_w *pk[QV_LIN_COUNT] = {0}, *pq[3] = {0}; /* packed linears; prepared candidates */
    qv_fqgemm_q fq = {.mode = mode, .p = wq};
    qv_llm_weights w0 = *s->w; /* the reference forward's view */
    qv_status st = QV_OK;
    qv_acts y0 = {0}, yc = {0};
    void *s_T = NULL, *cand[3] = {0};
    float *xin = NULL, *y = NULL, *sk = NULL;
    double *row_abs = NULL, *row_sq = NULL, *part = NULL;
    QV_CHECK(st = qv_acts_alloc(&y0, Td, T, cout, "search: reference output"), done);
    QV_CHECK(st = qv_acts_alloc(&yc, Td, crow, cout, "search: candidate output"), done);
    xin = qv_malloc((size_t)(crow * ci) * sizeof *xin, "search: input chunk");
    y = qv_malloc((size_t)(crow * cout) * sizeof *y, "search: output chunk");
    sk = qv_malloc((size_t)ci * sizeof *sk, "search: scale");
    s_T = qv_malloc((size_t)ci * tes, "search: scale");
    row_abs = qv_malloc((size_t)T * sizeof *row_abs, "search: loss rows");
    row_sq = qv_malloc((size_t)T * sizeof *row_sq, "search: loss rows");
    part = qv_malloc((size_t)(B * LS_W) * sizeof *part + 8, "search: loss sums");
    if (!xin || !y || !sk || !s_T || !row_abs || !row_sq || !part) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    if (packed) {
        qv_llm_lin l[4];
        const int n = inspect_lins(m, g, l);
        for (int i = 0; i < n; i++) {
            QV_CHECK(st = pack_lin(s, pkk, l[i], &pk[l[i]]), done);
            w0.packed[l[i]] = pk[l[i]];
        }
        for (int f = 0; f < g->n_fcs && !fly; f++)
            QV_CHECK(st = qv_fqgemm_alloc_like(pk[g->fcs[f]], &pq[f]), done);
        fq.s = s_T;
    }
    for (int f = 0; f < g->n_fcs && !packed; f++) {
        int64_t co = qv_llm_lin_out(m, g->fcs[f]);
        cand[f] = qv_aligned_alloc(64, (size_t)(co * ci) * ces, "search: candidate weights");
        if (!cand[f]) {
            st = QV_ERR_NOMEM;
            goto done;
        }
    }

    /* the statistic from the candidate's input; the reference output from the clean input */
    QV_CHECK(st = qv_act_scale(s->act_scale, xq, L, Td, o->division), done);
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
        const int64_t nb = QV_MIN(chunk, B - b0), r0 = b0 * L, nr = nb * L;
        qv_acts_get(s->x, r0, nr, xin);
        const double tp = qv_now_s();
        QV_CHECK(st = run_inspect(s, &w0, b0, nb, xin, y), done);
        qv_prof_add(QV_PROF_INSPECT, qv_now_s() - tp);
        qv_acts_put(&y0, r0, nr, y);
    }

    double best = INFINITY;
    s->best = -1;
    for (int kk = 0; kk < o->n_grid; kk++) {
        qv_grid_scale(sk, s->act_scale, ci, kk, o->n_grid, Td);
        if (Td == QV_F32)
            memcpy(s_T, sk, (size_t)ci * sizeof(float));
        else
            (Td == QV_BF16 ? k->f32_to_bf16 : k->f32_to_f16)(s_T, sk, (size_t)ci);
        qv_llm_weights cw = w0;
        double tp = qv_now_s();
        for (int f = 0; f < g->n_fcs; f++) {
            const int64_t co = qv_llm_lin_out(m, g->fcs[f]);
            const int64_t rb = 16;
            if (fly) { /* fake-quantized inside every GEMM call from s_T */
                cw.fq[g->fcs[f]] = &fq;
            } else if (packed) { /* fake-quantized once, into the packed candidate */
                QV_CHECK(st = qv_fqgemm_prepare(pq[f], pk[g->fcs[f]], &fq), done);
                cw.packed[g->fcs[f]] = pq[f];
            } else {
#pragma omp parallel for schedule(static)
                for (int64_t q0 = 0; q0 < co; q0 += rb)
                    k->fq_rows((char *)cand[f] + (size_t)(q0 * ci) * qv_dtype_size(out_dt), out_dt,
                               (const char *)s->fc_w[f] + (size_t)(q0 * ci) * tes, Td, s_T, mode,
                               QV_MIN(rb, co - q0), ci, &wq);
                cw.w[g->fcs[f]] = cand[f];
            }
            if (o->wa) {
                cw.act_bits[g->fcs[f]] = (int8_t)o->a_bit;
                cw.act_div = (uint8_t)o->division;
                cw.act_dt = Td;
            }
        }
        qv_prof_add(QV_PROF_CAND, qv_now_s() - tp);
        for (int64_t b0 = 0; b0 < B; b0 += chunk) {
            const int64_t nb = QV_MIN(chunk, B - b0), r0 = b0 * L, nr = nb * L;
            qv_acts_get(xq, r0, nr, xin);
            if (o->wa) { /* §5.6: the WALinear sees x ⊘ s, rounded to T */
#pragma omp parallel for schedule(static) if (nr * ci >= 65536)
                for (int64_t t = 0; t < nr; t++)
                    for (int64_t j = 0; j < ci; j++) {
                        float v = xin[t * ci + j] / sk[j];
                        xin[t * ci + j] = Td == QV_BF16 ? qv_round_bf16(v) : Td == QV_F16 ? qv_round_f16(v) : v;
                    }
            }
            tp = qv_now_s();
            QV_CHECK(st = run_inspect(s, &cw, b0, nb, xin, y), done);
            const double ti = qv_now_s();
            qv_prof_add(QV_PROF_INSPECT, ti - tp);
            qv_acts_put(&yc, 0, nr, y);
            const int64_t rblk = 64;
#pragma omp parallel for schedule(static) if (nr * cout >= 65536)
            for (int64_t q0 = 0; q0 < nr; q0 += rblk)
                k->loss_rows(row_abs + r0 + q0, row_sq + r0 + q0, qv_acts_row(&y0, r0 + q0), qv_acts_row(&yc, q0), Td,
                             QV_MIN(rblk, nr - q0), cout, NULL);
            qv_prof_add(QV_PROF_LOSS, qv_now_s() - ti);
        }
        double tot[LS_W];
        sample_sums(s, row_abs, row_sq, B, L, part);
        QV_CHECK(st = qv_comm_sum_rows(part, B, LS_W, tot), done);
        double loss = group_loss(s, tot, cout);
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
    qv_acts_free(&y0);
    qv_acts_free(&yc);
    qv_free(xin);
    qv_free(y);
    qv_free(sk);
    qv_free(s_T);
    qv_free(row_abs);
    qv_free(row_sq);
    qv_free(part);
    for (int f = 0; f < 3; f++) {
        qv_free(cand[f]);
        qv_fqgemm_free(pq[f]);
    }
    for (int l = 0; l < QV_LIN_COUNT; l++)
        qv_fqgemm_free(pk[l]);
    return st;
}
