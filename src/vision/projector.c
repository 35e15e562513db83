/* projector.c — pixel shuffle and the norm–Linear–GELU–Linear projectors, with the per-Linear
 * hook of vision_hook.h (projector.h). */
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

/* Hook of linear k (weight `name`, [o, i] in p->dt at *w): whether it is wanted, its weight
 * callback on an F32 copy stored back in p->dt. */
static qv_status hook_mat(qv_proj_mlp *p, int k, const char *name, int64_t o, int64_t i, void *w)
{
    size_t nl = strlen(name);
    if (nl > 7 && !strcmp(name + nl - 7, ".weight"))
        nl -= 7;
    if (nl >= sizeof p->module[k])
        return qv_fail(QV_ERR_INVALID, "%s: module name too long", name);
    memcpy(p->module[k], name, nl);
    p->module[k][nl] = 0;
    p->hooked[k] = p->hook->wants(p->hook->ctx, p->module[k]);
    if (!p->hooked[k] || !p->hook->weight)
        return QV_OK;
    const size_t n = (size_t)(o * i);
    if (p->dt == QV_F32)
        return p->hook->weight(p->hook->ctx, p->module[k], o, i, w);
    float *f = qv_malloc(n * sizeof *f, "projector weights");
    if (!f)
        return QV_ERR_NOMEM;
    qv_status st = qv_convert(f, QV_F32, w, p->dt, n);
    if (st == QV_OK)
        st = p->hook->weight(p->hook->ctx, p->module[k], o, i, f);
    if (st == QV_OK)
        st = qv_convert(w, p->dt, f, QV_F32, n);
    qv_free(f);
    return st;
}

qv_status qv_proj_mlp_load(qv_proj_mlp *p, const qv_checkpoint *ck, const qv_proj_names *nm)
{
    p->hooked[0] = p->hooked[1] = false;
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
    if (p->hook && p->hook->wants) {
        QV_TRY(hook_mat(p, 0, nm->w1, p->hidden, p->in, p->w1));
        QV_TRY(hook_mat(p, 1, nm->w2, p->out, p->hidden, p->w2));
    }
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

/* One projector linear on mr rows, through the hook's input callback when it wants it; xq is
 * scratch for a replaced input. */
static qv_status proj_lin(const qv_proj_mlp *p, int k, int64_t mr, int64_t N, int64_t K, const float *x, const void *w,
                          const float *b, float *y, float *xq)
{
    bool use = false;
    if (p->hooked[k] && p->hook->input)
        QV_TRY(p->hook->input(p->hook->ctx, p->module[k], mr, K, x, xq, &use));
    return qv_linear_rows(p->dt, mr, N, K, use ? xq : x, w, b, y, 0);
}

qv_status qv_proj_mlp_forward(const qv_proj_mlp *p, const float *x, int64_t rows, float *y)
{
    const int64_t R = QV_MIN(rows, (int64_t)PROJ_CHUNK);
    if (rows <= 0)
        return QV_OK;
    const bool hk = p->hooked[0] || p->hooked[1];
    float *buf = qv_aligned_alloc(64, (size_t)(R * (p->in + p->hidden) * (hk ? 2 : 1)) * sizeof(float) + 64,
                                  "projector activations");
    if (!buf)
        return QV_ERR_NOMEM;
    float *nx = buf, *h = buf + R * p->in, *xq = hk ? h + R * p->hidden : NULL;
    qv_status st = QV_OK;
    for (int64_t r0 = 0; r0 < rows && st == QV_OK; r0 += R) {
        const int64_t mr = QV_MIN(R, rows - r0);
        const float *xin = x + r0 * p->in;
        if (p->has_norm) {
            qv_vit_norm(p->norm, nx, xin, p->norm_w, p->norm_b, mr * p->in / p->norm_width, p->norm_width, p->eps);
            xin = nx;
        }
        st = proj_lin(p, 0, mr, p->hidden, p->in, xin, p->w1, p->b1, h, xq);
        if (st != QV_OK)
            break;
        qv_act_apply(p->act, h, h, mr * p->hidden);
        st = proj_lin(p, 1, mr, p->out, p->hidden, h, p->w2, p->b2, y + r0 * p->out, xq);
    }
    qv_free(buf);
    return st;
}
