/* act.c — activations, gated MLP product and its SiLU backward, row softmax (act.h). */
#include "act.h"

#include <math.h>
#include <string.h>

#define ACT_PAR_MIN 65536

static const char *const act_names[QV_ACT_COUNT] = {"silu", "gelu", "gelu_pytorch_tanh", "quick_gelu"};

bool qv_act_parse(const char *name, qv_act *out)
{
    static const struct {
        const char *s;
        qv_act a;
    } alias[] = {{"silu", QV_ACT_SILU},           {"swish", QV_ACT_SILU},           {"gelu", QV_ACT_GELU},
                 {"gelu_pytorch_tanh", QV_ACT_GELU_TANH}, {"gelu_new", QV_ACT_GELU_TANH}, {"gelu_fast", QV_ACT_GELU_TANH},
                 {"quick_gelu", QV_ACT_QUICK_GELU}};
    for (size_t i = 0; i < QV_ARRAY_LEN(alias); i++)
        if (!strcmp(name, alias[i].s)) {
            *out = alias[i].a;
            return true;
        }
    return false;
}

const char *qv_act_name(qv_act a) { return (unsigned)a < QV_ACT_COUNT ? act_names[a] : "?"; }

static inline float silu(float x) { return x / (1.0f + expf(-x)); }

static inline float gelu_erf(float x)
{
    const float k_alpha = (float)M_SQRT1_2;
    return x * 0.5f * (1.0f + erff(x * k_alpha));
}

static inline float gelu_tanh(float x)
{
    const float k_beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5);
    const float k_kappa = 0.044715f;
    float x_cube = x * x * x;
    float inner = k_beta * (x + k_kappa * x_cube);
    return 0.5f * x * (1.0f + tanhf(inner));
}

static inline float quick_gelu(float x)
{
    float z = 1.702f * x;
    return x * (1.0f / (1.0f + expf(-z)));
}

float qv_act_scalar(qv_act a, float x)
{
    switch (a) {
    case QV_ACT_SILU: return silu(x);
    case QV_ACT_GELU: return gelu_erf(x);
    case QV_ACT_GELU_TANH: return gelu_tanh(x);
    case QV_ACT_QUICK_GELU: return quick_gelu(x);
    default: return x;
    }
}

void qv_act_apply(qv_act a, float *y, const float *x, int64_t n)
{
    switch (a) {
    case QV_ACT_SILU:
#pragma omp parallel for schedule(static) if (n >= ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            y[i] = silu(x[i]);
        break;
    case QV_ACT_GELU:
#pragma omp parallel for schedule(static) if (n >= ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            y[i] = gelu_erf(x[i]);
        break;
    case QV_ACT_GELU_TANH:
#pragma omp parallel for schedule(static) if (n >= ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            y[i] = gelu_tanh(x[i]);
        break;
    case QV_ACT_QUICK_GELU:
#pragma omp parallel for schedule(static) if (n >= ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            y[i] = quick_gelu(x[i]);
        break;
    default:
        if (y != x)
            memmove(y, x, (size_t)n * sizeof *y);
    }
}

void qv_gated(qv_act a, float *h, const float *g, const float *u, int64_t n)
{
    if (a == QV_ACT_SILU) {
#pragma omp parallel for schedule(static) if (n >= ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            h[i] = silu(g[i]) * u[i];
        return;
    }
#pragma omp parallel for schedule(static) if (n >= ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        h[i] = qv_act_scalar(a, g[i]) * u[i];
}

void qv_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float x = g[i];
        float sg = 1.0f / (1.0f + expf(-x));
        float s = x * sg;
        du[i] = dh[i] * s;
        dg[i] = dh[i] * u[i] * (sg * (1.0f + x * (1.0f - sg)));
    }
}

void qv_softmax_rows(float *y, const float *x, int64_t rows, int64_t n)
{
#pragma omp parallel for schedule(static) if (rows * n >= ACT_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float mx = -INFINITY;
        for (int64_t i = 0; i < n; i++)
            mx = fmaxf(mx, xr[i]);
        if (mx == -INFINITY) {
            for (int64_t i = 0; i < n; i++)
                yr[i] = 0.0f;
            continue;
        }
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            float e = expf(xr[i] - mx);
            yr[i] = e;
            s += e;
        }
        float inv = (float)(1.0 / s);
        for (int64_t i = 0; i < n; i++)
            yr[i] *= inv;
    }
}

float qv_logsumexp(const float *x, int64_t n)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = fmaxf(mx, x[i]);
    if (mx == -INFINITY)
        return -INFINITY;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    return (float)(mx + log(s));
}
