/* test_llm_forward.c — decoder forward against the PyTorch goldens (fixtures README §6, §10, §11):
 *   qwen2-tiny (text, right padding, tied head): token embeddings, every layer output, final
 *   norm and full logits rel ≤ 1e-4, loss abs ≤ 1e-4;
 *   internvl2-qwen2-tiny (Qwen2 decoder, 4 samples from the goldens' llm.inputs_embeds) and
 *   internvl2-internlm2-tiny (packed wqkv, sample 0 alone): layer outputs and final norm of
 *   sample 0, loss-row logits rel ≤ 1e-4, per-row NLL and loss abs ≤ 1e-4.
 * Also the runner API: a layer with captures equals its sub-blocks run separately, BF16
 * activation storage, and layer_set with modified weights changes only that layer. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llm/forward.h"
#include "llm/head.h"
#include "nn/matmul.h"
#include "nn/norm.h"
#include "util/testutil.h"

/* ---- dump collection ------------------------------------------------------------------------ */

typedef struct dump_buf {
    const char *name;
    int64_t width;
    float *data;
} dump_buf;

typedef struct dump_set {
    dump_buf b[8];
    int n;
    int64_t T;
} dump_set;

static bool d_want(void *ctx, const char *name)
{
    dump_set *s = ctx;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->b[i].name, name))
            return true;
    return false;
}

static qv_status d_put(void *ctx, const char *name, int64_t row0, int64_t nrows, const float *rows)
{
    dump_set *s = ctx;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->b[i].name, name)) {
            if (!s->b[i].data)
                s->b[i].data = calloc((size_t)(s->T * s->b[i].width), sizeof(float));
            memcpy(s->b[i].data + row0 * s->b[i].width, rows, (size_t)(nrows * s->b[i].width) * sizeof(float));
            return QV_OK;
        }
    return QV_OK;
}

static float *dump_get(dump_set *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->b[i].name, name))
            return s->b[i].data;
    return NULL;
}

static void dump_free(dump_set *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->b[i].data);
}

/* rel of rows [r0, r0+n) of ours [*, W] against golden [n, W] */
static double rel_rows(const float *ours, const float *gold, int64_t r0, int64_t n, int64_t W)
{
    return qt_max_rel(ours + r0 * W, gold, (size_t)(n * W));
}

static qv_llm *open_model(const char *name)
{
    qv_llm *m = NULL;
    cr_assert_eq(qv_llm_open(qt_fixture(name), NULL, &m), QV_OK, "%s", qv_last_error());
    return m;
}

/* ---- qwen2-tiny ------------------------------------------------------------------------------ */

Test(llm_forward, qwen2_tiny_text_matches_golden)
{
    qv_llm *m = open_model("models/qwen2-tiny");
    cr_assert(m->head.data == m->embed.data, "tied lm_head expected");
    const char *gpath = "goldens/qwen2-tiny/forward.safetensors";
    qv_llm_batch b;
    cr_assert_eq(qv_llm_batch_load(qt_fixture(gpath), &b), QV_OK, "%s", qv_last_error());
    cr_assert(b.B == 3 && b.L == 43);
    const int64_t T = b.B * b.L, C = 128, V = 2048;
    dump_set ds = {.n = 5, .T = T};
    const char *names[] = {"llm.inputs_embeds", "llm.layers.0.out", "llm.layers.1.out", "llm.norm.out", "logits"};
    const char *gold[] = {"embed.out", "layers.0.out", "layers.1.out", "norm.out", NULL};
    for (int i = 0; i < 5; i++)
        ds.b[i] = (dump_buf){names[i], i == 4 ? V : C, NULL};
    qv_llm_dump dump = {&ds, d_want, d_put};
    qv_llm_result res;
    cr_assert_eq(qv_llm_forward(m, &b, &dump, NULL, 0, &res), QV_OK, "%s", qv_last_error());
    qv_st_file *g = qt_open_st(gpath);
    for (int i = 0; i < 4; i++) {
        qv_tensor t;
        float *ref = qt_tensor_f32(g, gold[i], &t);
        float *ours = dump_get(&ds, names[i]);
        cr_assert_not_null(ours);
        double r = qt_max_rel(ours, ref, (size_t)(T * C));
        cr_assert_leq(r, i == 0 ? 0.0 : 1e-4, "%s rel %g", names[i], r);
        free(ref);
    }
    qv_tensor t;
    float *lg = qt_tensor_f32(g, "logits", &t); /* sample 0 only */
    double r = rel_rows(dump_get(&ds, "logits"), lg, 0, 43, V);
    cr_assert_leq(r, 1e-4, "logits rel %g", r);
    float *loss = qt_tensor_f32(g, "loss", &t);
    cr_assert_leq(fabs(res.loss - loss[0]), 1e-4, "loss %.7f vs %.7f", res.loss, loss[0]);
    /* the kept sample-0 logits are the dump's rows */
    for (int64_t k = 0; k < res.n_rows0; k++) {
        int64_t tpos = res.index0[2 * k + 1];
        cr_assert_leq(qt_max_abs(res.logits0 + k * V, dump_get(&ds, "logits") + tpos * V, V), 1e-5);
    }
    free(lg), free(loss);
    qv_st_close(g);
    dump_free(&ds);
    qv_llm_result_free(&res);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
}

/* ---- InternVL2 decoders from the goldens' inputs_embeds -------------------------------------- */

static void internvl_case(const char *model, int64_t n_samples)
{
    char mp[128], fp[128], bp[128];
    snprintf(mp, sizeof mp, "models/%s", model);
    snprintf(fp, sizeof fp, "goldens/%s/forward.safetensors", model);
    snprintf(bp, sizeof bp, "goldens/%s/calib_batch.safetensors", model);
    qv_llm *m = open_model(mp);
    qv_llm_batch b;
    cr_assert_eq(qv_llm_batch_load(qt_fixture(bp), &b), QV_OK, "%s", qv_last_error());
    cr_assert_eq(b.B, n_samples);
    cr_assert_eq(qv_llm_batch_load_embeds(&b, qt_fixture(fp), "llm.inputs_embeds"), QV_OK, "%s", qv_last_error());
    const int64_t L = b.L, T = b.B * L, C = 128, V = m->V;
    dump_set ds = {.n = 4, .T = T};
    const char *names[] = {"llm.layers.0.out", "llm.layers.1.out", "llm.layers.2.out", "llm.norm.out"};
    for (int i = 0; i < 4; i++)
        ds.b[i] = (dump_buf){names[i], C, NULL};
    qv_llm_dump dump = {&ds, d_want, d_put};
    qv_llm_result res;
    cr_assert_eq(qv_llm_forward(m, &b, &dump, NULL, 0, &res), QV_OK, "%s", qv_last_error());
    qv_st_file *g = qt_open_st(fp);
    qv_tensor t;
    for (int i = 0; i < 3; i++) { /* goldens keep sample 0 */
        float *ref = qt_tensor_f32(g, names[i], &t);
        double r = rel_rows(dump_get(&ds, names[i]), ref, 0, L, C);
        cr_assert_leq(r, 1e-4, "%s %s rel %g", model, names[i], r);
        free(ref);
    }
    float *nref = qt_tensor_f32(g, "llm.norm.out.sample0", &t);
    double r = rel_rows(dump_get(&ds, "llm.norm.out"), nref, 0, t.shape[0], C);
    cr_assert_leq(r, 1e-4, "%s norm rel %g", model, r);
    /* loss rows: index equal, nll abs ≤ 1e-4 */
    float *nll = qt_tensor_f32(g, "nll.loss_rows", &t);
    int64_t M = t.shape[0];
    cr_assert_eq(res.n_rows, M, "%s: %lld loss rows, golden %lld", model, (long long)res.n_rows, (long long)M);
    qv_tensor ti;
    cr_assert_eq(qv_st_get(g, "nll.loss_rows.index", &ti), QV_OK);
    cr_assert_arr_eq(res.index, ti.data, (size_t)(M * 2) * sizeof(int64_t));
    double worst = 0, sum = 0;
    for (int64_t k = 0; k < M; k++) {
        worst = fmax(worst, fabs(res.nll[k] - nll[k]));
        sum += nll[k];
    }
    cr_assert_leq(worst, 1e-4, "%s nll abs %g", model, worst);
    float *loss = qt_tensor_f32(g, "loss", &t);
    double want = n_samples == 4 ? loss[0] : sum / (double)M; /* one sample: the mean of its rows */
    cr_assert_leq(fabs(res.loss - want), 1e-4, "%s loss %.7f vs %.7f", model, res.loss, want);
    /* logits of sample 0's first loss rows */
    float *lg = qt_tensor_f32(g, "logits.loss_rows.sample0", &t);
    cr_assert_eq(t.shape[1], V);
    r = rel_rows(res.logits0, lg, 0, t.shape[0], V);
    cr_assert_leq(r, 1e-4, "%s logits rel %g", model, r);
    free(nref), free(nll), free(loss), free(lg);
    qv_st_close(g);
    dump_free(&ds);
    qv_llm_result_free(&res);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
}

Test(llm_forward, internvl2_qwen2_from_inputs_embeds) { internvl_case("internvl2-qwen2-tiny", 4); }

Test(llm_forward, internvl2_internlm2_from_inputs_embeds) { internvl_case("internvl2-internlm2-tiny", 1); }

/* ---- runner API ------------------------------------------------------------------------------ */

Test(llm_forward, layer_captures_equal_sub_blocks)
{
    qv_llm *m = open_model("models/internvl2-internlm2-tiny");
    qv_llm_batch b;
    cr_assert_eq(qv_llm_batch_load(qt_fixture("goldens/internvl2-internlm2-tiny/calib_batch.safetensors"), &b), QV_OK);
    cr_assert_eq(qv_llm_batch_load_embeds(&b, qt_fixture("goldens/internvl2-internlm2-tiny/forward.safetensors"),
                                          "llm.inputs_embeds"),
                 QV_OK);
    const int64_t T = b.B * b.L, C = m->C, I = m->I, HD = m->H * m->d;
    qv_llm_ctx ctx;
    cr_assert_eq(qv_llm_ctx_init(m, &ctx, b.B, b.L, b.attention_mask, NULL, NULL), QV_OK);
    qv_llm_layer layer;
    cr_assert_eq(qv_llm_layer_load(m, 0, &layer), QV_OK, "%s", qv_last_error());
    float *y = malloc(T * C * 4), *ai = malloc(T * C * 4), *oi = malloc(T * HD * 4), *ao = malloc(T * C * 4);
    float *mi = malloc(T * C * 4), *di = malloc(T * I * 4), *mo = malloc(T * C * 4);
    float *t1 = malloc(T * C * 4), *t2 = malloc(T * HD * 4), *t3 = malloc(T * I * 4);
    qv_llm_capture cap = {ai, oi, ao, mi, di, mo};
    cr_assert_eq(qv_llm_layer_forward(m, &layer.w, &ctx, b.inputs_embeds, y, QV_F32, &cap), QV_OK);
    /* attention module on the captured input reproduces its output and o_in */
    cr_assert_eq(qv_llm_attn_forward(m, &layer.w, &ctx, ai, t1, t2), QV_OK);
    cr_assert_arr_eq(t1, ao, T * C * 4);
    cr_assert_arr_eq(t2, oi, T * HD * 4);
    cr_assert_eq(qv_llm_linear_forward(m, &layer.w, QV_LIN_O, T, oi, t1), QV_OK);
    cr_assert_arr_eq(t1, ao, T * C * 4);
    cr_assert_eq(qv_llm_mlp_forward(m, &layer.w, T, mi, t1, t3), QV_OK);
    cr_assert_arr_eq(t1, mo, T * C * 4);
    cr_assert_arr_eq(t3, di, T * I * 4);
    cr_assert_eq(qv_llm_linear_forward(m, &layer.w, QV_LIN_DOWN, T, di, t1), QV_OK);
    cr_assert_arr_eq(t1, mo, T * C * 4);
    /* golden layer-0 output */
    qv_st_file *g = qt_open_st("goldens/internvl2-internlm2-tiny/forward.safetensors");
    qv_tensor t;
    float *ref = qt_tensor_f32(g, "llm.layers.0.out", &t);
    cr_assert_leq(qt_max_rel(y, ref, T * C), 1e-4);
    /* BF16 activation storage: input rounded, output within bf16 rounding of the F32 result */
    uint16_t *xb = malloc(T * C * 2), *yb = malloc(T * C * 2);
    qv_convert(xb, QV_BF16, b.inputs_embeds, QV_F32, T * C);
    cr_assert_eq(qv_llm_layer_forward(m, &layer.w, &ctx, xb, yb, QV_BF16, NULL), QV_OK);
    float *yf = malloc(T * C * 4);
    qv_convert(yf, QV_F32, yb, QV_BF16, T * C);
    cr_assert_leq(qt_max_rel(yf, ref, T * C), 2e-2);
    /* modified weights: zero wo → the attention adds nothing; the mmap is untouched */
    float *zero = calloc(C * HD, 4);
    cr_assert_eq(qv_llm_layer_set(m, &layer, QV_LIN_O, zero, NULL), QV_OK);
    cr_assert_eq(qv_llm_attn_forward(m, &layer.w, &ctx, ai, t1, NULL), QV_OK);
    for (int64_t i = 0; i < T * C; i++)
        cr_assert_eq(t1[i], 0.0f);
    qv_llm_layer fresh;
    cr_assert_eq(qv_llm_layer_load(m, 0, &fresh), QV_OK);
    cr_assert_eq(qv_llm_attn_forward(m, &fresh.w, &ctx, ai, t1, NULL), QV_OK);
    cr_assert_arr_eq(t1, ao, T * C * 4);
    float *wo = malloc(C * HD * 4);
    cr_assert_eq(qv_llm_layer_get(m, &fresh, QV_LIN_O, wo), QV_OK);
    cr_assert_neq(wo[0], 0.0f);
    qv_llm_layer_release(m, &fresh);
    qv_llm_layer_release(m, &layer);
    free(y), free(ai), free(oi), free(ao), free(mi), free(di), free(mo), free(t1), free(t2), free(t3), free(ref);
    free(xb), free(yb), free(yf), free(zero), free(wo);
    qv_st_close(g);
    qv_llm_ctx_free(&ctx);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
}

Test(llm_forward, names_table)
{
    qv_llm *m = open_model("models/internvl2-internlm2-tiny");
    char buf[256];
    cr_assert_str_eq(qv_llm_lin_name(m, 2, QV_LIN_QKV, buf, sizeof buf), "language_model.model.layers.2.attention.wqkv");
    cr_assert_str_eq(qv_llm_norm_name(m, 0, QV_LLM_NORM_MLP, buf, sizeof buf), "language_model.model.layers.0.ffn_norm");
    cr_assert(!qv_llm_has_lin(m, QV_LIN_Q));
    cr_assert(!qv_llm_lin_hooked(m, QV_LIN_QKV));
    cr_assert(qv_llm_lin_hooked(m, QV_LIN_O) && qv_llm_lin_hooked(m, QV_LIN_GATE) && qv_llm_lin_hooked(m, QV_LIN_DOWN));
    cr_assert_eq(qv_llm_lin_out(m, QV_LIN_QKV), 256);
    qv_llm_close(m);
    m = open_model("models/qwen2-tiny");
    cr_assert_str_eq(qv_llm_lin_name(m, 1, QV_LIN_V, buf, sizeof buf), "model.layers.1.self_attn.v_proj");
    cr_assert(qv_llm_lin_hooked(m, QV_LIN_V) && !qv_llm_lin_hooked(m, QV_LIN_Q) && !qv_llm_lin_hooked(m, QV_LIN_K));
    cr_assert(m->has_bias[QV_LIN_Q] && !m->has_bias[QV_LIN_O]);
    qv_llm_close(m);
    m = open_model("models/qwen2-vl-tiny");
    cr_assert_eq(m->rope.mrope_section[0], 4);
    cr_assert_str_eq(m->model_root, "model.");
    qv_llm_close(m);
    m = open_model("models/llava-onevision-qwen2-tiny");
    cr_assert(m->head.data != m->embed.data);
    qv_llm_close(m);
}

/* BF16 compute (weights from the mmap, activations rounded at each matmul input) can only run
 * where oneDNN has native BF16 matmuls; elsewhere the mode is refused up front. Tolerances are
 * those of bf16 rounding, not of the goldens. */
Test(llm_forward, bf16_mode)
{
    qv_llm_opts o = {QV_BF16};
    qv_llm *m = NULL;
    if (!qv_matmul_bf16_native()) {
        cr_assert_eq(qv_llm_open(qt_fixture("models/internvl2-qwen2-tiny"), &o, &m), QV_ERR_UNSUPPORTED);
        cr_assert_null(m);
        cr_skip_test("no native BF16 matmul on this host");
    }
    cr_assert_eq(qv_llm_open(qt_fixture("models/internvl2-qwen2-tiny"), &o, &m), QV_OK, "%s", qv_last_error());
    qv_llm_batch b;
    cr_assert_eq(qv_llm_batch_load(qt_fixture("goldens/internvl2-qwen2-tiny/calib_batch.safetensors"), &b), QV_OK);
    cr_assert_eq(qv_llm_batch_load_embeds(&b, qt_fixture("goldens/internvl2-qwen2-tiny/forward.safetensors"),
                                          "llm.inputs_embeds"),
                 QV_OK);
    dump_set ds = {.n = 1, .T = b.B * b.L};
    ds.b[0] = (dump_buf){"llm.layers.2.out", 128, NULL};
    qv_llm_dump dump = {&ds, d_want, d_put};
    qv_llm_result res;
    cr_assert_eq(qv_llm_forward(m, &b, &dump, NULL, 0, &res), QV_OK, "%s", qv_last_error());
    cr_assert_leq(fabs(res.loss - 8.353189), 0.05, "bf16 loss %f", res.loss);
    qv_st_file *g = qt_open_st("goldens/internvl2-qwen2-tiny/forward.safetensors");
    qv_tensor t;
    float *ref = qt_tensor_f32(g, "llm.layers.2.out", &t);
    double r = rel_rows(dump_get(&ds, "llm.layers.2.out"), ref, 0, b.L, 128);
    cr_assert_leq(r, 3e-2, "bf16 layer 2 rel %g", r);
    free(ref);
    qv_st_close(g);
    dump_free(&ds);
    qv_llm_result_free(&res);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
}

/* qwen2-vl-tiny, sample 0 (fixtures README §13.4–13.5): left padding (65 query rows that may
 * attend nothing → attention output 0, the flash-attention rule), positions 0..N−1 on all three
 * M-RoPE streams (MBQ), then the model's own M-RoPE positions (get_rope_index, hf_mrope.*). */
Test(llm_forward, qwen2_vl_left_padding_and_mrope)
{
    qv_llm *m = open_model("models/qwen2-vl-tiny");
    const char *fp = "goldens/qwen2-vl-tiny/llm_forward.safetensors", *bp = "goldens/qwen2-vl-tiny/llm_calib_batch.safetensors";
    qv_llm_batch b;
    cr_assert_eq(qv_llm_batch_load(qt_fixture(bp), &b), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_llm_batch_load_embeds(&b, qt_fixture(fp), "llm.inputs_embeds"), QV_OK, "%s", qv_last_error());
    cr_assert(b.B == 1 && b.L == 330 && !b.attention_mask[0] && b.attention_mask[65]);
    qv_st_file *g = qt_open_st(fp), *gb = qt_open_st(bp);
    qv_tensor t;
    float *nref = qt_tensor_f32(g, "llm.norm.out.sample0", &t), *nll = qt_tensor_f32(g, "nll.loss_rows", NULL);
    float *nll_mrope = qt_tensor_f32(g, "hf_mrope.nll.loss_rows", NULL);
    const int64_t rows = t.shape[0];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) { /* the model's own M-RoPE positions, sample 0 of [3, 4, 330] */
            qv_tensor pt;
            cr_assert_eq(qv_st_get(gb, "mrope.position_ids", &pt), QV_OK);
            b.mrope_position_ids = malloc(3 * 330 * sizeof(int64_t));
            for (int s = 0; s < 3; s++)
                memcpy(b.mrope_position_ids + s * 330, (const int64_t *)pt.data + s * 4 * 330, 330 * sizeof(int64_t));
        }
        dump_set ds = {.n = 1, .T = b.L};
        ds.b[0] = (dump_buf){"llm.norm.out", 128, NULL};
        qv_llm_dump dump = {&ds, d_want, d_put};
        qv_llm_result res;
        cr_assert_eq(qv_llm_forward(m, &b, &dump, NULL, 0, &res), QV_OK, "%s", qv_last_error());
        cr_assert_eq(res.n_rows, 50);
        const float *want = pass ? nll_mrope : nll;
        cr_assert_leq(qt_max_abs(res.nll, want, 50), 1e-4, "pass %d nll abs %g", pass, qt_max_abs(res.nll, want, 50));
        if (pass == 0) {
            double r = rel_rows(dump_get(&ds, "llm.norm.out"), nref, 0, rows, 128);
            cr_assert_leq(r, 1e-4, "norm rows 0..%lld rel %g", (long long)rows, r);
        } else {
            cr_assert_gt(qt_max_abs(res.nll, nll, 50), 1e-3, "M-RoPE positions had no effect");
        }
        dump_free(&ds);
        qv_llm_result_free(&res);
    }
    free(nref), free(nll), free(nll_mrope);
    free(b.mrope_position_ids);
    b.mrope_position_ids = NULL;
    qv_st_close(g);
    qv_st_close(gb);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
}
