/* llava_ov.c — the LLaVA-OneVision family (MODELS.md §2; ALGORITHMS.md §8.2): the lmms-lab
 * LlavaQwenForCausalLM checkpoints MBQ quantizes (LLM keys flat in config.json, the SigLIP tower
 * config in the mm_vision_tower folder, model.vision_tower.vision_tower.vision_model.*,
 * model.mm_projector.{0,2}, model.image_newline, model.*, lm_head) and the converted llava-hf
 * LlavaOnevisionForConditionalGeneration (MODELS.md §2.7: text_config / vision_config,
 * vision_tower.vision_model.*, multi_modal_projector.linear_{1,2}, image_newline,
 * language_model.model.*, language_model.lm_head; transformers-5 runtime names model.vision_tower.*,
 * model.multi_modal_projector.*, model.image_newline, model.language_model.*, lm_head).
 *
 * Both layouts calibrate the MBQ way: the pad path, one crop per image, 729 rows + the
 * image_newline = 730 positions spliced at the −200 placeholder, vicuna_v0 (batch_llava.c). An
 * -hf checkpoint is rebuilt onto that path rather than run through the HF processor (always
 * anyres, no system turn, MODELS.md §2.7), so both layouts give the same batch. */
#include <stdio.h>
#include <string.h>

#include "../calib/batch.h"
#include "../image/image.h"
#include "../model/config_parse.h"
#include "../vision/vision.h"
#include "family.h"

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* ---- config ------------------------------------------------------------------------------- */

static qv_status copy_field(char *dst, size_t n, const char *val, const char *key, const char *file)
{
    if (strlen(val) >= n)
        return qv_fail(QV_ERR_INVALID, "%s: field \"%s\": longer than %zu bytes", file, key, n - 1);
    qv_cfg_copy_str(dst, n, val);
    return QV_OK;
}

/* lmms-lab: LLM keys at the top; the tower from mm_vision_tower when it is opened. */
static qv_status parse_lmms(const qv_json *root, const char *arch, const char *file, qv_model_config *cfg)
{
    QV_TRY(qv_cfg_parse_text_config(root, root, file, "", "Qwen2ForCausalLM", &cfg->llm));
    qv_cfg_copy_str(cfg->llm.architecture, sizeof cfg->llm.architecture, arch);
    cfg->has_vision = true;
    qv_cfg_copy_str(cfg->vision.model_type, sizeof cfg->vision.model_type, "siglip_vision_model");
    QV_TRY(qv_cfg_int_in(root, "mm_hidden_size", file, "", 1, QV_MAX_HIDDEN, false, &cfg->vision.hidden));
    const char *tower = "", *proj = "linear", *merge = "flat", *side = "right";
    QV_TRY(qv_json_str_opt(root, "mm_vision_tower", file, &tower));
    QV_TRY(qv_json_str_opt(root, "mm_projector_type", file, &proj));
    QV_TRY(qv_json_str_opt(root, "mm_patch_merge_type", file, &merge));
    QV_TRY(qv_json_str_opt(root, "tokenizer_padding_side", file, &side));
    QV_TRY(qv_json_int_opt(root, "tokenizer_model_max_length", file, &cfg->llava.max_length));
    QV_TRY(copy_field(cfg->llava.vision_tower, sizeof cfg->llava.vision_tower, tower, "mm_vision_tower", file));
    QV_TRY(copy_field(cfg->llava.projector, sizeof cfg->llava.projector, proj, "mm_projector_type", file));
    /* prepare_inputs_labels_for_multimodal: "spatial*" merges append the newline when "unpad" */
    cfg->llava.image_newline = strncmp(merge, "spatial", 7) == 0 && strstr(merge, "unpad");
    cfg->llava.left_pad = strcmp(side, "left") == 0;
    cfg->llava.feature_layer = -2; /* SigLipVisionTower deletes the last layer (MODELS.md §2.2) */
    return QV_OK;
}

/* llava-hf: text_config, the SigLIP vision_config inline, vision_feature_layer over it. */
static qv_status parse_hf(const qv_json *root, const char *file, qv_model_config *cfg)
{
    qv_json *tc, *vc;
    QV_TRY(qv_json_obj(root, "text_config", file, &tc));
    QV_TRY(qv_json_obj(root, "vision_config", file, &vc));
    QV_TRY(qv_cfg_parse_text_config(root, tc, file, "text_config.", NULL, &cfg->llm));
    QV_TRY(qv_siglip_config_parse(vc, file, &cfg->vision));
    cfg->has_vision = true;
    const char *strategy = "full", *act = "gelu";
    QV_TRY(qv_json_str_opt(root, "vision_feature_select_strategy", file, &strategy));
    if (strcmp(strategy, "full") != 0) /* SigLIP has no CLS token to drop */
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: vision_feature_select_strategy \"%s\" is not supported (full)", file,
                       strategy);
    int64_t layer = -1;
    const int64_t n = cfg->vision.n_layers;
    QV_TRY(qv_json_int_opt(root, "vision_feature_layer", file, &layer));
    if (layer < -(n + 1) || layer > n)
        return qv_fail(QV_ERR_INVALID, "%s: vision_feature_layer %lld is outside the %lld vision layers", file,
                       (long long)layer, (long long)n);
    cfg->llava.feature_layer = layer < 0 ? layer : layer - (n + 1); /* hidden_states[k] = after layer k */
    QV_TRY(qv_json_str_opt(root, "projector_hidden_act", file, &act));
    char proj[sizeof cfg->llava.projector];
    snprintf(proj, sizeof proj, "mlp2x_%s", act);
    QV_TRY(copy_field(cfg->llava.projector, sizeof cfg->llava.projector, proj, "projector_hidden_act", file));
    cfg->llava.image_newline = true; /* LlavaOnevisionModel always has image_newline */
    cfg->llava.hf_layout = true;
    QV_TRY(qv_cfg_opt_id(root, "image_token_index", file, &cfg->image_token_id));
    return QV_OK;
}

static qv_status parse_config(const qv_json *root, const char *arch, const char *file, qv_model_config *cfg)
{
    return !strcmp(arch, "LlavaOnevisionForConditionalGeneration") ? parse_hf(root, file, cfg)
                                                                    : parse_lmms(root, arch, file, cfg);
}

/* ---- tensors ------------------------------------------------------------------------------ */

static qv_part part_of(const char *n)
{
    if (starts(n, "model.vision_tower.") || starts(n, "vision_tower.") || starts(n, "model.vision_tower"))
        return QV_PART_VISION;
    if (starts(n, "model.mm_projector.") || starts(n, "model.image_newline") ||
        starts(n, "model.multi_modal_projector.") || starts(n, "multi_modal_projector.") || starts(n, "image_newline"))
        return QV_PART_PROJECTOR;
    return QV_PART_LLM;
}

static const qv_llm_root k_roots[] = {
    {"model.", ""},                               /* lmms-lab */
    {"language_model.model.", "language_model."}, /* llava-hf files */
    {"model.language_model.", ""},                /* transformers ≥ 4.52 / 5 runtime names */
    {NULL, NULL},
};

/* ---- images ------------------------------------------------------------------------------- */

static qv_status prep_init(qv_preprocessor *pp, const qv_model_config *cfg, const char *model_dir)
{
    (void)model_dir;
    if (!cfg->path)
        return QV_OK;
    QV_TRY(qv_llava_prep_load(&pp->llava, cfg->path));
    if (cfg->llava.hf_layout) /* transformers' select_best_resolution reads (height, width) pairs */
        for (int i = 0; i < pp->llava.n_pinpoints; i++) {
            int w = pp->llava.pinpoints[i][0];
            pp->llava.pinpoints[i][0] = pp->llava.pinpoints[i][1];
            pp->llava.pinpoints[i][1] = w;
        }
    return QV_OK;
}

static qv_status prep_run(const qv_preprocessor *pp, const qv_image *img, const char *what, qv_pixels *out)
{
    return pp->llava_anyres ? qv_preprocess_llava_anyres(img, &pp->llava, what, out)
                            : qv_preprocess_llava_pad(img, &pp->llava, what, out);
}

/* ---- the entry ---------------------------------------------------------------------------- */

static const char *const k_yaml[] = {"llava_onevision", NULL};
static const char *const k_arch[] = {"LlavaQwenForCausalLM", "LlavaOnevisionForConditionalGeneration", NULL};

const qv_family qv_family_llava_ov = {
    .id = QV_FAMILY_LLAVA_ONEVISION,
    .name = "llava_onevision",
    .yaml_names = k_yaml,
    .architectures = k_arch,
    .parse_config = parse_config,
    .part_of = part_of,
    .llm_roots = k_roots,
    .build_batch = qv_calib_build_llava,
    .default_pad_rule = QV_PAD_RULE_MBQ,
    .prep_init = prep_init,
    .prep_run = prep_run,
    .prep_options = QV_PREP_ANYRES,
    .vision_open = qv_vision_open_siglip,
};
