/* family.h — the model-family layer: one table entry per family, one file per family
 * (issue "Second model family: Qwen2-VL", item 1; docs/families.md; MODELS.md §1.9, §2.7, §3.4).
 *
 * A family is what qvlm knows about one kind of checkpoint beyond the shared modules: which
 * config.json architectures it reads and how, which part of the model a tensor name belongs to
 * (every key layout it accepts), where its decoder's tensors live, its image preprocessing, its
 * calibration-batch builder (prompt, labels, image-token substitution, masks), its default pad
 * rule and conversation template, and the opener of its vision tower and projector. Everything
 * outside src/family/ reaches family behaviour through this table
 * (qv_family_get(cfg->family)->...), never through `if (family == ...)`.
 *
 * The family files are glue: the builders (src/calib/batch_<family>.c), preprocessors
 * (src/image/preprocess_<family>.c) and towers (src/vision/<tower>.c) stay in their modules.
 * What follows the decoder rather than the family — scale groups, fused q/k/v, the RoPE kind
 * (M-RoPE included) — is chosen by the decoder kind and rope type the family's parser writes
 * into qv_llm_config. Export needs nothing else: it converts the LLM part only, and the
 * vision / projector prefixes that part_of yields become the compressed-tensors ignore
 * defaults next to lm_head (src/export/plan.c).
 *
 * Table order is the order of qv_supported_architectures() (new families append). */
#ifndef QV_FAMILY_H
#define QV_FAMILY_H

#include "../config/run_config.h"
#include "../io/json.h"
#include "../model/config.h"

struct qv_preprocessor;
struct qv_image;
struct qv_pixels;
struct qv_vision;
struct qv_tokenizer;
struct qv_calib_items;
struct qv_calib_options;
struct qv_calib_batch;

/* Where a decoder's tensors live: <model>embed_tokens.weight, <model>layers.<i>.…,
 * <model>norm.weight and <head>lm_head.weight (InternLM2: tok_embeddings / output). */
typedef struct qv_llm_root {
    const char *model, *head;
} qv_llm_root;

/* `qvlm preprocess` options a family's preprocessing honours. */
enum {
    QV_PREP_MAX_TILES = 1u << 0, /* --max-num: tiles per image (qv_preprocessor.max_tiles) */
    QV_PREP_ANYRES = 1u << 1     /* --anyres: the native anyres path (qv_preprocessor.llava_anyres) */
};

typedef struct qv_family {
    qv_family_id id;
    const char *name;                 /* qv_family_name(): batch metadata, inspect, messages */
    const char *const *yaml_names;    /* NULL-terminated run-config `model:` values accepted for its checkpoints */
    const char *const *architectures; /* NULL-terminated config.json architectures[0] its parser reads */

    /* Fills cfg from the parsed config.json (cfg->path, architecture, torch_dtype and
     * family = id are set before the call). May set cfg->family to a sibling entry that shares
     * the parser (InternVLChatModel: internvl2 or internvl3 by its template). */
    qv_status (*parse_config)(const qv_json *root, const char *arch, const char *file, qv_model_config *cfg);
    /* The part a checkpoint tensor belongs to, for every key layout the family reads. */
    qv_part (*part_of)(const char *tensor_name);
    /* Decoder locations in probing order (terminated by model == NULL); the first is the one
     * a "tensor not found" error names. */
    const qv_llm_root *llm_roots;

    /* Calibration (spec/ALGORITHMS.md §7, §8): the batch builder (NULL: image-caption
     * calibration is refused), the pad rule under `pad_rule: auto`, and the conversation
     * template used when the config names none (NULL: the builder's own). */
    qv_status (*build_batch)(const qv_model_config *cfg, struct qv_tokenizer *tok, const struct qv_preprocessor *pp,
                             const struct qv_calib_items *items, const struct qv_calib_options *opt,
                             struct qv_calib_batch *out);
    qv_pad_rule default_pad_rule;
    const char *default_template;

    /* Image preprocessing (NULL for text-only families): init fills the family's part of pp
     * from the config and model folder; run turns one decoded image into pixels. */
    qv_status (*prep_init)(struct qv_preprocessor *pp, const qv_model_config *cfg, const char *model_dir);
    qv_status (*prep_run)(const struct qv_preprocessor *pp, const struct qv_image *img, const char *what,
                          struct qv_pixels *out);
    unsigned prep_options; /* QV_PREP_* */

    /* Opens the tower and projector on a fresh handle (vision.h qv_vision_open); NULL: no tower. */
    qv_status (*vision_open)(struct qv_vision *v, const char *model_dir);
} qv_family;

/* The entry of a family id (ids outside the table: the text family, which has no vision). */
const qv_family *qv_family_get(qv_family_id id);
/* The entry whose parser reads config architecture `arch`; NULL when none does. */
const qv_family *qv_family_by_architecture(const char *arch);
/* The entry a run-config `model:` value names: the family of that name, else the first entry
 * answering to it; NULL when none does. */
const qv_family *qv_family_by_yaml_name(const char *name);
/* Whether `model: name` is accepted for a checkpoint of family f. */
bool qv_family_answers_to(const qv_family *f, const char *name);
/* Iteration over the table, in order. */
size_t qv_family_count(void);
const qv_family *qv_family_at(size_t i);

/* The table's entries (one file each). */
extern const qv_family qv_family_internvl2, qv_family_internvl3; /* internvl.c */
extern const qv_family qv_family_text;                          /* text.c */
extern const qv_family qv_family_qwen2vl;                       /* qwen2vl.c */
extern const qv_family qv_family_llava_ov;                      /* llava_ov.c */

#endif
