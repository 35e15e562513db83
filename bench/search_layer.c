/* search_layer.c — `qvlm bench search-layer`: one decoder layer's MBQ W3g128 scale search (the
 * reference's weight-only MBQ: reweighted MAE loss over caption and vision tokens, 20 grid points
 * per group; ALGORITHMS.md §3.2, §5.5) through the real code path — qv_search_group of
 * src/quant/search.c, which runs the packed AMX / AVX-512-BF16 GEMM in BF16 compute on hosts that
 * have it (QVLM_FQGEMM=0: oneDNN) — on a synthetic layer held in memory: InternLM2 layout
 * (InternVL2-8B: hidden 4096, 32 heads of 128, 8 KV heads, MLP 14336; wqkv, wo, w1/w3/w2),
 * random weights N(0, 1/fan_in) rounded to BF16, inputs N(0, 1) rounded to BF16, samples x tokens
 * rows (128 x 400 by default); each sample's first 64 % are vision tokens (256 of 400), then 4 %
 * prompt, then the caption (the reweighted loss's two masks). --chunk samples per inspect call
 * (default 1, as `qvlm quantize` runs it; the packed path then prepares each candidate once per
 * grid point, while calls of >= 8192 rows fake-quantize on the fly, see src/quant/search.c).
 *
 * Reported per group (attention: wqkv inspected through RoPE, GQA attention and wo; MLP: w1, w3
 * inspected through w2; down: w2) and for the layer: seconds, TFLOP (the inspect module's
 * matmuls, attention counted as two dense L x L x d products per head as PyTorch's eager attention
 * computes them, x (grid + 1) forwards: the candidates and the reference output), sustained
 * TFLOPS and its fraction of the AMX register-only ceiling measured in the same run.
 * --points P runs P grid points per group instead of all and extrapolates each group's time by
 * (grid + 1) / (P + 1) (the reference forward costs about one grid point); the output says so.
 * bench/torch_search_layer.py is the PyTorch twin. */
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
#include "quant/acts.h"
#include "quant/quant.h"

typedef struct dims {
    const char *name;
    int64_t C, H, KV, d, I;
} dims;

static const dims dim_table[] = {
    {"internvl2-8b", 4096, 32, 8, 128, 14336},
    {"tiny", 128, 4, 2, 32, 256},
};

/* n values ~ N(0, sd²) rounded to BF16 (a cheap bell curve: sum of 4 uniforms), stored as BF16
 * (bf) and/or as F32 (f); chunks split between threads, each with its own stream. */
static void fill(uint16_t *bf, float *f, int64_t n, float sd, uint64_t seed)
{
    const int64_t chunk = 1 << 16;
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
        uint64_t x = seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(c0 / chunk + 1));
        for (int64_t i = c0; i < n && i < c0 + chunk; i++) {
            float s = 0;
            for (int k = 0; k < 4; k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                s += (float)(x >> 40) / 16777216.0f;
            }
            float v = qv_round_bf16((s - 2.0f) * 1.7320508f * sd);
            if (bf)
                bf[i] = qv_f32_to_bf16(v);
            if (f)
                f[i] = v;
        }
    }
}

typedef struct group_result {
    const char *name;
    double seconds, seconds_full, tflop;
    int best;
} group_result;

int qv_bench_search_layer(int argc, char **argv)
{
    int64_t samples = 128, tokens = 400, grid = 20, points = 0, chunk = 1;
    const char *dname = "internvl2-8b", *groups_arg = "attn,mlp,down", *dtype = NULL;
    bool json = false;
    const qv_opt opts[] = {
        {"samples", 0, QV_OPT_INT, &samples, "N", "calibration samples (default 128)"},
        {"tokens", 0, QV_OPT_INT, &tokens, "L", "tokens per sample (default 400)"},
        {"dims", 0, QV_OPT_STR, &dname, "NAME", "internvl2-8b (default) or tiny (hidden 128, for smoke tests)"},
        {"groups", 0, QV_OPT_STR, &groups_arg, "LIST", "comma list of attn, mlp, down (default all three)"},
        {"grid", 0, QV_OPT_INT, &grid, "N", "grid points of the search (default 20)"},
        {"points", 0, QV_OPT_INT, &points, "P", "run only P grid points per group and extrapolate to --grid"},
        {"chunk", 0, QV_OPT_INT, &chunk, "S", "samples per inspect call (default 1, as qvlm quantize; 0 = all)"},
        {"dtype", 0, QV_OPT_STR, &dtype, "T", "compute dtype bf16 or f32 (default bf16 where native, else f32)"},
        {"json", 0, QV_OPT_FLAG, &json, NULL, "print one JSON object"},
        {0},
    };
    const qv_cli_cmd cmd = {"bench search-layer",
                            "[--samples N] [--tokens L] [--dims NAME] [--groups LIST] [--grid N] [--points P] "
                            "[--chunk S] [--dtype T] [--json]",
                            "One decoder layer's MBQ W3g128 scale search (qv_search_group) on a synthetic InternLM2 "
                            "layer at InternVL2-8B dimensions: seconds per group and per layer, TFLOPS, fraction "
                            "of the AMX ceiling.",
                            opts, 0, 0};
    int npos, r = qv_cli_parse(&cmd, argc, argv, NULL, &npos);
    if (r >= 0)
        return r;
    const dims *D = NULL;
    for (size_t i = 0; i < QV_ARRAY_LEN(dim_table); i++)
        if (!strcmp(dname, dim_table[i].name))
            D = &dim_table[i];
    if (!D)
        return qv_cli_usage_error("bench search-layer", "--dims takes internvl2-8b or tiny, not '%s'", dname);
    if (samples < 1 || tokens < 4 || grid < 1 || grid > QV_MAX_GRID || points < 0 || chunk < 0)
        return qv_cli_usage_error("bench search-layer", "need --samples >= 1, --tokens >= 4, 1 <= --grid <= %d, "
                                  "--points >= 0, --chunk >= 0", QV_MAX_GRID);
    if (chunk == 0 || chunk > samples)
        chunk = samples;
    if (points == 0 || points > grid)
        points = grid;
    bool want[3] = {strstr(groups_arg, "attn") != NULL, strstr(groups_arg, "mlp") != NULL,
                    strstr(groups_arg, "down") != NULL};
    if (!want[0] && !want[1] && !want[2])
        return qv_cli_usage_error("bench search-layer", "--groups takes attn, mlp, down");
    qv_dtype cdt = qv_matmul_bf16_native() ? QV_BF16 : QV_F32;
    if (dtype && !strcmp(dtype, "f32"))
        cdt = QV_F32;
    else if (dtype && !strcmp(dtype, "bf16"))
        cdt = QV_BF16;
    else if (dtype)
        return qv_cli_usage_error("bench search-layer", "--dtype takes bf16 or f32");
    if (cdt == QV_BF16 && !qv_matmul_bf16_native()) {
        qv_fail(QV_ERR_UNSUPPORTED, "bench search-layer: BF16 compute needs native BF16 matmuls (AVX512-BF16 or "
                "AMX); oneDNN runs %s here, use --dtype f32", qv_matmul_isa_name());
        return qv_cli_fail();
    }

    /* the model handle, in memory: what qv_search_group and the runner read */
    qv_llm *m = calloc(1, sizeof *m);
    if (!m) {
        qv_fail(QV_ERR_NOMEM, "bench search-layer: out of memory");
        return qv_cli_fail();
    }
    qv_llm_config *c = &m->cfg.llm;
    c->kind = QV_DECODER_INTERNLM2;
    snprintf(c->architecture, sizeof c->architecture, "InternLM2ForCausalLM");
    c->hidden = D->C, c->n_layers = 1, c->n_heads = D->H, c->n_kv_heads = D->KV, c->head_dim = D->d;
    c->intermediate = D->I, c->vocab = 0, c->max_positions = 32768, c->rms_eps = 1e-5, c->rope_theta = 1e6;
    c->rope_kind = QV_ROPE_DEFAULT;
    m->c = c;
    m->dt = cdt;
    m->C = D->C, m->H = D->H, m->KV = D->KV, m->d = D->d, m->I = D->I;
    m->eps = 1e-5f;
    m->attn_scale = (float)(1.0 / sqrt((double)D->d));
    m->rope = (qv_rope_params){.dim = D->d, .theta = 1e6, .max_positions = 32768};
    m->model_root = "language_model.model.";
    m->head_root = "language_model.";

    const int64_t T = samples * tokens, C = D->C, I = D->I, QKV = (D->H + 2 * D->KV) * D->d, HD = D->H * D->d;
    const qv_llm_lin lins[] = {QV_LIN_QKV, QV_LIN_O, QV_LIN_GATE, QV_LIN_UP, QV_LIN_DOWN};
    const int64_t lout[] = {QKV, C, I, I, C}, lin_[] = {C, HD, C, C, I};
    qv_llm_weights w = {.dt = cdt};
    void *wbuf[5] = {0};
    uint16_t *wbf[5] = {0}; /* the weights in T = BF16 (fc_w); the same buffers in BF16 compute */
    float *norm = malloc((size_t)C * sizeof *norm);
    qv_acts x = {0}, xd = {0}; /* the groups' inputs in T = BF16, as the driver keeps them */
    uint8_t *cap = malloc((size_t)T), *vis = malloc((size_t)T);
    float *scale = malloc((size_t)I * sizeof *scale), *act = malloc((size_t)I * sizeof *act);
    bool ok = norm && cap && vis && scale && act && qv_acts_alloc(&x, QV_BF16, T, C, "inputs") == QV_OK &&
              (!want[2] || qv_acts_alloc(&xd, QV_BF16, T, I, "inputs") == QV_OK);
    for (int i = 0; i < 5 && ok; i++) {
        const int64_t n = lout[i] * lin_[i];
        wbf[i] = malloc((size_t)n * 2);
        wbuf[i] = cdt == QV_BF16 ? (void *)wbf[i] : malloc((size_t)n * 4);
        ok = wbf[i] && wbuf[i];
        if (ok) {
            fill(wbf[i], cdt == QV_F32 ? wbuf[i] : NULL, n, (float)(1.0 / sqrt((double)lin_[i])), 0x51 + (uint64_t)i);
            w.w[lins[i]] = wbuf[i];
        }
    }
    qv_llm_ctx ctx = {0};
    qv_status st = ok ? qv_llm_ctx_init(m, &ctx, samples, tokens, NULL, NULL, NULL)
                      : qv_fail(QV_ERR_NOMEM, "bench search-layer: out of memory for %lld tokens", (long long)T);
    if (st == QV_OK) {
        for (int64_t j = 0; j < C; j++)
            norm[j] = 1.0f;
        w.norm[QV_LLM_NORM_ATTN] = w.norm[QV_LLM_NORM_MLP] = norm;
        fill(x.p, NULL, T * C, 1.0f, 0x1234);
        if (xd.p)
            fill(xd.p, NULL, T * I, 0.25f, 0x5678);
        for (int64_t t = 0; t < T; t++) {
            const int64_t p = t % tokens;
            vis[t] = p * 25 < tokens * 16;
            cap[t] = p * 25 >= tokens * 17;
        }
    }
    const double peak = st == QV_OK ? qv_bench_amx_peak_tflops(omp_get_max_threads(), 0.5) : 0;
    qv_quant_opts o = {.method = QV_METHOD_MBQ, .w_bit = 3, .a_bit = 16, .w_group = 128, .zero_point = true,
                       .division = QV_FQ_DIV_CUDA, .n_grid = (int)points, .loss_mode = QV_LOSS_MODE_MAE,
                       .reweight = true, .T = QV_BF16};
    const char *env = getenv("QVLM_FQGEMM"), *fly_env = getenv("QVLM_FQGEMM_FLY_ROWS");
    const bool packed = cdt == QV_BF16 && qv_fqgemm_native() && env && *env && strcmp(env, "0");
    const bool fly = chunk * tokens >= (fly_env && *fly_env ? strtoll(fly_env, NULL, 10) : 8192);
    char path[64];
    const char *engine = packed ? qv_gemm_kernels_active()->name : cdt == QV_BF16 ? "onednn-bf16" : "onednn-f32";
    snprintf(path, sizeof path, "%s%s", engine,
             packed ? (fly ? " (fake-quantized on the fly)" : " (candidate prepared per grid point)") : "");
    if (st == QV_OK && !json)
        printf("# qvlm bench search-layer: %s dims (hidden %lld, heads %lld/%lld, MLP %lld), %lld samples x %lld "
               "tokens "
               "= %lld rows in chunks of %lld samples, MBQ W3g128 reweighted MAE, %lld grid points%s, compute %s, "
               "linears on %s, %d threads\n",
               D->name, (long long)C, (long long)D->H, (long long)D->KV, (long long)I, (long long)samples,
               (long long)tokens, (long long)T, (long long)chunk, (long long)grid,
               points < grid ? " (extrapolated from fewer, see below)" : "", cdt == QV_BF16 ? "bf16" : "f32", path,
               omp_get_max_threads());

    qv_scale_group groups[4];
    const int ng = qv_scale_groups(m, groups);
    group_result res[3];
    int nres = 0;
    const double L = (double)tokens, Td = (double)T;
    for (int gi = 0; gi < ng && st == QV_OK; gi++) {
        const qv_scale_group *g = &groups[gi];
        const int which = g->inspect == QV_INSPECT_ATTN ? 0 : g->inspect == QV_INSPECT_MLP ? 1 : 2;
        if (!want[which])
            continue;
        static const char *names[] = {"attn", "mlp", "down"};
        double fl;
        if (which == 0)
            fl = 2 * Td * (double)C * (double)QKV + 2 * Td * (double)HD * (double)C +
                 4.0 * (double)samples * L * L * (double)HD;
        else if (which == 1)
            fl = 3 * 2 * Td * (double)C * (double)I;
        else
            fl = 2 * Td * (double)I * (double)C;
        qv_group_search s = {.m = m, .g = g, .w = &w, .ctx = &ctx, .chunk = chunk, .x = which == 2 ? &xd : &x,
                             .cap_mask = cap, .vis_mask = vis, .ratio = 1.0, .o = &o, .scale = scale,
                             .act_scale = act};
        for (int f = 0; f < g->n_fcs; f++)
            for (int i = 0; i < 5; i++)
                if (lins[i] == g->fcs[f])
                    s.fc_w[f] = wbf[i];
        const double t0 = qv_now_s();
        qv_prof_reset();
        st = qv_search_group(&s);
        const double dt = qv_now_s() - t0;
        group_result *gr = &res[nres++];
        *gr = (group_result){names[which], dt, dt * (double)(grid + 1) / (double)(points + 1),
                             fl * (double)(grid + 1) / 1e12, s.best};
        if (st == QV_OK && !json) {
            if (points < grid)
                printf("group %-4s: %8.2f s for %lld grid points + reference, extrapolated %8.2f s for %lld; %.4g "
                       "TFLOP, %.4g TFLOPS\n",
                       gr->name, dt, (long long)points, gr->seconds_full, (long long)grid, gr->tflop,
                       gr->tflop / gr->seconds_full);
            else
                printf("group %-4s: %8.2f s for %lld grid points + reference; %.4g TFLOP, %.4g TFLOPS\n", gr->name, dt,
                       (long long)grid, gr->tflop, gr->tflop / gr->seconds_full);
            printf("  %s parts: inspect %.2f s (GEMM calls %.2f s, rest %.2f s), candidates %.2f s, output "
                   "conversion + loss %.2f s, other %.2f s\n",
                   gr->name, qv_prof_get(QV_PROF_INSPECT), qv_prof_get(QV_PROF_GEMM),
                   qv_prof_get(QV_PROF_INSPECT) - qv_prof_get(QV_PROF_GEMM), qv_prof_get(QV_PROF_CAND),
                   qv_prof_get(QV_PROF_LOSS),
                   dt - qv_prof_get(QV_PROF_INSPECT) - qv_prof_get(QV_PROF_CAND) - qv_prof_get(QV_PROF_LOSS));
            fflush(stdout);
        }
    }
    if (st == QV_OK) {
        double secs = 0, tflop = 0;
        for (int i = 0; i < nres; i++)
            secs += res[i].seconds_full, tflop += res[i].tflop;
        const double tfs = tflop / secs;
        if (json) {
            printf("{\"bench\":\"search-layer\",\"dims\":\"%s\",\"samples\":%lld,\"tokens\":%lld,\"grid\":%lld,"
                   "\"points\":%lld,\"chunk\":%lld,\"compute\":\"%s\",\"path\":\"%s\",\"threads\":%d,\"groups\":[",
                   D->name, (long long)samples, (long long)tokens, (long long)grid, (long long)points, (long long)chunk,
                   cdt == QV_BF16 ? "bf16" : "f32", path, omp_get_max_threads());
            for (int i = 0; i < nres; i++)
                printf("%s{\"name\":\"%s\",\"seconds_measured\":%.3f,\"seconds\":%.3f,\"tflop\":%.3f}", i ? "," : "",
                       res[i].name, res[i].seconds, res[i].seconds_full, res[i].tflop);
            printf("],\"seconds_per_layer\":%.3f,\"tflop\":%.3f,\"tflops\":%.4f,\"amx_peak_tflops\":%.4f,"
                   "\"fraction_of_peak\":%.4f,\"extrapolated\":%s}\n",
                   secs, tflop, tfs, peak, peak > 0 ? tfs / peak : 0.0, points < grid ? "true" : "false");
        } else {
            printf("layer: %.2f s per layer%s, %.4g TFLOP, %.4g TFLOPS sustained", secs,
                   points < grid ? " (extrapolated)" : "", tflop, tfs);
            if (peak > 0)
                printf(", %.1f %% of the AMX register-only ceiling (%.3f TFLOPS on %d threads)\n", 100 * tfs / peak,
                       peak, omp_get_max_threads());
            else
                printf(" (no AMX ceiling on this host)\n");
        }
    }
    qv_llm_ctx_free(&ctx);
    for (int i = 0; i < 5; i++) {
        if (wbuf[i] != wbf[i])
            free(wbuf[i]);
        free(wbf[i]);
    }
    qv_acts_free(&x);
    qv_acts_free(&xd);
    free(norm), free(cap), free(vis), free(scale), free(act);
    free(m);
    return st == QV_OK ? QV_EXIT_OK : qv_cli_fail();
}
