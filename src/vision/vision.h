/* vision.h — vision towers, projectors and the multimodal LLM input embeddings
 * (ALGORITHMS.md §8.1, §8.2, §8.4; MODELS.md §1.4, §1.10, §2.3, §3.1, §3.4; fixtures README §2,
 * §6, §13.1, §13.5, §15.1, §15.3).
 *
 * Towers (one file each): InternViT + pixel shuffle + mlp1 (InternVL2/3), the Qwen2-VL /
 * Qwen2.5-VL ViT + PatchMerger, SigLIP + mlp2x_gelu + image_newline (LLaVA-OneVision). This
 * file is the one dispatch point between them: a qv_vision handle turns "units" of pixels into
 * LLM-width feature rows, in order —
 *     InternVL: a unit is a tile [3, S, S]; flag-1 tiles give (S/p/2)² rows, flag-0 tiles none
 *               (the reference computes and then discards them; here they are skipped);
 *     Qwen2-VL: a unit is an image (its gh·gw patch rows of 3·2·p·p values); t·gh·gw/4 rows;
 *     LLaVA-OV: a unit is a crop [3, S, S]; 729 rows (+ image_newline when the model's
 *               mm_patch_merge_type contains "unpad": 730).
 * The multimodal embedder (qv_mm_embedder) writes those rows into the token embeddings of a
 * batch, per sample: InternVL and Qwen2-VL overwrite the positions holding the image token in
 * row-major order over batch and position (InternVL as `e·0 + f`, Qwen2-VL as masked_scatter);
 * LLaVA splices each image's rows in place of its −200 placeholder (prepare_inputs_labels_for_
 * multimodal). More feature rows than image positions: the first ones are used, as the
 * references do; fewer: an error naming the batch.
 *
 * Streaming (memory): the tower runs on chunks of units — at most max_units tiles / crops, or
 * images totalling at most max_tokens patches (one image at least) — and only the current
 * chunk's activations and feature rows are held. Samples are embedded one at a time; asking for
 * samples in order computes every unit once.
 *
 * Compute: F32 (parity: BF16 weights widened one layer at a time) or BF16 (weights from the
 * mmap, activations rounded to BF16 at each matmul; needs native BF16 matmuls). */
#ifndef QV_VISION_H
#define QV_VISION_H

#include "../io/json.h"
#include "../io/safetensors.h"
#include "../llm/batch.h"
#include "../llm/forward.h"
#include "../model/config.h"
#include "vision_hook.h"

typedef enum qv_vision_kind { QV_VISION_INTERNVIT = 0, QV_VISION_QWEN2VL, QV_VISION_SIGLIP } qv_vision_kind;

typedef struct qv_vision_opts {
    qv_dtype compute;    /* QV_F32 (default) or QV_BF16 */
    int64_t max_units;   /* tiles / crops per tower call; 0 = derived from max_memory, else 8 */
    int64_t max_tokens;  /* Qwen2-VL: patches per tower call; 0 = derived from max_memory, else 16384 */
    uint64_t max_memory; /* bytes for one chunk's activations (0 = the fixed defaults above) */
    const qv_vision_hook *hook; /* per-Linear hook on the encoder blocks and the projector
                                   (vision_hook.h), or NULL; must outlive the handle */
} qv_vision_opts;

typedef struct qv_vision qv_vision;

/* A SiglipVisionConfig object (a tower's config.json, or llava-hf's inline vision_config) into
 * vc; `file` names the source in errors (siglip.c). */
qv_status qv_siglip_config_parse(const qv_json *o, const char *file, qv_vision_config *vc);

/* Opens the tower and projector of a multimodal model config. The checkpoint and the config
 * are borrowed and must outlive the handle. model_dir locates the tokenizer files (InternVL's
 * <IMG_CONTEXT> id) and LLaVA's mm_vision_tower folder. Every tensor is checked up front. */
qv_status qv_vision_open(const qv_model_config *cfg, const qv_checkpoint *ck, const char *model_dir,
                         const qv_vision_opts *opts, qv_vision **out);
void qv_vision_close(qv_vision *v);

/* The tower openers the family table points at (src/family/family.h vision_open). Each fills
 * the fresh handle qv_vision_open made (config, checkpoint, compute dtype and LLM width set)
 * with its tower, projector and image token, and sets its kind. */
qv_status qv_vision_open_internvit(qv_vision *v, const char *model_dir);
qv_status qv_vision_open_qwen2vl(qv_vision *v, const char *model_dir);
qv_status qv_vision_open_siglip(qv_vision *v, const char *model_dir);

qv_vision_kind qv_vision_kind_of(const qv_vision *v);
int64_t qv_vision_hidden(const qv_vision *v);       /* tower width */
int64_t qv_vision_out_dim(const qv_vision *v);      /* projector output = LLM hidden */
int64_t qv_vision_tile_size(const qv_vision *v);    /* InternVL / SigLIP input side (448, 384); 0 for Qwen2-VL */
int64_t qv_vision_patch_dim(const qv_vision *v);    /* Qwen2-VL: values per patch row (1176) */
/* InternVL: <IMG_CONTEXT>; Qwen2-VL: image_token_id; LLaVA: −200 (the splice placeholder). */
int64_t qv_vision_image_token(const qv_vision *v);
/* Tiles / crops (or Qwen2-VL patches) per tower call with this handle's chunking. */
int64_t qv_vision_chunk_units(const qv_vision *v);

/* ---- pixels ------------------------------------------------------------------------------- */

/* Where a tower's normalised pixels come from. get() writes units [u0, u0 + n):
 * tile towers [n, 3, tile, tile]; Qwen2-VL the images' patch rows [Σ gh·gw·t, patch_dim]. */
typedef struct qv_vision_input {
    int64_t n;                      /* units */
    int64_t tile_h, tile_w;         /* tile towers */
    const int64_t *grid_thw;        /* Qwen2-VL [n, 3] */
    const uint8_t *flags;           /* InternVL image_flags [n] (NULL = all 1) */
    void *ctx;
    qv_status (*get)(void *ctx, int64_t u0, int64_t n, float *dst);
} qv_vision_input;

/* Feature rows of unit u (0 for a flag-0 tile). */
int64_t qv_vision_unit_rows(const qv_vision *v, const qv_vision_input *in, int64_t u);
/* Patch rows of Qwen2-VL image u (t·gh·gw); tile towers: 0. */
int64_t qv_vision_unit_patches(const qv_vision *v, const qv_vision_input *in, int64_t u);
/* Checks the input against the tower (tile size, grid multiples of the merge size, ...);
 * `what` names the source in errors. */
qv_status qv_vision_input_check(const qv_vision *v, const qv_vision_input *in, const char *what);

/* Features of units [u0, u0 + n) into out (their rows concatenated in order). dump may be NULL;
 * names (each streamed as rows of its last dimension, row0 counted over the whole tensor):
 *   InternVL  vision.embeddings.out.sample0 [T, Dv], vision.last_hidden_state [n_units, T, Dv],
 *             projector.in.sample0 [R, 4Dv], projector.out [n_units, R, C]   (T = 1 + patches,
 *             R rows per tile; rows of flag-0 tiles are written as zeros)
 *   Qwen2-VL  vision.patch_embed.out.sample0 [P0, Dv], vision.blocks.{i}.out.sample0 [P0, Dv],
 *             vision.blocks.{i}.out [P, Dv] (every block), vision.merger.out [P/4, C]
 *   LLaVA     vision.embeddings.out.sample0 [729, Dv], vision.encoder.out.sample0 [729, Dv],
 *             projector.out.sample0 [729, C], image_newline [C]
 * ("sample0" = unit 0.) */
qv_status qv_vision_encode(qv_vision *v, const qv_vision_input *in, int64_t u0, int64_t n, float *out,
                           const qv_llm_dump *dump);

/* The dump names this handle can produce for an input, with their shapes (in == NULL: the
 * names only, shapes 0). Returns the count (at most max written). */
typedef struct qv_vision_dump_decl {
    char name[64];
    int ndim;
    int64_t shape[3];
} qv_vision_dump_decl;
int qv_vision_dump_decls(const qv_vision *v, const qv_vision_input *in, qv_vision_dump_decl *out, int max);

/* Qwen2-VL rotary grid coordinates (h, w) of every patch row, images in order (MODELS.md §1.3
 * step 6): pos [Σ t·gh·gw, 2]. */
qv_status qv_qwen2vl_rot_pos_ids(const int64_t *grid_thw, int64_t n_images, int64_t merge, int64_t *pos);

/* ---- multimodal embeddings ---------------------------------------------------------------- */

/* The text side of a batch. InternVL / Qwen2-VL: ids [B, L] (the LLM batch's input_ids).
 * LLaVA: ids_pre / mask_pre [B, L_pre] (the collator's output with −200 placeholders) and the
 * post-splice length L. */
typedef struct qv_mm_text {
    int64_t B, L;
    const int64_t *ids;
    const int64_t *ids_pre;
    const uint8_t *mask_pre;
    int64_t L_pre;
    const char *what;       /* the batch file, for errors */
} qv_mm_text;

typedef struct qv_mm_embedder {
    qv_vision *v;
    const qv_llm *m;
    const qv_vision_input *in;
    const qv_llm_dump *dump;
    qv_mm_text txt;
    int64_t *row0;          /* [n_units + 1] first feature row of each unit */
    int64_t *before;        /* [B + 1] feature rows (InternVL, Qwen2-VL) or images (LLaVA) before sample b */
    int64_t cu0, cu1;       /* units whose rows are cached */
    float *feat;            /* their feature rows */
    size_t feat_cap;        /* floats */
} qv_mm_embedder;

/* Counts image positions per sample and checks them against the feature rows. All pointers are
 * borrowed. */
qv_status qv_mm_embedder_init(qv_mm_embedder *e, qv_vision *v, const qv_llm *m, const qv_vision_input *in,
                              const qv_mm_text *txt, const qv_llm_dump *dump);
void qv_mm_embedder_free(qv_mm_embedder *e);
/* out [L, C] = the LLM input embeddings of sample b. */
qv_status qv_mm_embed_sample(qv_mm_embedder *e, int64_t b, float *out);
/* out [B, L, C] for every sample, in order (each unit computed once). */
qv_status qv_mm_embed_all(qv_mm_embedder *e, float *out);

/* ---- batch files -------------------------------------------------------------------------- */

/* The image side of a batch file (spec CLI.md `qvlm calib` / `forward --batch`):
 *   InternVL  pixel_values F32/BF16/F16 [tiles, 3, S, S], or tile_u8 U8 [tiles, S, S, 3] (HWC,
 *             normalised with ImageNet mean/std as fixtures README §4); image_flags [tiles]
 *             (or [tiles, 1]; absent = all 1)
 *   Qwen2-VL  pixel_values [patches, 1176], image_grid_thw I64 [images, 3]
 *   LLaVA-OV  pixel_values [images, 3, 384, 384], or pixel_values_u8 U8 [images, 3, 384, 384]
 *             (CHW, ((u8·(1/255) in f64 → f32) − 0.5) / 0.5); input_ids_pre_splice,
 *             attention_mask_pre_splice [B, L_pre]
 * Pixel tensors stay in the mapped file and are converted per chunk. */
typedef struct qv_mm_batch {
    qv_st_file *f;
    qv_vision_kind kind;
    qv_tensor pixels;       /* float view, or dtype QV_DTYPE_COUNT when absent */
    qv_tensor pixels_u8;    /* U8 view (tile_u8 HWC / pixel_values_u8 CHW) */
    bool u8_hwc;
    int64_t n_units;
    int64_t *grid_thw;      /* Qwen2-VL [n, 3] */
    int64_t *patch0;        /* Qwen2-VL [n + 1] first patch row of each image */
    uint8_t *flags;         /* InternVL [n] */
    int64_t *ids_pre;       /* LLaVA */
    uint8_t *mask_pre;
    int64_t B_pre, L_pre;
} qv_mm_batch;

/* Loads the image side of a batch file for vision handle v; *has_images is false (and nothing
 * is kept open) when the file holds no pixels. */
qv_status qv_mm_batch_load(const char *path, const qv_vision *v, qv_mm_batch *mb, bool *has_images);
void qv_mm_batch_free(qv_mm_batch *mb);
/* The tower input reading from mb (valid while mb lives). */
void qv_mm_batch_input(qv_mm_batch *mb, const qv_vision *v, qv_vision_input *in);
/* b->inputs_embeds [B, L, C] ← the multimodal embeddings of batch b with the images of mb
 * (InternVL / Qwen2-VL: b->input_ids; LLaVA: mb's pre-splice ids, b's post-splice length). */
qv_status qv_mm_batch_embed(qv_vision *v, const qv_llm *m, qv_mm_batch *mb, qv_llm_batch *b, const qv_llm_dump *dump);
/* out [nb, L, C] = the embeddings of samples [b0, b0 + nb) of the full batch only (one rank's share
 * in a data-parallel run: the tower runs on those samples' images alone). */
qv_status qv_mm_batch_embed_range(qv_vision *v, const qv_llm *m, qv_mm_batch *mb, const qv_llm_batch *full,
                                  int64_t b0, int64_t nb, float *out);

#endif
