/* gemm_avx512bf16.c — the AVX-512-BF16 kernel set of gemm.h: fake quantization of packed
 * n-blocks (fqpanel_body.h over vec_avx512.h) and the VDPBF16PS GEMM (gemm_dp_body.h over
 * dp_avx512bf16.h); the bare instruction for the bench's hardware check. Scalar twins:
 * qv_fq_rows_ref, qv_gemm_model_dp. Tail strategies: see the bodies. */
#include "vec_avx512.h"

#include "dp_avx512bf16.h"
#include "fqpanel_body.h"
#include "gemm_dp_body.h"

void qv_gemm_fq_panel_avx512bf16(uint16_t *dst, const uint16_t *w, int64_t nb, int64_t K, int64_t n_valid,
                                 const uint16_t *s, qv_fq_scale mode, const qv_fq *p, uint16_t *scratch)
{
    fqp_panel(dst, w, nb, K, n_valid, s, mode, p, scratch);
}

void qv_gemm_panel_avx512bf16(float *y, int64_t ldy, const uint16_t *x, int64_t ldx, int64_t M, int64_t K,
                              const uint16_t *panel, int64_t nb, int64_t n_valid, const float *bias, int64_t kc)
{
    gemmd_run(y, ldy, x, ldx, M, K, panel, nb, n_valid, bias, kc);
}

void qv_hw_vdpbf16ps(float acc[16], const uint32_t a[16], const uint32_t b[16])
{
    __m512 r = _mm512_dpbf16_ps(_mm512_loadu_ps(acc), (__m512bh)_mm512_loadu_si512(a), (__m512bh)_mm512_loadu_si512(b));
    _mm512_storeu_ps(acc, r);
}
