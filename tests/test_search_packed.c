/* test_search_packed.c — the packed GEMM (src/nn/fqgemm.h) inside the decoder runner and the scale
 * search:
 *   - the attention and MLP modules of both tiny InternVL2 decoders (InternLM2 wqkv; Qwen2 q/k/v
 *     with biases) with their linears packed (the emulated AMX set, and every native set this host
 *     has) and the fcs fake-quantized on the fly, against the same modules on oneDNN F32 with the
 *     weights fake-quantized by qv_fq_rows_ref: rel ≤ 1e-2. The packed path rounds each linear's
 *     input to BF16 (2⁻⁹ relative per element) and the reference does not; measured ≈ 2e-3. A
 *     wiring error (unquantized weight, wrong scale, wrong linear) moves the output by > 5e-2:
 *     checked by running the same comparison without the fake quantization;
 *   - the search's packed branch (src/quant/search.c) on the emulated AMX set in F32 compute with
 *     BF16 reference arithmetic (QVLM_FQGEMM=emu-amx), MBQ W3g128 and W4A8, against the oneDNN
 *     path: every loss rel ≤ 0.01 (measured ≈ 3e-4);
 *   - on hosts with a native kernel and BF16 matmuls (AMX / AVX-512-BF16): the same searches in
 *     BF16 compute, packed vs QVLM_FQGEMM=0 (oneDNN), every loss rel ≤ 0.1 (the two paths differ
 *     in accumulation order and both round outputs to BF16), the chosen index logged. Skipped
 *     elsewhere. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp.h"
#include "kernel_impl.h"
#include "nn/fqgemm.h"
#include "nn/matmul.h"
#include "quant/layerwise.h"
#include "util/kernels_util.h"
#include "util/search_fixture.h"
#include "util/testutil.h"

typedef struct packed_view {
    qv_llm_weights w;          /* the view with packed linears */
    qv_llm_weights ref;        /* oneDNN F32 with the fcs fake-quantized by the reference */
    qv_fqgemm_w *pk[QV_LIN_COUNT];
    float *wq[QV_LIN_COUNT];
} packed_view;

static void view_init(packed_view *v, qv_llm *m, const qv_llm_layer *layer, const qv_gemm_kernels *k,
                      const qv_llm_lin *lins, int nl, const qv_llm_lin *fcs, int nf, const qv_fqgemm_q *q)
{
    memset(v, 0, sizeof *v);
    v->w = layer->w;
    v->ref = layer->w;
    for (int i = 0; i < nl; i++) {
        const qv_llm_lin l = lins[i];
        const int64_t N = qv_llm_lin_out(m, l), K = qv_llm_lin_in(m, l);
        uint16_t *b = malloc((size_t)(N * K) * 2);
        const float *wf = layer->w.w[l];
        for (int64_t j = 0; j < N * K; j++)
            b[j] = qv_f32_to_bf16(wf[j]); /* exact: the checkpoint is BF16 */
        cr_assert_eq(qv_fqgemm_pack(k, b, N, K, &v->pk[l]), QV_OK, "%s", qv_last_error());
        v->w.packed[l] = v->pk[l];
        for (int f = 0; f < nf; f++) {
            if (fcs[f] != l || !q)
                continue;
            uint16_t *o = malloc((size_t)(N * K) * 2);
            qv_fq_rows_ref(o, QV_BF16, b, QV_BF16, q->s, q->mode, N, K, &q->p);
            v->wq[l] = malloc((size_t)(N * K) * sizeof(float));
            for (int64_t j = 0; j < N * K; j++)
                v->wq[l][j] = qv_bf16_to_f32(o[j]);
            free(o);
            v->w.fq[l] = q;
            v->ref.w[l] = v->wq[l];
        }
        free(b);
    }
}

static void view_free(packed_view *v)
{
    for (int l = 0; l < QV_LIN_COUNT; l++) {
        qv_fqgemm_free(v->pk[l]);
        free(v->wq[l]);
    }
}

static void modules_case(const char *model, const qv_gemm_kernels *k)
{
    char p[256];
    snprintf(p, sizeof p, "models/%s", model);
    qv_llm *m;
    cr_assert_eq(qv_llm_open(qt_fixture(p), NULL, &m), QV_OK, "%s", qv_last_error());
    qv_llm_layer layer;
    cr_assert_eq(qv_llm_layer_load(m, 0, &layer), QV_OK, "%s", qv_last_error());
    const int64_t B = 2, L = 21, T = B * L, C = m->C;
    qv_llm_ctx ctx;
    uint8_t mask[2 * 21];
    for (int i = 0; i < B * L; i++)
        mask[i] = i < 21 || i % 21 < 15; /* the second sample padded after 15 tokens */
    cr_assert_eq(qv_llm_ctx_init(m, &ctx, B, L, mask, NULL, NULL), QV_OK);
    qt_rng g = {0xabc};
    float *x = malloc((size_t)(T * C) * sizeof *x);
    float *ya = malloc((size_t)(T * C) * 4), *yb = malloc((size_t)(T * C) * 4);
    for (int64_t i = 0; i < T * C; i++)
        x[i] = qv_round_bf16(qt_normal(&g));
    uint16_t s[512];
    for (int i = 0; i < 512; i++)
        s[i] = qv_f32_to_bf16(powf(10.0f, (qt_uniform(&g) - 0.5f)));
    const qv_fqgemm_q q = {s, QV_FQ_SCALE_MULDIV, {3, true, 32, QV_FQ_DIV_CUDA}};
    const bool packed_qkv = qv_llm_has_lin(m, QV_LIN_QKV);
    const qv_llm_lin attn_lins[4] = {QV_LIN_QKV, QV_LIN_O, QV_LIN_Q, QV_LIN_K};
    const qv_llm_lin qwen_lins[4] = {QV_LIN_Q, QV_LIN_K, QV_LIN_V, QV_LIN_O};
    const qv_llm_lin *al = packed_qkv ? attn_lins : qwen_lins;
    const int nal = packed_qkv ? 2 : 4, naf = packed_qkv ? 1 : 3;
    const qv_llm_lin mlp_lins[3] = {QV_LIN_GATE, QV_LIN_UP, QV_LIN_DOWN};

    for (int withq = 1; withq >= 0; withq--) {
        packed_view va, vm;
        view_init(&va, m, &layer, k, al, nal, al, naf, &q);
        view_init(&vm, m, &layer, k, mlp_lins, 3, mlp_lins, 2, &q);
        /* withq = 0: the packed path quantizes, the reference does not: must be far apart */
        const qv_llm_weights *ra = withq ? &va.ref : &layer.w, *rm = withq ? &vm.ref : &layer.w;
        cr_assert_eq(qv_llm_attn_forward(m, &va.w, &ctx, x, ya, NULL), QV_OK, "%s", qv_last_error());
        cr_assert_eq(qv_llm_attn_forward(m, ra, &ctx, x, yb, NULL), QV_OK, "%s", qv_last_error());
        const double ea = qt_max_rel(ya, yb, (size_t)(T * C));
        cr_assert_eq(qv_llm_mlp_forward(m, &vm.w, T, x, ya, NULL), QV_OK, "%s", qv_last_error());
        cr_assert_eq(qv_llm_mlp_forward(m, rm, T, x, yb, NULL), QV_OK, "%s", qv_last_error());
        const double em = qt_max_rel(ya, yb, (size_t)(T * C));
        if (withq) {
            cr_expect_leq(ea, 1e-2, "%s %s: attention rel %g", model, k->name, ea);
            cr_expect_leq(em, 1e-2, "%s %s: MLP rel %g", model, k->name, em);
            fprintf(stderr, "[packed] %s %s: attention rel %.2g, MLP rel %.2g\n", model, k->name, ea, em);
        } else {
            cr_expect_geq(ea, 5e-2, "%s %s: fake quantization changed the attention by only %g", model, k->name, ea);
            cr_expect_geq(em, 5e-2, "%s %s: fake quantization changed the MLP by only %g", model, k->name, em);
        }
        view_free(&va);
        view_free(&vm);
    }
    free(x), free(ya), free(yb);
    qv_llm_ctx_free(&ctx);
    qv_llm_layer_release(m, &layer);
    qv_llm_close(m);
}

Test(search_packed, modules_on_packed_weights, .timeout = 300)
{
    for (int i = 0; i < QV_GEMM_ISA_COUNT; i++) {
        const qv_gemm_kernels *k = qv_gemm_kernels_get((qv_gemm_isa)i);
        if (!k || i == QV_GEMM_EMU_AVX512BF16) /* one emulation is enough here (test_fqgemm runs both) */
            continue;
        modules_case("internvl2-internlm2-tiny", k);
        modules_case("internvl2-qwen2-tiny", k);
    }
}

/* ---- the search in BF16 compute, packed vs oneDNN --------------------------------------------- */

/* The layer-by-layer search on a fixture's layer-0 inputs (the first `samples` samples) in BF16
 * reference arithmetic, with QVLM_FQGEMM = fqgemm (NULL: unset) and the given compute dtype;
 * W3g128 or W4A8, n_grid grid points. */
static void search_bf16(const char *model, qv_qresult *res, const char *fqgemm, qv_dtype compute, bool wa,
                        int64_t samples, int n_grid)
{
    qt_search_fixture f;
    const qv_llm_opts lo = {.compute = compute};
    qt_search_fixture_load(model, &lo, samples, &f);
    qv_quant_opts o = {.method = QV_METHOD_MBQ, .w_bit = wa ? 4 : 3, .a_bit = wa ? 8 : 16, .w_group = wa ? -1 : 128,
                       .zero_point = !wa, .division = QV_FQ_DIV_CUDA, .wa = wa, .n_grid = n_grid,
                       .loss_mode = QV_LOSS_MODE_MAE, .T = QV_BF16};
    if (fqgemm)
        setenv("QVLM_FQGEMM", fqgemm, 1);
    else
        unsetenv("QVLM_FQGEMM");
    qv_layerwise lw = {.m = f.m, .o = &o, .b = &f.b, .x0 = f.x0};
    cr_assert_eq(qv_quantize_layers(&lw, res), QV_OK, "%s", qv_last_error());
    unsetenv("QVLM_FQGEMM");
    qt_search_fixture_free(&f);
}

/* Both models x (W3g128, W4A8) x (candidate prepared per grid point, fake-quantized on the fly in
 * the GEMM: QVLM_FQGEMM_FLY_ROWS=0), or (all = false) InternLM2 W3g128 prepared and Qwen2 W4A8 on
 * the fly. */
static void compare_searches(const char *what, const char *fq_a, const char *fq_b, qv_dtype compute, double tol,
                             bool all, int64_t samples, int n_grid)
{
    static const char *models[] = {"internvl2-internlm2-tiny", "internvl2-qwen2-tiny"};
    for (int mi = 0; mi < 2; mi++)
        for (int wa = 0; wa < 2; wa++)
            for (int fly = 0; fly < 2; fly++) {
                if (!all && (wa != mi || fly != mi))
                    continue;
                qv_qresult a = {0}, b = {0};
                if (fly)
                    setenv("QVLM_FQGEMM_FLY_ROWS", "0", 1);
                search_bf16(models[mi], &a, fq_a, compute, wa, samples, n_grid);
                unsetenv("QVLM_FQGEMM_FLY_ROWS");
                search_bf16(models[mi], &b, fq_b, compute, wa, samples, n_grid);
                cr_assert_eq(a.n, b.n);
                int agree = 0;
                double worst = 0;
                for (size_t e = 0; e < a.n; e++) {
                    for (int i = 0; i < n_grid; i++) {
                        const double r = fabs(a.e[e].loss[i] - b.e[e].loss[i]) / fmax(fabs(b.e[e].loss[i]), 1e-30);
                        worst = fmax(worst, r);
                        cr_expect_leq(r, tol, "%s %s %s %s entry %zu grid %d: packed loss %g, oneDNN %g", what,
                                      models[mi], wa ? "W4A8" : "W3g128", fly ? "on the fly" : "prepared", e, i,
                                      a.e[e].loss[i], b.e[e].loss[i]);
                    }
                    agree += a.e[e].best == b.e[e].best;
                }
                fprintf(stderr, "[packed] %s %s %s %s: worst loss rel %.2g, chosen index agrees %d/%zu\n", what,
                        models[mi], wa ? "W4A8" : "W3g128", fly ? "on the fly" : "prepared", worst, agree, a.n);
                qv_qresult_free(&a);
                qv_qresult_free(&b);
            }
}

/* F32 compute, BF16 reference arithmetic: the search's packed branch on the emulated AMX set
 * (QVLM_FQGEMM=emu-amx) against the oneDNN F32 path, on one sample and 5 grid points (the
 * emulation is slow). The packed path also rounds every linear's input to BF16, which the F32
 * path does not; measured worst ≈ 3e-4 on the full fixture. */
Test(search_packed, search_packed_branch_emulated, .timeout = 600)
{
    if (!qv_gemm_kernels_get(QV_GEMM_EMU_AMX))
        cr_skip_test("the emulated AMX set needs AVX2");
    compare_searches("emu-amx vs oneDNN F32", "emu-amx", NULL, QV_F32, 0.01, false, 1, 5);
}

Test(search_packed, bf16_search_packed_vs_onednn, .timeout = 600)
{
    if (!qv_fqgemm_native() || !qv_matmul_bf16_native())
        cr_skip_test("no AMX / AVX-512-BF16 kernel on this host (or QVLM_ISA lowers it): BF16 search not run");
    compare_searches(qv_gemm_kernels_active()->name, "1", "0", QV_BF16, 0.1, true, 4, 20);
}
