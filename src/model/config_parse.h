/* config_parse.h — the config.json readers the family parsers share (config.c): typed fields
 * with one-line errors naming the file and the key path, the decoder-only LLM block (flat keys,
 * classic and transformers-5 spellings) and the composite-config conventions (text_config /
 * llm_config, tie_word_embeddings at the top). The per-architecture parts live in
 * src/family/<family>.c. Not part of the library's interface. */
#ifndef QV_MODEL_CONFIG_PARSE_H
#define QV_MODEL_CONFIG_PARSE_H

#include "../io/json.h"
#include "config.h"

/* snprintf(dst, n, "%s", src), "" for NULL. */
void qv_cfg_copy_str(char *dst, size_t n, const char *src);
/* architectures[0] of obj, NULL when absent or not a string. */
const char *qv_cfg_first_arch(const qv_json *obj);
/* Integer field in [lo, hi]; `ctx` prefixes the key in errors ("vision_config."). Absent or
 * null: an error when required, else *out is left as it is. The caps of config.h keep every
 * later size computation in range, so an out-of-range dimension is refused here, with the key
 * and its range, rather than overflowing somewhere else. */
qv_status qv_cfg_int_in(const qv_json *o, const char *key, const char *file, const char *ctx, int64_t lo, int64_t hi,
                        bool required, int64_t *out);
/* Required integer in 1 .. hi (one of the QV_MAX_* caps). */
qv_status qv_cfg_pos_int(const qv_json *o, const char *key, const char *file, const char *ctx, int64_t hi, int64_t *out);
/* Optional positive finite number (epsilons, rope theta and factor); *out keeps its default
 * when absent. */
qv_status qv_cfg_pos_num(const qv_json *o, const char *key, const char *file, const char *ctx, double *out);
/* Optional token id (-1 when absent or null; a list: its first element). */
qv_status qv_cfg_opt_id(const qv_json *o, const char *key, const char *file, int64_t *out);
/* A decoder-only LLM config with flat keys (Qwen2, InternLM2, Llama; `arch` picks the decoder
 * kind). `ctx` prefixes key names in errors ("llm_config."). */
qv_status qv_cfg_parse_llm(const qv_json *o, const char *file, const char *ctx, const char *arch, qv_llm_config *c);
/* The LLM of a composite config: `sub` (text_config / llm_config, or root itself) parsed with
 * qv_cfg_parse_llm as decoder architecture `arch`, or when arch is NULL sub's architectures[0],
 * or when that is absent too (transformers writes only model_type there) the one of its
 * model_type (qwen2, llama, internlm2); tie_word_embeddings from the top level when sub lacks it
 * (transformers 5 keeps it there). */
qv_status qv_cfg_parse_text_config(const qv_json *root, const qv_json *sub, const char *file, const char *ctx,
                                   const char *arch, qv_llm_config *c);

#endif
