/* quant.h — what the quantization methods share: the options of a run (from the YAML run
 * config), the scale groups of a decoder layer (ALGORITHMS.md §6.2) and the grid search of one
 * group (§3.2 AWQ, §5.5 MBQ weight-only, §5.6 MBQ weight-activation, §5.7 distort inputs).
 *
 * The three levels of ARCHITECTURE.md "The search, as data" are kept apart: the driver
 * (quantize.c) walks the layers and produces each group's inputs with the runner; the method
 * decides which candidates exist; qv_search_group evaluates them — the candidate weight built
 * by the fused simd kernel, the inspect module re-run on oneDNN, the loss reduced in a fixed
 * order — and returns every loss, so results do not depend on the thread count. */
#ifndef QV_QUANT_H
#define QV_QUANT_H

#include "../../simd/fp.h"
#include "../../simd/simd.h"
#include "../config/run_config.h"
#include "../llm/llm.h"
#include "acts.h"

#define QV_MAX_GRID 1000

typedef struct qv_quant_opts {
    qv_method method;
    int w_bit, a_bit;
    int64_t w_group;        /* -1 = per output channel */
    bool zero_point;
    qv_fq_div division;
    bool wa;                /* weight-activation mode: w_bit < 16 and a_bit < 16 */
    int n_grid;             /* 20 */
    qv_loss_mode loss_mode;
    bool reweight, distort, auto_clip;
    double alpha;           /* SmoothQuant */
    qv_dtype T;             /* reference dtype of the quantization arithmetic (rule (E)) */
} qv_quant_opts;

/* From a run config; T is the resolved dtype (the checkpoint's when `dtype: auto`). */
void qv_quant_opts_from_run(qv_quant_opts *o, const qv_run_config *rc, qv_dtype T);
/* The weight quantizer of the final model: asymmetric per group (W-only) or symmetric per
 * output channel (W-A), w_bit bits. */
qv_fq qv_quant_weight_fq(const qv_quant_opts *o);

/* ---- scale groups (ALGORITHMS.md §6.2) ------------------------------------------------------ */

typedef enum qv_inspect { QV_INSPECT_ATTN = 0, QV_INSPECT_MLP, QV_INSPECT_LINEAR } qv_inspect;
/* Which captured activation is the group's input x (qv_llm_capture). */
typedef enum qv_group_input { QV_GROUP_IN_ATTN = 0, QV_GROUP_IN_O, QV_GROUP_IN_MLP, QV_GROUP_IN_DOWN } qv_group_input;

typedef struct qv_scale_group {
    bool prev_is_norm;
    qv_llm_norm prev_norm;  /* when prev_is_norm */
    qv_llm_lin prev_lin;    /* otherwise: the previous linear whose last rows are divided */
    int n_fcs;
    qv_llm_lin fcs[3];      /* the linears that read the same input */
    qv_inspect inspect;
    qv_llm_lin inspect_lin; /* QV_INSPECT_LINEAR: the linear itself */
    qv_group_input input;
    bool mlp_ratio;         /* MBQ reweight ratio: r_mlp (else r_attn), §5.4 */
} qv_scale_group;

/* The groups of one decoder layer of m, in search order (3 or 4); returns the count. */
int qv_scale_groups(const qv_llm *m, qv_scale_group g[4]);
/* Width of the group's input (its scale vector) and of the inspect module's output. */
int64_t qv_group_in_width(const qv_llm *m, const qv_scale_group *g);
int64_t qv_group_out_width(const qv_llm *m, const qv_scale_group *g);
/* Checkpoint module names of prev_op and of fc k in layer `layer`. */
const char *qv_group_prev_name(const qv_llm *m, const qv_scale_group *g, int64_t layer, char *buf, size_t n);

/* ---- the grid search of one group ----------------------------------------------------------- */

typedef struct qv_group_search {
    /* inputs */
    qv_llm *m;
    const qv_scale_group *g;
    const qv_llm_weights *w;    /* the layer's FP weights in the compute dtype */
    const qv_llm_ctx *ctx;      /* masks and positions of the whole batch (B·L token rows) */
    int64_t chunk;              /* samples per inspect call (bounds the F32 scratch) */
    const qv_acts *x;           /* [B·L, ci] clean input, dtype opts->T */
    const qv_acts *x_q;         /* distort: [B·L, ci] input from the quantized chain, else NULL */
    const void *fc_w[3];        /* the fcs' weights [co, ci] in dtype opts->T */
    const uint8_t *cap_mask;    /* [B·L] caption tokens, NULL without reweighting */
    const uint8_t *vis_mask;    /* [B·L] vision tokens */
    double ratio;               /* MBQ reweight ratio, NAN for none */
    const qv_quant_opts *o;
    /* outputs */
    double loss[QV_MAX_GRID];   /* the n_grid candidate losses */
    int best;                   /* index of the first minimum */
    float *scale;               /* [ci] the chosen (normalised) scale, values in opts->T */
    float *act_scale;           /* [ci] mean |x| over the tokens, values in opts->T */
} qv_group_search;

qv_status qv_search_group(qv_group_search *s);

/* The candidate scale of grid point k (§3.2): s = pow(m, k/n) in T (rule (E)'s pow), clamped
 * at 1e-4, divided by sqrt(max(s)·min(s)) (0-d T ops). out may alias m. */
void qv_grid_scale(float *out, const float *m, int64_t n, int k, int n_grid, qv_dtype T);
/* Rounds every value to T (F32: unchanged). */
void qv_round_values(float *x, int64_t n, qv_dtype T);
/* mean |x| over every token of the batch (x holds this rank's samples, L rows each; double sums
 * per sample, then over samples in order, rounded once), rounded to T: the act_scale. */
qv_status qv_act_scale(float *out, const qv_acts *x, int64_t L, qv_dtype T, qv_fq_div division);

#endif
