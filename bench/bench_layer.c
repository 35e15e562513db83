/* bench_layer.c — `qvlm bench layer [--dtype f32|bf16] [--batch 8 --seq 512] [--iters N] [--json]`:
 * prefill throughput of one decoder layer (src/llm runner: RMSNorm, packed wqkv, RoPE, causal
 * GQA attention, wo, SiLU-gated MLP) at InternLM2-7B dimensions (hidden 4096, 32 heads, 8 KV
 * heads, MLP 14336) on random weights, and the same GEMMs alone through qv_matmul, so that
 * the layer's rate can be stated as a fraction of oneDNN's matmul rate on this host.
 * bench/torch_layer.py runs the same layer in PyTorch for the ratio (bench/README.md). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../simd/fp.h"
#include "bench.h"
#include "cli/cli.h"
#include "core/prof.h"
#include "llm/llm.h"
#include "nn/matmul.h"

/* Uniform(−a, a) values (xorshift per 64k block, so any thread count gives the same data). */
static void fill(void *dst, qv_dtype dt, int64_t n, float a, uint64_t seed)
{
    const int64_t blk = 65536;
#pragma omp parallel for schedule(static)
    for (int64_t b0 = 0; b0 < n; b0 += blk) {
        uint64_t s = seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(b0 / blk + 1));
        for (int64_t i = b0; i < QV_MIN(n, b0 + blk); i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            float v = a * ((float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f);
            if (dt == QV_BF16)
                ((uint16_t *)dst)[i] = qv_f32_to_bf16(v);
            else
                ((float *)dst)[i] = v;
        }
    }
}

typedef struct gemm_shape {
    const char *name;
    int64_t N, K;
} gemm_shape;

int qv_bench_layer(int argc, char **argv)
{
    const char *dtype = "f32";
    int64_t batch = 8, seq = 512, iters = 3, hidden = 4096, heads = 32, kv = 8, mlp = 14336;
    bool json = false;
    const qv_opt opts[] = {
        {"dtype", 0, QV_OPT_STR, &dtype, "f32|bf16", "compute dtype (bf16 needs native BF16 matmuls)"},
        {"batch", 0, QV_OPT_INT, &batch, "N", "sequences (default 8)"},
        {"seq", 0, QV_OPT_INT, &seq, "L", "tokens per sequence (default 512)"},
        {"iters", 0, QV_OPT_INT, &iters, "N", "timed runs after one warm-up; the best is reported (default 3)"},
        {"hidden", 0, QV_OPT_INT, &hidden, "C", "hidden size (default 4096)"},
        {"heads", 0, QV_OPT_INT, &heads, "H", "attention heads (default 32)"},
        {"kv-heads", 0, QV_OPT_INT, &kv, "KV", "key/value heads (default 8)"},
        {"mlp", 0, QV_OPT_INT, &mlp, "I", "MLP width (default 14336)"},
        {"json", 0, QV_OPT_FLAG, &json, NULL, "one JSON object on stdout"},
        {0},
    };
    const qv_cli_cmd cmd = {"bench layer", "[--dtype f32|bf16] [--batch N --seq L] [--json]",
                            "Prefill tokens/s of one InternLM2-7B-sized decoder layer on random weights, and the "
                            "fraction of oneDNN's matmul rate (the same GEMMs alone) that it sustains.",
                            opts, 0, 0};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    qv_dtype dt = !strcmp(dtype, "bf16") ? QV_BF16 : QV_F32;
    if (strcmp(dtype, "bf16") && strcmp(dtype, "f32"))
        return qv_cli_usage_error("bench layer", "--dtype must be f32 or bf16");
    if (batch < 1 || seq < 1 || iters < 1 || hidden < 2 || heads < 1 || kv < 1 || heads % kv || hidden % heads ||
        (hidden / heads) % 2 || mlp < 1)
        return qv_cli_usage_error("bench layer", "inconsistent dimensions");
    qv_llm_config cfg = {.kind = QV_DECODER_INTERNLM2, .hidden = hidden, .n_layers = 1, .n_heads = heads,
                         .n_kv_heads = kv, .head_dim = hidden / heads, .intermediate = mlp, .vocab = 1,
                         .max_positions = QV_MAX(seq, (int64_t)32768), .rms_eps = 1e-5, .rope_theta = 1e6,
                         .rope_factor = 1.0};
    qv_llm *m = NULL;
    if (qv_llm_synthetic(&cfg, dt, &m) != QV_OK)
        return qv_cli_fail();
    const int64_t T = batch * seq, C = hidden, d = hidden / heads;
    const gemm_shape shapes[] = {
        {"wqkv", (heads + 2 * kv) * d, C}, {"wo", C, heads * d}, {"w1", mlp, C}, {"w3", mlp, C}, {"w2", C, mlp}};
    const qv_llm_lin lins[] = {QV_LIN_QKV, QV_LIN_O, QV_LIN_GATE, QV_LIN_UP, QV_LIN_DOWN};
    const size_t es = qv_dtype_size(dt);
    void *w[5] = {0};
    float *x = qv_aligned_alloc(64, (size_t)(T * C) * 4, "bench input");
    float *y = qv_aligned_alloc(64, (size_t)(T * C) * 4, "bench output");
    float *norm = qv_malloc((size_t)C * 4, "bench norms");
    int rc = QV_EXIT_FAIL;
    double gemm_flops = 0;
    for (int i = 0; i < 5; i++) {
        w[i] = qv_aligned_alloc(64, (size_t)(shapes[i].N * shapes[i].K) * es, "bench weights");
        if (!w[i]) {
            rc = qv_cli_fail();
            goto done;
        }
        fill(w[i], dt, shapes[i].N * shapes[i].K, 1.0f / sqrtf((float)shapes[i].K), 1000 + (uint64_t)i);
        gemm_flops += 2.0 * (double)T * (double)shapes[i].N * (double)shapes[i].K;
    }
    if (!x || !y || !norm) {
        rc = qv_cli_fail();
        goto done;
    }
    fill(x, QV_F32, T * C, 1.0f, 7);
    for (int64_t c = 0; c < C; c++)
        norm[c] = 1.0f;
    qv_llm_weights lw = {.dt = dt, .norm = {norm, norm}};
    for (int i = 0; i < 5; i++)
        lw.w[lins[i]] = w[i];
    qv_llm_ctx ctx;
    if (qv_llm_ctx_init(m, &ctx, batch, seq, NULL, NULL, NULL) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    /* The layer and the same GEMMs alone (on a [T, K] input of the compute dtype), alternated so
     * that both see the same conditions on a shared host; the best run of each is kept and run 0
     * (which fills oneDNN's primitive cache) is not timed. */
    double best = INFINITY, gemm_best[5], gemm_total = 0;
    int64_t kmax = 0, nmax = 0;
    for (int i = 0; i < 5; i++) {
        gemm_best[i] = INFINITY;
        kmax = QV_MAX(kmax, shapes[i].K), nmax = QV_MAX(nmax, shapes[i].N);
    }
    void *ga = qv_aligned_alloc(64, (size_t)(T * kmax) * es, "bench GEMM input");
    float *gc = qv_aligned_alloc(64, (size_t)(T * nmax) * 4, "bench GEMM output");
    if (!ga || !gc) {
        qv_free(ga), qv_free(gc), qv_llm_ctx_free(&ctx);
        rc = qv_cli_fail();
        goto done;
    }
    fill(ga, dt, T * kmax, 1.0f, 11);
    for (int64_t it = 0; it <= iters; it++) {
        double t0 = qv_now_s();
        qv_status st = qv_llm_layer_forward(m, &lw, &ctx, x, y, QV_F32, NULL);
        double t = qv_now_s() - t0, tg = 0;
        for (int i = 0; i < 5 && st == QV_OK; i++) {
            double g0 = qv_now_s();
            st = qv_matmul(dt, T, shapes[i].N, shapes[i].K, ga, shapes[i].K, w[i], shapes[i].K, NULL, gc, shapes[i].N,
                           QV_MM_B_NK);
            double g = qv_now_s() - g0;
            tg += g;
            if (it > 0 && g < gemm_best[i])
                gemm_best[i] = g;
        }
        if (st != QV_OK) {
            qv_free(ga), qv_free(gc), qv_llm_ctx_free(&ctx);
            rc = qv_cli_fail();
            goto done;
        }
        if (it > 0 && t < best)
            best = t;
        if (!json && !qv_cli.quiet)
            fprintf(stderr, "run %lld: layer %.3f s, GEMMs alone %.3f s\n", (long long)it, t, tg);
    }
    for (int i = 0; i < 5; i++)
        gemm_total += gemm_best[i];
    qv_free(ga);
    qv_free(gc);
    qv_llm_ctx_free(&ctx);
    {
        const double attn_flops = 4.0 * (double)batch * (double)heads * (double)d * (double)seq * (double)(seq + 1) / 2;
        const double tok_s = (double)T / best, layer_gflops = (gemm_flops + attn_flops) / best * 1e-9;
        const double gemm_gflops = gemm_flops / gemm_total * 1e-9;
        const double frac = (gemm_flops / best) / (gemm_flops / gemm_total);
        if (json) {
            printf("{\"bench\":\"layer\",\"dtype\":\"%s\",\"batch\":%lld,\"seq\":%lld,\"tokens\":%lld,\"hidden\":%lld,"
                   "\"heads\":%lld,\"kv_heads\":%lld,\"mlp\":%lld,\"threads\":%d,\"onednn_isa\":\"%s\","
                   "\"layer_seconds\":%.6f,\"tokens_per_s\":%.1f,\"layer_gflops\":%.2f,\"gemm_seconds\":%.6f,"
                   "\"gemm_gflops\":%.2f,\"fraction_of_matmul_rate\":%.4f,\"gemm_seconds_each\":{",
                   dtype, (long long)batch, (long long)seq, (long long)T, (long long)hidden, (long long)heads,
                   (long long)kv, (long long)mlp, omp_get_max_threads(), qv_matmul_isa_name(), best, tok_s,
                   layer_gflops, gemm_total, gemm_gflops, frac);
            for (int i = 0; i < 5; i++)
                printf("%s\"%s\":%.6f", i ? "," : "", shapes[i].name, gemm_best[i]);
            printf("}}\n");
        } else {
            printf("layer %s  batch %lld x seq %lld = %lld tokens, hidden %lld, heads %lld/%lld, mlp %lld, %d threads, "
                   "oneDNN %s\n",
                   dtype, (long long)batch, (long long)seq, (long long)T, (long long)hidden, (long long)heads,
                   (long long)kv, (long long)mlp, omp_get_max_threads(), qv_matmul_isa_name());
            printf("  layer      %8.3f s  %10.1f tokens/s  %7.1f GFLOP/s\n", best, tok_s, layer_gflops);
            printf("  GEMMs alone%8.3f s  %10.1f tokens/s  %7.1f GFLOP/s  (", gemm_total, (double)T / gemm_total,
                   gemm_gflops);
            for (int i = 0; i < 5; i++)
                printf("%s%s %.3f s", i ? ", " : "", shapes[i].name, gemm_best[i]);
            printf(")\n  layer sustains %.1f %% of the GEMMs' matmul rate\n", 100.0 * frac);
        }
    }
    rc = QV_EXIT_OK;
done:
    for (int i = 0; i < 5; i++)
        qv_free(w[i]);
    qv_free(x);
    qv_free(y);
    qv_free(norm);
    qv_llm_close(m);
    return rc;
}
