/* config.h — a Hugging Face config.json read into typed structs.
 *
 * The top-level architecture (config "architectures"[0]) picks the model family that reads the
 * rest (src/family/: InternVLChatModel and InternVLForConditionalGeneration, Qwen2ForCausalLM,
 * LlamaForCausalLM, InternLM2ForCausalLM, Qwen2VLForConditionalGeneration,
 * Qwen2_5_VLForConditionalGeneration (family qwen2_vl, vision model_type "qwen2_5_vl"),
 * LlavaQwenForCausalLM and LlavaOnevisionForConditionalGeneration). Both the classic key
 * spelling (rope_theta, rope_scaling, torch_dtype) and transformers 5's (rope_parameters, dtype,
 * text_config) are read. Anything else is a one-line error listing the supported architectures.
 */
#ifndef QV_MODEL_CONFIG_H
#define QV_MODEL_CONFIG_H

#include "../core/common.h"

/* Resource limits: caps on the declared dimensions, far above every released checkpoint (the
 * largest have hidden 16384, intermediate 53248, vocabularies of 256k, 126 layers, 10M
 * positions) and low enough that products of a few of them, in bytes, stay within int64 (e.g.
 * vocab x hidden x 8 < 2^47, positions x layers x heads x head_dim x 2 < 2^61). A config.json
 * beyond them is refused with the key and its range when it is read. */
#define QV_MAX_HIDDEN ((int64_t)1 << 20)
#define QV_MAX_INTERMEDIATE ((int64_t)1 << 22)
#define QV_MAX_VOCAB ((int64_t)1 << 24)
#define QV_MAX_POSITIONS ((int64_t)1 << 24)
#define QV_MAX_LAYERS 4096
#define QV_MAX_HEADS 4096
#define QV_MAX_HEAD_DIM 4096
#define QV_MAX_IMAGE_SIDE 65535 /* vision image_size, patch_size, InternVL force_image_size */
#define QV_MAX_CHANNELS 16

typedef enum qv_decoder_kind {
    QV_DECODER_QWEN2 = 0, /* Qwen2 / Qwen2.5 / Qwen2-VL text model: q/k/v bias */
    QV_DECODER_INTERNLM2, /* InternLM2: packed grouped wqkv, w1/w3/w2 */
    QV_DECODER_LLAMA      /* Llama: no biases */
} qv_decoder_kind;

typedef enum qv_rope_kind {
    QV_ROPE_DEFAULT = 0,
    QV_ROPE_DYNAMIC, /* dynamic NTK (InternLM2): active only beyond max_position_embeddings */
    QV_ROPE_LINEAR,
    QV_ROPE_MROPE,   /* Qwen2-VL multimodal rotary (mrope_section) */
    QV_ROPE_LLAMA3
} qv_rope_kind;

/* One value per entry of the family table (src/family/family.c). */
typedef enum qv_family_id {
    QV_FAMILY_TEXT = 0,       /* plain decoder-only LLM */
    QV_FAMILY_INTERNVL2,      /* InternVLChatModel with an InternVL2 template */
    QV_FAMILY_INTERNVL3,      /* InternVLChatModel with the internvl2_5 template, or the -hf layout */
    QV_FAMILY_QWEN2_VL,
    QV_FAMILY_LLAVA_ONEVISION
} qv_family_id;

typedef struct qv_llm_config {
    qv_decoder_kind kind;
    char architecture[64];   /* e.g. "InternLM2ForCausalLM" */
    int64_t hidden;          /* hidden_size */
    int64_t n_layers;        /* num_hidden_layers */
    int64_t n_heads;         /* num_attention_heads */
    int64_t n_kv_heads;      /* num_key_value_heads (= n_heads when absent) */
    int64_t head_dim;        /* head_dim or hidden / n_heads */
    int64_t intermediate;    /* intermediate_size */
    int64_t vocab;           /* vocab_size */
    int64_t max_positions;   /* max_position_embeddings */
    double rms_eps;
    double rope_theta;
    qv_rope_kind rope_kind;
    double rope_factor;
    int mrope_section[3];
    bool qkv_bias;           /* Qwen2: true; InternLM2: config "bias"; Llama: attention_bias */
    bool tie_embeddings;
    int64_t bos_id, eos_id, pad_id; /* -1 when absent */
    char hidden_act[16];
} qv_llm_config;

typedef enum qv_norm_kind { QV_NORM_LAYER = 0, QV_NORM_RMS } qv_norm_kind;

typedef struct qv_vision_config {
    char model_type[32];     /* "intern_vit_6b", "qwen2_vl", "siglip_vision_model" */
    int64_t hidden;          /* hidden_size / embed_dim */
    int64_t n_layers;
    int64_t n_heads;
    int64_t intermediate;
    int64_t image_size;
    int64_t patch_size;
    int64_t channels;
    qv_norm_kind norm;
    double norm_eps;
    bool qkv_bias, qk_norm;
    char hidden_act[24];
    /* Qwen2-VL */
    int64_t spatial_merge_size, temporal_patch_size, out_hidden;
    /* Qwen2.5-VL (model_type "qwen2_5_vl"): gated SiLU MLP, RMSNorm, window attention */
    bool gated_mlp;
    int64_t window_size;       /* pixels (112); 0 = no window attention */
    int n_fullatt;
    int fullatt[64];           /* fullatt_block_indexes: blocks with whole-image attention */
} qv_vision_config;

typedef struct qv_model_config {
    char *path;              /* the config.json read */
    char architecture[64];
    qv_family_id family;
    char torch_dtype[16];    /* "bfloat16", "float16", ... ("" when absent) */
    qv_llm_config llm;
    bool has_vision;
    qv_vision_config vision;
    /* InternVL */
    double downsample_ratio;
    char ps_version[8];
    int64_t select_layer;
    char template_name[32];
    int64_t force_image_size, min_dynamic_patch, max_dynamic_patch;
    bool use_thumbnail;
    /* Qwen2-VL / LLaVA token ids (-1 when absent) */
    int64_t image_token_id, vision_start_id, vision_end_id;
    /* LLaVA-OneVision, both layouts (MODELS.md §2.1, §2.7) */
    struct {
        char vision_tower[256];  /* lmms-lab mm_vision_tower (folder or hub id); "" for the llava-hf layout,
                                    whose tower config is inline (vision above) */
        char projector[32];      /* "mlp2x_gelu" (lmms-lab mm_projector_type; llava-hf: from projector_hidden_act) */
        int64_t feature_layer;   /* tower layers run = n_layers + 1 + feature_layer: lmms-lab −2 (LLaVA-NeXT
                                    deletes the last layer), llava-hf vision_feature_layer */
        bool image_newline;      /* image_newline after each crop's rows (lmms-lab: mm_patch_merge_type
                                    spatial*unpad*; llava-hf: always) */
        int64_t max_length;      /* tokenizer_model_max_length: post-splice truncation (0 = none) */
        bool left_pad;           /* tokenizer_padding_side == "left" (post-splice re-padding) */
        bool hf_layout;          /* llava-hf config: image_grid_pinpoints are (height, width) pairs */
    } llava;
} qv_model_config;

/* Reads <dir>/config.json (or a config.json path). On failure nothing needs freeing. */
qv_status qv_model_config_load(const char *path, qv_model_config *cfg);
/* The same from memory; `path` names the file in errors and is kept in cfg->path. */
qv_status qv_model_config_parse(const char *text, size_t len, const char *path, qv_model_config *cfg);
void qv_model_config_free(qv_model_config *cfg);
const char *qv_decoder_name(qv_decoder_kind k);
/* The family's name ("internvl2", "qwen2_vl", ...; "?" for an id outside the table) and the
 * architectures the family table reads, "InternVLChatModel, Qwen2ForCausalLM, ..." (both
 * defined in src/family/family.c). */
const char *qv_family_name(qv_family_id f);
const char *qv_supported_architectures(void);

/* Which part of the model a checkpoint tensor belongs to: QV_PART_VISION, _PROJECTOR or _LLM
 * (the family's part_of: its key prefixes in every layout it reads). */
typedef enum qv_part { QV_PART_VISION = 0, QV_PART_PROJECTOR, QV_PART_LLM, QV_PART_COUNT } qv_part;
qv_part qv_model_part_of(const qv_model_config *cfg, const char *tensor_name);
const char *qv_part_name(qv_part p);

#endif
