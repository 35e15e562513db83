/* projector.c — pixel shuffle and the norm–Linear–GELU–Linear projectors (projector.h). */
#include "projector.h"

#include <string.h>

#include "../nn/linear.h"

void qv_pixel_shuffle(float *out, const float *x, int64_t n, int64_t g, int64_t C, qv_ps_version v)
{
    const int64_t h = g / 2, tok = h * h;
#pragma omp parallel for schedule(static) if (n * g * g * C >= 65536)
    for (int64_t r = 0; r < n * tok; r++) {
        const int64_t t = r / tok, i = (r % tok) / h, j = r % h;
        float *o = out + r * 4 * C;
        for (int q = 0; q < 4; q++) {
            const int64_t dy = q / 2, dx = q % 2;
            const int64_t y = v == QV_PS_V2 ? 2 * i + dy : 2 * j + dy, xx = v == QV_PS_V2 ? 2 * j + dx : 2 * i + dx;
            memcpy(o + q * C, x + ((t * g + y) * g + xx) * C, (size_t)C * sizeof *o);
        }
    }
}

static qv_status load_vec(const qv_checkpoint *ck, const char *name, int64_t n, float **out)
{
    qv_tensor t;
    const int64_t sh[1] = {n};
    QV_TRY(qv_checkpoint_get_shaped(ck, name, 1, sh, &t));
    *out = qv_malloc((size_t)n * sizeof(float), "projector vectors");
    if (!*out)
        return QV_ERR_NOMEM;
    return qv_vit_widen(*out, &t, (size_t)n);
}

static qv_status load_mat(const qv_checkpoint *ck, const char *name, int64_t o, int64_t i, qv_dtype dt, void **out)
{
    qv_tensor t;
    const int64_t sh[2] = {o, i};
    QV_TRY(qv_checkpoint_get_shaped(ck, name, 2, sh, &t));
    const size_t n = (size_t)(o * i);
    *out = qv_aligned_alloc(64, n * qv_dtype_size(dt), "projector weights");
    if (!*out)
        return QV_ERR_NOMEM;
    qv_status st = dt == QV_F32 ? qv_vit_widen(*out, &t, n) : qv_convert(*out, dt, t.data, t.dtype, n);
    qv_checkpoint_release(ck, &t);
    return st;
}

qv_status qv_proj_mlp_load(qv_proj_mlp *p, const qv_checkpoint *ck, const qv_proj_names *nm)
{
    p->norm_w = p->norm_b = p->b1 = p->b2 = NULL;
    p->w1 = p->w2 = NULL;
    p->has_norm = nm->norm_w != NULL;
    if (p->has_norm) {
        QV_TRY(load_vec(ck, nm->norm_w, p->norm_width, &p->norm_w));
        if (nm->norm_b)
            QV_TRY(load_vec(ck, nm->norm_b, p->norm_width, &p->norm_b));
    }
    QV_TRY(load_mat(ck, nm->w1, p->hidden, p->in, p->dt, &p->w1));
    QV_TRY(load_mat(ck, nm->w2, p->out, p->hidden, p->dt, &p->w2));
    if (nm->b1)
        QV_TRY(load_vec(ck, nm->b1, p->hidden, &p->b1));
    if (nm->b2)
        QV_TRY(load_vec(ck, nm->b2, p->out, &p->b2));
    return QV_OK;
}

void qv_proj_mlp_free(qv_proj_mlp *p)
{
    if (!p)
        return;
    qv_free(p->norm_w);
    qv_free(p->norm_b);
    qv_free(p->w1);
    qv_free(p->w2);
    qv_free(p->b1);
    qv_free(p->b2);
    p->norm_w = p->norm_b = p->b1 = p->b2 = NULL;
    p->w1 = p->w2 = NULL;
}

/* Rows per chunk: bounds the scratch to PROJ_CHUNK · (in + hidden) floats. */
#define PROJ_CHUNK 1024

qv_status qv_proj_mlp_forward(const qv_proj_mlp *p, const float *x, int64_t rows, float *y)
{
    const int64_t R = QV_MIN(rows, (int64_t)PROJ_CHUNK);
    if (rows <= 0)
        return QV_OK;
    float *buf = qv_aligned_alloc(64, (size_t)(R * (p->in + p->hidden)) * sizeof(float) + 64, "projector activations");
    if (!buf)
        return QV_ERR_NOMEM;
    float *nx = buf, *h = buf + R * p->in;
    qv_status st = QV_OK;
    for (int64_t r0 = 0; r0 < rows && st == QV_OK; r0 += R) {
        const int64_t mr = QV_MIN(R, rows - r0);
        const float *xin = x + r0 * p->in;
        if (p->has_norm) {
            qv_vit_norm(p->norm, nx, xin, p->norm_w, p->norm_b, mr * p->in / p->norm_width, p->norm_width, p->eps);
            xin = nx;
        }
        st = qv_linear_rows(p->dt, mr, p->hidden, p->in, xin, p->w1, p->b1, h, 0);
        if (st != QV_OK)
            break;
        qv_act_apply(p->act, h, h, mr * p->hidden);
        st = qv_linear_rows(p->dt, mr, p->out, p->hidden, h, p->w2, p->b2, y + r0 * p->out, 0);
    }
    qv_free(buf);
    return st;
}
