/* layerwise.h — the layer-by-layer driver of the scale-searching methods (AWQ, MBQ; ALGORITHMS.md
 * §3.1, §5.2): the clean input chain X (each layer's FP output feeds the next), per layer the
 * captured inputs of every linear group, the grid search of each group (quant.h), AWQ's clip
 * search (§3.5) when asked, MBQ's distorted chain Xq (§5.7) when asked, and a result list in
 * search order. Finished layers can come from a resume checkpoint: their entries are reused and
 * only the FP forward (and the distorted forward) is re-run to rebuild the chains. */
#ifndef QV_QUANT_LAYERWISE_H
#define QV_QUANT_LAYERWISE_H

#include "../core/progress.h"
#include "../llm/batch.h"
#include "quant.h"

typedef struct qv_qentry {
    int64_t layer;
    char prev_op[448];
    int n_fcs;
    char fcs[3][448];
    int64_t n;               /* scale length (the group's input width) */
    float *scale;            /* [n] chosen scale, values in T */
    float *act_scale;        /* [n] mean |x|, values in T */
    int best, n_grid;
    double loss[QV_MAX_GRID];
    double ratio;            /* MBQ reweight ratio used, NAN for none */
} qv_qentry;

typedef struct qv_qclip {
    char name[448];          /* module name of the clipped linear */
    int64_t co, ng;
    float *max_val;          /* [co, ng], values in T */
} qv_qclip;

typedef struct qv_qresult {
    size_t n, cap;
    qv_qentry *e;
    size_t n_clip, cap_clip;
    qv_qclip *clip;
} qv_qresult;

void qv_qresult_free(qv_qresult *r);
qv_status qv_qresult_add(qv_qresult *r, const qv_qentry *e); /* takes ownership of e's arrays */
qv_status qv_qresult_add_clip(qv_qresult *r, const qv_qclip *c);

typedef struct qv_layerwise {
    qv_llm *m;
    const qv_quant_opts *o;
    const qv_llm_batch *b;          /* this rank's samples: masks (attention, caption, vision), positions */
    int64_t b0, n_total;            /* their first sample in the whole batch, and its sample count
                                       (data-parallel runs; a single process: 0 and b->B) */
    const float *x0;                /* [B·L, C] layer-0 input */
    int64_t chunk;                  /* samples per runner call (0 = all); activations live in T */
    const double *r_attn, *r_mlp;   /* [n_layers] MBQ reweight ratios, NULL without reweighting */
    qv_progress *prog;              /* one step per layer (may be NULL) */
    /* Resume: `cached` sets *hit when layer l was finished by an earlier run and appends its
     * entries/clips to res; `done` persists a just-finished layer (entries res->e[first..]). */
    qv_status (*cached)(void *ctx, int64_t layer, qv_qresult *res, bool *hit);
    qv_status (*done)(void *ctx, int64_t layer, const qv_qresult *res, size_t first_entry, size_t first_clip);
    void *cb_ctx;
} qv_layerwise;

qv_status qv_quantize_layers(const qv_layerwise *lw, qv_qresult *res);

#endif
