/* fp8.h — `method: fp8` of `qvlm quantize`: llm-compressor's QuantizationModifier with an FP8
 * scheme, end to end (ALGORITHMS-2.md §4 whole; FORMATS.md §4.4, §4.6, §6, §7.1–7.2; fixtures
 * README §14.5; spec CLI.md `quantize`, `export --format fp8`).
 *
 * The scheme comes from an llm-compressor recipe (export/recipe.h: a preset such as FP8 or
 * FP8_DYNAMIC, a scheme object or config_groups, `targets`, `ignore`, `kv_cache_scheme`), or by
 * default FP8_DYNAMIC on every Linear except the LM head, the projector and the vision tower
 * (for InternVL: ignore ["re:.*lm_head", "re:mlp1.*", "re:vision_model.*"]). The runner can
 * fake-quantize: weights FP8 E4M3 per output channel or per tensor; inputs dynamic per token or
 * static per tensor; K (after RoPE) and V static per tensor or per KV head. A Linear is in scope
 * when it matches a target and no ignore entry (compressed-tensors' matching, `re:` anchored at
 * the start); that covers the LLM decoder Linears, the vision encoder-block Linears and the
 * projector Linears (patch embeddings are convolutions and never are). An in-scope LM head is
 * refused (the runner has no FP8 head).
 *
 * Statistics (§4.2, §4.3): on the FP model, real tokens only (the reference calibrates with batch
 * size 1 and no padding), the running absmax over the whole calibration run — compressed-tensors'
 * static_minmax observer — of every in-scope Linear's input (static schemes) and of K and V per
 * decoder layer (kv_cache_scheme). Names as the FP8 export reads them from a scales DIR:
 * absmax.input.<linear> [1], absmax.k.<attn> / absmax.v.<attn> [1] or [kv_heads].
 * Scales from statistics: s = T(T(absmax) / 448), zero → eps(T) (nn/fp8q.h), T = the run's dtype.
 *
 * The FP8 model (evaluation): a layer hook that fake-quantizes every in-scope decoder weight
 * (export/qlinear.h, bit-exact with the compressed-tensors codes) and turns on the runner's FP8
 * input and KV-cache quantization (llm.h qv_llm_fp8), and a vision hook (vision/vision_hook.h)
 * that records the tower's statistics or fake-quantizes its in-scope Linears. */
#ifndef QV_QUANT_FP8_H
#define QV_QUANT_FP8_H

#include "../core/progress.h"
#include "../core/strmap.h"
#include "../export/recipe.h"
#include "../llm/batch.h"
#include "../vision/vision_hook.h"
#include "apply.h"
#include "quantize.h"

/* Counts of in-scope Linears by part. */
typedef struct qv_fp8_counts {
    size_t llm, vision, projector;
    size_t kv_attn;            /* attention modules with FP8 KV-cache scales */
} qv_fp8_counts;

/* One in-scope Linear. */
typedef struct qv_fp8_lin {
    char *module;
    qv_part part;              /* QV_PART_LLM (a decoder Linear), _VISION or _PROJECTOR */
    int64_t layer;             /* decoder layer, or -1 */
    int lin;                   /* qv_llm_lin of a decoder Linear */
} qv_fp8_lin;

typedef struct qv_fp8_model {
    qv_recipe rc;              /* the scheme, expanded (presets as explicit arguments) */
    bool default_recipe;       /* rc is the built-in FP8_DYNAMIC default */
    char scheme[32];           /* preset name of the recipe ("" when it gave arguments) */
    qv_dtype T;                /* dtype of every scale and cast (the run's reference dtype) */
    bool w_per_tensor;         /* weights: one scale (FP8) instead of one per row (FP8_DYNAMIC) */
    qv_fp8_act act;            /* inputs of in-scope Linears */
    int64_t kv_n;              /* 0: no KV-cache scheme; 1 per tensor; KV per KV head */
    int64_t n_layers;
    size_t n_lins;
    qv_fp8_lin *lins;          /* every in-scope Linear, decoder layers first */
    bool *llm_in;              /* [n_layers · QV_LIN_COUNT] decoder Linear in scope */
    char **attn;               /* [n_layers] attention module with KV-cache scales, or NULL */
    qv_strmap vis_in;          /* in-scope vision / projector Linears -> index in lins */
    qv_fp8_counts n;
    /* statistics (absmax), in the order first seen */
    size_t n_stat;
    qv_stat_entry *stats;
    qv_strmap stat_idx;        /* "<kind>:<module>" -> index */
    /* the evaluation's per-layer FP8 settings and KV scales */
    qv_llm_fp8 *lf;            /* [n_layers] */
    float *kv_scales;          /* [n_layers, 2, kv_n] */
    bool vis_calibrate;        /* vision hook: record statistics (true) or fake-quantize */
    qv_vision_hook vhook;
} qv_fp8_model;

/* Reads the scheme (recipe file path, or NULL for the default) for model m, decides the scope
 * of every Linear of the checkpoint, and refuses what cannot be evaluated (errors name the
 * recipe). T: the run's reference dtype. */
qv_status qv_fp8_open(qv_fp8_model *f, const qv_llm *m, const char *recipe, qv_dtype T);
void qv_fp8_close(qv_fp8_model *f);

/* Whether the scheme needs calibration statistics (static inputs, or a KV-cache scheme). */
bool qv_fp8_needs_stats(const qv_fp8_model *f);
/* Whether vision-tower or projector Linears are in scope. */
static inline bool qv_fp8_has_vision(const qv_fp8_model *f) { return f->n.vision + f->n.projector > 0; }

/* The decoder's statistics on the FP model (m->layer_hook must be NULL): h [B·L, C] holds the
 * layer-0 inputs of batch b and is advanced in place through every layer; only positions whose
 * attention mask is set are observed. Samples run one at a time through each layer, so memory
 * holds one sample's captures besides h. */
qv_status qv_fp8_calibrate(qv_fp8_model *f, qv_llm *m, const qv_llm_batch *b, float *h, qv_progress *prog);
/* The vision hook: calibrate = true records the input statistics of the FP tower (static
 * schemes); false fake-quantizes in-scope weights and inputs (static inputs need statistics). */
const qv_vision_hook *qv_fp8_vision_hook(qv_fp8_model *f, bool calibrate);
/* Refuses a static scheme whose in-scope Linears (or KV attentions) got no statistics — modules
 * that never ran during calibration (ALGORITHMS-2.md §7 item 29). `what` names the run. */
qv_status qv_fp8_check_stats(const qv_fp8_model *f, const char *what);
/* The statistic of a module, or NULL. */
const qv_stat_entry *qv_fp8_stat(const qv_fp8_model *f, qv_stat_kind kind, const char *module);
/* Adds (or raises) a statistic: absmax[k] = max(absmax[k], v[k]) for n values. */
qv_status qv_fp8_stat_update(qv_fp8_model *f, qv_stat_kind kind, const char *module, const float *v, int64_t n);

/* Installs the FP8 model on m as its layer hook (scales from the statistics); detach by setting
 * m->layer_hook = NULL. f must outlive the use. */
qv_status qv_fp8_attach(qv_fp8_model *f, qv_llm *m);

/* Outputs of a run in DIR (crash-safe writes): scales.safetensors (the statistics, F32),
 * recipe.yaml (the expanded scheme in llm-compressor's grammar, which `qvlm export --format fp8
 * --scales DIR` applies when given no --recipe). */
qv_status qv_fp8_write_scales(const qv_fp8_model *f, const char *dir);
qv_status qv_fp8_write_recipe(const qv_fp8_model *f, const char *dir);
/* The "fp8" object of search.json (json-c; NULL on OOM): recipe, scheme, targets, ignore, the
 * argument objects, observer, counts. */
qv_json *qv_fp8_summary_json(const qv_fp8_model *f);

/* ---- the run (fp8_run.c) ----------------------------------------------------------------------- */

typedef struct qv_fp8_times {
    double calib, stats, eval; /* seconds: calibration batch, statistics, evaluation */
} qv_fp8_times;

/* The scheme of a run (io->recipe, else rc->export.recipe, else the default; qv_fp8_open) and
 * what the run needs for it (calibration data for static scales, the vision hook for vision
 * Linears), checked before the driver writes anything. Close with qv_fp8_close. */
qv_status qv_fp8_prepare(qv_fp8_model *f, const qv_llm *m, const qv_run_config *rc, const qv_quantize_io *io,
                         qv_dtype T);
/* One `method: fp8` run of qvlm quantize into DIR (already prepared by the driver) with the
 * scheme f of qv_fp8_prepare: the calibration batch (io->get_batch, when the run has data), statistics on the FP model
 * (vision through io->embed_images), then DIR/scales.safetensors, DIR/recipe.yaml,
 * DIR/search.json (method fp8, the scheme, the ignore list, the counts) and DIR/eval.json (the
 * FP8 model's calibration loss beside the FP loss). */
qv_status qv_fp8_quantize(qv_fp8_model *f, qv_llm *m, const qv_run_config *rc, const qv_quantize_io *io,
                          const char *dir, qv_fp8_times *t);

#endif
