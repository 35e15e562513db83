/* config.c — config.json parsing (config.h). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../io/json.h"

static const char *k_supported = "InternVLChatModel, Qwen2ForCausalLM, LlamaForCausalLM, InternLM2ForCausalLM, "
                                 "Qwen2VLForConditionalGeneration, LlavaQwenForCausalLM";

const char *qv_supported_architectures(void) { return k_supported; }

const char *qv_family_name(qv_family_id f)
{
    switch (f) {
    case QV_FAMILY_TEXT: return "text";
    case QV_FAMILY_INTERNVL2: return "internvl2";
    case QV_FAMILY_INTERNVL3: return "internvl3";
    case QV_FAMILY_QWEN2_VL: return "qwen2_vl";
    case QV_FAMILY_LLAVA_ONEVISION: return "llava_onevision";
    }
    return "?";
}

const char *qv_decoder_name(qv_decoder_kind k)
{
    switch (k) {
    case QV_DECODER_QWEN2: return "qwen2";
    case QV_DECODER_INTERNLM2: return "internlm2";
    case QV_DECODER_LLAMA: return "llama";
    }
    return "?";
}

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static const char *first_arch(const qv_json *obj)
{
    qv_json *a = qv_json_get(obj, "architectures");
    if (!qv_json_is_type(a, json_type_array) || json_object_array_length(a) < 1)
        return NULL;
    qv_json *s = json_object_array_get_idx(a, 0);
    return qv_json_is_type(s, json_type_string) ? json_object_get_string(s) : NULL;
}

/* Integer field in [lo, hi]; `ctx` is the key path prefix for errors ("llm_config."). The
 * caps of config.h keep every later size computation in range, so an out-of-range dimension
 * is refused here, with the key, rather than overflowing somewhere else. */
static qv_status int_in(const qv_json *o, const char *key, const char *file, const char *ctx, int64_t lo, int64_t hi,
                        bool required, int64_t *out)
{
    qv_json *v = qv_json_get(o, key);
    if (!v || qv_json_is_type(v, json_type_null)) {
        if (required)
            return qv_fail(QV_ERR_INVALID, "%s: missing field \"%s%s\"", file, ctx, key);
        return QV_OK;
    }
    int64_t x;
    if (!qv_json_as_int(v, &x))
        return qv_fail(QV_ERR_INVALID, "%s: field \"%s%s\": expected an integer", file, ctx, key);
    if (x < lo || x > hi)
        return qv_fail(QV_ERR_INVALID, "%s: field \"%s%s\": %lld is out of range (%lld..%lld)", file, ctx, key,
                       (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return QV_OK;
}

/* Required positive integer at most hi. */
static qv_status pos_int(const qv_json *o, const char *key, const char *file, const char *ctx, int64_t hi,
                         int64_t *out)
{
    return int_in(o, key, file, ctx, 1, hi, true, out);
}

/* Optional positive finite number (epsilons, rope theta and factor). */
static qv_status pos_num(const qv_json *o, const char *key, const char *file, const char *ctx, double *out)
{
    double x = *out;
    QV_TRY(qv_json_num_opt(o, key, file, &x));
    if (!(x > 0 && x < 1e300))
        return qv_fail(QV_ERR_INVALID, "%s: field \"%s%s\": %g is not a positive finite number", file, ctx, key, x);
    *out = x;
    return QV_OK;
}

static qv_status opt_id(const qv_json *o, const char *key, const char *file, int64_t *out)
{
    qv_json *v = qv_json_get(o, key);
    *out = -1;
    if (qv_json_is_type(v, json_type_array)) /* eos_token_id may be a list: take the first */
        v = json_object_array_length(v) ? json_object_array_get_idx(v, 0) : NULL;
    if (!v || qv_json_is_type(v, json_type_null))
        return QV_OK;
    if (!qv_json_as_int(v, out))
        return qv_fail(QV_ERR_INVALID, "%s: field \"%s\": expected an integer", file, key);
    return QV_OK;
}

static qv_status parse_rope(const qv_json *o, const char *file, qv_llm_config *c)
{
    c->rope_theta = 10000.0;
    c->rope_kind = QV_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    QV_TRY(pos_num(o, "rope_theta", file, "", &c->rope_theta));
    qv_json *rs = qv_json_get(o, "rope_scaling");
    qv_json *rp = qv_json_get(o, "rope_parameters"); /* transformers 5 */
    if (qv_json_is_type(rp, json_type_object)) {
        QV_TRY(pos_num(rp, "rope_theta", file, "rope_parameters.", &c->rope_theta));
        if (!rs || qv_json_is_type(rs, json_type_null))
            rs = rp;
    }
    if (!rs || qv_json_is_type(rs, json_type_null))
        return QV_OK;
    if (!qv_json_is_type(rs, json_type_object))
        return qv_fail(QV_ERR_INVALID, "%s: field \"rope_scaling\": expected an object", file);
    const char *type = NULL;
    QV_TRY(qv_json_str_opt(rs, "rope_type", file, &type));
    if (!type)
        QV_TRY(qv_json_str_opt(rs, "type", file, &type));
    QV_TRY(pos_num(rs, "factor", file, "rope_scaling.", &c->rope_factor));
    if (!type || !strcmp(type, "default")) {
        c->rope_kind = QV_ROPE_DEFAULT;
    } else if (!strcmp(type, "dynamic")) {
        c->rope_kind = QV_ROPE_DYNAMIC;
    } else if (!strcmp(type, "linear")) {
        c->rope_kind = QV_ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        c->rope_kind = QV_ROPE_LLAMA3;
    } else if (!strcmp(type, "mrope")) {
        c->rope_kind = QV_ROPE_MROPE;
    } else {
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported (default, dynamic, linear, "
                       "llama3, mrope)", file, type);
    }
    qv_json *ms = qv_json_get(rs, "mrope_section");
    if (ms) {
        if (!qv_json_is_type(ms, json_type_array) || json_object_array_length(ms) != 3)
            return qv_fail(QV_ERR_INVALID, "%s: field \"mrope_section\": expected three integers", file);
        for (int i = 0; i < 3; i++) {
            int64_t v;
            if (!qv_json_as_int(json_object_array_get_idx(ms, (size_t)i), &v) || v < 0 || v > 4096)
                return qv_fail(QV_ERR_INVALID, "%s: field \"mrope_section\": expected three integers", file);
            c->mrope_section[i] = (int)v;
        }
        if (!type || strcmp(type, "mrope") == 0 || strcmp(type, "default") == 0)
            c->rope_kind = QV_ROPE_MROPE;
    }
    return QV_OK;
}

/* A decoder-only LLM config (flat keys). `ctx` prefixes key names in errors. */
static qv_status parse_llm(const qv_json *o, const char *file, const char *ctx, const char *arch, qv_llm_config *c)
{
    memset(c, 0, sizeof *c);
    copy_str(c->architecture, sizeof c->architecture, arch);
    const char *mt = NULL;
    QV_TRY(qv_json_str_opt(o, "model_type", file, &mt));
    if (!strcmp(arch, "Qwen2ForCausalLM") || !strcmp(arch, "Qwen2VLForConditionalGeneration") ||
        !strcmp(arch, "LlavaQwenForCausalLM") || !strcmp(arch, "Qwen2Model")) {
        c->kind = QV_DECODER_QWEN2;
        c->qkv_bias = true;
    } else if (!strcmp(arch, "InternLM2ForCausalLM")) {
        c->kind = QV_DECODER_INTERNLM2;
        QV_TRY(qv_json_bool_opt(o, "bias", file, &c->qkv_bias));
    } else if (!strcmp(arch, "LlamaForCausalLM")) {
        c->kind = QV_DECODER_LLAMA;
        QV_TRY(qv_json_bool_opt(o, "attention_bias", file, &c->qkv_bias));
    } else {
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: language model architecture \"%s\" is not supported "
                       "(Qwen2ForCausalLM, InternLM2ForCausalLM, LlamaForCausalLM)", file, arch);
    }
    QV_TRY(pos_int(o, "hidden_size", file, ctx, QV_MAX_HIDDEN, &c->hidden));
    QV_TRY(pos_int(o, "num_hidden_layers", file, ctx, QV_MAX_LAYERS, &c->n_layers));
    QV_TRY(pos_int(o, "num_attention_heads", file, ctx, QV_MAX_HEADS, &c->n_heads));
    QV_TRY(pos_int(o, "intermediate_size", file, ctx, QV_MAX_INTERMEDIATE, &c->intermediate));
    QV_TRY(pos_int(o, "vocab_size", file, ctx, QV_MAX_VOCAB, &c->vocab));
    c->n_kv_heads = c->n_heads;
    QV_TRY(int_in(o, "num_key_value_heads", file, ctx, 1, QV_MAX_HEADS, false, &c->n_kv_heads));
    c->head_dim = c->hidden / c->n_heads;
    if (qv_json_get(o, "head_dim") && !qv_json_is_type(qv_json_get(o, "head_dim"), json_type_null))
        QV_TRY(pos_int(o, "head_dim", file, ctx, QV_MAX_HEAD_DIM, &c->head_dim));
    else if (c->hidden % c->n_heads)
        return qv_fail(QV_ERR_INVALID, "%s: %shidden_size %lld is not a multiple of num_attention_heads %lld", file, ctx,
                       (long long)c->hidden, (long long)c->n_heads);
    if (c->n_heads % c->n_kv_heads)
        return qv_fail(QV_ERR_INVALID, "%s: %snum_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                       file, ctx, (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->head_dim > QV_MAX_HEAD_DIM)
        return qv_fail(QV_ERR_INVALID, "%s: %shead dimension %lld is out of range (1..%d)", file, ctx,
                       (long long)c->head_dim, QV_MAX_HEAD_DIM);
    if (c->head_dim % 2)
        return qv_fail(QV_ERR_INVALID, "%s: %shead dimension %lld is odd (rotary embedding needs pairs)", file, ctx,
                       (long long)c->head_dim);
    c->max_positions = 32768;
    QV_TRY(int_in(o, "max_position_embeddings", file, ctx, 1, QV_MAX_POSITIONS, false, &c->max_positions));
    c->rms_eps = 1e-6;
    QV_TRY(pos_num(o, "rms_norm_eps", file, ctx, &c->rms_eps));
    QV_TRY(parse_rope(o, file, c));
    QV_TRY(qv_json_bool_opt(o, "tie_word_embeddings", file, &c->tie_embeddings));
    QV_TRY(opt_id(o, "bos_token_id", file, &c->bos_id));
    QV_TRY(opt_id(o, "eos_token_id", file, &c->eos_id));
    QV_TRY(opt_id(o, "pad_token_id", file, &c->pad_id));
    const char *act = "silu";
    QV_TRY(qv_json_str_opt(o, "hidden_act", file, &act));
    if (strcmp(act, "silu") != 0)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: %shidden_act \"%s\" is not supported (silu)", file, ctx, act);
    copy_str(c->hidden_act, sizeof c->hidden_act, act);
    return QV_OK;
}

static qv_status parse_internvit(const qv_json *v, const char *file, qv_vision_config *c)
{
    const char *ctx = "vision_config.";
    memset(c, 0, sizeof *c);
    const char *mt = "intern_vit_6b", *norm = "layer_norm", *act = "gelu";
    QV_TRY(qv_json_str_opt(v, "model_type", file, &mt));
    copy_str(c->model_type, sizeof c->model_type, mt);
    QV_TRY(pos_int(v, "hidden_size", file, ctx, QV_MAX_HIDDEN, &c->hidden));
    QV_TRY(pos_int(v, "num_hidden_layers", file, ctx, QV_MAX_LAYERS, &c->n_layers));
    QV_TRY(pos_int(v, "num_attention_heads", file, ctx, QV_MAX_HEADS, &c->n_heads));
    QV_TRY(pos_int(v, "intermediate_size", file, ctx, QV_MAX_INTERMEDIATE, &c->intermediate));
    QV_TRY(pos_int(v, "image_size", file, ctx, QV_MAX_IMAGE_SIDE, &c->image_size));
    QV_TRY(pos_int(v, "patch_size", file, ctx, QV_MAX_IMAGE_SIDE, &c->patch_size));
    c->channels = 3;
    QV_TRY(int_in(v, "num_channels", file, ctx, 1, QV_MAX_CHANNELS, false, &c->channels));
    QV_TRY(qv_json_str_opt(v, "norm_type", file, &norm));
    if (!strcmp(norm, "layer_norm"))
        c->norm = QV_NORM_LAYER;
    else if (!strcmp(norm, "rms_norm"))
        c->norm = QV_NORM_RMS;
    else
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: vision_config.norm_type \"%s\" is not supported", file, norm);
    c->norm_eps = 1e-6;
    QV_TRY(pos_num(v, "layer_norm_eps", file, ctx, &c->norm_eps));
    QV_TRY(qv_json_bool_opt(v, "qkv_bias", file, &c->qkv_bias));
    QV_TRY(qv_json_bool_opt(v, "qk_normalization", file, &c->qk_norm));
    QV_TRY(qv_json_str_opt(v, "hidden_act", file, &act));
    copy_str(c->hidden_act, sizeof c->hidden_act, act);
    if (c->hidden % c->n_heads || c->image_size % c->patch_size)
        return qv_fail(QV_ERR_INVALID, "%s: vision_config dimensions are inconsistent", file);
    return QV_OK;
}

static qv_status parse_qwen2vl_vision(const qv_json *v, const char *file, qv_vision_config *c)
{
    const char *ctx = "vision_config.";
    memset(c, 0, sizeof *c);
    copy_str(c->model_type, sizeof c->model_type, "qwen2_vl");
    int64_t mlp_ratio = 4;
    QV_TRY(pos_int(v, "embed_dim", file, ctx, QV_MAX_HIDDEN, &c->hidden));
    QV_TRY(pos_int(v, "depth", file, ctx, QV_MAX_LAYERS, &c->n_layers));
    QV_TRY(pos_int(v, "num_heads", file, ctx, QV_MAX_HEADS, &c->n_heads));
    QV_TRY(int_in(v, "mlp_ratio", file, ctx, 1, 64, false, &mlp_ratio));
    c->intermediate = c->hidden * mlp_ratio;
    if (c->intermediate > QV_MAX_INTERMEDIATE)
        return qv_fail(QV_ERR_INVALID, "%s: vision_config: embed_dim x mlp_ratio = %lld is out of range (1..%lld)", file,
                       (long long)c->intermediate, (long long)QV_MAX_INTERMEDIATE);
    QV_TRY(pos_int(v, "patch_size", file, ctx, QV_MAX_IMAGE_SIDE, &c->patch_size));
    QV_TRY(pos_int(v, "hidden_size", file, ctx, QV_MAX_HIDDEN, &c->out_hidden));
    c->spatial_merge_size = 2;
    c->temporal_patch_size = 2;
    c->channels = 3;
    QV_TRY(int_in(v, "spatial_merge_size", file, ctx, 1, 64, false, &c->spatial_merge_size));
    QV_TRY(int_in(v, "temporal_patch_size", file, ctx, 1, 64, false, &c->temporal_patch_size));
    QV_TRY(int_in(v, "in_chans", file, ctx, 1, QV_MAX_CHANNELS, false, &c->channels));
    if (c->hidden % c->n_heads)
        return qv_fail(QV_ERR_INVALID, "%s: vision_config: embed_dim %lld is not a multiple of num_heads %lld", file,
                       (long long)c->hidden, (long long)c->n_heads);
    c->norm = QV_NORM_LAYER;
    c->norm_eps = 1e-6;
    c->qkv_bias = true;
    copy_str(c->hidden_act, sizeof c->hidden_act, "quick_gelu");
    return QV_OK;
}

qv_status qv_model_config_load(const char *path, qv_model_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    char *file = qv_is_dir(path) ? qv_path_join(path, "config.json") : qv_strdup(path);
    if (!file)
        return QV_ERR_NOMEM;
    char *text = NULL;
    size_t len = 0;
    qv_status st = QV_OK;
    if (!qv_path_exists(file))
        st = qv_fail(QV_ERR_IO, "%s: missing (a model folder needs config.json)", file);
    else
        st = qv_read_file(file, QV_JSON_MAX_FILE, &text, &len);
    if (st == QV_OK)
        st = qv_model_config_parse(text, len, file, cfg);
    qv_free(text);
    qv_free(file);
    return st;
}

qv_status qv_model_config_parse(const char *text, size_t len, const char *path, qv_model_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->image_token_id = cfg->vision_start_id = cfg->vision_end_id = -1;
    if (!(cfg->path = qv_strdup(path)))
        return QV_ERR_NOMEM;
    const char *file = cfg->path;
    qv_json *root;
    qv_status st = qv_json_parse(text, len, file, 0, &root);
    if (st != QV_OK) {
        qv_free(cfg->path);
        cfg->path = NULL;
        return st;
    }
    if (!qv_json_is_type(root, json_type_object)) {
        st = qv_fail(QV_ERR_FORMAT, "%s: not a JSON object", file);
        goto done;
    }
    const char *arch = first_arch(root);
    if (!arch) {
        st = qv_fail(QV_ERR_INVALID, "%s: missing field \"architectures\"", file);
        goto done;
    }
    copy_str(cfg->architecture, sizeof cfg->architecture, arch);
    const char *dt = NULL;
    QV_CHECK(st = qv_json_str_opt(root, "torch_dtype", file, &dt), done);
    if (!dt)
        QV_CHECK(st = qv_json_str_opt(root, "dtype", file, &dt), done);
    copy_str(cfg->torch_dtype, sizeof cfg->torch_dtype, dt);

    if (!strcmp(arch, "InternVLChatModel")) {
        qv_json *lc, *vc;
        QV_CHECK(st = qv_json_obj(root, "llm_config", file, &lc), done);
        QV_CHECK(st = qv_json_obj(root, "vision_config", file, &vc), done);
        const char *larch = first_arch(lc);
        if (!larch) {
            st = qv_fail(QV_ERR_INVALID, "%s: missing field \"llm_config.architectures\"", file);
            goto done;
        }
        QV_CHECK(st = parse_llm(lc, file, "llm_config.", larch, &cfg->llm), done);
        QV_CHECK(st = parse_internvit(vc, file, &cfg->vision), done);
        cfg->has_vision = true;
        const char *tmpl = "internlm2-chat", *ps = "v1";
        QV_CHECK(st = qv_json_str_opt(root, "template", file, &tmpl), done);
        QV_CHECK(st = qv_json_str_opt(root, "ps_version", file, &ps), done);
        copy_str(cfg->template_name, sizeof cfg->template_name, tmpl);
        copy_str(cfg->ps_version, sizeof cfg->ps_version, ps);
        cfg->downsample_ratio = 0.5;
        cfg->select_layer = -1;
        cfg->force_image_size = cfg->vision.image_size;
        cfg->min_dynamic_patch = 1;
        cfg->max_dynamic_patch = 12;
        cfg->use_thumbnail = true;
        QV_CHECK(st = qv_json_num_opt(root, "downsample_ratio", file, &cfg->downsample_ratio), done);
        int64_t nl = cfg->vision.n_layers;
        QV_CHECK(st = int_in(root, "select_layer", file, "", -nl - 1, nl, false, &cfg->select_layer), done);
        QV_CHECK(st = int_in(root, "force_image_size", file, "", 1, QV_MAX_IMAGE_SIDE, false, &cfg->force_image_size),
                 done);
        QV_CHECK(st = int_in(root, "min_dynamic_patch", file, "", 0, 1024, false, &cfg->min_dynamic_patch), done);
        QV_CHECK(st = int_in(root, "max_dynamic_patch", file, "", 0, 1024, false, &cfg->max_dynamic_patch), done);
        QV_CHECK(st = qv_json_bool_opt(root, "use_thumbnail", file, &cfg->use_thumbnail), done);
        if (!strcmp(tmpl, "Hermes-2") || !strcmp(tmpl, "internlm2-chat") || !strcmp(tmpl, "phi3-chat")) {
            cfg->family = QV_FAMILY_INTERNVL2;
        } else if (!strcmp(tmpl, "internvl2_5")) {
            cfg->family = QV_FAMILY_INTERNVL3;
        } else {
            st = qv_fail(QV_ERR_UNSUPPORTED, "%s: InternVL template \"%s\" is not supported (Hermes-2, internlm2-chat, "
                         "internvl2_5)", file, tmpl);
            goto done;
        }
        if (cfg->downsample_ratio != 0.5) {
            st = qv_fail(QV_ERR_UNSUPPORTED, "%s: downsample_ratio %g is not supported (0.5)", file, cfg->downsample_ratio);
            goto done;
        }
    } else if (!strcmp(arch, "Qwen2ForCausalLM") || !strcmp(arch, "LlamaForCausalLM") ||
               !strcmp(arch, "InternLM2ForCausalLM")) {
        cfg->family = QV_FAMILY_TEXT;
        QV_CHECK(st = parse_llm(root, file, "", arch, &cfg->llm), done);
    } else if (!strcmp(arch, "Qwen2VLForConditionalGeneration")) {
        cfg->family = QV_FAMILY_QWEN2_VL;
        qv_json *tc = qv_json_get(root, "text_config"), *vc;
        QV_CHECK(st = parse_llm(qv_json_is_type(tc, json_type_object) ? tc : root, file, "", arch, &cfg->llm), done);
        QV_CHECK(st = qv_json_obj(root, "vision_config", file, &vc), done);
        QV_CHECK(st = parse_qwen2vl_vision(vc, file, &cfg->vision), done);
        cfg->has_vision = true;
        QV_CHECK(st = opt_id(root, "image_token_id", file, &cfg->image_token_id), done);
        QV_CHECK(st = opt_id(root, "vision_start_token_id", file, &cfg->vision_start_id), done);
        QV_CHECK(st = opt_id(root, "vision_end_token_id", file, &cfg->vision_end_id), done);
    } else if (!strcmp(arch, "LlavaQwenForCausalLM")) {
        cfg->family = QV_FAMILY_LLAVA_ONEVISION;
        QV_CHECK(st = parse_llm(root, file, "", arch, &cfg->llm), done);
        cfg->has_vision = true;
        copy_str(cfg->vision.model_type, sizeof cfg->vision.model_type, "siglip_vision_model");
        QV_CHECK(st = int_in(root, "mm_hidden_size", file, "", 1, QV_MAX_HIDDEN, false, &cfg->vision.hidden), done);
    } else {
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported (supported: %s)", file, arch,
                     k_supported);
    }
done:
    qv_json_free(root);
    if (st != QV_OK) {
        qv_free(cfg->path);
        cfg->path = NULL;
    }
    return st;
}

void qv_model_config_free(qv_model_config *cfg)
{
    if (!cfg)
        return;
    qv_free(cfg->path);
    cfg->path = NULL;
}

const char *qv_part_name(qv_part p)
{
    static const char *names[] = {"vision", "projector", "llm"};
    return (unsigned)p < QV_PART_COUNT ? names[p] : "?";
}

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

qv_part qv_model_part_of(const qv_model_config *cfg, const char *n)
{
    switch (cfg->family) {
    case QV_FAMILY_INTERNVL2:
    case QV_FAMILY_INTERNVL3:
        if (starts(n, "vision_model.") || starts(n, "model.vision_tower."))
            return QV_PART_VISION;
        if (starts(n, "mlp1.") || starts(n, "model.multi_modal_projector."))
            return QV_PART_PROJECTOR;
        return QV_PART_LLM;
    case QV_FAMILY_QWEN2_VL:
        if (starts(n, "visual.merger.") || starts(n, "model.visual.merger."))
            return QV_PART_PROJECTOR;
        if (starts(n, "visual.") || starts(n, "model.visual."))
            return QV_PART_VISION;
        return QV_PART_LLM;
    case QV_FAMILY_LLAVA_ONEVISION:
        if (starts(n, "model.vision_tower.") || starts(n, "vision_tower.") || starts(n, "model.vision_tower"))
            return QV_PART_VISION;
        if (starts(n, "model.mm_projector.") || starts(n, "model.image_newline") ||
            starts(n, "model.multi_modal_projector.") || starts(n, "multi_modal_projector.") ||
            starts(n, "image_newline"))
            return QV_PART_PROJECTOR;
        return QV_PART_LLM;
    case QV_FAMILY_TEXT:
        return QV_PART_LLM;
    }
    return QV_PART_LLM;
}
