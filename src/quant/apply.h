/* apply.h — a searched scale list (ALGORITHMS.md §5.8, §9.3, CLI.md `quantize` outputs) and
 * its application to a model's weights (§3.4 apply_scale, §3.6 apply_clip), in the model dtype T
 * by rule (E) of §0.3: every elementwise op is done in fp32 on exactly widened operands and
 * rounded once to T.
 *
 * Sources of a scale list:
 *   - a qvlm scales DIR: DIR/scales.safetensors (scale.{k:03d}, act_scale.{k:03d}, clip.{name},
 *     and for FP8 calibration absmax.input.{linear}, absmax.k.{attn}, absmax.v.{attn}) plus
 *     DIR/search.json (config, entries[].prev_op / .layers), the layout of the search goldens;
 *   - an MBQ / llm-awq `.pt` ({"scale": [(prev_op, (fc, ...), s)], "clip": [(fc, max_val)]}),
 *     or a SmoothQuant act-scale `.pt` ({linear: a[ci]}).
 * Names are module names relative to the top model object, which are the checkpoint's tensor
 * names minus ".weight" for every family qvlm supports. */
#ifndef QV_QUANT_APPLY_H
#define QV_QUANT_APPLY_H

#include "core/tensor.h"

typedef struct qv_scale_entry {
    char *prev_op;    /* module whose output feeds the fcs (norm or linear) */
    size_t n_layers;
    char **layers;    /* the fcs that read it */
    int64_t n;
    float *s;         /* [n] */
} qv_scale_entry;

typedef struct qv_clip_entry {
    char *layer;
    int64_t co, ng;
    float *max_val;   /* [co, ng] (llm-awq stores [co, ng, 1]) */
} qv_clip_entry;

/* Calibration statistics for static FP8 scales (absmax over the calibration run). */
typedef enum qv_stat_kind { QV_STAT_INPUT = 0, QV_STAT_K, QV_STAT_V } qv_stat_kind;
typedef struct qv_stat_entry {
    qv_stat_kind kind;
    char *module;     /* linear (INPUT) or attention module (K, V) */
    int64_t n;        /* 1 (per tensor) or kv heads */
    float *absmax;
} qv_stat_entry;

typedef struct qv_search_config {
    bool present;     /* search.json had a config object */
    char method[24];  /* "mbq", "awq", "rtn", ... ("" when unknown) */
    int w_bit, a_bit;
    int64_t w_group;  /* -1 = per output channel */
    bool zero_point;
    bool division_cpu; /* `division: cpu` (default cuda) */
    qv_dtype dtype;   /* search.json "dtype": the reference dtype T of the run (F32 when absent, as
                         the fixtures' goldens) */
} qv_search_config;

typedef struct qv_scales {
    char *path;
    qv_search_config cfg;
    size_t n;
    qv_scale_entry *entries;   /* search order */
    size_t n_clip;
    qv_clip_entry *clips;
    size_t n_stat;
    qv_stat_entry *stats;
    size_t n_act;              /* SmoothQuant act scales (.pt) */
    qv_scale_entry *act;       /* prev_op = linear name, no layers */
} qv_scales;

/* Reads a scales DIR or a .pt file (by what `path` is). */
qv_status qv_scales_load(const char *path, qv_scales *out);
void qv_scales_free(qv_scales *s);
const qv_stat_entry *qv_scales_stat(const qv_scales *s, qv_stat_kind kind, const char *module);

/* ---- a working set of one decoder layer's tensors ----------------------------------------- */

typedef struct qv_wbuf {
    char *name;       /* tensor name */
    int ndim;
    int64_t shape[2];
    float *data;      /* values representable in T */
    bool touched;     /* changed by apply */
} qv_wbuf;

typedef struct qv_wset {
    size_t n, cap;
    qv_wbuf *items;
} qv_wset;

void qv_wset_init(qv_wset *ws);
void qv_wset_free(qv_wset *ws);
/* Adds a tensor (1-D or 2-D) with a copy of its values rounded to T. */
qv_status qv_wset_add(qv_wset *ws, const char *name, const qv_tensor *t, qv_dtype T);
qv_wbuf *qv_wset_find(const qv_wset *ws, const char *name);

/* ---- application ----------------------------------------------------------------------------- */

/* §3.4, prev_op a norm: gamma (and beta) ÷ s; every fc: W[:, j] × s[j]. */
void qv_apply_scale_norm(float *gamma, float *beta, const float *s, int64_t n, qv_dtype T);
void qv_apply_scale_cols(float *w, int64_t co, int64_t ci, const float *s, qv_dtype T);
/* §3.4, prev_op a linear [co, ci]: its last ns rows ÷ s (row co-ns+i by s[i]), bias ÷ s. */
void qv_apply_scale_rows(float *w, float *bias, int64_t co, int64_t ci, const float *s, int64_t ns, qv_dtype T);
/* §3.6: W viewed [co, ng, g] clamped to ±max_val[co, ng]. */
void qv_apply_clip(float *w, int64_t co, int64_t ci, int64_t ng, const float *max_val, qv_dtype T);

/* Applies, in list order, every scale entry whose prev_op names a tensor of ws, then every clip
 * entry whose layer is in ws. An entry that touches ws only partly (a name not in the set) is an
 * error naming it. *n_applied (optional) counts the entries used. The scale vectors are first
 * rounded to T (llm-awq casts s to the weight dtype; MBQ's files are already in T). */
qv_status qv_apply_to_set(qv_wset *ws, const qv_scales *sc, qv_dtype T, size_t *n_applied);

/* Maps every module name of the list onto the checkpoint's namespace: a name is kept when
 * has_module(ctx, name) holds, else the decoder-layer container prefixes "model.layers.",
 * "model.language_model.layers.", "language_model.model.layers." are tried in its place (the
 * transformers 4.45 vs 5 layouts of the same model). A name found in no form is an error. */
qv_status qv_scales_resolve(qv_scales *sc, bool (*has_module)(void *ctx, const char *module), void *ctx);

/* Tensor name for a module name: module + ".weight" / ".bias". */
char *qv_module_param(const char *module, const char *param);

#endif
