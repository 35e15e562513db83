/* qlayer.h — a decoder layer as F32 working copies (values in the reference dtype T) that the
 * methods modify: searched scales applied (ALGORITHMS.md §3.4), clipping (§3.6), fake
 * quantization of every linear (§1.6: asymmetric per group, or WALinear's symmetric per channel
 * with per-token activations), then handed back to the runner as a qv_llm_layer.
 *
 * Also the layer hook that turns any pass of the runner (forward, backward, perplexity) into a
 * pass of the quantized model: each loaded layer gets the scale list's entries for that layer,
 * its clips, and fake quantization (`forward --scales`, the evaluation after quantize). */
#ifndef QV_QUANT_QLAYER_H
#define QV_QUANT_QLAYER_H

#include "apply.h"
#include "quant.h"

typedef struct qv_qlayer {
    int64_t index;
    float *w[QV_LIN_COUNT];              /* [out, in] */
    float *bias[QV_LIN_COUNT];           /* [out] or NULL */
    float *norm[QV_LLM_NORM_COUNT];      /* [C] */
} qv_qlayer;

/* Copies a loaded layer's weights, norms and biases, rounded to T. */
qv_status qv_qlayer_from(qv_llm *m, const qv_llm_layer *src, qv_dtype T, qv_qlayer *q);
void qv_qlayer_free(qv_qlayer *q);
/* Applies the scale s of group g (§3.4) in T. */
void qv_qlayer_apply_group(const qv_llm *m, qv_qlayer *q, const qv_scale_group *g, const float *s, qv_dtype T);
/* Fake-quantizes every linear of the layer with the run's weight quantizer (in T). */
qv_status qv_qlayer_quantize(const qv_llm *m, qv_qlayer *q, const qv_quant_opts *o);
/* Writes the copies into a loaded layer (weights, biases, norms); W-A runs also switch every
 * linear's per-token activation quantization on. */
qv_status qv_qlayer_store(qv_llm *m, const qv_qlayer *q, qv_llm_layer *dst, const qv_quant_opts *o);

/* The quantized model as a layer hook (qv_llm.layer_hook): scale entries and clips are matched to
 * the loaded layer by module name; an entry naming some but not all of its modules in a layer is
 * an error. */
typedef struct qv_qmodel {
    const qv_scales *sc;       /* may be NULL: RTN (fake quantization only) */
    qv_quant_opts o;
    bool quantize;             /* false: apply scales only (no fake quantization) */
    size_t n_applied;          /* entries used so far (checked against the list at the end) */
    size_t n_clips_applied;
} qv_qmodel;

qv_status qv_qmodel_hook(void *ctx, qv_llm *m, qv_llm_layer *layer);
/* The quantized model a scale list describes: its search config (method, bits, group, zero
 * point, division, dtype T) decides the weight and activation quantizers. A list without a
 * config (an MBQ .pt) needs w_bit/a_bit/w_group from the caller: pass them (> 0) to override. */
qv_status qv_qmodel_from_scales(qv_qmodel *qm, const qv_scales *sc, int w_bit, int a_bit, int64_t w_group);
/* Installs the hook on m (ctx must outlive m's use). */
void qv_qmodel_attach(qv_llm *m, qv_qmodel *qm);

#endif
