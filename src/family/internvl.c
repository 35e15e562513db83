/* internvl.c — the InternVL2 and InternVL3 families (fixtures README §2; ALGORITHMS.md §8.1;
 * MODELS.md §3): both checkpoint layouts, the remote-code InternVLChatModel (vision_model.*,
 * mlp1.*, language_model.model.*) and the transformers-native -hf InternVLForConditionalGeneration
 * (MODELS.md §3.4: model.vision_tower.* with split q/k/v, model.multi_modal_projector.*,
 * model.language_model.*, lm_head; published -hf files may keep the pre-4.52 prefixes
 * vision_tower.*, multi_modal_projector.*, language_model.model.*, language_model.lm_head).
 *
 * Two table entries sharing every function: the families differ only in name, run-config
 * names, default pad rule (InternVL2 has an MBQ wrapper whose collator pads with 0, InternVL3
 * pads with <|endoftext|> and masks by length, MODELS.md §3.2) and the conversation template
 * used when a config names none. One config architecture reads both: InternVLChatModel is
 * internvl2 or internvl3 by its `template`; the -hf layout exists for InternVL3-era checkpoints
 * only and carries no template, so it is internvl3 with internvl2_5 — the same template and
 * label rule the remote-code InternVL3 gets, so both layouts build the same calibration batch.
 * The tensor-name layouts themselves are resolved where the tensors are read (internvit.c,
 * vision.c's projector names, the llm_roots below). */
#include <stdio.h>
#include <string.h>

#include "../calib/batch.h"
#include "../image/image.h"
#include "../model/config_parse.h"
#include "../vision/vision.h"
#include "family.h"

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* ---- config ------------------------------------------------------------------------------- */

/* Remote code writes image_size / patch_size as integers, -hf as [h, w] lists (square only). */
static qv_status side(const qv_json *v, const char *key, const char *file, int64_t *out)
{
    qv_json *a = qv_json_get(v, key);
    if (!qv_json_is_type(a, json_type_array))
        return qv_cfg_pos_int(v, key, file, "vision_config.", QV_MAX_IMAGE_SIDE, out);
    int64_t h, w;
    if (json_object_array_length(a) != 2 || !qv_json_as_int(json_object_array_get_idx(a, 0), &h) ||
        !qv_json_as_int(json_object_array_get_idx(a, 1), &w) || h <= 0 || h > QV_MAX_IMAGE_SIDE)
        return qv_fail(QV_ERR_INVALID, "%s: field \"vision_config.%s\": expected an integer or [height, width]", file,
                       key);
    if (h != w)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: field \"vision_config.%s\": %lldx%lld is not square", file, key,
                       (long long)w, (long long)h);
    *out = h;
    return QV_OK;
}

/* InternViT's vision_config; the -hf spelling renames qkv_bias → attention_bias and
 * qk_normalization → use_qk_norm. */
static qv_status parse_internvit(const qv_json *v, const char *file, bool hf, qv_vision_config *c)
{
    const char *ctx = "vision_config.";
    memset(c, 0, sizeof *c);
    const char *mt = hf ? "internvl_vision" : "intern_vit_6b", *norm = "layer_norm", *act = "gelu";
    QV_TRY(qv_json_str_opt(v, "model_type", file, &mt));
    qv_cfg_copy_str(c->model_type, sizeof c->model_type, mt);
    QV_TRY(qv_cfg_pos_int(v, "hidden_size", file, ctx, QV_MAX_HIDDEN, &c->hidden));
    QV_TRY(qv_cfg_pos_int(v, "num_hidden_layers", file, ctx, QV_MAX_LAYERS, &c->n_layers));
    QV_TRY(qv_cfg_pos_int(v, "num_attention_heads", file, ctx, QV_MAX_HEADS, &c->n_heads));
    QV_TRY(qv_cfg_pos_int(v, "intermediate_size", file, ctx, QV_MAX_INTERMEDIATE, &c->intermediate));
    QV_TRY(side(v, "image_size", file, &c->image_size));
    QV_TRY(side(v, "patch_size", file, &c->patch_size));
    c->channels = 3;
    QV_TRY(qv_cfg_int_in(v, "num_channels", file, ctx, 1, QV_MAX_CHANNELS, false, &c->channels));
    QV_TRY(qv_json_str_opt(v, "norm_type", file, &norm));
    if (!strcmp(norm, "layer_norm"))
        c->norm = QV_NORM_LAYER;
    else if (!strcmp(norm, "rms_norm"))
        c->norm = QV_NORM_RMS;
    else
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: vision_config.norm_type \"%s\" is not supported", file, norm);
    c->norm_eps = 1e-6;
    QV_TRY(qv_cfg_pos_num(v, "layer_norm_eps", file, ctx, &c->norm_eps));
    QV_TRY(qv_json_bool_opt(v, hf ? "attention_bias" : "qkv_bias", file, &c->qkv_bias));
    QV_TRY(qv_json_bool_opt(v, hf ? "use_qk_norm" : "qk_normalization", file, &c->qk_norm));
    QV_TRY(qv_json_str_opt(v, "hidden_act", file, &act));
    qv_cfg_copy_str(c->hidden_act, sizeof c->hidden_act, act);
    if (c->hidden % c->n_heads || c->image_size % c->patch_size)
        return qv_fail(QV_ERR_INVALID, "%s: vision_config dimensions are inconsistent", file);
    return QV_OK;
}

/* The template decides the family (InternVL2's MBQ wrapper vs InternVL3's internvl2_5). */
static qv_status family_of_template(const char *tmpl, const char *file, qv_model_config *cfg)
{
    if (!strcmp(tmpl, "Hermes-2") || !strcmp(tmpl, "internlm2-chat") || !strcmp(tmpl, "phi3-chat"))
        cfg->family = QV_FAMILY_INTERNVL2;
    else if (!strcmp(tmpl, "internvl2_5"))
        cfg->family = QV_FAMILY_INTERNVL3;
    else
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: InternVL template \"%s\" is not supported (Hermes-2, internlm2-chat, "
                       "internvl2_5)", file, tmpl);
    return QV_OK;
}

static qv_status parse_remote(const qv_json *root, const char *file, qv_model_config *cfg)
{
    qv_json *lc, *vc;
    QV_TRY(qv_json_obj(root, "llm_config", file, &lc));
    QV_TRY(qv_json_obj(root, "vision_config", file, &vc));
    const char *larch = qv_cfg_first_arch(lc);
    if (!larch)
        return qv_fail(QV_ERR_INVALID, "%s: missing field \"llm_config.architectures\"", file);
    QV_TRY(qv_cfg_parse_llm(lc, file, "llm_config.", larch, &cfg->llm));
    QV_TRY(parse_internvit(vc, file, false, &cfg->vision));
    cfg->has_vision = true;
    const char *tmpl = "internlm2-chat", *ps = "v1";
    QV_TRY(qv_json_str_opt(root, "template", file, &tmpl));
    QV_TRY(qv_json_str_opt(root, "ps_version", file, &ps));
    qv_cfg_copy_str(cfg->template_name, sizeof cfg->template_name, tmpl);
    qv_cfg_copy_str(cfg->ps_version, sizeof cfg->ps_version, ps);
    cfg->downsample_ratio = 0.5;
    cfg->select_layer = -1;
    cfg->force_image_size = cfg->vision.image_size;
    cfg->min_dynamic_patch = 1;
    cfg->max_dynamic_patch = 12;
    cfg->use_thumbnail = true;
    QV_TRY(qv_json_num_opt(root, "downsample_ratio", file, &cfg->downsample_ratio));
    const int64_t nl = cfg->vision.n_layers;
    QV_TRY(qv_cfg_int_in(root, "select_layer", file, "", -nl - 1, nl, false, &cfg->select_layer));
    QV_TRY(qv_cfg_int_in(root, "force_image_size", file, "", 1, QV_MAX_IMAGE_SIDE, false, &cfg->force_image_size));
    QV_TRY(qv_cfg_int_in(root, "min_dynamic_patch", file, "", 0, 1024, false, &cfg->min_dynamic_patch));
    QV_TRY(qv_cfg_int_in(root, "max_dynamic_patch", file, "", 0, 1024, false, &cfg->max_dynamic_patch));
    QV_TRY(qv_json_bool_opt(root, "use_thumbnail", file, &cfg->use_thumbnail));
    return family_of_template(tmpl, file, cfg);
}

/* InternVLForConditionalGeneration (MODELS.md §3.4): text_config, vision_config in the -hf
 * spelling, vision_feature_layer for select_layer, always pixel shuffle v2; tiling as the
 * remote-code defaults (the -hf image processor's crop_to_patches re-implements
 * dynamic_preprocess, 1..12 tiles with a thumbnail). */
static qv_status parse_hf(const qv_json *root, const char *file, qv_model_config *cfg)
{
    qv_json *tc, *vc;
    QV_TRY(qv_json_obj(root, "text_config", file, &tc));
    QV_TRY(qv_json_obj(root, "vision_config", file, &vc));
    QV_TRY(qv_cfg_parse_text_config(root, tc, file, "text_config.", NULL, &cfg->llm));
    QV_TRY(parse_internvit(vc, file, true, &cfg->vision));
    cfg->has_vision = true;
    const char *strategy = "default", *act = "gelu";
    QV_TRY(qv_json_str_opt(root, "vision_feature_select_strategy", file, &strategy));
    if (strcmp(strategy, "default") != 0) /* "default" drops the CLS token, as InternVL does */
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: vision_feature_select_strategy \"%s\" is not supported (default)", file,
                       strategy);
    QV_TRY(qv_json_str_opt(root, "projector_hidden_act", file, &act));
    if (strcmp(act, "gelu") != 0)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: projector_hidden_act \"%s\" is not supported (gelu)", file, act);
    qv_cfg_copy_str(cfg->template_name, sizeof cfg->template_name, qv_family_internvl3.default_template);
    qv_cfg_copy_str(cfg->ps_version, sizeof cfg->ps_version, "v2");
    cfg->downsample_ratio = 0.5;
    cfg->select_layer = -1;
    QV_TRY(qv_json_num_opt(root, "downsample_ratio", file, &cfg->downsample_ratio));
    const int64_t nl = cfg->vision.n_layers;
    QV_TRY(qv_cfg_int_in(root, "vision_feature_layer", file, "", -nl - 1, nl, false, &cfg->select_layer));
    cfg->force_image_size = cfg->vision.image_size;
    cfg->min_dynamic_patch = 1;
    cfg->max_dynamic_patch = 12;
    cfg->use_thumbnail = true;
    QV_TRY(qv_cfg_opt_id(root, "image_token_id", file, &cfg->image_token_id));
    return family_of_template(cfg->template_name, file, cfg);
}

static qv_status parse_config(const qv_json *root, const char *arch, const char *file, qv_model_config *cfg)
{
    QV_TRY(!strcmp(arch, "InternVLForConditionalGeneration") ? parse_hf(root, file, cfg)
                                                             : parse_remote(root, file, cfg));
    if (cfg->downsample_ratio != 0.5)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: downsample_ratio %g is not supported (0.5)", file,
                       cfg->downsample_ratio);
    return QV_OK;
}

/* ---- tensors ------------------------------------------------------------------------------ */

static qv_part part_of(const char *n)
{
    if (starts(n, "vision_model.") || starts(n, "model.vision_tower.") || starts(n, "vision_tower."))
        return QV_PART_VISION;
    if (starts(n, "mlp1.") || starts(n, "model.multi_modal_projector.") || starts(n, "multi_modal_projector."))
        return QV_PART_PROJECTOR;
    return QV_PART_LLM;
}

static const qv_llm_root k_roots[] = {
    {"language_model.model.", "language_model."}, /* remote code; -hf files before transformers 4.52 */
    {"model.language_model.", ""},                /* -hf, transformers ≥ 4.52 / 5 */
    {"language_model.", "language_model."},
    {NULL, NULL},
};

/* ---- images ------------------------------------------------------------------------------- */

static qv_status prep_init(qv_preprocessor *pp, const qv_model_config *cfg, const char *model_dir)
{
    (void)model_dir;
    qv_internvl_prep_from_config(&pp->internvl, cfg);
    return QV_OK;
}

static qv_status prep_run(const qv_preprocessor *pp, const qv_image *img, const char *what, qv_pixels *out)
{
    qv_internvl_prep p = pp->internvl;
    if (pp->max_tiles > 0)
        p.max_num = pp->max_tiles;
    return qv_preprocess_internvl(img, &p, what, out);
}

/* ---- the entries -------------------------------------------------------------------------- */

static const char *const k_yaml2[] = {"internvl2", "internvl3", NULL};
static const char *const k_yaml3[] = {"internvl3", "internvl2", NULL};
static const char *const k_arch2[] = {"InternVLChatModel", NULL};
static const char *const k_arch3[] = {"InternVLForConditionalGeneration", NULL};

const qv_family qv_family_internvl2 = {
    .id = QV_FAMILY_INTERNVL2,
    .name = "internvl2",
    .yaml_names = k_yaml2,
    .architectures = k_arch2,
    .parse_config = parse_config,
    .part_of = part_of,
    .llm_roots = k_roots,
    .build_batch = qv_calib_build_internvl,
    .default_pad_rule = QV_PAD_RULE_MBQ,
    .default_template = "internlm2-chat",
    .prep_init = prep_init,
    .prep_run = prep_run,
    .prep_options = QV_PREP_MAX_TILES,
    .vision_open = qv_vision_open_internvit,
};

const qv_family qv_family_internvl3 = {
    .id = QV_FAMILY_INTERNVL3,
    .name = "internvl3",
    .yaml_names = k_yaml3,
    .architectures = k_arch3,
    .parse_config = parse_config,
    .part_of = part_of,
    .llm_roots = k_roots,
    .build_batch = qv_calib_build_internvl,
    .default_pad_rule = QV_PAD_RULE_LENGTH,
    .default_template = "internvl2_5",
    .prep_init = prep_init,
    .prep_run = prep_run,
    .prep_options = QV_PREP_MAX_TILES,
    .vision_open = qv_vision_open_internvit,
};
