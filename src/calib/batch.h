/* batch.h — the calibration batch of every supported family, exactly as MBQ builds it
 * (spec/ALGORITHMS.md §7, §8.1–8.5, §11 items 7, 13–21; fixtures README §5, §13.4, §14.2, §15.2).
 *
 * Pipeline (ALGORITHMS §7.2), one builder per family behind ONE dispatch (qv_calib_build):
 *   items (caption file, selected in the seed-42 order) → per-sample prompt, ids, labels
 *   (the family's `preprocess_data`) → the reference's `data_collator` (padding rule below) →
 *   optional §7.4 few-shot or §7.5 interleave transform → the family's `generate_input` masks
 *   (vision_mask, caption_mask; Qwen2-VL M-RoPE positions; LLaVA's image splice).
 *
 *   batch_internvl.c  InternVL2 (Hermes-2 → preprocess_mpt, internlm2-chat → preprocess_internlm)
 *                     and InternVL3 (internvl2_5 → preprocess_internvl2_5); the template is the
 *                     checkpoint's config "template" (MBQ hard-codes internlm2-chat: deviation,
 *                     fixtures README §12 item 4, §14.2)
 *   batch_qwen2vl.c   Qwen2-VL (last human/gpt pair, chat template, left padding, M-RoPE)
 *   batch_llava.c     LLaVA-OneVision (vicuna_v0 generic branch, −200 placeholder, 730-position splice)
 *   batch_transform.c §7.4 few-shot, §7.5 interleave
 *   batch_text.c      §7.6 pile blocks (calib_data: pileval)
 *   batch_run.c       from a run config: model, tokenizer, captions, selection, build
 *   batch_write.c     the `qvlm calib` safetensors file
 *
 * Padding rules (CLI.md `pad_rule`):
 *   QV_PAD_RULE_MBQ     the reference's collator: InternVL pads ids with 0 and masks `ids != 0`
 *                       (so a real token 0 is masked too, fixtures README §3); Qwen2-VL and
 *                       LLaVA pad with the tokenizer's pad id and mask `ids != pad`.
 *   QV_PAD_RULE_LENGTH  pad with the tokenizer's pad id (0 when it has none), mask by length.
 * Padding side: right (InternVL, LLaVA: the tokenizer's padding_side), left (Qwen2-VL). The
 * few-shot/interleave re-padding uses id 0 under the mbq rule (§11 item 16) and the pad id
 * under the length rule; the mask is by length in both.
 *
 * Deviations from "crash as the reference would" (each an error naming the caption file and
 * entry): Qwen2-VL and LLaVA items without an image, LLaVA multi-image items (§11 item 18);
 * roles that the template cannot place; fewer <image> placeholders than images. And one
 * repair: a LLaVA item with an image but no <image> in its text gets "<image>\n" prepended to
 * its first turn (what MBQ's InternVL2 wrapper does; the LLaVA wrapper divides by zero —
 * fixtures README §15.5 item 4). */
#ifndef QV_CALIB_BATCH_H
#define QV_CALIB_BATCH_H

#include "../config/run_config.h"
#include "../image/image.h"
#include "../model/config.h"
#include "../tok/tokenizer.h"
#include "captions.h"
#include "textdata.h"

#define QV_IGNORE_INDEX (-100)
/* LLaVA's IMAGE_TOKEN_INDEX: the placeholder id of the pre-splice sequences. */
#define QV_LLAVA_IMAGE_INDEX (-200)

/* One image of the batch, in sample order (= the order of the placeholders in the rows). */
typedef struct qv_calib_image {
    qv_pixels px;   /* the family's processor output (owned) */
    int w, h;       /* decoded size (LLaVA image_sizes) */
    bool text_only; /* InternVL: the white 224x224 stand-in of a text-only item (image_flags 0) */
    size_t sample;  /* index of the sample it belongs to (before few-shot/interleave) */
} qv_calib_image;

typedef struct qv_calib_batch {
    qv_family_id family;
    qv_pad_rule pad_rule;       /* MBQ or LENGTH */
    bool left_padded;
    int64_t n_rows, len;        /* B, L */
    int64_t *input_ids;         /* [B, L]; LLaVA: after the splice: the text ids, QV_LLAVA_IMAGE_INDEX
                                   at every spliced image position, the collator's pad id at
                                   padding (which the reference embeds as a zero vector) */
    int64_t *labels;            /* [B, L], QV_IGNORE_INDEX = not supervised; pileval: = input_ids */
    uint8_t *attention_mask;    /* [B, L]; NULL for pile blocks */
    uint8_t *vision_mask;       /* [B, L]; NULL for pile blocks */
    uint8_t *caption_mask;      /* [B, L] = labels != -100; NULL for pile blocks */
    int64_t *row_len;           /* [B] content length of each row (before padding) */

    /* samples as built, before few-shot/interleave (n_samples of each) */
    size_t n_samples;
    char **prompts;             /* the text tokenized, image tokens compact: InternVL
                                   "<img><IMG_CONTEXT>x256</img>", Qwen2-VL one <|image_pad|> (the
                                   processor expands it), LLaVA "<image>" (the −200 placeholder) */
    char **sample_ids;          /* the caption item's id, or "entry <i>" when it has none */

    size_t n_images;
    qv_calib_image *images;
    int64_t n_tiles;            /* InternVL: tiles over all images; others: n_images */
    int64_t *image_flags;       /* [n_tiles]: InternVL 1 per real tile, 0 for the text-only stand-in;
                                   1 per image otherwise */

    /* Qwen2-VL */
    int64_t *image_grid_thw;    /* [n_images, 3] */
    int64_t *position_ids;      /* [3, B, L]: what MBQ's calibration forward uses: 0..L−1 on all three
                                   streams, counted from the start of the (left-padded) row (§11 item 6) */
    int64_t *mrope_position_ids;/* [3, B, L]: the model's own get_rope_index (pads 0) */
    int64_t *mrope_rope_deltas; /* [B]: max position + 1 − non-pad tokens */

    /* LLaVA-OneVision */
    int64_t pre_len;            /* L of the collator's output */
    int64_t *input_ids_pre;     /* [B, pre_len] with QV_LLAVA_IMAGE_INDEX placeholders */
    int64_t *labels_pre;        /* [B, pre_len] */
    uint8_t *attention_mask_pre;/* [B, pre_len] */
    int64_t image_span;         /* embeddings per image (729 + the image_newline = 730) */
    int64_t *splice;            /* [n_images, 2]: (row, first position) of each image's span */

    /* "<file>:<line>: entry <i>: ..." remarks for the log: tokenization mismatches (all labels
       ignored, as the reference does), samples without vision or caption tokens (§11 item 7) */
    char **notes;
    size_t n_notes;
} qv_calib_batch;

void qv_calib_batch_free(qv_calib_batch *b);

/* ---- building -------------------------------------------------------------------------------- */

typedef struct qv_calib_items {
    const qv_caption_file *file; /* items and the file's path (named in errors) */
    const size_t *order;         /* n file indices, batch order (qv_captions_select) */
    size_t n;
    const char *image_folder;    /* joined with each image path as os.path.join does; NULL = "" */
} qv_calib_items;

typedef struct qv_calib_options {
    qv_pad_rule pad_rule;        /* MBQ or LENGTH; AUTO = the family's default (qv_calib_default_pad_rule) */
    int max_tiles;               /* InternVL tiles per image; 0 = MBQ's 1 (§11 item 21) */
    bool few_shot, interleave;   /* §7.4 / §7.5 (not both) */
    const qv_text_docs *pile;    /* interleave: the pure-text documents */
    uint64_t seed;               /* interleave pool permutation (the reference: 42) */
    bool skip_bad_images;        /* drop a sample whose image cannot be read, reporting it */
    /* Called for every skipped sample with a one-line message (file, entry, image, problem). */
    void (*on_skip)(void *ctx, const char *msg);
    /* Called after each sample is built. */
    void (*on_progress)(void *ctx, size_t done, size_t total);
    void *ctx;
} qv_calib_options;

void qv_calib_options_default(qv_calib_options *o);

/* The family's default_pad_rule (src/family/family.h): mbq for the families MBQ has a wrapper
 * for (InternVL2, Qwen2-VL, LLaVA-OneVision); length for InternVL3 (MODELS.md §3.2: pad with
 * <|endoftext|>, mask by length) and the text families. */
qv_pad_rule qv_calib_default_pad_rule(qv_family_id family);

/* The builders; identical signatures (the family table's build_batch points at them). */
typedef qv_status (*qv_calib_builder)(const qv_model_config *cfg, qv_tokenizer *tok, const qv_preprocessor *pp,
                                      const qv_calib_items *items, const qv_calib_options *opt,
                                      qv_calib_batch *out);
qv_status qv_calib_build_internvl(const qv_model_config *cfg, qv_tokenizer *tok, const qv_preprocessor *pp,
                                  const qv_calib_items *items, const qv_calib_options *opt, qv_calib_batch *out);
qv_status qv_calib_build_qwen2vl(const qv_model_config *cfg, qv_tokenizer *tok, const qv_preprocessor *pp,
                                 const qv_calib_items *items, const qv_calib_options *opt, qv_calib_batch *out);
qv_status qv_calib_build_llava(const qv_model_config *cfg, qv_tokenizer *tok, const qv_preprocessor *pp,
                               const qv_calib_items *items, const qv_calib_options *opt, qv_calib_batch *out);

/* The one dispatch point: the family's build_batch (NULL for families without one). */
qv_calib_builder qv_calib_builder_for(qv_family_id family);
/* Builds the image–caption batch of cfg's family. On failure *out is empty. */
qv_status qv_calib_build(const qv_model_config *cfg, qv_tokenizer *tok, const qv_preprocessor *pp,
                         const qv_calib_items *items, const qv_calib_options *opt, qv_calib_batch *out);

/* §7.6 pile blocks (`calib_data: pileval`): input_ids [B, 512] from n_lines documents of ≤ 512
 * tokens (tokenizer with its default special tokens), labels = input_ids, no masks. */
qv_status qv_calib_build_pile(qv_tokenizer *tok, const qv_text_docs *docs, uint64_t seed, size_t n_lines,
                              qv_calib_batch *out);

/* ---- from a run configuration ------------------------------------------------------------------ */

typedef struct qv_calib_run_options {
    bool skip_bad_images;
    bool allow_repeat; /* n_samples > caption items: wrap around as the reference does (§11 item 20)
                          instead of failing */
    void (*on_skip)(void *ctx, const char *msg);
    void (*on_progress)(void *ctx, size_t done, size_t total);
    void (*on_note)(void *ctx, const char *msg); /* notes and warnings, as they arise */
    void *ctx;
} qv_calib_run_options;

/* Everything `qvlm calib` does before writing: the model config, tokenizer and preprocessor of
 * rc->pretrained; calib_data coco/sharegpt4v: the caption file, the seed-`rc->seed` selection of
 * rc->n_samples items (more than the file holds is an error unless allow_repeat), the family's
 * builder with rc's pad_rule, max_tiles, few_shot_format / interleave_format (text_data_path
 * is the pure-text pool; empty is an error: qvlm cannot download pile-val, §11 item 13);
 * pileval: blocks from rc->data_path. A `model` key naming another family than the
 * checkpoint's is an error (internvl2 and internvl3 are interchangeable). */
qv_status qv_calib_from_config(const qv_run_config *rc, const qv_calib_run_options *ro, qv_calib_batch *out);

/* ---- output ------------------------------------------------------------------------------------ */

/* Writes the batch as `qvlm calib` does (CLI.md): input_ids, labels I64 [B,L]; attention_mask,
 * vision_mask, caption_mask BOOL [B,L] (absent for pile blocks); image_flags I64 [n_tiles];
 * pixel_values F32 (InternVL [tiles,3,S,S], LLaVA [n,3,384,384], Qwen2-VL [rows,1176]); tile_u8
 * U8 [tiles,S,S,3] (Qwen2-VL: tile_u8.<k> [1,H,W,3] per image, the sizes differ); Qwen2-VL
 * image_grid_thw, position_ids, mrope.position_ids, mrope.rope_deltas [B,1]; LLaVA
 * input_ids_pre_splice, labels_pre_splice, attention_mask_pre_splice, image_sizes [n,2] (w,h),
 * splice [n,2]; metadata: family, pad_rule, padding_side, prompts and sample_ids (JSON lists),
 * notes (JSON list). Temp file then rename. */
qv_status qv_calib_batch_write(const qv_calib_batch *b, const char *path);

#endif
