/* dp_avx512bf16.h — the VDPBF16PS primitives of gemm_dp_body.h on real AVX-512-BF16. Include only
 * from files compiled with the AVX-512-BF16 flags (`*_avx512bf16.c`, `*_amx.c`). dp_emu.h
 * implements the same names in plain C. */
#ifndef QV_SIMD_DP_AVX512BF16_H
#define QV_SIMD_DP_AVX512BF16_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef __m512 qv_dacc;   /* 16 f32 accumulators */
typedef __m512i qv_dpair; /* 16 BF16 pairs */

static inline qv_dacc qv_d_zero(void) { return _mm512_setzero_ps(); }
static inline qv_dacc qv_d_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void qv_d_store(float *p, qv_dacc v) { _mm512_storeu_ps(p, v); }
/* 16 consecutive pairs (one pair row of an n-block) */
static inline qv_dpair qv_d_pairs(const uint16_t *p) { return _mm512_loadu_si512(p); }
/* one pair (x[2j], x[2j+1]) in every lane */
static inline qv_dpair qv_d_bcast(const uint16_t *p)
{
    int32_t d;
    memcpy(&d, p, 4);
    return _mm512_set1_epi32(d);
}
static inline qv_dacc qv_d_dp(qv_dacc acc, qv_dpair a, qv_dpair b)
{
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

#endif /* QV_SIMD_DP_AVX512BF16_H */
