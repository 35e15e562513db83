/* test_export_formats.c — `qvlm export` of every fixture model in every format, read back with
 * `qvlm verify --against` (bit-exact dequantized weights; every other tensor equal) and without
 * a model (unpack, re-pack, same bytes); every quantization_config against FORMATS.md's field
 * lists (§2.1, §3.6, §4.1); the sharded layout and index of a sharded input (§1.5); copied
 * tokenizer files; FP8 weights and scales equal to the InternVL3 FP8 golden (fixtures README
 * §14.5); the FP8 recipe of the issue with static input and KV-cache scales. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "export/formats.h"
#include "fp.h"
#include "io/safetensors.h"
#include "util/export_util.h"
#include "util/testutil.h"

static const char *models[] = {"internvl2-qwen2-tiny", "internvl2-internlm2-tiny", "qwen2-vl-tiny", "internvl3-tiny",
                               "llava-onevision-qwen2-tiny"};

static void run_ok(const char *what, const char *fmt_args)
{
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "%s", fmt_args);
    cr_assert_eq(rc, 0, "%s: exit %d\nstdout: %s\nstderr: %s", what, rc, out, err);
    free(out);
    free(err);
}

static void verify_ok(const char *export_dir, const char *model, const char *scales, const char *extra)
{
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "verify '%s' --against '%s' %s%s%s %s --mismatches-only", export_dir, model,
                        scales ? "--scales '" : "", scales ? scales : "", scales ? "'" : "", extra ? extra : "");
    cr_assert_eq(rc, 0, "verify %s: exit %d\n%s%s", export_dir, rc, out, err);
    cr_assert(strstr(out, " 0 mismatches, max abs error 0\n") != NULL, "verify %s:\n%s", export_dir, out);
    free(out);
    free(err);
    rc = qt_run_cli(&out, &err, "verify '%s' --mismatches-only", export_dir);
    if (strstr(export_dir, "/fake")) {
        cr_assert_eq(rc, 1, "a fake export has nothing to unpack without --against");
    } else {
        cr_assert_eq(rc, 0, "verify %s alone: exit %d\n%s%s", export_dir, rc, out, err);
        cr_assert(strstr(out, " 0 mismatches") != NULL, "%s", out);
    }
    free(out);
    free(err);
}

Test(export_formats, every_model_every_format_reads_back_exactly, .timeout = 600)
{
    for (size_t m = 0; m < QV_ARRAY_LEN(models); m++) {
        char rel[256], cmd[2048];
        snprintf(rel, sizeof rel, "models/%s", models[m]);
        char *model = qx_fixture(rel), *scales = qx_scales_dir(models[m], "search_mbq_w3g128_reweight_mae"), *od = qt_tmpdir();
        static const struct {
            const char *fmt, *extra;
        } cases[] = {
            {"fake", ""},
            {"gptq", ""},
            {"compressed-tensors", ""},
            {"awq", "--w-bit 4"},          /* the same scales, quantized at 4 bits */
            {"fp8", ""},
        };
        for (size_t c = 0; c < QV_ARRAY_LEN(cases); c++) {
            char out[600];
            snprintf(out, sizeof out, "%s/%s", od, cases[c].fmt);
            snprintf(cmd, sizeof cmd, "export '%s' --scales '%s' --format %s -o '%s' %s --quiet", model, scales, cases[c].fmt,
                     out, cases[c].extra);
            run_ok(models[m], cmd);
            verify_ok(out, model, scales, NULL);
            cr_assert_eq(qx_dir_entries(od), (int)c + 1, "no temporary leftovers beside the output");
        }
        free(model);
        free(scales);
        free(od);
    }
}

Test(export_formats, weight_activation_search_as_int_quantized)
{
    char *model = qx_fixture("models/internvl2-qwen2-tiny");
    char *scales = qx_scales_dir("internvl2-qwen2-tiny", "search_mbq_w4a8_reweight_mae"), *od = qt_tmpdir(), out[600],
         cmd[2048];
    snprintf(out, sizeof out, "%s/ct", od);
    snprintf(cmd, sizeof cmd, "export '%s' --scales '%s' --format compressed-tensors -o '%s' --quiet", model, scales, out);
    run_ok("w4a8", cmd);
    verify_ok(out, model, scales, NULL);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    json_object *j = qx_json_file(cfg), *q, *g, *w, *in, *v;
    cr_assert(json_object_object_get_ex(j, "quantization_config", &q));
    cr_assert(json_object_object_get_ex(q, "format", &v));
    cr_assert_str_eq(json_object_get_string(v), "int-quantized");
    cr_assert(json_object_object_get_ex(q, "config_groups", &g));
    cr_assert(json_object_object_get_ex(json_object_object_get(g, "group_0"), "weights", &w));
    cr_assert(json_object_object_get_ex(json_object_object_get(g, "group_0"), "input_activations", &in));
    cr_assert_eq(json_object_get_int(json_object_object_get(w, "num_bits")), 4);
    cr_assert_str_eq(json_object_get_string(json_object_object_get(w, "strategy")), "channel");
    cr_assert(json_object_get_boolean(json_object_object_get(w, "symmetric")));
    cr_assert_eq(json_object_get_int(json_object_object_get(in, "num_bits")), 8);
    cr_assert_str_eq(json_object_get_string(json_object_object_get(in, "strategy")), "token");
    cr_assert(json_object_get_boolean(json_object_object_get(in, "dynamic")));
    json_object_put(j);
    /* fake export of a W-A search: per-channel symmetric W4, exactly as WALinear builds it */
    snprintf(out, sizeof out, "%s/fake", od);
    snprintf(cmd, sizeof cmd, "export '%s' --scales '%s' --format fake -o '%s' --quiet", model, scales, out);
    run_ok("w4a8 fake", cmd);
    verify_ok(out, model, scales, NULL);
    free(model);
    free(scales);
    free(od);
}

Test(export_formats, plain_rtn_without_scales)
{
    char *model = qx_fixture("models/qwen2-tiny"), *od = qt_tmpdir(), out[600], cmd[2048];
    snprintf(out, sizeof out, "%s/ct", od);
    snprintf(cmd, sizeof cmd, "export '%s' --format compressed-tensors --w-bit 4 --w-group 128 -o '%s' --quiet", model, out);
    run_ok("rtn", cmd);
    char *o2, *e2;
    int rc = qt_run_cli(&o2, &e2, "verify '%s' --against '%s' --mismatches-only", out, model);
    cr_assert_eq(rc, 0, "%s%s", o2, e2);
    free(o2);
    free(e2);
    /* qwen2-tiny ties its embeddings: no lm_head tensor, the module is still ignored by name */
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    json_object *j = qx_json_file(cfg), *q, *ig;
    cr_assert(json_object_object_get_ex(j, "quantization_config", &q));
    cr_assert(json_object_object_get_ex(q, "ignore", &ig));
    cr_assert_eq(json_object_array_length(ig), 1);
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(ig, 0)), "lm_head");
    json_object_put(j);
    free(model);
    free(od);
}

/* ---- quantization_config field lists (FORMATS.md) -------------------------------------------- */

static const char *const ct_top[] = {"quant_method", "format", "quantization_status", "config_groups", "ignore",
                                     "kv_cache_scheme", "global_compression_ratio", "version", "sparsity_config",
                                     "transform_config"};
static const char *const ct_scheme[] = {"targets", "weights", "input_activations", "output_activations", "format"};
static const char *const ct_args[] = {"num_bits", "type", "symmetric", "group_size", "strategy", "block_structure",
                                      "dynamic", "actorder", "observer", "observer_kwargs"};

static json_object *export_config(const char *model_name, const char *search, const char *fmt, const char *extra,
                                  char **dir_out)
{
    char rel[256], cmd[2048], out[600];
    snprintf(rel, sizeof rel, "models/%s", model_name);
    char *model = qx_fixture(rel), *scales = search ? qx_scales_dir(model_name, search) : NULL, *od = qt_tmpdir();
    snprintf(out, sizeof out, "%s/out", od);
    snprintf(cmd, sizeof cmd, "export '%s' %s%s%s --format %s -o '%s' %s --quiet", model, scales ? "--scales '" : "",
             scales ? scales : "", scales ? "'" : "", fmt, out, extra ? extra : "");
    run_ok(fmt, cmd);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    json_object *j = qx_json_file(cfg);
    if (dir_out)
        *dir_out = strdup(out);
    free(model);
    free(scales);
    free(od);
    return j;
}

static void assert_keys(json_object *o, const char *const *keys, size_t n, const char *what)
{
    char why[128];
    cr_assert(qx_keys_exactly(o, keys, n, why, sizeof why), "%s: %s", what, why);
}

Test(export_formats, quantization_configs_match_formats_md)
{
    json_object *j, *q, *v;
    /* AWQ (FORMATS.md §2.1) */
    j = export_config("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae", "awq", "--w-bit 4", NULL);
    cr_assert(json_object_object_get_ex(j, "quantization_config", &q));
    static const char *const awq_keys[] = {"quant_method", "bits", "group_size", "zero_point", "version",
                                           "modules_to_not_convert"};
    assert_keys(q, awq_keys, QV_ARRAY_LEN(awq_keys), "awq");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(q, "quant_method")), "awq");
    cr_assert_eq(json_object_get_int(json_object_object_get(q, "bits")), 4);
    cr_assert_eq(json_object_get_int(json_object_object_get(q, "group_size")), 128);
    cr_assert(json_object_get_boolean(json_object_object_get(q, "zero_point")));
    cr_assert_str_eq(json_object_get_string(json_object_object_get(q, "version")), "gemm");
    v = json_object_object_get(q, "modules_to_not_convert");
    cr_assert_eq(json_object_array_length(v), 2);
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 0)), "mlp1");
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 1)), "vision_model");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(j, "torch_dtype")), "float16");
    json_object_put(j);

    /* GPTQ (§3.6): the loaders' required keys plus the common ones */
    j = export_config("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae", "gptq", NULL, NULL);
    cr_assert(json_object_object_get_ex(j, "quantization_config", &q));
    static const char *const gptq_keys[] = {"quant_method", "bits", "group_size", "desc_act", "sym", "checkpoint_format",
                                            "lm_head", "true_sequential", "static_groups", "pack_dtype", "dynamic",
                                            "block_name_to_quantize", "meta"};
    assert_keys(q, gptq_keys, QV_ARRAY_LEN(gptq_keys), "gptq");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(q, "checkpoint_format")), "gptq");
    cr_assert(!json_object_get_boolean(json_object_object_get(q, "desc_act")));
    cr_assert(!json_object_get_boolean(json_object_object_get(q, "sym")), "asymmetric as searched");
    cr_assert_eq(json_object_get_int(json_object_object_get(q, "bits")), 3);
    v = json_object_object_get(q, "dynamic");
    cr_assert(json_object_object_get_ex(v, "-:vision_model\\..*", NULL), "%s", json_object_to_json_string(v));
    cr_assert(json_object_object_get_ex(v, "-:mlp1\\..*", NULL));
    cr_assert_str_eq(json_object_get_string(json_object_object_get(q, "block_name_to_quantize")), "language_model.model.layers");
    json_object_put(j);

    /* compressed-tensors pack-quantized (§4.1, §4.2) */
    j = export_config("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae", "compressed-tensors", NULL, NULL);
    cr_assert(json_object_object_get_ex(j, "quantization_config", &q));
    assert_keys(q, ct_top, QV_ARRAY_LEN(ct_top), "ct");
    json_object *g = json_object_object_get(json_object_object_get(q, "config_groups"), "group_0");
    assert_keys(g, ct_scheme, QV_ARRAY_LEN(ct_scheme), "ct scheme");
    assert_keys(json_object_object_get(g, "weights"), ct_args, QV_ARRAY_LEN(ct_args), "ct weights");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(q, "format")), "pack-quantized");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(g, "format")), "pack-quantized");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(q, "quantization_status")), "compressed");
    v = json_object_object_get(q, "ignore");
    cr_assert_eq(json_object_array_length(v), 3);
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 0)), "language_model.lm_head");
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 1)), "re:mlp1.*");
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 2)), "re:vision_model.*");
    json_object *w = json_object_object_get(g, "weights");
    cr_assert_eq(json_object_get_int(json_object_object_get(w, "num_bits")), 3);
    cr_assert(!json_object_get_boolean(json_object_object_get(w, "symmetric")));
    cr_assert_eq(json_object_get_int(json_object_object_get(w, "group_size")), 128);
    cr_assert_str_eq(json_object_get_string(json_object_object_get(w, "strategy")), "group");
    cr_assert(json_object_is_type(json_object_object_get(g, "input_activations"), json_type_null));
    json_object_put(j);

    /* FP8 float-quantized with the FP8_DYNAMIC default */
    j = export_config("internvl3-tiny", NULL, "fp8", NULL, NULL);
    cr_assert(json_object_object_get_ex(j, "quantization_config", &q));
    assert_keys(q, ct_top, QV_ARRAY_LEN(ct_top), "fp8");
    g = json_object_object_get(json_object_object_get(q, "config_groups"), "group_0");
    assert_keys(g, ct_scheme, QV_ARRAY_LEN(ct_scheme), "fp8 scheme");
    assert_keys(json_object_object_get(g, "weights"), ct_args, QV_ARRAY_LEN(ct_args), "fp8 weights");
    assert_keys(json_object_object_get(g, "input_activations"), ct_args, QV_ARRAY_LEN(ct_args), "fp8 inputs");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(q, "format")), "float-quantized");
    w = json_object_object_get(g, "weights");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(w, "type")), "float");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(w, "strategy")), "channel");
    json_object_put(j);
}

/* ---- layout ---------------------------------------------------------------------------------- */

Test(export_formats, sharded_input_gives_sharded_output_and_index)
{
    char *dir;
    json_object *j = export_config("internvl2-internlm2-tiny", "search_mbq_w3g128_reweight_mae", "compressed-tensors", NULL, &dir);
    json_object_put(j);
    char p[800];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    cr_assert(qv_path_exists(p));
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    cr_assert(qv_path_exists(p));
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    json_object *idx = qx_json_file(p), *meta, *map, *ts;
    cr_assert(json_object_object_get_ex(idx, "metadata", &meta));
    cr_assert(json_object_object_get_ex(meta, "total_size", &ts));
    cr_assert(json_object_object_get_ex(idx, "weight_map", &map));
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(dir, &ck), QV_OK, "%s", qv_last_error());
    cr_assert_eq((size_t)json_object_object_length(map), ck->n, "every tensor listed once");
    int64_t total = 0;
    for (size_t i = 0; i < ck->n; i++) {
        const qv_st_file *f;
        const qv_st_entry *e = qv_checkpoint_entry(ck, i, &f);
        total += (int64_t)(e->end - e->begin);
        json_object *sn;
        cr_assert(json_object_object_get_ex(map, e->name, &sn), "%s not in weight_map", e->name);
        cr_assert(strstr(f->path, json_object_get_string(sn)) != NULL, "%s is not in %s", e->name, json_object_get_string(sn));
    }
    cr_assert_eq(json_object_get_int64(ts), total, "total_size is the sum of tensor bytes");
    /* the quantized tensors of a layer sit in the shard that held its weight */
    qv_checkpoint *src;
    char *model = qx_fixture("models/internvl2-internlm2-tiny");
    cr_assert_eq(qv_checkpoint_open(model, &src), QV_OK);
    const qv_st_file *fs, *fo;
    cr_assert_not_null(qv_checkpoint_find(src, "language_model.model.layers.2.attention.wqkv.weight", &fs));
    cr_assert_not_null(qv_checkpoint_find(ck, "language_model.model.layers.2.attention.wqkv.weight_packed", &fo));
    cr_assert_str_eq(strrchr(fs->path, '/'), strrchr(fo->path, '/'));
    cr_assert_null(qv_checkpoint_find(ck, "language_model.model.layers.2.attention.wqkv.weight", NULL));
    /* tokenizer and other files copied byte for byte */
    static const char *aux[] = {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"};
    for (size_t i = 0; i < QV_ARRAY_LEN(aux); i++) {
        char a[800], b[800], *da, *db;
        size_t la, lb;
        snprintf(a, sizeof a, "%s/%s", model, aux[i]);
        snprintf(b, sizeof b, "%s/%s", dir, aux[i]);
        cr_assert_eq(qv_read_file(a, 1 << 24, &da, &la), QV_OK);
        cr_assert_eq(qv_read_file(b, 1 << 24, &db, &lb), QV_OK, "%s not copied", aux[i]);
        cr_assert(la == lb && !memcmp(da, db, la), "%s differs", aux[i]);
        qv_free(da);
        qv_free(db);
    }
    qv_checkpoint_close(src);
    qv_checkpoint_close(ck);
    json_object_put(idx);
    free(model);
    free(dir);
}

Test(export_formats, fp8_equals_compressed_tensors_golden)
{
    char *dir;
    json_object_put(export_config("internvl3-tiny", NULL, "fp8", NULL, &dir));
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(dir, &ck), QV_OK);
    qv_st_file *g = qt_open_st("goldens/internvl3-tiny/export_fp8.safetensors");
    static const char *mods[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                 "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    for (size_t i = 0; i < QV_ARRAY_LEN(mods); i++) {
        char a[256], b[256];
        qv_tensor ta, tb;
        snprintf(a, sizeof a, "language_model.model.layers.0.%s.weight", mods[i]);
        snprintf(b, sizeof b, "language_model.model.layers.0.%s.weight_fp8", mods[i]);
        cr_assert_eq(qv_checkpoint_get(ck, a, &ta), QV_OK);
        cr_assert_eq(qv_st_get(g, b, &tb), QV_OK);
        cr_assert_eq(ta.dtype, QV_F8_E4M3);
        cr_assert(!memcmp(ta.data, tb.data, qv_tensor_nbytes(&tb)), "%s codes", mods[i]);
        snprintf(a, sizeof a, "language_model.model.layers.0.%s.weight_scale", mods[i]);
        cr_assert_eq(qv_checkpoint_get(ck, a, &ta), QV_OK);
        cr_assert_eq(qv_st_get(g, a, &tb), QV_OK);
        cr_assert_eq(ta.dtype, QV_BF16);
        cr_assert_eq(ta.ndim, 2);
        cr_assert(!memcmp(ta.data, tb.data, qv_tensor_nbytes(&tb)), "%s scales", mods[i]);
        /* the golden's dequantized weight: T(code) * s in BF16 */
        snprintf(a, sizeof a, "language_model.model.layers.0.%s", mods[i]);
        snprintf(b, sizeof b, "language_model.model.layers.0.%s.weight_dequant", mods[i]);
        qv_fp8linear q;
        cr_assert_eq(qv_ct_fp8_read(ck, a, &q), QV_OK, "%s", qv_last_error());
        cr_assert_eq(qv_st_get(g, b, &tb), QV_OK);
        size_t n = (size_t)(q.co * q.ci);
        float *deq = malloc(n * sizeof *deq), *gold = malloc(n * sizeof *gold);
        qv_fp8linear_dequant(&q, deq);
        qv_convert(gold, QV_F32, tb.data, tb.dtype, n);
        cr_assert(!memcmp(deq, gold, n * sizeof *deq), "%s dequant (max abs %g)", mods[i], qt_max_abs(deq, gold, n));
        free(deq);
        free(gold);
        qv_fp8linear_free(&q);
    }
    /* vision tower and projector untouched, LM head untouched */
    qv_tensor t;
    cr_assert_eq(qv_checkpoint_get(ck, "vision_model.encoder.layers.0.attn.qkv.weight", &t), QV_OK);
    cr_assert_eq(t.dtype, QV_BF16);
    cr_assert_eq(qv_checkpoint_get(ck, "mlp1.1.weight", &t), QV_OK);
    cr_assert_eq(t.dtype, QV_BF16);
    cr_assert_eq(qv_checkpoint_get(ck, "language_model.lm_head.weight", &t), QV_OK);
    cr_assert_eq(t.dtype, QV_BF16);
    qv_st_close(g);
    qv_checkpoint_close(ck);
    free(dir);
}

/* Scales DIR holding only FP8 calibration statistics for internvl3-tiny's decoder. */
static char *fp8_stats_dir(float *k_absmax)
{
    char *d = qt_tmpdir(), path[512];
    static char names[64][128];
    static float vals[64];
    qv_st_item items[64];
    size_t n = 0;
    static const char *lin[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    for (int l = 0; l < 3; l++) {
        for (size_t i = 0; i < QV_ARRAY_LEN(lin); i++) {
            snprintf(names[n], sizeof names[n], "absmax.input.language_model.model.layers.%d.%s", l, lin[i]);
            vals[n] = 3.0f + (float)(l * 7 + (int)i);
            items[n] = (qv_st_item){.name = names[n], .dtype = QV_F32, .ndim = 1, .shape = {1}, .data = &vals[n]};
            n++;
        }
        for (int kv = 0; kv < 2; kv++) {
            snprintf(names[n], sizeof names[n], "absmax.%c.language_model.model.layers.%d.self_attn", kv ? 'v' : 'k', l);
            vals[n] = kv ? 0.0f /* a zero absmax becomes eps(T) */ : k_absmax[l];
            items[n] = (qv_st_item){.name = names[n], .dtype = QV_F32, .ndim = 1, .shape = {1}, .data = &vals[n]};
            n++;
        }
    }
    snprintf(path, sizeof path, "%s/scales.safetensors", d);
    cr_assert_eq(qv_st_write_file(path, items, n, NULL, 0), QV_OK, "%s", qv_last_error());
    return d;
}

Test(export_formats, fp8_recipe_with_static_inputs_and_kv_cache)
{
    float kabs[3] = {448.0f * 0.5f, 12.3456f, 1000.0f};
    char *stats = fp8_stats_dir(kabs), *od = qt_tmpdir(), recipe[600], out[600], cmd[2048];
    snprintf(recipe, sizeof recipe, "%s/recipe.yaml", od);
    const char *yaml = "quant_stage:\n"
                       "  quant_modifiers:\n"
                       "    QuantizationModifier:\n"
                       "      targets: [\"Linear\"]\n"
                       "      scheme: FP8\n"
                       "      ignore: [\"re:.*lm_head\", \"re:mlp1.*\", \"re:vision_model.*\"]\n"
                       "      kv_cache_scheme: {num_bits: 8, type: float, strategy: tensor, dynamic: false, symmetric: true}\n";
    cr_assert_eq(qv_write_file_atomic(recipe, yaml, strlen(yaml)), QV_OK);
    char *model = qx_fixture("models/internvl3-tiny");
    snprintf(out, sizeof out, "%s/fp8", od);
    snprintf(cmd, sizeof cmd, "export '%s' --scales '%s' --format fp8 --recipe '%s' -o '%s' --quiet", model, stats, recipe, out);
    run_ok("fp8 recipe", cmd);
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(out, &ck), QV_OK);
    qv_tensor t;
    /* per-tensor weight scale, static input scale = T(absmax / 448) */
    cr_assert_eq(qv_checkpoint_get(ck, "language_model.model.layers.1.mlp.up_proj.weight_scale", &t), QV_OK);
    cr_assert_eq(t.ndim, 1);
    cr_assert_eq(t.shape[0], 1);
    cr_assert_eq(qv_checkpoint_get(ck, "language_model.model.layers.1.mlp.up_proj.input_scale", &t), QV_OK);
    cr_assert_eq(t.dtype, QV_BF16);
    cr_assert_eq(qv_bf16_to_f32(*(uint16_t *)t.data), qv_round_bf16((3.0f + 7 + 5) / 448.0f));
    for (int l = 0; l < 3; l++) {
        char n[128];
        snprintf(n, sizeof n, "language_model.model.layers.%d.self_attn.k_scale", l);
        cr_assert_eq(qv_checkpoint_get(ck, n, &t), QV_OK, "%s", n);
        cr_assert_eq(t.dtype, QV_BF16);
        cr_assert_eq(qv_bf16_to_f32(*(uint16_t *)t.data), qv_round_bf16(qv_round_bf16(kabs[l]) / 448.0f), "layer %d", l);
        snprintf(n, sizeof n, "language_model.model.layers.%d.self_attn.v_scale", l);
        cr_assert_eq(qv_checkpoint_get(ck, n, &t), QV_OK);
        cr_assert_eq(*(uint16_t *)t.data, 0x3C00, "zero absmax -> eps(BF16) = 2^-7");
    }
    cr_assert_null(qv_checkpoint_find(ck, "vision_model.encoder.layers.0.attn.qkv.input_scale", NULL));
    qv_checkpoint_close(ck);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/config.json", out);
    json_object *j = qx_json_file(cfg), *q = json_object_object_get(j, "quantization_config");
    json_object *kv = json_object_object_get(q, "kv_cache_scheme");
    assert_keys(kv, ct_args, QV_ARRAY_LEN(ct_args), "kv_cache_scheme");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(kv, "observer")), "static_minmax");
    json_object *in = json_object_object_get(json_object_object_get(json_object_object_get(q, "config_groups"), "group_0"),
                                             "input_activations");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(in, "strategy")), "tensor");
    cr_assert(!json_object_get_boolean(json_object_object_get(in, "dynamic")));
    json_object *ig = json_object_object_get(q, "ignore");
    cr_assert_eq(json_object_array_length(ig), 3);
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(ig, 0)), "re:.*lm_head");
    json_object_put(j);
    char *o2, *e2;
    int rc = qt_run_cli(&o2, &e2, "verify '%s' --against '%s' --mismatches-only", out, model);
    cr_assert_eq(rc, 0, "%s%s", o2, e2);
    free(o2);
    free(e2);
    free(model);
    free(stats);
    free(od);
}

Test(export_formats, fake_float32_equals_reference_layer0)
{
    /* compute and store in FP32 (the goldens' T): the exported layer 0 is the reference's state */
    char *dir;
    json_object_put(export_config("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae", "fake", "--dtype float32", &dir));
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(dir, &ck), QV_OK);
    qv_st_file *g = qt_open_st("goldens/internvl2-qwen2-tiny/export_search_mbq_w3g128_reweight_mae.safetensors");
    size_t n = 0;
    for (size_t i = 0; i < g->hdr.n; i++) {
        const qv_st_entry *e = &g->hdr.entries[i];
        if (strncmp(e->name, "qmodel.layers.0.", 16))
            continue;
        char name[256];
        snprintf(name, sizeof name, "language_model.model.layers.0.%s", e->name + 16);
        qv_tensor a, b;
        cr_assert_eq(qv_checkpoint_get(ck, name, &a), QV_OK, "%s", qv_last_error());
        qv_st_view(g, e, &b);
        cr_assert_eq(a.dtype, QV_F32);
        cr_assert(!memcmp(a.data, b.data, qv_tensor_nbytes(&b)), "%s", name);
        n++;
    }
    cr_assert_eq(n, 12);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    json_object *j = qx_json_file(cfg);
    cr_assert(!json_object_object_get_ex(j, "quantization_config", NULL), "fake exports load as the original class");
    cr_assert_str_eq(json_object_get_string(json_object_object_get(j, "torch_dtype")), "float32");
    json_object_put(j);
    /* verify with an FP32 reference: every tensor equal, the vision tower's conv and position
     * embeddings (3 and more dimensions) compared by value, not as BF16 bytes */
    char *model = qx_fixture("models/internvl2-qwen2-tiny"),
         *scales = qx_scales_dir("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae"), *o, *e;
    int rc = qt_run_cli(&o, &e, "verify '%s' --against '%s' --scales '%s' --dtype float32 --mismatches-only", dir, model,
                        scales);
    cr_assert_eq(rc, 0, "verify: exit %d\n%s%s", rc, o, e);
    cr_assert(strstr(o, " 77 tensors checked, 0 mismatches, max abs error 0\n") != NULL, "verify:\n%s", o);
    free(o), free(e), free(model), free(scales);
    qv_st_close(g);
    qv_checkpoint_close(ck);
    free(dir);
}

Test(export_formats, fake_export_forward_equals_reference_quantized_model, .timeout = 300)
{
    /* `qvlm forward` of the FP32 fake export on the calibration batch gives the loss and per-row
     * NLL the reference measured for its own MBQ W3 g128 quantized model (fixtures README §9, §11:
     * weight-only quantized models within 1e-4 with the CUDA division form). */
    char *dir, *o, *e, out[800];
    json_object_put(export_config("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae", "fake", "--dtype float32", &dir));
    char *batch = qx_fixture("goldens/internvl2-qwen2-tiny/calib_batch.safetensors");
    char *emb = qx_fixture("goldens/internvl2-qwen2-tiny/forward.safetensors");
    snprintf(out, sizeof out, "%s.forward.safetensors", dir);
    int rc = qt_run_cli(&o, &e, "forward '%s' --batch '%s' --inputs-embeds 'llm.inputs_embeds@%s' -o '%s' -q", dir, batch,
                        emb, out);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    qv_st_file *f, *g = qt_open_st("goldens/internvl2-qwen2-tiny/export_search_mbq_w3g128_reweight_mae.safetensors");
    cr_assert_eq(qv_st_open(out, &f), QV_OK);
    qv_tensor t;
    float *nll = qt_tensor_f32(f, "nll.loss_rows", &t), *gn = qt_tensor_f32(g, "nll.loss_rows", NULL);
    float *loss = qt_tensor_f32(f, "loss", NULL), *gl = qt_tensor_f32(g, "loss", NULL);
    cr_assert_eq(t.shape[0], 166);
    cr_assert_leq(fabs(loss[0] - gl[0]), 1e-4, "loss %.6f vs the reference's quantized model %.6f", loss[0], gl[0]);
    cr_assert_leq(fabs(gl[0] - 8.307454), 1e-6);
    cr_assert_leq(qt_max_abs(nll, gn, 166), 1e-4, "per-row NLL max abs %g", qt_max_abs(nll, gn, 166));
    free(nll), free(gn), free(loss), free(gl);
    qv_st_close(f);
    qv_st_close(g);
    free(o), free(e), free(batch), free(emb), free(dir);
}
