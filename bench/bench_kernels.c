/* bench_kernels.c — `qvlm bench kernels [--quick] [--json]` (spec/CLI.md): every kernel of simd.h
 * on BF16 matrices of a real weight's shape (4096x4096 and 14336x4096; --quick: 256x4096), for
 * each kernel set the host supports, single-threaded and on all threads (OpenMP over disjoint row
 * ranges, as the search calls them). Reported per line: name, isa, GB/s, ratio to memcpy of the
 * same bytes on this host at the same thread count, ratio to the scalar reference, threads, shape.
 *
 * GB/s counts the bytes a kernel must move: the elements it reads plus those it writes (a BF16 ->
 * BF16 fake quantization of n elements moves 4n bytes). The memcpy figure is measured the same
 * way (a copy of B bytes moves 2B) on a buffer of the weight's size. Times are the best of a few
 * repetitions after a warm-up run; speed lives here, never in the tests (STYLE.md). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "cli/cli.h"
#include "fp.h"
#include "io/json.h"
#include "simd.h"

typedef enum kind {
    K_FQ,     /* fq_rows: in BF16, out BF16 or F32 */
    K_LOSS,   /* loss_rows over two BF16 matrices */
    K_ABSMEAN,
    K_CVT,
} kind;

typedef struct bench_kernel {
    const char *name;
    kind kind;
    qv_fq p;
    qv_fq_scale mode;
    qv_dtype out_dt;
    int cvt;      /* K_CVT: 0 f32->bf16, 1 bf16->f32, 2 f32->f16, 3 f16->f32 */
    int traffic;  /* bytes moved per element */
} bench_kernel;

static const bench_kernel kernels[] = {
    {"fq_w4_g128_asym", K_FQ, {4, true, 128, QV_FQ_DIV_CUDA}, QV_FQ_SCALE_NONE, QV_BF16, 0, 4},
    {"fq_w3_g128_asym", K_FQ, {3, true, 128, QV_FQ_DIV_CUDA}, QV_FQ_SCALE_NONE, QV_BF16, 0, 4},
    {"fq_w4_perchannel_sym", K_FQ, {4, false, -1, QV_FQ_DIV_CUDA}, QV_FQ_SCALE_NONE, QV_BF16, 0, 4},
    {"fq_a8_pertoken_sym", K_FQ, {8, false, -1, QV_FQ_DIV_CPU}, QV_FQ_SCALE_NONE, QV_BF16, 0, 4},
    {"fq_a8_pertoken_smoothed", K_FQ, {8, false, -1, QV_FQ_DIV_CPU}, QV_FQ_SCALE_DIV, QV_BF16, 0, 4},
    {"fq_fused_w4_g128", K_FQ, {4, true, 128, QV_FQ_DIV_CUDA}, QV_FQ_SCALE_MULDIV, QV_BF16, 0, 4},
    {"fq_fused_w4_g128_f32out", K_FQ, {4, true, 128, QV_FQ_DIV_CUDA}, QV_FQ_SCALE_MULDIV, QV_F32, 0, 6},
    {"fq_fused_w4_perchannel_sym", K_FQ, {4, false, -1, QV_FQ_DIV_CUDA}, QV_FQ_SCALE_MUL, QV_BF16, 0, 4},
    {"loss_abs_sq", K_LOSS, {0}, 0, 0, 0, 4},
    {"absmean_acc", K_ABSMEAN, {0}, 0, 0, 0, 2},
    {"cvt_f32_to_bf16", K_CVT, {0}, 0, 0, 0, 6},
    {"cvt_bf16_to_f32", K_CVT, {0}, 0, 0, 1, 6},
    {"cvt_f32_to_f16", K_CVT, {0}, 0, 0, 2, 6},
    {"cvt_f16_to_f32", K_CVT, {0}, 0, 0, 3, 6},
};

typedef struct bufs {
    int64_t rows, cols;
    uint16_t *w, *w2, *out16, *s; /* BF16 [rows, cols] x3, s [cols] */
    float *f32, *out32, *acc;     /* F32 [rows, cols] x2, acc [cols] */
    double *ra, *rq;              /* [rows] */
} bufs;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }

/* --cpu-time: on a shared host wall time also measures the run queue. One thread: the thread's
 * CPU time; several: the process's CPU time / threads (OpenMP's spin-waits included, so this
 * errs on the slow side). */
static bool g_cpu_time;
static double run_clock(int nt)
{
    if (!g_cpu_time)
        return now();
    return nt == 1 ? clock_s(CLOCK_THREAD_CPUTIME_ID) : clock_s(CLOCK_PROCESS_CPUTIME_ID) / nt;
}

/* Runs kernel bk of table k on its share of the work, for thread t of nt. */
static void run_share(const bench_kernel *bk, const qv_kernel_table *k, const bufs *b, int t, int nt)
{
    const int64_t r0 = b->rows * t / nt, r1 = b->rows * (t + 1) / nt, nr = r1 - r0;
    const size_t e0 = (size_t)(r0 * b->cols), ne = (size_t)(nr * b->cols);
    switch (bk->kind) {
    case K_FQ:
        if (bk->out_dt == QV_F32)
            k->fq_rows(b->out32 + e0, QV_F32, b->w + e0, QV_BF16, b->s, bk->mode, nr, b->cols, &bk->p);
        else
            k->fq_rows(b->out16 + e0, QV_BF16, b->w + e0, QV_BF16, b->s, bk->mode, nr, b->cols, &bk->p);
        break;
    case K_LOSS:
        k->loss_rows(b->ra + r0, b->rq + r0, b->w + e0, b->w2 + e0, QV_BF16, nr, b->cols, NULL);
        break;
    case K_ABSMEAN: { /* threads own disjoint column ranges (the accumulators) */
        int64_t c0 = b->cols * t / nt, c1 = b->cols * (t + 1) / nt;
        k->absmean_acc(b->acc + c0, b->w + c0, QV_BF16, b->rows, c1 - c0, b->cols);
        break;
    }
    case K_CVT:
        if (bk->cvt == 0)
            k->f32_to_bf16(b->out16 + e0, b->f32 + e0, ne);
        else if (bk->cvt == 1)
            k->bf16_to_f32(b->out32 + e0, b->w + e0, ne);
        else if (bk->cvt == 2)
            k->f32_to_f16(b->out16 + e0, b->f32 + e0, ne);
        else
            k->f16_to_f32(b->out32 + e0, b->w + e0, ne);
        break;
    }
}

static void run_all(const bench_kernel *bk, const qv_kernel_table *k, const bufs *b, int nt)
{
    if (nt == 1) {
        run_share(bk, k, b, 0, 1);
        return;
    }
#pragma omp parallel num_threads(nt)
    run_share(bk, k, b, omp_get_thread_num(), omp_get_num_threads());
}

static void copy_all(const bufs *b, size_t bytes, int nt)
{
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        size_t a = bytes * (size_t)t / (size_t)n, z = bytes * (size_t)(t + 1) / (size_t)n;
        memcpy((char *)b->out16 + a, (const char *)b->w + a, z - a);
    }
}

/* Best wall time of at least `reps` runs, going on while less than min_s has passed (at most 50
 * runs). Every run is timed: the buffers were written by bufs_init, so there is no cold start
 * beyond what the best-of removes. */
static double best_time(const bench_kernel *bk, const qv_kernel_table *k, const bufs *b, int nt, int reps,
                        double min_s)
{
    double best = INFINITY, t_start = now();
    for (int i = 0; i < reps || (i < 50 && now() - t_start < min_s); i++) {
        double t0 = run_clock(nt);
        if (bk)
            run_all(bk, k, b, nt);
        else
            copy_all(b, (size_t)(b->rows * b->cols) * 2, nt);
        double dt = run_clock(nt) - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

static void bufs_free(bufs *b)
{
    free(b->w), free(b->w2), free(b->out16), free(b->s), free(b->f32), free(b->out32), free(b->acc), free(b->ra),
        free(b->rq);
}

static bool bufs_init(bufs *b, int64_t rows, int64_t cols)
{
    size_t n = (size_t)(rows * cols);
    memset(b, 0, sizeof *b);
    b->rows = rows, b->cols = cols;
    b->w = malloc(n * 2), b->w2 = malloc(n * 2), b->out16 = malloc(n * 2), b->s = malloc((size_t)cols * 2);
    b->f32 = malloc(n * 4), b->out32 = malloc(n * 4), b->acc = calloc((size_t)cols, 4);
    b->ra = malloc((size_t)rows * 8), b->rq = malloc((size_t)rows * 8);
    if (!b->w || !b->w2 || !b->out16 || !b->s || !b->f32 || !b->out32 || !b->acc || !b->ra || !b->rq) {
        bufs_free(b);
        qv_fail(QV_ERR_NOMEM, "bench kernels: out of memory for a %lldx%lld matrix", (long long)rows, (long long)cols);
        return false;
    }
    /* weight-like values (N(0, 0.02) by a cheap generator), written by the threads that will use
     * them so that pages land near their users */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        uint64_t x = 0x9e3779b97f4a7c15ULL ^ (uint64_t)r;
        for (int64_t j = 0; j < cols; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            float u = (float)((x >> 40) & 0xffff) / 65536.0f + (float)(x >> 56) / 256.0f - 1.0f; /* sum of two */
            size_t e = (size_t)(r * cols + j);
            b->f32[e] = u * 0.03f;
            b->w[e] = qv_f32_to_bf16(b->f32[e]);
            b->w2[e] = qv_f32_to_bf16(b->f32[e] * 1.01f);
            b->out16[e] = 0, b->out32[e] = 0.0f;
        }
    }
    for (int64_t j = 0; j < cols; j++)
        b->s[j] = qv_f32_to_bf16(0.5f + (float)(j % 97) / 64.0f);
    return true;
}

typedef struct result {
    const char *name, *isa;
    int threads;
    int64_t rows, cols;
    double gbps, vs_memcpy, vs_scalar;
} result;

int qv_bench_kernels(int argc, char **argv)
{
    bool quick = false, json = false;
    const qv_opt opts[] = {
        {"quick", 0, QV_OPT_FLAG, &quick, NULL, "one small shape (256x4096), few repetitions: a few seconds"},
        {"json", 0, QV_OPT_FLAG, &json, NULL, "print one JSON object"},
        {"cpu-time", 0, QV_OPT_FLAG, &g_cpu_time, NULL,
         "time by CPU time instead of wall time (shared or loaded hosts; see bench/README.md)"},
        {0},
    };
    const qv_cli_cmd cmd = {"bench kernels", "[--quick] [--json] [--cpu-time]",
                            "Microbenchmarks of every SIMD kernel on BF16 weights of 4096x4096 and 14336x4096: GB/s "
                            "(bytes read + written), the ratio to memcpy of the same bytes and to the scalar "
                            "reference, single-threaded and on all threads.",
                            opts, 0, 0};
    int npos, r = qv_cli_parse(&cmd, argc, argv, NULL, &npos);
    if (r >= 0)
        return r;
    qv_cli_apply_threads();
    const int all = omp_get_max_threads();
    const int64_t shapes[][2] = {{4096, 4096}, {14336, 4096}}, quick_shape[][2] = {{256, 4096}};
    const int n_shapes = quick ? 1 : 2, reps = quick ? 3 : 2;
    const double min_s = quick ? 0.0 : 0.5;
    const int threads[2] = {1, all}, n_thr = all > 1 ? 2 : 1;
    const qv_kernel_table *tabs[QV_ISA_COUNT];
    int nt = 0;
    for (int i = 0; i < QV_ISA_COUNT; i++)
        if (qv_kernels_for((qv_isa)i) && (i != QV_ISA_AMX)) /* AMX reuses the AVX-512 variants */
            tabs[nt++] = qv_kernels_for((qv_isa)i);
    result *res = calloc(QV_ARRAY_LEN(kernels) * (size_t)nt * 2 * 2, sizeof *res);
    double memcpy_gbps[2][2] = {{0}};
    if (!res) {
        qv_fail(QV_ERR_NOMEM, "bench kernels: out of memory");
        return qv_cli_fail();
    }
    size_t nres = 0;
    if (!json)
        printf("# qvlm bench kernels: isa %s, %d threads, kernels: %s, %s time\n"
               "# GB/s = (bytes read + written) / s; ratios at the same shape and thread count\n"
               "%-28s %-7s %8s %10s %10s %7s %s\n",
               qv_isa_name(), all, qv_kernels()->desc, g_cpu_time ? "CPU" : "wall", "name", "isa", "GB/s", "vs_memcpy",
               "vs_scalar", "threads", "shape");
    for (int si = 0; si < n_shapes; si++) {
        const int64_t rows = quick ? quick_shape[0][0] : shapes[si][0];
        const int64_t cols = quick ? quick_shape[0][1] : shapes[si][1];
        bufs b;
        if (!bufs_init(&b, rows, cols)) {
            free(res);
            return qv_cli_fail();
        }
        const double elems = (double)rows * (double)cols;
        for (int ti = 0; ti < n_thr; ti++) {
            int nthr = threads[ti];
            double tm = best_time(NULL, NULL, &b, nthr, reps, min_s);
            memcpy_gbps[si][ti] = 2.0 * 2.0 * elems / tm / 1e9;
            if (!json)
                printf("%-28s %-7s %8.2f %10.2f %10s %7d %lldx%lld\n", "memcpy", "-", memcpy_gbps[si][ti], 1.0, "-",
                       nthr, (long long)rows, (long long)cols);
            for (size_t ki = 0; ki < QV_ARRAY_LEN(kernels); ki++) {
                const bench_kernel *bk = &kernels[ki];
                double scalar_gbps = 0;
                for (int ii = 0; ii < nt; ii++) {
                    double t = best_time(bk, tabs[ii], &b, nthr, reps, min_s);
                    double gbps = (double)bk->traffic * elems / t / 1e9;
                    if (ii == 0)
                        scalar_gbps = gbps;
                    result *x = &res[nres++];
                    *x = (result){bk->name, qv_isa_str(tabs[ii]->isa), nthr, rows, cols, gbps,
                                  gbps / memcpy_gbps[si][ti], gbps / scalar_gbps};
                    if (!json) {
                        printf("%-28s %-7s %8.2f %10.2f %10.2f %7d %lldx%lld\n", x->name, x->isa, x->gbps,
                               x->vs_memcpy, x->vs_scalar, x->threads, (long long)rows, (long long)cols);
                        fflush(stdout);
                    }
                }
            }
        }
        bufs_free(&b);
    }
    if (json) {
        qv_strbuf o;
        qv_sb_init(&o);
        qv_sb_printf(&o, "{\"isa\":\"%s\",\"kernels\":\"%s\",\"threads\":%d,\"clock\":\"%s\",\"memcpy\":[",
                     qv_isa_name(), qv_kernels()->desc, all, g_cpu_time ? "cpu" : "wall");
        for (int si = 0; si < n_shapes; si++)
            for (int ti = 0; ti < n_thr; ti++) {
                qv_sb_printf(&o, "%s{\"threads\":%d,\"rows\":%lld,\"cols\":%lld,\"gbps\":", si + ti ? "," : "",
                             threads[ti], (long long)(quick ? quick_shape[0][0] : shapes[si][0]),
                             (long long)(quick ? quick_shape[0][1] : shapes[si][1]));
                qv_sb_json_double(&o, memcpy_gbps[si][ti]);
                qv_sb_puts(&o, "}");
            }
        qv_sb_puts(&o, "],\"results\":[");
        for (size_t i = 0; i < nres; i++) {
            const result *x = &res[i];
            qv_sb_printf(&o, "%s{\"name\":\"%s\",\"isa\":\"%s\",\"threads\":%d,\"rows\":%lld,\"cols\":%lld,\"gbps\":",
                         i ? "," : "", x->name, x->isa, x->threads, (long long)x->rows, (long long)x->cols);
            qv_sb_json_double(&o, x->gbps);
            qv_sb_puts(&o, ",\"ratio_vs_memcpy\":");
            qv_sb_json_double(&o, x->vs_memcpy);
            qv_sb_puts(&o, ",\"ratio_vs_scalar\":");
            qv_sb_json_double(&o, x->vs_scalar);
            qv_sb_puts(&o, "}");
        }
        qv_sb_puts(&o, "]}\n");
        if (o.oom) {
            qv_sb_free(&o);
            free(res);
            return qv_cli_fail();
        }
        fputs(o.s, stdout);
        qv_sb_free(&o);
    }
    free(res);
    return QV_EXIT_OK;
}
