/* qlinear.c — integer codes from the fake quantizer and FP8 E4M3 codes (qlinear.h). The integer
 * path calls the fake-quant code kernel (qv_fq_codes), so the exported codes are the ones the
 * fake quantization used; the FP8 path is compressed-tensors' own formula (ALGORITHMS-2 §4.4). */
#include "qlinear.h"

#include <math.h>
#include <string.h>

#include "core/tensor.h"
#include "fp.h"
#include "simd.h"

float qv_round_to(float x, qv_dtype T)
{
    return T == QV_BF16 ? qv_round_bf16(x) : T == QV_F16 ? qv_round_f16(x) : x;
}

float qv_dtype_eps(qv_dtype T)
{
    return T == QV_BF16 ? 0.0078125f : T == QV_F16 ? 0.0009765625f : 1.1920928955078125e-07f;
}

qv_status qv_qlinear_alloc(qv_qlinear *q, int64_t co, int64_t ci, int bits, int64_t group, bool sym, qv_dtype T)
{
    memset(q, 0, sizeof *q);
    if (co <= 0 || ci <= 0 || bits < 1 || bits > 8 || group <= 0 || ci % group)
        return qv_fail(QV_ERR_INVALID, "quantized linear [%lld, %lld]: bad geometry (bits %d, group %lld)",
                       (long long)co, (long long)ci, bits, (long long)group);
    size_t n, ng;
    if (!qv_mul_size((size_t)co, (size_t)ci, &n) || !qv_mul_size((size_t)co, (size_t)(ci / group), &ng))
        return qv_fail(QV_ERR_NOMEM, "quantized linear [%lld, %lld]: too large", (long long)co, (long long)ci);
    q->co = co;
    q->ci = ci;
    q->bits = bits;
    q->group = group;
    q->ng = ci / group;
    q->sym = sym;
    q->T = T;
    q->u = qv_malloc(n, "codes");
    q->z = qv_malloc(ng, "zero points");
    q->s = qv_malloc(ng * sizeof *q->s, "scales");
    if (!q->u || !q->z || !q->s) {
        qv_qlinear_free(q);
        return QV_ERR_NOMEM;
    }
    return QV_OK;
}

void qv_qlinear_free(qv_qlinear *q)
{
    qv_free(q->u);
    qv_free(q->z);
    qv_free(q->s);
    q->u = q->z = NULL;
    q->s = NULL;
}

qv_status qv_qlinear_quantize(qv_qlinear *q, const float *w, int64_t co, int64_t ci, const qv_wq_spec *spec,
                              const char *name)
{
    int64_t g = spec->group > 0 ? spec->group : ci;
    if (ci % g)
        return qv_fail(QV_ERR_INVALID, "%s: group size %lld does not divide the input width %lld", name, (long long)g,
                       (long long)ci);
    QV_TRY(qv_qlinear_alloc(q, co, ci, spec->bits, g, spec->sym, spec->T));
    /* the kernel reads T's storage format */
    void *raw = (void *)w;
    if (spec->T != QV_F32) {
        raw = qv_malloc((size_t)co * (size_t)ci * 2, "weight copy");
        if (!raw) {
            qv_qlinear_free(q);
            return QV_ERR_NOMEM;
        }
        qv_convert(raw, spec->T, w, QV_F32, (size_t)co * (size_t)ci);
    }
    qv_fq p = {.n_bits = spec->bits, .zero_point = !spec->sym, .group = spec->group > 0 ? spec->group : -1,
               .division = spec->div == QV_WQ_DIV_CPU ? QV_FQ_DIV_CPU : QV_FQ_DIV_CUDA};
    /* rows are independent: blocks of rows in parallel; the first failing block (lowest index)
     * reports, so the message does not depend on the thread count */
    const int64_t rb = 32, nblk = (co + rb - 1) / rb, ng = ci / g;
    const size_t esz = qv_dtype_size(spec->T);
    int64_t first_bad = nblk, badg = -1;
    const char *why = NULL;
    qv_status st = QV_OK;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t r0 = b * rb, nr = QV_MIN(rb, co - r0), bg = -1;
        const char *bw = NULL;
        qv_status bs = qv_fq_codes(q->u + r0 * ci, q->s + r0 * ng, q->z + r0 * ng, (const char *)raw + (size_t)(r0 * ci) * esz,
                                   spec->T, nr, ci, &p, &bg, &bw);
        if (bs != QV_OK) {
#pragma omp critical(qv_qlinear_err)
            if (b < first_bad) {
                first_bad = b;
                st = bs;
                why = bw;
                badg = bg >= 0 ? bg + r0 * ng : -1;
            }
        }
    }
    if (raw != w)
        qv_free(raw);
    if (st != QV_OK) {
        qv_qlinear_free(q);
        if (badg >= 0)
            return qv_fail(st, "%s: row %lld, group %lld: %s", name, (long long)(badg / (ci / g)),
                           (long long)(badg % (ci / g)), why ? why : "cannot quantize");
        return qv_fail(st, "%s: %s", name, why ? why : "cannot quantize");
    }
    return QV_OK;
}

void qv_qlinear_dequant(const qv_qlinear *q, float *out)
{
    for (int64_t n = 0; n < q->co; n++)
        for (int64_t k = 0; k < q->ci; k++) {
            int64_t gi = n * q->ng + k / q->group;
            float d = (float)((int)q->u[n * q->ci + k] - (int)q->z[gi]);
            out[n * q->ci + k] = qv_round_to(d * q->s[gi], q->T);
        }
}

/* ---- FP8 -------------------------------------------------------------------------------- */

qv_status qv_fp8linear_alloc(qv_fp8linear *q, int64_t co, int64_t ci, bool per_tensor, qv_dtype T)
{
    memset(q, 0, sizeof *q);
    size_t n;
    if (co <= 0 || ci <= 0 || !qv_mul_size((size_t)co, (size_t)ci, &n))
        return qv_fail(QV_ERR_INVALID, "fp8 linear [%lld, %lld]: bad geometry", (long long)co, (long long)ci);
    q->co = co;
    q->ci = ci;
    q->per_tensor = per_tensor;
    q->T = T;
    q->c = qv_malloc(n, "fp8 codes");
    q->s = qv_malloc((size_t)(per_tensor ? 1 : co) * sizeof *q->s, "fp8 scales");
    if (!q->c || !q->s) {
        qv_fp8linear_free(q);
        return QV_ERR_NOMEM;
    }
    return QV_OK;
}

void qv_fp8linear_free(qv_fp8linear *q)
{
    qv_free(q->c);
    qv_free(q->s);
    q->c = NULL;
    q->s = NULL;
}

/* s = T(absmax / 448) where absmax = max(|min(x,0)|, max(x,0)); a zero scale becomes eps(T). */
static float fp8_scale(const float *w, size_t n, qv_dtype T, bool *finite)
{
    float lo = 0.0f, hi = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(w[i]))
            *finite = false;
        lo = w[i] < lo ? w[i] : lo;
        hi = w[i] > hi ? w[i] : hi;
    }
    float a = -lo > hi ? -lo : hi;
    float s = qv_round_to(a / 448.0f, T);
    return s == 0.0f ? qv_dtype_eps(T) : s;
}

qv_status qv_fp8linear_quantize(qv_fp8linear *q, const float *w, int64_t co, int64_t ci, bool per_tensor, qv_dtype T,
                                const char *name)
{
    QV_TRY(qv_fp8linear_alloc(q, co, ci, per_tensor, T));
    bool finite = true;
    if (per_tensor)
        q->s[0] = fp8_scale(w, (size_t)co * (size_t)ci, T, &finite);
    else
        for (int64_t n = 0; n < co; n++)
            q->s[n] = fp8_scale(w + n * ci, (size_t)ci, T, &finite);
    if (!finite) {
        qv_fp8linear_free(q);
        return qv_fail(QV_ERR_INVALID, "%s: weight holds NaN or Inf", name);
    }
    for (int64_t n = 0; n < co; n++) {
        float s = q->s[per_tensor ? 0 : n];
        for (int64_t k = 0; k < ci; k++)
            q->c[n * ci + k] = qv_f32_to_e4m3_sat(qv_round_to(w[n * ci + k] / s, T));
    }
    return QV_OK;
}

void qv_fp8linear_dequant(const qv_fp8linear *q, float *out)
{
    for (int64_t n = 0; n < q->co; n++) {
        float s = q->s[q->per_tensor ? 0 : n];
        for (int64_t k = 0; k < q->ci; k++)
            out[n * q->ci + k] = qv_round_to(qv_round_to(qv_e4m3_to_f32(q->c[n * q->ci + k]), q->T) * s, q->T);
    }
}
