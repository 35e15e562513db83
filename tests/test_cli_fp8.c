/* test_cli_fp8.c — `qvlm quantize` with method fp8 on internvl3-tiny, end to end through
 * `qvlm export --format fp8` and `qvlm verify` (ALGORITHMS-2.md §4; FORMATS.md §4.4, §4.6;
 * fixtures README §14.5):
 *   - configs/internvl3-tiny/fp8_dynamic.yaml (the default FP8_DYNAMIC scheme): search.json names
 *     method, scheme and ignore list; no statistics; the FP loss equals the golden (abs 1e-4) and
 *     the FP8 model's loss differs from it but stays within 0.05; the export's layer-0 FP8 codes
 *     and scales equal the golden bit for bit, verify finds 0 mismatches;
 *   - configs/internvl3-tiny/fp8_seed_recipe.yaml (the seed's FP8 + FP8 KV recipe from
 *     export.recipe, exported by the run itself): static input statistics of every in-scope
 *     Linear (21 decoder, 8 InternViT, none of mlp1) and K/V of every layer equal a brute-force
 *     absmax over the real tokens of the batch computed here (vision through an observing hook:
 *     exact; the decoder on the whole batch at once: rel ≤ 1e-5, the run goes sample by sample);
 *     the exported input_scale / k_scale / v_scale are
 *     T(T(absmax)/448); verify finds 0 mismatches;
 *   - --recipe with dynamic inputs, the vision tower in scope and per-head KV scales;
 *   - bad input: a non-FP8 scheme, an LM head in scope, --recipe with another method, static
 *     scales without data, an FP8 folder given to other formats / forward: one line, exit 1. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../simd/fp.h"
#include "core/fsutil.h"
#include "export/recipe.h"
#include "io/json.h"
#include "llm/forward.h"
#include "nn/fp8q.h"
#include "util/testutil.h"
#include "vision/vision.h"

#define MODEL "tests/fixtures/models/internvl3-tiny"
#define FP_LOSS 8.006902 /* fixtures README §14.3 */

static void run_ok(const char *what, const char *args)
{
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "%s", args);
    cr_assert_eq(rc, 0, "%s: exit %d\nstdout: %s\nstderr: %s", what, rc, out, err);
    free(out);
    free(err);
}

/* One line naming `needle` on stderr, exit 1. */
static void run_fails(const char *what, const char *args, const char *needle)
{
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "%s", args);
    cr_expect_eq(rc, 1, "%s: exit %d\n%s", what, rc, err);
    cr_expect_eq(qt_count_lines(err), 1, "%s: stderr:\n%s", what, err);
    cr_expect(strstr(err, needle) != NULL, "%s: \"%s\" not in: %s", what, needle, err);
    free(out);
    free(err);
}

static qv_json *json_file(const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    qv_json *j;
    cr_assert_eq(qv_json_load_file(p, 0, &j), QV_OK, "%s", qv_last_error());
    return j;
}

static void write_text(const char *path, const char *text)
{
    cr_assert_eq(qv_write_file_atomic(path, text, strlen(text)), QV_OK, "%s", qv_last_error());
}

static void check_eval(const char *dir, const char *what)
{
    qv_json *e = json_file(dir, "eval.json");
    double loss = json_object_get_double(qv_json_get(e, "loss")), fp = json_object_get_double(qv_json_get(e, "fp_loss"));
    fprintf(stderr, "[fp8] %s: FP8 loss %.6f, FP %.6f\n", what, loss, fp);
    cr_expect_leq(fabs(fp - FP_LOSS), 1e-4, "%s: FP loss %.7f", what, fp);
    cr_expect(isfinite(loss) && fabs(loss - fp) <= 0.05 && fabs(loss - fp) > 1e-5,
              "%s: FP8 loss %.7f vs FP %.7f", what, loss, fp);
    qv_json_free(e);
}

static float bf16_at(const qv_tensor *t, int64_t i)
{
    cr_assert_eq(t->dtype, QV_BF16);
    uint16_t h;
    memcpy(&h, (const uint16_t *)t->data + i, 2);
    return qv_bf16_to_f32(h);
}

Test(cli_fp8, fp8_dynamic_default_exports_the_golden, .timeout = 600)
{
    char *dir = qt_tmpdir(), *od = qt_tmpdir(), cmd[4096];
    snprintf(cmd, sizeof cmd, "quantize configs/internvl3-tiny/fp8_dynamic.yaml -o '%s' --quiet", dir);
    run_ok("quantize fp8_dynamic", cmd);
    check_eval(dir, "fp8_dynamic");
    qv_json *s = json_file(dir, "search.json"), *f8 = qv_json_get(s, "fp8");
    cr_expect_str_eq(json_object_get_string(qv_json_get(s, "method")), "fp8");
    cr_expect_str_eq(json_object_get_string(qv_json_get(s, "dtype")), "bfloat16");
    cr_expect_str_eq(json_object_get_string(qv_json_get(f8, "scheme")), "FP8_DYNAMIC");
    qv_json *ig = qv_json_get(f8, "ignore");
    static const char *want_ig[] = {"re:.*lm_head", "re:mlp1.*", "re:vision_model.*"};
    cr_assert_eq(json_object_array_length(ig), 3);
    for (size_t i = 0; i < 3; i++)
        cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(ig, i)), want_ig[i]);
    qv_json *n = qv_json_get(f8, "quantized");
    cr_expect_eq(json_object_get_int(qv_json_get(n, "llm")), 21);
    cr_expect_eq(json_object_get_int(qv_json_get(n, "vision")), 0);
    cr_expect_eq(json_object_get_int(qv_json_get(n, "kv_attention")), 0);
    qv_json_free(s);
    char p[1024];
    snprintf(p, sizeof p, "%s/scales.safetensors", dir);
    qv_st_file *sf;
    cr_assert_eq(qv_st_open(p, &sf), QV_OK);
    cr_expect_eq(sf->hdr.n, 0, "a dynamic scheme without KV takes no statistics");
    qv_st_close(sf);

    /* export (the scheme comes from DIR/recipe.yaml) and the golden FP8 weights */
    char out[1024];
    snprintf(out, sizeof out, "%s/fp8", od);
    snprintf(cmd, sizeof cmd, "export %s --scales '%s' --format fp8 -o '%s' --quiet", MODEL, dir, out);
    run_ok("export fp8", cmd);
    qv_json *cfg = json_file(out, "config.json"), *q = qv_json_get(cfg, "quantization_config");
    qv_json *g0 = qv_json_get(qv_json_get(q, "config_groups"), "group_0");
    cr_expect_str_eq(json_object_get_string(qv_json_get(q, "format")), "float-quantized");
    cr_expect_str_eq(json_object_get_string(qv_json_get(qv_json_get(g0, "weights"), "strategy")), "channel");
    cr_expect_str_eq(json_object_get_string(qv_json_get(qv_json_get(g0, "input_activations"), "strategy")), "token");
    cr_expect(json_object_get_boolean(qv_json_get(qv_json_get(g0, "input_activations"), "dynamic")));
    cr_expect_null(qv_json_get(q, "kv_cache_scheme"));
    cr_expect_eq(json_object_array_length(qv_json_get(q, "ignore")), 3);
    qv_json_free(cfg);
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(out, &ck), QV_OK, "%s", qv_last_error());
    qv_st_file *g = qt_open_st("goldens/internvl3-tiny/export_fp8.safetensors");
    static const char *mods[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                 "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    for (size_t i = 0; i < QV_ARRAY_LEN(mods); i++) {
        char a[256], b[256];
        qv_tensor tw, gw;
        snprintf(a, sizeof a, "language_model.model.layers.0.%s.weight", mods[i]);
        snprintf(b, sizeof b, "language_model.model.layers.0.%s.weight_fp8", mods[i]);
        cr_assert_eq(qv_checkpoint_get(ck, a, &tw), QV_OK);
        cr_assert_eq(qv_st_get(g, b, &gw), QV_OK);
        cr_assert_eq(tw.dtype, QV_F8_E4M3);
        cr_expect_eq(memcmp(tw.data, gw.data, qv_tensor_nbytes(&gw)), 0, "%s: FP8 codes differ from the golden", mods[i]);
        snprintf(a, sizeof a, "language_model.model.layers.0.%s.weight_scale", mods[i]);
        snprintf(b, sizeof b, "language_model.model.layers.0.%s.weight_scale", mods[i]);
        cr_assert_eq(qv_checkpoint_get(ck, a, &tw), QV_OK);
        cr_assert_eq(qv_st_get(g, b, &gw), QV_OK);
        cr_expect_eq(memcmp(tw.data, gw.data, qv_tensor_nbytes(&gw)), 0, "%s: scales differ from the golden", mods[i]);
        snprintf(a, sizeof a, "language_model.model.layers.0.%s.input_scale", mods[i]);
        cr_expect_null(qv_checkpoint_find(ck, a, NULL), "dynamic inputs store no scale");
    }
    qv_st_close(g);
    qv_checkpoint_close(ck);
    char *vo, *ve;
    int rc = qt_run_cli(&vo, &ve, "verify '%s' --against %s --mismatches-only", out, MODEL);
    cr_expect_eq(rc, 0, "%s%s", vo, ve);
    cr_expect(strstr(vo, " 0 mismatches, max abs error 0") != NULL, "%s", vo);
    free(vo);
    free(ve);

    /* an FP8 folder is not a scale list */
    snprintf(cmd, sizeof cmd, "export %s --scales '%s' --format compressed-tensors -o '%s/ct'", MODEL, dir, od);
    run_fails("export ct of an fp8 folder", cmd, "--format fp8");
    snprintf(cmd, sizeof cmd, "forward %s --batch '%s/progress/calib_batch.safetensors' --scales '%s' -o '%s/f.safetensors'",
             MODEL, dir, dir, od);
    run_fails("forward --scales fp8 folder", cmd, "method fp8");
    free(dir);
    free(od);
}

/* ---- brute-force statistics ------------------------------------------------------------------ */

typedef struct vis_obs {
    char name[32][96];
    float absmax[32];
    int n;
} vis_obs;

static bool vo_wants(void *ctx, const char *module)
{
    (void)ctx;
    return strncmp(module, "vision_model.", 13) == 0 || strncmp(module, "mlp1.", 5) == 0;
}

static qv_status vo_input(void *ctx, const char *module, int64_t rows, int64_t in, const float *x, float *xq, bool *use)
{
    vis_obs *o = ctx;
    (void)xq;
    *use = false;
    int k = 0;
    while (k < o->n && strcmp(o->name[k], module))
        k++;
    if (k == o->n) {
        cr_assert_lt(o->n, 32);
        snprintf(o->name[o->n], sizeof o->name[0], "%s", module);
        o->absmax[o->n++] = 0.0f;
    }
    for (int64_t i = 0; i < rows * in; i++)
        o->absmax[k] = fmaxf(o->absmax[k], fabsf(x[i]));
    return QV_OK;
}

static float stat_of(qv_st_file *sf, const char *kind, const char *module, int64_t i, int64_t n)
{
    char key[512];
    snprintf(key, sizeof key, "absmax.%s.%s", kind, module);
    qv_tensor t;
    cr_assert_eq(qv_st_get(sf, key, &t), QV_OK, "%s is missing", key);
    cr_assert_eq(t.dtype, QV_F32);
    cr_assert_eq(qv_tensor_numel(&t), n, "%s", key);
    return ((const float *)t.data)[i];
}

static float masked_absmax(const float *x, int64_t rows, int64_t cols, int64_t c0, int64_t c1, const uint8_t *mask)
{
    float a = 0.0f;
    for (int64_t r = 0; r < rows; r++)
        if (!mask || mask[r])
            for (int64_t j = c0; j < c1; j++)
                a = fmaxf(a, fabsf(x[r * cols + j]));
    return a;
}

/* The statistics of DIR recomputed from its calibration batch: vision through an observing hook
 * (exact: the same tower calls), the decoder on the whole batch at once with captures, absmax
 * over the attention mask. The run takes one sample at a time through each layer, so its matmuls
 * have other row counts than these: rel ≤ 1e-5 (FP32 summation noise; measured ≤ 1.5e-6). */
static void brute_force_stats(const char *dir, int64_t kv_n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/scales.safetensors", dir);
    qv_st_file *sf;
    cr_assert_eq(qv_st_open(path, &sf), QV_OK);
    qv_llm *m;
    cr_assert_eq(qv_llm_open(qt_fixture("models/internvl3-tiny"), NULL, &m), QV_OK, "%s", qv_last_error());
    qv_llm_batch b;
    snprintf(path, sizeof path, "%s/progress/calib_batch.safetensors", dir);
    cr_assert_eq(qv_llm_batch_load(path, &b), QV_OK, "%s", qv_last_error());
    vis_obs vo = {.n = 0};
    const qv_vision_hook hk = {.ctx = &vo, .wants = vo_wants, .input = vo_input};
    const qv_vision_opts opts = {QV_F32, 0, 0, 0, &hk};
    qv_vision *vis;
    qv_mm_batch mb;
    bool images;
    cr_assert_eq(qv_vision_open(&m->cfg, m->ck, m->dir, &opts, &vis), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_mm_batch_load(path, vis, &mb, &images), QV_OK, "%s", qv_last_error());
    cr_assert(images);
    cr_assert_eq(qv_mm_batch_embed(vis, m, &mb, &b, NULL), QV_OK, "%s", qv_last_error());
    qv_mm_batch_free(&mb);
    qv_vision_close(vis);
    if (kv_n == 1) { /* the seed recipe: every InternViT Linear, no projector */
        cr_expect_eq(vo.n, 10, "8 InternViT + 2 mlp1 Linears observed");
        for (int k = 0; k < vo.n; k++) {
            char key[160];
            snprintf(key, sizeof key, "absmax.input.%s", vo.name[k]);
            if (!strncmp(vo.name[k], "mlp1.", 5)) {
                cr_expect_null(qv_st_header_find(&sf->hdr, key), "%s is ignored by re:mlp1.*", key);
                continue;
            }
            float mine = stat_of(sf, "input", vo.name[k], 0, 1);
            cr_expect_eq(mine, vo.absmax[k], "%s: %.9g vs brute force %.9g", key, mine, vo.absmax[k]);
        }
    }
    /* the decoder, every sample at once */
    const int64_t B = b.B, L = b.L, T = B * L, C = m->C, qd = m->H * m->d, kd = m->KV * m->d;
    float *h = malloc((size_t)(T * C) * sizeof *h);
    memcpy(h, b.inputs_embeds, (size_t)(T * C) * sizeof *h);
    float *ai = malloc((size_t)(T * C) * sizeof(float)), *mi = malloc((size_t)(T * C) * sizeof(float));
    float *oi = malloc((size_t)(T * qd) * sizeof(float)), *di = malloc((size_t)(T * m->I) * sizeof(float));
    float *k = malloc((size_t)(T * kd) * sizeof(float)), *v = malloc((size_t)(T * kd) * sizeof(float));
    qv_llm_capture cap = {.attn_in = ai, .o_in = oi, .mlp_in = mi, .down_in = di, .k = k, .v = v};
    qv_llm_ctx ctx;
    cr_assert_eq(qv_llm_ctx_init(m, &ctx, B, L, b.attention_mask, b.position_ids, NULL), QV_OK);
    size_t checked = 0;
    double worst = 0;
    for (int64_t i = 0; i < m->c->n_layers; i++) {
        qv_llm_layer layer;
        cr_assert_eq(qv_llm_layer_load(m, i, &layer), QV_OK);
        cr_assert_eq(qv_llm_layer_forward(m, &layer.w, &ctx, h, h, QV_F32, &cap), QV_OK, "%s", qv_last_error());
        qv_llm_layer_release(m, &layer);
        static const struct {
            qv_llm_lin l;
            int in;
        } lins[] = {{QV_LIN_Q, 0}, {QV_LIN_K, 0}, {QV_LIN_V, 0}, {QV_LIN_O, 1}, {QV_LIN_GATE, 2}, {QV_LIN_UP, 2}, {QV_LIN_DOWN, 3}};
        const float *ins[4] = {ai, oi, mi, di};
        char name[256];
        for (size_t j = 0; kv_n == 1 && j < QV_ARRAY_LEN(lins); j++) {
            const int64_t K = qv_llm_lin_in(m, lins[j].l);
            float bf = masked_absmax(ins[lins[j].in], T, K, 0, K, b.attention_mask);
            float mine = stat_of(sf, "input", qv_llm_lin_name(m, i, lins[j].l, name, sizeof name), 0, 1);
            worst = fmax(worst, fabs((double)mine - bf) / bf);
            cr_expect_leq(fabs((double)mine - bf), 1e-5 * bf, "%s: %.9g vs brute force %.9g", name, mine, bf);
            checked++;
        }
        snprintf(name, sizeof name, "language_model.model.layers.%lld.self_attn", (long long)i);
        for (int64_t hh = 0; hh < kv_n; hh++) {
            const int64_t c0 = kv_n == 1 ? 0 : hh * m->d, c1 = kv_n == 1 ? kd : c0 + m->d;
            float bk = masked_absmax(k, T, kd, c0, c1, b.attention_mask), bv = masked_absmax(v, T, kd, c0, c1, b.attention_mask);
            float mk = stat_of(sf, "k", name, hh, kv_n), mv = stat_of(sf, "v", name, hh, kv_n);
            worst = fmax(worst, fmax(fabs((double)mk - bk) / bk, fabs((double)mv - bv) / bv));
            cr_expect_leq(fabs((double)mk - bk), 1e-5 * bk, "k %s head %lld: %.9g vs %.9g", name, (long long)hh, mk, bk);
            cr_expect_leq(fabs((double)mv - bv), 1e-5 * bv, "v %s head %lld: %.9g vs %.9g", name, (long long)hh, mv, bv);
            checked += 2;
        }
    }
    fprintf(stderr, "[fp8] decoder statistics vs the whole-batch brute force: max rel %.3g\n", worst);
    cr_expect_eq(checked, kv_n == 1 ? 3 * 9 : 3 * 2 * (size_t)kv_n);
    qv_llm_ctx_free(&ctx);
    free(h), free(ai), free(mi), free(oi), free(di), free(k), free(v);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
    qv_st_close(sf);
}

Test(cli_fp8, seed_recipe_static_scales_are_the_running_absmax, .timeout = 600)
{
    char *dir = qt_tmpdir(), *od = qt_tmpdir(), conf[1024], cmd[4096];
    /* the shipped config with its export path moved into the temporary folder */
    snprintf(conf, sizeof conf, "%s/c.yaml", od);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && sed '/^export:/,$d' configs/internvl3-tiny/fp8_seed_recipe.yaml > '%s' && "
             "printf 'export: {format: fp8, path: %s/exp, recipe: configs/recipes/internvl3_fp8_seed.yaml}\\n' >> '%s'",
             QV_SOURCE_DIR, conf, od, conf);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "quantize '%s' -o '%s' --quiet", conf, dir);
    run_ok("quantize fp8_seed_recipe", cmd);
    check_eval(dir, "fp8_seed_recipe");
    qv_json *s = json_file(dir, "search.json"), *n = qv_json_get(qv_json_get(s, "fp8"), "quantized");
    cr_expect_str_eq(json_object_get_string(qv_json_get(qv_json_get(s, "fp8"), "scheme")), "FP8");
    cr_expect_eq(json_object_get_int(qv_json_get(n, "llm")), 21);
    cr_expect_eq(json_object_get_int(qv_json_get(n, "vision")), 8);
    cr_expect_eq(json_object_get_int(qv_json_get(n, "projector")), 0);
    cr_expect_eq(json_object_get_int(qv_json_get(n, "kv_attention")), 3);
    qv_json_free(s);
    char path[1024];
    snprintf(path, sizeof path, "%s/recipe.yaml", dir);
    qv_recipe r;
    cr_assert_eq(qv_recipe_load(path, &r), QV_OK, "%s", qv_last_error());
    cr_expect_str_eq(r.weights.strategy, "tensor");
    cr_expect(r.input.present && !r.input.dynamic && !strcmp(r.input.strategy, "tensor"));
    cr_expect(r.kv.present && !strcmp(r.kv.observer, "static_minmax"));
    cr_expect_eq(r.n_ignore, 2);
    qv_recipe_free(&r);
    brute_force_stats(dir, 1);

    /* the run's own export: static scales from the statistics, per-tensor weights, KV scales */
    char exp[1024];
    snprintf(exp, sizeof exp, "%s/exp", od);
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(exp, &ck), QV_OK, "%s", qv_last_error());
    snprintf(path, sizeof path, "%s/scales.safetensors", dir);
    qv_st_file *sf;
    cr_assert_eq(qv_st_open(path, &sf), QV_OK);
    static const char *mods[] = {"language_model.model.layers.2.mlp.down_proj", "language_model.model.layers.0.self_attn.q_proj",
                                 "vision_model.encoder.layers.1.attn.qkv", "vision_model.encoder.layers.0.mlp.fc2"};
    for (size_t i = 0; i < QV_ARRAY_LEN(mods); i++) {
        char name[256];
        qv_tensor t;
        snprintf(name, sizeof name, "%s.input_scale", mods[i]);
        cr_assert_eq(qv_checkpoint_get(ck, name, &t), QV_OK, "%s", name);
        cr_expect_eq(bf16_at(&t, 0), qv_fp8_scale(stat_of(sf, "input", mods[i], 0, 1), QV_BF16), "%s", name);
        snprintf(name, sizeof name, "%s.weight_scale", mods[i]);
        cr_assert_eq(qv_checkpoint_get(ck, name, &t), QV_OK, "%s", name);
        cr_expect_eq(qv_tensor_numel(&t), 1, "per-tensor weight scale");
        snprintf(name, sizeof name, "%s.weight", mods[i]);
        cr_assert_eq(qv_checkpoint_get(ck, name, &t), QV_OK, "%s", name);
        cr_expect_eq(t.dtype, QV_F8_E4M3, "%s", name);
    }
    for (int l = 0; l < 3; l++) {
        char attn[128], name[160];
        snprintf(attn, sizeof attn, "language_model.model.layers.%d.self_attn", l);
        for (int kv = 0; kv < 2; kv++) {
            qv_tensor t;
            snprintf(name, sizeof name, "%s.%s_scale", attn, kv ? "v" : "k");
            cr_assert_eq(qv_checkpoint_get(ck, name, &t), QV_OK, "%s", name);
            cr_expect_eq(bf16_at(&t, 0), qv_fp8_scale(stat_of(sf, kv ? "v" : "k", attn, 0, 1), QV_BF16), "%s", name);
        }
    }
    qv_tensor t;
    cr_assert_eq(qv_checkpoint_get(ck, "mlp1.1.weight", &t), QV_OK);
    cr_expect_eq(t.dtype, QV_BF16, "the projector stays in 16 bits");
    cr_expect_null(qv_checkpoint_find(ck, "mlp1.1.input_scale", NULL));
    qv_st_close(sf);
    qv_checkpoint_close(ck);
    qv_json *cfg = json_file(exp, "config.json"), *q = qv_json_get(cfg, "quantization_config");
    cr_expect_str_eq(json_object_get_string(qv_json_get(qv_json_get(q, "kv_cache_scheme"), "observer")), "static_minmax");
    cr_expect_eq(json_object_array_length(qv_json_get(q, "ignore")), 2);
    qv_json_free(cfg);
    char *vo, *ve;
    int rc = qt_run_cli(&vo, &ve, "verify '%s' --against %s --mismatches-only", exp, MODEL);
    cr_expect_eq(rc, 0, "%s%s", vo, ve);
    cr_expect(strstr(vo, "29 quantized modules") && strstr(vo, " 0 mismatches, max abs error 0"), "%s", vo);
    free(vo);
    free(ve);
    free(dir);
    free(od);
}

Test(cli_fp8, recipe_option_dynamic_vision_and_per_head_kv, .timeout = 600)
{
    char *dir = qt_tmpdir(), *od = qt_tmpdir(), recipe[1024], cmd[4096];
    snprintf(recipe, sizeof recipe, "%s/r.yaml", od);
    write_text(recipe, "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      targets: [\"Linear\"]\n"
                       "      scheme: FP8_DYNAMIC\n      ignore: [\"re:.*lm_head\", \"re:mlp1.*\"]\n"
                       "      kv_cache_scheme: {num_bits: 8, type: float, strategy: attn_head, dynamic: false, symmetric: true}\n");
    snprintf(cmd, sizeof cmd, "quantize configs/internvl3-tiny/fp8_dynamic.yaml -o '%s' --recipe '%s' --quiet", dir, recipe);
    run_ok("quantize --recipe", cmd);
    check_eval(dir, "FP8_DYNAMIC + vision + KV per head");
    qv_json *s = json_file(dir, "search.json"), *n = qv_json_get(qv_json_get(s, "fp8"), "quantized");
    cr_expect_eq(json_object_get_int(qv_json_get(n, "vision")), 8);
    cr_expect_eq(json_object_get_int(qv_json_get(n, "kv_attention")), 3);
    qv_json_free(s);
    brute_force_stats(dir, 2); /* KV per head only: dynamic inputs take no statistics */
    char path[1024];
    snprintf(path, sizeof path, "%s/scales.safetensors", dir);
    qv_st_file *sf;
    cr_assert_eq(qv_st_open(path, &sf), QV_OK);
    cr_expect_eq(sf->hdr.n, 6);
    qv_st_close(sf);
    char out[1024];
    snprintf(out, sizeof out, "%s/fp8", od);
    snprintf(cmd, sizeof cmd, "export %s --scales '%s' --format fp8 -o '%s' --quiet", MODEL, dir, out);
    run_ok("export", cmd);
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(out, &ck), QV_OK);
    qv_tensor t;
    cr_assert_eq(qv_checkpoint_get(ck, "language_model.model.layers.1.self_attn.k_scale", &t), QV_OK);
    cr_expect(t.ndim == 3 && t.shape[0] == 2 && t.shape[1] == 1 && t.shape[2] == 1, "per-head k_scale [2,1,1]");
    cr_assert_eq(qv_checkpoint_get(ck, "vision_model.encoder.layers.0.attn.qkv.weight", &t), QV_OK);
    cr_expect_eq(t.dtype, QV_F8_E4M3);
    cr_expect_null(qv_checkpoint_find(ck, "vision_model.encoder.layers.0.attn.qkv.input_scale", NULL));
    qv_checkpoint_close(ck);
    char *vo, *ve;
    int rc = qt_run_cli(&vo, &ve, "verify '%s' --against %s --mismatches-only", out, MODEL);
    cr_expect_eq(rc, 0, "%s%s", vo, ve);
    cr_expect(strstr(vo, " 0 mismatches, max abs error 0") != NULL, "%s", vo);
    free(vo);
    free(ve);
    free(dir);
    free(od);
}

Test(cli_fp8, bad_input_one_line_no_output)
{
    char *od = qt_tmpdir(), recipe[1024], cmd[4096], dir[1024];
    snprintf(dir, sizeof dir, "%s/out", od);
    snprintf(recipe, sizeof recipe, "%s/w4.yaml", od);
    write_text(recipe, "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      scheme: W4A16\n");
    snprintf(cmd, sizeof cmd, "quantize configs/internvl3-tiny/fp8_dynamic.yaml -o '%s' --recipe '%s'", dir, recipe);
    run_fails("int scheme", cmd, recipe);
    snprintf(recipe, sizeof recipe, "%s/head.yaml", od);
    write_text(recipe, "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      scheme: FP8_DYNAMIC\n"
                       "      ignore: [\"re:vision_model.*\", \"re:mlp1.*\"]\n");
    snprintf(cmd, sizeof cmd, "quantize configs/internvl3-tiny/fp8_dynamic.yaml -o '%s' --recipe '%s'", dir, recipe);
    run_fails("LM head in scope", cmd, "language_model.lm_head");
    snprintf(cmd, sizeof cmd, "quantize configs/internvl3-tiny/rtn_w3g128.yaml -o '%s' --recipe '%s'", dir, recipe);
    run_fails("--recipe with rtn", cmd, "applies to method fp8");
    /* static scales need data */
    char conf[1024];
    snprintf(conf, sizeof conf, "%s/nodata.yaml", od);
    snprintf(cmd, sizeof cmd, "cd '%s' && grep -v '^data_path:\\|^export:\\|^  ' configs/internvl3-tiny/fp8_seed_recipe.yaml > '%s'",
             QV_SOURCE_DIR, conf);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "quantize '%s' -o '%s' --recipe configs/recipes/internvl3_fp8_seed.yaml", conf, dir);
    run_fails("static without data", cmd, "calibration data");
    cr_expect_not(qv_path_exists(dir), "no output folder after a refused run");
    free(od);
}
