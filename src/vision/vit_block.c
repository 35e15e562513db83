/* vit_block.c — the shared vision encoder block: weight slots, loading (with the per-Linear
 * hook of vision_hook.h) and the forward (vit_block.h). */
#include "vit_block.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../simd/fp.h"
#include "../nn/attention.h"
#include "../nn/linear.h"
#include "../nn/matmul.h"
#include "../nn/norm.h"
#include "../nn/rope.h"

/* Rows per MLP chunk (bounds the MLP scratch to VIT_MLP_CHUNK·I floats, 2·I when gated). */
#define VIT_MLP_CHUNK 512
#define VIT_PAR_MIN 65536

int64_t qv_vit_lin_out(const qv_vit_dims *dm, qv_vit_lin l)
{
    switch (l) {
    case QV_VIT_QKV: return 3 * dm->D;
    case QV_VIT_FC1:
    case QV_VIT_UP: return dm->I;
    default: return dm->D;
    }
}

int64_t qv_vit_lin_in(const qv_vit_dims *dm, qv_vit_lin l) { return l == QV_VIT_FC2 ? dm->I : dm->D; }

qv_status qv_vit_widen(float *dst, const qv_tensor *t, size_t n)
{
    if (t->dtype == QV_F32) {
        memcpy(dst, t->data, n * sizeof *dst);
        return QV_OK;
    }
    if (t->dtype == QV_BF16) {
        const uint16_t *s = t->data;
#pragma omp parallel for schedule(static) if (n >= VIT_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + i, 2); /* views into the mmap may be unaligned */
            dst[i] = qv_bf16_to_f32(h);
        }
        return QV_OK;
    }
    return qv_convert(dst, QV_F32, t->data, t->dtype, n);
}

void qv_vit_patchify(float *cols, const float *pixels, int64_t n, int64_t h, int64_t w, int64_t p)
{
    const int64_t gh = h / p, gw = w / p, np = gh * gw, K = 3 * p * p;
#pragma omp parallel for schedule(static) if (n * np * K >= VIT_PAR_MIN)
    for (int64_t r = 0; r < n * np; r++) {
        const int64_t t = r / np, y = (r % np) / gw, x = r % gw;
        float *dst = cols + r * K;
        for (int64_t c = 0; c < 3; c++)
            for (int64_t ky = 0; ky < p; ky++)
                memcpy(dst + (c * p + ky) * p, pixels + ((t * 3 + c) * h + y * p + ky) * w + x * p,
                       (size_t)p * sizeof(float));
    }
}

static qv_status get(const qv_checkpoint *ck, const char *prefix, const char *suffix, int ndim, int64_t a, int64_t b,
                     qv_tensor *t)
{
    char name[512];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    const int64_t shape[2] = {a, b};
    return qv_checkpoint_get_shaped(ck, name, ndim, shape, t);
}

qv_status qv_vit_layer_check(const qv_checkpoint *ck, const qv_vit_dims *dm, const qv_vit_names *nm,
                             const char *prefix)
{
    qv_tensor t;
    for (int l = 0; l < QV_VIT_LIN_COUNT; l++) {
        if (nm->lin_w[l])
            QV_TRY(get(ck, prefix, nm->lin_w[l], 2, qv_vit_lin_out(dm, (qv_vit_lin)l), qv_vit_lin_in(dm, (qv_vit_lin)l),
                       &t));
        if (nm->lin_b[l])
            QV_TRY(get(ck, prefix, nm->lin_b[l], 1, qv_vit_lin_out(dm, (qv_vit_lin)l), 0, &t));
    }
    for (int v = 0; v < QV_VIT_VEC_COUNT; v++)
        if (nm->vec[v])
            QV_TRY(get(ck, prefix, nm->vec[v], 1, dm->D, 0, &t));
    return QV_OK;
}

/* The hook's weight callback on linear l: an F32 copy modified by the hook becomes the layer's
 * own weight in the compute dtype. */
static qv_status hook_weight(const qv_vit_dims *dm, qv_vit_layer *layer, qv_vit_lin l)
{
    const int64_t o = qv_vit_lin_out(dm, l), in = qv_vit_lin_in(dm, l);
    const size_t n = (size_t)(o * in);
    float *f = dm->dt == QV_F32 && layer->own[l] ? layer->own[l] : NULL;
    if (!f) {
        f = qv_aligned_alloc(64, n * sizeof *f, "vision layer weights");
        if (!f)
            return QV_ERR_NOMEM;
        qv_tensor t;
        const int64_t shape[2] = {o, in};
        qv_tensor_view(&t, dm->dt, (void *)layer->w[l], 2, shape);
        qv_status st = qv_vit_widen(f, &t, n);
        if (st != QV_OK) {
            qv_free(f);
            return st;
        }
    }
    qv_status st = dm->hook->weight(dm->hook->ctx, layer->module[l], o, in, f);
    if (f == layer->own[l])
        return st;
    if (st == QV_OK && dm->dt == QV_F32) {
        layer->own[l] = f; /* the mmap view (an F32 checkpoint) stays in src until release */
        layer->w[l] = f;
        return QV_OK;
    }
    if (st == QV_OK && !layer->own[l] && !(layer->own[l] = qv_aligned_alloc(64, n * qv_dtype_size(dm->dt), "vision layer weights")))
        st = QV_ERR_NOMEM;
    if (st == QV_OK) {
        st = qv_convert(layer->own[l], dm->dt, f, QV_F32, n);
        layer->w[l] = layer->own[l];
    }
    qv_free(f);
    return st;
}

/* Which loaded linears the hook wants, with their module names; their weight callbacks. */
static qv_status hook_layer(const qv_vit_dims *dm, const qv_vit_names *nm, const char *prefix, qv_vit_layer *layer)
{
    for (int l = 0; l < QV_VIT_LIN_COUNT; l++) {
        if (!nm->lin_w[l] || !layer->w[l])
            continue;
        size_t pl = strlen(prefix), nl = strlen(nm->lin_w[l]);
        if (nl > 7 && !strcmp(nm->lin_w[l] + nl - 7, ".weight"))
            nl -= 7;
        if (pl + nl >= sizeof layer->module[l])
            return qv_fail(QV_ERR_INVALID, "%s%s: module name too long", prefix, nm->lin_w[l]);
        memcpy(layer->module[l], prefix, pl);
        memcpy(layer->module[l] + pl, nm->lin_w[l], nl);
        layer->module[l][pl + nl] = 0;
        layer->hooked[l] = dm->hook->wants(dm->hook->ctx, layer->module[l]);
        if (layer->hooked[l] && dm->hook->weight)
            QV_TRY(hook_weight(dm, layer, (qv_vit_lin)l));
    }
    return QV_OK;
}

qv_status qv_vit_layer_load(const qv_checkpoint *ck, const qv_vit_dims *dm, const qv_vit_names *nm,
                            const char *prefix, qv_vit_layer *layer)
{
    memset(layer, 0, sizeof *layer);
    size_t n_small = 0;
    for (int l = 0; l < QV_VIT_LIN_COUNT; l++)
        if (nm->lin_b[l])
            n_small += (size_t)qv_vit_lin_out(dm, (qv_vit_lin)l);
    for (int v = 0; v < QV_VIT_VEC_COUNT; v++)
        if (nm->vec[v])
            n_small += (size_t)dm->D;
    layer->small = qv_malloc(n_small * sizeof(float) + 4, "vision layer vectors");
    if (!layer->small)
        return QV_ERR_NOMEM;
    float *p = layer->small;
    qv_tensor t;
    for (int v = 0; v < QV_VIT_VEC_COUNT; v++) {
        if (!nm->vec[v])
            continue;
        QV_TRY(get(ck, prefix, nm->vec[v], 1, dm->D, 0, &t));
        QV_TRY(qv_vit_widen(p, &t, (size_t)dm->D));
        layer->vec[v] = p;
        p += dm->D;
    }
    for (int l = 0; l < QV_VIT_LIN_COUNT; l++) {
        const int64_t o = qv_vit_lin_out(dm, (qv_vit_lin)l), in = qv_vit_lin_in(dm, (qv_vit_lin)l);
        if (nm->lin_b[l]) {
            QV_TRY(get(ck, prefix, nm->lin_b[l], 1, o, 0, &t));
            QV_TRY(qv_vit_widen(p, &t, (size_t)o));
            layer->b[l] = p;
            p += o;
        }
        if (!nm->lin_w[l])
            continue;
        QV_TRY(get(ck, prefix, nm->lin_w[l], 2, o, in, &layer->src[l]));
        if (layer->src[l].dtype == dm->dt) {
            layer->w[l] = layer->src[l].data;
            continue;
        }
        const size_t n = (size_t)(o * in);
        layer->own[l] = qv_aligned_alloc(64, n * qv_dtype_size(dm->dt), "vision layer weights");
        if (!layer->own[l])
            return QV_ERR_NOMEM;
        if (dm->dt == QV_F32)
            QV_TRY(qv_vit_widen(layer->own[l], &layer->src[l], n));
        else
            QV_TRY(qv_convert(layer->own[l], dm->dt, layer->src[l].data, layer->src[l].dtype, n));
        qv_checkpoint_release(ck, &layer->src[l]);
        layer->w[l] = layer->own[l];
    }
    if (dm->hook && dm->hook->wants)
        QV_TRY(hook_layer(dm, nm, prefix, layer));
    return QV_OK;
}

void qv_vit_layer_release(const qv_checkpoint *ck, qv_vit_layer *layer)
{
    if (!layer)
        return;
    for (int l = 0; l < QV_VIT_LIN_COUNT; l++) {
        if (layer->src[l].data && ck)
            qv_checkpoint_release(ck, &layer->src[l]);
        qv_free(layer->own[l]);
    }
    qv_free(layer->small);
    memset(layer, 0, sizeof *layer);
}

void qv_vit_norm(qv_norm_kind kind, float *y, const float *x, const float *w, const float *b, int64_t rows,
                 int64_t C, float eps)
{
    if (kind == QV_NORM_RMS)
        qv_rmsnorm(y, x, w, rows, C, eps);
    else
        qv_layernorm(y, x, w, b, rows, C, eps);
}

/* x[t, c] += (ls ? ls[c] : 1) · y[t, c] — the reference's `x + f(x) * ls` in f32. */
static void residual(float *x, const float *y, const float *ls, int64_t T, int64_t C)
{
#pragma omp parallel for schedule(static) if (T * C >= VIT_PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        float *xr = x + t * C;
        const float *yr = y + t * C;
        if (ls)
            for (int64_t c = 0; c < C; c++)
                xr[c] = xr[c] + yr[c] * ls[c];
        else
            for (int64_t c = 0; c < C; c++)
                xr[c] = xr[c] + yr[c];
    }
}

/* RMSNorm of T rows of D values at stride ld, in place (InternViT's q_norm / k_norm). */
static void rms_strided(float *x, int64_t T, int64_t D, int64_t ld, const float *w, float eps)
{
#pragma omp parallel for schedule(static) if (T * D >= VIT_PAR_MIN)
    for (int64_t t = 0; t < T; t++)
        qv_rmsnorm(x + t * ld, x + t * ld, w, 1, D, eps);
}

/* Every block linear goes through here: the hook's input callback (statistics, fake-quantized
 * inputs) for hooked linears, then the matmul. */
static qv_status lin(const qv_vit_dims *dm, const qv_vit_layer *w, qv_vit_lin l, int64_t T, const float *x, float *y)
{
    const int64_t N = qv_vit_lin_out(dm, l), K = qv_vit_lin_in(dm, l);
    if (!w->hooked[l] || !dm->hook->input)
        return qv_linear_rows(dm->dt, T, N, K, x, w->w[l], w->b[l], y, 0);
    float *xq = qv_aligned_alloc(64, (size_t)(T * K) * sizeof *xq + 64, "vision linear input");
    if (!xq)
        return QV_ERR_NOMEM;
    bool use = false;
    qv_status st = dm->hook->input(dm->hook->ctx, w->module[l], T, K, x, xq, &use);
    if (st == QV_OK)
        st = qv_linear_rows(dm->dt, T, N, K, use ? xq : x, w->w[l], w->b[l], y, 0);
    qv_free(xq);
    return st;
}

static qv_status attention_half(const qv_vit_dims *dm, const qv_vit_layer *w, const qv_vit_seq *s, float *x,
                                float *buf)
{
    const int64_t T = s->B * s->L, D = dm->D;
    float *n1 = buf, *qkv = n1 + T * D, *ao = qkv + 3 * T * D, *po = n1; /* proj output reuses n1 */
    qv_vit_norm(dm->norm, n1, x, w->vec[QV_VIT_NORM1_W], w->vec[QV_VIT_NORM1_B], T, D, dm->eps);
    float *q, *k, *v;
    int64_t ld;
    if (w->w[QV_VIT_QKV]) {
        QV_TRY(lin(dm, w, QV_VIT_QKV, T, n1, qkv));
        q = qkv, k = qkv + D, v = qkv + 2 * D, ld = 3 * D;
    } else {
        q = qkv, k = qkv + T * D, v = qkv + 2 * T * D, ld = D;
        QV_TRY(lin(dm, w, QV_VIT_Q, T, n1, q));
        QV_TRY(lin(dm, w, QV_VIT_K, T, n1, k));
        QV_TRY(lin(dm, w, QV_VIT_V, T, n1, v));
    }
    if (dm->qk_norm) {
        rms_strided(q, T, D, ld, w->vec[QV_VIT_QNORM], dm->eps);
        rms_strided(k, T, D, ld, w->vec[QV_VIT_KNORM], dm->eps);
    }
    if (s->cos) {
        qv_rope_apply(q, T, dm->H, dm->d, ld, s->cos, s->sin);
        qv_rope_apply(k, T, dm->H, dm->d, ld, s->cos, s->sin);
    }
    qv_attn_desc ad = {0};
    ad.B = s->B, ad.L = s->L, ad.H = dm->H, ad.KV = dm->H, ad.d = dm->d;
    ad.ldq = ad.ldk = ad.ldv = ld;
    ad.ldo = D;
    ad.causal = false;
    ad.segment = s->segment;
    ad.scale = (float)(1.0 / sqrt((double)dm->d));
    QV_TRY(qv_attention(&ad, ao, q, k, v, NULL));
    QV_TRY(lin(dm, w, QV_VIT_O, T, ao, po));
    residual(x, po, w->vec[QV_VIT_LS1], T, D);
    return QV_OK;
}

static qv_status mlp_half(const qv_vit_dims *dm, const qv_vit_layer *w, int64_t T, float *x, float *buf)
{
    const int64_t D = dm->D, I = dm->I, R = QV_MIN(T, (int64_t)VIT_MLP_CHUNK);
    float *n2 = buf, *mo = n2 + R * D, *h = mo + R * D, *u = h + R * I;
    for (int64_t r0 = 0; r0 < T; r0 += R) {
        const int64_t mr = QV_MIN(R, T - r0);
        float *xr = x + r0 * D;
        qv_vit_norm(dm->norm, n2, xr, w->vec[QV_VIT_NORM2_W], w->vec[QV_VIT_NORM2_B], mr, D, dm->eps);
        QV_TRY(lin(dm, w, QV_VIT_FC1, mr, n2, h));
        if (dm->gated) {
            QV_TRY(lin(dm, w, QV_VIT_UP, mr, n2, u));
            qv_gated(dm->act, h, h, u, mr * I);
        } else {
            qv_act_apply(dm->act, h, h, mr * I);
        }
        QV_TRY(lin(dm, w, QV_VIT_FC2, mr, h, mo));
        residual(xr, mo, w->vec[QV_VIT_LS2], mr, D);
    }
    return QV_OK;
}

qv_status qv_vit_layer_forward(const qv_vit_dims *dm, const qv_vit_layer *w, const qv_vit_seq *s, float *x)
{
    const int64_t T = s->B * s->L, D = dm->D, R = QV_MIN(T, (int64_t)VIT_MLP_CHUNK);
    if (T <= 0)
        return QV_OK;
    size_t n_attn, n_mlp = (size_t)(R * (2 * D + (dm->gated ? 2 : 1) * dm->I));
    if (!qv_mul_size((size_t)T, (size_t)(5 * D), &n_attn))
        return qv_fail(QV_ERR_NOMEM, "vision layer: %lld tokens are too many", (long long)T);
    float *buf = qv_aligned_alloc(64, QV_MAX(n_attn, n_mlp) * sizeof(float) + 64, "vision layer activations");
    if (!buf)
        return QV_ERR_NOMEM;
    qv_status st = attention_half(dm, w, s, x, buf);
    if (st == QV_OK)
        st = mlp_half(dm, w, T, x, buf);
    qv_free(buf);
    return st;
}
