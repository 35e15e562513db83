/* test_fp8.c — FP8 fake quantization in the runner (ALGORITHMS-2.md §4.4, §4.5; fixtures README
 * §14.5, goldens/internvl3-tiny/fp8_act.* and export_fp8.* sliced from goldens/internvl3-tiny/fp8.*):
 *   - dynamic per-token activations of the layer-0 input (bf16, 826 rows incl. padding): the
 *     token scales, the E4M3 codes and the dequantized values bit-exact;
 *   - the FP8_DYNAMIC model of internvl3-tiny through the layer hook: every layer-0 weight equals
 *     the golden's dequantized FP8 weight bit for bit, and q_proj with per-token FP8 inputs on
 *     sample 0 (bias off) equals dequant(x)·dequant(W_q)ᵀ within rel 1e-5 (FP32 sums in another
 *     order; measured 1.1e-7);
 *   - static scales: qv_fp8_scale, per-tensor and per-head qdq against the formula, the zero row
 *     and the clamp; the KV cache: K after RoPE and V of the attention equal the static qdq of
 *     the FP projections. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../simd/fp.h"
#include "llm/llm_internal.h"
#include "nn/fp8q.h"
#include "quant/fp8.h"
#include "util/testutil.h"

#define IVL3 "models/internvl3-tiny"

Test(fp8, per_token_activations_equal_golden)
{
    qv_st_file *g = qt_open_st("goldens/internvl3-tiny/fp8_act.safetensors");
    qv_tensor tx, tc;
    float *x = qt_tensor_f32(g, "llm.inputs_embeds", &tx);
    const int64_t rows = tx.shape[0] * tx.shape[1], C = tx.shape[2];
    cr_assert_eq(rows, 826);
    float *gs = qt_tensor_f32(g, "llm.layers.0.input.token_scale", NULL);
    float *gd = qt_tensor_f32(g, "llm.layers.0.input.dequant", NULL);
    cr_assert_eq(qv_st_get(g, "llm.layers.0.input.fp8", &tc), QV_OK);
    cr_assert_eq(tc.dtype, QV_F8_E4M3);
    float *y = malloc((size_t)(rows * C) * sizeof *y), *s = malloc((size_t)rows * sizeof *s);
    uint8_t *codes = malloc((size_t)(rows * C));
    qv_fp8_qdq_tokens(y, x, rows, C, QV_BF16, s, codes);
    size_t bad_s = 0, bad_c = 0, bad_d = 0;
    for (int64_t r = 0; r < rows; r++) {
        bad_s += s[r] != gs[r];
        for (int64_t j = 0; j < C; j++) {
            bad_c += codes[r * C + j] != ((const uint8_t *)tc.data)[r * C + j];
            bad_d += y[r * C + j] != gd[r * C + j];
        }
    }
    cr_expect_eq(bad_s, 0, "%zu token scales differ", bad_s);
    cr_expect_eq(bad_c, 0, "%zu FP8 codes differ", bad_c);
    cr_expect_eq(bad_d, 0, "%zu dequantized values differ", bad_d);
    /* in place gives the same */
    qv_fp8_qdq_tokens(x, x, rows, C, QV_BF16, NULL, NULL);
    cr_expect_eq(memcmp(x, y, (size_t)(rows * C) * sizeof *y), 0);
    free(x), free(gs), free(gd), free(y), free(s), free(codes);
    qv_st_close(g);
}

Test(fp8, fp8_dynamic_layer_and_q_proj_product)
{
    qv_llm *m;
    cr_assert_eq(qv_llm_open(qt_fixture(IVL3), NULL, &m), QV_OK, "%s", qv_last_error());
    qv_fp8_model f;
    cr_assert_eq(qv_fp8_open(&f, m, NULL, QV_BF16), QV_OK, "%s", qv_last_error());
    cr_expect_eq(f.act, QV_FP8_ACT_TOKEN);
    cr_expect_not(f.w_per_tensor);
    cr_expect_eq(f.n.llm, 21);
    cr_expect_eq(f.n.vision + f.n.projector + f.n.kv_attn, 0);
    cr_assert_eq(f.rc.n_ignore, 3);
    cr_expect_str_eq(f.rc.ignore[0], "re:.*lm_head");
    cr_expect_str_eq(f.rc.ignore[1], "re:mlp1.*");
    cr_expect_str_eq(f.rc.ignore[2], "re:vision_model.*");
    cr_assert_eq(qv_fp8_attach(&f, m), QV_OK, "%s", qv_last_error());
    qv_llm_layer layer;
    cr_assert_eq(qv_llm_layer_load(m, 0, &layer), QV_OK, "%s", qv_last_error());
    cr_assert_not_null(layer.w.fp8);
    qv_st_file *gw = qt_open_st("goldens/internvl3-tiny/export_fp8.safetensors");
    static const struct {
        qv_llm_lin l;
        const char *name;
    } lins[] = {{QV_LIN_Q, "self_attn.q_proj"}, {QV_LIN_K, "self_attn.k_proj"},  {QV_LIN_V, "self_attn.v_proj"},
                {QV_LIN_O, "self_attn.o_proj"}, {QV_LIN_GATE, "mlp.gate_proj"}, {QV_LIN_UP, "mlp.up_proj"},
                {QV_LIN_DOWN, "mlp.down_proj"}};
    for (size_t i = 0; i < QV_ARRAY_LEN(lins); i++) {
        const int64_t n = qv_llm_lin_out(m, lins[i].l) * qv_llm_lin_in(m, lins[i].l);
        float *w = malloc((size_t)n * sizeof *w);
        cr_assert_eq(qv_llm_layer_get(m, &layer, lins[i].l, w), QV_OK);
        char key[128];
        snprintf(key, sizeof key, "language_model.model.layers.0.%s.weight_dequant", lins[i].name);
        float *gd = qt_tensor_f32(gw, key, NULL);
        size_t bad = 0;
        for (int64_t k = 0; k < n; k++)
            bad += w[k] != gd[k];
        cr_expect_eq(bad, 0, "%s: %zu weights differ from the golden FP8 dequantization", lins[i].name, bad);
        cr_expect_eq(layer.w.fp8->act[lins[i].l], QV_FP8_ACT_TOKEN, "%s", lins[i].name);
        free(w), free(gd);
    }
    qv_st_close(gw);
    /* q_proj on sample 0 of the layer-0 input, per-token FP8 inputs, no bias */
    qv_st_file *g = qt_open_st("goldens/internvl3-tiny/fp8_act.safetensors");
    qv_tensor tp;
    float *x = qt_tensor_f32(g, "llm.inputs_embeds", NULL);
    float *gp = qt_tensor_f32(g, "llm.layers.0.input.dequant_x_q_proj.weight_dequant.fp32.sample0", &tp);
    const int64_t T = tp.shape[0], N = tp.shape[1];
    qv_llm_weights w = layer.w;
    w.bias[QV_LIN_Q] = NULL;
    float *y = malloc((size_t)(T * N) * sizeof *y);
    cr_assert_eq(qv_llm_linear_forward(m, &w, QV_LIN_Q, T, x, y), QV_OK, "%s", qv_last_error());
    double rel = qt_max_rel(y, gp, (size_t)(T * N));
    cr_expect_leq(rel, 1e-5, "q_proj product rel %.3g", rel);
    fprintf(stderr, "[fp8] q_proj product vs golden: rel %.3g\n", rel);
    /* without FP8 inputs the product is measurably different (the test can fail) */
    w.fp8 = NULL;
    cr_assert_eq(qv_llm_linear_forward(m, &w, QV_LIN_Q, T, x, y), QV_OK);
    cr_expect_gt(qt_max_rel(y, gp, (size_t)(T * N)), 1e-3);
    free(x), free(gp), free(y);
    qv_st_close(g);
    qv_llm_layer_release(m, &layer);
    m->layer_hook = NULL;
    qv_fp8_close(&f);
    qv_llm_close(m);
}

/* The formula of fp8q.h, written out for one value (BF16). */
static float ref_qdq(float x, float s)
{
    float q = qv_round_bf16(qv_round_bf16(x) / s);
    q = q > 448.0f ? 448.0f : q < -448.0f ? -448.0f : q;
    return qv_round_bf16(qv_e4m3_to_f32(qv_f32_to_e4m3(q)) * s);
}

Test(fp8, static_scales_zero_rows_and_clamp)
{
    cr_expect_eq(qv_fp8_scale(0.0f, QV_BF16), 0.0078125f, "zero absmax -> eps(BF16)");
    cr_expect_eq(qv_fp8_scale(0.0f, QV_F16), 0.0009765625f);
    cr_expect_eq(qv_fp8_scale(0.0f, QV_F32), 1.1920928955078125e-07f);
    cr_expect_eq(qv_fp8_scale(12.3456f, QV_BF16), qv_round_bf16(qv_round_bf16(12.3456f) / 448.0f));
    cr_expect_eq(qv_fp8_scale(12.3456f, QV_F32), 12.3456f / 448.0f);
    /* a zero row: scale eps, all zeros back; a row whose bf16 scale rounds down clamps at 448 */
    const int64_t C = 17;
    float x[3 * 17], y[3 * 17], s[3];
    for (int j = 0; j < C; j++) {
        x[j] = 0.0f;
        x[C + j] = (float)(j - 8) * 0.37f;
        x[2 * C + j] = j == 5 ? -100.0f : (float)j * 0.01f;
    }
    qv_fp8_qdq_tokens(y, x, 3, C, QV_BF16, s, NULL);
    cr_expect_eq(s[0], 0.0078125f);
    for (int j = 0; j < C; j++)
        cr_expect_eq(y[j], 0.0f);
    for (int r = 1; r < 3; r++) {
        float a = 0.0f;
        for (int j = 0; j < C; j++)
            a = fmaxf(a, fabsf(qv_round_bf16(x[r * C + j])));
        cr_expect_eq(s[r], qv_round_bf16(a / 448.0f), "row %d", r);
        for (int j = 0; j < C; j++)
            cr_expect_eq(y[r * C + j], ref_qdq(x[r * C + j], s[r]), "row %d col %d", r, j);
    }
    /* static per tensor and per group (the KV heads) */
    const float sc[2] = {qv_fp8_scale(0.5f, QV_BF16), qv_fp8_scale(3.0f, QV_BF16)};
    float z[3 * 16], w[3 * 16];
    for (int i = 0; i < 48; i++)
        z[i] = (float)((i * 37) % 23 - 11) * 0.173f;
    qv_fp8_qdq_static(w, z, 3, 16, sc, 2, QV_BF16);
    for (int i = 0; i < 48; i++)
        cr_expect_eq(w[i], ref_qdq(z[i], sc[(i % 16) / 8]), "element %d", i);
    qv_fp8_qdq_static(w, z, 3, 16, sc, 1, QV_BF16);
    for (int i = 0; i < 48; i++) {
        cr_expect_eq(w[i], ref_qdq(z[i], sc[0]), "element %d", i);
        cr_expect_leq(fabsf(w[i]), qv_round_bf16(448.0f * sc[0]), "clamped at the 448 code");
    }
}

Test(fp8, kv_cache_is_the_static_qdq_of_k_after_rope_and_v)
{
    qv_llm *m;
    cr_assert_eq(qv_llm_open(qt_fixture(IVL3), NULL, &m), QV_OK, "%s", qv_last_error());
    qv_llm_layer layer;
    cr_assert_eq(qv_llm_layer_load(m, 1, &layer), QV_OK);
    const int64_t L = 9, C = m->C, qd = m->H * m->d, kd = m->KV * m->d;
    qv_llm_ctx ctx;
    cr_assert_eq(qv_llm_ctx_init(m, &ctx, 1, L, NULL, NULL, NULL), QV_OK);
    float *x = malloc((size_t)(L * C) * sizeof *x), *q = malloc((size_t)(L * qd) * sizeof *q);
    float *k0 = malloc((size_t)(L * kd) * sizeof *k0), *v0 = malloc((size_t)(L * kd) * sizeof *v0);
    float *k1 = malloc((size_t)(L * kd) * sizeof *k1), *v1 = malloc((size_t)(L * kd) * sizeof *v1);
    for (int64_t i = 0; i < L * C; i++)
        x[i] = sinf((float)i * 0.731f) * 2.0f;
    cr_assert_eq(qv_llm_qkv(m, &layer.w, &ctx, x, q, k0, v0, NULL), QV_OK);
    for (int per_head = 0; per_head < 2; per_head++) {
        float ks[4], vs[4];
        const int64_t n = per_head ? m->KV : 1;
        for (int64_t h = 0; h < n; h++) {
            ks[h] = qv_fp8_scale(1.5f + (float)h, QV_BF16);
            vs[h] = qv_fp8_scale(0.25f * (float)(h + 1), QV_BF16);
        }
        qv_llm_fp8 f8 = {.T = QV_BF16, .kv_n = n, .k_scale = ks, .v_scale = vs};
        qv_llm_weights w = layer.w;
        w.fp8 = &f8;
        cr_assert_eq(qv_llm_qkv(m, &w, &ctx, x, q, k1, v1, NULL), QV_OK);
        size_t bad = 0, changed = 0;
        for (int64_t i = 0; i < L * kd; i++) {
            const int64_t h = (i % kd) / m->d * (n > 1);
            bad += k1[i] != ref_qdq(k0[i], ks[h]) || v1[i] != ref_qdq(v0[i], vs[h]);
            changed += k1[i] != k0[i];
        }
        cr_expect_eq(bad, 0, "%s: %zu K/V values differ from the static qdq", per_head ? "per head" : "per tensor", bad);
        cr_expect_gt(changed, 0);
    }
    free(x), free(q), free(k0), free(v0), free(k1), free(v1);
    qv_llm_ctx_free(&ctx);
    qv_llm_layer_release(m, &layer);
    qv_llm_close(m);
}
