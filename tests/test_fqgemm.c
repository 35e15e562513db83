/* test_fqgemm.c — the packed BF16 GEMM of the scale search (simd/gemm.h, src/nn/fqgemm.h):
 *   - the emulated TDPBF16PS and VDPBF16PS against the Intel SDM's semantics on crafted inputs
 *     whose result depends on each rule (separate even/odd sums, the pair sum added once, the
 *     k order, odd-before-even, DAZ on every input, FTZ on every result, tile shapes);
 *   - packing round trip; the fake quantization of packed n-blocks of every kernel set this host
 *     runs (always the emulations' 16-lane body) against qv_fq_rows_ref, bit for bit, on awkward
 *     values (ties, zero groups, NaN/±Inf, zero and huge scales, padding channels);
 *   - every kernel set against the scalar model of its accumulation order (bit for bit for the
 *     emulations; within the bound below for real hardware, whose bit-exactness with the SDM is
 *     logged, not required) and against the exact product: |y − exact| ≤ (depth + 2)·2⁻²⁴·Σ|x·w|
 *     (gemm.h; depth 16 + 1 + K/32 for AMX, K for VDPBF16PS, + 1 for the bias add);
 *   - the OpenMP driver: bit-identical for 1, 2 and 3 threads, row and column tails, every kc,
 *     equal to the model on the reference's fake-quantized weight, also when the candidate is
 *     prepared once (qv_fqgemm_prepare) and run through the plain GEMM; the generic path within
 *     the f32 bound; parameter errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp.h"
#include "gemm.h"
#include "kernel_impl.h"
#include "nn/fqgemm.h"
#include "util/kernels_util.h"

static uint32_t pair(float lo, float hi) { return (uint32_t)qv_f32_to_bf16(lo) | (uint32_t)qv_f32_to_bf16(hi) << 16; }
static uint16_t bf(float v) { return qv_f32_to_bf16(v); }

/* ---- the emulated instructions vs the SDM ---------------------------------------------------- */

Test(gemm_emu, tdpbf16ps_sdm_semantics)
{
    const float p24 = 16777216.0f; /* 2^24: 2^24 + 1 rounds back to 2^24 (tie to even) */
    struct {
        const char *what;
        float c0;
        int kp;
        uint32_t a[4], b[4];
        float want;
    } cases[] = {
        /* even products summed apart from odd ones: (2^24 − 2^24) + (1 + 0) = 1; one running
         * sum in k order (the Intrinsics Guide's form) would give 0 */
        {"even/odd sums kept apart", 0.0f, 2, {pair(4096, 1), pair(4096, 0)}, {pair(4096, 1), pair(-4096, 0)}, 1.0f},
        /* the pair sum is added to C once: 2^24 + (1 + 1); adding each sum alone gives 2^24 */
        {"pair sum added once", p24, 1, {pair(1, 1)}, {pair(1, 1)}, p24 + 2.0f},
        /* k order within the even sum: ((2^24 + 1) + 1) − 2^24 = 0, a tree would give 2 */
        {"k order", 0.0f, 4, {pair(4096, 0), pair(1, 0), pair(1, 0), pair(4096, 0)},
         {pair(4096, 0), pair(1, 0), pair(1, 0), pair(-4096, 0)}, 0.0f},
        /* DAZ: a BF16 denormal (2^-133) times 2^100 would be 2^-33 */
        {"DAZ on BF16 inputs", 0.0f, 1, {0x00000001u}, {pair(0x1p100f, 0)}, 0.0f},
        /* FTZ on the even sum (2^-140), so the odd sum 2^-126 is the result */
        {"FTZ on the partial sums", 0.0f, 1, {pair(0x1p-70f, 0x1p-63f)}, {pair(0x1p-70f, 0x1p-63f)}, 0x1p-126f},
        /* DAZ on the accumulator: a denormal C reads as 0 */
        {"DAZ on C", 0x1p-130f, 1, {pair(0, 0)}, {pair(0, 0)}, 0.0f},
        /* FTZ on the final add: 2^-125 − 1.5·2^-126 = 2^-127 is denormal */
        {"FTZ on C's add", 0x1p-125f, 1, {pair(-0x1.8p-63f, 0)}, {pair(0x1p-63f, 0)}, 0.0f},
        /* products are exact: (1 + 2^-7)^2 = 1 + 2^-6 + 2^-14 */
        {"exact product", 0.0f, 1, {pair(1.0078125f, 0)}, {pair(1.0078125f, 0)}, 1.0f + 0x1p-6f + 0x1p-14f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float c = cases[i].c0;
        qv_emu_tdpbf16ps(&c, cases[i].a, cases[i].b, 1, cases[i].kp, 1);
        cr_expect(qv_f32_bits(c) == qv_f32_bits(cases[i].want), "%s: %a, want %a", cases[i].what, c, cases[i].want);
    }
}

Test(gemm_emu, tdpbf16ps_shapes)
{
    /* small integers: every sum is exact, so C = C0 + A·B element by element; odd shapes check
     * which pair meets which and that the configured rows / columns alone are touched */
    enum { R = 3, KP = 5, N = 7 };
    uint32_t a[R * KP], b[KP * N];
    float c[R * N], want[R * N];
    for (int m = 0; m < R; m++)
        for (int k = 0; k < KP; k++)
            a[m * KP + k] = pair((float)(m + k), (float)(m - 2 * k));
    for (int k = 0; k < KP; k++)
        for (int n = 0; n < N; n++)
            b[k * N + n] = pair((float)(k * n % 5), (float)(n - k));
    for (int m = 0; m < R; m++)
        for (int n = 0; n < N; n++) {
            c[m * N + n] = (float)(m * 100 + n);
            double s = c[m * N + n];
            for (int k = 0; k < KP; k++)
                s += (double)(m + k) * (k * n % 5) + (double)(m - 2 * k) * (n - k);
            want[m * N + n] = (float)s;
        }
    qv_emu_tdpbf16ps(c, a, b, R, KP, N);
    for (int i = 0; i < R * N; i++)
        cr_expect(c[i] == want[i], "C[%d][%d] = %g, want %g", i / N, i % N, c[i], want[i]);
}

Test(gemm_emu, vdpbf16ps_sdm_semantics)
{
    const float p24 = 16777216.0f;
    struct {
        const char *what;
        float acc;
        uint32_t a, b;
        float want;
    } cases[] = {
        /* odd product first: (2^24 + 1) − 2^24 = 0; even first would give 1 */
        {"odd before even", p24, pair(4096, 1), pair(-4096, 1), 0.0f},
        {"DAZ on BF16 inputs", 0.0f, pair(0, 0) | 0x1u, pair(0x1p100f, 0), 0.0f},
        {"DAZ on the accumulator", 0x1p-130f, pair(0, 0), pair(0, 0), 0.0f},
        {"FTZ on the result", 0.0f, pair(0x1p-70f, 0), pair(0x1p-70f, 0), 0.0f},
        /* each FMA rounds: 1 + 2^-24 is lost, then + 2^-24 again is lost: 1 */
        {"two roundings", 1.0f, pair(0x1p-12f, 0x1p-12f), pair(0x1p-12f, 0x1p-12f), 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float acc[16];
        uint32_t a[16], b[16];
        for (int l = 0; l < 16; l++) {
            acc[l] = l == 5 ? cases[i].acc : (float)l;
            a[l] = l == 5 ? cases[i].a : pair((float)l, 1);
            b[l] = l == 5 ? cases[i].b : pair(2, (float)l);
        }
        qv_emu_vdpbf16ps(acc, a, b);
        cr_expect(qv_f32_bits(acc[5]) == qv_f32_bits(cases[i].want), "%s: %a, want %a", cases[i].what, acc[5],
                  cases[i].want);
        for (int l = 0; l < 16; l++)
            if (l != 5)
                cr_expect(acc[l] == 4.0f * (float)l, "%s: lane %d = %g", cases[i].what, l, acc[l]);
    }
}

/* ---- helpers ------------------------------------------------------------------------------- */

typedef struct qt_set {
    const qv_gemm_kernels *k;
    bool emulated;
} qt_set;

/* Every kernel set this host runs; logs which ran once. */
static int gemm_sets(qt_set *out)
{
    static int logged;
    int n = 0;
    char ran[128] = "", skipped[128] = "";
    for (int i = 0; i < QV_GEMM_ISA_COUNT; i++) {
        const qv_gemm_kernels *k = qv_gemm_kernels_get((qv_gemm_isa)i);
        static const char *names[] = {"amx", "avx512bf16", "emu-amx", "emu-avx512bf16"};
        strcat(k ? ran : skipped, " ");
        strcat(k ? ran : skipped, names[i]);
        if (k)
            out[n++] = (qt_set){k, i == QV_GEMM_EMU_AMX || i == QV_GEMM_EMU_AVX512BF16};
    }
    if (!logged++)
        fprintf(stderr, "[----] gemm kernel sets tested:%s; not supported by this host:%s\n", ran,
                *skipped ? skipped : " none");
    return n;
}

static bool is_amx(const qv_gemm_kernels *k) { return k->isa == QV_GEMM_AMX || k->isa == QV_GEMM_EMU_AMX; }

static uint16_t *rand_bf16(qt_rng *g, int64_t n, float scale)
{
    uint16_t *p = malloc((size_t)n * sizeof *p + 2);
    cr_assert_not_null(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = bf(qt_normal(g) * scale);
    return p;
}

/* |y − exact| ≤ (depth + 2)·2⁻²⁴·Σ|x·w| + 2⁻¹²⁰ per output; returns the number of violations. */
static int64_t check_bound(const char *what, const float *y, const uint16_t *x, const uint16_t *w, const float *bias,
                           int64_t M, int64_t N, int64_t K, int64_t depth)
{
    int64_t bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < K; k++) {
                double p = (double)qv_bf16_to_f32(x[m * K + k]) * qv_bf16_to_f32(w[n * K + k]);
                s += p;
                a += fabs(p);
            }
            if (bias) {
                s += bias[n];
                a += fabs(bias[n]);
            }
            double err = fabs((double)y[m * N + n] - s), tol = (double)(depth + 2) * 0x1p-24 * a + 0x1p-120;
            if (!(err <= tol) && bad++ < 3)
                cr_log_error("%s: y[%lld][%lld] = %.9g, exact %.9g, |err| %.3g > bound %.3g", what, (long long)m,
                             (long long)n, y[m * N + n], s, err, tol);
        }
    return bad;
}

static int64_t count_diff(const float *a, const float *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++)
        d += qv_f32_bits(a[i]) != qv_f32_bits(b[i]);
    return d;
}

/* ---- packing --------------------------------------------------------------------------------- */

Test(gemm, pack_roundtrip)
{
    qt_rng g = {0x51};
    const int64_t N = 37, K = 96;
    uint16_t *w = rand_bf16(&g, N * K, 1.0f), row[96];
    cr_assert_eq(qv_gemm_packed_elems(N, K), 64 * K);
    uint16_t *p = malloc((size_t)qv_gemm_packed_elems(N, K) * 2);
    qv_gemm_pack(p, w, K, N, K);
    for (int64_t n = 0; n < 64; n++) {
        qv_gemm_unpack_row(row, p, n, K);
        for (int64_t k = 0; k < K; k++)
            cr_expect_eq(row[k], n < N ? w[n * K + k] : 0, "row %lld k %lld", (long long)n, (long long)k);
    }
    /* the layout of gemm.h: n-block b, pair j, lane n at dword (b·K/2 + j)·16 + n */
    const uint32_t *d = (const uint32_t *)p;
    cr_expect_eq(d[(1 * K / 2 + 3) * 16 + 5], (uint32_t)w[21 * K + 6] | (uint32_t)w[21 * K + 7] << 16);
    free(w);
    free(p);
}

/* ---- fake quantization of packed n-blocks ----------------------------------------------------- */

static float gen_w(qt_rng *g, int kind, int64_t k, int64_t K)
{
    float n = qt_normal(g);
    switch (kind % 12) {
    case 0: return n * 0.02f;
    case 1: return 0.3f;                                                        /* constant */
    case 2: return (k & 1) ? -0.0f : 0.0f;                                      /* zeros, both signs */
    case 3: return (float)(qt_next(g) % 16) + ((qt_next(g) & 1) ? 0.5f : 0.0f); /* ties */
    case 4: return n * 1e-7f;                                                   /* below the floor */
    case 5: return n * ((k % 5) ? 1e30f : 1.7e38f);                             /* huge, overflow */
    case 6: return n * 1e-39f;                                                  /* denormal BF16 */
    case 7: return -fabsf(n) - 1.0f;                                            /* all negative */
    case 8: return k == K / 3 ? NAN : n;                                        /* NaN */
    case 9: return k == K - 1 ? INFINITY : n;
    case 10: return (qt_next(g) & 1 ? -1.0f : 1.0f) * powf(10.0f, (qt_uniform(g) - 0.5f) * 20.0f);
    default: return (float)k * 0.125f - 1.0f;                                   /* exact grid */
    }
}

Test(gemm, fq_panel_bit_exact, .timeout = 300)
{
    qt_set sets[QV_GEMM_ISA_COUNT];
    const int ns = gemm_sets(sets);
    cr_assert(ns >= 1, "no kernel set runs on this host (the emulations need AVX2)");
    static const struct {
        int64_t N, K, group;
    } shapes[] = {{32, 256, 128}, {29, 128, 32}, {48, 96, -1}, {16, 64, 2}, {7, 32, -1}, {64, 384, 64}};
    static const qv_fq_scale modes[] = {QV_FQ_SCALE_NONE, QV_FQ_SCALE_MUL, QV_FQ_SCALE_MULDIV};
    static const int bits[] = {2, 3, 4, 8};
    qt_rng g = {0x9e3779b97f4a7c15ULL};
    long checked = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t N = shapes[si].N, K = shapes[si].K, Np = qv_gemm_packed_elems(N, K) / K;
        float *wf = malloc((size_t)(N * K) * sizeof *wf);
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++)
                wf[n * K + k] = gen_w(&g, (int)(n + si), k, K);
        uint16_t *w = malloc((size_t)(N * K) * 2), *want = malloc((size_t)(N * K) * 2), *s = malloc((size_t)K * 2);
        uint16_t *pk = malloc((size_t)(Np * K) * 2), *out = malloc((size_t)(Np * K) * 2), *scr = malloc((size_t)K * 8);
        uint16_t *row = malloc((size_t)K * 2);
        for (int64_t i = 0; i < N * K; i++)
            w[i] = bf(wf[i]);
        qv_gemm_pack(pk, w, K, N, K);
        for (int skind = 0; skind < 3; skind++) {
            for (int64_t k = 0; k < K; k++) {
                float v = powf(10.0f, (qt_uniform(&g) - 0.5f) * 4.0f);
                if (skind == 1 && k % 7 == 3)
                    v = k % 2 ? 0.0f : (k % 3 ? 1e20f : 1e-20f);
                if (skind == 2 && k == 1)
                    v = NAN;
                s[k] = bf(v);
            }
            for (size_t mi = 0; mi < 3; mi++)
                for (size_t bi = 0; bi < 4; bi++)
                    for (int zp = 0; zp < 2; zp++) {
                        const qv_fq p = {bits[bi], zp, shapes[si].group, (qv_fq_div)(bi & 1)};
                        qv_fq_rows_ref(want, QV_BF16, w, QV_BF16, s, modes[mi], N, K, &p);
                        for (int t = 0; t < ns; t++) {
                            memset(out, 0xa5, (size_t)(Np * K) * 2);
                            sets[t].k->fq_panel(out, pk, Np / 16, K, N, s, modes[mi], &p, scr);
                            for (int64_t n = 0; n < Np; n++) {
                                qv_gemm_unpack_row(row, out, n, K);
                                for (int64_t k = 0; k < K; k++) {
                                    uint16_t e = n < N ? want[n * K + k] : 0;
                                    if (row[k] != e) {
                                        cr_expect(false,
                                                  "%s: shape %zu mode %zu bits %d zp %d s-kind %d: [%lld][%lld] = "
                                                  "0x%04x, reference 0x%04x (w %a)",
                                                  sets[t].k->name, si, mi, bits[bi], zp, skind, (long long)n,
                                                  (long long)k, row[k], e, n < N ? wf[n * K + k] : 0.0f);
                                        goto next;
                                    }
                                }
                            }
                            checked++;
                        next:;
                        }
                    }
        }
        free(wf), free(w), free(want), free(s), free(pk), free(out), free(scr), free(row);
    }
    cr_log_info("%ld packed fake-quantizations compared bit for bit", checked);
}

/* ---- kernels vs their order models and the exact product ------------------------------------ */

Test(gemm, kernels_match_models, .timeout = 300)
{
    qt_set sets[QV_GEMM_ISA_COUNT];
    const int ns = gemm_sets(sets);
    static const struct {
        int64_t M, N, K, kc;
        bool bias;
    } shapes[] = {{32, 32, 32, 0, false}, {64, 64, 256, 64, true}, {36, 48, 128, 0, true}, {24, 40, 96, 32, false},
                  {96, 96, 64, 0, true},
                  /* two m-blocks (128 + 96 rows), three column groups (17 pairs), k-blocks 2+2+1 */
                  {224, 544, 160, 64, true},
                  /* K past one k-block (34 tiles > 16: kc = all is capped), a partial column pair */
                  {160, 300, 1088, 0, false}};
    qt_rng g = {0x77};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t N = shapes[si].N, K = shapes[si].K, Np = qv_gemm_packed_elems(N, K) / K;
        uint16_t *w = rand_bf16(&g, N * K, 0.05f), *pk = malloc((size_t)(Np * K) * 2);
        float *bias = NULL;
        if (shapes[si].bias) {
            bias = malloc((size_t)N * sizeof *bias);
            for (int64_t n = 0; n < N; n++)
                bias[n] = qt_normal(&g);
        }
        qv_gemm_pack(pk, w, K, N, K);
        for (int t = 0; t < ns; t++) {
            const qv_gemm_kernels *k = sets[t].k;
            const int64_t M = (shapes[si].M + k->mr - 1) / k->mr * k->mr;
            uint16_t *x = rand_bf16(&g, M * K, 1.0f);
            /* ldy wider than N: the kernel must write exactly the N valid columns of each row */
            const int64_t ldy = N + 5;
            float *y = malloc((size_t)(M * ldy) * sizeof *y), *ym = malloc((size_t)(M * N) * sizeof *ym);
            for (int64_t i = 0; i < M * ldy; i++)
                y[i] = -7.0f;
            k->gemm(y, ldy, x, K, M, K, pk, Np / 16, N, bias, shapes[si].kc);
            (is_amx(k) ? qv_gemm_model_amx : qv_gemm_model_dp)(ym, x, w, M, N, K, bias);
            int64_t diff = 0, pad = 0;
            for (int64_t m = 0; m < M; m++) {
                diff += count_diff(y + m * ldy, ym + m * N, N);
                for (int64_t j = N; j < ldy; j++)
                    pad += y[m * ldy + j] != -7.0f;
            }
            cr_expect_eq(pad, 0, "%s: wrote %lld values past the valid columns", k->name, (long long)pad);
            if (sets[t].emulated)
                cr_expect_eq(diff, 0, "%s shape %zu: %lld of %lld outputs differ from the order model", k->name, si,
                             (long long)diff, (long long)(M * N));
            else
                cr_log_info("%s shape %zu: %lld of %lld outputs bit-identical to the SDM order model", k->name, si,
                            (long long)(M * N - diff), (long long)(M * N));
            for (int64_t m = 0; m < M; m++)
                memmove(y + m * N, y + m * ldy, (size_t)N * sizeof *y);
            cr_expect_eq(check_bound(k->name, y, x, w, bias, M, N, K, qv_gemm_depth(k->isa, K)), 0,
                         "%s shape %zu exceeds the accumulation bound", k->name, si);
            free(x), free(y), free(ym);
        }
        free(w), free(pk), free(bias);
    }
}

/* ---- the driver ----------------------------------------------------------------------------- */

static void fq_ref_weight(uint16_t *wq, const uint16_t *w, int64_t N, int64_t K, const qv_fqgemm_q *q)
{
    if (q)
        qv_fq_rows_ref(wq, QV_BF16, w, QV_BF16, q->s, q->mode, N, K, &q->p);
    else
        memcpy(wq, w, (size_t)(N * K) * 2);
}

Test(fqgemm, driver_threads_tails_models, .timeout = 300)
{
    qt_set sets[QV_GEMM_ISA_COUNT];
    const int ns = gemm_sets(sets);
    static const struct {
        int64_t M, N, K, group;
        qv_fq_scale mode;
    } shapes[] = {{45, 70, 128, 32, QV_FQ_SCALE_MULDIV}, {7, 16, 64, -1, QV_FQ_SCALE_MUL},
                  {100, 33, 256, 128, QV_FQ_SCALE_MULDIV}, {64, 96, 96, -1, QV_FQ_SCALE_NONE}};
    qt_rng g = {0x1234};
    const qv_fqgemm_tune saved = qv_fqgemm_tune_get();
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t M = shapes[si].M, N = shapes[si].N, K = shapes[si].K;
        uint16_t *w = rand_bf16(&g, N * K, 0.05f), *x = rand_bf16(&g, M * K, 1.0f), *s = malloc((size_t)K * 2);
        uint16_t *wq = malloc((size_t)(N * K) * 2);
        float *bias = malloc((size_t)N * sizeof *bias);
        for (int64_t k = 0; k < K; k++)
            s[k] = bf(powf(10.0f, (qt_uniform(&g) - 0.5f) * 2.0f));
        for (int64_t n = 0; n < N; n++)
            bias[n] = qt_normal(&g);
        const qv_fqgemm_q q = {shapes[si].mode == QV_FQ_SCALE_NONE ? NULL : s, shapes[si].mode,
                               {3, true, shapes[si].group, QV_FQ_DIV_CUDA}};
        for (int withq = 0; withq < 2; withq++) {
            const qv_fqgemm_q *qq = withq ? &q : NULL;
            fq_ref_weight(wq, w, N, K, qq);
            float *ym = malloc((size_t)(M * N) * sizeof *ym), *y[3];
            for (int t = 0; t < ns; t++) {
                if (!sets[t].emulated)
                    continue; /* real kernels: the bound test above */
                qv_fqgemm_w *pw;
                cr_assert_eq(qv_fqgemm_pack(sets[t].k, w, N, K, &pw), QV_OK, "%s", qv_last_error());
                cr_assert_str_eq(qv_fqgemm_kernel_name(pw), sets[t].k->name);
                (is_amx(sets[t].k) ? qv_gemm_model_amx : qv_gemm_model_dp)(ym, x, wq, M, N, K, bias);
                /* panel budgets of 2 and of many n-blocks, kc blocked or not, 1..3 threads */
                for (int v = 0; v < 3; v++) {
                    qv_fqgemm_tune tu = {v == 1 ? 32 : 0, v == 2 ? 1024 : 1};
                    qv_fqgemm_tune_set(&tu);
                    omp_set_num_threads(v + 1);
                    y[v] = malloc((size_t)(M * N) * sizeof *y[v]);
                    cr_assert_eq(qv_fqgemm(y[v], x, M, pw, qq, bias), QV_OK, "%s", qv_last_error());
                    cr_expect_eq(count_diff(y[v], ym, M * N), 0, "%s shape %zu q %d variant %d: differs from the "
                                 "order model on the reference's fake-quantized weight", sets[t].k->name, si, withq, v);
                }
                /* the same candidate fake-quantized once (qv_fqgemm_prepare), then the plain GEMM */
                if (qq) {
                    qv_fqgemm_w *pp;
                    cr_assert_eq(qv_fqgemm_alloc_like(pw, &pp), QV_OK);
                    cr_assert_eq(qv_fqgemm_prepare(pp, pw, qq), QV_OK, "%s", qv_last_error());
                    cr_assert_eq(qv_fqgemm(y[0], x, M, pp, NULL, bias), QV_OK);
                    cr_expect_eq(count_diff(y[0], ym, M * N), 0, "%s shape %zu: prepared candidate differs",
                                 sets[t].k->name, si);
                    qv_fqgemm_free(pp);
                }
                for (int v = 0; v < 3; v++)
                    free(y[v]);
                qv_fqgemm_free(pw);
            }
            /* the generic path (oneDNN F32 on the same fake-quantized values) */
            qv_fqgemm_w *pg;
            cr_assert_eq(qv_fqgemm_pack(&qv_fqgemm_generic, w, N, K, &pg), QV_OK);
            cr_expect_str_eq(qv_fqgemm_kernel_name(pg), "generic");
            omp_set_num_threads(2);
            cr_assert_eq(qv_fqgemm(ym, x, M, pg, qq, bias), QV_OK, "%s", qv_last_error());
            cr_expect_eq(check_bound("generic", ym, x, wq, bias, M, N, K, K), 0);
            if (qq) { /* the generic prepare, then the plain generic GEMM: the same result */
                qv_fqgemm_w *pp;
                cr_assert_eq(qv_fqgemm_alloc_like(pg, &pp), QV_OK);
                cr_assert_eq(qv_fqgemm_prepare(pp, pg, qq), QV_OK, "%s", qv_last_error());
                float *yp = malloc((size_t)(M * N) * sizeof *yp);
                cr_assert_eq(qv_fqgemm(yp, x, M, pp, NULL, bias), QV_OK);
                cr_expect_eq(count_diff(yp, ym, M * N), 0, "generic shape %zu: prepared candidate differs", si);
                free(yp);
                qv_fqgemm_free(pp);
            }
            qv_fqgemm_free(pg);
            free(ym);
        }
        free(w), free(x), free(s), free(wq), free(bias);
    }
    qv_fqgemm_tune_set(&saved);
}

Test(fqgemm, f32_rows_round_to_bf16)
{
    qt_set sets[QV_GEMM_ISA_COUNT];
    const int ns = gemm_sets(sets);
    const int64_t M = 9, N = 32, K = 64;
    qt_rng g = {0x99};
    uint16_t *w = rand_bf16(&g, N * K, 0.1f), *xb = malloc((size_t)(M * K) * 2);
    float *xf = malloc((size_t)(M * K) * sizeof *xf);
    float *a = malloc((size_t)(M * N) * 4), *b = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < M * K; i++) {
        xf[i] = qt_normal(&g);
        xb[i] = bf(xf[i]);
    }
    for (int t = 0; t < ns; t++) {
        qv_fqgemm_w *pw;
        cr_assert_eq(qv_fqgemm_pack(sets[t].k, w, N, K, &pw), QV_OK);
        cr_assert_eq(qv_fqgemm_f32(a, xf, M, pw, NULL, NULL), QV_OK);
        cr_assert_eq(qv_fqgemm(b, xb, M, pw, NULL, NULL), QV_OK);
        cr_expect_eq(count_diff(a, b, M * N), 0, "%s", sets[t].k->name);
        qv_fqgemm_free(pw);
    }
    free(w), free(xb), free(xf), free(a), free(b);
}

Test(fqgemm, parameter_errors)
{
    uint16_t w[64 * 48] = {0}, x[64] = {0}, s[64] = {0};
    float y[64];
    qv_fqgemm_w *pw = NULL;
    cr_expect_eq(qv_fqgemm_pack(NULL, w, 2, 48, &pw), QV_ERR_UNSUPPORTED);
    cr_expect(strstr(qv_last_error(), "48 input channels are not a multiple of 32") != NULL, "%s", qv_last_error());
    cr_expect_null(pw);
    cr_expect_eq(qv_fqgemm_pack(NULL, w, 0, 64, &pw), QV_ERR_INVALID);
    cr_assert_eq(qv_fqgemm_pack(NULL, w, 1, 64, &pw), QV_OK);
    qv_fqgemm_q q = {s, QV_FQ_SCALE_MULDIV, {3, true, 16, QV_FQ_DIV_CUDA}};
    cr_expect_eq(qv_fqgemm(y, x, 1, pw, &q, NULL), QV_OK);
    q.p.group = 3;
    cr_expect_eq(qv_fqgemm(y, x, 1, pw, &q, NULL), QV_ERR_INVALID);
    cr_expect(strstr(qv_last_error(), "fqgemm: group 3 does not divide 64 columns") != NULL, "%s", qv_last_error());
    q.p.group = 1;
    cr_expect_eq(qv_fqgemm(y, x, 1, pw, &q, NULL), QV_ERR_INVALID);
    cr_expect(strstr(qv_last_error(), "odd") != NULL, "%s", qv_last_error());
    q.p.group = 32;
    q.s = NULL;
    cr_expect_eq(qv_fqgemm(y, x, 1, pw, &q, NULL), QV_ERR_INVALID);
    q.s = s;
    q.mode = QV_FQ_SCALE_DIV;
    cr_expect_eq(qv_fqgemm(y, x, 1, pw, &q, NULL), QV_ERR_INVALID);
    cr_expect_eq(qv_fqgemm(y, x, -1, pw, NULL, NULL), QV_ERR_INVALID);
    cr_expect_eq(qv_fqgemm(y, x, 0, pw, NULL, NULL), QV_OK);
    cr_expect(qv_fqgemm_supports(4096, &(qv_fq){3, true, 128, QV_FQ_DIV_CUDA}));
    cr_expect(!qv_fqgemm_supports(4096, &(qv_fq){3, true, 127, QV_FQ_DIV_CUDA}));
    cr_expect(!qv_fqgemm_supports(100, NULL));
    qv_fqgemm_free(pw);
    qv_fqgemm_free(NULL);
}
