/* bench_vit.c — `qvlm bench vit`: InternViT-300M forward throughput (tiles/s) at the real
 * dimensions of InternVL2/3's tower (hidden 1024, 24 layers, 16 heads, MLP 4096, 448×448 tiles,
 * patch 14 → 1025 tokens; MODELS.md §3.1) on random weights generated in memory, through the
 * same code the tower runs: patch rows + matmul, CLS / position add, and qv_vit_layer_forward
 * (src/vision/vit_block.c). bench/torch_vit.py is the PyTorch twin.
 *
 * One layer's random weights serve all layers (the FLOPs and the weight traffic per layer are
 * those of distinct layers; 24 F32 copies would need 1.2 GB). A warm-up pass over the chunk's
 * shapes creates the oneDNN primitives first. Timings: wall clock of the whole forward of every
 * chunk (and the process CPU time, telling a busy host from a slow kernel). FLOPs counted: 2·T·(4D² + 2DI) per layer for the linears + 4·T²·D for attention, and the
 * patch embedding (2·T·588·D), T = 1025 tokens per tile. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fp.h"
#include "bench.h"
#include "cli/cli.h"
#include "core/prof.h"
#include "nn/linear.h"
#include "nn/matmul.h"
#include "vision/vit_block.h"

enum { VIT_D = 1024, VIT_H = 16, VIT_I = 4096, VIT_S = 448, VIT_P = 14, VIT_LAYERS = 24 };

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float urand(void)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* n random values of scale s around `off`, stored as dt (F32 or BF16); NULL on OOM. */
static void *rand_buf(size_t n, float s, float off, qv_dtype dt)
{
    void *p = qv_aligned_alloc(64, n * qv_dtype_size(dt) + 64, "benchmark weights");
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        float v = off + s * urand();
        if (dt == QV_BF16)
            ((uint16_t *)p)[i] = qv_f32_to_bf16(v);
        else
            ((float *)p)[i] = v;
    }
    return p;
}

typedef struct vit_bench {
    qv_vit_dims dm;
    qv_vit_layer layer;
    void *patch_w;
    float *patch_b, *pos, *cls;
    void *bufs[32];
    int n_bufs;
} vit_bench;

static void *keep(vit_bench *b, void *p)
{
    if (p)
        b->bufs[b->n_bufs++] = p;
    return p;
}

static qv_status setup(vit_bench *b, qv_dtype dt)
{
    memset(b, 0, sizeof *b);
    qv_vit_dims *dm = &b->dm;
    dm->D = VIT_D, dm->H = VIT_H, dm->d = VIT_D / VIT_H, dm->I = VIT_I;
    dm->norm = QV_NORM_LAYER, dm->eps = 1e-6f, dm->act = QV_ACT_GELU, dm->dt = dt;
    for (int l = 0; l < QV_VIT_LIN_COUNT; l++) {
        if (l == QV_VIT_Q || l == QV_VIT_K || l == QV_VIT_V || l == QV_VIT_UP)
            continue;
        const int64_t o = qv_vit_lin_out(dm, (qv_vit_lin)l), in = qv_vit_lin_in(dm, (qv_vit_lin)l);
        if (!(b->layer.w[l] = keep(b, rand_buf((size_t)(o * in), 1.0f / sqrtf((float)in), 0, dt))) ||
            !(b->layer.b[l] = keep(b, rand_buf((size_t)o, 0.05f, 0, QV_F32))))
            return QV_ERR_NOMEM;
    }
    for (int v = 0; v < QV_VIT_VEC_COUNT; v++) {
        if (v == QV_VIT_QNORM || v == QV_VIT_KNORM)
            continue;
        const bool bias = v == QV_VIT_NORM1_B || v == QV_VIT_NORM2_B;
        if (!(b->layer.vec[v] = keep(b, rand_buf(VIT_D, 0.1f, bias ? 0.0f : 1.0f, QV_F32))))
            return QV_ERR_NOMEM;
    }
    const int64_t K = 3 * VIT_P * VIT_P, G = VIT_S / VIT_P;
    b->patch_w = keep(b, rand_buf((size_t)(VIT_D * K), 1.0f / sqrtf((float)K), 0, dt));
    b->patch_b = keep(b, rand_buf(VIT_D, 0.05f, 0, QV_F32));
    b->pos = keep(b, rand_buf((size_t)((1 + G * G) * VIT_D), 0.5f, 0, QV_F32));
    b->cls = keep(b, rand_buf(VIT_D, 0.5f, 0, QV_F32));
    return b->patch_w && b->patch_b && b->pos && b->cls ? QV_OK : QV_ERR_NOMEM;
}

static void teardown(vit_bench *b)
{
    for (int i = 0; i < b->n_bufs; i++)
        qv_free(b->bufs[i]);
}

/* The tower on n tiles: embeddings into x [n, T, D], then `layers` layers. */
static qv_status tower(const vit_bench *b, const float *px, int64_t n, int64_t layers, float *cols, float *pe, float *x)
{
    const int64_t G = VIT_S / VIT_P, np = G * G, T = np + 1, D = VIT_D, K = 3 * VIT_P * VIT_P;
    qv_vit_patchify(cols, px, n, VIT_S, VIT_S, VIT_P);
    QV_TRY(qv_linear_rows(b->dm.dt, n * np, D, K, cols, b->patch_w, b->patch_b, pe, 0));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n * T; r++) {
        const int64_t t = r / T, i = r % T;
        const float *src = i ? pe + (t * np + i - 1) * D : b->cls;
        for (int64_t c = 0; c < D; c++)
            x[r * D + c] = src[c] + b->pos[i * D + c];
    }
    const qv_vit_seq s = {n, T, NULL, NULL, NULL};
    for (int64_t l = 0; l < layers; l++)
        QV_TRY(qv_vit_layer_forward(&b->dm, &b->layer, &s, x));
    return QV_OK;
}

int qv_bench_vit(int argc, char **argv)
{
    int64_t tiles = 4, chunk = 0, layers = VIT_LAYERS;
    const char *dtype = "f32";
    bool json = false;
    const qv_opt opts[] = {
        {"tiles", 0, QV_OPT_INT, &tiles, "N", "tiles to run (default 4)"},
        {"chunk", 0, QV_OPT_INT, &chunk, "N", "tiles per tower call (default: all)"},
        {"dtype", 0, QV_OPT_STR, &dtype, "f32|bf16", "compute dtype (bf16 needs native BF16 matmuls)"},
        {"layers", 0, QV_OPT_INT, &layers, "N", "encoder layers (default 24)"},
        {"json", 0, QV_OPT_FLAG, &json, NULL, "one JSON object instead of the text line"},
        {0},
    };
    const qv_cli_cmd cmd = {"bench vit", "[--tiles N] [--chunk N] [--dtype f32|bf16] [--layers N] [--json]",
                            "InternViT-300M forward throughput at its real dimensions (hidden 1024, 24 layers, 16 "
                            "heads, MLP 4096, 448 px tiles, patch 14) on random in-memory weights.",
                            opts, 0, 0};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    qv_dtype dt = QV_F32;
    if (!strcmp(dtype, "bf16"))
        dt = QV_BF16;
    else if (strcmp(dtype, "f32") != 0)
        return qv_cli_usage_error("bench vit", "--dtype must be f32 or bf16");
    if (tiles < 1 || tiles > 4096 || layers < 1 || layers > 64 || chunk < 0)
        return qv_cli_usage_error("bench vit", "--tiles must be 1..4096, --layers 1..64, --chunk >= 0");
    if (dt == QV_BF16 && !qv_matmul_bf16_native()) {
        qv_fail(QV_ERR_UNSUPPORTED, "bench vit: BF16 needs native BF16 matmuls (AVX512-BF16 or AMX); oneDNN runs "
                "%s here", qv_matmul_isa_name());
        return qv_cli_fail();
    }
    if (!chunk || chunk > tiles)
        chunk = tiles;
    const int64_t G = VIT_S / VIT_P, np = G * G, T = np + 1, D = VIT_D, K = 3 * VIT_P * VIT_P;
    vit_bench b;
    float *px = NULL, *cols = NULL, *pe = NULL, *x = NULL;
    int rc = QV_EXIT_FAIL;
    if (setup(&b, dt) != QV_OK)
        goto done;
    px = rand_buf((size_t)(chunk * 3 * VIT_S * VIT_S), 2.0f, 0, QV_F32);
    cols = qv_aligned_alloc(64, (size_t)(chunk * np * K) * sizeof(float) + 64, "patch rows");
    pe = qv_aligned_alloc(64, (size_t)(chunk * np * D) * sizeof(float) + 64, "patch embeddings");
    x = qv_aligned_alloc(64, (size_t)(chunk * T * D) * sizeof(float) + 64, "hidden states");
    if (!px || !cols || !pe || !x)
        goto done;
    /* warm-up: every shape of the timed run once (primitive creation, page faults) */
    if (tower(&b, px, chunk, 1, cols, pe, x) != QV_OK || (tiles % chunk && tower(&b, px, tiles % chunk, 1, cols, pe, x)))
        goto done;
    const double t0 = qv_now_s();
    const clock_t c0 = clock();
    for (int64_t t = 0; t < tiles; t += chunk)
        if (tower(&b, px, QV_MIN(chunk, tiles - t), layers, cols, pe, x) != QV_OK)
            goto done;
    const double sec = qv_now_s() - t0, cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    const double flop_tile = (double)layers * (2.0 * T * (4.0 * D * D + 2.0 * D * VIT_I) + 4.0 * T * T * D) +
                             2.0 * np * K * D;
    const double tps = (double)tiles / sec, gflops = flop_tile * (double)tiles / sec / 1e9;
    float chk = 0; /* keeps the work observable */
    for (int64_t i = 0; i < T * D; i += 4097)
        chk += x[i];
    if (json)
        printf("{\"bench\": \"vit\", \"model\": \"internvit-300m\", \"dtype\": \"%s\", \"tiles\": %lld, \"chunk\": %lld, "
               "\"layers\": %lld, \"threads\": %d, \"seconds\": %.3f, \"cpu_seconds\": %.3f, \"tiles_per_s\": %.4f, \"gflops\": %.1f, \"onednn_isa\": \"%s\", "
               "\"checksum\": %.6g}\n",
               dtype, (long long)tiles, (long long)chunk, (long long)layers, omp_get_max_threads(), sec, cpu, tps, gflops,
               qv_matmul_isa_name(), chk);
    else
        printf("vit internvit-300m %s tiles=%lld chunk=%lld layers=%lld threads=%d: %.2f s (cpu %.2f s), %.3f tiles/s, "
               "%.1f GFLOP/s (oneDNN %s)\n",
               dtype, (long long)tiles, (long long)chunk, (long long)layers, omp_get_max_threads(), sec, cpu, tps, gflops,
               qv_matmul_isa_name());
    rc = QV_EXIT_OK;
done:
    if (rc != QV_EXIT_OK)
        qv_cli_fail();
    teardown(&b);
    qv_free(px);
    qv_free(cols);
    qv_free(pe);
    qv_free(x);
    return rc;
}
