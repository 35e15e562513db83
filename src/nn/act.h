/* act.h — elementwise activations, the gated MLP product and row softmax, each written with
 * the operation order of PyTorch's CPU kernels in f32 (aten/src/ATen/native/cpu/Activation.cpp),
 * so that results agree with the reference to an ulp or two (libm vs SLEEF exp/erf/tanh):
 *
 *   SiLU        x / (1 + exp(−x))
 *   GELU (erf)  x · 0.5 · (1 + erf(x · √½))                           ("gelu")
 *   GELU tanh   0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715·x³)))     ("gelu_pytorch_tanh")
 *   QuickGELU   x · sigmoid(1.702 · x), sigmoid(z) = 1 / (1 + exp(−z)) ("quick_gelu")
 *
 * The gated MLP of the decoders (ALGORITHMS.md §6.3): h = act(gate) ⊙ up; its backward is
 * what the LLM gradient pass needs (SiLU only). All functions allow y == x. */
#ifndef QV_NN_ACT_H
#define QV_NN_ACT_H

#include "../core/common.h"

typedef enum qv_act {
    QV_ACT_SILU = 0,
    QV_ACT_GELU,       /* exact (erf) */
    QV_ACT_GELU_TANH,
    QV_ACT_QUICK_GELU,
    QV_ACT_COUNT
} qv_act;

/* Config spelling ("silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new", "quick_gelu")
 * to the enum; false when unknown. */
bool qv_act_parse(const char *name, qv_act *out);
const char *qv_act_name(qv_act a);

/* y[i] = act(x[i]) for i < n. */
void qv_act_apply(qv_act a, float *y, const float *x, int64_t n);
float qv_act_scalar(qv_act a, float x);

/* h[i] = act(g[i]) · u[i] (h may equal g or u). */
void qv_gated(qv_act a, float *h, const float *g, const float *u, int64_t n);
/* Backward of h = silu(g) · u:  dg = dh · u · silu'(g),  du = dh · silu(g), with
 * silu'(g) = σ(g) · (1 + g · (1 − σ(g))). dg/du must not alias the inputs. */
void qv_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);

/* Row softmax y[r,:] = exp(x − max) / Σ exp(x − max) over n columns (f32; sum in double).
 * −inf entries give 0; a row of only −inf gives zeros. */
void qv_softmax_rows(float *y, const float *x, int64_t rows, int64_t n);
/* log Σ exp(x[i]) over n values (max-shifted, double sum); −inf when n == 0 or all −inf. */
float qv_logsumexp(const float *x, int64_t n);

#endif
