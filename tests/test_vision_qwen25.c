/* test_vision_qwen25.c — the Qwen2.5-VL vision tower (MODELS.md §1.10: RMSNorm, SiLU-gated MLP
 * with biases, window attention with its permutation, full attention in fullatt_block_indexes,
 * RMS ln_q in the merger) on a tiny synthetic checkpoint written here, against a plain
 * double-precision reference that follows transformers' Qwen2_5_VisionTransformer literally:
 * get_window_index with its padding and unique_consecutive, rows permuted by window_index,
 * attention over cu_seqlens ranges, the merger on the permuted rows, then argsort(window_index).
 * Tolerance rel ≤ 1e-5 (F32 against double). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "util/mmutil.h"
#include "util/testutil.h"
#include "vision/qwen2vl_vit.h"
#include "vision/vision.h"

enum { D = 32, H = 2, HD = 16, I = 40, PD = 24, C = 24, DEPTH = 3, NIMG = 3 };
static const int64_t k_grid[NIMG][3] = {{1, 6, 10}, {1, 4, 4}, {1, 2, 6}};

static const char *k_config =
    "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"hidden_size\": 24, \"num_hidden_layers\": 1,"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"intermediate_size\": 32, \"vocab_size\": 64,"
    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"rope_scaling\": {\"type\": \"mrope\","
    " \"mrope_section\": [2, 2, 2]}, \"image_token_id\": 60, \"vision_config\": {\"depth\": 3, \"hidden_size\": 32,"
    " \"intermediate_size\": 40, \"num_heads\": 2, \"out_hidden_size\": 24, \"patch_size\": 2,"
    " \"spatial_merge_size\": 2, \"temporal_patch_size\": 2, \"window_size\": 8, \"fullatt_block_indexes\": [1],"
    " \"hidden_act\": \"silu\", \"in_chans\": 3}}";

typedef struct tensor_spec {
    char name[96];
    int ndim;
    int64_t shape[5];
    float *data;
} tensor_spec;

static tensor_spec specs[64];
static int n_specs;
static uint64_t rng = 12345;

static float urand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *add(const char *name, int ndim, const int64_t *shape, float scale, float offset)
{
    tensor_spec *s = &specs[n_specs++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (s->shape[i] = shape[i]);
    s->data = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        s->data[i] = offset + scale * urand();
    return s->data;
}

static const float *get(const char *name)
{
    for (int i = 0; i < n_specs; i++)
        if (!strcmp(specs[i].name, name))
            return specs[i].data;
    cr_assert_fail("no tensor %s", name);
    return NULL;
}

static char *make_model(void)
{
    n_specs = 0;
    char nm[96];
    add("visual.patch_embed.proj.weight", 5, (int64_t[]){D, 3, 2, 2, 2}, 1.0f / sqrtf(PD), 0);
    for (int l = 0; l < DEPTH; l++) {
        struct {
            const char *s;
            int ndim;
            int64_t a, b;
            float scale, off;
        } t[] = {{"norm1.weight", 1, D, 0, 0.1f, 1}, {"norm2.weight", 1, D, 0, 0.1f, 1},
                 {"attn.qkv.weight", 2, 3 * D, D, 1.0f / sqrtf(D), 0}, {"attn.qkv.bias", 1, 3 * D, 0, 0.05f, 0},
                 {"attn.proj.weight", 2, D, D, 1.0f / sqrtf(D), 0}, {"attn.proj.bias", 1, D, 0, 0.05f, 0},
                 {"mlp.gate_proj.weight", 2, I, D, 1.0f / sqrtf(D), 0}, {"mlp.gate_proj.bias", 1, I, 0, 0.05f, 0},
                 {"mlp.up_proj.weight", 2, I, D, 1.0f / sqrtf(D), 0}, {"mlp.up_proj.bias", 1, I, 0, 0.05f, 0},
                 {"mlp.down_proj.weight", 2, D, I, 1.0f / sqrtf(I), 0}, {"mlp.down_proj.bias", 1, D, 0, 0.05f, 0}};
        for (size_t i = 0; i < QV_ARRAY_LEN(t); i++) {
            snprintf(nm, sizeof nm, "visual.blocks.%d.%s", l, t[i].s);
            add(nm, t[i].ndim, (int64_t[]){t[i].a, t[i].b}, t[i].scale, t[i].off);
        }
    }
    add("visual.merger.ln_q.weight", 1, (int64_t[]){D}, 0.1f, 1);
    add("visual.merger.mlp.0.weight", 2, (int64_t[]){4 * D, 4 * D}, 1.0f / sqrtf(4 * D), 0);
    add("visual.merger.mlp.0.bias", 1, (int64_t[]){4 * D}, 0.05f, 0);
    add("visual.merger.mlp.2.weight", 2, (int64_t[]){C, 4 * D}, 1.0f / sqrtf(4 * D), 0);
    add("visual.merger.mlp.2.bias", 1, (int64_t[]){C}, 0.05f, 0);
    char *dir = qt_tmpdir(), *p = qv_path_join(dir, "config.json");
    cr_assert_eq(qv_write_file_atomic(p, k_config, strlen(k_config)), QV_OK);
    qv_free(p);
    qv_st_item items[64];
    for (int i = 0; i < n_specs; i++) {
        items[i] = (qv_st_item){specs[i].name, QV_F32, specs[i].ndim, {0}, specs[i].data};
        memcpy(items[i].shape, specs[i].shape, sizeof specs[i].shape);
    }
    p = qv_path_join(dir, "model.safetensors");
    cr_assert_eq(qv_st_write_file(p, items, (size_t)n_specs, NULL, 0), QV_OK, "%s", qv_last_error());
    qv_free(p);
    return dir;
}

/* ---- the reference ------------------------------------------------------------------------- */

static void linear(double *y, const double *x, int64_t rows, int64_t in, int64_t out, const float *w, const float *b)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0;
            for (int64_t i = 0; i < in; i++)
                acc += x[r * in + i] * w[o * in + i];
            y[r * out + o] = acc;
        }
}

static void rms(double *y, const double *x, int64_t rows, int64_t n, const float *w)
{
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < n; i++)
            ss += x[r * n + i] * x[r * n + i];
        double s = 1.0 / sqrt(ss / (double)n + 1e-6);
        for (int64_t i = 0; i < n; i++)
            y[r * n + i] = w[i] * (x[r * n + i] * s);
    }
}

static void reference(const float *px, int64_t P, double *out)
{
    const int64_t nb = P / 4;
    double *x = calloc((size_t)(P * D), sizeof *x), *xp = calloc((size_t)(P * D), sizeof *xp);
    double *th = calloc((size_t)(P * 8), sizeof *th), *thp = calloc((size_t)(P * 8), sizeof *thp);
    double *pxd = malloc((size_t)(P * PD) * sizeof *pxd);
    for (int64_t i = 0; i < P * PD; i++)
        pxd[i] = px[i];
    linear(x, pxd, P, PD, D, get("visual.patch_embed.proj.weight"), NULL);
    /* rot_pos_emb: hpos / wpos reshaped (h/2, 2, w/2, 2).permute(0, 2, 1, 3) */
    int64_t r = 0;
    for (int im = 0; im < NIMG; im++)
        for (int64_t bh = 0; bh < k_grid[im][1] / 2; bh++)
            for (int64_t bw = 0; bw < k_grid[im][2] / 2; bw++)
                for (int mh = 0; mh < 2; mh++)
                    for (int mw = 0; mw < 2; mw++, r++)
                        for (int j = 0; j < 4; j++) {
                            double inv = 1.0 / pow(10000.0, 2.0 * j / 8.0);
                            th[r * 8 + j] = (double)(bh * 2 + mh) * inv;
                            th[r * 8 + 4 + j] = (double)(bw * 2 + mw) * inv;
                        }
    /* get_window_index */
    int64_t wi[64], cu[128], ncu = 1, nwi = 0, off = 0;
    cu[0] = 0;
    for (int im = 0; im < NIMG; im++) {
        const int64_t lh = k_grid[im][1] / 2, lw = k_grid[im][2] / 2, w = 2;
        const int64_t ph = w - lh % w, pw = w - lw % w, nwh = (lh + ph) / w, nww = (lw + pw) / w;
        for (int64_t wy = 0; wy < nwh; wy++)
            for (int64_t wx = 0; wx < nww; wx++) {
                int64_t cnt = 0;
                for (int64_t iy = 0; iy < w; iy++)
                    for (int64_t ix = 0; ix < w; ix++) {
                        int64_t y = wy * w + iy, xx = wx * w + ix;
                        if (y < lh && xx < lw) {
                            wi[nwi++] = off + y * lw + xx;
                            cnt++;
                        }
                    }
                cu[ncu] = cu[ncu - 1] + cnt * 4;
                ncu++;
            }
        off += lh * lw;
    }
    int64_t cuw[128], ncw = 0; /* unique_consecutive */
    for (int64_t i = 0; i < ncu; i++)
        if (!ncw || cuw[ncw - 1] != cu[i])
            cuw[ncw++] = cu[i];
    cr_assert_eq(nwi, nb);
    for (int64_t k = 0; k < nb; k++) {
        memcpy(xp + k * 4 * D, x + wi[k] * 4 * D, 4 * D * sizeof *xp);
        memcpy(thp + k * 4 * 8, th + wi[k] * 4 * 8, 4 * 8 * sizeof *thp);
    }
    const int64_t cuf[NIMG + 1] = {0, 60, 76, 88};
    double *h = malloc((size_t)(P * 3 * D) * sizeof *h), *a = malloc((size_t)(P * D) * sizeof *a);
    double *o = malloc((size_t)(P * D) * sizeof *o), *g = malloc((size_t)(P * I) * sizeof *g);
    double *u = malloc((size_t)(P * I) * sizeof *u), *n1 = malloc((size_t)(P * D) * sizeof *n1);
    char nm[96];
    for (int l = 0; l < DEPTH; l++) {
        const int64_t *cs = l == 1 ? cuf : cuw, ncs = l == 1 ? NIMG + 1 : ncw;
#define W(s) (snprintf(nm, sizeof nm, "visual.blocks.%d.%s", l, s), get(nm))
        rms(n1, xp, P, D, W("norm1.weight"));
        linear(h, n1, P, D, 3 * D, W("attn.qkv.weight"), W("attn.qkv.bias"));
        for (int64_t t = 0; t < P; t++) /* rope on q and k: dims i and i + 8 of every head */
            for (int qk = 0; qk < 2; qk++)
                for (int hh = 0; hh < H; hh++) {
                    double *v = h + t * 3 * D + qk * D + hh * HD;
                    for (int i = 0; i < 8; i++) {
                        double c = cos(thp[t * 8 + i]), s = sin(thp[t * 8 + i]), v1 = v[i], v2 = v[i + 8];
                        v[i] = v1 * c - v2 * s;
                        v[i + 8] = v2 * c + v1 * s;
                    }
                }
        for (int64_t sgi = 0; sgi + 1 < ncs; sgi++)
            for (int64_t i = cs[sgi]; i < cs[sgi + 1]; i++)
                for (int hh = 0; hh < H; hh++) {
                    double sc[128], mx = -INFINITY, sum = 0;
                    for (int64_t j = cs[sgi]; j < cs[sgi + 1]; j++) {
                        double dot = 0;
                        for (int c = 0; c < HD; c++)
                            dot += h[i * 3 * D + hh * HD + c] * h[j * 3 * D + D + hh * HD + c];
                        sc[j - cs[sgi]] = dot / sqrt((double)HD);
                        mx = fmax(mx, sc[j - cs[sgi]]);
                    }
                    for (int64_t j = cs[sgi]; j < cs[sgi + 1]; j++)
                        sum += (sc[j - cs[sgi]] = exp(sc[j - cs[sgi]] - mx));
                    for (int c = 0; c < HD; c++) {
                        double acc = 0;
                        for (int64_t j = cs[sgi]; j < cs[sgi + 1]; j++)
                            acc += sc[j - cs[sgi]] * h[j * 3 * D + 2 * D + hh * HD + c];
                        a[i * D + hh * HD + c] = acc / sum;
                    }
                }
        linear(o, a, P, D, D, W("attn.proj.weight"), W("attn.proj.bias"));
        for (int64_t i = 0; i < P * D; i++)
            xp[i] += o[i];
        rms(n1, xp, P, D, W("norm2.weight"));
        linear(g, n1, P, D, I, W("mlp.gate_proj.weight"), W("mlp.gate_proj.bias"));
        linear(u, n1, P, D, I, W("mlp.up_proj.weight"), W("mlp.up_proj.bias"));
        for (int64_t i = 0; i < P * I; i++)
            g[i] = g[i] / (1 + exp(-g[i])) * u[i];
        linear(o, g, P, I, D, W("mlp.down_proj.weight"), W("mlp.down_proj.bias"));
        for (int64_t i = 0; i < P * D; i++)
            xp[i] += o[i];
#undef W
    }
    /* merger on the permuted rows, then hidden_states[argsort(window_index)] */
    double *m0 = malloc((size_t)(nb * 4 * D) * sizeof *m0), *m2 = malloc((size_t)(nb * C) * sizeof *m2);
    rms(n1, xp, P, D, get("visual.merger.ln_q.weight"));
    linear(m0, n1, nb, 4 * D, 4 * D, get("visual.merger.mlp.0.weight"), get("visual.merger.mlp.0.bias"));
    for (int64_t i = 0; i < nb * 4 * D; i++)
        n1[i] = m0[i] * 0.5 * (1 + erf(m0[i] / sqrt(2.0)));
    linear(m2, n1, nb, 4 * D, C, get("visual.merger.mlp.2.weight"), get("visual.merger.mlp.2.bias"));
    for (int64_t k = 0; k < nb; k++)
        memcpy(out + wi[k] * C, m2 + k * C, C * sizeof *out);
    free(x), free(xp), free(th), free(thp), free(pxd), free(h), free(a), free(o), free(g), free(u), free(n1);
    free(m0), free(m2);
}

static qv_status rows_get(void *ctx, int64_t u0, int64_t n, float *dst)
{
    const float *px = ctx;
    int64_t r0 = 0, r1 = 0;
    for (int64_t u = 0; u < u0 + n; u++) {
        const int64_t p = k_grid[u][0] * k_grid[u][1] * k_grid[u][2];
        if (u < u0)
            r0 += p;
        r1 += p;
    }
    memcpy(dst, px + r0 * PD, (size_t)((r1 - r0) * PD) * sizeof *dst);
    return QV_OK;
}

Test(vision_qwen25, window_tower_matches_reference, .timeout = 120)
{
    char *dir = make_model();
    qv_model_config cfg;
    qv_checkpoint *ck;
    qt_open_model(dir, &cfg, &ck);
    cr_assert_eq(cfg.family, QV_FAMILY_QWEN2_VL);
    cr_assert(cfg.vision.gated_mlp && cfg.vision.norm == QV_NORM_RMS && cfg.vision.window_size == 8);
    cr_assert(cfg.vision.n_fullatt == 1 && cfg.vision.fullatt[0] == 1 && cfg.vision.out_hidden == C);
    int64_t P = 0;
    for (int i = 0; i < NIMG; i++)
        P += k_grid[i][0] * k_grid[i][1] * k_grid[i][2];
    float *px = malloc((size_t)(P * PD) * sizeof *px);
    for (int64_t i = 0; i < P * PD; i++)
        px[i] = urand();
    double *ref = malloc((size_t)(P / 4 * C) * sizeof *ref);
    reference(px, P, ref);
    float *reff = malloc((size_t)(P / 4 * C) * sizeof *reff);
    for (int64_t i = 0; i < P / 4 * C; i++)
        reff[i] = (float)ref[i];
    const int64_t chunk[2] = {100000, 1}; /* all images in one call / one image per call */
    for (int k = 0; k < 2; k++) {
        qv_vision *v = NULL;
        const qv_vision_opts o = {QV_F32, 0, chunk[k], 0};
        cr_assert_eq(qv_vision_open(&cfg, ck, dir, &o, &v), QV_OK, "%s", qv_last_error());
        qv_vision_input in = {NIMG, 0, 0, &k_grid[0][0], NULL, px, rows_get};
        float *out = calloc((size_t)(P / 4 * C), sizeof *out);
        int64_t r = 0;
        for (int64_t u0 = 0; u0 < NIMG;) {
            const int64_t n = k ? 1 : NIMG;
            cr_assert_eq(qv_vision_encode(v, &in, u0, n, out + r * C, NULL), QV_OK, "%s", qv_last_error());
            for (int64_t u = u0; u < u0 + n; u++)
                r += qv_vision_unit_rows(v, &in, u);
            u0 += n;
        }
        cr_assert_eq(r, P / 4);
        double rel = qt_max_rel(out, reff, (size_t)(P / 4 * C));
        cr_assert_leq(rel, 1e-5, "chunk %lld: rel %.3g", (long long)chunk[k], rel);
        free(out);
        qv_vision_close(v);
    }
    qv_checkpoint_close(ck);
}

Test(vision_qwen25, window_index_layout)
{
    /* a 3x5 block grid in windows of 2x2: windows (0,0) (0,1) (0,2) (1,0) (1,1) (1,2) */
    const int64_t grid[3] = {1, 6, 10};
    int64_t perm[15];
    int32_t win[15];
    cr_assert_eq(qv_qwen25vl_window_index(grid, 1, 2, 2, perm, win), QV_OK);
    const int64_t want[15] = {0, 1, 5, 6, 2, 3, 7, 8, 4, 9, 10, 11, 12, 13, 14};
    const int32_t wid[15] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5};
    cr_assert_arr_eq(perm, want, sizeof want);
    for (int i = 1; i < 15; i++)
        cr_assert_eq(win[i] != win[i - 1], wid[i] != wid[i - 1], "window boundary at %d", i);
}
