/* captions.h — the image–caption calibration file (ShareGPT4V / LLaVA conversation format) and
 * the reference's selection order (spec/ALGORITHMS.md §7.1–7.2; MBQ qmllm/calibration/coco_vl.py).
 *
 * File: `*.jsonl` = one JSON object per line (each line stripped as by Python's str.strip; an
 * empty line is an error, as json.loads("") is in the reference); `*.json` = one JSON array of
 * objects; any other extension is an error. Per item:
 *   id            optional, string or number (kept as text; a number in Python's repr); null = absent
 *   image         optional: a path relative to the image folder, or a list of such paths;
 *                 missing, "" or [] = no image; anything else (null, a number, "" inside a
 *                 list) is an error
 *   conversations required, non-empty list of {"from": string, "value": string}
 * Other fields are ignored. Every item is checked when the file is read (the reference would
 * only trip over a malformed item once it is selected). Errors are one line
 * "<file>:<line>: entry <i>: <problem>" (i = 0-based position in the file). Duplicate keys
 * keep the last value, as Python's json does.
 *
 * The JSON array is parsed one element at a time, so a large file costs its text plus the
 * compact items, not a full JSON tree. Files up to QV_CAPTIONS_MAX_FILE bytes. */
#ifndef QV_CALIB_CAPTIONS_H
#define QV_CALIB_CAPTIONS_H

#include "../core/common.h"

#define QV_CAPTIONS_MAX_FILE ((size_t)4 << 30)

typedef struct qv_caption_turn {
    char *from;  /* "human" | "gpt" in ShareGPT4V files; the model's template decides */
    char *value;
} qv_caption_turn;

typedef struct qv_caption_item {
    char *id;                /* NULL when absent */
    char **images;           /* n_images paths as written in the file (relative to image_folder) */
    size_t n_images;         /* 0 = no image */
    bool image_is_list;      /* "image" was a JSON list (models treat a list and a string alike) */
    qv_caption_turn *turns;  /* n_turns ≥ 1, file order */
    size_t n_turns;
    size_t index;            /* position in the file, 0-based */
    size_t line;             /* 1-based line where the item starts (for messages) */
} qv_caption_item;

typedef struct qv_caption_file {
    char *path;
    qv_caption_item *items;  /* n_items, file order */
    size_t n_items;
} qv_caption_file;

/* Reads and checks a caption file. On failure *out is left empty (safe to free). */
qv_status qv_captions_load(const char *path, qv_caption_file *out);
/* The same from memory; `name` gives the format (by its extension) and names the file in errors. */
qv_status qv_captions_parse(const char *text, size_t len, const char *name, qv_caption_file *out);
void qv_captions_free(qv_caption_file *f);

/* Checks, before any work, that every image the items name is a regular file under
 * image_folder (a calibration run must not fail on item 97 after hours of work). On the first
 * missing one: "<file>:<line>: entry <i>: image \"<name>\" not found in <image_folder>", and
 * *bad (may be NULL) gets the item's index, for callers that skip bad items instead. */
qv_status qv_captions_check_images(const qv_caption_file *f, const char *image_folder, size_t *bad);

/* §7.2 shuffle: perm[k] = file index of the item at position k after
 * `numpy.random.default_rng(seed).shuffle(items)` (= permutation(n_items)). */
void qv_captions_shuffle_order(size_t n_items, uint64_t seed, size_t *perm);

/* §7.2 selection: order[i] = file index of batch item i, i < n_samples, with wrap-around
 * (items[i mod n_items] of the shuffled list, §11 item 20). order has n_samples entries.
 * Fails (naming the file) when the file has no items or n_samples is 0. */
qv_status qv_captions_select(const qv_caption_file *f, uint64_t seed, size_t n_samples, size_t *order);

#endif
