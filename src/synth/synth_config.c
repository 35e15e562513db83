/* synth_config.c — the small files of a synthetic model folder: config.json in the key spelling
 * and order of the real checkpoint (the matching fixture model's keys, fixtures README §2,
 * §13.1, §14.1, §15.1, with the real values of the architecture row), generation_config.json and
 * preprocessor_config.json where the real model has them, the SigLIP tower config of
 * LLaVA-OneVision, and SYNTHETIC.md (synth.h).
 *
 * Deliberate differences from the real files, as in the fixtures: attn_implementation "eager"
 * and use_flash_attn false; token-id fields point at the shipped small tokenizer; LLaVA's
 * mm_vision_tower names the tower folder written beside config.json instead of the hub id. */
#include <stdio.h>
#include <string.h>

#include "../io/json.h"
#include "synth.h"

/* ---- a JSON writer with Python's json.dumps(indent=2) layout -------------------------------- */

typedef struct jw {
    qv_strbuf b;
    int depth;
    bool first;
} jw;

static void jw_item(jw *w, const char *key)
{
    qv_sb_puts(&w->b, w->first ? "\n" : ",\n");
    for (int i = 0; i < w->depth; i++)
        qv_sb_puts(&w->b, "  ");
    if (key) {
        qv_sb_json_str(&w->b, key, strlen(key));
        qv_sb_puts(&w->b, ": ");
    }
    w->first = false;
}

static void jw_open(jw *w, const char *key, char brace)
{
    if (w->depth > 0 || key)
        jw_item(w, key);
    qv_sb_putn(&w->b, &brace, 1);
    w->depth++;
    w->first = true;
}

static void jw_close(jw *w, char brace)
{
    w->depth--;
    if (!w->first) {
        qv_sb_puts(&w->b, "\n");
        for (int i = 0; i < w->depth; i++)
            qv_sb_puts(&w->b, "  ");
    }
    qv_sb_putn(&w->b, &brace, 1);
    w->first = false;
}

static void jw_raw(jw *w, const char *key, const char *json) /* a scalar, as JSON text */
{
    jw_item(w, key);
    qv_sb_puts(&w->b, json);
}

static void jw_int(jw *w, const char *key, int64_t v)
{
    jw_item(w, key);
    qv_sb_printf(&w->b, "%lld", (long long)v);
}

static void jw_str(jw *w, const char *key, const char *s)
{
    jw_item(w, key);
    qv_sb_json_str(&w->b, s, strlen(s));
}

static void jw_bool(jw *w, const char *key, bool v) { jw_raw(w, key, v ? "true" : "false"); }

static void jw_str_list(jw *w, const char *key, const char *s)
{
    jw_open(w, key, '[');
    jw_str(w, NULL, s);
    jw_close(w, ']');
}

/* Finishes the document; NULL (error set) on OOM. */
static char *jw_done(jw *w)
{
    qv_sb_puts(&w->b, "\n");
    if (w->b.oom) {
        qv_sb_free(&w->b);
        qv_fail(QV_ERR_NOMEM, "synth: out of memory writing a JSON file");
        return NULL;
    }
    return w->b.s;
}

static void jw_begin(jw *w)
{
    qv_sb_init(&w->b);
    w->depth = 0;
    w->first = true;
    jw_open(w, NULL, '{');
}

/* An id field only when the shipped tokenizer has the token. */
static void jw_id(jw *w, const char *key, int64_t id)
{
    if (id >= 0)
        jw_int(w, key, id);
}

/* ---- config.json -------------------------------------------------------------------------- */

static void auto_map(jw *w, const char *cfg, const char *model)
{
    jw_open(w, "auto_map", '{');
    jw_str(w, "AutoConfig", cfg);
    jw_str(w, "AutoModel", model);
    jw_str(w, "AutoModelForCausalLM", model);
    jw_close(w, '}');
}

static void dynamic_rope(jw *w, const qv_synth_llm *l, bool rope_type_key)
{
    jw_open(w, "rope_scaling", '{');
    jw_raw(w, "factor", l->rope_factor);
    if (rope_type_key)
        jw_str(w, "rope_type", "dynamic");
    jw_str(w, "type", "dynamic");
    jw_close(w, '}');
}

/* The flat Qwen2 text keys shared by the Qwen2, Qwen2-VL and LLaVA configs, from hidden_act to
 * use_sliding_window (the caller writes what comes before and after). */
static void qwen2_text_keys(jw *w, const qv_synth_plan *p, int64_t sliding_window, bool has_vision_ids)
{
    const qv_synth_llm *l = &p->dims.llm;
    const qv_synth_tok_ids *t = p->tok;
    if (has_vision_ids) {
        jw_id(w, "vision_start_token_id", t->vision_start);
        jw_id(w, "vision_end_token_id", t->vision_end);
        jw_id(w, "vision_token_id", t->vision_pad);
        jw_id(w, "image_token_id", t->image_pad);
        jw_id(w, "video_token_id", t->video_pad);
    }
    jw_str(w, "hidden_act", "silu");
    jw_int(w, "hidden_size", l->hidden);
    jw_raw(w, "initializer_range", "0.02");
    jw_int(w, "intermediate_size", l->intermediate);
    jw_int(w, "max_position_embeddings", l->max_positions);
    jw_int(w, "max_window_layers", p->arch->llm.layers);
    jw_str(w, "model_type", p->arch->layout == QV_SYNTH_QWEN2_VL     ? "qwen2_vl"
                            : p->arch->layout == QV_SYNTH_QWEN2_5_VL ? "qwen2_5_vl"
                                                                      : "qwen2");
    jw_int(w, "num_attention_heads", l->heads);
    jw_int(w, "num_hidden_layers", l->layers);
    jw_int(w, "num_key_value_heads", l->kv_heads);
    jw_raw(w, "rms_norm_eps", l->rms_eps);
    jw_raw(w, "rope_theta", l->rope_theta);
    jw_int(w, "sliding_window", sliding_window);
    jw_bool(w, "tie_word_embeddings", l->tie);
    jw_str(w, "torch_dtype", "bfloat16");
}

static void internvl_llm_config(jw *w, const qv_synth_plan *p)
{
    const qv_synth_llm *l = &p->dims.llm;
    const qv_synth_tok_ids *t = p->tok;
    bool lm2 = l->kind == QV_DECODER_INTERNLM2;
    jw_open(w, "llm_config", '{');
    jw_str(w, "_name_or_path", l->name_or_path);
    jw_bool(w, "add_cross_attention", false);
    jw_str_list(w, "architectures", lm2 ? "InternLM2ForCausalLM" : "Qwen2ForCausalLM");
    if (!lm2)
        jw_raw(w, "attention_dropout", "0.0");
    jw_str(w, "attn_implementation", "eager");
    if (lm2) {
        auto_map(w, "configuration_internlm2.InternLM2Config", "modeling_internlm2.InternLM2ForCausalLM");
        jw_bool(w, "bias", false);
    }
    jw_id(w, "bos_token_id", t->bos);
    jw_id(w, "eos_token_id", t->eos);
    jw_str(w, "hidden_act", "silu");
    jw_int(w, "hidden_size", l->hidden);
    jw_raw(w, "initializer_range", "0.02");
    jw_int(w, "intermediate_size", l->intermediate);
    jw_int(w, "max_position_embeddings", l->max_positions);
    if (!lm2)
        jw_int(w, "max_window_layers", p->arch->llm.layers);
    jw_str(w, "model_type", lm2 ? "internlm2" : "qwen2");
    jw_int(w, "num_attention_heads", l->heads);
    jw_int(w, "num_hidden_layers", l->layers);
    jw_int(w, "num_key_value_heads", l->kv_heads);
    if (lm2)
        jw_id(w, "pad_token_id", t->pad);
    jw_raw(w, "rms_norm_eps", l->rms_eps);
    if (lm2)
        dynamic_rope(w, l, false);
    jw_raw(w, "rope_theta", l->rope_theta);
    if (!lm2)
        jw_int(w, "sliding_window", 32768);
    jw_bool(w, "tie_word_embeddings", l->tie);
    jw_str(w, "torch_dtype", "bfloat16");
    jw_bool(w, "use_bfloat16", true);
    jw_bool(w, "use_cache", true);
    if (!lm2)
        jw_bool(w, "use_sliding_window", false);
    jw_int(w, "vocab_size", l->vocab);
    if (!lm2 && l->rope_factor) { /* InternVL3 (keys appended as in internvl3-tiny) */
        dynamic_rope(w, l, true);
        jw_id(w, "pad_token_id", t->pad);
    }
    jw_close(w, '}');
}

static void internvit_config(jw *w, const qv_synth_plan *p)
{
    const qv_synth_vit *v = &p->dims.vit;
    jw_open(w, "vision_config", '{');
    jw_str_list(w, "architectures", "InternVisionModel");
    jw_raw(w, "attention_dropout", "0.0");
    jw_raw(w, "drop_path_rate", "0.0");
    jw_raw(w, "dropout", "0.0");
    jw_str(w, "hidden_act", "gelu");
    jw_int(w, "hidden_size", v->hidden);
    jw_int(w, "image_size", v->image);
    jw_raw(w, "initializer_factor", v->rms_norm ? "0.1" : "1.0");
    jw_raw(w, "initializer_range", v->rms_norm ? "1e-10" : "0.02");
    jw_int(w, "intermediate_size", v->intermediate);
    jw_raw(w, "layer_norm_eps", "1e-06");
    jw_str(w, "model_type", "intern_vit_6b");
    jw_str(w, "norm_type", v->rms_norm ? "rms_norm" : "layer_norm");
    jw_int(w, "num_attention_heads", v->heads);
    jw_int(w, "num_channels", 3);
    jw_int(w, "num_hidden_layers", v->layers);
    jw_int(w, "patch_size", v->patch);
    jw_bool(w, "qk_normalization", v->qk_norm);
    jw_bool(w, "qkv_bias", v->qkv_bias);
    jw_str(w, "torch_dtype", "bfloat16");
    jw_bool(w, "use_bfloat16", true);
    jw_bool(w, "use_flash_attn", false);
    jw_close(w, '}');
}

static void internvl_config(jw *w, const qv_synth_plan *p)
{
    jw_str_list(w, "architectures", "InternVLChatModel");
    auto_map(w, "configuration_internvl_chat.InternVLChatConfig", "modeling_internvl_chat.InternVLChatModel");
    jw_raw(w, "downsample_ratio", "0.5");
    jw_bool(w, "dynamic_image_size", true);
    jw_int(w, "force_image_size", p->dims.vit.image);
    internvl_llm_config(w, p);
    jw_int(w, "max_dynamic_patch", 12);
    jw_int(w, "min_dynamic_patch", 1);
    jw_str(w, "model_type", "internvl_chat");
    jw_bool(w, "pad2square", false);
    jw_str(w, "ps_version", "v2");
    jw_int(w, "select_layer", -1);
    jw_str(w, "template", p->arch->template_name);
    jw_str(w, "torch_dtype", "bfloat16");
    jw_int(w, "use_backbone_lora", 0);
    jw_int(w, "use_llm_lora", 0);
    jw_bool(w, "use_thumbnail", true);
    internvit_config(w, p);
}

static void qwen2vl_config(jw *w, const qv_synth_plan *p)
{
    const qv_synth_vit *v = &p->dims.vit;
    bool v25 = p->arch->layout == QV_SYNTH_QWEN2_5_VL;
    jw_str_list(w, "architectures", v25 ? "Qwen2_5_VLForConditionalGeneration" : "Qwen2VLForConditionalGeneration");
    jw_raw(w, "attention_dropout", "0.0");
    jw_id(w, "bos_token_id", p->tok->bos);
    jw_id(w, "eos_token_id", p->tok->eos);
    qwen2_text_keys(w, p, 32768, true);
    jw_bool(w, "use_cache", true);
    jw_bool(w, "use_sliding_window", false);
    jw_open(w, "vision_config", '{');
    jw_int(w, "depth", v->layers);
    if (v25) {
        jw_str(w, "hidden_act", "silu");
        jw_int(w, "hidden_size", v->hidden);
        jw_int(w, "intermediate_size", v->intermediate);
    } else {
        jw_int(w, "embed_dim", v->hidden);
        jw_int(w, "mlp_ratio", v->intermediate / v->hidden);
    }
    jw_int(w, "num_heads", v->heads);
    jw_int(w, "in_chans", 3);
    jw_int(w, v25 ? "out_hidden_size" : "hidden_size", p->dims.llm.hidden);
    jw_int(w, "patch_size", v->patch);
    jw_int(w, "spatial_merge_size", 2);
    jw_int(w, "spatial_patch_size", v->patch);
    if (v25) {
        jw_int(w, "window_size", 112);
        jw_open(w, "fullatt_block_indexes", '[');
        for (int i = 7; i < v->layers; i += 8)
            jw_int(w, NULL, i);
        jw_close(w, ']');
        jw_int(w, "tokens_per_second", 2);
    }
    jw_int(w, "temporal_patch_size", 2);
    jw_close(w, '}');
    jw_open(w, "rope_scaling", '{');
    jw_str(w, "type", "mrope");
    jw_open(w, "mrope_section", '[');
    for (int i = 0; i < 3; i++)
        jw_int(w, NULL, p->dims.mrope_section[i]);
    jw_close(w, ']');
    jw_close(w, '}');
    jw_int(w, "vocab_size", p->dims.llm.vocab);
}

static const char k_siglip_dir[] = "siglip-so400m-patch14-384";

const char *qv_synth_siglip_dir(void) { return k_siglip_dir; }

static void llava_config(jw *w, const qv_synth_plan *p)
{
    const qv_synth_llm *l = &p->dims.llm;
    jw_str_list(w, "architectures", "LlavaQwenForCausalLM");
    jw_raw(w, "attention_dropout", "0.0");
    jw_id(w, "bos_token_id", p->tok->bos);
    jw_id(w, "eos_token_id", p->tok->eos);
    jw_str(w, "hidden_act", "silu");
    jw_int(w, "hidden_size", l->hidden);
    jw_str(w, "image_aspect_ratio", "anyres_max_9");
    jw_raw(w, "image_crop_resolution", "null");
    jw_open(w, "image_grid_pinpoints", '[');
    for (int i = 1; i <= 6; i++)
        for (int j = 1; j <= 6; j++) {
            jw_open(w, NULL, '[');
            jw_int(w, NULL, 384 * i);
            jw_int(w, NULL, 384 * j);
            jw_close(w, ']');
        }
    jw_close(w, ']');
    jw_raw(w, "image_split_resolution", "null");
    jw_raw(w, "initializer_range", "0.02");
    jw_int(w, "intermediate_size", l->intermediate);
    jw_int(w, "max_position_embeddings", l->max_positions);
    jw_int(w, "max_window_layers", p->arch->llm.layers);
    jw_int(w, "mm_hidden_size", p->dims.vit.hidden);
    jw_str(w, "mm_newline_position", "grid");
    jw_str(w, "mm_patch_merge_type", "spatial_unpad");
    jw_raw(w, "mm_projector_lr", "null");
    jw_str(w, "mm_projector_type", "mlp2x_gelu");
    jw_raw(w, "mm_resampler_type", "null");
    jw_str(w, "mm_spatial_pool_mode", "bilinear");
    jw_str(w, "mm_tunable_parts", "mm_vision_tower,mm_mlp_adapter,mm_language_model");
    jw_bool(w, "mm_use_im_patch_token", false);
    jw_bool(w, "mm_use_im_start_end", false);
    jw_str(w, "mm_vision_select_feature", "patch");
    jw_int(w, "mm_vision_select_layer", -2);
    jw_str(w, "mm_vision_tower", k_siglip_dir);
    jw_raw(w, "mm_vision_tower_lr", "2e-06");
    jw_str(w, "model_type", "llava");
    jw_int(w, "num_attention_heads", l->heads);
    jw_int(w, "num_hidden_layers", l->layers);
    jw_int(w, "num_key_value_heads", l->kv_heads);
    jw_int(w, "pos_skipping_range", 4096);
    jw_raw(w, "rms_norm_eps", l->rms_eps);
    jw_raw(w, "rope_scaling", "null");
    jw_raw(w, "rope_theta", l->rope_theta);
    jw_int(w, "sliding_window", 131072);
    jw_bool(w, "tie_word_embeddings", l->tie);
    jw_int(w, "tokenizer_model_max_length", 32768);
    jw_str(w, "tokenizer_padding_side", "right");
    jw_str(w, "torch_dtype", "bfloat16");
    jw_bool(w, "use_cache", true);
    jw_bool(w, "use_mm_proj", true);
    jw_bool(w, "use_pos_skipping", false);
    jw_bool(w, "use_sliding_window", false);
    jw_raw(w, "vision_tower_pretrained", "null");
    jw_int(w, "vocab_size", l->vocab);
}

static void text_config(jw *w, const qv_synth_plan *p)
{
    jw_str_list(w, "architectures", "Qwen2ForCausalLM");
    jw_raw(w, "attention_dropout", "0.0");
    jw_id(w, "bos_token_id", p->tok->bos);
    jw_id(w, "eos_token_id", p->tok->eos);
    qwen2_text_keys(w, p, 131072, false);
    jw_bool(w, "use_cache", true);
    jw_bool(w, "use_sliding_window", false);
    jw_int(w, "vocab_size", p->dims.llm.vocab);
}

char *qv_synth_config_json(const qv_synth_plan *p)
{
    jw w;
    jw_begin(&w);
    switch (p->arch->layout) {
    case QV_SYNTH_INTERNVL: internvl_config(&w, p); break;
    case QV_SYNTH_QWEN2_VL:
    case QV_SYNTH_QWEN2_5_VL: qwen2vl_config(&w, p); break;
    case QV_SYNTH_LLAVA_OV: llava_config(&w, p); break;
    case QV_SYNTH_TEXT: text_config(&w, p); break;
    }
    jw_close(&w, '}');
    return jw_done(&w);
}

/* ---- the other JSON files ------------------------------------------------------------------ */

qv_status qv_synth_generation_config_json(const qv_synth_plan *p, char **out)
{
    const qv_synth_tok_ids *t = p->tok;
    jw w;
    bool vl = p->arch->layout == QV_SYNTH_QWEN2_VL || p->arch->layout == QV_SYNTH_QWEN2_5_VL;
    *out = NULL;
    if (!vl && p->arch->layout != QV_SYNTH_TEXT)
        return QV_OK;
    jw_begin(&w);
    jw_int(&w, "bos_token_id", t->bos);
    if (vl)
        jw_int(&w, "pad_token_id", t->pad);
    jw_bool(&w, "do_sample", true);
    jw_open(&w, "eos_token_id", '[');
    jw_int(&w, NULL, t->eos);
    jw_int(&w, NULL, t->pad);
    jw_close(&w, ']');
    if (vl) { /* Qwen2-VL / Qwen2.5-VL-Instruct */
        jw_raw(&w, "repetition_penalty", "1.05");
        jw_raw(&w, "temperature", p->arch->layout == QV_SYNTH_QWEN2_5_VL ? "0.1" : "0.01");
        jw_raw(&w, "top_p", "0.001");
        jw_int(&w, "top_k", 1);
    } else { /* Qwen2-7B-Instruct */
        jw_int(&w, "pad_token_id", t->pad);
        jw_raw(&w, "repetition_penalty", "1.05");
        jw_raw(&w, "temperature", "0.7");
        jw_int(&w, "top_k", 20);
        jw_raw(&w, "top_p", "0.8");
    }
    jw_close(&w, '}');
    return (*out = jw_done(&w)) ? QV_OK : QV_ERR_NOMEM;
}

qv_status qv_synth_preprocessor_json(const qv_synth_plan *p, char **out)
{
    static const char *mean[] = {"0.48145466", "0.4578275", "0.40821073"};
    static const char *std[] = {"0.26862954", "0.26130258", "0.27577711"};
    bool v25 = p->arch->layout == QV_SYNTH_QWEN2_5_VL;
    *out = NULL;
    if (p->arch->layout != QV_SYNTH_QWEN2_VL && !v25)
        return QV_OK;
    jw w;
    jw_begin(&w);
    jw_int(&w, "min_pixels", 3136);      /* MODELS.md §1.3: 56 x 56 */
    jw_int(&w, "max_pixels", 12845056);  /* 16384 x 28 x 28 */
    jw_int(&w, "patch_size", p->dims.vit.patch);
    jw_int(&w, "temporal_patch_size", 2);
    jw_int(&w, "merge_size", 2);
    jw_open(&w, "image_mean", '[');
    for (int i = 0; i < 3; i++)
        jw_raw(&w, NULL, mean[i]);
    jw_close(&w, ']');
    jw_open(&w, "image_std", '[');
    for (int i = 0; i < 3; i++)
        jw_raw(&w, NULL, std[i]);
    jw_close(&w, ']');
    jw_str(&w, "image_processor_type", "Qwen2VLImageProcessor");
    jw_str(&w, "processor_class", v25 ? "Qwen2_5_VLProcessor" : "Qwen2VLProcessor");
    jw_close(&w, '}');
    return (*out = jw_done(&w)) ? QV_OK : QV_ERR_NOMEM;
}

qv_status qv_synth_siglip_json(const qv_synth_plan *p, char **out)
{
    const qv_synth_vit *v = &p->dims.vit;
    *out = NULL;
    if (p->arch->layout != QV_SYNTH_LLAVA_OV)
        return QV_OK;
    jw w;
    jw_begin(&w);
    jw_str_list(&w, "architectures", "SiglipVisionModel");
    jw_str(&w, "model_type", "siglip_vision_model");
    jw_int(&w, "hidden_size", v->hidden);
    jw_int(&w, "intermediate_size", v->intermediate);
    jw_int(&w, "num_hidden_layers", v->layers + 1); /* the tower has one layer more than is stored */
    jw_int(&w, "num_attention_heads", v->heads);
    jw_int(&w, "num_channels", 3);
    jw_int(&w, "image_size", v->image);
    jw_int(&w, "patch_size", v->patch);
    jw_str(&w, "hidden_act", "gelu_pytorch_tanh");
    jw_raw(&w, "layer_norm_eps", "1e-06");
    jw_raw(&w, "attention_dropout", "0.0");
    jw_str(&w, "torch_dtype", "bfloat16");
    jw_close(&w, '}');
    return (*out = jw_done(&w)) ? QV_OK : QV_ERR_NOMEM;
}

/* ---- SYNTHETIC.md --------------------------------------------------------------------------- */

char *qv_synth_readme(const qv_synth_plan *p, uint64_t seed)
{
    const qv_synth_arch *a = p->arch;
    const qv_synth_tok_ids *t = p->tok;
    qv_strbuf b;
    qv_sb_init(&b);
    qv_sb_printf(&b, "# Synthetic %s\n\n", a->name);
    qv_sb_printf(&b, "Written by `qvlm synth --arch %s --seed %llu", a->name, (unsigned long long)seed);
    if (p->dims.llm.layers != a->llm.layers)
        qv_sb_printf(&b, " --layers %lld", (long long)p->dims.llm.layers);
    if (p->dims.scale_div != 1)
        qv_sb_printf(&b, " --scale-dims %lld", (long long)p->dims.scale_div);
    qv_sb_printf(&b, "`.\n\n**Random weights.** This folder has the file layout, tensor names, shapes, dtype (BF16) "
                     "and config.json keys of `%s`, but its weights are random: it is for measuring speed and memory "
                     "at real scale, never for quality.\n\n",
                 a->hub_id);
    qv_sb_printf(&b, "| part | parameters |\n|---|---|\n");
    for (int i = 0; i < QV_PART_COUNT; i++)
        if (p->params[i])
            qv_sb_printf(&b, "| %s | %lld |\n", qv_part_name((qv_part)i), (long long)p->params[i]);
    qv_sb_printf(&b, "| total | %lld |\n\n", (long long)p->params_total);
    if (p->dims.llm.layers != a->llm.layers || p->dims.scale_div != 1)
        qv_sb_printf(&b, "Reduced model: %lld of %lld decoder layers%s; the published checkpoint has %lld "
                         "parameters.\n\n",
                     (long long)p->dims.llm.layers, (long long)a->llm.layers,
                     p->dims.scale_div != 1 ? ", every width divided by the --scale-dims factor (testing)" : "",
                     (long long)a->params_hub);
    qv_sb_printf(&b,
                 "**Tokenizer.** qvlm cannot download the real tokenizer, so the tokenizer files are those of its "
                 "small test model of the same family (`%s`, %lld tokens). Every token id is below %lld, far below "
                 "`vocab_size` = %lld: the embedding and LM-head shapes are the real ones while the tokenizer is "
                 "small, and rows from %lld up are never indexed. The config's token-id fields point at this "
                 "tokenizer's ids",
                 t->family, (long long)t->n_tokens, (long long)t->n_tokens, (long long)p->dims.llm.vocab,
                 (long long)t->n_tokens);
    qv_sb_printf(&b, " (bos %lld, eos %lld", (long long)t->bos, (long long)t->eos);
    if (t->img_context >= 0)
        qv_sb_printf(&b, ", `<img>` %lld, `</img>` %lld, `<IMG_CONTEXT>` %lld", (long long)t->img_start,
                     (long long)t->img_end, (long long)t->img_context);
    if (t->image_pad >= 0)
        qv_sb_printf(&b, ", `<|vision_start|>` %lld, `<|vision_end|>` %lld, `<|image_pad|>` %lld",
                     (long long)t->vision_start, (long long)t->vision_end, (long long)t->image_pad);
    qv_sb_printf(&b, "), not at the real model's.\n\n");
    qv_sb_printf(&b,
                 "**Initialisation** (qvlm's fixtures scheme): Linear and patch weights N(0, 1/fan_in), biases "
                 "N(0, 0.05^2), norm weights and layer scales 1 + 0.1 N(0,1) with 4 channels x6 in every decoder "
                 "RMSNorm (activation outliers, so AWQ/MBQ scales matter), embeddings N(0,1) (N(0, 1/hidden) when the "
                 "head is tied), class/position embeddings N(0, 0.25). Deviates are a sum of four uniforms (bounded "
                 "at 3.47 sigma), a pure function of (seed, tensor name, element index): the bytes do not depend on "
                 "the thread count.\n\n");
    qv_sb_printf(&b, "**Config differences from the real file:** token ids as above");
    if (a->layout == QV_SYNTH_INTERNVL)
        qv_sb_printf(&b, ", `attn_implementation` \"eager\" and `use_flash_attn` false (as qvlm's fixtures)");
    if (a->layout == QV_SYNTH_LLAVA_OV)
        qv_sb_printf(&b, ", `mm_vision_tower` names the folder `%s` beside this file (the real value is the hub id "
                         "`google/siglip-so400m-patch14-384`)",
                     k_siglip_dir);
    qv_sb_printf(&b, "; no remote-code `*.py` files.\n");
    if (b.oom) {
        qv_sb_free(&b);
        qv_fail(QV_ERR_NOMEM, "synth: out of memory writing SYNTHETIC.md");
        return NULL;
    }
    return b.s;
}
