/* fqgemm.c — the packed BF16 GEMM with on-the-fly fake quantization (fqgemm.h): packing, the
 * OpenMP driver over (panel, row chunk) items with per-thread panel buffers, the row tail
 * (padded to the kernel's micro-tile), the generic oneDNN path, and the tunables. */
#include "fqgemm.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../simd/fp.h"
#include "../core/prof.h"
#include "matmul.h"

struct qv_fqgemm_w {
    const qv_gemm_kernels *k; /* NULL: generic path */
    int64_t N, K;
    int64_t nbt;              /* n-blocks of 16 channels (N padded to 32) */
    uint16_t *data;           /* packed, qv_gemm_packed_elems(N, K) */
};

/* Rows of x rounded to BF16 per call of qv_fqgemm_f32 (bounds the conversion buffer to 256 MiB;
 * large, because each call fake-quantizes the whole weight once). */
#define FQGEMM_X_CHUNK_ELEMS ((int64_t)1 << 27)

const qv_gemm_kernels qv_fqgemm_generic = {.isa = QV_GEMM_ISA_COUNT, .name = "generic"};

/* ---- tunables ------------------------------------------------------------------------------- */

static qv_fqgemm_tune g_tune = {.kc = 512, .panel_kib = 1024};
static pthread_once_t g_tune_once = PTHREAD_ONCE_INIT;

static void tune_env(void)
{
    const char *e = getenv("QVLM_GEMM_KC");
    if (e && *e)
        g_tune.kc = strtoll(e, NULL, 10);
    e = getenv("QVLM_GEMM_PANEL_KB");
    if (e && *e)
        g_tune.panel_kib = strtoll(e, NULL, 10);
    if (g_tune.kc < 0 || g_tune.kc % QV_GEMM_KT)
        g_tune.kc = 512;
    if (g_tune.panel_kib < 1)
        g_tune.panel_kib = 1024;
}

qv_fqgemm_tune qv_fqgemm_tune_get(void)
{
    pthread_once(&g_tune_once, tune_env);
    return g_tune;
}

void qv_fqgemm_tune_set(const qv_fqgemm_tune *t)
{
    pthread_once(&g_tune_once, tune_env);
    g_tune = *t;
    if (g_tune.kc < 0 || g_tune.kc % QV_GEMM_KT)
        g_tune.kc = 0;
    if (g_tune.panel_kib < 1)
        g_tune.panel_kib = 1;
}

/* ---- packing -------------------------------------------------------------------------------- */

qv_status qv_fqgemm_pack(const qv_gemm_kernels *k, const uint16_t *w, int64_t N, int64_t K, qv_fqgemm_w **out)
{
    *out = NULL;
    if (N < 1 || K < 1)
        return qv_fail(QV_ERR_INVALID, "fqgemm: weight shape [%lld, %lld] is empty", (long long)N, (long long)K);
    if (K % QV_GEMM_KT)
        return qv_fail(QV_ERR_UNSUPPORTED, "fqgemm: %lld input channels are not a multiple of %d", (long long)K,
                       QV_GEMM_KT);
    size_t bytes;
    if (!qv_mul_size((size_t)qv_gemm_packed_elems(N, K), sizeof(uint16_t), &bytes))
        return qv_fail(QV_ERR_NOMEM, "fqgemm: packed weight size overflows");
    qv_fqgemm_w *p = qv_calloc(1, sizeof *p, "packed weight");
    if (!p)
        return QV_ERR_NOMEM;
    p->data = qv_aligned_alloc(64, bytes, "packed weight");
    if (!p->data) {
        qv_free(p);
        return QV_ERR_NOMEM;
    }
    p->k = k ? k : qv_gemm_kernels_active();
    if (p->k == &qv_fqgemm_generic)
        p->k = NULL;
    p->N = N, p->K = K;
    p->nbt = qv_gemm_packed_elems(N, K) / K / QV_GEMM_NB;
    /* one n-block pair per item: packing is a copy, parallel over disjoint outputs */
    const int64_t pairs = p->nbt / 2;
#pragma omp parallel for schedule(static) if (N * K >= 65536)
    for (int64_t i = 0; i < pairs; i++) {
        const int64_t r0 = 32 * i, nr = QV_MIN((int64_t)32, N - r0);
        if (nr > 0)
            qv_gemm_pack(p->data + r0 * K, w + r0 * K, K, nr, K);
    }
    *out = p;
    return QV_OK;
}

qv_status qv_fqgemm_alloc_like(const qv_fqgemm_w *src, qv_fqgemm_w **out)
{
    *out = NULL;
    qv_fqgemm_w *p = qv_calloc(1, sizeof *p, "packed weight");
    if (!p)
        return QV_ERR_NOMEM;
    *p = *src;
    p->data = qv_aligned_alloc(64, (size_t)qv_gemm_packed_elems(src->N, src->K) * sizeof(uint16_t), "packed weight");
    if (!p->data) {
        qv_free(p);
        return QV_ERR_NOMEM;
    }
    *out = p;
    return QV_OK;
}

void qv_fqgemm_free(qv_fqgemm_w *w)
{
    if (!w)
        return;
    qv_free(w->data);
    qv_free(w);
}

int64_t qv_fqgemm_rows(const qv_fqgemm_w *w) { return w->N; }
int64_t qv_fqgemm_cols(const qv_fqgemm_w *w) { return w->K; }
const char *qv_fqgemm_kernel_name(const qv_fqgemm_w *w) { return w->k ? w->k->name : "generic"; }

bool qv_fqgemm_supports(int64_t K, const qv_fq *p)
{
    if (K < 1 || K % QV_GEMM_KT)
        return false;
    return !p || p->group == -1 || (p->group > 0 && p->group % 2 == 0 && K % p->group == 0);
}

bool qv_fqgemm_native(void) { return qv_gemm_kernels_active() != NULL; }

/* ---- the driver ----------------------------------------------------------------------------- */

static qv_status check_q(const qv_fqgemm_w *w, const qv_fqgemm_q *q)
{
    if (!q)
        return QV_OK;
    if (q->mode != QV_FQ_SCALE_NONE && q->mode != QV_FQ_SCALE_MUL && q->mode != QV_FQ_SCALE_MULDIV)
        return qv_fail(QV_ERR_INVALID, "fqgemm: the weight's fused form must be NONE, MUL or MULDIV");
    const char *why = qv_fq_check(&q->p, QV_BF16, QV_BF16, q->mode, q->s, w->K);
    if (why)
        return qv_fail(QV_ERR_INVALID, "fqgemm: %s", why);
    if (!qv_fqgemm_supports(w->K, &q->p))
        return qv_fail(QV_ERR_INVALID, "fqgemm: group %lld is odd (the packed path pairs columns)",
                       (long long)q->p.group);
    return QV_OK;
}

/* The generic path: per panel of 32 channels, the rows unpacked, fake-quantized by the active
 * table into F32 (or widened) and multiplied by oneDNN in F32 against x widened once. */
static qv_status run_generic(float *y, const uint16_t *x, int64_t M, const qv_fqgemm_w *w, const qv_fqgemm_q *q,
                             const float *bias)
{
    const int64_t N = w->N, K = w->K, nt = omp_get_max_threads();
    float *xf = qv_malloc((size_t)(M * K) * sizeof *xf, "fqgemm: F32 rows");
    float *wf = qv_malloc((size_t)(nt * 32 * K) * sizeof *wf, "fqgemm: F32 weight panel");
    uint16_t *rows = qv_malloc((size_t)(nt * 32 * K) * sizeof *rows, "fqgemm: weight rows");
    if (!xf || !wf || !rows) {
        qv_free(xf);
        qv_free(wf);
        qv_free(rows);
        return QV_ERR_NOMEM;
    }
    const qv_kernel_table *kt = qv_kernels();
#pragma omp parallel for schedule(static) if (M * K >= 65536)
    for (int64_t i = 0; i < M; i++)
        kt->bf16_to_f32(xf + i * K, x + i * K, (size_t)K);
    qv_par_error pe = {0};
    const int64_t panels = (N + 31) / 32;
#pragma omp parallel for schedule(static)
    for (int64_t pi = 0; pi < panels; pi++) {
        if (pe.failed)
            continue;
        const int t = omp_get_thread_num();
        const int64_t c0 = 32 * pi, nc = QV_MIN((int64_t)32, N - c0);
        uint16_t *r = rows + (size_t)t * 32 * K;
        float *f = wf + (size_t)t * 32 * K;
        for (int64_t n = 0; n < nc; n++)
            qv_gemm_unpack_row(r + n * K, w->data, c0 + n, K);
        if (q)
            kt->fq_rows(f, QV_F32, r, QV_BF16, q->s, q->mode, nc, K, &q->p);
        else
            kt->bf16_to_f32(f, r, (size_t)(nc * K));
        qv_status st = qv_matmul(QV_F32, M, nc, K, xf, K, f, K, bias ? bias + c0 : NULL, y + c0, N, QV_MM_B_NK);
        if (st != QV_OK)
            qv_par_error_set(&pe, st);
    }
    qv_free(xf);
    qv_free(wf);
    qv_free(rows);
    return qv_par_error_status(&pe);
}

qv_status qv_fqgemm(float *y, const uint16_t *x, int64_t M, const qv_fqgemm_w *w, const qv_fqgemm_q *q,
                    const float *bias)
{
    if (M < 0)
        return qv_fail(QV_ERR_INVALID, "fqgemm: negative row count");
    QV_TRY(check_q(w, q));
    if (M == 0)
        return QV_OK;
    if (!w->k)
        return run_generic(y, x, M, w, q, bias);

    const qv_gemm_kernels *k = w->k;
    const qv_fqgemm_tune tune = qv_fqgemm_tune_get();
    const int64_t N = w->N, K = w->K, nbt = w->nbt, mr = k->mr;
    /* panel width: the n-blocks whose fake-quantized copy fits the budget, in pairs */
    int64_t pw = tune.panel_kib * 1024 / (K * QV_GEMM_NB * 2) / 2 * 2;
    /* without fake quantization there is no per-thread copy to fit: at least 256 columns per item
     * (the kernel's accumulator group), so each row block of X is read once per 256 columns */
    if (!q)
        pw = QV_MAX(pw, (int64_t)16);
    pw = QV_MAX((int64_t)2, QV_MIN(pw, nbt));
    const int64_t panels = (nbt + pw - 1) / pw, nthreads = omp_get_max_threads();
    /* few panels: split the rows too (each row chunk fake-quantizes its panel again) */
    int64_t mc = panels >= nthreads ? 1 : (nthreads + panels - 1) / panels;
    mc = QV_MAX((int64_t)1, QV_MIN(mc, M / (4 * mr)));
    const int64_t mrows = ((M + mc - 1) / mc + mr - 1) / mr * mr;
    mc = (M + mrows - 1) / mrows;

    /* per thread: the panel, the fake-quant scratch, a padded row tail of x and of y */
    const size_t per_panel = q ? (size_t)(pw * QV_GEMM_NB * K) : 0;
    const size_t per =
        (per_panel + 4 * (size_t)K + (size_t)(mr * K) + 2 * (size_t)(mr * pw * QV_GEMM_NB) + 32) & ~(size_t)31;
    size_t bytes;
    if (!qv_mul_size(per * sizeof(uint16_t), (size_t)nthreads, &bytes))
        return qv_fail(QV_ERR_NOMEM, "fqgemm: scratch size overflows");
    uint16_t *scratch = qv_aligned_alloc(64, bytes, "fqgemm: per-thread panels");
    if (!scratch)
        return QV_ERR_NOMEM;
    const double t0 = qv_now_s();

#pragma omp parallel
    {
        const int t = omp_get_thread_num();
        uint16_t *base = scratch + (size_t)(t < nthreads ? t : 0) * per;
        uint16_t *pbuf = base, *fqs = base + per_panel, *xt = fqs + 4 * K;
        float *yt = (float *)(xt + mr * K);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < panels * mc; item++) {
            const int64_t pi = item / mc, mi = item % mc;
            const int64_t nb0 = pi * pw, nbn = QV_MIN(pw, nbt - nb0), c0 = nb0 * QV_GEMM_NB;
            const int64_t ncols = QV_MIN(N - c0, nbn * QV_GEMM_NB);
            if (ncols <= 0)
                continue;
            const uint16_t *panel = w->data + c0 * K;
            if (q) {
                k->fq_panel(pbuf, panel, nbn, K, ncols, q->s, q->mode, &q->p, fqs);
                panel = pbuf;
            }
            const int64_t m0 = mi * mrows, m1 = QV_MIN(M, m0 + mrows), full = (m1 - m0) / mr * mr;
            const float *bc = bias ? bias + c0 : NULL;
            if (full > 0)
                k->gemm(y + m0 * N + c0, N, x + m0 * K, K, full, K, panel, nbn, ncols, bc, tune.kc);
            const int64_t rem = m1 - m0 - full;
            if (rem > 0) {
                memcpy(xt, x + (m0 + full) * K, (size_t)(rem * K) * sizeof *xt);
                memset(xt + rem * K, 0, (size_t)((mr - rem) * K) * sizeof *xt);
                const int64_t ldt = nbn * QV_GEMM_NB;
                k->gemm(yt, ldt, xt, K, mr, K, panel, nbn, ncols, bc, tune.kc);
                for (int64_t r = 0; r < rem; r++)
                    memcpy(y + (m0 + full + r) * N + c0, yt + r * ldt, (size_t)ncols * sizeof *y);
            }
        }
    }
    qv_prof_add(QV_PROF_GEMM, qv_now_s() - t0);
    qv_free(scratch);
    return QV_OK;
}

qv_status qv_fqgemm_prepare(qv_fqgemm_w *dst, const qv_fqgemm_w *src, const qv_fqgemm_q *q)
{
    if (dst->N != src->N || dst->K != src->K || dst->k != src->k)
        return qv_fail(QV_ERR_INTERNAL, "fqgemm: prepared weight does not match its source");
    if (!q)
        return qv_fail(QV_ERR_INTERNAL, "fqgemm: nothing to prepare without a quantizer");
    QV_TRY(check_q(src, q));
    const int64_t K = src->K, N = src->N, pairs = src->nbt / 2, nthreads = omp_get_max_threads();
    uint16_t *scratch = qv_malloc((size_t)(nthreads * 4 * K) * sizeof *scratch, "fqgemm: fake-quant scratch");
    uint16_t *rows = src->k ? NULL : qv_malloc((size_t)(nthreads * 64 * K) * sizeof *rows, "fqgemm: weight rows");
    if (!scratch || (!src->k && !rows)) {
        qv_free(scratch);
        qv_free(rows);
        return QV_ERR_NOMEM;
    }
    /* one pair of n-blocks (32 channels) per item, as in the panels of qv_fqgemm */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < pairs; i++) {
        const int t = omp_get_thread_num();
        const int64_t c0 = 32 * i, nc = QV_MIN((int64_t)32, N - c0);
        if (nc <= 0)
            continue;
        if (src->k) {
            src->k->fq_panel(dst->data + c0 * K, src->data + c0 * K, 2, K, nc, q->s, q->mode, &q->p,
                             scratch + (size_t)t * 4 * K);
        } else { /* generic: unpack, the active table's fake quantization, pack */
            uint16_t *r = rows + (size_t)t * 64 * K, *o = r + 32 * K;
            for (int64_t n = 0; n < nc; n++)
                qv_gemm_unpack_row(r + n * K, src->data, c0 + n, K);
            qv_kernels()->fq_rows(o, QV_BF16, r, QV_BF16, q->s, q->mode, nc, K, &q->p);
            qv_gemm_pack(dst->data + c0 * K, o, K, nc, K);
        }
    }
    qv_free(scratch);
    qv_free(rows);
    return QV_OK;
}

qv_status qv_fqgemm_f32(float *y, const float *x, int64_t M, const qv_fqgemm_w *w, const qv_fqgemm_q *q,
                        const float *bias)
{
    const int64_t K = w->K;
    if (M <= 0)
        return qv_fqgemm(y, NULL, M, w, q, bias);
    const int64_t rows = QV_MAX((int64_t)1, QV_MIN(M, FQGEMM_X_CHUNK_ELEMS / K));
    uint16_t *xb = qv_malloc((size_t)(rows * K) * sizeof *xb, "fqgemm: BF16 rows");
    if (!xb)
        return QV_ERR_NOMEM;
    const qv_kernel_table *kt = qv_kernels();
    qv_status st = QV_OK;
    for (int64_t r0 = 0; r0 < M && st == QV_OK; r0 += rows) {
        const int64_t mr = QV_MIN(rows, M - r0);
#pragma omp parallel for schedule(static) if (mr * K >= 65536)
        for (int64_t i = 0; i < mr; i++)
            kt->f32_to_bf16(xb + i * K, x + (r0 + i) * K, (size_t)K);
        st = qv_fqgemm(y + r0 * w->N, xb, mr, w, q, bias);
    }
    qv_free(xb);
    return st;
}
