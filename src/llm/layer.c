/* layer.c — the decoder-layer runner: linears (F32 or BF16 on oneDNN) with optional per-token
 * (MBQ W-A) or FP8 input quantization, the attention module (q/k/v, RoPE, optional FP8 KV cache,
 * GQA attention, o), the SiLU-gated MLP in token chunks, and a whole layer with optional captures
 * (llm.h; ALGORITHMS.md §6.3; ALGORITHMS-2.md §4.4–4.5). */
#include <string.h>

#include "../../simd/fp.h"
#include "../../simd/simd.h"
#include "../nn/act.h"
#include "../nn/attention.h"
#include "../nn/matmul.h"
#include "../nn/norm.h"
#include "llm_internal.h"

/* Rows converted to BF16 per matmul call in BF16 mode (bounds the conversion buffer). */
#define BF16_CHUNK_ELEMS ((int64_t)1 << 24)

static void to_bf16(uint16_t *dst, const float *src, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++)
        dst[i] = qv_f32_to_bf16(src[i]);
}

qv_status qv_llm_matmul_nk(const qv_llm *m, int64_t M, int64_t N, int64_t K, const float *x, const void *w,
                           float *y, unsigned flags)
{
    if (m->dt == QV_F32)
        return qv_matmul(QV_F32, M, N, K, x, K, w, K, NULL, y, N, QV_MM_B_NK | flags);
    int64_t rows = QV_MAX((int64_t)1, QV_MIN(M, BF16_CHUNK_ELEMS / QV_MAX(K, (int64_t)1)));
    uint16_t *xb = qv_malloc((size_t)(rows * K) * 2 + 2, "BF16 activations");
    if (!xb)
        return QV_ERR_NOMEM;
    qv_status st = QV_OK;
    for (int64_t r0 = 0; r0 < M && st == QV_OK; r0 += rows) {
        int64_t mr = QV_MIN(rows, M - r0);
        to_bf16(xb, x + r0 * K, mr * K);
        st = qv_matmul(QV_BF16, mr, N, K, xb, K, w, K, NULL, y + r0 * N, N, QV_MM_B_NK | flags);
    }
    qv_free(xb);
    return st;
}

/* WALinear's input: x [T, K] fake-quantized per token in dtype act_dt, returned as F32 in a new
 * buffer (the caller frees). */
static qv_status act_quant(const qv_llm_weights *w, qv_llm_lin lin, int64_t T, int64_t K, const float *x, float **out)
{
    const qv_kernel_table *k = qv_kernels();
    qv_fq p = {.n_bits = w->act_bits[lin], .zero_point = false, .group = -1, .division = (qv_fq_div)w->act_div};
    qv_dtype dt = w->act_dt == QV_BF16 || w->act_dt == QV_F16 ? w->act_dt : QV_F32;
    float *q = qv_malloc((size_t)(T * K) * sizeof *q, "quantized activations");
    if (!q)
        return QV_ERR_NOMEM;
    const char *why = qv_fq_check(&p, dt, QV_F32, QV_FQ_SCALE_NONE, NULL, K);
    if (why) {
        qv_free(q);
        return qv_fail(QV_ERR_INVALID, "activation quantization: %s", why);
    }
    if (dt == QV_F32) {
#pragma omp parallel for schedule(static) if (T * K >= 65536)
        for (int64_t r = 0; r < T; r++)
            k->fq_rows(q + r * K, QV_F32, x + r * K, QV_F32, NULL, QV_FQ_SCALE_NONE, 1, K, &p);
    } else {
        /* the reference's activations are T values: round, then quantize in T */
#pragma omp parallel for schedule(static) if (T * K >= 65536)
        for (int64_t r = 0; r < T; r++) {
            uint16_t *h = (uint16_t *)(q + r * K); /* the row's own space, reused in place */
            for (int64_t j = 0; j < K; j++)
                h[j] = dt == QV_BF16 ? qv_f32_to_bf16(x[r * K + j]) : qv_f32_to_f16(x[r * K + j]);
            /* FQ in T reading h, writing F32 would overlap h: go through T in place, then widen */
            k->fq_rows(h, dt, h, dt, NULL, QV_FQ_SCALE_NONE, 1, K, &p);
            for (int64_t j = K - 1; j >= 0; j--)
                q[r * K + j] = dt == QV_BF16 ? qv_bf16_to_f32(h[j]) : qv_f16_to_f32(h[j]);
        }
    }
    *out = q;
    return QV_OK;
}

/* The FP8 input of a linear (qv_llm_fp8): x [T, K] fake-quantized in a new buffer (the caller
 * frees). */
static qv_status act_fp8(const qv_llm_fp8 *f, qv_llm_lin lin, int64_t T, int64_t K, const float *x, float **out)
{
    float *q = qv_malloc((size_t)(T * K) * sizeof *q + 4, "FP8 activations");
    if (!q)
        return QV_ERR_NOMEM;
    if (f->act[lin] == QV_FP8_ACT_TOKEN)
        qv_fp8_qdq_tokens(q, x, T, K, f->T, NULL, NULL);
    else
        qv_fp8_qdq_static(q, x, T, K, &f->act_scale[lin], 1, f->T);
    *out = q;
    return QV_OK;
}

qv_status qv_llm_lin_apply(const qv_llm *m, const qv_llm_weights *w, qv_llm_lin lin, int64_t T, const float *x,
                           float *y, unsigned flags)
{
    const int64_t N = qv_llm_lin_out(m, lin), K = qv_llm_lin_in(m, lin);
    if (!w->w[lin])
        return qv_fail(QV_ERR_INTERNAL, "layer weights: linear %s missing", qv_llm_lin_suffix(m, lin));
    const bool fp8 = w->fp8 && w->fp8->act[lin] != QV_FP8_ACT_NONE;
    if (w->act_bits[lin] > 0 || fp8) {
        float *xq = NULL;
        QV_TRY(fp8 ? act_fp8(w->fp8, lin, T, K, x, &xq) : act_quant(w, lin, T, K, x, &xq));
        qv_llm_weights plain = *w;
        plain.act_bits[lin] = 0;
        plain.fp8 = NULL; /* this copy runs linear `lin` only */
        qv_status st = qv_llm_lin_apply(m, &plain, lin, T, xq, y, flags);
        qv_free(xq);
        return st;
    }
    if (m->dt == QV_F32)
        return qv_matmul(QV_F32, T, N, K, x, K, w->w[lin], K, w->bias[lin], y, N, QV_MM_B_NK | flags);
    int64_t rows = QV_MAX((int64_t)1, QV_MIN(T, BF16_CHUNK_ELEMS / K));
    uint16_t *xb = qv_malloc((size_t)(rows * K) * 2 + 2, "BF16 activations");
    if (!xb)
        return QV_ERR_NOMEM;
    qv_status st = QV_OK;
    for (int64_t r0 = 0; r0 < T && st == QV_OK; r0 += rows) {
        int64_t mr = QV_MIN(rows, T - r0);
        to_bf16(xb, x + r0 * K, mr * K);
        st = qv_matmul(QV_BF16, mr, N, K, xb, K, w->w[lin], K, w->bias[lin], y + r0 * N, N, QV_MM_B_NK | flags);
    }
    qv_free(xb);
    return st;
}

qv_status qv_llm_lin_backward(const qv_llm *m, const qv_llm_weights *w, qv_llm_lin lin, int64_t T, const float *dy,
                              float *dx, unsigned flags)
{
    const int64_t N = qv_llm_lin_out(m, lin), K = qv_llm_lin_in(m, lin);
    /* dx [T, K] = dy [T, N] · W [N, K]: W read as the [K-major] right operand, no transpose */
    if (m->dt == QV_F32)
        return qv_matmul(QV_F32, T, K, N, dy, N, w->w[lin], K, NULL, dx, K, flags);
    int64_t rows = QV_MAX((int64_t)1, QV_MIN(T, BF16_CHUNK_ELEMS / N));
    uint16_t *gb = qv_malloc((size_t)(rows * N) * 2 + 2, "BF16 gradients");
    if (!gb)
        return QV_ERR_NOMEM;
    qv_status st = QV_OK;
    for (int64_t r0 = 0; r0 < T && st == QV_OK; r0 += rows) {
        int64_t mr = QV_MIN(rows, T - r0);
        to_bf16(gb, dy + r0 * N, mr * N);
        st = qv_matmul(QV_BF16, mr, K, N, gb, N, w->w[lin], K, NULL, dx + r0 * K, K, flags);
    }
    qv_free(gb);
    return st;
}

qv_status qv_llm_linear_forward(qv_llm *m, const qv_llm_weights *w, qv_llm_lin lin, int64_t T, const float *x,
                                float *y)
{
    return qv_llm_lin_apply(m, w, lin, T, x, y, 0);
}

/* ---- attention module ---------------------------------------------------------------------- */

void qv_llm_attn_desc(const qv_llm *m, const qv_llm_ctx *ctx, qv_attn_desc *a)
{
    memset(a, 0, sizeof *a);
    a->B = ctx->B, a->L = ctx->L, a->H = m->H, a->KV = m->KV, a->d = m->d;
    a->ldq = a->ldo = m->H * m->d;
    a->ldk = a->ldv = m->KV * m->d;
    a->causal = true;
    a->key_mask = ctx->mask;
    a->scale = m->attn_scale;
}

/* q, k, v after RoPE, before any KV-cache fake quantization. */
static qv_status qkv_rope(const qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, const float *n1, float *q,
                          float *k, float *v, float *qkv_tmp)
{
    const int64_t T = ctx->B * ctx->L, d = m->d, H = m->H, KV = m->KV;
    if (w->w[QV_LIN_QKV]) {
        /* InternLM2: per KV head j the rows [q_{j·g} .. q_{j·g+g−1}, k_j, v_j], d each */
        const int64_t g = H / KV, W = (H + 2 * KV) * d;
        QV_TRY(qv_llm_lin_apply(m, w, QV_LIN_QKV, T, n1, qkv_tmp, 0));
#pragma omp parallel for schedule(static) if (T * W >= 65536)
        for (int64_t t = 0; t < T; t++) {
            const float *src = qkv_tmp + t * W;
            for (int64_t j = 0; j < KV; j++) {
                const float *grp = src + j * (g + 2) * d;
                memcpy(q + t * H * d + j * g * d, grp, (size_t)(g * d) * sizeof *q);
                memcpy(k + t * KV * d + j * d, grp + g * d, (size_t)d * sizeof *k);
                memcpy(v + t * KV * d + j * d, grp + (g + 1) * d, (size_t)d * sizeof *v);
            }
        }
    } else {
        QV_TRY(qv_llm_lin_apply(m, w, QV_LIN_Q, T, n1, q, 0));
        QV_TRY(qv_llm_lin_apply(m, w, QV_LIN_K, T, n1, k, 0));
        QV_TRY(qv_llm_lin_apply(m, w, QV_LIN_V, T, n1, v, 0));
    }
    qv_rope_apply(q, T, H, d, H * d, ctx->cos, ctx->sin);
    qv_rope_apply(k, T, KV, d, KV * d, ctx->cos, ctx->sin);
    return QV_OK;
}

/* FP8 KV cache (qv_llm_fp8): K and V [T, KV·d] fake-quantized in place with their static scales. */
static void kv_fp8(const qv_llm *m, const qv_llm_weights *w, int64_t T, float *k, float *v)
{
    const qv_llm_fp8 *f = w->fp8;
    if (!f || f->kv_n <= 0)
        return;
    qv_fp8_qdq_static(k, k, T, m->KV * m->d, f->k_scale, f->kv_n, f->T);
    qv_fp8_qdq_static(v, v, T, m->KV * m->d, f->v_scale, f->kv_n, f->T);
}

qv_status qv_llm_qkv(const qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, const float *n1, float *q,
                     float *k, float *v, float *qkv_tmp)
{
    QV_TRY(qkv_rope(m, w, ctx, n1, q, k, v, qkv_tmp));
    kv_fp8(m, w, ctx->B * ctx->L, k, v);
    return QV_OK;
}

/* The attention module; k_cap / v_cap [T, KV·d] (may be NULL) receive K after RoPE and V. */
static qv_status attn_forward(qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, const float *x_normed,
                              float *out, float *o_in, float *k_cap, float *v_cap)
{
    const int64_t T = ctx->B * ctx->L, qd = m->H * m->d, kd = m->KV * m->d;
    const bool packed = w->w[QV_LIN_QKV] != NULL;
    size_t n = (size_t)T * (size_t)(qd + 2 * kd + (o_in ? 0 : qd) + (packed ? qd + 2 * kd : 0));
    float *buf = qv_aligned_alloc(64, n * sizeof(float) + 64, "attention activations");
    if (!buf)
        return QV_ERR_NOMEM;
    float *q = buf, *k = q + T * qd, *v = k + T * kd, *p = v + T * kd;
    float *a = o_in ? o_in : p;
    if (!o_in)
        p += T * qd;
    float *qkv = packed ? p : NULL;
    qv_status st = qkv_rope(m, w, ctx, x_normed, q, k, v, qkv);
    if (st == QV_OK && k_cap)
        memcpy(k_cap, k, (size_t)(T * kd) * sizeof *k);
    if (st == QV_OK && v_cap)
        memcpy(v_cap, v, (size_t)(T * kd) * sizeof *v);
    if (st == QV_OK) {
        kv_fp8(m, w, T, k, v);
        qv_attn_desc ad;
        qv_llm_attn_desc(m, ctx, &ad);
        st = qv_attention(&ad, a, q, k, v, NULL);
    }
    if (st == QV_OK)
        st = qv_llm_lin_apply(m, w, QV_LIN_O, T, a, out, 0);
    qv_free(buf);
    return st;
}

qv_status qv_llm_attn_forward(qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, const float *x_normed,
                              float *out, float *o_in)
{
    return attn_forward(m, w, ctx, x_normed, out, o_in, NULL, NULL);
}

/* ---- MLP ----------------------------------------------------------------------------------- */

/* out [T, C] (+)= down(silu(gate(x)) ⊙ up(x)) in chunks of QV_LLM_MLP_CHUNK rows. */
static qv_status mlp_chunked(qv_llm *m, const qv_llm_weights *w, int64_t T, const float *x, float *out, float *down_in,
                             unsigned flags)
{
    const int64_t I = m->I, C = m->C, R = QV_MIN(T, (int64_t)QV_LLM_MLP_CHUNK);
    float *buf = qv_aligned_alloc(64, (size_t)(2 * R * I) * sizeof(float) + 64, "MLP activations");
    if (!buf)
        return QV_ERR_NOMEM;
    float *g = buf, *u = buf + R * I;
    qv_status st = QV_OK;
    for (int64_t r0 = 0; r0 < T && st == QV_OK; r0 += R) {
        const int64_t mr = QV_MIN(R, T - r0);
        st = qv_llm_lin_apply(m, w, QV_LIN_GATE, mr, x + r0 * C, g, 0);
        if (st == QV_OK)
            st = qv_llm_lin_apply(m, w, QV_LIN_UP, mr, x + r0 * C, u, 0);
        if (st != QV_OK)
            break;
        float *h = down_in ? down_in + r0 * I : g;
        qv_gated(QV_ACT_SILU, h, g, u, mr * I);
        st = qv_llm_lin_apply(m, w, QV_LIN_DOWN, mr, h, out + r0 * C, flags);
    }
    qv_free(buf);
    return st;
}

qv_status qv_llm_mlp_forward(qv_llm *m, const qv_llm_weights *w, int64_t T, const float *x_normed, float *out,
                             float *down_in)
{
    return mlp_chunked(m, w, T, x_normed, out, down_in, 0);
}

/* ---- a whole layer -------------------------------------------------------------------------- */

static void add_rows(float *y, const float *a, const float *b, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

qv_status qv_llm_layer_forward(qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, const void *x, void *y,
                               qv_dtype act_dt, const qv_llm_capture *cap)
{
    static const qv_llm_capture none = {0};
    if (!cap)
        cap = &none;
    if (act_dt != QV_F32 && act_dt != QV_BF16)
        return qv_fail(QV_ERR_INVALID, "layer forward: activations must be F32 or BF16, not %s", qv_dtype_name(act_dt));
    const int64_t T = ctx->B * ctx->L, C = m->C;
    const size_t TC = (size_t)(T * C);
    /* scratch: F32 copies of x/y when stored as BF16, the norm output, the module output */
    size_t n = TC * 2 + (act_dt == QV_BF16 ? TC * 2 : 0);
    float *buf = qv_aligned_alloc(64, n * sizeof(float) + 64, "layer activations");
    if (!buf)
        return QV_ERR_NOMEM;
    float *nrm = buf, *mo = buf + TC, *xf, *yf;
    if (act_dt == QV_BF16) {
        xf = mo + TC;
        yf = xf + TC;
        const uint16_t *xb = x;
#pragma omp parallel for schedule(static) if (TC >= 65536)
        for (size_t i = 0; i < TC; i++)
            xf[i] = qv_bf16_to_f32(xb[i]);
    } else {
        xf = (float *)x;
        yf = y;
    }
    qv_status st;
    float *n1 = cap->attn_in ? cap->attn_in : nrm;
    qv_rmsnorm(n1, xf, w->norm[QV_LLM_NORM_ATTN], T, C, m->eps);
    float *ao = cap->attn_out ? cap->attn_out : mo;
    QV_CHECK(st = attn_forward(m, w, ctx, n1, ao, cap->o_in, cap->k, cap->v), done);
    add_rows(yf, xf, ao, (int64_t)TC); /* x1 = x + attn (yf may be xf) */
    float *n2 = cap->mlp_in ? cap->mlp_in : nrm;
    qv_rmsnorm(n2, yf, w->norm[QV_LLM_NORM_MLP], T, C, m->eps);
    float *mlp_o = cap->mlp_out ? cap->mlp_out : mo;
    QV_CHECK(st = mlp_chunked(m, w, T, n2, mlp_o, cap->down_in, 0), done);
    add_rows(yf, yf, mlp_o, (int64_t)TC);
    if (act_dt == QV_BF16) {
        uint16_t *yb = y;
#pragma omp parallel for schedule(static) if (TC >= 65536)
        for (size_t i = 0; i < TC; i++)
            yb[i] = qv_f32_to_bf16(yf[i]);
    }
done:
    qv_free(buf);
    return st;
}
