/* recipe.h — compressed-tensors quantization arguments, the `quantization_config` objects of the
 * exported checkpoints, and llm-compressor recipe files (FORMATS.md §2.1, §3.6, §4.1, §4.6, §4.7,
 * §6; ALGORITHMS-2.md §4.7).
 *
 * A recipe is read as llm-compressor's recipe.py parses it: top-level keys ending in "_stage"
 * hold keys ending in "_modifiers" which hold {ModifierClassName: fields}; the first
 * QuantizationModifier (or GPTQModifier) gives targets, ignore, scheme (a preset name, a
 * {PRESET: [targets]} map or a scheme object) or config_groups, and kv_cache_scheme. Presets
 * are expanded into explicit arguments, as the reference writer does. */
#ifndef QV_EXPORT_RECIPE_H
#define QV_EXPORT_RECIPE_H

#include "io/json.h"

typedef struct qv_ct_args {
    bool present;
    int num_bits;
    bool is_float;      /* type "float" (else "int") */
    bool symmetric;
    int64_t group_size; /* 0 = null, -1 = channel, > 0 group */
    char strategy[16];  /* tensor, channel, group, block, token, tensor_group, attn_head */
    bool dynamic;
    char observer[32];  /* "" = null */
} qv_ct_args;

typedef struct qv_recipe {
    char *path;
    char scheme[32];    /* preset name when the recipe gave one */
    size_t n_targets, n_ignore;
    char **targets, **ignore;
    qv_ct_args weights, input, kv;
} qv_recipe;

qv_status qv_recipe_load(const char *path, qv_recipe *r);
/* Parses recipe text (YAML or JSON); `what` names it in errors. */
qv_status qv_recipe_parse(const char *text, size_t len, const char *what, qv_recipe *r);
void qv_recipe_free(qv_recipe *r);
/* Expands a preset (FP8, FP8_DYNAMIC, W4A16, W4A16_ASYM, W8A16, W8A8/INT8, W{2..8}A16) into
 * weights / input arguments. false when unknown. */
bool qv_ct_preset(const char *name, qv_ct_args *weights, qv_ct_args *input);
/* Adds a target or ignore entry (copied). */
qv_status qv_recipe_add(char ***list, size_t *n, const char *s);

/* compressed-tensors name matching (utils/match.py): "re:<python regex>" matches at the start of
 * the module name (re.match); any other entry must equal the name, or for targets only, be the
 * class name "Linear" of a linear module. Errors name the bad pattern. */
qv_status qv_ct_match(const char *pattern, const char *module, bool is_linear, bool is_target, bool *match);
/* In scope of a config: matches some target and no ignore entry. */
qv_status qv_ct_in_scope(const qv_recipe *r, const char *module, bool is_linear, bool *in);

/* The exact QuantizationArgs key set (FORMATS.md §4.1): num_bits, type, symmetric, group_size,
 * strategy, block_structure, dynamic, actorder, observer, observer_kwargs. */
qv_json *qv_ct_args_json(const qv_ct_args *a);

/* quantization_config objects (new references; NULL on OOM). */
qv_json *qv_qconfig_awq(int bits, int64_t group, char *const *not_convert, size_t n);
qv_json *qv_qconfig_gptq(int bits, int64_t group, bool sym, char *const *exclude_regex, size_t n,
                         const char *block_name);
/* compressed-tensors: format "pack-quantized" / "int-quantized" / "float-quantized". */
qv_json *qv_qconfig_ct(const char *format, const qv_ct_args *weights, const qv_ct_args *input, const qv_ct_args *kv,
                       char *const *targets, size_t n_targets, char *const *ignore, size_t n_ignore);

/* The compressed-tensors layout version qvlm writes (dense sub-byte packing, FORMATS.md §4.3 (c)). */
#define QV_CT_VERSION "0.18.0"

#endif
