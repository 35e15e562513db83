/* test_export_apply.c — the scale list and its application (ALGORITHMS.md §3.4, §3.6, §5.8, §9.3):
 * apply + W3 g128 fake quantization of decoder layer 0 equals the reference's final layer state
 * (search goldens' qmodel.layers.0.*, fixtures README §9, T = FP32, CUDA division form) bit for
 * bit on three decoder types; rule (E) arithmetic in BF16; the scales-DIR and .pt readers; the
 * MBQ .pt written by export reads back as the same list in T. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/export.h"
#include "export/plan.h"
#include "fp.h"
#include "io/safetensors.h"
#include "io/torchpt.h"
#include "quant/apply.h"
#include "util/export_util.h"
#include "util/testutil.h"

static void check_layer0(const char *model, const char *gold_prefix_strip)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    char *mpath = qx_fixture(rel), *sdir = qx_scales_dir(model, "search_mbq_w3g128_reweight_mae");
    snprintf(rel, sizeof rel, "goldens/%s/export_search_mbq_w3g128_reweight_mae.safetensors", model);
    qv_st_file *g = qt_open_st(rel);
    qv_mplan p;
    qv_scales sc;
    cr_assert_eq(qv_mplan_open(mpath, &p), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_scales_load(sdir, &sc), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_scales_resolve(&sc, qv_mplan_has_module, &p), QV_OK, "%s", qv_last_error());
    cr_assert(sc.cfg.present && sc.cfg.w_bit == 3 && sc.cfg.w_group == 128 && sc.cfg.zero_point && sc.cfg.a_bit == 16);
    cr_assert_eq(sc.n, 9);
    qv_wset ws;
    qv_wset_init(&ws);
    size_t applied;
    cr_assert_eq(qv_mplan_load_layer(&p, 0, &sc, QV_F32, &ws, &applied), QV_OK, "%s", qv_last_error());
    cr_assert_eq(applied, 3, "three scale groups per layer (GQA: no v->o)");
    size_t pl = strlen(gold_prefix_strip), compared = 0;
    for (size_t i = 0; i < ws.n; i++) {
        qv_wbuf *b = &ws.items[i];
        char gname[256];
        snprintf(gname, sizeof gname, "qmodel.layers.0.%s", b->name + pl);
        qv_tensor gt;
        cr_assert_eq(qv_st_get(g, gname, &gt), QV_OK, "%s", qv_last_error());
        size_t n = (size_t)(b->shape[0] * b->shape[1]);
        cr_assert_eq((size_t)qv_tensor_numel(&gt), n);
        float *got = b->data, *deq = NULL;
        if (b->ndim == 2) {
            qv_qlinear q;
            qv_qspec qs = {.bits = 3, .group = 128, .sym = false, .a_bit = 16, .div = QV_WQ_DIV_CUDA};
            qv_wq_spec s = qv_qspec_wq(&qs, QV_F32);
            cr_assert_eq(qv_qlinear_quantize(&q, b->data, b->shape[0], b->shape[1], &s, b->name), QV_OK);
            deq = malloc(n * sizeof *deq);
            qv_qlinear_dequant(&q, deq);
            qv_qlinear_free(&q);
            got = deq;
        }
        cr_assert(!memcmp(got, gt.data, n * sizeof(float)), "%s: %s differs from the reference (max abs %g)", model,
                  b->name, qt_max_abs(got, gt.data, n));
        free(deq);
        compared++;
    }
    cr_assert_geq(compared, 7);
    qv_wset_free(&ws);
    qv_scales_free(&sc);
    qv_mplan_close(&p);
    qv_st_close(g);
    free(mpath);
    free(sdir);
}

Test(export_apply, layer0_equals_reference_internvl2_qwen2) { check_layer0("internvl2-qwen2-tiny", "language_model.model.layers.0."); }
Test(export_apply, layer0_equals_reference_internvl2_internlm2) { check_layer0("internvl2-internlm2-tiny", "language_model.model.layers.0."); }
Test(export_apply, layer0_equals_reference_qwen2_vl) { check_layer0("qwen2-vl-tiny", "model.layers.0."); }

Test(export_apply, rule_e_in_bf16)
{
    /* every op rounded once to BF16: 1/3 -> 0x3EAB (0.333984375), 0.1*3 -> bf16(0.3) */
    float gamma[2] = {1.0f, qv_round_bf16(0.1f)}, s[2] = {3.0f, 3.0f};
    qv_apply_scale_norm(gamma, NULL, s, 2, QV_BF16);
    cr_assert_eq(qv_f32_to_bf16(gamma[0]), 0x3EAB);
    cr_assert_eq(gamma[1], qv_round_bf16(qv_round_bf16(0.1f) / 3.0f));
    float w[6] = {1, 1, 1, 1, 1, 1};
    float cs[3] = {qv_round_bf16(1.1f), 2, qv_round_bf16(0.7f)};
    qv_apply_scale_cols(w, 2, 3, cs, QV_BF16);
    cr_assert_eq(w[3], cs[0]);
    cr_assert_eq(w[5], cs[2]);
    /* prev linear: only the last len(s) rows and the matching bias entries are divided */
    float pw[8] = {6, 6, 6, 6, 6, 6, 6, 6}, pb[4] = {6, 6, 6, 6}, rs[2] = {2, 3};
    qv_apply_scale_rows(pw, pb, 4, 2, rs, 2, QV_BF16);
    cr_assert(pw[0] == 6 && pw[3] == 6 && pw[4] == 3 && pw[7] == 2 && pb[1] == 6 && pb[2] == 3 && pb[3] == 2);
    /* clip per (row, group) */
    float cw[8] = {-5, 1, 5, -1, 2, -3, 0.5f, 4}, mv[4] = {2, 0.5f, 10, 1};
    qv_apply_clip(cw, 2, 4, 2, mv, QV_F32);
    const float want[8] = {-2, 1, 0.5f, -0.5f, 2, -3, 0.5f, 1};
    cr_assert_arr_eq(cw, want, sizeof want);
}

Test(export_apply, reads_mbq_and_llm_awq_pt)
{
    qv_scales sc;
    cr_assert_eq(qv_scales_load(qt_fixture("goldens/export/pickled_by_python.pt"), &sc), QV_OK, "%s", qv_last_error());
    cr_assert_eq(sc.n, 2);
    cr_assert_str_eq(sc.entries[0].prev_op, "model.layers.0.input_layernorm");
    cr_assert_eq(sc.entries[0].n_layers, 2);
    cr_assert_eq(sc.entries[0].n, 4);
    cr_assert(sc.entries[0].s[2] == -1.0f);
    cr_assert_eq(sc.n_clip, 1);
    cr_assert_eq(sc.clips[0].co, 2);
    cr_assert_eq(sc.clips[0].ng, 3);
    cr_assert(!sc.cfg.present, "a .pt has no search config");
    qv_scales_free(&sc);
}

static bool has_tf5(void *ctx, const char *m)
{
    (void)ctx;
    return strncmp(m, "model.language_model.layers.", 28) == 0;
}

Test(export_apply, resolves_transformers5_names)
{
    qv_scales sc;
    memset(&sc, 0, sizeof sc);
    sc.path = strdup("list");
    sc.n = 1;
    sc.entries = calloc(1, sizeof *sc.entries);
    sc.entries[0].prev_op = strdup("model.layers.4.input_layernorm");
    sc.entries[0].n_layers = 1;
    sc.entries[0].layers = calloc(1, sizeof(char *));
    sc.entries[0].layers[0] = strdup("model.layers.4.self_attn.q_proj");
    cr_assert_eq(qv_scales_resolve(&sc, has_tf5, NULL), QV_OK);
    cr_assert_str_eq(sc.entries[0].prev_op, "model.language_model.layers.4.input_layernorm");
    cr_assert_str_eq(sc.entries[0].layers[0], "model.language_model.layers.4.self_attn.q_proj");
    free(sc.entries[0].layers[0]);
    sc.entries[0].layers[0] = strdup("vision.blocks.0.attn");
    cr_assert_eq(qv_scales_resolve(&sc, has_tf5, NULL), QV_ERR_INVALID);
    cr_assert(strstr(qv_last_error(), "vision.blocks.0.attn") != NULL);
    qv_scales_free(&sc);
}

Test(export_apply, mbq_pt_round_trip_in_model_dtype)
{
    char *mpath = qx_fixture("models/internvl2-qwen2-tiny");
    char *sdir = qx_scales_dir("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae");
    char *od = qt_tmpdir(), out[512];
    snprintf(out, sizeof out, "%s/internvl2_w3g128.pt", od);
    qv_export_opts o;
    qv_export_opts_init(&o);
    o.model = mpath;
    o.scales = sdir;
    o.out = out;
    o.format = QV_FMT_MBQ_PT;
    qv_export_stats st;
    cr_assert_eq(qv_export_run(&o, &st), QV_OK, "%s", qv_last_error());
    qv_scales a, b;
    cr_assert_eq(qv_scales_load(sdir, &a), QV_OK);
    cr_assert_eq(qv_scales_load(out, &b), QV_OK, "%s", qv_last_error());
    cr_assert_eq(a.n, b.n);
    for (size_t k = 0; k < a.n; k++) {
        cr_assert_str_eq(a.entries[k].prev_op, b.entries[k].prev_op);
        cr_assert_eq(a.entries[k].n_layers, b.entries[k].n_layers);
        for (size_t j = 0; j < a.entries[k].n_layers; j++)
            cr_assert_str_eq(a.entries[k].layers[j], b.entries[k].layers[j]);
        cr_assert_eq(a.entries[k].n, b.entries[k].n);
        for (int64_t j = 0; j < a.entries[k].n; j++) /* stored in the model dtype T = BF16 (§5.8) */
            cr_assert_eq(b.entries[k].s[j], qv_round_bf16(a.entries[k].s[j]));
    }
    cr_assert_eq(b.n_clip, 0, "MBQ files have no clip list");
    /* the raw structure: {"scale": [(str, (str, ...), BF16 tensor), ...]} and nothing else */
    qv_pt *doc;
    cr_assert_eq(qv_pt_load(out, &doc), QV_OK);
    const qv_pt_value *r = qv_pt_root(doc);
    cr_assert_eq(r->kind, QV_PT_DICT);
    cr_assert_eq(r->len, 1);
    const qv_pt_value *l = qv_pt_get(r, "scale");
    cr_assert_eq(l->kind, QV_PT_LIST);
    for (size_t k = 0; k < l->len; k++) {
        const qv_pt_value *e = l->items[k];
        cr_assert(e->kind == QV_PT_TUPLE && e->len == 3);
        cr_assert(e->items[0]->kind == QV_PT_STR && e->items[1]->kind == QV_PT_TUPLE && e->items[2]->kind == QV_PT_TENSOR);
        cr_assert_eq(e->items[2]->t.dtype, QV_BF16);
        cr_assert_eq(e->items[2]->t.ndim, 1);
    }
    qv_pt_free(doc);
    qv_scales_free(&a);
    qv_scales_free(&b);
    free(mpath);
    free(sdir);
    free(od);
}
