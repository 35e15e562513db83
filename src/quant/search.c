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
 * module's linears are packed once per group and run on the tile kernels, the fcs' candidates
 * fake-quantized on the fly from s_k (no candidate copy); the reference output Y0 uses the same
 * kernels without quantization. QVLM_FQGEMM=0 turns it off; F32 compute never takes it, except
 * under QVLM_FQGEMM=emu-amx (tests: the emulated AMX set, any compute dtype, BF16 reference T). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../simd/fp.h"
#include "../nn/fqgemm.h"
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
    if (s->o->T != QV_BF16 || (e && !strcmp(e, "0")))
        return NULL;
    if (e && !strcmp(e, "emu-amx"))
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

    const qv_gemm_kernels *pkk = packed_kernels(s, &wq);
    const bool packed = pkk != NULL;
    qv_fqgemm_w *pk[QV_LIN_COUNT] = {0};
    qv_fqgemm_q fq = {.mode = o->wa ? QV_FQ_SCALE_MUL : QV_FQ_SCALE_MULDIV, .p = wq};
    qv_llm_weights w0 = *s->w; /* the reference forward's view */
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
    if (packed) {
        qv_llm_lin l[4];
        const int n = inspect_lins(m, g, l);
        for (int i = 0; i < n; i++) {
            QV_CHECK(st = pack_lin(s, pkk, l[i], &pk[l[i]]), done);
            w0.packed[l[i]] = pk[l[i]];
        }
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
    if (o->wa) {
        xs = qv_malloc((size_t)(T * ci) * sizeof *xs, "search: scaled input");
        if (!xs) {
            st = QV_ERR_NOMEM;
            goto done;
        }
    }

    /* the statistic from the candidate's input; the reference output from the clean input */
    qv_act_scale(s->act_scale, xq, T, ci, Td, o->division);
    QV_CHECK(st = run_inspect(s, &w0, s->x, y), done);
    qv_round_values(y, T * cout, Td);
    store_T(y0, y, T * cout, Td);

    double best = INFINITY;
    s->best = -1;
    for (int kk = 0; kk < o->n_grid; kk++) {
        qv_grid_scale(sk, s->act_scale, ci, kk, o->n_grid, Td);
        store_T(s_T, sk, ci, Td);
        qv_llm_weights cw = w0;
        for (int f = 0; f < g->n_fcs; f++) {
            const int64_t co = qv_llm_lin_out(m, g->fcs[f]);
            const qv_dtype out_dt = cdt == Td ? Td : QV_F32;
            const qv_fq_scale mode = o->wa ? QV_FQ_SCALE_MUL : QV_FQ_SCALE_MULDIV;
            const int64_t rb = 16;
            if (packed) { /* fake-quantized inside the GEMM (s_T holds this grid point's scale) */
                cw.fq[g->fcs[f]] = &fq;
            } else {
#pragma omp parallel for schedule(static)
                for (int64_t r0 = 0; r0 < co; r0 += rb)
                    k->fq_rows((char *)cand[f] + (size_t)(r0 * ci) * qv_dtype_size(out_dt), out_dt,
                               (const char *)s->fc_w[f] + (size_t)(r0 * ci) * tes, Td, s_T, mode,
                               QV_MIN(rb, co - r0), ci, &wq);
                cw.w[g->fcs[f]] = cand[f];
            }
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
    for (int l = 0; l < QV_LIN_COUNT; l++)
        qv_fqgemm_free(pk[l]);
    return st;
}
