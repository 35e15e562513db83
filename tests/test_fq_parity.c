/* test_fq_parity.c — every fake-quant kernel set this host runs (qt_tables: the supported ISAs and
 * the 16-lane AVX-512 bodies over AVX2) against the scalar reference, bit for bit, for F32, BF16
 * and F16, F32 output, the fused ⊙ s forms, both division forms, 2..8 bits, asymmetric and
 * symmetric; on awkward shapes (1, 15, 17, n+3 columns, groups that are not multiples of the
 * vector width) and values (ties, zero / constant / all-negative groups, denormals, tiny and huge
 * values, random bit patterns, NaN and ±Inf, zero and NaN scales). Also: in-place use, per-tensor
 * quantization, NaN semantics, and codes consistent with the fake-quant values. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp.h"
#include "util/kernels_util.h"

typedef struct shape {
    int64_t rows, cols, group;
} shape;

static const shape shapes[] = {
    {3, 1, -1},  {3, 15, -1}, {3, 17, -1},   {2, 35, -1},    {2, 131, -1},  {16, 256, 128}, {16, 384, 128},
    {8, 256, 32}, {4, 96, 32}, {16, 45, 15}, {16, 34, 17},   {2, 259, 37},  {1, 4099, -1},  {2, 1, 1},
    {16, 24, 8}, {16, 48, 16}, {4, 64, 64},  {2, 512, 256},  {16, 80, 40},  {16, 19, -1},   {4, 4096 + 3, -1},
};

#define N_KINDS 16

/* Row r of the test matrix gets kind (r + seed) % N_KINDS. */
static float gen(qt_rng *g, int kind, int64_t j, int64_t cols)
{
    float n = qt_normal(g);
    switch (kind) {
    case 0: return n * 0.02f;
    case 1: return 0.3f;                                                        /* constant row */
    case 2: return (j & 1) ? -0.0f : 0.0f;                                      /* zeros, both signs */
    case 3: return (float)(qt_next(g) % 16) + ((qt_next(g) & 1) ? 0.5f : 0.0f); /* ties, range 0..15 */
    case 4: return (float)((int)(qt_next(g) % 15) - 7) + 0.5f * (float)(qt_next(g) & 1); /* ±7 ties */
    case 5: return n * 1e-7f;                                                   /* below the 1e-5 floor */
    case 6: return n * ((j % 5) ? 1e30f : 1.7e38f);                             /* huge, bf16/f16 overflow */
    case 7: return n * 1e-40f;                                                  /* denormals */
    case 8: return (qt_next(g) & 1 ? -1.0f : 1.0f) * powf(10.0f, (qt_uniform(g) - 0.5f) * 20.0f);
    case 9: return -fabsf(n) - 1.0f;                                            /* all negative */
    case 10: return j == cols / 2 ? 3.0f : n * 0.05f;                           /* one outlier */
    case 11: {                                                                  /* finite random bits */
        uint32_t u = (uint32_t)qt_next(g);
        return ((u >> 23) & 0xff) == 0xff ? 1.0f : qv_bits_f32(u);
    }
    case 12: return j == (int64_t)(qt_next(g) % 4) ? NAN : n;                   /* NaN (first groups) */
    case 13: return j == cols - 1 ? INFINITY : n;
    case 14: return j == 0 ? -INFINITY : n * 100.0f;
    default: return (float)j * 0.125f - 1.0f;                                   /* exact grid, ties */
    }
}

/* Column scales: kind 0 log-uniform in [0.01, 100]; 1 with a 0 and huge / tiny entries; 2 with a NaN. */
static float gen_s(qt_rng *g, int kind, int64_t j)
{
    float v = powf(10.0f, (qt_uniform(g) - 0.5f) * 4.0f);
    if (kind == 1 && j % 7 == 3)
        return j % 2 ? 0.0f : (j % 3 ? 1e20f : 1e-20f);
    if (kind == 2 && j == 1)
        return NAN;
    return v;
}

static const char *mode_name(qv_fq_scale m)
{
    static const char *names[] = {"none", "mul", "muldiv", "div"};
    return names[m];
}

Test(fq_parity, random_bit_exact, .timeout = 600)
{
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    const qv_kernel_table *R = qv_kernels_for(QV_ISA_SCALAR);
    static const int bits[] = {2, 3, 4, 8};
    static const qv_dtype dts[] = {QV_F32, QV_BF16, QV_F16};
    long runs = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape sh = shapes[si];
        const size_t n = (size_t)(sh.rows * sh.cols);
        qt_rng g = {0x1234567ULL + si};
        float *v = malloc(n * 4), *sv = malloc((size_t)sh.cols * 4);
        cr_assert(v && sv);
        for (int64_t r = 0; r < sh.rows; r++)
            for (int64_t j = 0; j < sh.cols; j++)
                v[r * sh.cols + j] = gen(&g, (int)((r + (int64_t)si) % N_KINDS), j, sh.cols);
        for (size_t di = 0; di < 3; di++) {
            qv_dtype dt = dts[di];
            void *w = qt_t_from_f32(v, n, dt);
            if (dt != QV_F32 && si % 3 == 0) /* some 16-bit inputs are raw bit patterns */
                for (size_t e = 0; e < n; e += 3)
                    ((uint16_t *)w)[e] = (uint16_t)qt_next(&g);
            void *want = malloc(n * 4), *got = malloc(n * 4);
            cr_assert(want && got);
            for (int sk = 0; sk < 3; sk++) {
                for (int64_t j = 0; j < sh.cols; j++)
                    sv[j] = gen_s(&g, sk, j);
                void *s = qt_t_from_f32(sv, (size_t)sh.cols, dt);
                for (int mode = 0; mode < 4; mode++) {
                    if (mode == QV_FQ_SCALE_NONE && sk > 0)
                        continue;
                    for (int odt_f32 = 0; odt_f32 < (dt == QV_F32 ? 1 : 2); odt_f32++) {
                        qv_dtype odt = odt_f32 ? QV_F32 : dt;
                        size_t osz = qt_t_size(odt);
                        for (int zp = 0; zp < 2; zp++)
                            for (int bi = 0; bi < 4; bi++)
                                for (int cuda = 0; cuda < 2; cuda++) {
                                    qv_fq p = {bits[bi], zp, sh.group, cuda ? QV_FQ_DIV_CUDA : QV_FQ_DIV_CPU};
                                    cr_assert_null(qv_fq_check(&p, dt, odt, (qv_fq_scale)mode, s, sh.cols));
                                    R->fq_rows(want, odt, w, dt, s, (qv_fq_scale)mode, sh.rows, sh.cols, &p);
                                    for (int t = 1; t < nt; t++) {
                                        memset(got, 0xa5, n * 4);
                                        tabs[t].k->fq_rows(got, odt, w, dt, s, (qv_fq_scale)mode, sh.rows, sh.cols, &p);
                                        runs++;
                                        if (!memcmp(got, want, n * osz))
                                            continue;
                                        size_t e = 0;
                                        while (!memcmp((char *)got + e * osz, (char *)want + e * osz, osz))
                                            e++;
                                        cr_assert_fail("%s differs from scalar: %s->%s mode %s s-kind %d %s %d-bit %s "
                                                       "division, shape %lldx%lld group %lld, element [%lld][%lld] "
                                                       "(input %a): %a vs %a",
                                                       tabs[t].name, qt_dt_name(dt), qt_dt_name(odt),
                                                       mode_name((qv_fq_scale)mode), sk, zp ? "asym" : "sym", bits[bi],
                                                       cuda ? "CUDA" : "CPU", (long long)sh.rows, (long long)sh.cols,
                                                       (long long)sh.group, (long long)(e / (size_t)sh.cols),
                                                       (long long)(e % (size_t)sh.cols), qt_t_get(w, dt, e),
                                                       qt_t_get(got, odt, e), qt_t_get(want, odt, e));
                                    }
                                }
                    }
                }
                free(s);
            }
            free(w), free(want), free(got);
        }
        free(v), free(sv);
    }
    cr_log_info("%ld kernel runs compared with the scalar reference", runs);
}

/* out may alias w when the dtypes match */
Test(fq_parity, in_place)
{
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    const qv_kernel_table *R = qv_kernels_for(QV_ISA_SCALAR);
    qt_rng g = {99};
    const int64_t rows = 8, cols = 384;
    const qv_fq p = {4, true, 128, QV_FQ_DIV_CUDA};
    float v[8 * 384], s[384];
    for (int i = 0; i < rows * cols; i++)
        v[i] = qt_normal(&g);
    for (int j = 0; j < cols; j++)
        s[j] = 0.5f + qt_uniform(&g);
    for (int di = 0; di < 3; di++) {
        qv_dtype dt = di == 0 ? QV_F32 : di == 1 ? QV_BF16 : QV_F16;
        void *w = qt_t_from_f32(v, (size_t)(rows * cols), dt), *sd = qt_t_from_f32(s, (size_t)cols, dt);
        void *want = malloc((size_t)(rows * cols) * 4), *x = malloc((size_t)(rows * cols) * 4);
        size_t bytes = (size_t)(rows * cols) * qt_t_size(dt);
        R->fq_rows(want, dt, w, dt, sd, QV_FQ_SCALE_MULDIV, rows, cols, &p);
        for (int t = 0; t < nt; t++) {
            memcpy(x, w, bytes);
            tabs[t].k->fq_rows(x, dt, x, dt, sd, QV_FQ_SCALE_MULDIV, rows, cols, &p);
            cr_expect(!memcmp(x, want, bytes), "%s in-place %s differs", tabs[t].name, qt_dt_name(dt));
        }
        free(w), free(sd), free(want), free(x);
    }
}

/* The fused forms equal their two-step definitions: FQ(T(x ⊘ s)) (the W-A search's per-token
 * activations) and FQ(T(w ⊙ s)), computed here with the scalar T rounding and the plain FQ. */
Test(fq_parity, fused_forms_match_two_steps)
{
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    qt_rng g = {2024};
    enum { ROWS = 7, COLS = 4096 + 3 };
    float *x = malloc(ROWS * COLS * 4), *s = malloc(COLS * 4), *xs = malloc(ROWS * COLS * 4);
    float *want = malloc(ROWS * COLS * 4), *got = malloc(ROWS * COLS * 4);
    cr_assert(x && s && xs && want && got);
    for (int i = 0; i < ROWS * COLS; i++)
        x[i] = qt_normal(&g) * (i % 97 == 0 ? 20.0f : 1.0f);
    for (int j = 0; j < COLS; j++)
        s[j] = powf(10.0f, qt_uniform(&g) * 2.0f - 1.0f);
    const qv_fq a8 = {8, false, -1, QV_FQ_DIV_CPU}, w4 = {4, false, -1, QV_FQ_DIV_CUDA};
    for (int di = 0; di < 3; di++) {
        qv_dtype dt = di == 0 ? QV_F32 : di == 1 ? QV_BF16 : QV_F16;
        void *tx = qt_t_from_f32(x, ROWS * COLS, dt), *ts = qt_t_from_f32(s, COLS, dt);
        for (int mul = 0; mul < 2; mul++) {
            for (int i = 0; i < ROWS * COLS; i++) {
                float v = qt_t_get(tx, dt, (size_t)i), sj = qt_t_get(ts, dt, (size_t)(i % COLS));
                v = mul ? v * sj : v / sj;
                xs[i] = dt == QV_BF16 ? qv_round_bf16(v) : dt == QV_F16 ? qv_round_f16(v) : v;
            }
            void *txs = qt_t_from_f32(xs, ROWS * COLS, dt);
            const qv_fq *p = mul ? &w4 : &a8;
            qv_kernels_for(QV_ISA_SCALAR)->fq_rows(want, QV_F32, txs, dt, NULL, QV_FQ_SCALE_NONE, ROWS, COLS, p);
            for (int t = 0; t < nt; t++) {
                tabs[t].k->fq_rows(got, QV_F32, tx, dt, ts, mul ? QV_FQ_SCALE_MUL : QV_FQ_SCALE_DIV, ROWS, COLS, p);
                cr_expect(!memcmp(got, want, ROWS * COLS * 4), "%s %s %s form differs from its two steps",
                          tabs[t].name, qt_dt_name(dt), mul ? "mul" : "div");
            }
            free(txs);
        }
        free(tx), free(ts);
    }
    free(x), free(s), free(xs), free(want), free(got);
}

/* torch semantics: amax/amin propagate NaN, so a group with a NaN, or with ±Inf (scale Inf, then
 * 0·Inf), comes out all NaN; other groups are untouched. */
Test(fq_parity, nonfinite_groups)
{
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    float v[4 * 64], o[4 * 64];
    for (int i = 0; i < 4 * 64; i++)
        v[i] = (float)(i % 13) * 0.1f - 0.6f;
    v[5] = NAN;           /* row 0, group 0 */
    v[64 + 40] = INFINITY; /* row 1, group 1 */
    v[128 + 3] = -INFINITY; /* row 2, group 0 */
    for (int t = 0; t < nt; t++)
        for (int zp = 0; zp < 2; zp++) {
            qv_fq p = {4, zp, 32, QV_FQ_DIV_CUDA};
            tabs[t].k->fq_rows(o, QV_F32, v, QV_F32, NULL, QV_FQ_SCALE_NONE, 4, 64, &p);
            for (int i = 0; i < 4 * 64; i++) {
                int grp = i / 32;
                bool bad = grp == 0 || grp == 3 || grp == 4;
                cr_expect(bad ? isnan(o[i]) : isfinite(o[i]), "%s %s element %d: %g", tabs[t].name,
                          zp ? "asym" : "sym", i, o[i]);
            }
        }
}

Test(fq_parity, per_tensor)
{
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    qt_rng g = {7};
    float v[3 * 100], want[300], got[300];
    for (int i = 0; i < 300; i++)
        v[i] = qt_normal(&g) * (i == 150 ? 10.0f : 1.0f);
    /* one group over everything = one row of 300 */
    qv_fq p = {8, false, 128, QV_FQ_DIV_CPU}, row = p;
    row.group = -1;
    qv_kernels_for(QV_ISA_SCALAR)->fq_rows(want, QV_F32, v, QV_F32, NULL, QV_FQ_SCALE_NONE, 1, 300, &row);
    for (int t = 0; t < nt; t++) {
        cr_assert_eq(qv_fq_tensor(tabs[t].k, got, QV_F32, v, QV_F32, 300, &p, NULL), QV_OK);
        cr_expect(!memcmp(got, want, sizeof got), "%s per-tensor differs", tabs[t].name);
    }
    /* the scale is absmax / 127 = 10-ish: small values collapse to the grid of that scale */
    float s = 0;
    for (int i = 0; i < 300; i++)
        s = fmaxf(s, fabsf(v[i]));
    s /= 127.0f;
    for (int i = 0; i < 300; i++)
        cr_expect(fabsf(want[i] - v[i]) <= 0.5f * s * 1.0001f, "per-tensor error at %d", i);
}

/* The exporters' codes reproduce the fake-quant values: T((code − zero) · scale) == FQ, bitwise. */
Test(fq_parity, codes_match_fake_quant)
{
    const qv_kernel_table *R = qv_kernels_for(QV_ISA_SCALAR);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape sh = shapes[si];
        size_t n = (size_t)(sh.rows * sh.cols);
        int64_t gsz = sh.group > 0 ? sh.group : sh.cols, ng = sh.cols / gsz;
        qt_rng g = {0xc0de + si};
        float *v = malloc(n * 4), *fq = malloc(n * 4), *sc = malloc((size_t)(sh.rows * ng) * 4);
        uint8_t *codes = malloc(n), *zs = malloc((size_t)(sh.rows * ng));
        cr_assert(v && fq && sc && codes && zs);
        for (int64_t r = 0; r < sh.rows; r++)
            for (int64_t j = 0; j < sh.cols; j++) {
                static const int finite_kinds[] = {0, 1, 2, 3, 4, 5, 7, 9, 10, 15}; /* finite in F16 too */
                v[r * sh.cols + j] = gen(&g, finite_kinds[(r + (int64_t)si) % 10], j, sh.cols);
            }
        for (int di = 0; di < 3; di++) {
            qv_dtype dt = di == 0 ? QV_F32 : di == 1 ? QV_BF16 : QV_F16;
            void *w = qt_t_from_f32(v, n, dt);
            for (int zp = 0; zp < 2; zp++)
                for (int b = 2; b <= 8; b++) {
                    qv_fq p = {b, zp, sh.group, (b & 1) ? QV_FQ_DIV_CUDA : QV_FQ_DIV_CPU};
                    R->fq_rows(fq, QV_F32, w, dt, NULL, QV_FQ_SCALE_NONE, sh.rows, sh.cols, &p);
                    const char *why = NULL;
                    cr_assert_eq(qv_fq_codes(codes, sc, zs, w, dt, sh.rows, sh.cols, &p, NULL, &why), QV_OK, "%s", why);
                    for (size_t e = 0; e < n; e++) {
                        size_t gi = e / (size_t)gsz; /* groups are consecutive in row-major order */
                        int q = (int)codes[e] - (int)zs[gi];
                        cr_assert(codes[e] < (1u << b), "code %d out of range for %d bits", codes[e], b);
                        float rec = (float)q * sc[gi];
                        rec = dt == QV_BF16 ? qv_round_bf16(rec) : dt == QV_F16 ? qv_round_f16(rec) : rec;
                        cr_assert_eq(qv_f32_bits(rec), qv_f32_bits(fq[e]),
                                     "%s %s %d-bit shape %lldx%lld/%lld: element %zu code %d zero %d scale %a -> %a, "
                                     "fake quant %a",
                                     qt_dt_name(dt), zp ? "asym" : "sym", b, (long long)sh.rows, (long long)sh.cols,
                                     (long long)sh.group, e, codes[e], zs[gi], sc[gi], rec, fq[e]);
                    }
                }
            free(w);
        }
        free(v), free(fq), free(sc), free(codes), free(zs);
    }
    /* a NaN group has no codes: the error names the group */
    float w[64] = {0};
    w[40] = NAN;
    uint8_t c[64], z[2];
    float sc[2];
    int64_t bad = -1;
    const char *why = NULL;
    cr_expect_eq(qv_fq_codes(c, sc, z, w, QV_F32, 1, 64, &(qv_fq){4, true, 32, QV_FQ_DIV_CUDA}, &bad, &why),
                 QV_ERR_INVALID);
    cr_expect_eq(bad, 1);
    cr_expect_not_null(why);
}
