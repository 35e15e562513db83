/* test_loss.c — the loss sums (simd.h qv_loss_rows_fn, qv_loss_sum; ALGORITHMS.md §0.3, §5.5) and
 * the activation statistic (qv_absmean_acc_fn, qv_absmean_finish; §3.2): every kernel set this
 * host runs against the scalar reference, bit for bit (the canonical 16-lane order), on awkward
 * widths, masks and values; the reference itself against an independent long-double sum; the
 * finishing division in both forms; and NaN/Inf propagation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp.h"
#include "util/kernels_util.h"

static const int64_t widths[] = {1, 3, 15, 16, 17, 31, 32, 33, 100, 259, 4096 + 3};

/* a, b of rows x cols: a third of the differences are 0, the rest spread over 2^-40..2^40 so that
 * the double sums round (sums of fp32 values of similar size are exact in double and would hide
 * a wrong order); some differences are ties of T */
static void make_pair(qt_rng *g, float *a, float *b, size_t n, int special)
{
    for (size_t i = 0; i < n; i++) {
        a[i] = qt_normal(g) * ((i % 11) ? 1.0f : 1e-30f);
        float d = ldexpf(1.0f + qt_uniform(g), (int)(qt_next(g) % 81) - 40);
        b[i] = i % 3 == 0 ? a[i] : a[i] + ((qt_next(g) & 1) ? d : -d);
        if (i % 13 == 5)
            b[i] = a[i] + 0x1p-9f; /* a tie for BF16 near 1 */
    }
    if (special == 1)
        a[n / 2] = NAN;
    if (special == 2)
        b[n - 1] = INFINITY;
}

Test(loss, rows_bit_exact)
{
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    const qv_kernel_table *R = qv_kernels_for(QV_ISA_SCALAR);
    const int64_t rows = 5;
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        int64_t cols = widths[wi];
        size_t n = (size_t)(rows * cols);
        qt_rng g = {0xfeed + wi};
        float *a = malloc(n * 4), *b = malloc(n * 4);
        cr_assert(a && b);
        uint8_t mask[5] = {1, 0, 1, 1, 0};
        for (int special = 0; special < 3; special++) {
            make_pair(&g, a, b, n, special);
            for (int di = 0; di < 3; di++) {
                qv_dtype dt = di == 0 ? QV_F32 : di == 1 ? QV_BF16 : QV_F16;
                void *ta = qt_t_from_f32(a, n, dt), *tb = qt_t_from_f32(b, n, dt);
                for (int masked = 0; masked < 2; masked++) {
                    double wa[5], wq[5], ga[5], gq[5];
                    R->loss_rows(wa, wq, ta, tb, dt, rows, cols, masked ? mask : NULL);
                    for (int t = 1; t < nt; t++) {
                        tabs[t].k->loss_rows(ga, gq, ta, tb, dt, rows, cols, masked ? mask : NULL);
                        for (int r = 0; r < rows; r++) {
                            if (special == 0) {
                                cr_assert(!memcmp(&ga[r], &wa[r], 8) && !memcmp(&gq[r], &wq[r], 8),
                                          "%s %s width %lld row %d: %a %a vs scalar %a %a", tabs[t].name,
                                          qt_dt_name(dt), (long long)cols, r, ga[r], gq[r], wa[r], wq[r]);
                            } else { /* NaN / Inf: the same class, payload unspecified */
                                cr_assert(isnan(ga[r]) == isnan(wa[r]) && isinf(ga[r]) == isinf(wa[r]) &&
                                              (!isfinite(wa[r]) || ga[r] == wa[r]),
                                          "%s %s width %lld row %d special %d: %g vs %g", tabs[t].name,
                                          qt_dt_name(dt), (long long)cols, r, special, ga[r], wa[r]);
                                cr_assert(isnan(gq[r]) == isnan(wq[r]) && (!isfinite(wq[r]) || gq[r] == wq[r]));
                            }
                        }
                    }
                    /* the reference against an independent sum of the T-rounded differences */
                    for (int r = 0; r < rows && special == 0; r++) {
                        long double sa = 0, sq = 0;
                        if (!masked || mask[r])
                            for (int64_t j = 0; j < cols; j++) {
                                size_t e = (size_t)(r * cols + j);
                                float d = qt_t_get(ta, dt, e) - qt_t_get(tb, dt, e);
                                d = dt == QV_BF16 ? qv_round_bf16(d) : dt == QV_F16 ? qv_round_f16(d) : d;
                                sa += fabsl((long double)d);
                                sq += (long double)d * d;
                            }
                        /* a sum of n nonnegative terms is within (n−1)·2^-53 of the exact sum, relative */
                        long double tol = (long double)cols * 0x1p-53L;
                        cr_assert((isinf(sa) ? wa[r] == sa : fabsl(wa[r] - sa) <= tol * sa) &&
                                      (isinf(sq) ? wq[r] == sq : fabsl(wq[r] - sq) <= tol * sq),
                                  "reference %s width %lld row %d: %a vs %La", qt_dt_name(dt), (long long)cols, r,
                                  wa[r], sa);
                    }
                }
                free(ta), free(tb);
            }
        }
        free(a), free(b);
    }
}

/* qv_loss_sum = the rows in index order, masked and weighted, whatever the ISA; MBQ's masked
 * forms (§5.5) are built from it. */
Test(loss, masked_weighted_sum)
{
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    const int64_t rows = 150, cols = 37; /* more rows than qv_loss_sum's chunk */
    size_t n = (size_t)(rows * cols);
    qt_rng g = {4242};
    float *a = malloc(n * 4), *b = malloc(n * 4), w[150];
    uint8_t mask[150];
    double ra[150], rq[150];
    cr_assert(a && b);
    make_pair(&g, a, b, n, 0);
    for (int r = 0; r < rows; r++) {
        mask[r] = (uint8_t)(r % 3 != 1);
        w[r] = r % 5 == 0 ? 0.25f : 1.5f;
    }
    qv_kernels_for(QV_ISA_SCALAR)->loss_rows(ra, rq, a, b, QV_F32, rows, cols, NULL);
    double ea = 0, eq = 0, ma = 0, mq = 0;
    for (int r = 0; r < rows; r++) {
        ea += ra[r];
        eq += rq[r];
        if (mask[r]) {
            ma += (double)w[r] * ra[r];
            mq += (double)w[r] * rq[r];
        }
    }
    for (int t = 0; t < nt; t++) {
        double sa, sq;
        qv_loss_sum(tabs[t].k, &sa, &sq, a, b, QV_F32, rows, cols, NULL, NULL);
        cr_expect(sa == ea && sq == eq, "%s unmasked sum %a %a vs %a %a", tabs[t].name, sa, sq, ea, eq);
        qv_loss_sum(tabs[t].k, &sa, &sq, a, b, QV_F32, rows, cols, mask, w);
        cr_expect(sa == ma && sq == mq, "%s masked weighted sum %a %a vs %a %a", tabs[t].name, sa, sq, ma, mq);
    }
    free(a), free(b);
}

Test(absmean, acc_bit_exact)
{
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    const qv_kernel_table *R = qv_kernels_for(QV_ISA_SCALAR);
    const int64_t rows = 9;
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        int64_t cols = widths[wi], ld = cols + (int64_t)wi % 3; /* row stride >= cols */
        size_t n = (size_t)(rows * ld);
        qt_rng g = {0xabc + wi};
        float *x = malloc(n * 4), *want = malloc((size_t)cols * 4), *got = malloc((size_t)cols * 4);
        cr_assert(x && want && got);
        for (size_t i = 0; i < n; i++)
            x[i] = qt_normal(&g) * ((i % 7) ? 1.0f : 1e-39f) + ((i % 17) ? 0.0f : 1e4f);
        if (wi == 3)
            x[2] = NAN;
        for (int di = 0; di < 3; di++) {
            qv_dtype dt = di == 0 ? QV_F32 : di == 1 ? QV_BF16 : QV_F16;
            void *tx = qt_t_from_f32(x, n, dt);
            for (int64_t j = 0; j < cols; j++)
                want[j] = (float)j * 0.5f; /* accumulates onto what is there */
            R->absmean_acc(want, tx, dt, rows, cols, ld);
            for (int t = 1; t < nt; t++) {
                for (int64_t j = 0; j < cols; j++)
                    got[j] = (float)j * 0.5f;
                tabs[t].k->absmean_acc(got, tx, dt, rows, cols, ld);
                for (int64_t j = 0; j < cols; j++)
                    cr_assert(qv_f32_bits(got[j]) == qv_f32_bits(want[j]) || (isnan(got[j]) && isnan(want[j])),
                              "%s %s width %lld column %lld: %a vs %a", tabs[t].name, qt_dt_name(dt), (long long)cols,
                              (long long)j, got[j], want[j]);
            }
            free(tx);
        }
        free(x), free(want), free(got);
    }
}

Test(absmean, finish_division_forms)
{
    /* T(acc * factor), factor = float(C) / float(n·C) (CUDA), or T(acc / n) (CPU) */
    float acc[3] = {10.0f, 1.0f, 123.456f}, m[3];
    const int64_t n = 3, big = 20000001; /* n·C above 2^24: float(n·C) rounds */
    qv_absmean_finish(m, QV_F32, acc, 3, n, 3, QV_FQ_DIV_CPU);
    for (int j = 0; j < 3; j++)
        cr_expect_eq(qv_f32_bits(m[j]), qv_f32_bits(acc[j] / 3.0f));
    qv_absmean_finish(m, QV_F32, acc, 3, n, 3, QV_FQ_DIV_CUDA);
    for (int j = 0; j < 3; j++)
        cr_expect_eq(qv_f32_bits(m[j]), qv_f32_bits(acc[j] * (3.0f / 9.0f)));
    qv_absmean_finish(m, QV_BF16, acc, 3, big, 4096, QV_FQ_DIV_CUDA);
    float factor = 4096.0f / (float)(big * 4096);
    for (int j = 0; j < 3; j++)
        cr_expect_eq(qv_f32_bits(m[j]), qv_f32_bits(qv_round_bf16(acc[j] * factor)));
    qv_absmean_finish(m, QV_F16, acc, 3, 7, 3, QV_FQ_DIV_CPU);
    for (int j = 0; j < 3; j++)
        cr_expect_eq(qv_f32_bits(m[j]), qv_f32_bits(qv_round_f16(acc[j] / 7.0f)));
}
