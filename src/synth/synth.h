/* synth.h — `qvlm synth`: random-weight checkpoints with the exact tensor names, shapes, dtypes,
 * config.json keys and file set of real vision-language models, written streaming and sharded
 * in BF16 (spec/CLI.md `synth`).
 *
 * Sources of every dimension and name: MODELS.md §1.1–1.2 and §1.9–1.10 (Qwen2-VL, Qwen2.5-VL),
 * §2.1–2.2 (LLaVA-OneVision, lmms-lab layout), §3.1 and §3.4 (InternVL3), fixtures README §2
 * (InternVL2 remote-code layout, InternLM2 `wqkv`, initialisation scheme), §13.1, §14.1, §15.1;
 * FORMATS.md §1.5 (shards and index). The tiny fixture models are these layouts at small size.
 *
 * One table drives everything: an architecture row (synth_arch.c) gives the real config values;
 * the per-layout tensor templates (synth_plan.c) turn them into the tensor list; the count, the
 * config.json and the safetensors headers are all derived from that list. */
#ifndef QV_SYNTH_H
#define QV_SYNTH_H

#include "../core/common.h"
#include "../model/config.h"

/* ---- the architecture table --------------------------------------------------------------- */

typedef enum qv_synth_layout {
    QV_SYNTH_INTERNVL = 0, /* InternVLChatModel remote code: vision_model.*, mlp1.*, language_model.* */
    QV_SYNTH_QWEN2_VL,     /* Qwen2VLForConditionalGeneration, hub layout: visual.*, model.*, lm_head */
    QV_SYNTH_QWEN2_5_VL,   /* Qwen2_5_VLForConditionalGeneration: RMS norms, gated vision MLP */
    QV_SYNTH_LLAVA_OV,     /* lmms-lab LlavaQwenForCausalLM: SigLIP tower inside the checkpoint */
    QV_SYNTH_TEXT          /* Qwen2ForCausalLM */
} qv_synth_layout;

typedef struct qv_synth_vit {
    int64_t hidden, layers, heads, intermediate, image, patch;
    bool rms_norm, qk_norm, qkv_bias; /* InternViT-6B: RMS norms, q/k norms, no qkv bias */
} qv_synth_vit;

typedef struct qv_synth_llm {
    qv_decoder_kind kind;      /* QV_DECODER_QWEN2 or QV_DECODER_INTERNLM2 */
    int64_t hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, max_positions;
    bool tie;                  /* lm_head shares embed_tokens (not stored) */
    /* Values copied as JSON text into config.json, spelled as the real file spells them;
     * rope_factor: the factor of a "dynamic" rope_scaling (NULL: none). */
    const char *rms_eps, *rope_theta, *rope_factor, *name_or_path;
} qv_synth_llm;

typedef struct qv_synth_arch {
    const char *name;      /* "internvl2-8b" */
    const char *hub_id;    /* "OpenGVLab/InternVL2-8B" */
    qv_synth_layout layout;
    const char *tokenizer; /* family of synth_files.h */
    const char *template_name; /* InternVL config "template" */
    int64_t params_hub;    /* parameter count of the published checkpoint (all layers) */
    qv_synth_vit vit;      /* zeros for QV_SYNTH_TEXT */
    qv_synth_llm llm;
} qv_synth_arch;

size_t qv_synth_arch_count(void);
const qv_synth_arch *qv_synth_arch_at(size_t i);
/* NULL when unknown. */
const qv_synth_arch *qv_synth_arch_find(const char *name);

/* Token ids of the shipped (fixture) tokenizer of a family: the config's id fields point here,
 * never at the real model's ids. -1 where the family has no such token. */
typedef struct qv_synth_tok_ids {
    const char *family;
    int64_t n_tokens;     /* len(tokenizer): every id is below this, and below any vocab_size */
    int64_t bos, eos, pad;
    int64_t vision_start, vision_end, vision_pad, image_pad, video_pad; /* Qwen2-VL */
    int64_t img_start, img_end, img_context;                            /* InternVL */
} qv_synth_tok_ids;
const qv_synth_tok_ids *qv_synth_tok_find(const char *family);

/* ---- the plan: resolved dimensions and the tensor list ----------------------------------- */

typedef enum qv_synth_init {
    QV_SYNTH_INIT_LINEAR = 0, /* N(0, 1/fan_in), fan_in = product of dims 1.. */
    QV_SYNTH_INIT_BIAS,       /* N(0, 0.05^2) (linear and LayerNorm biases) */
    QV_SYNTH_INIT_NORM,       /* 1 + 0.1 N(0,1) (norm weights, layer scales) */
    QV_SYNTH_INIT_NORM_OUTLIER, /* as NORM, and 4 channels x6 (decoder RMSNorms) */
    QV_SYNTH_INIT_EMBED,      /* N(0,1); N(0, 1/hidden) when the head is tied to it */
    QV_SYNTH_INIT_POS,        /* N(0, 0.5^2) (class and position embeddings) */
    QV_SYNTH_INIT_UNIT        /* N(0,1) (LLaVA image_newline) */
} qv_synth_init;

typedef struct qv_synth_tensor {
    char *name;
    int ndim;
    int64_t shape[5];
    int64_t numel;
    qv_part part;
    qv_synth_init init;
    float mean, std;  /* of the deviates, from init and shape */
    int outliers;     /* channels multiplied by 6 */
} qv_synth_tensor;

/* Dimensions after --layers and --scale-dims (what config.json and the tensors carry). */
typedef struct qv_synth_dims {
    qv_synth_vit vit;
    qv_synth_llm llm;
    int64_t vit_positions; /* learned positions: patches (+1 CLS for InternViT) */
    int mrope_section[3];  /* Qwen2-VL / 2.5-VL */
    int64_t scale_div;
} qv_synth_dims;

typedef struct qv_synth_plan {
    const qv_synth_arch *arch;
    const qv_synth_tok_ids *tok;
    qv_synth_dims dims;
    size_t n;
    qv_synth_tensor *t;         /* in checkpoint (state_dict) order */
    int64_t params[QV_PART_COUNT];
    int64_t params_total;
    uint64_t bytes;             /* tensor data, BF16 */
} qv_synth_plan;

/* layers: LLM decoder layers to keep (0 = all; 1..real count). scale_div: testing only, every
 * width (hidden, intermediate, head_dim, vocab) divided by it, 1 = real size; it must divide the
 * widths exactly. Errors name the arch. */
qv_status qv_synth_plan_build(const qv_synth_arch *arch, int64_t layers, int64_t scale_div, qv_synth_plan **out);
void qv_synth_plan_free(qv_synth_plan *p);

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct qv_synth_opts {
    uint64_t seed;
    uint64_t shard_bytes;  /* 0 = 5,000,000,000 (transformers' 5GB) */
    uint64_t buffer_bytes; /* generation chunk; 0 = 64 MiB (two are held) */
    bool force;            /* replace an existing non-empty OUT */
    /* Called from the calling thread after each chunk is handed to the writer. */
    void (*progress)(void *ctx, uint64_t done_bytes, uint64_t total_bytes);
    void *progress_ctx;
} qv_synth_opts;

#define QV_SYNTH_DEFAULT_SHARD 5000000000ull

/* Shards the weights take at this size limit (the greedy packing of qv_st_sharded_begin). */
size_t qv_synth_shard_count(const qv_synth_plan *p, uint64_t shard_bytes);

/* Writes the model folder OUT: config.json (+ generation_config.json, preprocessor_config.json,
 * the SigLIP tower config where the real model has them), the tokenizer files, SYNTHETIC.md and
 * the sharded BF16 weights. Everything goes to a temporary folder beside OUT that is renamed at
 * the end; on failure nothing is left at OUT (and the temporary folder is removed). Refuses an
 * existing non-empty OUT unless opts->force, and a disk without room for the whole model. */
qv_status qv_synth_write(const qv_synth_plan *p, const char *out, const qv_synth_opts *opts);

/* The deviate key of a tensor: from the seed and the tensor's name (so a tensor has the same
 * values whatever --layers keeps). */
void qv_synth_tensor_key(uint64_t seed, const char *name, uint32_t key[2]);
/* Generates elements [first, first+n) of tensor t as BF16 (OpenMP inside; the result does not
 * depend on the thread count or the kernel set). */
void qv_synth_fill(uint16_t *dst, const qv_synth_tensor *t, uint64_t seed, uint64_t first, size_t n);

/* config.json and the other small files of the folder (synth_config.c). Strings are the
 * caller's to free; NULL from a char * producer means out of memory (error set). The optional
 * files set *out = NULL when the real model has no such file. */
char *qv_synth_config_json(const qv_synth_plan *p);
qv_status qv_synth_generation_config_json(const qv_synth_plan *p, char **out); /* Qwen2, Qwen2-VL, 2.5-VL */
qv_status qv_synth_preprocessor_json(const qv_synth_plan *p, char **out);      /* Qwen2-VL, 2.5-VL */
qv_status qv_synth_siglip_json(const qv_synth_plan *p, char **out);            /* LLaVA-OneVision tower */
const char *qv_synth_siglip_dir(void);                                          /* the tower folder's name */
char *qv_synth_readme(const qv_synth_plan *p, uint64_t seed);                   /* SYNTHETIC.md */

#endif
