/* batch_internal.h — pieces the per-family batch builders share (batch.c): Python string
 * semantics the reference's label rules depend on (str.split, slice assignment), tokenization
 * counts, the collator, mask finishing, image loading with --skip-bad-images, and messages
 * naming the caption file and entry. Not part of the library's interface. */
#ifndef QV_CALIB_BATCH_INTERNAL_H
#define QV_CALIB_BATCH_INTERNAL_H

#include "batch.h"

/* "No upper bound" for calib_py_fill and model_max_length. */
#define CALIB_NO_LIMIT INT64_MAX

/* One sample under construction: ids and labels (int64) of equal length. */
typedef struct calib_row {
    qv_vec ids, labels;
} calib_row;

/* What the builders accumulate before collation. */
typedef struct calib_acc {
    qv_vec rows;    /* calib_row */
    qv_vec prompts; /* char *, owned */
    qv_vec names;   /* char *, owned: sample ids */
    qv_vec images;  /* qv_calib_image, owned */
    qv_vec notes;   /* char *, owned */
} calib_acc;

void calib_acc_init(calib_acc *a);
void calib_acc_free(calib_acc *a);
/* Moves prompts, names, images and notes into b (rows stay in a). */
void calib_acc_move(calib_acc *a, qv_calib_batch *b);
/* Appends a's notes to b's (after calib_acc_move). */
qv_status calib_acc_take_notes(calib_acc *a, qv_calib_batch *b);
/* Appends a fresh row; *row points at it (valid until the next push). */
qv_status calib_acc_row(calib_acc *a, calib_row **row);
/* Drops the last row (a skipped sample). */
void calib_acc_pop_row(calib_acc *a);
qv_status calib_acc_note(calib_acc *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
qv_status calib_push_str(qv_vec *v, const char *s, size_t n);

/* A byte range of a string. */
typedef struct calib_span {
    const char *s;
    size_t n;
} calib_span;

/* Python's s.split(sep) (sep non-empty): spans in order, empty pieces kept. */
qv_status calib_split(const char *s, size_t n, const char *sep, qv_vec *spans);
/* Python's a[lo:hi] = v on a list of n values (negative indices count from the end, bounds
 * clipped); hi = CALIB_NO_LIMIT for a[lo:]. */
void calib_py_fill(int64_t *a, int64_t n, int64_t lo, int64_t hi, int64_t v);
/* Python's s.replace(old, new, count) (count < 0: all). Caller frees *out. */
qv_status calib_replace(const char *s, const char *old, const char *repl, long count, char **out);
/* The prompt text with every run of k "<IMG_CONTEXT>" written "<IMG_CONTEXT>xk" (k ≥ 2). */
qv_status calib_compact_prompt(const char *s, char **out);

/* Appends the ids of text[0..n) as int64 (tokenizer's default special tokens, i.e.
 * transformers' add_special_tokens=True). */
qv_status calib_encode(qv_tokenizer *t, const char *s, size_t n, qv_vec *ids64);
qv_status calib_encode_len(qv_tokenizer *t, const char *s, size_t n, int64_t *len);
/* textdata.h's encode callback; ctx is the qv_tokenizer. */
int calib_encode_cb(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n);
/* The tokenizer's pad id, 0 when it has none (LLaVA's collator rule). */
int64_t calib_pad_id(const qv_tokenizer *t);

/* tokenizer_config.json of the model folder: model_max_length (CALIB_NO_LIMIT when absent or
 * beyond int64, as transformers' 1e30 default) and padding_side ("left" → true). */
qv_status calib_tokenizer_settings(const char *model_dir, int64_t *model_max_length, bool *left_padding);

/* Reports a failure about one caption item: "<file>:<line>: entry <i> (id "x"): <message>". */
qv_status calib_item_fail(const qv_calib_items *it, const qv_caption_item *item, qv_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The current error message prefixed with the item's "<file>:<line>: entry <i> (id "x")". */
qv_status calib_item_wrap(const qv_calib_items *it, const qv_caption_item *item, qv_status st);
/* "<id>" or "entry <i>"; caller frees. */
char *calib_item_name(const qv_caption_item *item);

/* Loads the item's images (RGB). On a failure with opt->skip_bad_images the item is reported
 * through opt->on_skip, *skipped is set and QV_OK returned with no images. *imgs is an array of
 * *n images (caller frees with calib_images_free). */
qv_status calib_load_images(const qv_calib_items *it, const qv_caption_item *item, const qv_calib_options *opt,
                            qv_image **imgs, size_t *n, bool *skipped);
void calib_images_free(qv_image *imgs, size_t n);

typedef enum calib_mask_rule {
    CALIB_MASK_NE_PAD = 0, /* attention_mask = ids != pad (the reference's collators) */
    CALIB_MASK_LENGTH      /* attention_mask = position < length */
} calib_mask_rule;

/* The collator: rows padded to the longest with `pad` (labels −100) on the right or the left;
 * fills input_ids, labels, attention_mask, row_len, n_rows, len, left_padded. Rows are consumed. */
qv_status calib_collate(qv_calib_batch *b, calib_acc *a, int64_t pad, bool left, calib_mask_rule rule);
/* §7.4 / §7.5 on a collated batch (batch_transform.c): trim each row by its attention mask,
 * concatenate pairs (with a pure-text piece between them for interleave), re-pad with repad_id
 * on the batch's side, mask by length. No-op unless opt->few_shot or opt->interleave. */
qv_status calib_transform(qv_calib_batch *b, qv_tokenizer *tok, const qv_calib_options *opt, int64_t repad_id);
/* vision_mask = (input_ids == vision_id), caption_mask = labels != −100; notes for rows without
 * vision or caption tokens (§11 item 7). */
qv_status calib_finish_masks(qv_calib_batch *b, int64_t vision_id, calib_acc *notes);
/* opt->pad_rule with AUTO resolved for the family. */
qv_pad_rule calib_pad_rule(const qv_calib_options *opt, qv_family_id family);
void calib_progress(const qv_calib_options *opt, size_t done, size_t total);

#endif
