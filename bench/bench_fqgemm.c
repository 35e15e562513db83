/* bench_fqgemm.c — `qvlm bench fqgemm [--rows M] [--shapes LIST] [--reps R] [--sweep] [--quick] [--json]`:
 * the packed BF16 GEMM of the scale search (src/nn/fqgemm.h) at the shapes of InternVL2-8B's
 * linears (wqkv 6144x4096, w1/w3 14336x4096, w2 4096x14336, wo 4096x4096; M rows of calibration
 * activations), for each native kernel set this host has (AMX, AVX-512-BF16; the generic path
 * where it has neither):
 *   fq    — the candidate weight T(FQ(T(W ⊙ s)) ⊘ s) of MBQ W3g128 fake-quantized on the fly;
 *   plain — the same packed weight without quantization (the inspect modules' other linears);
 * against oneDNN's qv_matmul on the same shapes (BF16 where this host has native BF16 matmuls,
 * else F32 on the widened values) with the weight fake-quantized beforehand (not timed), and as a
 * fraction of the register-only AMX ceiling (bench amx-peak, measured in the same run).
 * TFLOPS count 2·M·N·K per call; times are the best of R calls after one warm-up. Each line also
 * gives the largest difference to oneDNN's result relative to its largest magnitude.
 *
 * On a host with a native set it first checks that the instructions behave as the emulations of
 * simd/tile_emu.h and dp_emu.h say (random operands with denormals, ties and large values; NaN
 * excluded) and that the native kernels equal their emulated twins bit for bit on a small GEMM.
 * --sweep times the native set's kc x panel-size grid on the w1 shape. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli/cli.h"
#include "core/prof.h"
#include "fp.h"
#include "gemm.h"
#include "nn/fqgemm.h"
#include "nn/matmul.h"
#include "simd.h"

typedef struct shape {
    const char *name;
    int64_t N, K;
} shape;

static const shape shapes[] = {
    {"wqkv", 6144, 4096}, {"w1", 14336, 4096}, {"w2", 4096, 14336}, {"wo", 4096, 4096}};

static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;
static float rnd_normal(void)
{
    /* sum of 4 uniforms, centred and scaled: a cheap bell curve, variance 1 */
    float s = 0;
    for (int i = 0; i < 4; i++) {
        g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
        s += (float)(g_rng >> 40) / 16777216.0f;
    }
    return (s - 2.0f) * 1.7320508f;
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double mb = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        mb = fmax(mb, fabs((double)b[i]));
        d = fmax(d, fabs((double)a[i] - b[i]));
    }
    return mb > 0 ? d / mb : d;
}

/* ---- hardware vs emulation ------------------------------------------------------------------ */

static uint16_t special_bf16(void)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    switch ((g_rng >> 20) % 8) {
    case 0: return (uint16_t)(g_rng >> 40) & 0x807f;               /* denormal or zero */
    case 1: return qv_f32_to_bf16(ldexpf(1.0f, (int)((g_rng >> 30) % 60) - 30));
    case 2: return qv_f32_to_bf16(-ldexpf(1.0f, (int)((g_rng >> 30) % 60) - 30));
    case 3: return qv_f32_to_bf16(ldexpf(rnd_normal(), 60));       /* large */
    case 4: return qv_f32_to_bf16(ldexpf(rnd_normal(), -63));      /* products near the FTZ edge */
    default: return qv_f32_to_bf16(rnd_normal());
    }
}

/* Elements identical / compared, for TDPBF16PS and VDPBF16PS on random operands. */
static void instr_check(bool amx, int64_t *same, int64_t *total)
{
    *same = *total = 0;
    for (int trial = 0; trial < 64; trial++) {
        uint32_t a[256], b[256];
        float c[256], ce[256];
        for (int i = 0; i < 256; i++) {
            a[i] = (uint32_t)special_bf16() | (uint32_t)special_bf16() << 16;
            b[i] = (uint32_t)special_bf16() | (uint32_t)special_bf16() << 16;
            c[i] = trial % 4 == 3 ? ldexpf(rnd_normal(), -127) : rnd_normal() * (trial % 2 ? 1e6f : 1.0f);
            ce[i] = c[i];
        }
        if (amx) {
            qv_hw_tdpbf16ps(c, a, b, 16, 16, 16);
            qv_emu_tdpbf16ps(ce, a, b, 16, 16, 16);
        } else {
            for (int v = 0; v < 16; v++) {
                qv_hw_vdpbf16ps(c + 16 * v, a + 16 * v, b + 16 * v);
                qv_emu_vdpbf16ps(ce + 16 * v, a + 16 * v, b + 16 * v);
            }
        }
        for (int i = 0; i < 256; i++)
            *same += qv_f32_bits(c[i]) == qv_f32_bits(ce[i]);
        *total += 256;
    }
}

/* The native set against its emulated twin on a fake-quantized 64x96x256 GEMM. */
static int64_t kernel_check(const qv_gemm_kernels *k, const qv_gemm_kernels *emu, int64_t *total)
{
    const int64_t M = 64, N = 96, K = 256;
    uint16_t *w = malloc((size_t)(N * K) * 2), *x = malloc((size_t)(M * K) * 2), s[256];
    float *y = malloc((size_t)(M * N) * 4), *ye = malloc((size_t)(M * N) * 4);
    int64_t same = -1;
    *total = M * N;
    if (w && x && y && ye) {
        for (int64_t i = 0; i < N * K; i++)
            w[i] = qv_f32_to_bf16(rnd_normal() * 0.05f);
        for (int64_t i = 0; i < M * K; i++)
            x[i] = qv_f32_to_bf16(rnd_normal());
        for (int i = 0; i < 256; i++)
            s[i] = qv_f32_to_bf16(expf(rnd_normal()));
        const qv_fqgemm_q q = {s, QV_FQ_SCALE_MULDIV, {3, true, 128, QV_FQ_DIV_CUDA}};
        qv_fqgemm_w *a = NULL, *b = NULL;
        if (qv_fqgemm_pack(k, w, N, K, &a) == QV_OK && qv_fqgemm_pack(emu, w, N, K, &b) == QV_OK &&
            qv_fqgemm(y, x, M, a, &q, NULL) == QV_OK && qv_fqgemm(ye, x, M, b, &q, NULL) == QV_OK) {
            same = 0;
            for (int64_t i = 0; i < M * N; i++)
                same += qv_f32_bits(y[i]) == qv_f32_bits(ye[i]);
        }
        qv_fqgemm_free(a);
        qv_fqgemm_free(b);
    }
    free(w), free(x), free(y), free(ye);
    return same;
}

/* ---- timing ---------------------------------------------------------------------------------- */

typedef struct bufs {
    int64_t M, N, K;
    uint16_t *w, *x, *s, *wq; /* W, X, s, the reference's fake-quantized W (BF16) */
    float *xf, *wf;           /* widened X and W (F32 oneDNN), or NULL with native BF16 matmuls */
    float *y, *yref;
} bufs;

static void bufs_free(bufs *b)
{
    free(b->w), free(b->x), free(b->s), free(b->wq), free(b->xf), free(b->wf), free(b->y), free(b->yref);
    memset(b, 0, sizeof *b);
}

static bool bufs_init(bufs *b, int64_t M, int64_t N, int64_t K, bool f32_ref)
{
    memset(b, 0, sizeof *b);
    b->M = M, b->N = N, b->K = K;
    b->w = malloc((size_t)(N * K) * 2), b->x = malloc((size_t)(M * K) * 2), b->s = malloc((size_t)K * 2);
    b->wq = malloc((size_t)(N * K) * 2);
    b->y = malloc((size_t)(M * N) * 4), b->yref = malloc((size_t)(M * N) * 4);
    if (f32_ref)
        b->xf = malloc((size_t)(M * K) * 4), b->wf = malloc((size_t)(N * K) * 4);
    if (!b->w || !b->x || !b->s || !b->wq || !b->y || !b->yref || (f32_ref && (!b->xf || !b->wf))) {
        bufs_free(b);
        qv_fail(QV_ERR_NOMEM, "bench fqgemm: out of memory for M=%lld N=%lld K=%lld", (long long)M, (long long)N,
                (long long)K);
        return false;
    }
    for (int64_t i = 0; i < N * K; i++)
        b->w[i] = qv_f32_to_bf16(rnd_normal() * 0.02f);
    for (int64_t i = 0; i < M * K; i++)
        b->x[i] = qv_f32_to_bf16(rnd_normal());
    for (int64_t i = 0; i < K; i++)
        b->s[i] = qv_f32_to_bf16(expf(0.5f * rnd_normal()));
    if (f32_ref)
        qv_kernels()->bf16_to_f32(b->xf, b->x, (size_t)(M * K));
    return true;
}

/* oneDNN on the reference weight (wq = FQ(W) or W): best of reps. */
static qv_status time_onednn(bufs *b, bool fq, int reps, double *best)
{
    const qv_fq p = {3, true, 128, QV_FQ_DIV_CUDA};
    if (fq)
        qv_kernels()->fq_rows(b->wq, QV_BF16, b->w, QV_BF16, b->s, QV_FQ_SCALE_MULDIV, b->N, b->K, &p);
    else
        memcpy(b->wq, b->w, (size_t)(b->N * b->K) * 2);
    if (b->wf)
        qv_kernels()->bf16_to_f32(b->wf, b->wq, (size_t)(b->N * b->K));
    *best = INFINITY;
    for (int r = 0; r <= reps; r++) {
        double t0 = qv_now_s();
        qv_status st = b->wf ? qv_linear(QV_F32, b->M, b->N, b->K, b->xf, b->wf, NULL, b->yref)
                             : qv_linear(QV_BF16, b->M, b->N, b->K, b->x, b->wq, NULL, b->yref);
        if (st != QV_OK)
            return st;
        if (r > 0)
            *best = fmin(*best, qv_now_s() - t0);
    }
    return QV_OK;
}

static qv_status time_fqgemm(bufs *b, const qv_fqgemm_w *pw, bool fq, int reps, double *best)
{
    const qv_fqgemm_q q = {b->s, QV_FQ_SCALE_MULDIV, {3, true, 128, QV_FQ_DIV_CUDA}};
    *best = INFINITY;
    for (int r = 0; r <= reps; r++) {
        double t0 = qv_now_s();
        QV_TRY(qv_fqgemm(b->y, b->x, b->M, pw, fq ? &q : NULL, NULL));
        if (r > 0)
            *best = fmin(*best, qv_now_s() - t0);
    }
    return QV_OK;
}

int qv_bench_fqgemm(int argc, char **argv)
{
    int64_t rows = 0, reps = 3;
    const char *shape_list = NULL;
    bool quick = false, json = false, sweep = false;
    const qv_opt opts[] = {
        {"rows", 0, QV_OPT_INT, &rows, "M", "rows of x per call (default 8192; --quick 256)"},
        {"shapes", 0, QV_OPT_STR, &shape_list, "LIST", "comma list of wqkv,w1,w2,wo (default all; --quick wo)"},
        {"reps", 0, QV_OPT_INT, &reps, "R", "timed calls after the warm-up, best taken (default 3)"},
        {"sweep", 0, QV_OPT_FLAG, &sweep, NULL, "also time kc x panel size on w1 for the native kernel set"},
        {"quick", 0, QV_OPT_FLAG, &quick, NULL, "small: M = 256 on wo, one timed call"},
        {"json", 0, QV_OPT_FLAG, &json, NULL, "print one JSON object per line"},
        {0},
    };
    const qv_cli_cmd cmd = {"bench fqgemm", "[--rows M] [--shapes LIST] [--reps R] [--sweep] [--quick] [--json]",
                            "The packed BF16 GEMM with on-the-fly MBQ W3g128 fake quantization at InternVL2-8B's "
                            "linear shapes: TFLOPS per kernel set, vs oneDNN and vs the AMX register-only ceiling.",
                            opts, 0, 0};
    int npos, r = qv_cli_parse(&cmd, argc, argv, NULL, &npos);
    if (r >= 0)
        return r;
    if (rows == 0)
        rows = quick ? 256 : 8192;
    if (quick)
        reps = 1;
    if (rows < 1 || reps < 1)
        return qv_cli_usage_error("bench fqgemm", "--rows and --reps must be positive");
    if (!shape_list)
        shape_list = quick ? "wo" : "wqkv,w1,w2,wo";
    bool want[4] = {0};
    for (size_t i = 0; i < 4; i++) {
        const char *p = strstr(shape_list, shapes[i].name);
        size_t n = strlen(shapes[i].name);
        while (p && !((p == shape_list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')))
            p = strstr(p + 1, shapes[i].name);
        want[i] = p != NULL;
    }
    if (!want[0] && !want[1] && !want[2] && !want[3])
        return qv_cli_usage_error("bench fqgemm", "--shapes takes wqkv, w1, w2, wo");

    const int nt = omp_get_max_threads();
    const bool bf16_ref = qv_matmul_bf16_native();
    const qv_gemm_kernels *sets[3];
    int ns = 0;
    if (qv_gemm_kernels_get(QV_GEMM_AMX))
        sets[ns++] = qv_gemm_kernels_get(QV_GEMM_AMX);
    if (qv_gemm_kernels_get(QV_GEMM_AVX512BF16))
        sets[ns++] = qv_gemm_kernels_get(QV_GEMM_AVX512BF16);
    const bool native = ns > 0;
    if (!native) /* the fallback, timed only where it is what qv_fqgemm runs */
        sets[ns++] = &qv_fqgemm_generic;
    const double peak = qv_bench_amx_peak_tflops(nt, 0.5);
    const char *ref_name = bf16_ref ? "onednn-bf16" : "onednn-f32";

    if (!json) {
        printf("# qvlm bench fqgemm: isa %s, oneDNN %s, %d threads, M = %lld; op fq = MBQ W3g128 candidate "
               "fake-quantized on the fly, plain = no quantization; reference %s on the pre-quantized weight\n",
               qv_isa_name(), qv_matmul_isa_name(), nt, (long long)rows, ref_name);
        if (peak > 0)
            printf("# AMX register-only ceiling on %d threads: %.3f TFLOPS (bench amx-peak)\n", nt, peak);
        else
            printf("# AMX register-only ceiling: n/a (no AMX on this host)\n");
        if (!native)
            printf("# no AMX / AVX-512-BF16 on this host: only the generic path (active fake-quant table + oneDNN "
                   "F32) is timed; the emulated kernels run in the tests only\n");
    }
    /* the hardware against the emulations */
    for (int i = 0; i < ns && native; i++) {
        if (sets[i] == &qv_fqgemm_generic)
            continue;
        const bool amx = sets[i]->isa == QV_GEMM_AMX;
        int64_t same, total, ktotal;
        instr_check(amx, &same, &total);
        const int64_t ksame = kernel_check(sets[i], qv_gemm_kernels_get(amx ? QV_GEMM_EMU_AMX : QV_GEMM_EMU_AVX512BF16),
                                           &ktotal);
        if (json)
            printf("{\"bench\":\"fqgemm\",\"check\":\"%s\",\"instr_same\":%lld,\"instr_total\":%lld,"
                   "\"kernel_same\":%lld,"
                   "\"kernel_total\":%lld}\n",
                   sets[i]->name, (long long)same, (long long)total, (long long)ksame, (long long)ktotal);
        else
            printf("# hw check %s: %s vs its SDM emulation: %lld/%lld elements bit-identical; kernel vs emulated "
                   "kernel (fake-quantized 64x96x256): %lld/%lld\n",
                   sets[i]->name, amx ? "TDPBF16PS" : "VDPBF16PS", (long long)same, (long long)total, (long long)ksame,
                   (long long)ktotal);
    }
    if (!json)
        printf("%-5s %6s %6s %-12s %-6s %9s %8s %9s %8s %9s\n", "shape", "N", "K", "kernel", "op", "seconds", "TFLOPS",
               "vs_onednn", "vs_peak", "rel_err");
    for (size_t si = 0; si < 4; si++) {
        if (!want[si])
            continue;
        bufs b;
        if (!bufs_init(&b, rows, shapes[si].N, shapes[si].K, !bf16_ref))
            return qv_cli_fail();
        const double flop = 2.0 * (double)rows * (double)shapes[si].N * (double)shapes[si].K;
        for (int fq = 1; fq >= 0; fq--) {
            double tref;
            if (time_onednn(&b, fq, (int)reps, &tref) != QV_OK) {
                bufs_free(&b);
                return qv_cli_fail();
            }
            const double ref_tf = flop / tref / 1e12;
            for (int i = 0; i <= ns; i++) {
                const char *kname = i < ns ? sets[i]->name : ref_name;
                double t = tref, err = 0;
                if (i < ns) {
                    qv_fqgemm_w *pw;
                    if (qv_fqgemm_pack(sets[i], b.w, b.N, b.K, &pw) != QV_OK ||
                        time_fqgemm(&b, pw, fq, (int)reps, &t) != QV_OK) {
                        qv_fqgemm_free(pw);
                        bufs_free(&b);
                        return qv_cli_fail();
                    }
                    qv_fqgemm_free(pw);
                    err = max_rel(b.y, b.yref, (size_t)(b.M * b.N));
                }
                const double tf = flop / t / 1e12;
                if (json)
                    printf("{\"bench\":\"fqgemm\",\"shape\":\"%s\",\"M\":%lld,\"N\":%lld,\"K\":%lld,\"kernel\":\"%s\","
                           "\"op\":\"%s\",\"seconds\":%.6f,\"tflops\":%.4f,\"vs_onednn\":%.3f,\"vs_peak\":%.3f,"
                           "\"rel_err\":%.3g,\"threads\":%d}\n",
                           shapes[si].name, (long long)rows, (long long)b.N, (long long)b.K, kname, fq ? "fq" : "plain",
                           t, tf, tf / ref_tf, peak > 0 ? tf / peak : 0.0, err, nt);
                else {
                    char vp[16] = "-";
                    if (peak > 0)
                        snprintf(vp, sizeof vp, "%.3f", tf / peak);
                    printf("%-5s %6lld %6lld %-12s %-6s %9.4f %8.3f %9.2f %8s %9.2g\n", shapes[si].name,
                           (long long)b.N, (long long)b.K, kname, fq ? "fq" : "plain", t, tf, tf / ref_tf, vp, err);
                }
                fflush(stdout);
            }
        }
        bufs_free(&b);
    }
    if (sweep && native) {
        const qv_fqgemm_tune saved = qv_fqgemm_tune_get();
        const int64_t kcs[] = {256, 512, 1024, 2048, 0}, panels[] = {256, 512, 1024, 2048};
        bufs b;
        if (!bufs_init(&b, rows, shapes[1].N, shapes[1].K, false))
            return qv_cli_fail();
        const double flop = 2.0 * (double)rows * (double)b.N * (double)b.K;
        qv_fqgemm_w *pw;
        if (qv_fqgemm_pack(sets[0], b.w, b.N, b.K, &pw) != QV_OK) {
            bufs_free(&b);
            return qv_cli_fail();
        }
        for (size_t a = 0; a < QV_ARRAY_LEN(kcs); a++)
            for (size_t c = 0; c < QV_ARRAY_LEN(panels); c++) {
                qv_fqgemm_tune tu = {kcs[a], panels[c]};
                qv_fqgemm_tune_set(&tu);
                double t;
                if (time_fqgemm(&b, pw, true, (int)reps, &t) != QV_OK) {
                    qv_fqgemm_free(pw);
                    bufs_free(&b);
                    return qv_cli_fail();
                }
                const double tf = flop / t / 1e12;
                if (json)
                    printf("{\"bench\":\"fqgemm\",\"sweep\":\"%s\",\"kc\":%lld,\"panel_kib\":%lld,\"tflops\":%.4f,"
                           "\"vs_peak\":%.3f}\n",
                           sets[0]->name, (long long)kcs[a], (long long)panels[c], tf, peak > 0 ? tf / peak : 0.0);
                else
                    printf("sweep %s w1 fq: kc %5lld panel %5lld KiB: %8.3f TFLOPS, %.3f of the AMX peak\n",
                           sets[0]->name, (long long)kcs[a], (long long)panels[c], tf, peak > 0 ? tf / peak : 0.0);
                fflush(stdout);
            }
        qv_fqgemm_tune_set(&saved);
        qv_fqgemm_free(pw);
        bufs_free(&b);
    }
    return QV_EXIT_OK;
}
