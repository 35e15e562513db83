/* vec_avx512.h — the 16-lane AVX-512 (F/BW/DQ/VL, F16C) primitives the kernel bodies (*_body.h)
 * are written in; the same contract as vec_avx2.h, lane for lane. Include only from files
 * compiled with the AVX-512 flags (`*_avx512.c`).
 *
 * No VCVTNEPS2BF16: it treats fp32 denormal inputs as zero (FORMATS.md §7.3), so BF16 rounding is
 * done with integer arithmetic as in simd/fp.h. vec_emu512.h implements this contract with pairs
 * of AVX2 registers so that the 16-lane bodies also run in the tests of AVX2-only hosts. */
#ifndef QV_SIMD_VEC_AVX512_H
#define QV_SIMD_VEC_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#define QV_VL 16

typedef __m512 qv_vf;      /* QV_VL floats */
typedef __mmask16 qv_vnan; /* lanes where a NaN was seen */

static inline qv_vf qv_v_set1(float x) { return _mm512_set1_ps(x); }
static inline qv_vf qv_v_add(qv_vf a, qv_vf b) { return _mm512_add_ps(a, b); }
static inline qv_vf qv_v_sub(qv_vf a, qv_vf b) { return _mm512_sub_ps(a, b); }
static inline qv_vf qv_v_mul(qv_vf a, qv_vf b) { return _mm512_mul_ps(a, b); }
static inline qv_vf qv_v_div(qv_vf a, qv_vf b) { return _mm512_div_ps(a, b); }
/* VMINPS/VMAXPS zmm without {sae}: b when equal (±0) or either is NaN, as the AVX2 forms. */
static inline qv_vf qv_v_min(qv_vf a, qv_vf b) { return _mm512_min_ps(a, b); }
static inline qv_vf qv_v_max(qv_vf a, qv_vf b) { return _mm512_max_ps(a, b); }
static inline qv_vf qv_v_abs(qv_vf a)
{
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)));
}
/* VRNDSCALEPS with M = 0 and RC = nearest even (imm 0x08: suppress precision exceptions) */
static inline qv_vf qv_v_rint(qv_vf a)
{
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static inline qv_vf qv_v_round_bf16(qv_vf a)
{
    __m512i u = _mm512_castps_si512(a);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xffff0000u)));
}

static inline qv_vf qv_v_round_bf16_nan(qv_vf a)
{
    __m512i q = _mm512_and_si512(_mm512_or_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x00400000)),
                                 _mm512_set1_epi32((int)0xffff0000u));
    /* mask_blend(k, x, y): y where k is set */
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), qv_v_round_bf16(a), _mm512_castsi512_ps(q));
}

static inline qv_vf qv_v_round_f16(qv_vf a) { return _mm512_cvtph_ps(_mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT)); }

static inline qv_vf qv_v_load_f32(const float *p) { return _mm512_loadu_ps(p); }
static inline qv_vf qv_v_load_bf16(const uint16_t *p)
{
    __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
}
static inline qv_vf qv_v_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline qv_vf qv_v_load_f16_exact(const uint16_t *p)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    __m512 f = _mm512_cvtph_ps(h);
    __m512i x = _mm512_cvtepu16_epi32(h);
    __m512i sign = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x8000)), 16);
    __m512i man = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x3ff)), 13);
    __m512i nan = _mm512_or_si512(_mm512_or_si512(sign, man), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q), f, _mm512_castsi512_ps(nan));
}

static inline void qv_v_store_f32(float *p, qv_vf v) { _mm512_storeu_ps(p, v); }
/* VPMOVDW truncates each dword to its low word: the upper half after the shift. */
static inline void qv_v_store_bf16(uint16_t *p, qv_vf v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(v), 16)));
}
static inline void qv_v_store_f16(uint16_t *p, qv_vf v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

static inline qv_vnan qv_v_nan_none(void) { return 0; }
static inline qv_vnan qv_v_nan_acc(qv_vnan acc, qv_vf v)
{
    return (qv_vnan)(acc | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
}
static inline int qv_v_nan_any(qv_vnan acc) { return acc != 0; }

static inline float qv_v_hmin(qv_vf v)
{
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); /* lanes 8..15 */
    __m256 m = _mm256_min_ps(_mm512_castps512_ps256(v), hi);
    __m128 n = _mm_min_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    n = _mm_min_ps(n, _mm_movehl_ps(n, n));
    return _mm_cvtss_f32(_mm_min_ss(n, _mm_movehdup_ps(n)));
}
static inline float qv_v_hmax(qv_vf v)
{
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); /* lanes 8..15 */
    __m256 m = _mm256_max_ps(_mm512_castps512_ps256(v), hi);
    __m128 n = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    n = _mm_max_ps(n, _mm_movehl_ps(n, n));
    return _mm_cvtss_f32(_mm_max_ss(n, _mm_movehdup_ps(n)));
}

/* The 16 double lanes of the canonical loss order: l[k] holds lanes 8k..8k+7. */
typedef struct qv_vacc16 {
    __m512d l[2];
} qv_vacc16;

static inline void qv_vacc16_zero(qv_vacc16 *a)
{
    a->l[0] = _mm512_setzero_pd();
    a->l[1] = _mm512_setzero_pd();
}

/* d holds all 16 lanes of the block (part is always 0 at this width). */
static inline void qv_vacc16_add(qv_vacc16 *A, qv_vacc16 *Q, qv_vf d, int part)
{
    (void)part;
    __m512 ad = qv_v_abs(d);
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(ad));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ad), 1)));
    A->l[0] = _mm512_add_pd(A->l[0], lo);
    A->l[1] = _mm512_add_pd(A->l[1], hi);
    Q->l[0] = _mm512_add_pd(Q->l[0], _mm512_mul_pd(lo, lo));
    Q->l[1] = _mm512_add_pd(Q->l[1], _mm512_mul_pd(hi, hi));
}

static inline void qv_vacc16_spill(const qv_vacc16 *a, double *l16)
{
    _mm512_storeu_pd(l16, a->l[0]);
    _mm512_storeu_pd(l16 + 8, a->l[1]);
}

#endif /* QV_SIMD_VEC_AVX512_H */
