/* qwen2vl.c — the Qwen2-VL family, Qwen2.5-VL included (MODELS.md §1; ALGORITHMS.md §8.4):
 * Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration configs (flat LLM keys,
 * or transformers 5's text_config with rope_parameters), and both key layouts (MODELS.md §1.9):
 * the hub's visual.* / model.* / lm_head and transformers ≥ 4.52's model.visual.* /
 * model.language_model.* / lm_head. Calibration: the chat template, left padding and the
 * expanded <|image_pad|> run (batch_qwen2vl.c); MBQ's collator pads with the pad id. */
#include <stdio.h>
#include <string.h>

#include "../calib/batch.h"
#include "../image/image.h"
#include "../model/config_parse.h"
#include "../vision/vision.h"
#include "family.h"

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* ---- config ------------------------------------------------------------------------------- */

static qv_status parse_qwen2vl_vision(const qv_json *v, const char *file, qv_vision_config *c)
{
    const char *ctx = "vision_config.";
    memset(c, 0, sizeof *c);
    qv_cfg_copy_str(c->model_type, sizeof c->model_type, "qwen2_vl");
    int64_t mlp_ratio = 4;
    QV_TRY(qv_cfg_pos_int(v, "embed_dim", file, ctx, QV_MAX_HIDDEN, &c->hidden));
    QV_TRY(qv_cfg_pos_int(v, "depth", file, ctx, QV_MAX_LAYERS, &c->n_layers));
    QV_TRY(qv_cfg_pos_int(v, "num_heads", file, ctx, QV_MAX_HEADS, &c->n_heads));
    QV_TRY(qv_cfg_int_in(v, "mlp_ratio", file, ctx, 1, 64, false, &mlp_ratio));
    c->intermediate = c->hidden * mlp_ratio;
    if (c->intermediate > QV_MAX_INTERMEDIATE)
        return qv_fail(QV_ERR_INVALID, "%s: vision_config: embed_dim x mlp_ratio = %lld is out of range (1..%lld)", file,
                       (long long)c->intermediate, (long long)QV_MAX_INTERMEDIATE);
    QV_TRY(qv_cfg_pos_int(v, "patch_size", file, ctx, QV_MAX_IMAGE_SIDE, &c->patch_size));
    QV_TRY(qv_cfg_pos_int(v, "hidden_size", file, ctx, QV_MAX_HIDDEN, &c->out_hidden));
    c->spatial_merge_size = 2;
    c->temporal_patch_size = 2;
    c->channels = 3;
    QV_TRY(qv_cfg_int_in(v, "spatial_merge_size", file, ctx, 1, 64, false, &c->spatial_merge_size));
    QV_TRY(qv_cfg_int_in(v, "temporal_patch_size", file, ctx, 1, 64, false, &c->temporal_patch_size));
    QV_TRY(qv_cfg_int_in(v, "in_chans", file, ctx, 1, QV_MAX_CHANNELS, false, &c->channels));
    /* transformers ≥ 4.5x spelling */
    QV_TRY(qv_cfg_int_in(v, "in_channels", file, ctx, 1, QV_MAX_CHANNELS, false, &c->channels));
    if (c->hidden % c->n_heads)
        return qv_fail(QV_ERR_INVALID, "%s: vision_config: embed_dim %lld is not a multiple of num_heads %lld", file,
                       (long long)c->hidden, (long long)c->n_heads);
    c->norm = QV_NORM_LAYER;
    c->norm_eps = 1e-6;
    c->qkv_bias = true;
    const char *act = "quick_gelu";
    QV_TRY(qv_json_str_opt(v, "hidden_act", file, &act));
    qv_cfg_copy_str(c->hidden_act, sizeof c->hidden_act, act);
    return QV_OK;
}

/* Qwen2.5-VL's vision_config: hidden_size is the tower width and out_hidden_size the LLM's
 * (MODELS.md §1.10); RMSNorm, SiLU-gated MLP with biases, window attention except in the
 * fullatt_block_indexes blocks. */
static qv_status parse_qwen25vl_vision(const qv_json *v, const char *file, qv_vision_config *c)
{
    const char *ctx = "vision_config.";
    memset(c, 0, sizeof *c);
    qv_cfg_copy_str(c->model_type, sizeof c->model_type, "qwen2_5_vl");
    QV_TRY(qv_cfg_pos_int(v, "hidden_size", file, ctx, QV_MAX_HIDDEN, &c->hidden));
    QV_TRY(qv_cfg_pos_int(v, "depth", file, ctx, QV_MAX_LAYERS, &c->n_layers));
    QV_TRY(qv_cfg_pos_int(v, "num_heads", file, ctx, QV_MAX_HEADS, &c->n_heads));
    QV_TRY(qv_cfg_pos_int(v, "intermediate_size", file, ctx, QV_MAX_INTERMEDIATE, &c->intermediate));
    QV_TRY(qv_cfg_pos_int(v, "patch_size", file, ctx, QV_MAX_IMAGE_SIDE, &c->patch_size));
    QV_TRY(qv_cfg_pos_int(v, "out_hidden_size", file, ctx, QV_MAX_HIDDEN, &c->out_hidden));
    c->spatial_merge_size = 2;
    c->temporal_patch_size = 2;
    c->channels = 3;
    c->window_size = 112;
    QV_TRY(qv_cfg_int_in(v, "spatial_merge_size", file, ctx, 1, 64, false, &c->spatial_merge_size));
    QV_TRY(qv_cfg_int_in(v, "temporal_patch_size", file, ctx, 1, 64, false, &c->temporal_patch_size));
    QV_TRY(qv_cfg_int_in(v, "in_chans", file, ctx, 1, QV_MAX_CHANNELS, false, &c->channels));
    /* transformers ≥ 4.5x spelling */
    QV_TRY(qv_cfg_int_in(v, "in_channels", file, ctx, 1, QV_MAX_CHANNELS, false, &c->channels));
    QV_TRY(qv_cfg_int_in(v, "window_size", file, ctx, 1, QV_MAX_IMAGE_SIDE, false, &c->window_size));
    qv_json *fa = qv_json_get(v, "fullatt_block_indexes");
    if (fa && !qv_json_is_type(fa, json_type_null)) {
        if (!qv_json_is_type(fa, json_type_array) || json_object_array_length(fa) > QV_ARRAY_LEN(c->fullatt))
            return qv_fail(QV_ERR_INVALID, "%s: field \"vision_config.fullatt_block_indexes\": expected a list of "
                           "block indexes", file);
        for (size_t i = 0; i < json_object_array_length(fa); i++) {
            int64_t b;
            if (!qv_json_as_int(json_object_array_get_idx(fa, i), &b) || b < 0 || b >= c->n_layers)
                return qv_fail(QV_ERR_INVALID, "%s: field \"vision_config.fullatt_block_indexes\": entry %zu is not a "
                               "block index below depth %lld", file, i, (long long)c->n_layers);
            c->fullatt[c->n_fullatt++] = (int)b;
        }
    }
    c->norm = QV_NORM_RMS;
    c->norm_eps = 1e-6;
    c->qkv_bias = true;
    c->gated_mlp = true;
    const char *act = "silu";
    QV_TRY(qv_json_str_opt(v, "hidden_act", file, &act));
    qv_cfg_copy_str(c->hidden_act, sizeof c->hidden_act, act);
    if (c->hidden % c->n_heads)
        return qv_fail(QV_ERR_INVALID, "%s: vision_config.hidden_size %lld is not a multiple of num_heads %lld", file,
                       (long long)c->hidden, (long long)c->n_heads);
    return QV_OK;
}

static qv_status parse_config(const qv_json *root, const char *arch, const char *file, qv_model_config *cfg)
{
    qv_json *tc = qv_json_get(root, "text_config"), *vc;
    /* the decoder is Qwen2's; the LLM part keeps the top-level architecture as its name */
    QV_TRY(qv_cfg_parse_text_config(root, qv_json_is_type(tc, json_type_object) ? tc : root, file, "",
                                    "Qwen2ForCausalLM", &cfg->llm));
    qv_cfg_copy_str(cfg->llm.architecture, sizeof cfg->llm.architecture, arch);
    QV_TRY(qv_json_obj(root, "vision_config", file, &vc));
    if (!strcmp(arch, "Qwen2_5_VLForConditionalGeneration"))
        QV_TRY(parse_qwen25vl_vision(vc, file, &cfg->vision));
    else
        QV_TRY(parse_qwen2vl_vision(vc, file, &cfg->vision));
    cfg->has_vision = true;
    QV_TRY(qv_cfg_opt_id(root, "image_token_id", file, &cfg->image_token_id));
    QV_TRY(qv_cfg_opt_id(root, "vision_start_token_id", file, &cfg->vision_start_id));
    QV_TRY(qv_cfg_opt_id(root, "vision_end_token_id", file, &cfg->vision_end_id));
    return QV_OK;
}

/* ---- tensors ------------------------------------------------------------------------------ */

static qv_part part_of(const char *n)
{
    if (starts(n, "visual.merger.") || starts(n, "model.visual.merger."))
        return QV_PART_PROJECTOR;
    if (starts(n, "visual.") || starts(n, "model.visual."))
        return QV_PART_VISION;
    return QV_PART_LLM;
}

static const qv_llm_root k_roots[] = {
    {"model.", ""},                /* hub files, transformers ≤ 4.51 */
    {"model.language_model.", ""}, /* transformers ≥ 4.52 / 5 runtime names */
    {NULL, NULL},
};

/* ---- images ------------------------------------------------------------------------------- */

static qv_status prep_init(qv_preprocessor *pp, const qv_model_config *cfg, const char *model_dir)
{
    (void)cfg;
    return qv_qwen2vl_prep_load(&pp->qwen2vl, model_dir);
}

static qv_status prep_run(const qv_preprocessor *pp, const qv_image *img, const char *what, qv_pixels *out)
{
    return qv_preprocess_qwen2vl(img, &pp->qwen2vl, what, out);
}

/* ---- the entry ---------------------------------------------------------------------------- */

static const char *const k_yaml[] = {"qwen2_vl", NULL};
static const char *const k_arch[] = {"Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration", NULL};

const qv_family qv_family_qwen2vl = {
    .id = QV_FAMILY_QWEN2_VL,
    .name = "qwen2_vl",
    .yaml_names = k_yaml,
    .architectures = k_arch,
    .parse_config = parse_config,
    .part_of = part_of,
    .llm_roots = k_roots,
    .build_batch = qv_calib_build_qwen2vl,
    .default_pad_rule = QV_PAD_RULE_MBQ,
    .prep_init = prep_init,
    .prep_run = prep_run,
    .vision_open = qv_vision_open_qwen2vl,
};
