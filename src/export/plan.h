/* plan.h — a model checkpoint seen by the exporters: which tensors are Linear weights, which
 * belong to which LLM decoder layer (ALGORITHMS.md §1.6: "every nn.Linear inside the LLM decoder
 * layers"), the model dtype, the LM head and the vision / projector module prefixes that stay in
 * 16 bits (FORMATS.md §2.1 modules_to_not_convert, §3.6 dynamic, §4.6 ignore); and the layer-by-
 * layer "apply the scales, then quantize" step shared by export and verify. */
#ifndef QV_EXPORT_PLAN_H
#define QV_EXPORT_PLAN_H

#include "io/safetensors.h"
#include "model/config.h"
#include "qlinear.h"
#include "quant/apply.h"

typedef struct qv_tinfo {
    const qv_st_entry *e;
    const qv_st_file *file;
    uint32_t shard;
    int layer;            /* decoder layer (index into layers) or -1 */
    qv_part part;
    bool linear;          /* a 2-D "<module>.weight" of a Linear (not an embedding) */
    char *module;         /* name minus its last component (".weight", ".bias", ...) */
} qv_tinfo;

typedef struct qv_layer {
    char *prefix;         /* "language_model.model.layers.3." */
    int64_t index;
    size_t n;
    size_t *tensors;      /* indexes into plan->t, in name order */
} qv_layer;

typedef struct qv_mplan {
    char *path;
    qv_model_config cfg;
    qv_checkpoint *ck;
    size_t n;
    qv_tinfo *t;          /* every tensor, in name order */
    size_t n_layers;
    qv_layer *layers;     /* ordered by container, then index */
    qv_dtype T;           /* dtype of the decoder linear weights */
    char *lm_head;        /* LM head module ("lm_head" when tied) */
    size_t n_prefix;
    char **keep_prefix;   /* top-level module prefixes of the vision tower and projector */
    size_t n_shards;
    char **shard_names;   /* output file names, one per input shard */
} qv_mplan;

qv_status qv_mplan_open(const char *model, qv_mplan *p);
void qv_mplan_close(qv_mplan *p);
/* Index of a tensor by name, or -1. */
int64_t qv_mplan_find(const qv_mplan *p, const char *name);
/* A module "M" has a tensor "M.weight" (for qv_scales_resolve). */
bool qv_mplan_has_module(void *plan, const char *module);

/* How the decoder linears are quantized (from the search config, with overrides). */
typedef struct qv_qspec {
    int bits;
    int64_t group;        /* -1 = per output channel */
    bool sym;
    int a_bit;            /* < 16: weight-activation (W-A) search: symmetric per channel */
    qv_wq_div div;
} qv_qspec;

/* Loads layer `li` of the plan into ws (every 1-D/2-D float tensor of the layer, rounded to T)
 * and applies the scale list to it. *n_applied counts scale and clip entries used. */
qv_status qv_mplan_load_layer(const qv_mplan *p, size_t li, const qv_scales *sc, qv_dtype T, qv_wset *ws,
                              size_t *n_applied);
/* The spec of qv_qlinear_quantize for a decoder linear. */
qv_wq_spec qv_qspec_wq(const qv_qspec *q, qv_dtype T);

#endif
