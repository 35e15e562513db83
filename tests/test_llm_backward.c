/* test_llm_backward.c — the LLM gradient pass against the PyTorch goldens (fixtures README §7,
 * §11): hooked-output gradients of sample 0 (loss_0 / 4) rel ≤ 1e-3 with exactly zero rows where
 * the golden rows are zero (padding; image rows of the last layer's o/gate/up/down), and MBQ's
 * statistics (per-sample vis/cap, averages, ratios, medians, reweight ratios) rel ≤ 1e-4. Plus a
 * finite-difference check of every hooked gradient on a tiny random Qwen2 (through
 * dL/dW = Σ_t G[t]·x[t]ᵀ, x = the linear's captured input). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "io/json.h"
#include "llm/backward.h"
#include "llm/forward.h"
#include "llm/head.h"
#include "util/testutil.h"

/* ---- collecting gradients --------------------------------------------------------------------- */

typedef struct grad_store {
    int64_t T;
    float *g[16][QV_LIN_COUNT]; /* [layer][lin] → [T, co] */
    int64_t co[QV_LIN_COUNT];
} grad_store;

static qv_status store_put(void *ctx, int64_t layer, qv_llm_lin lin, const char *name, int64_t b0, int64_t row0,
                           int64_t nrows, int64_t co, const float *g)
{
    (void)name, (void)b0;
    grad_store *s = ctx;
    if (!s->g[layer][lin])
        s->g[layer][lin] = calloc((size_t)(s->T * co), sizeof(float));
    s->co[lin] = co;
    memcpy(s->g[layer][lin] + row0 * co, g, (size_t)(nrows * co) * sizeof(float));
    return QV_OK;
}

static void store_free(grad_store *s)
{
    for (int l = 0; l < 16; l++)
        for (int k = 0; k < QV_LIN_COUNT; k++)
            free(s->g[l][k]);
}

static qv_llm_lin lin_of(const qv_llm *m, const char *suffix)
{
    for (int k = 0; k < QV_LIN_COUNT; k++)
        if (qv_llm_lin_suffix(m, (qv_llm_lin)k) && !strcmp(qv_llm_lin_suffix(m, (qv_llm_lin)k), suffix))
            return (qv_llm_lin)k;
    cr_assert_fail("no linear %s", suffix);
    return QV_LIN_COUNT;
}

static void load_internvl(const char *model, qv_llm **m, qv_llm_batch *b)
{
    char p[256];
    snprintf(p, sizeof p, "models/%s", model);
    cr_assert_eq(qv_llm_open(qt_fixture(p), NULL, m), QV_OK, "%s", qv_last_error());
    snprintf(p, sizeof p, "goldens/%s/calib_batch.safetensors", model);
    cr_assert_eq(qv_llm_batch_load(qt_fixture(p), b), QV_OK, "%s", qv_last_error());
    snprintf(p, sizeof p, "goldens/%s/forward.safetensors", model);
    cr_assert_eq(qv_llm_batch_load_embeds(b, qt_fixture(p), "llm.inputs_embeds"), QV_OK, "%s", qv_last_error());
}

static qv_json *load_stats(const char *model)
{
    char p[256];
    snprintf(p, sizeof p, "goldens/%s/mbq_grad_stats.json", model);
    qv_json *j = NULL;
    cr_assert_eq(qv_json_load_file(qt_fixture(p), 0, &j), QV_OK, "%s", qv_last_error());
    return j;
}

static double jnum(const qv_json *arr, size_t i) { return json_object_get_double(json_object_array_get_idx(arr, i)); }

/* ---- backward_sample0 --------------------------------------------------------------------------- */

static void sample0_case(const char *model, const char *const *keys, int n_keys)
{
    qv_llm *m;
    qv_llm_batch b;
    load_internvl(model, &m, &b);
    grad_store gs = {.T = b.L};
    qv_llm_grad_sink sink = {&gs, store_put};
    double loss = 0;
    cr_assert_eq(qv_llm_backward(m, &b, 0, 1, 4.0, &sink, &loss), QV_OK, "%s", qv_last_error());
    qv_json *js = load_stats(model);
    double want = jnum(qv_json_get(js, "per_sample_loss_unscaled"), 0);
    cr_assert_leq(fabs(loss - want), 1e-4, "%s loss_0 %.7f vs %.7f", model, loss, want);
    char p[256];
    snprintf(p, sizeof p, "goldens/%s/backward_sample0.safetensors", model);
    qv_st_file *g = qt_open_st(p);
    for (int k = 0; k < n_keys; k++) {
        int layer;
        char suffix[64];
        cr_assert_eq(sscanf(keys[k], "grad.layers.%d.%63s", &layer, suffix), 2);
        qv_llm_lin lin = lin_of(m, suffix);
        qv_tensor t;
        float *ref = qt_tensor_f32(g, keys[k], &t);
        const int64_t co = t.shape[1];
        cr_assert(t.shape[0] == b.L && co == gs.co[lin], "%s shape", keys[k]);
        const float *ours = gs.g[layer][lin];
        cr_assert_not_null(ours, "%s not hooked", keys[k]);
        double r = qt_max_rel(ours, ref, (size_t)(b.L * co));
        cr_assert_leq(r, 1e-3, "%s %s rel %g", model, keys[k], r);
        int zero_rows = 0;
        for (int64_t t0 = 0; t0 < b.L; t0++) {
            bool z = true;
            for (int64_t c = 0; c < co && z; c++)
                z = ref[t0 * co + c] == 0.0f;
            if (!z)
                continue;
            zero_rows++;
            for (int64_t c = 0; c < co; c++)
                cr_assert_eq(ours[t0 * co + c], 0.0f, "%s row %lld not exactly zero", keys[k], (long long)t0);
        }
        int pad = 0;
        for (int64_t t0 = 0; t0 < b.L; t0++)
            pad += !b.attention_mask[t0];
        cr_assert_geq(zero_rows, pad, "%s: %d zero rows, %d padded", keys[k], zero_rows, pad);
        free(ref);
    }
    qv_st_close(g);
    qv_json_free(js);
    store_free(&gs);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
}

Test(llm_backward, internvl2_qwen2_sample0)
{
    const char *keys[] = {"grad.layers.0.self_attn.v_proj", "grad.layers.2.self_attn.o_proj",
                          "grad.layers.1.mlp.gate_proj"};
    sample0_case("internvl2-qwen2-tiny", keys, 3);
}

Test(llm_backward, internvl2_internlm2_sample0)
{
    const char *keys[] = {"grad.layers.0.attention.wo", "grad.layers.2.feed_forward.w2"};
    sample0_case("internvl2-internlm2-tiny", keys, 2);
}

/* ---- MBQ statistics -------------------------------------------------------------------------- */

static void expect_rel(double ours, double want, double tol, const char *what)
{
    if (want == 0)
        cr_assert_eq(ours, 0.0, "%s: %g, want exactly 0", what, ours);
    else
        cr_assert_leq(fabs(ours - want), tol * fabs(want), "%s: %.9g vs %.9g", what, ours, want);
}

Test(llm_backward, mbq_grad_stats_internvl2_qwen2)
{
    qv_llm *m;
    qv_llm_batch b;
    load_internvl("internvl2-qwen2-tiny", &m, &b);
    qv_mbq_grad_stats st;
    cr_assert_eq(qv_llm_mbq_grad_stats(m, &b, NULL, &st), QV_OK, "%s", qv_last_error());
    qv_json *js = load_stats("internvl2-qwen2-tiny"), *stats = qv_json_get(js, "stats");
    int checked = 0;
    json_object_object_foreach(stats, key, val)
    {
        int layer;
        char suffix[64];
        cr_assert_eq(sscanf(key, "layers.%d.%63s", &layer, suffix), 2);
        qv_llm_lin lin = lin_of(m, suffix);
        cr_assert(qv_llm_lin_hooked(m, lin));
        for (int i = 0; i < 4; i++) {
            char what[128];
            snprintf(what, sizeof what, "%s vis[%d]", key, i);
            expect_rel(st.vis[qv_mbq_stat_at(&st, layer, lin, i)], jnum(qv_json_get(val, "vis_grad_per_sample"), i), 1e-4,
                       what);
            snprintf(what, sizeof what, "%s cap[%d]", key, i);
            expect_rel(st.cap[qv_mbq_stat_at(&st, layer, lin, i)], jnum(qv_json_get(val, "cap_grad_per_sample"), i), 1e-4,
                       what);
        }
        expect_rel(st.vis_avg[layer * QV_LIN_COUNT + lin], json_object_get_double(qv_json_get(val, "vis_avg_grad")),
                   1e-4, key);
        expect_rel(st.cap_avg[layer * QV_LIN_COUNT + lin], json_object_get_double(qv_json_get(val, "cap_avg_grad")),
                   1e-4, key);
        checked++;
    }
    cr_assert_eq(checked, 15);
    /* ratio lists are in hook-firing order: last layer first */
    const qv_json *ar = qv_json_get(js, "attn_ratio_list"), *mr = qv_json_get(js, "mlp_ratio_list");
    for (int l = 0; l < 3; l++) {
        expect_rel(st.attn_ratio[l], jnum(ar, (size_t)(2 - l)), 1e-4, "attn ratio");
        expect_rel(st.mlp_ratio[l], jnum(mr, (size_t)(2 - l)), 1e-4, "mlp ratio");
        const qv_json *rw = json_object_array_get_idx(qv_json_get(js, "reweight_ratio_per_layer"), (size_t)l);
        expect_rel(st.reweight_attn[l], json_object_get_double(qv_json_get(rw, "attn")), 1e-4, "reweight attn");
        expect_rel(st.reweight_mlp[l], json_object_get_double(qv_json_get(rw, "mlp")), 1e-4, "reweight mlp");
    }
    expect_rel(st.attn_median, json_object_get_double(qv_json_get(js, "attn_median")), 1e-4, "attn median");
    expect_rel(st.mlp_median, json_object_get_double(qv_json_get(js, "mlp_median")), 1e-4, "mlp median");
    for (int i = 0; i < 4; i++)
        cr_assert_leq(fabs(st.loss[i] - jnum(qv_json_get(js, "per_sample_loss_unscaled"), (size_t)i)), 1e-4);
    qv_json_free(js);
    qv_mbq_grad_stats_free(&st);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
}

Test(llm_backward, mbq_grad_stats_internvl2_internlm2_sample0)
{
    /* The fixture keeps sample 0 only: a one-sample run differentiates loss_0 / 1, the golden
     * loss_0 / 4, so every per-sample statistic is 4× the golden's. */
    qv_llm *m;
    qv_llm_batch b;
    load_internvl("internvl2-internlm2-tiny", &m, &b);
    qv_mbq_grad_stats st;
    cr_assert_eq(qv_llm_mbq_grad_stats(m, &b, NULL, &st), QV_OK, "%s", qv_last_error());
    qv_json *js = load_stats("internvl2-internlm2-tiny"), *stats = qv_json_get(js, "stats");
    int checked = 0;
    json_object_object_foreach(stats, key, val)
    {
        int layer;
        char suffix[64];
        cr_assert_eq(sscanf(key, "layers.%d.%63s", &layer, suffix), 2);
        qv_llm_lin lin = lin_of(m, suffix);
        expect_rel(st.vis[qv_mbq_stat_at(&st, layer, lin, 0)] / 4, jnum(qv_json_get(val, "vis_grad_per_sample"), 0),
                   1e-4, key);
        expect_rel(st.cap[qv_mbq_stat_at(&st, layer, lin, 0)] / 4, jnum(qv_json_get(val, "cap_grad_per_sample"), 0),
                   1e-4, key);
        checked++;
    }
    cr_assert_eq(checked, 12);
    qv_json_free(js);
    qv_mbq_grad_stats_free(&st);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
}

/* ---- finite differences on a tiny random model --------------------------------------------------- */

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static float nrand(void)
{
    double u = 0;
    for (int i = 0; i < 12; i++) {
        rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
        u += (double)(rs >> 11) / 9007199254740992.0;
    }
    return (float)(u - 6.0);
}

#define TC 16  /* hidden */
#define TI 32  /* MLP */
#define TV 50  /* vocab */
#define TL 2   /* layers */

static char *tiny_model(void)
{
    char *dir = qt_tmpdir(), p[4096];
    const char *cfg = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 16, \"intermediate_size\": 32,"
                      " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"num_hidden_layers\": 2,"
                      " \"vocab_size\": 50, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0,"
                      " \"max_position_embeddings\": 64, \"tie_word_embeddings\": false, \"hidden_act\": \"silu\"}";
    snprintf(p, sizeof p, "%s/config.json", dir);
    cr_assert_eq(qv_write_file_atomic(p, cfg, strlen(cfg)), QV_OK);
    const char *lin[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                         "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    const int64_t shp[][2] = {{16, 16}, {8, 16}, {8, 16}, {16, 16}, {32, 16}, {32, 16}, {16, 32}};
    qv_st_item items[64];
    char names[64][96];
    float *data[64];
    int n = 0;
#define ADD(nm, nd, s0, s1, scale, base)                                                            \
    do {                                                                                          \
        snprintf(names[n], sizeof names[n], "%s", nm);                                            \
        int64_t cnt = (s0) * ((nd) == 2 ? (s1) : 1);                                              \
        data[n] = malloc((size_t)cnt * 4);                                                        \
        for (int64_t q = 0; q < cnt; q++)                                                         \
            data[n][q] = (base) + (scale) * nrand();                                              \
        items[n] = (qv_st_item){names[n], QV_F32, nd, {s0, (nd) == 2 ? (s1) : 0}, data[n]};       \
        n++;                                                                                      \
    } while (0)
    ADD("model.embed_tokens.weight", 2, TV, TC, 1.0f, 0.0f);
    ADD("lm_head.weight", 2, TV, TC, 0.5f, 0.0f);
    ADD("model.norm.weight", 1, TC, 0, 0.1f, 1.0f);
    for (int l = 0; l < TL; l++) {
        char nm[96];
        for (int k = 0; k < 7; k++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, lin[k]);
            ADD(nm, 2, shp[k][0], shp[k][1], 1.0f / sqrtf((float)shp[k][1]), 0.0f);
            if (k < 3) {
                snprintf(nm, sizeof nm, "model.layers.%d.%s.bias", l, lin[k]);
                ADD(nm, 1, shp[k][0], 0, 0.1f, 0.0f);
            }
        }
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        ADD(nm, 1, TC, 0, 0.1f, 1.0f);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(nm, 1, TC, 0, 0.1f, 1.0f);
    }
#undef ADD
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    cr_assert_eq(qv_st_write_file(p, items, (size_t)n, NULL, 0), QV_OK, "%s", qv_last_error());
    for (int i = 0; i < n; i++)
        free(data[i]);
    return dir;
}

/* Loss (mean NLL of the batch) with layer `li`'s linear `lin` replaced by w (NULL: unmodified). */
static double loss_with(qv_llm *m, const qv_llm_batch *b, int64_t li, qv_llm_lin lin, const float *w,
                        float *caps[TL][QV_LIN_COUNT])
{
    const int64_t T = b->B * b->L, C = m->C;
    float *h = malloc((size_t)(T * C) * 4);
    qv_llm_embed(m, b->input_ids, T, h);
    qv_llm_ctx ctx;
    cr_assert_eq(qv_llm_ctx_init(m, &ctx, b->B, b->L, b->attention_mask, NULL, NULL), QV_OK);
    for (int64_t i = 0; i < TL; i++) {
        qv_llm_layer layer;
        cr_assert_eq(qv_llm_layer_load(m, i, &layer), QV_OK);
        if (w && i == li)
            cr_assert_eq(qv_llm_layer_set(m, &layer, lin, w, NULL), QV_OK);
        qv_llm_capture cap = {0};
        if (caps) {
            cap.attn_in = caps[i][QV_LIN_V];
            cap.o_in = caps[i][QV_LIN_O];
            cap.mlp_in = caps[i][QV_LIN_GATE];
            cap.down_in = caps[i][QV_LIN_DOWN];
        }
        cr_assert_eq(qv_llm_layer_forward(m, &layer.w, &ctx, h, h, QV_F32, &cap), QV_OK);
        qv_llm_layer_release(m, &layer);
    }
    int64_t *idx, M;
    qv_llm_batch_loss_rows(b, &idx, &M);
    float *rows = malloc((size_t)(M * C) * 4), *nll = malloc((size_t)M * 4);
    int64_t *tg = malloc((size_t)M * 8);
    for (int64_t r = 0; r < M; r++) {
        memcpy(rows + r * C, h + (idx[2 * r] * b->L + idx[2 * r + 1]) * C, (size_t)C * 4);
        tg[r] = b->labels[idx[2 * r] * b->L + idx[2 * r + 1] + 1];
    }
    qv_llm_final_norm(m, rows, M, rows);
    cr_assert_eq(qv_llm_head_nll(m, rows, M, tg, NULL, nll, NULL, NULL), QV_OK);
    double s = 0;
    for (int64_t r = 0; r < M; r++)
        s += nll[r];
    free(h), free(idx), free(rows), free(nll), free(tg);
    qv_llm_ctx_free(&ctx);
    return s / (double)M;
}

Test(llm_backward, finite_differences_tiny_qwen2)
{
    char *dir = tiny_model();
    qv_llm *m;
    cr_assert_eq(qv_llm_open(dir, NULL, &m), QV_OK, "%s", qv_last_error());
    /* one sample of 11 tokens, the last 3 padded; labels on positions 2..7 */
    const int64_t L = 11, ids[11] = {3, 17, 5, 44, 9, 21, 30, 2, 0, 0, 0};
    qv_llm_batch b;
    cr_assert_eq(qv_llm_batch_from_ids(&b, ids, 1, L, "tiny"), QV_OK);
    for (int64_t t = 0; t < L; t++) {
        b.attention_mask[t] = t < 8;
        b.labels[t] = t >= 2 && t < 8 ? ids[t] : -100;
    }
    grad_store gs = {.T = L};
    qv_llm_grad_sink sink = {&gs, store_put};
    double loss;
    cr_assert_eq(qv_llm_backward(m, &b, 0, 1, 1.0, &sink, &loss), QV_OK, "%s", qv_last_error());
    float *caps[TL][QV_LIN_COUNT] = {{0}};
    for (int i = 0; i < TL; i++) {
        caps[i][QV_LIN_V] = malloc(L * TC * 4), caps[i][QV_LIN_O] = malloc(L * TC * 4);
        caps[i][QV_LIN_GATE] = malloc(L * TC * 4), caps[i][QV_LIN_DOWN] = malloc(L * TI * 4);
    }
    double l0 = loss_with(m, &b, -1, QV_LIN_COUNT, NULL, caps);
    cr_assert_leq(fabs(l0 - loss), 1e-5, "forward %.8f vs backward pass %.8f", l0, loss);
    const qv_llm_lin lins[] = {QV_LIN_V, QV_LIN_O, QV_LIN_GATE, QV_LIN_UP, QV_LIN_DOWN};
    const double e = 1e-2;
    for (int64_t li = 0; li < TL; li++)
        for (size_t q = 0; q < QV_ARRAY_LEN(lins); q++) {
            qv_llm_lin lin = lins[q];
            const int64_t co = qv_llm_lin_out(m, lin), ci = qv_llm_lin_in(m, lin);
            const float *G = gs.g[li][lin];
            const float *X = caps[li][lin == QV_LIN_UP ? QV_LIN_GATE : lin];
            cr_assert_not_null(G);
            for (int64_t t = 8; t < L; t++) /* padded rows: exactly zero */
                for (int64_t c = 0; c < co; c++)
                    cr_assert_eq(G[t * co + c], 0.0f);
            qv_llm_layer layer;
            cr_assert_eq(qv_llm_layer_load(m, li, &layer), QV_OK);
            float *w = malloc((size_t)(co * ci) * 4);
            cr_assert_eq(qv_llm_layer_get(m, &layer, lin, w), QV_OK);
            qv_llm_layer_release(m, &layer);
            for (int s = 0; s < 4; s++) {
                const int64_t c = (s * 7 + 3) % co, j = (s * 5 + 1) % ci;
                double an = 0;
                for (int64_t t = 0; t < L; t++)
                    an += (double)G[t * co + c] * X[t * ci + j];
                const float w0 = w[c * ci + j];
                w[c * ci + j] = w0 + (float)e;
                double lp = loss_with(m, &b, li, lin, w, NULL);
                w[c * ci + j] = w0 - (float)e;
                double lm = loss_with(m, &b, li, lin, w, NULL);
                w[c * ci + j] = w0;
                double fd = (lp - lm) / (2 * e);
                cr_assert_leq(fabs(fd - an), 2e-2 * fabs(an) + 2e-4, "layer %lld %s W[%lld][%lld]: fd %g analytic %g",
                              (long long)li, qv_llm_lin_suffix(m, lin), (long long)c, (long long)j, fd, an);
            }
            free(w);
        }
    for (int i = 0; i < TL; i++)
        for (int k = 0; k < QV_LIN_COUNT; k++)
            free(caps[i][k]);
    store_free(&gs);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
    free(dir);
}
