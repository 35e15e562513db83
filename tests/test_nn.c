/* test_nn.c — src/nn ops against plain double-precision references: RMSNorm (+ backward),
 * LayerNorm, activations, the SiLU-gated backward, softmax, rotary embedding (tables, dynamic
 * NTK, linear, M-RoPE streams, backward = transposed rotation) and tiled attention (causal and
 * bidirectional, GQA, right padding with padded queries, left padding = zero rows,
 * block-diagonal segments, tile boundaries; forward and backward; thread-count independence).
 *
 * Tolerances: elementwise ops 4 ulp-ish relative (2e-6 · max|ref|, 1e-5 for the transcendental
 * ones, libm differs from SLEEF by an ulp); reductions over d ≤ 64 and L ≤ 300 in f32 against
 * double: rel ≤ 2e-5 (attention forward), 1e-4 (backward: the softmax Jacobian subtracts nearly
 * equal terms). */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "nn/act.h"
#include "nn/attention.h"
#include "nn/norm.h"
#include "nn/rope.h"
#include "util/testutil.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *rand_vec(size_t n, float scale)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand() * scale;
    return v;
}

/* max |a-b| / max |b| over n values, with b in double */
static double rel_d(const float *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs(b[i]));
    }
    return den > 0 ? num / den : num;
}

/* ---- norms ----------------------------------------------------------------------------------- */

Test(nn, rmsnorm_matches_double)
{
    const int64_t rows = 37, C = 129;
    float *x = rand_vec((size_t)(rows * C), 3.0f), *w = rand_vec((size_t)C, 2.0f), *y = malloc(rows * C * 4);
    double *ref = malloc(rows * C * 8);
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t c = 0; c < C; c++)
            ss += (double)x[r * C + c] * x[r * C + c];
        double rs = 1.0 / sqrt(ss / C + 1e-6);
        for (int64_t c = 0; c < C; c++)
            ref[r * C + c] = w[c] * (x[r * C + c] * rs);
    }
    qv_rmsnorm(y, x, w, rows, C, 1e-6f);
    cr_assert_leq(rel_d(y, ref, rows * C), 2e-6, "rmsnorm rel %g", rel_d(y, ref, rows * C));
    memcpy(y, x, rows * C * 4); /* in place */
    qv_rmsnorm(y, y, w, rows, C, 1e-6f);
    cr_assert_leq(rel_d(y, ref, rows * C), 2e-6);
    free(x), free(w), free(y), free(ref);
}

Test(nn, rmsnorm_backward_matches_finite_differences)
{
    const int64_t rows = 5, C = 48;
    float *x = rand_vec(rows * C, 2.0f), *w = rand_vec(C, 1.5f), *dy = rand_vec(rows * C, 1.0f);
    float *dx = malloc(rows * C * 4);
    double *num = malloc(rows * C * 8);
    const double eps = 1e-5;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < C; c++) {
            /* directional derivative of Σ dy·y in double */
            double f[2];
            for (int s = 0; s < 2; s++) {
                double xs[64];
                for (int64_t k = 0; k < C; k++)
                    xs[k] = x[r * C + k];
                xs[c] += s ? eps : -eps;
                double ss = 0;
                for (int64_t k = 0; k < C; k++)
                    ss += xs[k] * xs[k];
                double rs = 1.0 / sqrt(ss / C + 1e-6), acc = 0;
                for (int64_t k = 0; k < C; k++)
                    acc += dy[r * C + k] * w[k] * xs[k] * rs;
                f[s] = acc;
            }
            num[r * C + c] = (f[1] - f[0]) / (2 * eps);
        }
    qv_rmsnorm_backward(dx, dy, x, w, rows, C, 1e-6f, false);
    cr_assert_leq(rel_d(dx, num, rows * C), 1e-5, "rel %g", rel_d(dx, num, rows * C));
    /* accumulate mode adds */
    float *acc = malloc(rows * C * 4);
    for (int64_t i = 0; i < rows * C; i++)
        acc[i] = 1.0f;
    qv_rmsnorm_backward(acc, dy, x, w, rows, C, 1e-6f, true);
    for (int64_t i = 0; i < rows * C; i++)
        cr_assert_float_eq(acc[i], 1.0f + dx[i], 1e-6f);
    free(x), free(w), free(dy), free(dx), free(num), free(acc);
}

Test(nn, layernorm_matches_double)
{
    const int64_t rows = 9, C = 64;
    float *x = rand_vec(rows * C, 4.0f), *w = rand_vec(C, 1.0f), *b = rand_vec(C, 0.5f), *y = malloc(rows * C * 4);
    for (int64_t i = 0; i < C; i++)
        x[i] += 100.0f; /* a row with a large mean */
    double *ref = malloc(rows * C * 8);
    for (int64_t r = 0; r < rows; r++) {
        double m = 0, v = 0;
        for (int64_t c = 0; c < C; c++)
            m += x[r * C + c];
        m /= C;
        for (int64_t c = 0; c < C; c++)
            v += (x[r * C + c] - m) * (x[r * C + c] - m);
        v /= C;
        for (int64_t c = 0; c < C; c++)
            ref[r * C + c] = (x[r * C + c] - m) / sqrt(v + 1e-6) * w[c] + b[c];
    }
    qv_layernorm(y, x, w, b, rows, C, 1e-6f);
    cr_assert_leq(rel_d(y, ref, rows * C), 3e-6, "rel %g", rel_d(y, ref, rows * C));
    free(x), free(w), free(b), free(y), free(ref);
}

/* ---- activations ----------------------------------------------------------------------------- */

static double act_ref(qv_act a, double x)
{
    switch (a) {
    case QV_ACT_SILU: return x / (1 + exp(-x));
    case QV_ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case QV_ACT_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case QV_ACT_QUICK_GELU: return x / (1 + exp(-1.702 * x));
    default: return x;
    }
}

Test(nn, activations_match_double)
{
    const int64_t n = 4001;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    for (int64_t i = 0; i < n; i++)
        x[i] = -20.0f + 40.0f * (float)i / (float)(n - 1);
    for (int a = 0; a < QV_ACT_COUNT; a++) {
        qv_act_apply((qv_act)a, y, x, n);
        for (int64_t i = 0; i < n; i++) {
            double r = act_ref((qv_act)a, x[i]);
            cr_assert_leq(fabs(y[i] - r), 1e-6 * fmax(1.0, fabs(r)), "%s(%g) = %g, want %g", qv_act_name((qv_act)a),
                          x[i], y[i], r);
        }
        qv_act parsed;
        cr_assert(qv_act_parse(qv_act_name((qv_act)a), &parsed) && parsed == (qv_act)a);
    }
    qv_act p;
    cr_assert(!qv_act_parse("relu6", &p));
    free(x), free(y);
}

Test(nn, swiglu_forward_and_backward)
{
    const int64_t n = 513;
    float *g = rand_vec(n, 6.0f), *u = rand_vec(n, 2.0f), *dh = rand_vec(n, 1.0f);
    float *h = malloc(n * 4), *dg = malloc(n * 4), *du = malloc(n * 4);
    qv_gated(QV_ACT_SILU, h, g, u, n);
    qv_swiglu_backward(dg, du, dh, g, u, n);
    for (int64_t i = 0; i < n; i++) {
        double s = act_ref(QV_ACT_SILU, g[i]);
        cr_assert_leq(fabs(h[i] - s * u[i]), 2e-6 * fmax(1, fabs(s * u[i])));
        const double e = 1e-4;
        double ds = (act_ref(QV_ACT_SILU, g[i] + e) - act_ref(QV_ACT_SILU, g[i] - e)) / (2 * e);
        cr_assert_leq(fabs(dg[i] - dh[i] * u[i] * ds), 1e-5 * fmax(1, fabs(dh[i] * u[i] * ds)), "dg[%lld]",
                      (long long)i);
        cr_assert_leq(fabs(du[i] - dh[i] * s), 2e-6 * fmax(1, fabs(dh[i] * s)));
    }
    free(g), free(u), free(dh), free(h), free(dg), free(du);
}

Test(nn, softmax_and_logsumexp)
{
    float x[] = {1.0f, 2.0f, -INFINITY, 3.0f, 1000.0f, 999.0f};
    float y[6];
    qv_softmax_rows(y, x, 2, 3);
    double z0 = exp(-1.0) + 1;
    cr_assert_float_eq(y[0], (float)(exp(-1.0) / z0), 1e-7f);
    cr_assert_float_eq(y[1], (float)(1 / z0), 1e-7f);
    cr_assert_eq(y[2], 0.0f);
    cr_assert_float_eq(y[4], (float)(1 / (1 + exp(-1.0))), 1e-7f);
    cr_assert_float_eq(qv_logsumexp(x + 3, 3), (float)(1000 + log(1 + exp(-1.0) + exp(-997.0))), 1e-4f);
    float ninf[2] = {-INFINITY, -INFINITY};
    qv_softmax_rows(y, ninf, 1, 2);
    cr_assert(y[0] == 0.0f && y[1] == 0.0f);
    cr_assert(qv_logsumexp(ninf, 2) == -INFINITY);
}

/* ---- rotary ---------------------------------------------------------------------------------- */

Test(nn, rope_tables_and_rotation)
{
    qv_rope_params p = {.dim = 32, .theta = 1e6};
    const int64_t n = 345, half = 16;
    float *c = malloc(n * half * 4), *s = malloc(n * half * 4);
    cr_assert_eq(qv_rope_tables(&p, n, n, NULL, NULL, c, s), QV_OK);
    for (int64_t t = 0; t < n; t += 17)
        for (int64_t j = 0; j < half; j++) {
            float inv = 1.0f / powf(1e6f, (float)(2 * j) / 32.0f);
            float ang = (float)t * inv;
            cr_assert_eq(c[t * half + j], (float)cos((double)ang));
            cr_assert_float_eq(s[t * half + j], (float)sin(t / pow(1e6, 2.0 * j / 32)), 2e-4f);
        }
    /* rotation: y1 = x1 c − x2 s, y2 = x2 c + x1 s; backward is the transpose */
    const int64_t heads = 3, ld = heads * 32 + 5;
    float *x = rand_vec(n * ld, 1.0f), *y = malloc(n * ld * 4), *g = rand_vec(n * ld, 1.0f), *gb = malloc(n * ld * 4);
    memcpy(y, x, n * ld * 4);
    qv_rope_apply(y, n, heads, 32, ld, c, s);
    for (int64_t t = 0; t < n; t += 31)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t j = 0; j < half; j++) {
                const float *xi = x + t * ld + h * 32;
                float e1 = xi[j] * c[t * half + j] - xi[j + half] * s[t * half + j];
                float e2 = xi[j + half] * c[t * half + j] + xi[j] * s[t * half + j];
                cr_assert_eq(y[t * ld + h * 32 + j], e1);
                cr_assert_eq(y[t * ld + h * 32 + j + half], e2);
            }
    for (int64_t t = 0; t < n; t++) /* padding columns untouched */
        for (int64_t e = heads * 32; e < ld; e++)
            cr_assert_eq(y[t * ld + e], x[t * ld + e]);
    memcpy(gb, g, n * ld * 4);
    qv_rope_apply_backward(gb, n, heads, 32, ld, c, s);
    double lhs = 0, rhs = 0;
    for (int64_t t = 0; t < n; t++)
        for (int64_t e = 0; e < heads * 32; e++) {
            lhs += (double)y[t * ld + e] * g[t * ld + e];
            rhs += (double)x[t * ld + e] * gb[t * ld + e];
        }
    cr_assert_leq(fabs(lhs - rhs), 1e-4 * fabs(lhs) + 1e-3, "<Rx,g> %g vs <x,Rᵀg> %g", lhs, rhs);
    free(c), free(s), free(x), free(y), free(g), free(gb);
}

Test(nn, rope_scaling_rules)
{
    float inv[64], inv0[64];
    /* dynamic NTK: plain below the threshold, InternLM2's base formula above */
    qv_rope_params dyn = {.dim = 128, .theta = 1e6, .scaling = QV_ROPE_SCALING_DYNAMIC_NTK, .factor = 2.0,
                          .max_positions = 32768};
    qv_rope_params plain = {.dim = 128, .theta = 1e6};
    qv_rope_inv_freq(&plain, 100, inv0);
    qv_rope_inv_freq(&dyn, 32768, inv);
    cr_assert_arr_eq(inv, inv0, sizeof inv);
    qv_rope_inv_freq(&dyn, 40000, inv);
    double base = 1e6 * pow(2.0 * 40000 / 32768 - 1.0, 128.0 / 126.0);
    for (int j = 0; j < 64; j++)
        cr_assert_float_eq(inv[j], (float)(1.0 / pow(base, 2.0 * j / 128)), 1e-6f * (float)(1.0 / pow(base, 2.0 * j / 128)) * 4);
    cr_assert(inv[10] < inv0[10]);
    /* linear: position / factor */
    qv_rope_params lin = {.dim = 8, .theta = 1e4, .scaling = QV_ROPE_SCALING_LINEAR, .factor = 4.0};
    qv_rope_params pl8 = {.dim = 8, .theta = 1e4};
    float c1[4 * 4], s1[4 * 4], c2[4 * 4], s2[4 * 4];
    int64_t pos_lin[4] = {0, 4, 8, 12}, pos_pl[4] = {0, 1, 2, 3};
    cr_assert_eq(qv_rope_tables(&lin, 16, 4, pos_lin, NULL, c1, s1), QV_OK);
    cr_assert_eq(qv_rope_tables(&pl8, 16, 4, pos_pl, NULL, c2, s2), QV_OK);
    cr_assert_arr_eq(c1, c2, sizeof c1);
    cr_assert_arr_eq(s1, s2, sizeof s1);
}

Test(nn, rope_mrope_streams)
{
    /* dim 32 → 16 frequencies, sections [4,6,6]: 0–3 temporal, 4–9 height, 10–15 width */
    qv_rope_params p = {.dim = 32, .theta = 1e6, .mrope_section = {4, 6, 6}};
    const int64_t n = 5;
    int64_t pt[5] = {0, 1, 2, 3, 4}, ph[5] = {7, 8, 9, 10, 11}, pw[5] = {20, 19, 18, 17, 16};
    const int64_t *p3[3] = {pt, ph, pw};
    float c[5 * 16], s[5 * 16], cr[5 * 16], sr[5 * 16];
    cr_assert_eq(qv_rope_tables(&p, n, n, pt, p3, c, s), QV_OK);
    qv_rope_params one = {.dim = 32, .theta = 1e6};
    for (int st = 0; st < 3; st++) {
        cr_assert_eq(qv_rope_tables(&one, n, n, p3[st], NULL, cr, sr), QV_OK);
        int lo = st == 0 ? 0 : st == 1 ? 4 : 10, hi = st == 0 ? 4 : st == 1 ? 10 : 16;
        for (int64_t t = 0; t < n; t++)
            for (int j = lo; j < hi; j++) {
                cr_assert_eq(c[t * 16 + j], cr[t * 16 + j]);
                cr_assert_eq(s[t * 16 + j], sr[t * 16 + j]);
            }
    }
    /* equal streams = 1-D rope */
    const int64_t *same[3] = {pt, pt, pt};
    cr_assert_eq(qv_rope_tables(&p, n, n, pt, same, c, s), QV_OK);
    cr_assert_eq(qv_rope_tables(&one, n, n, pt, NULL, cr, sr), QV_OK);
    cr_assert_arr_eq(c, cr, sizeof c);
    qv_rope_params bad = {.dim = 32, .theta = 1e6, .mrope_section = {4, 6, 5}};
    cr_assert_neq(qv_rope_tables(&bad, n, n, pt, p3, c, s), QV_OK);
    int64_t neg[5] = {0, -1, 2, 3, 4};
    cr_assert_neq(qv_rope_tables(&one, n, n, neg, NULL, c, s), QV_OK);
}

/* ---- attention ------------------------------------------------------------------------------- */

typedef struct attn_case {
    int64_t B, L, H, KV, d;
    bool causal;
    int pad;      /* 0 none, 1 right padding, 2 left padding */
    bool segments;
} attn_case;

static void run_attn_case(const attn_case *tc, bool backward)
{
    const int64_t T = tc->B * tc->L, ldq = tc->H * tc->d + 3, ldk = tc->KV * tc->d + 1, ldv = tc->KV * tc->d,
                  ldo = tc->H * tc->d + 2;
    float *q = rand_vec(T * ldq, 2.0f), *k = rand_vec(T * ldk, 2.0f), *v = rand_vec(T * ldv, 1.0f);
    float *o = calloc(T * ldo, 4), *oref = calloc(T * ldo, 4);
    float *lse = malloc(tc->B * tc->H * tc->L * 4), *lref = malloc(tc->B * tc->H * tc->L * 4);
    uint8_t *km = NULL;
    int32_t *seg = NULL;
    if (tc->pad) {
        km = malloc(T);
        for (int64_t b = 0; b < tc->B; b++) {
            int64_t len = tc->L - (b * 7) % (tc->L / 2 + 1); /* lengths differ per sample */
            for (int64_t i = 0; i < tc->L; i++)
                km[b * tc->L + i] = tc->pad == 1 ? i < len : i >= tc->L - len;
        }
    }
    if (tc->segments) {
        seg = malloc(T * 4);
        for (int64_t b = 0; b < tc->B; b++)
            for (int64_t i = 0; i < tc->L; i++)
                seg[b * tc->L + i] = (int32_t)(i < 70 ? 0 : i < 75 ? 1 : 2 + (i - 75) / 130);
    }
    qv_attn_desc a = {tc->B, tc->L, tc->H, tc->KV, tc->d, ldq, ldk, ldv, ldo, tc->causal, km, seg,
                      1.0f / sqrtf((float)tc->d)};
    cr_assert_eq(qv_attention(&a, o, q, k, v, lse), QV_OK, "%s", qv_last_error());
    qv_attention_ref(&a, oref, q, k, v, lref);
    double worst = 0, big = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t e = 0; e < tc->H * tc->d; e++) {
            worst = fmax(worst, fabs(o[t * ldo + e] - oref[t * ldo + e]));
            big = fmax(big, fabs(oref[t * ldo + e]));
        }
    cr_assert_leq(worst, 2e-5 * big, "B%lld L%lld H%lld KV%lld causal%d pad%d seg%d: rel %g", (long long)tc->B,
                  (long long)tc->L, (long long)tc->H, (long long)tc->KV, tc->causal, tc->pad, tc->segments, worst / big);
    for (int64_t i = 0; i < tc->B * tc->H * tc->L; i++) {
        if (lref[i] == -INFINITY)
            cr_assert(lse[i] == -INFINITY);
        else
            cr_assert_leq(fabsf(lse[i] - lref[i]), 1e-5f * fmaxf(1.0f, fabsf(lref[i])));
    }
    for (int64_t t = 0; t < T; t++) /* strides: padding columns of out untouched */
        for (int64_t e = tc->H * tc->d; e < ldo; e++)
            cr_assert_eq(o[t * ldo + e], 0.0f);
    if (tc->pad == 2) /* left padding: the first query of the shortest sample sees nothing → 0 */
        for (int64_t b = 0; b < tc->B; b++)
            if (!km[b * tc->L] && tc->causal)
                for (int64_t e = 0; e < tc->H * tc->d; e++)
                    cr_assert_eq(o[b * tc->L * ldo + e], 0.0f);
    if (backward) {
        float *go = rand_vec(T * ldo, 1.0f);
        float *dq = calloc(T * ldq, 4), *dk = calloc(T * ldk, 4), *dv = calloc(T * ldv, 4);
        float *rq = calloc(T * ldq, 4), *rk = calloc(T * ldk, 4), *rv = calloc(T * ldv, 4);
        cr_assert_eq(qv_attention_backward(&a, dq, dk, dv, go, q, k, v, o, lse), QV_OK, "%s", qv_last_error());
        qv_attention_backward_ref(&a, rq, rk, rv, go, q, k, v);
        double r1 = qt_max_rel(dq, rq, T * ldq), r2 = qt_max_rel(dk, rk, T * ldk), r3 = qt_max_rel(dv, rv, T * ldv);
        cr_assert_leq(r1, 1e-4, "dq rel %g", r1);
        cr_assert_leq(r2, 1e-4, "dk rel %g", r2);
        cr_assert_leq(r3, 1e-4, "dv rel %g", r3);
        if (km) /* keys nobody may attend: exactly zero */
            for (int64_t t = 0; t < T; t++)
                if (!km[t])
                    for (int64_t e = 0; e < tc->KV * tc->d; e++) {
                        cr_assert_eq(dk[t * ldk + e], 0.0f);
                        cr_assert_eq(dv[t * ldv + e], 0.0f);
                    }
        free(go), free(dq), free(dk), free(dv), free(rq), free(rk), free(rv);
    }
    free(q), free(k), free(v), free(o), free(oref), free(lse), free(lref), free(km), free(seg);
}

Test(nn, attention_forward_matches_reference)
{
    const attn_case cases[] = {
        {1, 1, 1, 1, 8, true, 0, false},    {2, 63, 4, 2, 32, true, 1, false},  {2, 64, 4, 2, 32, true, 1, false},
        {2, 65, 4, 1, 16, true, 1, false},  {3, 129, 4, 2, 32, true, 1, false}, {1, 257, 2, 2, 16, false, 0, false},
        {2, 200, 4, 4, 16, false, 1, false}, {2, 150, 4, 2, 32, true, 2, false}, {1, 300, 4, 4, 16, false, 0, true},
        {2, 345, 4, 2, 32, true, 1, false},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++)
        run_attn_case(&cases[i], false);
}

Test(nn, attention_backward_matches_reference)
{
    const attn_case cases[] = {
        {1, 5, 2, 1, 8, true, 0, false},    {2, 70, 4, 2, 16, true, 1, false}, {1, 140, 4, 2, 32, true, 1, false},
        {2, 130, 2, 2, 16, false, 1, false}, {2, 90, 4, 2, 16, true, 2, false}, {1, 210, 2, 1, 16, false, 0, true},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++)
        run_attn_case(&cases[i], true);
}

Test(nn, attention_independent_of_thread_count)
{
    const int64_t B = 2, L = 200, H = 4, KV = 2, d = 32, T = B * L;
    float *q = rand_vec(T * H * d, 2.0f), *k = rand_vec(T * KV * d, 2.0f), *v = rand_vec(T * KV * d, 1.0f);
    float *go = rand_vec(T * H * d, 1.0f);
    float *o[2], *l[2], *dq[2], *dk[2], *dv[2];
    uint8_t km[400];
    for (int i = 0; i < 400; i++)
        km[i] = (i % 200) < (i < 200 ? 180 : 150);
    qv_attn_desc a = {B, L, H, KV, d, H * d, KV * d, KV * d, H * d, true, km, NULL, 1.0f / sqrtf(32.0f)};
    int saved = omp_get_max_threads();
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(r ? 3 : 1);
        o[r] = malloc(T * H * d * 4), l[r] = malloc(B * H * L * 4);
        dq[r] = malloc(T * H * d * 4), dk[r] = malloc(T * KV * d * 4), dv[r] = malloc(T * KV * d * 4);
        cr_assert_eq(qv_attention(&a, o[r], q, k, v, l[r]), QV_OK);
        cr_assert_eq(qv_attention_backward(&a, dq[r], dk[r], dv[r], go, q, k, v, o[r], l[r]), QV_OK);
    }
    omp_set_num_threads(saved);
    cr_assert_arr_eq(o[0], o[1], T * H * d * 4);
    cr_assert_arr_eq(l[0], l[1], B * H * L * 4);
    cr_assert_arr_eq(dq[0], dq[1], T * H * d * 4);
    cr_assert_arr_eq(dk[0], dk[1], T * KV * d * 4);
    cr_assert_arr_eq(dv[0], dv[1], T * KV * d * 4);
    for (int r = 0; r < 2; r++)
        free(o[r]), free(l[r]), free(dq[r]), free(dk[r]), free(dv[r]);
    free(q), free(k), free(v), free(go);
}
