/* test_family_layouts.c — the family layer (src/family/): the table's lookups, and the other key
 * layouts each family reads. Fixture checkpoints are converted in the test (tensors renamed,
 * InternViT's qkv split, config.json rewritten in the other spelling) to
 *   InternVL3 → -hf InternVLForConditionalGeneration (MODELS.md §3.4), transformers-5 runtime
 *               names (model.vision_tower.*, model.multi_modal_projector.*, model.language_model.*,
 *               lm_head) and the pre-4.52 file names (vision_tower.*, multi_modal_projector.*,
 *               language_model.model.*, language_model.lm_head);
 *   Qwen2-VL  → transformers-5 runtime names (model.visual.*, model.language_model.*) with a
 *               text_config, rope_parameters and dtype (§1.9);
 *   LLaVA-OV  → llava-hf LlavaOnevisionForConditionalGeneration (§2.7): file keys
 *               (vision_tower.vision_model.*, multi_modal_projector.linear_{1,2},
 *               image_newline, language_model.model.*, language_model.lm_head) with the 2 kept
 *               tower layers and vision_feature_layer −1, and 5.x runtime names with 3 layers
 *               and −2;
 * and each must give what the original gives: `qvlm inspect` the same parameters per part (and
 * tensors, except InternViT's split qkv: two more weights and biases per layer), `qvlm calib`
 * the same batch file (every tensor byte for byte, the same metadata), `qvlm forward` the same
 * loss and per-row NLL — bit for bit for pure renames; |Δ| ≤ 1e-5 where the fused qkv matmul
 * becomes three (oneDNN may block the narrower matmuls differently). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "family/family.h"
#include "io/safetensors.h"
#include "util/mmutil.h"
#include "util/testutil.h"

/* ---- tensor renaming ---------------------------------------------------------------------- */

static bool starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static int emit(qv_st_item *out, const qv_st_entry *e, const uint8_t *data, const char *name)
{
    out[0] = (qv_st_item){strdup(name), e->dtype, e->ndim, {0}, data};
    memcpy(out[0].shape, e->shape, sizeof e->shape);
    return 1;
}

/* Replaces prefix `from` of e's name by `to`; 0 when the name does not start with it. */
static int swap_prefix(qv_st_item *out, const qv_st_entry *e, const uint8_t *data, const char *from, const char *to)
{
    if (!starts(e->name, from))
        return 0;
    char name[512];
    snprintf(name, sizeof name, "%s%s", to, e->name + strlen(from));
    return emit(out, e, data, name);
}

typedef struct ivl_names {
    const char *tower, *proj, *lm, *head;
} ivl_names;

static const ivl_names k_ivl_runtime = {"model.vision_tower.", "model.multi_modal_projector.", "model.language_model.",
                                        "lm_head.weight"};
static const ivl_names k_ivl_files = {"vision_tower.", "multi_modal_projector.", "language_model.model.",
                                      "language_model.lm_head.weight"};

/* InternVL remote code → -hf (MODELS.md §3.4). */
static int ivl_to_hf(const qv_st_entry *e, const uint8_t *data, qv_st_item *out, int max_out, void *ctx)
{
    const ivl_names *nm = ctx;
    const char *n = e->name;
    char name[512], rest[256];
    int layer, k;
    static const char *const emb[][2] = {
        {"vision_model.embeddings.class_embedding", "embeddings.cls_token"},
        {"vision_model.embeddings.patch_embedding.", "embeddings.patch_embeddings.projection."},
        {"vision_model.embeddings.position_embedding", "embeddings.position_embeddings"}};
    for (size_t i = 0; i < sizeof emb / sizeof emb[0]; i++)
        if (starts(n, emb[i][0])) {
            snprintf(name, sizeof name, "%s%s%s", nm->tower, emb[i][1], n + strlen(emb[i][0]));
            return emit(out, e, data, name);
        }
    if (sscanf(n, "vision_model.encoder.layers.%d.%255s", &layer, rest) == 2) {
        static const char *const ren[][2] = {{"attn.proj.", "attention.projection_layer."},
                                             {"ls1", "lambda_1"},
                                             {"ls2", "lambda_2"},
                                             {"norm1.", "layernorm_before."},
                                             {"norm2.", "layernorm_after."},
                                             {"mlp.", "mlp."}};
        if (starts(rest, "attn.qkv.")) { /* rows q, k, v → three linears */
            cr_assert(max_out >= 3);
            const char *qkv[3] = {"q", "k", "v"};
            const size_t rows = (size_t)e->shape[0] / 3, cols = e->ndim == 2 ? (size_t)e->shape[1] : 1;
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "%sencoder.layer.%d.attention.%s_proj.%s", nm->tower, layer, qkv[j],
                         rest + strlen("attn.qkv."));
                emit(out + j, e, data + (size_t)j * rows * cols * qv_dtype_size(e->dtype), name);
                out[j].shape[0] = (int64_t)rows;
            }
            return 3;
        }
        for (size_t i = 0; i < sizeof ren / sizeof ren[0]; i++)
            if (starts(rest, ren[i][0])) {
                snprintf(name, sizeof name, "%sencoder.layer.%d.%s%s", nm->tower, layer, ren[i][1],
                         rest + strlen(ren[i][0]));
                return emit(out, e, data, name);
            }
        cr_assert_fail("unexpected tensor %s", n);
    }
    static const char *const proj[][2] = {
        {"mlp1.0.", "layer_norm."}, {"mlp1.1.", "linear_1."}, {"mlp1.3.", "linear_2."}};
    for (size_t i = 0; i < sizeof proj / sizeof proj[0]; i++)
        if (starts(n, proj[i][0])) {
            snprintf(name, sizeof name, "%s%s%s", nm->proj, proj[i][1], n + strlen(proj[i][0]));
            return emit(out, e, data, name);
        }
    if (!strcmp(n, "language_model.lm_head.weight"))
        return emit(out, e, data, nm->head);
    if ((k = swap_prefix(out, e, data, "language_model.model.", nm->lm)))
        return k;
    cr_assert_fail("unexpected tensor %s", n);
    return 0;
}

/* Qwen2-VL hub → transformers ≥ 4.52 runtime names. */
static int q2vl_to_tf5(const qv_st_entry *e, const uint8_t *data, qv_st_item *out, int max_out, void *ctx)
{
    (void)ctx, (void)max_out;
    int k;
    if ((k = swap_prefix(out, e, data, "visual.", "model.visual.")) ||
        (k = swap_prefix(out, e, data, "model.", "model.language_model.")))
        return k;
    return emit(out, e, data, e->name); /* lm_head.weight */
}

typedef struct llava_names {
    const char *tower, *proj, *newline, *lm, *head;
} llava_names;

static const llava_names k_llava_files = {"vision_tower.vision_model.", "multi_modal_projector.", "image_newline",
                                          "language_model.model.", "language_model.lm_head.weight"};
static const llava_names k_llava_runtime = {"model.vision_tower.vision_model.", "model.multi_modal_projector.",
                                            "model.image_newline", "model.language_model.", "lm_head.weight"};

/* LLaVA-OneVision lmms-lab → llava-hf (MODELS.md §2.7). */
static int llava_to_hf(const qv_st_entry *e, const uint8_t *data, qv_st_item *out, int max_out, void *ctx)
{
    (void)max_out;
    const llava_names *nm = ctx;
    const char *n = e->name;
    char name[512];
    int k;
    if ((k = swap_prefix(out, e, data, "model.vision_tower.vision_tower.vision_model.", nm->tower)))
        return k;
    if (starts(n, "model.mm_projector.")) {
        snprintf(name, sizeof name, "%slinear_%c%s", nm->proj, n[19] == '0' ? '1' : '2', n + 20);
        return emit(out, e, data, name);
    }
    if (!strcmp(n, "model.image_newline"))
        return emit(out, e, data, nm->newline);
    if (!strcmp(n, "lm_head.weight"))
        return emit(out, e, data, nm->head);
    if ((k = swap_prefix(out, e, data, "model.", nm->lm)))
        return k;
    cr_assert_fail("unexpected tensor %s", n);
    return 0;
}

/* ---- config rewriting --------------------------------------------------------------------- */

static json_object *load_json(const char *path)
{
    json_object *j = json_object_from_file(path);
    cr_assert_not_null(j, "cannot read %s", path);
    return j;
}

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(o, key, &v), "no %s", key);
    return v;
}

/* Copies o[key] into dst[as] (as = NULL: the same key) when present. */
static void copy_key(json_object *dst, json_object *o, const char *key, const char *as)
{
    json_object *v;
    if (json_object_object_get_ex(o, key, &v))
        json_object_object_add(dst, as ? as : key, json_object_get(v));
}

static json_object *strs(const char *s)
{
    json_object *a = json_object_new_array();
    json_object_array_add(a, json_object_new_string(s));
    return a;
}

static json_object *pair(int64_t a, int64_t b)
{
    json_object *p = json_object_new_array();
    json_object_array_add(p, json_object_new_int64(a));
    json_object_array_add(p, json_object_new_int64(b));
    return p;
}

static void write_config(const char *dir, json_object *cfg)
{
    char *p = qv_path_join(dir, "config.json");
    const char *text = json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PRETTY);
    cr_assert_eq(qv_write_file_atomic(p, text, strlen(text)), QV_OK);
    qv_free(p);
    json_object_put(cfg);
}

static const char *const k_llm_keys[] = {
    "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
    "rms_norm_eps", "vocab_size", "max_position_embeddings", "hidden_act", "bos_token_id", "eos_token_id",
    "attention_dropout", "sliding_window", "use_sliding_window"};

/* InternVLChatModel → InternVLForConditionalGeneration; text_architectures: keep
 * llm_config.architectures in text_config (else only model_type, as transformers writes). */
static void internvl_hf_config(const char *src_dir, const char *dir, bool text_architectures)
{
    char *p = qv_path_join(src_dir, "config.json");
    json_object *o = load_json(p), *lc = get(o, "llm_config"), *vc = get(o, "vision_config");
    qv_free(p);
    json_object *c = json_object_new_object(), *tc = json_object_new_object(), *v = json_object_new_object();
    json_object_object_add(c, "architectures", strs("InternVLForConditionalGeneration"));
    json_object_object_add(c, "model_type", json_object_new_string("internvl"));
    copy_key(c, o, "downsample_ratio", NULL);
    copy_key(c, o, "select_layer", "vision_feature_layer");
    copy_key(c, o, "torch_dtype", NULL);
    json_object_object_add(c, "vision_feature_select_strategy", json_object_new_string("default"));
    json_object_object_add(c, "projector_hidden_act", json_object_new_string("gelu"));
    json_object_object_add(c, "image_token_id", json_object_new_int(2024));
    json_object_object_foreach(lc, key, val)
    {
        if (text_architectures || strcmp(key, "architectures") != 0)
            json_object_object_add(tc, key, json_object_get(val));
    }
    json_object_object_add(c, "text_config", tc);
    static const char *const same[] = {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                       "layer_norm_eps", "norm_type", "hidden_act", "num_channels"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        copy_key(v, vc, same[i], NULL);
    copy_key(v, vc, "qkv_bias", "attention_bias");
    copy_key(v, vc, "qk_normalization", "use_qk_norm");
    const int64_t s = json_object_get_int64(get(vc, "image_size")), ps = json_object_get_int64(get(vc, "patch_size"));
    json_object_object_add(v, "image_size", pair(s, s));
    json_object_object_add(v, "patch_size", pair(ps, ps));
    json_object_object_add(v, "model_type", json_object_new_string("internvl_vision"));
    json_object_object_add(c, "vision_config", v);
    json_object_put(o);
    write_config(dir, c);
}

/* Qwen2-VL flat keys → transformers 5: text_config with rope_parameters, dtype, in_channels. */
static void qwen2vl_tf5_config(const char *src_dir, const char *dir)
{
    char *p = qv_path_join(src_dir, "config.json");
    json_object *o = load_json(p), *vc = get(o, "vision_config");
    qv_free(p);
    json_object *c = json_object_new_object(), *tc = json_object_new_object(), *v = json_object_new_object();
    copy_key(c, o, "architectures", NULL);
    copy_key(c, o, "model_type", NULL);
    copy_key(c, o, "torch_dtype", "dtype");
    copy_key(c, o, "tie_word_embeddings", NULL);
    static const char *const ids[] = {"image_token_id", "video_token_id", "vision_start_token_id",
                                      "vision_end_token_id", "vision_token_id"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        copy_key(c, o, ids[i], NULL);
    for (size_t i = 0; i < sizeof k_llm_keys / sizeof k_llm_keys[0]; i++)
        copy_key(tc, o, k_llm_keys[i], NULL);
    json_object_object_add(tc, "model_type", json_object_new_string("qwen2_vl_text"));
    json_object *rp = json_object_new_object();
    json_object_object_add(rp, "rope_type", json_object_new_string("default"));
    copy_key(rp, o, "rope_theta", NULL);
    copy_key(rp, get(o, "rope_scaling"), "mrope_section", NULL);
    json_object_object_add(tc, "rope_parameters", rp);
    json_object_object_add(c, "text_config", tc);
    json_object_object_foreach(vc, key, val)
    {
        json_object_object_add(v, strcmp(key, "in_chans") ? key : "in_channels", json_object_get(val));
    }
    json_object_object_add(c, "vision_config", v);
    json_object_put(o);
    write_config(dir, c);
}

/* LlavaQwenForCausalLM → LlavaOnevisionForConditionalGeneration with the tower's config inline
 * (vision_layers of it, vision_feature_layer `feature`); the lmms-lab tower folder is removed. */
static void llava_hf_config(const char *src_dir, const char *dir, int vision_layers, int feature)
{
    char *p = qv_path_join(src_dir, "config.json");
    json_object *o = load_json(p);
    qv_free(p);
    char tower[4096];
    snprintf(tower, sizeof tower, "%s/%s/config.json", src_dir, json_object_get_string(get(o, "mm_vision_tower")));
    json_object *tw = load_json(tower);
    json_object *c = json_object_new_object(), *tc = json_object_new_object(), *v = json_object_new_object();
    json_object_object_add(c, "architectures", strs("LlavaOnevisionForConditionalGeneration"));
    json_object_object_add(c, "model_type", json_object_new_string("llava_onevision"));
    copy_key(c, o, "torch_dtype", NULL);
    copy_key(c, o, "tie_word_embeddings", NULL); /* at the top only: text_config inherits it */
    copy_key(c, o, "image_grid_pinpoints", NULL);
    json_object_object_add(c, "image_token_index", json_object_new_int(2047));
    json_object_object_add(c, "vision_aspect_ratio", json_object_new_string("anyres_max_9"));
    json_object_object_add(c, "vision_feature_select_strategy", json_object_new_string("full"));
    json_object_object_add(c, "vision_feature_layer", json_object_new_int(feature));
    json_object_object_add(c, "projector_hidden_act", json_object_new_string("gelu"));
    json_object_object_add(tc, "architectures", strs("Qwen2ForCausalLM"));
    json_object_object_add(tc, "model_type", json_object_new_string("qwen2"));
    for (size_t i = 0; i < sizeof k_llm_keys / sizeof k_llm_keys[0]; i++)
        copy_key(tc, o, k_llm_keys[i], NULL);
    copy_key(tc, o, "rope_theta", NULL);
    json_object_object_add(c, "text_config", tc);
    json_object_object_foreach(tw, key, val)
    {
        if (strcmp(key, "architectures") != 0)
            json_object_object_add(v, key, json_object_get(val));
    }
    json_object_object_add(v, "num_hidden_layers", json_object_new_int(vision_layers));
    json_object_object_add(c, "vision_config", v);
    char *sub = qv_path_join(dir, json_object_get_string(get(o, "mm_vision_tower")));
    char *sub_cfg = qv_path_join(sub, "config.json");
    cr_assert_eq(remove(sub_cfg), 0);
    cr_assert_eq(remove(sub), 0);
    qv_free(sub_cfg), qv_free(sub);
    json_object_put(tw);
    json_object_put(o);
    write_config(dir, c);
}

/* ---- comparing the two layouts ------------------------------------------------------------ */

static json_object *inspect(const char *model)
{
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "inspect '%s' --json", model);
    cr_assert_eq(rc, 0, "inspect %s: %s", model, err);
    json_object *j = json_tokener_parse(out);
    cr_assert_not_null(j, "not JSON: %s", out);
    free(out), free(err);
    return j;
}

/* The same parameters per part; the same tensor counts except `extra_vision_tensors`. */
static void same_counts(const char *a, const char *b, long long extra_vision_tensors)
{
    json_object *ja = inspect(a), *jb = inspect(b), *pa = get(ja, "parts"), *pb = get(jb, "parts");
    cr_assert_eq(json_object_get_int64(get(ja, "params_total")), json_object_get_int64(get(jb, "params_total")));
    static const char *const parts[] = {"vision", "projector", "llm"};
    for (int i = 0; i < 3; i++) {
        json_object *x = get(pa, parts[i]), *y = get(pb, parts[i]);
        cr_assert_eq(json_object_get_int64(get(x, "params")), json_object_get_int64(get(y, "params")), "%s params",
                     parts[i]);
        cr_assert_eq(json_object_get_int64(get(x, "tensors")) + (i == 0 ? extra_vision_tensors : 0),
                     json_object_get_int64(get(y, "tensors")), "%s tensors", parts[i]);
    }
    cr_assert_str_eq(json_object_get_string(get(ja, "family")), json_object_get_string(get(jb, "family")));
    json_object_put(ja), json_object_put(jb);
}

static char *calib(const char *model, const char *family, const char *dir, const char *name)
{
    char caps[4096], images[4096], *yaml = NULL;
    snprintf(caps, sizeof caps, "%s", qt_fixture("calib/captions_sharegpt4v.json"));
    snprintf(images, sizeof images, "%s", qt_fixture("calib/images"));
    cr_assert(asprintf(&yaml,
                       "model: %s\nmodel_args: pretrained=\"%s\"\ncalib_data: sharegpt4v\ndata_path: %s\n"
                       "image_folder: %s\nmethod: mbq\nrun_process: true\nn_samples: 2\n",
                       family, model, caps, images) > 0);
    char *cfg = qv_path_join(dir, "run.yaml"), *out_path = qv_path_join(dir, name), *o, *e;
    cr_assert_eq(qv_write_file_atomic(cfg, yaml, strlen(yaml)), QV_OK);
    free(yaml);
    int rc = qt_run_cli(&o, &e, "calib '%s' -o '%s' --quiet", cfg, out_path);
    cr_assert_eq(rc, 0, "calib %s: %s", model, e);
    free(o), free(e), qv_free(cfg);
    return out_path;
}

/* Every tensor and metadata entry of a equals b's. */
static void same_file(const char *a, const char *b)
{
    qv_st_file *fa = qt_open_st_path(a), *fb = qt_open_st_path(b);
    cr_assert_eq(fa->hdr.n, fb->hdr.n);
    for (size_t i = 0; i < fa->hdr.n; i++) {
        const qv_st_entry *e = &fa->hdr.entries[i];
        qv_tensor ta, tb;
        cr_assert_eq(qv_st_get(fa, e->name, &ta), QV_OK);
        cr_assert_eq(qv_st_get(fb, e->name, &tb), QV_OK, "%s lacks %s", b, e->name);
        cr_assert(ta.dtype == tb.dtype && ta.ndim == tb.ndim, "%s", e->name);
        cr_assert_arr_eq(ta.shape, tb.shape, (size_t)ta.ndim * sizeof ta.shape[0], "%s", e->name);
        cr_assert_arr_eq(ta.data, tb.data, (size_t)qv_tensor_numel(&ta) * qv_dtype_size(ta.dtype), "%s", e->name);
    }
    cr_assert_eq(fa->hdr.n_meta, fb->hdr.n_meta);
    for (size_t i = 0; i < fa->hdr.n_meta; i++)
        cr_assert_str_eq(fa->hdr.meta[i].value, fb->hdr.meta[i].value, "metadata %s", fa->hdr.meta[i].key);
    qv_st_close(fa), qv_st_close(fb);
}

static char *forward(const char *model, const char *batch, const char *dir, const char *name)
{
    char *out = qv_path_join(dir, name), *o, *e;
    int rc = qt_run_cli(&o, &e, "forward '%s' --batch '%s' -o '%s' -q", model, batch, out);
    cr_assert_eq(rc, 0, "forward %s: %s", model, e);
    free(o), free(e);
    return out;
}

/* loss and per-row NLL within tol (0: identical). */
static void same_loss(const char *a, const char *b, float tol)
{
    qv_st_file *fa = qt_open_st_path(a), *fb = qt_open_st_path(b);
    qv_tensor ta, tb;
    float *la = qt_tensor_f32(fa, "loss", &ta), *lb = qt_tensor_f32(fb, "loss", &tb);
    cr_assert(isfinite(la[0]) && la[0] > 0.0f);
    cr_assert_leq(fabsf(la[0] - lb[0]), tol, "loss %.9g vs %.9g", la[0], lb[0]);
    float *na = qt_tensor_f32(fa, "nll.loss_rows", &ta), *nb = qt_tensor_f32(fb, "nll.loss_rows", &tb);
    cr_assert_eq(ta.shape[0], tb.shape[0]);
    cr_assert_gt(ta.shape[0], 0);
    const double d = qt_max_abs(na, nb, (size_t)ta.shape[0]);
    cr_assert_leq(d, tol, "per-row NLL differs by %.3g", d);
    free(la), free(lb), free(na), free(nb);
    qv_st_close(fa), qv_st_close(fb);
}

/* inspect, calib and forward on the original fixture and its conversion. */
static void check_layouts(const char *model_rel, const char *conv, const char *family, long long extra_vision_tensors,
                          float tol)
{
    char orig[4096];
    snprintf(orig, sizeof orig, "%s", qt_fixture(model_rel));
    same_counts(orig, conv, extra_vision_tensors);
    char *dir = qt_tmpdir();
    char *ba = calib(orig, family, dir, "a.safetensors"), *bb = calib(conv, family, dir, "b.safetensors");
    same_file(ba, bb);
    char *fa = forward(orig, ba, dir, "fa.safetensors"), *fb = forward(conv, ba, dir, "fb.safetensors");
    same_loss(fa, fb, tol);
    free(ba), free(bb), free(fa), free(fb), free(dir);
}

/* ---- tests -------------------------------------------------------------------------------- */

#define IVL3 "models/internvl3-tiny"
#define Q2VL "models/qwen2-vl-tiny"
#define LLAVA "models/llava-onevision-qwen2-tiny"

Test(family_layouts, table_lookups)
{
    cr_assert_eq(qv_family_by_architecture("InternVLChatModel"), &qv_family_internvl2);
    cr_assert_eq(qv_family_by_architecture("InternVLForConditionalGeneration"), &qv_family_internvl3);
    cr_assert_eq(qv_family_by_architecture("Qwen2_5_VLForConditionalGeneration"), &qv_family_qwen2vl);
    cr_assert_eq(qv_family_by_architecture("LlavaOnevisionForConditionalGeneration"), &qv_family_llava_ov);
    cr_assert_eq(qv_family_by_architecture("LlamaForCausalLM"), &qv_family_text);
    cr_assert_null(qv_family_by_architecture("LlavaLlamaForCausalLM"));
    cr_assert_eq(qv_family_by_yaml_name("internvl3"), &qv_family_internvl3);
    cr_assert_eq(qv_family_by_yaml_name("internvl2"), &qv_family_internvl2);
    cr_assert_eq(qv_family_by_yaml_name("llama"), &qv_family_text);
    cr_assert_null(qv_family_by_yaml_name("llava"));
    cr_assert(qv_family_answers_to(&qv_family_internvl3, "internvl2"));
    cr_assert(!qv_family_answers_to(&qv_family_qwen2vl, "llava_onevision"));
    for (size_t i = 0; i < qv_family_count(); i++) {
        const qv_family *f = qv_family_at(i);
        cr_assert_eq(qv_family_get(f->id), f, "%s", f->name);
        cr_assert_str_eq(qv_family_name(f->id), f->name);
        cr_assert(f->parse_config && f->part_of && f->llm_roots && f->llm_roots[0].model, "%s", f->name);
        for (const char *const *a = f->architectures; *a; a++)
            cr_assert_not_null(strstr(qv_supported_architectures(), *a), "%s", *a);
        /* a family with a tower has the rest of the image path too */
        const bool vis = f->vision_open != NULL;
        cr_assert(vis == (f->prep_init != NULL) && vis == (f->prep_run != NULL) && vis == (f->build_batch != NULL),
                  "%s", f->name);
    }
    cr_assert_str_eq(qv_family_name((qv_family_id)99), "?");
}

Test(family_layouts, internvl3_hf_runtime_names, .timeout = 600)
{
    char *conv = qt_model_xform(IVL3, ivl_to_hf, (void *)&k_ivl_runtime);
    internvl_hf_config(qt_fixture(IVL3), conv, false);
    qv_model_config cfg;
    cr_assert_eq(qv_model_config_load(conv, &cfg), QV_OK, "%s", qv_last_error());
    cr_assert_eq(cfg.family, QV_FAMILY_INTERNVL3);
    cr_assert_str_eq(cfg.template_name, "internvl2_5");
    cr_assert_eq(cfg.llm.kind, QV_DECODER_QWEN2);
    cr_assert(cfg.vision.qkv_bias && cfg.vision.image_size == 448 && cfg.vision.patch_size == 14);
    cr_assert_eq(qv_model_part_of(&cfg, "model.vision_tower.encoder.layer.0.attention.q_proj.weight"), QV_PART_VISION);
    cr_assert_eq(qv_model_part_of(&cfg, "model.multi_modal_projector.linear_1.weight"), QV_PART_PROJECTOR);
    cr_assert_eq(qv_model_part_of(&cfg, "lm_head.weight"), QV_PART_LLM);
    qv_model_config_free(&cfg);
    /* 2 layers: qkv weight + bias become three of each */
    check_layouts(IVL3, conv, "internvl3", 2 * 4, 1e-5f);
    free(conv);
}

Test(family_layouts, internvl3_hf_file_names, .timeout = 600)
{
    char *conv = qt_model_xform(IVL3, ivl_to_hf, (void *)&k_ivl_files);
    internvl_hf_config(qt_fixture(IVL3), conv, true);
    check_layouts(IVL3, conv, "internvl3", 2 * 4, 1e-5f);
    free(conv);
}

Test(family_layouts, qwen2vl_transformers5, .timeout = 600)
{
    char *conv = qt_model_xform(Q2VL, q2vl_to_tf5, NULL);
    qwen2vl_tf5_config(qt_fixture(Q2VL), conv);
    qv_model_config cfg;
    cr_assert_eq(qv_model_config_load(conv, &cfg), QV_OK, "%s", qv_last_error());
    cr_assert_eq(cfg.family, QV_FAMILY_QWEN2_VL);
    cr_assert_eq(cfg.llm.rope_kind, QV_ROPE_MROPE);
    cr_assert_eq(cfg.llm.mrope_section[1], 6);
    cr_assert_eq(cfg.vision.channels, 3);
    cr_assert_eq(qv_model_part_of(&cfg, "model.visual.merger.mlp.0.weight"), QV_PART_PROJECTOR);
    cr_assert_eq(qv_model_part_of(&cfg, "model.visual.blocks.0.attn.qkv.weight"), QV_PART_VISION);
    qv_model_config_free(&cfg);
    check_layouts(Q2VL, conv, "qwen2_vl", 0, 0.0f);
    free(conv);
}

Test(family_layouts, llava_onevision_hf_files, .timeout = 600)
{
    char *conv = qt_model_xform(LLAVA, llava_to_hf, (void *)&k_llava_files);
    llava_hf_config(qt_fixture(LLAVA), conv, 2, -1);
    qv_model_config cfg;
    cr_assert_eq(qv_model_config_load(conv, &cfg), QV_OK, "%s", qv_last_error());
    cr_assert_eq(cfg.family, QV_FAMILY_LLAVA_ONEVISION);
    cr_assert(cfg.llava.image_newline && cfg.llava.hf_layout && cfg.llava.feature_layer == -1);
    cr_assert(!cfg.llm.tie_embeddings);
    cr_assert_eq(qv_model_part_of(&cfg, "image_newline"), QV_PART_PROJECTOR);
    cr_assert_eq(qv_model_part_of(&cfg, "language_model.lm_head.weight"), QV_PART_LLM);
    qv_model_config_free(&cfg);
    check_layouts(LLAVA, conv, "llava_onevision", 0, 0.0f);
    free(conv);
}

Test(family_layouts, llava_onevision_hf_runtime_names, .timeout = 600)
{
    char *conv = qt_model_xform(LLAVA, llava_to_hf, (void *)&k_llava_runtime);
    llava_hf_config(qt_fixture(LLAVA), conv, 3, -2);
    check_layouts(LLAVA, conv, "llava_onevision", 0, 0.0f);
    free(conv);
}

/* Layout errors: one line naming the file. */
Test(family_layouts, hf_config_errors)
{
    char *conv = qt_model_xform(LLAVA, llava_to_hf, (void *)&k_llava_files);
    llava_hf_config(qt_fixture(LLAVA), conv, 2, -1);
    char *p = qv_path_join(conv, "config.json"), *text = NULL, *o, *e;
    size_t len;
    cr_assert_eq(qv_read_file(p, 1 << 20, &text, &len), QV_OK);
    char *hit = strstr(text, "\"full\"");
    cr_assert_not_null(hit);
    memcpy(hit, "\"pad\" ", 6);
    cr_assert_eq(qv_write_file_atomic(p, text, len), QV_OK);
    cr_assert_eq(qt_run_cli(&o, &e, "inspect '%s'", conv), 1);
    cr_assert_eq(qt_count_lines(e), 1, "%s", e);
    cr_assert(strstr(e, "config.json") && strstr(e, "vision_feature_select_strategy \"pad\""), "%s", e);
    free(o), free(e), qv_free(text), qv_free(p), free(conv);
}
