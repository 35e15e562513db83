/* test_kernels.c — fake quantization (simd/simd.h): the PyTorch goldens of fixtures README §8
 * (tests/fixtures/goldens/quant/quant_kernels.*, both division forms, bit for bit), the reference
 * MBQ search's final layer-0 weights (fused ⊙ s form, bit for bit), the test vectors of
 * ALGORITHMS.md §12.2, and every kernel set this host runs against the scalar reference, bit for
 * bit, on awkward shapes and values (ties, zero and constant groups, denormals, huge values,
 * NaN/Inf) for F32, BF16 and F16. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp.h"
#include "util/testutil.h"
#include "util/kernels_util.h"

#define GOLDEN "goldens/quant/quant_kernels.safetensors"

static const qv_fq W4G128 = {4, true, 128, QV_FQ_DIV_CPU};

/* index of the first element whose bits differ, or -1 */
static int64_t first_diff(const void *a, const void *b, size_t n, size_t esz)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp((const char *)a + i * esz, (const char *)b + i * esz, esz))
            return (int64_t)i;
    return -1;
}

/* ---- PyTorch goldens ---------------------------------------------------------------------- */

static void expect_golden(const qt_table *t, const qv_st_file *f, const char *input, const char *key,
                          const qv_fq *p)
{
    qv_tensor ti, tg;
    float *x = qt_tensor_f32(f, input, &ti);
    float *want = qt_tensor_f32(f, key, &tg);
    int64_t rows = ti.shape[0], cols = ti.shape[1];
    size_t n = (size_t)(rows * cols);
    float *got = malloc(n * sizeof *got);
    cr_assert_not_null(got);
    const char *why = NULL;
    cr_assert_eq(qv_fq_apply(t->k, got, QV_F32, x, QV_F32, NULL, QV_FQ_SCALE_NONE, rows, cols, p, &why), QV_OK,
                 "%s", why);
    int64_t d = first_diff(got, want, n, 4);
    cr_expect(d < 0, "%s: %s differs at [%lld][%lld]: %a, golden %a (%s division)", t->name, key,
              (long long)(d / cols), (long long)(d % cols), d < 0 ? 0.0f : got[d], d < 0 ? 0.0f : want[d],
              p->division == QV_FQ_DIV_CUDA ? "CUDA" : "CPU");
    free(x);
    free(want);
    free(got);
}

Test(kernels, golden_weights_bit_exact)
{
    static const struct {
        const char *name;
        qv_fq p;
    } cases[] = {
        {"w4_g128_asym", {4, true, 128, QV_FQ_DIV_CPU}},
        {"w3_g128_asym", {3, true, 128, QV_FQ_DIV_CPU}},
        {"w4_perchannel_sym", {4, false, -1, QV_FQ_DIV_CPU}},
        {"w8_perchannel_sym", {8, false, -1, QV_FQ_DIV_CPU}},
    };
    static const char *inputs[] = {"weight_real", "weight_synthetic"};
    qv_st_file *f = qt_open_st(GOLDEN);
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    for (int t = 0; t < nt; t++)
        for (int i = 0; i < 2; i++)
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
                for (int cuda = 0; cuda < 2; cuda++) {
                    char in[64], key[96];
                    qv_tensor probe;
                    snprintf(in, sizeof in, "%s.input", inputs[i]);
                    snprintf(key, sizeof key, "%s.%s%s", inputs[i], cases[c].name, cuda ? ".cuda" : "");
                    if (cuda && qv_st_get(f, key, &probe) != QV_OK) /* stored only where the forms differ */
                        snprintf(key, sizeof key, "%s.%s", inputs[i], cases[c].name);
                    qv_fq p = cases[c].p;
                    p.division = cuda ? QV_FQ_DIV_CUDA : QV_FQ_DIV_CPU;
                    expect_golden(&tabs[t], f, in, key, &p);
                }
    qv_st_close(f);
}

Test(kernels, golden_activations_bit_exact)
{
    /* quantize_activation_per_token_absmax(x, n_bits=8): symmetric, one group per token row */
    qv_st_file *f = qt_open_st(GOLDEN);
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    for (int t = 0; t < nt; t++) {
        expect_golden(&tabs[t], f, "act_real.input", "act_real.a8_pertoken_sym", &(qv_fq){8, false, -1, QV_FQ_DIV_CPU});
        expect_golden(&tabs[t], f, "act_real.input", "act_real.a8_pertoken_sym.cuda",
                      &(qv_fq){8, false, -1, QV_FQ_DIV_CUDA});
        expect_golden(&tabs[t], f, "act_synthetic.input", "act_synthetic.a8_pertoken_sym",
                      &(qv_fq){8, false, -1, QV_FQ_DIV_CPU});
        expect_golden(&tabs[t], f, "act_synthetic.input", "act_synthetic.a8_pertoken_sym",
                      &(qv_fq){8, false, -1, QV_FQ_DIV_CUDA});
    }
    qv_st_close(f);
}

Test(kernels, golden_walinear_w4a8)
{
    /* WALinear.from_float(q_proj, per_channel, per_token, w_bit=4, a_bit=8) on act_real: the CPU
     * run, so the CPU division form. weight_q bit-exact; the output is a matmul (fp32 in torch,
     * double here): rel <= 1e-5 (fixtures README §11 "rel"; measured 3.4e-7). */
    qv_st_file *f = qt_open_st(GOLDEN);
    qv_tensor tw, tx;
    float *w = qt_tensor_f32(f, "walinear_w4a8.weight_fp", &tw);
    float *wq_gold = qt_tensor_f32(f, "walinear_w4a8.weight_q", NULL);
    float *bias = qt_tensor_f32(f, "walinear_w4a8.bias", NULL);
    float *y_gold = qt_tensor_f32(f, "walinear_w4a8.output", NULL);
    float *x = qt_tensor_f32(f, "act_real.input", &tx);
    int64_t co = tw.shape[0], ci = tw.shape[1], tok = tx.shape[0];
    float *wq = malloc(sizeof(float) * (size_t)(co * ci)), *xq = malloc(sizeof(float) * (size_t)(tok * ci));
    float *y = malloc(sizeof(float) * (size_t)(tok * co));
    cr_assert(wq && xq && y);
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    for (int t = 0; t < nt; t++) {
        const qv_kernel_table *k = tabs[t].k;
        cr_assert_eq(qv_fq_apply(k, wq, QV_F32, w, QV_F32, NULL, QV_FQ_SCALE_NONE, co, ci,
                                 &(qv_fq){4, false, -1, QV_FQ_DIV_CPU}, NULL), QV_OK);
        cr_expect(first_diff(wq, wq_gold, (size_t)(co * ci), 4) < 0, "%s: walinear weight_q differs", tabs[t].name);
        cr_assert_eq(qv_fq_apply(k, xq, QV_F32, x, QV_F32, NULL, QV_FQ_SCALE_NONE, tok, ci,
                                 &(qv_fq){8, false, -1, QV_FQ_DIV_CPU}, NULL), QV_OK);
        for (int64_t i = 0; i < tok; i++)
            for (int64_t o = 0; o < co; o++) {
                double acc = bias[o];
                for (int64_t j = 0; j < ci; j++)
                    acc += (double)xq[i * ci + j] * (double)wq[o * ci + j];
                y[i * co + o] = (float)acc;
            }
        double rel = qt_max_rel(y, y_gold, (size_t)(tok * co));
        cr_expect(rel <= 1e-5, "%s: walinear output rel %.3g > 1e-5", tabs[t].name, rel);
    }
    free(w), free(wq_gold), free(bias), free(y_gold), free(x), free(wq), free(xq), free(y);
    qv_st_close(f);
}

/* The reference MBQ W3 g128 search of internvl2-qwen2-tiny, layer 0 (fixtures README §9): after
 * apply_mbq (columns ⊙ s; up_proj rows ⊘ s.002) the GPU fake-quantized each linear, so
 * FQ(T(W ⊙ s)) in the CUDA form must give its qmodel weights bit for bit. F32 model. */
Test(kernels, golden_mbq_layer0_fused_scale)
{
    static const struct {
        const char *fc;
        int scale;
    } fcs[] = {{"self_attn.q_proj", 0}, {"self_attn.k_proj", 0}, {"self_attn.v_proj", 0},
               {"mlp.gate_proj", 1},    {"mlp.down_proj", 2}};
    const qv_fq p = {3, true, 128, QV_FQ_DIV_CUDA};
    qv_st_file *m = qt_open_st("models/internvl2-qwen2-tiny/model.safetensors");
    qv_st_file *g = qt_open_st("goldens/internvl2-qwen2-tiny/search_mbq_w3g128_layer0.safetensors");
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    for (size_t i = 0; i <= sizeof fcs / sizeof fcs[0]; i++) {
        bool up = i == sizeof fcs / sizeof fcs[0];
        char name[128], sname[32];
        snprintf(name, sizeof name, "language_model.model.layers.0.%s.weight", up ? "mlp.up_proj" : fcs[i].fc);
        snprintf(sname, sizeof sname, "scale.%03d", up ? 1 : fcs[i].scale);
        qv_tensor tw;
        float *w = qt_tensor_f32(m, name, &tw), *s = qt_tensor_f32(g, sname, NULL);
        snprintf(name, sizeof name, "qmodel.layers.0.%s.weight", up ? "mlp.up_proj" : fcs[i].fc);
        float *want = qt_tensor_f32(g, name, NULL);
        int64_t co = tw.shape[0], ci = tw.shape[1];
        size_t n = (size_t)(co * ci);
        float *got = malloc(n * 4), *muldiv = malloc(n * 4);
        cr_assert(got && muldiv);
        if (up) { /* up_proj: columns ⊙ s.001 (post_attention_layernorm group), then rows ⊘ s.002 */
            float *s2 = qt_tensor_f32(g, "scale.002", NULL);
            for (int64_t r = 0; r < co; r++)
                for (int64_t j = 0; j < ci; j++)
                    w[r * ci + j] = (w[r * ci + j] * s[j]) / s2[r];
            free(s2);
        }
        for (int t = 0; t < nt; t++) {
            cr_assert_eq(qv_fq_apply(tabs[t].k, got, QV_F32, w, QV_F32, s, up ? QV_FQ_SCALE_NONE : QV_FQ_SCALE_MUL,
                                     co, ci, &p, NULL), QV_OK);
            int64_t d = first_diff(got, want, n, 4);
            cr_expect(d < 0, "%s: %s differs from the reference at %lld: %a vs %a", tabs[t].name, name, (long long)d,
                      d < 0 ? 0.0f : got[d], d < 0 ? 0.0f : want[d]);
            if (up)
                continue;
            /* the search's candidate form is the same values divided back by s */
            cr_assert_eq(qv_fq_apply(tabs[t].k, muldiv, QV_F32, w, QV_F32, s, QV_FQ_SCALE_MULDIV, co, ci, &p, NULL),
                         QV_OK);
            for (size_t e = 0; e < n; e++)
                cr_assert_eq(qv_f32_bits(muldiv[e]), qv_f32_bits(want[e] / s[e % (size_t)ci]),
                             "%s: %s MULDIV != FQ(W*s)/s at %zu", tabs[t].name, name, e);
        }
        free(w), free(s), free(want), free(got), free(muldiv);
    }
    qv_st_close(m);
    qv_st_close(g);
}

/* ---- ALGORITHMS.md §12.2 test vectors (numpy, i.e. the CPU division form) ------------------ */

static void fq_vec(const qv_kernel_table *k, float *out, const float *in, qv_dtype dt, int64_t rows, int64_t cols,
                   const qv_fq *p)
{
    void *x = qt_t_from_f32(in, (size_t)(rows * cols), dt); /* inputs are first rounded to T */
    cr_assert_eq(qv_fq_apply(k, out, QV_F32, x, dt, NULL, QV_FQ_SCALE_NONE, rows, cols, p, NULL), QV_OK);
    free(x);
}

Test(kernels, alg_12_2_vectors)
{
    static const float t1[8] = {-1, -0.5f, 0, 0.3f, 0.7f, 1.2f, 2.0f, 0.25f};
    static const float t1_f32[8] = {-0.8571428656578064f, -0.4285714328289032f, 0,
                                    0.4285714328289032f,  0.8571428656578064f,  1.2857142686843872f,
                                    2.142857074737549f,   0.4285714328289032f};
    static const uint16_t t1_f16[8] = {0xbadb, 0xb6db, 0x0000, 0x36db, 0x3adb, 0x3d24, 0x4049, 0x36db};
    static const float t2_f32[8] = {-1, -0.4285714626312256f, 0, 0.2857142984867096f,
                                    0.5714285969734192f, 1.1428571939468384f, 2, 0.2857142984867096f};
    static const float t2_f16[8] = {-1, -0.5712890625f, 0, 0.28564453125f, 0.5712890625f, 1.142578125f, 2,
                                    0.28564453125f};
    static const float t3[8] = {127, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 3.49f, -127};
    static const float t3_out[8] = {127, 0, 2, 2, 0, -2, 3, -127};
    const qv_fq a3 = {3, true, -1, QV_FQ_DIV_CPU}, s4 = {4, false, -1, QV_FQ_DIV_CPU};
    const qv_fq s8 = {8, false, -1, QV_FQ_DIV_CPU};
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    for (int t = 0; t < nt; t++) {
        const char *isa = tabs[t].name;
        float o[8];
        fq_vec(tabs[t].k, o, t1, QV_F32, 1, 8, &a3);
        for (int i = 0; i < 8; i++)
            cr_expect_eq(qv_f32_bits(o[i]), qv_f32_bits(t1_f32[i]), "%s 12.2/1 fp32 [%d] %a", isa, i, o[i]);
        fq_vec(tabs[t].k, o, t1, QV_F16, 1, 8, &a3);
        for (int i = 0; i < 8; i++)
            cr_expect_eq(qv_f32_to_f16(o[i]), t1_f16[i], "%s 12.2/1 fp16 [%d] 0x%04x", isa, i, qv_f32_to_f16(o[i]));
        fq_vec(tabs[t].k, o, t1, QV_F32, 2, 4, &s4);
        for (int i = 0; i < 8; i++)
            cr_expect_eq(qv_f32_bits(o[i]), qv_f32_bits(t2_f32[i]), "%s 12.2/2 fp32 [%d] %a", isa, i, o[i]);
        fq_vec(tabs[t].k, o, t1, QV_F16, 2, 4, &s4);
        for (int i = 0; i < 8; i++)
            cr_expect_eq(qv_f32_bits(o[i]), qv_f32_bits(t2_f16[i]), "%s 12.2/2 fp16 [%d] %a", isa, i, o[i]);
        /* §12.2/3 prints −0 for −0.5; the reference's `+ zeros` gives +0 (the goldens hold no −0),
         * and so do we: compare values and check the sign explicitly */
        for (int dt = 0; dt < 2; dt++) {
            fq_vec(tabs[t].k, o, t3, dt ? QV_F16 : QV_F32, 1, 8, &s8);
            for (int i = 0; i < 8; i++)
                cr_expect(o[i] == t3_out[i], "%s 12.2/3 [%d] %g", isa, i, o[i]);
            cr_expect(!signbit(o[4]), "%s 12.2/3: -0.5 must give +0 like the goldens", isa);
        }
    }
    /* scale and zero point of 12.2/1: s = 0.4285714328289032 / 0.428466796875, z = 2 */
    float sc;
    uint8_t z, codes[8];
    cr_assert_eq(qv_fq_codes(codes, &sc, &z, t1, QV_F32, 1, 8, &a3, NULL, NULL), QV_OK);
    cr_expect(sc == 0.4285714328289032f && z == 2, "fp32 s %a z %d", sc, z);
    uint16_t h[8];
    for (int i = 0; i < 8; i++)
        h[i] = qv_f32_to_f16(t1[i]);
    cr_assert_eq(qv_fq_codes(codes, &sc, &z, h, QV_F16, 1, 8, &a3, NULL, NULL), QV_OK);
    cr_expect(sc == 0.428466796875f && z == 2, "fp16 s %a z %d", sc, z);
}

/* ---- parameter checks ----------------------------------------------------------------------- */

Test(kernels, invalid_parameters)
{
    float w[300] = {0}, o[300], s[300] = {0};
    const char *why = NULL;
    cr_expect_eq(qv_fq_apply(NULL, o, QV_F32, w, QV_F32, NULL, QV_FQ_SCALE_NONE, 1, 300, &W4G128, &why),
                 QV_ERR_INVALID);
    cr_expect_str_eq(why, "group 128 does not divide 300 columns");
    cr_expect_not_null(qv_fq_check(&(qv_fq){1, true, -1, QV_FQ_DIV_CPU}, QV_F32, QV_F32, QV_FQ_SCALE_NONE, NULL, 8));
    cr_expect_not_null(qv_fq_check(&(qv_fq){9, true, -1, QV_FQ_DIV_CPU}, QV_F32, QV_F32, QV_FQ_SCALE_NONE, NULL, 8));
    cr_expect_not_null(qv_fq_check(&(qv_fq){4, true, 0, QV_FQ_DIV_CPU}, QV_F32, QV_F32, QV_FQ_SCALE_NONE, NULL, 8));
    cr_expect_not_null(qv_fq_check(&(qv_fq){4, true, -2, QV_FQ_DIV_CPU}, QV_F32, QV_F32, QV_FQ_SCALE_NONE, NULL, 8));
    cr_expect_not_null(qv_fq_check(&W4G128, QV_I8, QV_I8, QV_FQ_SCALE_NONE, NULL, 128));
    cr_expect_not_null(qv_fq_check(&W4G128, QV_BF16, QV_F16, QV_FQ_SCALE_NONE, NULL, 128));
    cr_expect_not_null(qv_fq_check(&W4G128, QV_F32, QV_F32, QV_FQ_SCALE_MULDIV, NULL, 128));
    cr_expect_not_null(qv_fq_check(&W4G128, QV_F32, QV_F32, QV_FQ_SCALE_NONE, NULL, 0));
    cr_expect_null(qv_fq_check(&W4G128, QV_BF16, QV_F32, QV_FQ_SCALE_MULDIV, s, 256));
    cr_expect_eq(qv_fq_apply(NULL, o, QV_F32, w, QV_F32, NULL, QV_FQ_SCALE_NONE, -1, 128, &W4G128, &why),
                 QV_ERR_INVALID);
    cr_expect_eq(qv_fq_apply(NULL, o, QV_F32, w, QV_F32, NULL, QV_FQ_SCALE_NONE, 0, 128, &W4G128, NULL), QV_OK);
    uint8_t c[300], zz[4];
    float sc[4];
    cr_expect_eq(qv_fq_codes(c, sc, zz, w, QV_F32, 1, 300, &W4G128, NULL, &why), QV_ERR_INVALID);
    cr_expect_eq(qv_fq_tensor(NULL, o, QV_F32, w, QV_F32, 0, &W4G128, &why), QV_ERR_INVALID);
}
