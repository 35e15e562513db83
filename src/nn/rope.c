/* rope.c — rotary embedding tables and application (rope.h). */
#include "rope.h"

#include <math.h>

#define ROPE_PAR_MIN 16384

void qv_rope_inv_freq(const qv_rope_params *p, int64_t seq_len, float *inv_freq)
{
    double base = p->theta;
    if (p->scaling == QV_ROPE_SCALING_DYNAMIC_NTK && p->max_positions > 0 && seq_len > p->max_positions && p->dim > 2)
        base = p->theta * pow(p->factor * (double)seq_len / (double)p->max_positions - (p->factor - 1.0),
                              (double)p->dim / (double)(p->dim - 2));
    float fb = (float)base;
    for (int64_t j = 0; j < p->dim / 2; j++) {
        float e = (float)(2 * j) / (float)p->dim;
        inv_freq[j] = 1.0f / powf(fb, e);
    }
}

qv_status qv_rope_tables(const qv_rope_params *p, int64_t seq_len, int64_t n, const int64_t *pos,
                         const int64_t *const pos3[3], float *cos_t, float *sin_t)
{
    int64_t half = p->dim / 2;
    if (p->dim <= 0 || p->dim % 2)
        return qv_fail(QV_ERR_INVALID, "rope: dimension %lld is not a positive even number", (long long)p->dim);
    bool mrope = p->mrope_section[0] || p->mrope_section[1] || p->mrope_section[2];
    if (mrope && p->mrope_section[0] + p->mrope_section[1] + p->mrope_section[2] != half)
        return qv_fail(QV_ERR_INVALID, "rope: mrope_section [%d,%d,%d] does not add up to head_dim/2 = %lld",
                       p->mrope_section[0], p->mrope_section[1], p->mrope_section[2], (long long)half);
    float inv[4096];
    if (half > (int64_t)QV_ARRAY_LEN(inv))
        return qv_fail(QV_ERR_INVALID, "rope: dimension %lld is too large", (long long)p->dim);
    qv_rope_inv_freq(p, seq_len, inv);
    /* stream of every frequency (0 = temporal / 1-D) */
    unsigned char stream[4096];
    for (int64_t j = 0; j < half; j++)
        stream[j] = !mrope ? 0 : j < p->mrope_section[0] ? 0 : j < p->mrope_section[0] + p->mrope_section[1] ? 1 : 2;
    float div = p->scaling == QV_ROPE_SCALING_LINEAR && p->factor > 0 ? (float)p->factor : 1.0f;
    for (int64_t t = 0; t < n; t++) {
        const int64_t *streams[3] = {pos, pos, pos};
        if (mrope && pos3)
            for (int s = 0; s < 3; s++)
                if (pos3[s])
                    streams[s] = pos3[s];
        for (int s = 0; s < 3; s++)
            if (streams[s] && streams[s][t] < 0)
                return qv_fail(QV_ERR_INVALID, "rope: negative position %lld at token %lld", (long long)streams[s][t],
                               (long long)t);
    }
#pragma omp parallel for schedule(static) if (n * half >= ROPE_PAR_MIN)
    for (int64_t t = 0; t < n; t++) {
        const int64_t *streams[3] = {pos, pos, pos};
        if (mrope && pos3)
            for (int s = 0; s < 3; s++)
                if (pos3[s])
                    streams[s] = pos3[s];
        for (int64_t j = 0; j < half; j++) {
            const int64_t *ps = streams[stream[j]];
            float tp = (float)(ps ? ps[t] : t);
            if (div != 1.0f)
                tp = tp / div;
            float ang = tp * inv[j];
            cos_t[t * half + j] = (float)cos((double)ang);
            sin_t[t * half + j] = (float)sin((double)ang);
        }
    }
    return QV_OK;
}

static void rotate(float *x, int64_t n, int64_t heads, int64_t dim, int64_t ld, const float *cos_t,
                   const float *sin_t, float sign)
{
    int64_t half = dim / 2;
#pragma omp parallel for schedule(static) if (n * heads * dim >= ROPE_PAR_MIN)
    for (int64_t t = 0; t < n; t++) {
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int64_t h = 0; h < heads; h++) {
            float *x1 = x + t * ld + h * dim, *x2 = x1 + half;
            for (int64_t j = 0; j < half; j++) {
                float a = x1[j], b = x2[j], sj = sign * s[j];
                x1[j] = a * c[j] - b * sj;
                x2[j] = b * c[j] + a * sj;
            }
        }
    }
}

void qv_rope_apply(float *x, int64_t n, int64_t heads, int64_t dim, int64_t ld, const float *cos_t,
                   const float *sin_t)
{
    rotate(x, n, heads, dim, ld, cos_t, sin_t, 1.0f);
}

void qv_rope_apply_backward(float *dx, int64_t n, int64_t heads, int64_t dim, int64_t ld, const float *cos_t,
                            const float *sin_t)
{
    rotate(dx, n, heads, dim, ld, cos_t, sin_t, -1.0f);
}
