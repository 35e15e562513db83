/* eval.h — how much did quantization break? Teacher-forced evaluation of the full-precision
 * model and of each quantized model on the user's held-out data (spec CLI.md `qvlm eval`,
 * `--task caption` and `--task ppl`; `qvlm quantize`'s held-out step, `eval_data_path`).
 *
 * Measures, over all loss rows (the (b, t) with labels[b, t+1] ≠ −100; fixtures README §1):
 *   nll                     mean next-token NLL
 *   token_accuracy          fraction of rows whose argmax is the target
 *   kl_to_fp                mean over rows of KL(p_FP ‖ p_model), from the FP32 logits of both
 *                           models (log-softmax statistics in double), each row clamped at 0;
 *                           exactly 0 for the FP model itself
 *   top1_agreement_with_fp  fraction of rows whose argmax equals the FP model's
 *   vision_reliance         (caption, --shuffle-images) shuffled NLL − NLL: how much worse the
 *                           model predicts the captions when every sample sees another sample's
 *                           image
 *   ppl                     (ppl task) exp(nll)
 *
 * Files: metrics.c (sums → means), runner.c (the FP and quantized models layer-major on chunks
 * of samples), quant.c (a --scales DIR as a quantized model), caption.c (the caption task),
 * derange.c (the image derangement), text.c (the ppl task), report.c (table and JSON),
 * heldout.c (quantize's eval_data_path step).
 *
 * Memory: the hidden states of one chunk of samples for every model ((1 + nq)·chunk·L·C
 * floats), one decoder layer at a time, logits in tiles of rows × 4096 vocabulary entries —
 * never [B, L, V]. The caption task holds the preprocessed pixels of all samples (the batch is
 * built once, as the calibration batch is, so that padding and positions are the reference's). */
#ifndef QV_EVAL_H
#define QV_EVAL_H

#include "../calib/batch.h"
#include "../core/progress.h"
#include "../io/json.h"
#include "../llm/batch.h"
#include "../llm/forward.h"
#include "../llm/head.h"
#include "../quant/qlayer.h"

/* ---- sums and means (metrics.c) -------------------------------------------------------------- */

/* Sums over loss rows, added in row order (so they do not depend on the thread count). */
typedef struct qv_eval_sums {
    int64_t rows;
    double nll;       /* Σ NLL */
    double kl;        /* Σ KL(p_FP ‖ p) */
    int64_t correct;  /* rows with argmax = target */
    int64_t agree;    /* rows with argmax = the FP model's argmax */
} qv_eval_sums;

typedef struct qv_eval_metrics {
    int64_t rows;
    double nll, token_accuracy, kl_to_fp, top1_agreement_with_fp; /* NaN when rows = 0 */
} qv_eval_metrics;

/* One row: st = the model's statistics, fp = the FP model's on the same row. */
void qv_eval_sums_row(qv_eval_sums *s, const qv_llm_head_stat *st, const qv_llm_head_stat *fp, int64_t target);
void qv_eval_sums_add(qv_eval_sums *acc, const qv_eval_sums *x);
void qv_eval_metrics_of(const qv_eval_sums *s, qv_eval_metrics *out);

/* ---- quantized models (quant.c) ---------------------------------------------------------------- */

/* A quantized model to compare with the FP one: a name (the report's key) and the layer hook
 * that turns the runner's passes into its passes (qlayer.h). */
typedef struct qv_eval_quant {
    char *name;      /* owned */
    char *model;     /* search.json's "model" (the folder it was searched on), or NULL; owned */
    qv_scales sc;    /* owned, when opened by qv_eval_quant_open */
    qv_qmodel qm;    /* qm.sc = &sc: the struct must stay where it was opened */
} qv_eval_quant;

/* A scales DIR (or MBQ/llm-awq .pt with the bit widths unknown: refused) as a quantized model of
 * m: the list is loaded, its module names resolved against m's decoder and every entry and clip
 * checked against the shapes of the modules it names (an error names the scales, the entry,
 * the module and both shapes: scales of another model fail here, before any work); the
 * quantizers come from search.json's config and "dtype" through qv_qmodel_from_scales, as
 * `qvlm forward --scales` builds them. */
qv_status qv_eval_quant_open(qv_eval_quant *q, const qv_llm *m, const char *path);
void qv_eval_quant_close(qv_eval_quant *q);

/* ---- the runner (runner.c) ---------------------------------------------------------------------- */

/* Where the samples come from: get() fills b with samples [s0, s0 + n) — labels, attention
 * mask, positions, and inputs_embeds or input_ids (b is released by the runner). */
typedef struct qv_eval_source {
    const char *what;   /* names the data in errors */
    int64_t n_samples;
    int64_t len;        /* L of every chunk (for the memory estimate) */
    const char *unit;   /* progress: NULL = one step per chunk and decoder layer; else one step
                           per sample, named "<unit> <count done>" (the ppl task's "window 3") */
    void *ctx;
    qv_status (*get)(void *ctx, qv_llm *m, int64_t s0, int64_t n, qv_llm_batch *b);
} qv_eval_source;

/* The FP model (m with no layer hook) and each quantized model (qms[k]) on every chunk of
 * `chunk` samples, layer-major: for each decoder layer, the FP layer runs on the FP hidden
 * states, then each quantized model's version of it (rebuilt by its hook) on that model's hidden
 * states; the loss rows of all models then go through qv_llm_head_compare together, so the FP
 * logits of a tile are computed once for every column. m's own hook is restored afterwards.
 * sums [(1 + nq)·n_samples]: model k (0 = FP) of sample s at k·n_samples + s. prog steps as
 * src->unit says. After the first chunk every scale entry must have been applied once. */
qv_status qv_eval_run(qv_llm *m, qv_qmodel *const *qms, size_t nq, const qv_eval_source *src, int64_t chunk,
                      qv_progress *prog, qv_eval_sums *sums);

/* Samples per chunk: as many as fit max_memory bytes after one layer's working copies (0 = no
 * limit: chunks of about 8192 tokens), at least 1; with a limit too small for one sample,
 * QV_ERR_NOMEM naming the size it would need. */
qv_status qv_eval_chunk_samples(const qv_llm *m, size_t n_models, int64_t len, int64_t n_samples,
                                uint64_t max_memory, int64_t *chunk);
/* A chunk size the caller chose, against max_memory (0 = no limit): QV_ERR_NOMEM naming what
 * and the size it would need when it does not fit. */
qv_status qv_eval_check_chunk(const qv_llm *m, size_t n_models, int64_t len, int64_t chunk, uint64_t max_memory,
                              const char *what);

/* ---- the report (report.c) ---------------------------------------------------------------------- */

typedef enum qv_eval_task { QV_EVAL_TASK_CAPTION = 0, QV_EVAL_TASK_PPL } qv_eval_task;

typedef struct qv_eval_column {
    char *name;                 /* "fp", or the quantized model's name */
    qv_eval_metrics m;
    double ppl;                 /* ppl task */
    qv_eval_metrics shuffled;   /* caption with shuffled images */
    double vision_reliance;     /* shuffled.nll − m.nll */
    qv_eval_sums *per_sample;   /* [n_samples] (normal images) */
} qv_eval_column;

typedef struct qv_eval_report {
    qv_eval_task task;
    size_t n_cols;              /* 1 + quantized models; column 0 is the FP model */
    qv_eval_column *col;
    int64_t n_samples;          /* caption pairs, or ppl windows */
    int64_t seqlen;             /* ppl */
    int64_t chunk;              /* samples per chunk used */
    bool shuffled;
    uint64_t seed;
    size_t *sample_entry;       /* caption: [n_samples] caption-file index of each sample */
    size_t *image_entry;        /* with shuffled: [n_samples] caption-file index whose images
                                   sample k was given (its own for samples without images) */
    double seconds;             /* wall time of the evaluation */
} qv_eval_report;

void qv_eval_report_free(qv_eval_report *r);
/* The comparison table, aligned for a terminal: rows FP and each quantized model; columns
 * NLL (PPL first for the ppl task), Δ vs FP, accuracy, KL to FP, top-1 agreement, vision
 * reliance ("-" when not measured). Appended to out. */
void qv_eval_report_table(const qv_eval_report *r, qv_strbuf *out);
/* The report as one JSON object keyed by model name: {"fp": {"nll", "token_accuracy",
 * "kl_to_fp", "top1_agreement_with_fp", "rows", "samples"[, "ppl"][, "shuffled": {…},
 * "vision_reliance"]}, …}. Appended to out. */
void qv_eval_report_json(const qv_eval_report *r, qv_strbuf *out);
/* The same, written to path (temporary name, then rename). */
qv_status qv_eval_report_write_json(const qv_eval_report *r, const char *path);

/* ---- the caption task (caption.c, derange.c) ---------------------------------------------------- */

typedef struct qv_eval_caption_opts {
    const char *data_path;      /* caption JSON/JSONL (calib/captions.h) */
    const char *image_folder;   /* NULL = "" */
    qv_pad_rule pad_rule;       /* AUTO = the family's calibration default */
    int max_tiles;              /* InternVL tiles per image; 0 = the calibration default (1) */
    bool shuffle_images;        /* also evaluate with the images deranged (seed) */
    uint64_t seed;
    bool mrope;                 /* Qwen2-VL: the model's own M-RoPE positions instead of the
                                   calibration forward's 0..L−1 */
    bool skip_bad_images;       /* drop samples whose image cannot be read (each reported) */
    int64_t chunk;              /* samples per chunk; 0 = from max_memory */
    uint64_t max_memory;        /* bytes (0 = no limit) */
    void (*on_skip)(void *ctx, const char *msg); /* a sample dropped by skip_bad_images */
    void (*on_note)(void *ctx, const char *msg); /* the batch builder's notes */
    void *log_ctx;
    qv_progress *prog;          /* may be NULL; re-initialised per phase with its own sink */
} qv_eval_caption_opts;

/* The caption evaluation: every pair of the file in file order, built exactly as the family's
 * calibration batch (qv_calib_build: same prompt, labels, masks, padding), images through the
 * vision tower once per pass, then qv_eval_run over chunks; with shuffle_images a second batch
 * whose samples carry deranged images (qv_eval_derange_images) and a second pass. q[0..nq)
 * may be empty (FP only). On failure *out is empty. */
qv_status qv_eval_caption(qv_llm *m, qv_eval_quant *q, size_t nq, const qv_eval_caption_opts *o,
                          qv_eval_report *out);

/* `qvlm quantize`'s held-out step: when rc names eval_data_path, the caption evaluation (no
 * shuffling; rc's pad_rule and max_tiles, images under eval_image_folder) of the FP model m and
 * of the quantized model of scales folder dir, appended to json as `"heldout": {"fp": {…},
 * "quantized": {…}}` (a member for the caller's eval.json object, no separator or newline
 * around it). Nothing is appended, and QV_OK returned, when rc has no eval_data_path. */
qv_status qv_eval_heldout(qv_llm *m, const char *dir, const qv_run_config *rc, uint64_t max_memory, qv_progress *prog,
                          qv_strbuf *json);

/* Sattolo's algorithm over numpy's PCG64 stream (seed as numpy.random.default_rng(seed),
 * interval() = the masked-rejection draw Generator.shuffle uses; ALGORITHMS.md §12.3):
 *     perm = [0, 1, …, n−1]; for i = n−1 down to 1: j = interval(i − 1); swap perm[i], perm[j]
 * The result is a single n-cycle, so perm[k] ≠ k for every k when n ≥ 2 (n < 2: identity). */
void qv_eval_derangement(uint64_t seed, size_t n, size_t *perm);
/* Which sample's images each sample gets: src[k] for the n samples, whose caption items are
 * f->items[order[k]]. Samples without images keep none (src[k] = k); the others are grouped by
 * their number of images and deranged within each group (Sattolo, one stream seeded once,
 * groups in increasing image count). A group of one sample cannot be deranged: an error naming
 * the file and the entry. */
qv_status qv_eval_derange_images(const qv_caption_file *f, const size_t *order, size_t n, uint64_t seed,
                                 size_t *src);

/* ---- the ppl task (text.c) ---------------------------------------------------------------------- */

/* Perplexity over ⌊n / seqlen⌋ non-overlapping windows of ids (llm/ppl.h's definition: the
 * tail is dropped; every window has seqlen − 1 loss rows, so ppl = exp(mean row NLL)) for the FP
 * model and each quantized model, `batch` windows per chunk (0 = from max_memory), with the
 * same measures as the caption task. */
qv_status qv_eval_ppl(qv_llm *m, qv_eval_quant *q, size_t nq, const int64_t *ids, int64_t n, int64_t seqlen,
                      int64_t batch, uint64_t max_memory, const char *what, qv_progress *prog, qv_eval_report *out);

#endif
