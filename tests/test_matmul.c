/* test_matmul.c — oneDNN matmul wrapper against the double-accumulation reference
 * (src/nn/matmul.h). Tolerance: max |ours - ref| <= 1e-5 * K * max|a| * max|b| (f32
 * accumulation in any order), and BF16 inputs are exact in f32 so the same bound holds. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../simd/fp.h"
#include "nn/matmul.h"
#include "util/testutil.h"

static uint64_t rng_state = 88172645463325252ull;
static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void check(qv_dtype dt, int64_t M, int64_t N, int64_t K, unsigned flags, bool bias, int64_t pad)
{
    int64_t lda = K + pad, ldb = ((flags & QV_MM_B_NK) ? K : N) + pad, ldc = N + pad;
    int64_t brows = (flags & QV_MM_B_NK) ? N : K;
    size_t es = qv_dtype_size(dt);
    void *a = malloc((size_t)(M * lda) * es), *b = malloc((size_t)(brows * ldb) * es);
    float *c = malloc((size_t)(M * ldc) * 4), *r = malloc((size_t)(M * ldc) * 4), *bv = malloc((size_t)N * 4);
    for (int64_t i = 0; i < M * lda; i++) {
        float v = frand();
        if (dt == QV_BF16)
            ((uint16_t *)a)[i] = qv_f32_to_bf16(v);
        else
            ((float *)a)[i] = v;
    }
    for (int64_t i = 0; i < brows * ldb; i++) {
        float v = frand();
        if (dt == QV_BF16)
            ((uint16_t *)b)[i] = qv_f32_to_bf16(v);
        else
            ((float *)b)[i] = v;
    }
    for (int64_t i = 0; i < N; i++)
        bv[i] = frand();
    for (int64_t i = 0; i < M * ldc; i++)
        c[i] = r[i] = frand();
    cr_assert_eq(qv_matmul(dt, M, N, K, a, lda, b, ldb, bias ? bv : NULL, c, ldc, flags), QV_OK, "%s",
                 qv_last_error());
    qv_matmul_ref(dt, M, N, K, a, lda, b, ldb, bias ? bv : NULL, r, ldc, flags);
    double tol = 1e-5 * (double)(K + 2), worst = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            double d = fabs((double)c[i * ldc + j] - r[i * ldc + j]);
            if (j >= N)
                cr_assert_eq(c[i * ldc + j], r[i * ldc + j], "padding column written at (%lld,%lld)", (long long)i,
                             (long long)j);
            worst = fmax(worst, d);
        }
    cr_assert_leq(worst, tol, "%s M=%lld N=%lld K=%lld flags=%u: max err %g > %g", qv_dtype_name(dt), (long long)M,
                  (long long)N, (long long)K, flags, worst, tol);
    free(a);
    free(b);
    free(c);
    free(r);
    free(bv);
}

Test(matmul, f32_shapes_strides_flags)
{
    const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {128, 256, 128}, {345, 128, 256}, {2, 3, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (unsigned flags = 0; flags < 4; flags++)
            for (int bias = 0; bias < 2; bias++)
                check(QV_F32, shapes[s][0], shapes[s][1], shapes[s][2], flags, bias, s % 2 ? 3 : 0);
}

Test(matmul, bf16_shapes)
{
    if (!qv_matmul_bf16_native()) {
        cr_assert_neq(qv_matmul(QV_BF16, 1, 1, 2, "\0\0\0\0", 2, "\0\0\0\0", 2, NULL, (float[1]){0}, 1, 0), QV_OK);
        cr_skip_test("oneDNN has no native BF16 matmul on this host (%s)", qv_matmul_isa_name());
    }
    const int64_t shapes[][3] = {{1, 1, 2}, {5, 9, 32}, {64, 128, 128}, {31, 48, 200}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (unsigned flags = 0; flags < 4; flags++)
            check(QV_BF16, shapes[s][0], shapes[s][1], shapes[s][2], flags, flags & 1, 0);
}

Test(matmul, concurrent_calls_from_threads)
{
    /* the same shape from several threads at once must give every thread the right answer */
    enum { M = 40, N = 72, K = 96, T = 4 };
    static float a[T][M * K], b[N * K], c[T][M * N], r[M * N];
    for (int i = 0; i < N * K; i++)
        b[i] = frand();
    for (int t = 0; t < T; t++)
        for (int i = 0; i < M * K; i++)
            a[t][i] = frand();
    int fails = 0;
#pragma omp parallel for num_threads(T) reduction(+ : fails)
    for (int t = 0; t < T; t++)
        fails += qv_matmul(QV_F32, M, N, K, a[t], K, b, K, NULL, c[t], N, QV_MM_B_NK) != QV_OK;
    cr_assert_eq(fails, 0);
    for (int t = 0; t < T; t++) {
        qv_matmul_ref(QV_F32, M, N, K, a[t], K, b, K, NULL, r, N, QV_MM_B_NK);
        cr_assert_leq(qt_max_abs(c[t], r, M * N), 1e-5 * K, "thread %d", t);
    }
}
