/* attention.c — tiled attention forward/backward on oneDNN tile matmuls, and the double
 * reference (attention.h). */
#include "attention.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "matmul.h"

#define BQ 64  /* queries per tile */
#define BK 128 /* keys per tile */

/* ---- masks ----------------------------------------------------------------------------------- */

static inline bool allowed(const qv_attn_desc *a, int64_t b, int64_t i, int64_t j)
{
    if (a->causal && j > i)
        return false;
    if (a->key_mask && !a->key_mask[b * a->L + j])
        return false;
    if (a->segment && a->segment[b * a->L + i] != a->segment[b * a->L + j])
        return false;
    return true;
}

/* Cheap test that a tile [i0, i0+mq) × [j0, j0+nk) has no allowed pair (conservative: false
 * means "maybe"). */
static bool tile_empty(const qv_attn_desc *a, int64_t b, int64_t i0, int64_t mq, int64_t j0, int64_t nk)
{
    if (a->causal && j0 > i0 + mq - 1)
        return true;
    if (a->key_mask) {
        const uint8_t *km = a->key_mask + b * a->L + j0;
        bool any = false;
        for (int64_t c = 0; c < nk && !any; c++)
            any = km[c] != 0;
        if (!any)
            return true;
    }
    if (a->segment) {
        const int32_t *sg = a->segment + b * a->L;
        int32_t qlo = sg[i0], qhi = sg[i0], klo = sg[j0], khi = sg[j0];
        for (int64_t r = 1; r < mq; r++) {
            qlo = QV_MIN(qlo, sg[i0 + r]);
            qhi = QV_MAX(qhi, sg[i0 + r]);
        }
        for (int64_t c = 1; c < nk; c++) {
            klo = QV_MIN(klo, sg[j0 + c]);
            khi = QV_MAX(khi, sg[j0 + c]);
        }
        if (qhi < klo || khi < qlo)
            return true;
    }
    return false;
}

static qv_status check_desc(const qv_attn_desc *a)
{
    if (a->B < 0 || a->L < 0 || a->H <= 0 || a->KV <= 0 || a->d <= 0 || a->H % a->KV)
        return qv_fail(QV_ERR_INTERNAL, "attention: bad shape B=%lld L=%lld H=%lld KV=%lld d=%lld", (long long)a->B,
                       (long long)a->L, (long long)a->H, (long long)a->KV, (long long)a->d);
    if (a->ldq < a->H * a->d || a->ldo < a->H * a->d || a->ldk < a->KV * a->d || a->ldv < a->KV * a->d)
        return qv_fail(QV_ERR_INTERNAL, "attention: row strides smaller than the heads");
    return QV_OK;
}

/* Per-thread scratch: one allocation, n_threads slices of `per` floats. */
typedef struct scratch {
    float *base;
    size_t per;
    int n;
} scratch;

static qv_status scratch_init(scratch *s, size_t per)
{
    s->n = omp_get_max_threads();
    s->per = (per + 15) & ~(size_t)15;
    size_t bytes;
    if (!qv_mul_size(s->per * sizeof(float), (size_t)s->n, &bytes))
        return qv_fail(QV_ERR_NOMEM, "attention: scratch size overflows");
    s->base = qv_aligned_alloc(64, bytes, "attention tiles");
    return s->base ? QV_OK : QV_ERR_NOMEM;
}

static float *scratch_get(const scratch *s)
{
    int t = omp_get_thread_num();
    return s->base + (size_t)(t < s->n ? t : 0) * s->per;
}

/* ---- forward --------------------------------------------------------------------------------- */

static qv_status fwd_item(const qv_attn_desc *a, int64_t b, int64_t h, int64_t i0, float *out, const float *q,
                          const float *k, const float *v, float *lse, float *ws)
{
    const int64_t L = a->L, d = a->d, g = h / (a->H / a->KV);
    const int64_t mq = QV_MIN(BQ, L - i0);
    float *S = ws, *O = ws + BQ * BK;
    float m[BQ], alpha[BQ];
    double l[BQ];
    for (int64_t r = 0; r < mq; r++) {
        m[r] = -INFINITY;
        l[r] = 0;
    }
    memset(O, 0, (size_t)(mq * d) * sizeof *O);
    const float *qp = q + (b * L + i0) * a->ldq + h * d;
    const int64_t jend = a->causal ? i0 + mq : L;
    for (int64_t j0 = 0; j0 < jend; j0 += BK) {
        const int64_t nk = QV_MIN(BK, jend - j0);
        if (tile_empty(a, b, i0, mq, j0, nk))
            continue;
        const float *kp = k + (b * L + j0) * a->ldk + g * d, *vp = v + (b * L + j0) * a->ldv + g * d;
        QV_TRY(qv_matmul(QV_F32, mq, nk, d, qp, a->ldq, kp, a->ldk, NULL, S, BK, QV_MM_B_NK));
        bool any = false;
        for (int64_t r = 0; r < mq; r++) {
            const int64_t i = i0 + r;
            float *s = S + r * BK;
            float mx = -INFINITY;
            for (int64_t c = 0; c < nk; c++) {
                float val = allowed(a, b, i, j0 + c) ? s[c] * a->scale : -INFINITY;
                s[c] = val;
                mx = fmaxf(mx, val);
            }
            float mnew = fmaxf(m[r], mx);
            if (mnew == -INFINITY) {
                for (int64_t c = 0; c < nk; c++)
                    s[c] = 0.0f;
                alpha[r] = 1.0f;
                continue;
            }
            any = true;
            alpha[r] = m[r] == -INFINITY ? 0.0f : expf(m[r] - mnew);
            double sum = 0;
            for (int64_t c = 0; c < nk; c++) {
                float p = s[c] == -INFINITY ? 0.0f : expf(s[c] - mnew);
                s[c] = p;
                sum += p;
            }
            l[r] = l[r] * alpha[r] + sum;
            m[r] = mnew;
        }
        if (!any)
            continue;
        for (int64_t r = 0; r < mq; r++)
            if (alpha[r] != 1.0f)
                for (int64_t c = 0; c < d; c++)
                    O[r * d + c] *= alpha[r];
        QV_TRY(qv_matmul(QV_F32, mq, d, nk, S, BK, vp, a->ldv, NULL, O, d, QV_MM_ACCUMULATE));
    }
    for (int64_t r = 0; r < mq; r++) {
        float *op = out + (b * L + i0 + r) * a->ldo + h * d;
        if (l[r] > 0) {
            float inv = (float)(1.0 / l[r]);
            for (int64_t c = 0; c < d; c++)
                op[c] = O[r * d + c] * inv;
        } else {
            memset(op, 0, (size_t)d * sizeof *op);
        }
        if (lse)
            lse[(b * a->H + h) * L + i0 + r] = l[r] > 0 ? (float)((double)m[r] + log(l[r])) : -INFINITY;
    }
    return QV_OK;
}

qv_status qv_attention(const qv_attn_desc *a, float *out, const float *q, const float *k, const float *v, float *lse)
{
    QV_TRY(check_desc(a));
    if (!a->B || !a->L)
        return QV_OK;
    scratch sc;
    QV_TRY(scratch_init(&sc, (size_t)BQ * BK + (size_t)BQ * (size_t)a->d));
    const int64_t nqb = (a->L + BQ - 1) / BQ, n_items = a->B * a->H * nqb;
    qv_par_error pe = {0};
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_items; it++) {
        if (pe.failed)
            continue;
        int64_t qb = it % nqb, h = (it / nqb) % a->H, b = it / (nqb * a->H);
        qv_status st = fwd_item(a, b, h, qb * BQ, out, q, k, v, lse, scratch_get(&sc));
        if (st != QV_OK)
            qv_par_error_set(&pe, st);
    }
    qv_free(sc.base);
    return qv_par_error_status(&pe);
}

/* ---- backward -------------------------------------------------------------------------------- */

/* P = exp(s·scale − lse_i) on allowed entries, else 0. Tile rows r ↔ queries i0+r, columns
 * c ↔ keys j0+c; `trans` stores the tile as [nk][ld] (key-major) instead. Returns whether
 * any entry is nonzero. */
static bool probs(const qv_attn_desc *a, int64_t b, int64_t i0, int64_t mq, int64_t j0, int64_t nk, const float *lse_h,
                  float *T, int64_t ld, bool trans)
{
    bool any = false;
    for (int64_t r = 0; r < mq; r++) {
        const int64_t i = i0 + r;
        const float li = lse_h[i];
        for (int64_t c = 0; c < nk; c++) {
            float *e = trans ? &T[c * ld + r] : &T[r * ld + c];
            if (li == -INFINITY || !allowed(a, b, i, j0 + c)) {
                *e = 0.0f;
            } else {
                *e = expf(*e * a->scale - li);
                any = true;
            }
        }
    }
    return any;
}

static qv_status dq_item(const qv_attn_desc *a, int64_t b, int64_t h, int64_t i0, float *dq, const float *dout,
                         const float *q, const float *k, const float *v, const float *lse, const float *D, float *ws)
{
    const int64_t L = a->L, d = a->d, g = h / (a->H / a->KV);
    const int64_t mq = QV_MIN(BQ, L - i0);
    float *P = ws, *dP = ws + BQ * BK, *acc = ws + 2 * BQ * BK;
    memset(acc, 0, (size_t)(mq * d) * sizeof *acc);
    const float *qp = q + (b * L + i0) * a->ldq + h * d, *dop = dout + (b * L + i0) * a->ldo + h * d;
    const float *lse_h = lse + (b * a->H + h) * L, *D_h = D + (b * a->H + h) * L;
    const int64_t jend = a->causal ? i0 + mq : L;
    for (int64_t j0 = 0; j0 < jend; j0 += BK) {
        const int64_t nk = QV_MIN(BK, jend - j0);
        if (tile_empty(a, b, i0, mq, j0, nk))
            continue;
        const float *kp = k + (b * L + j0) * a->ldk + g * d, *vp = v + (b * L + j0) * a->ldv + g * d;
        QV_TRY(qv_matmul(QV_F32, mq, nk, d, qp, a->ldq, kp, a->ldk, NULL, P, BK, QV_MM_B_NK));
        if (!probs(a, b, i0, mq, j0, nk, lse_h, P, BK, false))
            continue;
        QV_TRY(qv_matmul(QV_F32, mq, nk, d, dop, a->ldo, vp, a->ldv, NULL, dP, BK, QV_MM_B_NK));
        for (int64_t r = 0; r < mq; r++)
            for (int64_t c = 0; c < nk; c++)
                dP[r * BK + c] = P[r * BK + c] * (dP[r * BK + c] - D_h[i0 + r]);
        QV_TRY(qv_matmul(QV_F32, mq, d, nk, dP, BK, kp, a->ldk, NULL, acc, d, QV_MM_ACCUMULATE));
    }
    for (int64_t r = 0; r < mq; r++) {
        float *o = dq + (b * L + i0 + r) * a->ldq + h * d;
        for (int64_t c = 0; c < d; c++)
            o[c] = acc[r * d + c] * a->scale;
    }
    return QV_OK;
}

static qv_status dkv_item(const qv_attn_desc *a, int64_t b, int64_t g, int64_t j0, float *dk, float *dv,
                          const float *dout, const float *q, const float *k, const float *v, const float *lse,
                          const float *D, float *ws)
{
    const int64_t L = a->L, d = a->d, grp = a->H / a->KV;
    const int64_t nk = QV_MIN(BK, L - j0);
    float *Pt = ws, *dPt = ws + BK * BQ, *accK = ws + 2 * BK * BQ, *accV = accK + BK * d;
    memset(accK, 0, (size_t)(nk * d) * sizeof *accK);
    memset(accV, 0, (size_t)(nk * d) * sizeof *accV);
    const float *kp = k + (b * L + j0) * a->ldk + g * d, *vp = v + (b * L + j0) * a->ldv + g * d;
    const int64_t istart = a->causal ? (j0 / BQ) * BQ : 0;
    for (int64_t h = g * grp; h < (g + 1) * grp; h++) {
        const float *lse_h = lse + (b * a->H + h) * L, *D_h = D + (b * a->H + h) * L;
        for (int64_t i0 = istart; i0 < L; i0 += BQ) {
            const int64_t mq = QV_MIN(BQ, L - i0);
            if (tile_empty(a, b, i0, mq, j0, nk))
                continue;
            const float *qp = q + (b * L + i0) * a->ldq + h * d, *dop = dout + (b * L + i0) * a->ldo + h * d;
            QV_TRY(qv_matmul(QV_F32, nk, mq, d, kp, a->ldk, qp, a->ldq, NULL, Pt, BQ, QV_MM_B_NK));
            if (!probs(a, b, i0, mq, j0, nk, lse_h, Pt, BQ, true))
                continue;
            QV_TRY(qv_matmul(QV_F32, nk, d, mq, Pt, BQ, dop, a->ldo, NULL, accV, d, QV_MM_ACCUMULATE));
            QV_TRY(qv_matmul(QV_F32, nk, mq, d, vp, a->ldv, dop, a->ldo, NULL, dPt, BQ, QV_MM_B_NK));
            for (int64_t c = 0; c < nk; c++)
                for (int64_t r = 0; r < mq; r++)
                    dPt[c * BQ + r] = Pt[c * BQ + r] * (dPt[c * BQ + r] - D_h[i0 + r]);
            QV_TRY(qv_matmul(QV_F32, nk, d, mq, dPt, BQ, qp, a->ldq, NULL, accK, d, QV_MM_ACCUMULATE));
        }
    }
    for (int64_t c = 0; c < nk; c++) {
        float *ko = dk + (b * L + j0 + c) * a->ldk + g * d, *vo = dv + (b * L + j0 + c) * a->ldv + g * d;
        for (int64_t e = 0; e < d; e++) {
            ko[e] = accK[c * d + e] * a->scale;
            vo[e] = accV[c * d + e];
        }
    }
    return QV_OK;
}

qv_status qv_attention_backward(const qv_attn_desc *a, float *dq, float *dk, float *dv, const float *dout,
                                const float *q, const float *k, const float *v, const float *out, const float *lse)
{
    QV_TRY(check_desc(a));
    if (!a->B || !a->L)
        return QV_OK;
    const int64_t L = a->L, H = a->H, d = a->d;
    size_t nD;
    if (!qv_mul_size((size_t)(a->B * H), (size_t)L, &nD))
        return qv_fail(QV_ERR_NOMEM, "attention: size overflows");
    float *D = qv_malloc(nD * sizeof *D, "attention backward row sums");
    if (!D)
        return QV_ERR_NOMEM;
    /* D[b,h,i] = Σ_c dout·out: the softmax backward's row term */
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < a->B * L; t++) {
        int64_t b = t / L, i = t % L;
        for (int64_t h = 0; h < H; h++) {
            const float *o = out + t * a->ldo + h * d, *go = dout + t * a->ldo + h * d;
            double s = 0;
            for (int64_t c = 0; c < d; c++)
                s += (double)o[c] * go[c];
            D[(b * H + h) * L + i] = (float)s;
        }
    }
    scratch sc;
    size_t per = QV_MAX((size_t)2 * BQ * BK + (size_t)BQ * (size_t)d, (size_t)2 * BK * BQ + (size_t)2 * BK * (size_t)d);
    qv_status st0 = scratch_init(&sc, per);
    if (st0 != QV_OK) {
        qv_free(D);
        return st0;
    }
    qv_par_error pe = {0};
    const int64_t nqb = (L + BQ - 1) / BQ, nkb = (L + BK - 1) / BK;
    const int64_t n_q = a->B * H * nqb, n_kv = a->B * a->KV * nkb;
#pragma omp parallel
    {
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t it = 0; it < n_q; it++) {
            if (pe.failed)
                continue;
            int64_t qb = it % nqb, h = (it / nqb) % H, b = it / (nqb * H);
            qv_status st = dq_item(a, b, h, qb * BQ, dq, dout, q, k, v, lse, D, scratch_get(&sc));
            if (st != QV_OK)
                qv_par_error_set(&pe, st);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n_kv; it++) {
            if (pe.failed)
                continue;
            int64_t kb = it % nkb, g = (it / nkb) % a->KV, b = it / (nkb * a->KV);
            qv_status st = dkv_item(a, b, g, kb * BK, dk, dv, dout, q, k, v, lse, D, scratch_get(&sc));
            if (st != QV_OK)
                qv_par_error_set(&pe, st);
        }
    }
    qv_free(sc.base);
    qv_free(D);
    return qv_par_error_status(&pe);
}

/* ---- reference ------------------------------------------------------------------------------- */

void qv_attention_ref(const qv_attn_desc *a, float *out, const float *q, const float *k, const float *v, float *lse)
{
    const int64_t L = a->L, d = a->d, grp = a->H / a->KV;
    double *p = qv_malloc((size_t)(L > 0 ? L : 1) * sizeof *p, "attention reference");
    if (!p)
        return;
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->H; h++)
            for (int64_t i = 0; i < L; i++) {
                const float *qi = q + (b * L + i) * a->ldq + h * d;
                double mx = -INFINITY;
                for (int64_t j = 0; j < L; j++) {
                    p[j] = -INFINITY;
                    if (!allowed(a, b, i, j))
                        continue;
                    const float *kj = k + (b * L + j) * a->ldk + (h / grp) * d;
                    double s = 0;
                    for (int64_t c = 0; c < d; c++)
                        s += (double)qi[c] * kj[c];
                    p[j] = s * a->scale;
                    mx = fmax(mx, p[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j < L; j++) {
                    p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx);
                    sum += p[j];
                }
                float *o = out + (b * L + i) * a->ldo + h * d;
                for (int64_t c = 0; c < d; c++) {
                    double acc = 0;
                    for (int64_t j = 0; j < L; j++)
                        if (p[j] != 0)
                            acc += p[j] * v[(b * L + j) * a->ldv + (h / grp) * d + c];
                    o[c] = sum > 0 ? (float)(acc / sum) : 0.0f;
                }
                if (lse)
                    lse[(b * a->H + h) * L + i] = sum > 0 ? (float)(mx + log(sum)) : -INFINITY;
            }
    qv_free(p);
}

void qv_attention_backward_ref(const qv_attn_desc *a, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v)
{
    const int64_t L = a->L, d = a->d, grp = a->H / a->KV;
    double *p = qv_malloc((size_t)(L > 0 ? L : 1) * 2 * sizeof *p, "attention reference");
    double *acc = qv_calloc((size_t)(a->B * L) * (size_t)(a->KV * d) * 2 + 1, sizeof *acc, "attention reference");
    if (!p || !acc) {
        qv_free(p);
        qv_free(acc);
        return;
    }
    double *dp = p + L, *accK = acc, *accV = acc + a->B * L * a->KV * d;
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < a->H; h++)
            for (int64_t i = 0; i < L; i++) {
                const int64_t g = h / grp;
                const float *qi = q + (b * L + i) * a->ldq + h * d, *gi = dout + (b * L + i) * a->ldo + h * d;
                double mx = -INFINITY;
                for (int64_t j = 0; j < L; j++) {
                    p[j] = -INFINITY;
                    if (!allowed(a, b, i, j))
                        continue;
                    const float *kj = k + (b * L + j) * a->ldk + g * d;
                    double s = 0;
                    for (int64_t c = 0; c < d; c++)
                        s += (double)qi[c] * kj[c];
                    p[j] = s * a->scale;
                    mx = fmax(mx, p[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j < L; j++) {
                    p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx);
                    sum += p[j];
                }
                double Dd = 0;
                for (int64_t j = 0; j < L; j++) {
                    if (sum > 0)
                        p[j] /= sum;
                    const float *vj = v + (b * L + j) * a->ldv + g * d;
                    double s = 0;
                    for (int64_t c = 0; c < d; c++)
                        s += (double)gi[c] * vj[c];
                    dp[j] = s;
                    Dd += p[j] * s;
                }
                float *dqi = dq + (b * L + i) * a->ldq + h * d;
                for (int64_t c = 0; c < d; c++) {
                    double s = 0;
                    for (int64_t j = 0; j < L; j++)
                        if (p[j] != 0)
                            s += p[j] * (dp[j] - Dd) * k[(b * L + j) * a->ldk + g * d + c];
                    dqi[c] = (float)(s * a->scale);
                }
                for (int64_t j = 0; j < L; j++) {
                    if (p[j] == 0)
                        continue;
                    double ds = p[j] * (dp[j] - Dd) * a->scale;
                    for (int64_t c = 0; c < d; c++) {
                        accK[((b * L + j) * a->KV + g) * d + c] += ds * qi[c];
                        accV[((b * L + j) * a->KV + g) * d + c] += p[j] * gi[c];
                    }
                }
            }
    for (int64_t t = 0; t < a->B * L; t++)
        for (int64_t g = 0; g < a->KV; g++)
            for (int64_t c = 0; c < d; c++) {
                dk[t * a->ldk + g * d + c] = (float)accK[(t * a->KV + g) * d + c];
                dv[t * a->ldv + g * d + c] = (float)accV[(t * a->KV + g) * d + c];
            }
    qv_free(p);
    qv_free(acc);
}
