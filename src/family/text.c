/* text.c — the text family: plain decoder-only LLMs (Qwen2ForCausalLM, LlamaForCausalLM,
 * InternLM2ForCausalLM; fixtures README §2, spec/ALGORITHMS.md §7.6). No vision, no image
 * preprocessing, no image-caption batch: they calibrate on pile blocks (calib_data: pileval),
 * which any family can. Run-config names qwen2 and llama. */
#include "../model/config_parse.h"
#include "family.h"

static qv_status parse_config(const qv_json *root, const char *arch, const char *file, qv_model_config *cfg)
{
    return qv_cfg_parse_llm(root, file, "", arch, &cfg->llm);
}

static qv_part part_of(const char *tensor_name)
{
    (void)tensor_name;
    return QV_PART_LLM;
}

static const qv_llm_root k_roots[] = {{"model.", ""}, {NULL, NULL}};
static const char *const k_yaml[] = {"qwen2", "llama", NULL};
static const char *const k_arch[] = {"Qwen2ForCausalLM", "LlamaForCausalLM", "InternLM2ForCausalLM", NULL};

const qv_family qv_family_text = {
    .id = QV_FAMILY_TEXT,
    .name = "text",
    .yaml_names = k_yaml,
    .architectures = k_arch,
    .parse_config = parse_config,
    .part_of = part_of,
    .llm_roots = k_roots,
    .default_pad_rule = QV_PAD_RULE_LENGTH,
};
