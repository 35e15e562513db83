/* backward.h — the LLM gradient pass of MBQ (ALGORITHMS.md §5.3–5.4; fixtures README §7):
 * gradients of the causal-LM loss with respect to the outputs of the hooked linears
 * (o_proj/wo, v_proj, gate/up/down_proj, w1/w3/w2), activations only (no weight gradients),
 * and the per-layer vision/caption gradient ratios MBQ derives from them.
 *
 * Loss of sample i: loss_i = mean NLL over its loss rows (labels[i, t+1] ≠ −100); the pass
 * differentiates Σ_i loss_i / loss_div over the samples it is given (MBQ: mini-batch 1 and
 * loss_div = n). Samples never interact, so a pass over several samples yields each sample's own
 * gradients.
 *
 * Checkpointing: the forward keeps only each layer's input for the samples of the pass
 * ((n_layers + 1)·nb·L·C floats); the backward reloads one layer at a time, recomputes its
 * activations from the stored input and propagates the gradient. Peak memory ≈ those hidden
 * states + one layer's weights + one layer's activations on nb·L tokens
 * (≈ nb·L·(5C + 5·H·d + 5·KV·d) floats + the 512-row MLP chunks), never the whole graph.
 * Gradient rows of padded positions come out exactly 0 (masked keys get exactly zero
 * probability), as do, in the last layer, the rows of o/gate/up/down at positions that are
 * not loss rows. */
#ifndef QV_LLM_BACKWARD_H
#define QV_LLM_BACKWARD_H

#include "../core/progress.h"
#include "batch.h"

typedef struct qv_llm_grad_sink {
    void *ctx;
    /* Rows [row0, row0 + nrows) of the gradient [nb·L, co] w.r.t. the output of linear `lin` of
     * decoder layer `layer`, for the samples [b0, b0 + nb) of the batch (row r ↔ sample
     * b0 + r / L, position r % L). `name` is MBQ's key, "layers.{i}.<module path>". Called for
     * hooked linears only (qv_llm_lin_hooked). */
    qv_status (*put)(void *ctx, int64_t layer, qv_llm_lin lin, const char *name, int64_t b0, int64_t row0,
                     int64_t nrows, int64_t co, const float *g);
} qv_llm_grad_sink;

/* Gradient pass over samples [b0, b0 + nb). loss_sum (may be NULL) receives Σ loss_i
 * (undivided). A sample without loss rows contributes nothing (the reference would give NaN). */
qv_status qv_llm_backward(qv_llm *m, const qv_llm_batch *b, int64_t b0, int64_t nb, double loss_div,
                          const qv_llm_grad_sink *sink, double *loss_sum);

/* MBQ's statistics (ALGORITHMS.md §5.3–5.4), one mini-batch-1 pass per sample, loss / n:
 *   vis[i] / cap[i] = mean |grad| over the vision-mask / caption-mask rows × all channels of
 *   sample i (NaN when the mask is empty), VIS/CAP = plain means over samples,
 *   ρ_attn[l] = VIS/CAP of layer l's o_proj|wo, ρ_mlp[l] of its down_proj|w2, medians over
 *   layers (numpy's), reweight = max(ρ, median). */
typedef struct qv_mbq_grad_stats {
    int64_t n_layers, n_samples;
    double *vis, *cap;            /* [n_layers][QV_LIN_COUNT][n_samples]; NaN for unhooked linears */
    double *vis_avg, *cap_avg;    /* [n_layers][QV_LIN_COUNT] */
    double *attn_ratio, *mlp_ratio; /* [n_layers] */
    double attn_median, mlp_median;
    double *reweight_attn, *reweight_mlp; /* [n_layers] */
    double *loss;                 /* [n_samples] unscaled per-sample losses */
} qv_mbq_grad_stats;

/* Needs the batch's vision_mask and caption_mask. prog (may be NULL) steps once per sample. */
qv_status qv_llm_mbq_grad_stats(qv_llm *m, const qv_llm_batch *b, qv_progress *prog, qv_mbq_grad_stats *st);
/* The same in two steps, for data-parallel runs: the per-sample statistics of the samples of b
 * (one rank's share; the loss divided by n_total, the whole batch's sample count), then
 * qv_mbq_grad_finish gathers every rank's samples in sample order (src/core/comm.h) and forms
 * the averages, ratios, medians and reweight ratios — identical for any number of ranks. */
qv_status qv_llm_mbq_grad_samples(qv_llm *m, const qv_llm_batch *b, int64_t n_total, qv_progress *prog,
                                  qv_mbq_grad_stats *st);
qv_status qv_mbq_grad_finish(qv_mbq_grad_stats *st);
void qv_mbq_grad_stats_free(qv_mbq_grad_stats *st);
/* Index into vis/cap: ((layer·QV_LIN_COUNT) + lin)·n_samples + sample. */
static inline size_t qv_mbq_stat_at(const qv_mbq_grad_stats *st, int64_t layer, qv_llm_lin lin, int64_t sample)
{
    return (size_t)((layer * QV_LIN_COUNT + (int64_t)lin) * st->n_samples + sample);
}
/* numpy.median of n values (sorted copy; mean of the two middle values when n is even). */
double qv_median(const double *v, int64_t n);

#endif
