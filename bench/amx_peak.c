/* amx_peak.c — `qvlm bench amx-peak [--seconds S] [--json]`: the register-only AMX ceiling of this
 * host, so that every GEMM figure can be stated as a fraction of it. The loop (simd/gemm_amx.c,
 * qv_amx_peak_loop) issues TDPBF16PS on 2x2 accumulator tiles fed by two A and two B tiles that
 * never leave the registers: no loads, no stores, 65536 FLOP per round of four. Measured on one
 * thread (per-core figure) and on every OpenMP thread at once (all-core figure, each thread
 * running the same number of rounds; the wall time of the slowest). Hosts without AMX (or
 * without the OS permission for its tile state) are refused with one line. */
#include <math.h>
#include <omp.h>
#include <stdio.h>

#include "bench.h"
#include "cli/cli.h"
#include "core/prof.h"
#include "gemm.h"

#define ROUND_FLOP 65536.0

static volatile float g_sink;

/* Rounds per thread so that one run takes about `seconds` on one core. */
static int64_t calibrate(double seconds)
{
    int64_t it = 1 << 14;
    for (;;) {
        double t0 = qv_now_s();
        g_sink += qv_amx_peak_loop(it);
        double dt = qv_now_s() - t0;
        if (dt > 0.05 || it > ((int64_t)1 << 40))
            return (int64_t)((double)it * seconds / fmax(dt, 1e-9)) + 1;
        it *= 4;
    }
}

static double run_threads(int nt, int64_t iters)
{
    double t0 = qv_now_s();
    if (nt == 1) {
        g_sink += qv_amx_peak_loop(iters);
    } else {
#pragma omp parallel num_threads(nt)
        {
            float r = qv_amx_peak_loop(iters);
#pragma omp atomic
            g_sink += r;
        }
    }
    return ROUND_FLOP * (double)iters * nt / (qv_now_s() - t0) / 1e12;
}

double qv_bench_amx_peak_tflops(int threads, double seconds)
{
    if (!qv_gemm_kernels_get(QV_GEMM_AMX))
        return 0.0;
    const int64_t it = calibrate(seconds);
    double best = 0;
    for (int r = 0; r < 2; r++)
        best = fmax(best, run_threads(threads, it));
    return best;
}

int qv_bench_amx_peak(int argc, char **argv)
{
    double seconds = 2.0;
    bool json = false;
    const qv_opt opts[] = {
        {"seconds", 0, QV_OPT_DOUBLE, &seconds, "S", "approximate length of each run (default 2)"},
        {"json", 0, QV_OPT_FLAG, &json, NULL, "print one JSON object"},
        {0},
    };
    const qv_cli_cmd cmd = {"bench amx-peak", "[--seconds S] [--json]",
                            "The register-only AMX TDPBF16PS ceiling of this host: TFLOPS on one thread and on all "
                            "threads (no loads or stores in the loop; 2x2 accumulator tiles).",
                            opts, 0, 0};
    int npos, r = qv_cli_parse(&cmd, argc, argv, NULL, &npos);
    if (r >= 0)
        return r;
    if (!(seconds > 0 && seconds <= 600))
        return qv_cli_usage_error("bench amx-peak", "--seconds must be in (0, 600]");
    if (!qv_gemm_kernels_get(QV_GEMM_AMX)) {
        const qv_cpu_features *f = qv_cpu();
        qv_fail(QV_ERR_UNSUPPORTED, "bench amx-peak: this host cannot run AMX (amx-tile %s, amx-bf16 %s, OS tile "
                "state %s%s): nothing to measure",
                f->amx_tile ? "yes" : "no", f->amx_bf16 ? "yes" : "no", f->os_amx ? "granted" : "not granted",
                qv_isa_active() < qv_isa_host() ? ", or QVLM_ISA lowers it" : "");
        return qv_cli_fail();
    }
    const int all = omp_get_max_threads();
    const int64_t it = calibrate(seconds);
    double one = 0, many = 0;
    for (int rep = 0; rep < 2; rep++) {
        one = fmax(one, run_threads(1, it));
        if (all > 1)
            many = fmax(many, run_threads(all, it));
    }
    if (all == 1)
        many = one;
    if (json)
        printf("{\"bench\":\"amx-peak\",\"threads\":%d,\"tflops_1\":%.4f,\"tflops_all\":%.4f,\"tflops_per_core\":%.4f,"
               "\"rounds\":%lld}\n",
               all, one, many, many / all, (long long)it);
    else
        printf("amx-peak: TDPBF16PS register-only: %.3f TFLOPS on 1 thread, %.3f TFLOPS on %d threads (%.3f per "
               "thread; best of 2 runs of %lld rounds = %.2g FLOP per thread)\n",
               one, many, all, many / all, (long long)it, ROUND_FLOP * (double)it);
    return QV_EXIT_OK;
}
