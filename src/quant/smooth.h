/* smooth.h — SmoothQuant as in the MBQ repository (ALGORITHMS.md §4): per-channel maxima of |x|
 * at the input of every decoder linear over the real (unpadded) tokens of the calibration batch,
 * then per layer the smoothing scales of the two (norm -> linears) pairs,
 *   s[j] = max(pow(T(a[j]), α) / pow(w[j], 1 − α), 1e-5),  w[j] = max(max_{fcs,rows} |W[i][j]|, 1e-5),
 * in T by rule (E). The result is a scale list in the AWQ/MBQ layout (prev_op norm, fcs, s;
 * act_scale = T(a)), applied like theirs; the quantized model is always W-A (§4.3). */
#ifndef QV_QUANT_SMOOTH_H
#define QV_QUANT_SMOOTH_H

#include "../llm/batch.h"
#include "layerwise.h"

/* x0 [B·L, C]: layer-0 inputs of batch b. Right padding: the padded rows of the batch forward
 * equal nothing the reference sees, so only rows with attention_mask 1 enter the maxima (the
 * real rows of a right-padded causal forward equal the unpadded forward's). */
qv_status qv_smooth_search(qv_llm *m, const qv_quant_opts *o, const qv_llm_batch *b, const float *x0, qv_qresult *res);

/* The maxima recorded for linear `name` (the first linear of a pair, e.g. ...self_attn.q_proj):
 * *a = C values, owned by the callee and valid until it is freed; an error when there are none. */
typedef qv_status (*qv_smooth_maxima_fn)(void *ctx, const char *name, int64_t C, const float **a);

/* The same scale list from saved maxima instead of a calibration pass: what the reference does
 * when run_process is false (§4.4: load the act-scale file, smooth with this run's alpha). */
qv_status qv_smooth_from_maxima(qv_llm *m, const qv_quant_opts *o, qv_smooth_maxima_fn maxima, void *ctx,
                                qv_qresult *res);

#endif
