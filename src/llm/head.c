/* head.c — LM head over vocabulary chunks (head.h). */
#include "head.h"

#include <math.h>
#include <string.h>

#include "../../simd/fp.h"
#include "../nn/matmul.h"
#include "llm_internal.h"

#define VCHUNK 4096 /* vocabulary rows per chunk */
#define RCHUNK 256  /* rows per logits tile */

/* Pointer to head rows [v0, v0+nv) in the compute dtype; widened/rounded into buf when the
 * checkpoint dtype differs. */
static qv_status head_chunk(const qv_llm *m, int64_t v0, int64_t nv, void *buf, const void **out)
{
    const qv_tensor *h = &m->head;
    const size_t es = qv_dtype_size(h->dtype), n = (size_t)(nv * m->C);
    const char *src = (const char *)h->data + (size_t)(v0 * m->C) * es;
    if (h->dtype == m->dt) {
        *out = src;
        return QV_OK;
    }
    if (m->dt == QV_F32 && h->dtype == QV_BF16) {
        float *d = buf;
        const uint16_t *s = (const uint16_t *)src;
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) {
            uint16_t x;
            memcpy(&x, s + i, 2);
            d[i] = qv_bf16_to_f32(x);
        }
    } else {
        QV_TRY(qv_convert(buf, m->dt, src, h->dtype, n));
    }
    *out = buf;
    return QV_OK;
}

typedef struct lse_state {
    float mx;
    double sum;
} lse_state;

qv_status qv_llm_head_nll(const qv_llm *m, const float *normed, int64_t n, const int64_t *targets, float *lse,
                          float *nll, const uint8_t *keep, float *logits)
{
    if (n <= 0)
        return QV_OK;
    if (!m->head.data)
        return qv_fail(QV_ERR_INVALID, "%s: no LM head", m->dir);
    const int64_t C = m->C, V = m->V, vc = QV_MIN((int64_t)VCHUNK, V), rc = QV_MIN((int64_t)RCHUNK, n);
    lse_state *ls = qv_malloc((size_t)n * sizeof *ls, "log-sum-exp state");
    float *zt = qv_malloc((size_t)n * sizeof *zt + 4, "target logits");
    int64_t *keep_at = qv_malloc((size_t)n * sizeof *keep_at, "kept logit rows");
    void *wbuf = m->head.dtype == m->dt ? NULL : qv_aligned_alloc(64, (size_t)(vc * C) * qv_dtype_size(m->dt), "head chunk");
    float *z = qv_aligned_alloc(64, (size_t)(rc * vc) * sizeof *z, "logits tile");
    qv_status st = QV_OK;
    if (!ls || !zt || !keep_at || !z || (m->head.dtype != m->dt && !wbuf)) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    int64_t nk = 0;
    for (int64_t r = 0; r < n; r++) {
        ls[r].mx = -INFINITY;
        ls[r].sum = 0;
        zt[r] = NAN;
        keep_at[r] = keep && keep[r] ? nk++ : -1;
    }
    for (int64_t v0 = 0; v0 < V && st == QV_OK; v0 += vc) {
        const int64_t nv = QV_MIN(vc, V - v0);
        const void *w;
        QV_CHECK(st = head_chunk(m, v0, nv, wbuf, &w), done);
        for (int64_t r0 = 0; r0 < n; r0 += rc) {
            const int64_t mr = QV_MIN(rc, n - r0);
            QV_CHECK(st = qv_llm_matmul_nk(m, mr, nv, C, normed + r0 * C, w, z, 0), done);
#pragma omp parallel for schedule(static) if (mr * nv >= 65536)
            for (int64_t r = 0; r < mr; r++) {
                const float *zr = z + r * nv;
                lse_state *s = &ls[r0 + r];
                float cm = -INFINITY;
                for (int64_t v = 0; v < nv; v++)
                    cm = fmaxf(cm, zr[v]);
                float nm = fmaxf(s->mx, cm);
                double acc = 0;
                for (int64_t v = 0; v < nv; v++)
                    acc += exp((double)zr[v] - nm);
                s->sum = (s->mx == -INFINITY ? 0 : s->sum * exp((double)s->mx - nm)) + acc;
                s->mx = nm;
                if (targets && targets[r0 + r] >= v0 && targets[r0 + r] < v0 + nv)
                    zt[r0 + r] = zr[targets[r0 + r] - v0];
                if (logits && keep_at[r0 + r] >= 0)
                    memcpy(logits + keep_at[r0 + r] * V + v0, zr, (size_t)nv * sizeof *zr);
            }
        }
    }
    for (int64_t r = 0; r < n; r++) {
        double l = (double)ls[r].mx + log(ls[r].sum);
        if (lse)
            lse[r] = (float)l;
        if (nll && targets)
            nll[r] = (float)(l - (double)zt[r]);
    }
done:
    qv_free(ls);
    qv_free(zt);
    qv_free(keep_at);
    qv_free(wbuf);
    qv_free(z);
    return st;
}

/* ---- several models on the same rows (head.h qv_llm_head_compare) ---------------------------- */

typedef struct cmp_state {
    float mx;       /* log-sum-exp shift: the largest logit so far */
    float best;     /* argmax value (strict >: the first maximum wins) */
    int64_t arg;
    float zt;       /* target logit */
    double sum;     /* Σ exp(z − mx) */
    double cross;   /* models k ≥ 1: Σ exp(a − mx_ref)·(a − b), a = the reference's logits */
} cmp_state;

/* Folds one chunk of a row's logits z [nv] (vocabulary v0..) into s: max, argmax, target, sum. */
static void cmp_fold(cmp_state *s, const float *z, int64_t nv, int64_t v0, int64_t tg)
{
    float cm = -INFINITY;
    for (int64_t v = 0; v < nv; v++) {
        cm = fmaxf(cm, z[v]);
        if (z[v] > s->best) {
            s->best = z[v];
            s->arg = v0 + v;
        }
    }
    const float nm = fmaxf(s->mx, cm);
    const double f = s->mx == -INFINITY ? 0 : exp((double)s->mx - nm);
    double acc = 0;
    for (int64_t v = 0; v < nv; v++)
        acc += exp((double)z[v] - nm);
    s->sum = s->sum * f + acc;
    s->mx = nm;
    if (tg >= v0 && tg < v0 + nv)
        s->zt = z[tg - v0];
}

qv_status qv_llm_head_compare(const qv_llm *m, const float *const *rows, int nm, int64_t n, const int64_t *targets,
                              qv_llm_head_stat *stats)
{
    if (n <= 0)
        return QV_OK;
    const int64_t K = (int64_t)nm + 1, C = m->C, V = m->V, vc = QV_MIN((int64_t)VCHUNK, V);
    /* all models' logit tiles at once: keep them near RCHUNK·VCHUNK·4 floats together */
    const int64_t rc = QV_MIN(QV_MAX((int64_t)16, 4 * (int64_t)RCHUNK / K), n);
    cmp_state *cs = qv_malloc((size_t)(K * n) * sizeof *cs, "head statistics");
    void *wbuf = m->head.dtype == m->dt ? NULL : qv_aligned_alloc(64, (size_t)(vc * C) * qv_dtype_size(m->dt), "head chunk");
    float *z = qv_aligned_alloc(64, (size_t)(K * rc * vc) * sizeof *z, "logits tiles");
    qv_status st = QV_OK;
    if (!cs || !z || (m->head.dtype != m->dt && !wbuf)) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < K * n; i++)
        cs[i] = (cmp_state){.mx = -INFINITY, .best = -INFINITY, .arg = -1, .zt = NAN};
    for (int64_t v0 = 0; v0 < V; v0 += vc) {
        const int64_t nv = QV_MIN(vc, V - v0);
        const void *w;
        QV_CHECK(st = head_chunk(m, v0, nv, wbuf, &w), done);
        for (int64_t r0 = 0; r0 < n; r0 += rc) {
            const int64_t mr = QV_MIN(rc, n - r0);
            for (int64_t k = 0; k < K; k++)
                QV_CHECK(st = qv_llm_matmul_nk(m, mr, nv, C, rows[k] + r0 * C, w, z + k * rc * vc, 0), done);
#pragma omp parallel for schedule(static) if (K * mr * nv >= 65536)
            for (int64_t r = 0; r < mr; r++) {
                const int64_t row = r0 + r, tg = targets ? targets[row] : -1;
                const float *a = z + r * nv;
                cmp_state *ref = &cs[row];
                const float mx_old = ref->mx;
                cmp_fold(ref, a, nv, v0, tg);
                /* Σ exp(a − mx)·(a − b) under the reference's (possibly raised) shift */
                const double f = mx_old == -INFINITY ? 0 : exp((double)mx_old - ref->mx);
                for (int64_t k = 1; k < K; k++) {
                    const float *b = z + k * rc * vc + r * nv;
                    cmp_state *s = &cs[k * n + row];
                    double acc = 0;
                    for (int64_t v = 0; v < nv; v++)
                        acc += exp((double)a[v] - ref->mx) * ((double)a[v] - (double)b[v]);
                    s->cross = s->cross * f + acc;
                    cmp_fold(s, b, nv, v0, tg);
                }
            }
        }
    }
    for (int64_t r = 0; r < n; r++) {
        const double lse_ref = (double)cs[r].mx + log(cs[r].sum);
        for (int64_t k = 0; k < K; k++) {
            const cmp_state *s = &cs[k * n + r];
            const double lse = (double)s->mx + log(s->sum);
            qv_llm_head_stat *o = &stats[k * n + r];
            o->nll = targets ? lse - (double)s->zt : NAN;
            o->argmax = s->arg;
            if (k == 0) {
                o->kl = 0;
            } else {
                const double kl = s->cross / cs[r].sum - lse_ref + lse;
                o->kl = kl > 0 ? kl : isnan(kl) ? kl : 0;
            }
        }
    }
done:
    qv_free(cs);
    qv_free(wbuf);
    qv_free(z);
    return st;
}

/* dn [M, C] += dz [M, nv] · W [nv, C] in the compute dtype. */
static qv_status matmul_kn(const qv_llm *m, int64_t M, int64_t nv, const float *dz, const void *w, float *dn)
{
    const int64_t C = m->C;
    if (m->dt == QV_F32)
        return qv_matmul(QV_F32, M, C, nv, dz, nv, w, C, NULL, dn, C, QV_MM_ACCUMULATE);
    uint16_t *b = qv_malloc((size_t)(M * nv) * 2, "BF16 logit gradients");
    if (!b)
        return QV_ERR_NOMEM;
    for (int64_t i = 0; i < M * nv; i++)
        b[i] = qv_f32_to_bf16(dz[i]);
    qv_status st = qv_matmul(QV_BF16, M, C, nv, b, nv, w, C, NULL, dn, C, QV_MM_ACCUMULATE);
    qv_free(b);
    return st;
}

qv_status qv_llm_head_backward(const qv_llm *m, const float *normed, int64_t n, const int64_t *targets,
                               const float *lse, const float *scale, float *dnormed)
{
    if (n <= 0)
        return QV_OK;
    if (!m->head.data)
        return qv_fail(QV_ERR_INVALID, "%s: no LM head", m->dir);
    const int64_t C = m->C, V = m->V, vc = QV_MIN((int64_t)VCHUNK, V), rc = QV_MIN((int64_t)RCHUNK, n);
    void *wbuf = m->head.dtype == m->dt ? NULL : qv_aligned_alloc(64, (size_t)(vc * C) * qv_dtype_size(m->dt), "head chunk");
    float *z = qv_aligned_alloc(64, (size_t)(rc * vc) * sizeof *z, "logits tile");
    qv_status st = QV_OK;
    if (!z || (m->head.dtype != m->dt && !wbuf)) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    for (int64_t v0 = 0; v0 < V; v0 += vc) {
        const int64_t nv = QV_MIN(vc, V - v0);
        const void *w;
        QV_CHECK(st = head_chunk(m, v0, nv, wbuf, &w), done);
        for (int64_t r0 = 0; r0 < n; r0 += rc) {
            const int64_t mr = QV_MIN(rc, n - r0);
            QV_CHECK(st = qv_llm_matmul_nk(m, mr, nv, C, normed + r0 * C, w, z, 0), done);
#pragma omp parallel for schedule(static) if (mr * nv >= 65536)
            for (int64_t r = 0; r < mr; r++) {
                float *zr = z + r * nv;
                const double l = lse[r0 + r], s = scale[r0 + r];
                const int64_t tg = targets[r0 + r];
                for (int64_t v = 0; v < nv; v++) {
                    double p = exp((double)zr[v] - l);
                    zr[v] = (float)((p - (v0 + v == tg ? 1.0 : 0.0)) * s);
                }
            }
            QV_CHECK(st = matmul_kn(m, mr, nv, z, w, dnormed + r0 * C), done);
        }
    }
done:
    qv_free(wbuf);
    qv_free(z);
    return st;
}
