/* config.c — config.json into qv_model_config (config.h): the file, the fields every family
 * shares (architectures, torch_dtype / dtype) and the dispatch to the family that reads the
 * architecture (src/family/family.h); the shared readers of config_parse.h (typed fields, the
 * decoder-only LLM block with its RoPE variants). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../family/family.h"
#include "config_parse.h"

const char *qv_decoder_name(qv_decoder_kind k)
{
    switch (k) {
    case QV_DECODER_QWEN2: return "qwen2";
    case QV_DECODER_INTERNLM2: return "internlm2";
    case QV_DECODER_LLAMA: return "llama";
    }
    return "?";
}

void qv_cfg_copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

const char *qv_cfg_first_arch(const qv_json *obj)
{
    qv_json *a = qv_json_get(obj, "architectures");
    if (!qv_json_is_type(a, json_type_array) || json_object_array_length(a) < 1)
        return NULL;
    qv_json *s = json_object_array_get_idx(a, 0);
    return qv_json_is_type(s, json_type_string) ? json_object_get_string(s) : NULL;
}

qv_status qv_cfg_int_in(const qv_json *o, const char *key, const char *file, const char *ctx, int64_t lo, int64_t hi,
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

qv_status qv_cfg_pos_int(const qv_json *o, const char *key, const char *file, const char *ctx, int64_t hi, int64_t *out)
{
    return qv_cfg_int_in(o, key, file, ctx, 1, hi, true, out);
}

qv_status qv_cfg_pos_num(const qv_json *o, const char *key, const char *file, const char *ctx, double *out)
{
    double x = *out;
    QV_TRY(qv_json_num_opt(o, key, file, &x));
    if (!(x > 0 && x < 1e300))
        return qv_fail(QV_ERR_INVALID, "%s: field \"%s%s\": %g is not a positive finite number", file, ctx, key, x);
    *out = x;
    return QV_OK;
}

qv_status qv_cfg_opt_id(const qv_json *o, const char *key, const char *file, int64_t *out)
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
    QV_TRY(qv_cfg_pos_num(o, "rope_theta", file, "", &c->rope_theta));
    qv_json *rs = qv_json_get(o, "rope_scaling");
    qv_json *rp = qv_json_get(o, "rope_parameters"); /* transformers 5 */
    if (qv_json_is_type(rp, json_type_object)) {
        QV_TRY(qv_cfg_pos_num(rp, "rope_theta", file, "rope_parameters.", &c->rope_theta));
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
    QV_TRY(qv_cfg_pos_num(rs, "factor", file, "rope_scaling.", &c->rope_factor));
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

qv_status qv_cfg_parse_llm(const qv_json *o, const char *file, const char *ctx, const char *arch, qv_llm_config *c)
{
    memset(c, 0, sizeof *c);
    qv_cfg_copy_str(c->architecture, sizeof c->architecture, arch);
    const char *mt = NULL;
    QV_TRY(qv_json_str_opt(o, "model_type", file, &mt));
    if (!strcmp(arch, "Qwen2ForCausalLM") || !strcmp(arch, "Qwen2Model")) {
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
    QV_TRY(qv_cfg_pos_int(o, "hidden_size", file, ctx, QV_MAX_HIDDEN, &c->hidden));
    QV_TRY(qv_cfg_pos_int(o, "num_hidden_layers", file, ctx, QV_MAX_LAYERS, &c->n_layers));
    QV_TRY(qv_cfg_pos_int(o, "num_attention_heads", file, ctx, QV_MAX_HEADS, &c->n_heads));
    QV_TRY(qv_cfg_pos_int(o, "intermediate_size", file, ctx, QV_MAX_INTERMEDIATE, &c->intermediate));
    QV_TRY(qv_cfg_pos_int(o, "vocab_size", file, ctx, QV_MAX_VOCAB, &c->vocab));
    c->n_kv_heads = c->n_heads;
    QV_TRY(qv_cfg_int_in(o, "num_key_value_heads", file, ctx, 1, QV_MAX_HEADS, false, &c->n_kv_heads));
    c->head_dim = c->hidden / c->n_heads;
    if (qv_json_get(o, "head_dim") && !qv_json_is_type(qv_json_get(o, "head_dim"), json_type_null))
        QV_TRY(qv_cfg_pos_int(o, "head_dim", file, ctx, QV_MAX_HEAD_DIM, &c->head_dim));
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
    QV_TRY(qv_cfg_int_in(o, "max_position_embeddings", file, ctx, 1, QV_MAX_POSITIONS, false, &c->max_positions));
    c->rms_eps = 1e-6;
    QV_TRY(qv_cfg_pos_num(o, "rms_norm_eps", file, ctx, &c->rms_eps));
    QV_TRY(parse_rope(o, file, c));
    QV_TRY(qv_json_bool_opt(o, "tie_word_embeddings", file, &c->tie_embeddings));
    QV_TRY(qv_cfg_opt_id(o, "bos_token_id", file, &c->bos_id));
    QV_TRY(qv_cfg_opt_id(o, "eos_token_id", file, &c->eos_id));
    QV_TRY(qv_cfg_opt_id(o, "pad_token_id", file, &c->pad_id));
    const char *act = "silu";
    QV_TRY(qv_json_str_opt(o, "hidden_act", file, &act));
    if (strcmp(act, "silu") != 0)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: %shidden_act \"%s\" is not supported (silu)", file, ctx, act);
    qv_cfg_copy_str(c->hidden_act, sizeof c->hidden_act, act);
    return QV_OK;
}

/* transformers writes text_config.model_type but often no architectures there. */
static const struct {
    const char *model_type, *arch;
} k_text_arch[] = {{"qwen2", "Qwen2ForCausalLM"}, {"llama", "LlamaForCausalLM"}, {"internlm2", "InternLM2ForCausalLM"}};

qv_status qv_cfg_parse_text_config(const qv_json *root, const qv_json *sub, const char *file, const char *ctx,
                                   const char *arch, qv_llm_config *c)
{
    const char *mt = NULL;
    if (!arch)
        arch = qv_cfg_first_arch(sub);
    if (!arch) {
        QV_TRY(qv_json_str_opt(sub, "model_type", file, &mt));
        for (size_t i = 0; mt && i < QV_ARRAY_LEN(k_text_arch) && !arch; i++)
            if (!strcmp(mt, k_text_arch[i].model_type))
                arch = k_text_arch[i].arch;
        if (!arch)
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: %s%s \"%s\" is not supported (qwen2, llama, internlm2)", file, ctx,
                           mt ? "model_type" : "architectures", mt ? mt : "(none)");
    }
    QV_TRY(qv_cfg_parse_llm(sub, file, ctx, arch, c));
    if (sub != root && !qv_json_get(sub, "tie_word_embeddings"))
        QV_TRY(qv_json_bool_opt(root, "tie_word_embeddings", file, &c->tie_embeddings));
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
    const qv_family *fam = NULL;
    if (!qv_json_is_type(root, json_type_object)) {
        st = qv_fail(QV_ERR_FORMAT, "%s: not a JSON object", file);
        goto done;
    }
    const char *arch = qv_cfg_first_arch(root);
    if (!arch) {
        st = qv_fail(QV_ERR_INVALID, "%s: missing field \"architectures\"", file);
        goto done;
    }
    qv_cfg_copy_str(cfg->architecture, sizeof cfg->architecture, arch);
    const char *dt = NULL;
    QV_CHECK(st = qv_json_str_opt(root, "torch_dtype", file, &dt), done);
    if (!dt)
        QV_CHECK(st = qv_json_str_opt(root, "dtype", file, &dt), done);
    qv_cfg_copy_str(cfg->torch_dtype, sizeof cfg->torch_dtype, dt);
    if (!(fam = qv_family_by_architecture(arch))) {
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported (supported: %s)", file, arch,
                     qv_supported_architectures());
        goto done;
    }
    cfg->family = fam->id; /* the parser may move it to a sibling entry (InternVL2 / InternVL3) */
    st = fam->parse_config(root, arch, file, cfg);
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

qv_part qv_model_part_of(const qv_model_config *cfg, const char *tensor_name)
{
    const qv_family *f = qv_family_get(cfg->family);
    return f->part_of ? f->part_of(tensor_name) : QV_PART_LLM;
}
