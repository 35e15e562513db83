/* vec_avx2.h — the 8-lane AVX2 (+FMA, F16C) primitives the kernel bodies (*_body.h) are written
 * in. Include only from files compiled with the AVX2 flags (`*_avx2.c`). Every primitive states
 * the scalar operation (simd/fp.h, kernel_impl.h) it reproduces bit for bit. */
#ifndef QV_SIMD_VEC_AVX2_H
#define QV_SIMD_VEC_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#define QV_VL 8

typedef __m256 qv_vf;   /* QV_VL floats */
typedef __m256 qv_vnan; /* "a NaN was seen" accumulator */

static inline qv_vf qv_v_set1(float x) { return _mm256_set1_ps(x); }
static inline qv_vf qv_v_add(qv_vf a, qv_vf b) { return _mm256_add_ps(a, b); }
static inline qv_vf qv_v_sub(qv_vf a, qv_vf b) { return _mm256_sub_ps(a, b); }
static inline qv_vf qv_v_mul(qv_vf a, qv_vf b) { return _mm256_mul_ps(a, b); }
static inline qv_vf qv_v_div(qv_vf a, qv_vf b) { return _mm256_div_ps(a, b); }
/* a < b ? a : b, and a > b ? a : b: b when they are equal (±0) or either is NaN (x86 MINPS/MAXPS). */
static inline qv_vf qv_v_min(qv_vf a, qv_vf b) { return _mm256_min_ps(a, b); }
static inline qv_vf qv_v_max(qv_vf a, qv_vf b) { return _mm256_max_ps(a, b); }
static inline qv_vf qv_v_abs(qv_vf a) { return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }
/* nearbyintf under round-to-nearest-even, whatever MXCSR says; −0 and NaN kept */
static inline qv_vf qv_v_rint(qv_vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

/* qv_round_bf16 for non-NaN lanes (±Inf and overflow to Inf included): add 0x7fff + lsb, clear
 * the low half. */
static inline qv_vf qv_v_round_bf16(qv_vf a)
{
    __m256i u = _mm256_castps_si256(a);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    u = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    return _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32((int)0xffff0000u)));
}

/* qv_round_bf16 for every lane: NaN lanes keep their upper half with the quiet bit set. */
static inline qv_vf qv_v_round_bf16_nan(qv_vf a)
{
    __m256i q = _mm256_and_si256(_mm256_or_si256(_mm256_castps_si256(a), _mm256_set1_epi32(0x00400000)),
                                 _mm256_set1_epi32((int)0xffff0000u));
    return _mm256_blendv_ps(qv_v_round_bf16(a), _mm256_castsi256_ps(q), _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

/* qv_round_f16 (every lane): VCVTPS2PH with round-to-nearest-even matches qv_f32_to_f16 including
 * NaN (quiet bit set, upper payload kept), and its output holds no signalling NaN, so the way back
 * is exact. */
static inline qv_vf qv_v_round_f16(qv_vf a) { return _mm256_cvtph_ps(_mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT)); }

static inline qv_vf qv_v_load_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline qv_vf qv_v_load_bf16(const uint16_t *p)
{
    __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
}
/* qv_f16_to_f32 except that a signalling NaN comes back quiet (VCVTPH2PS); for lanes whose NaN
 * payload does not matter (fake-quant groups with a NaN go to the scalar code). */
static inline qv_vf qv_v_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
/* qv_f16_to_f32 exactly: NaN lanes are rebuilt as sign | 0x7f800000 | mantissa << 13. */
static inline qv_vf qv_v_load_f16_exact(const uint16_t *p)
{
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    __m256 f = _mm256_cvtph_ps(h);
    __m256i x = _mm256_cvtepu16_epi32(h);
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x8000)), 16);
    __m256i man = _mm256_slli_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x3ff)), 13);
    __m256i nan = _mm256_or_si256(_mm256_or_si256(sign, man), _mm256_set1_epi32(0x7f800000));
    return _mm256_blendv_ps(f, _mm256_castsi256_ps(nan), _mm256_cmp_ps(f, f, _CMP_UNORD_Q));
}

static inline void qv_v_store_f32(float *p, qv_vf v) { _mm256_storeu_ps(p, v); }
/* Stores the upper halves: exact for values already rounded by qv_v_round_bf16(_nan). */
static inline void qv_v_store_bf16(uint16_t *p, qv_vf v)
{
    __m256i u = _mm256_srli_epi32(_mm256_castps_si256(v), 16);
    _mm_storeu_si128((__m128i *)p, _mm_packus_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)));
}
/* qv_f32_to_f16 (round to nearest even, NaN as fp.h: checked over 2^26 patterns). */
static inline void qv_v_store_f16(uint16_t *p, qv_vf v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

/* NaN detection: CMPUNORD(acc, v) stays all-ones (itself a NaN) once a NaN has been seen. */
static inline qv_vnan qv_v_nan_none(void) { return _mm256_setzero_ps(); }
static inline qv_vnan qv_v_nan_acc(qv_vnan acc, qv_vf v) { return _mm256_cmp_ps(acc, v, _CMP_UNORD_Q); }
static inline int qv_v_nan_any(qv_vnan acc) { return _mm256_movemask_ps(acc) != 0; }

/* Exact horizontal min / max of non-NaN lanes (the sign of a zero result is not specified). */
static inline float qv_v_hmin(qv_vf v)
{
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
}
static inline float qv_v_hmax(qv_vf v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

/* The 16 double lanes of the canonical loss order (simd.h): l[k] holds lanes 4k..4k+3. */
typedef struct qv_vacc16 {
    __m256d l[4];
} qv_vacc16;

static inline void qv_vacc16_zero(qv_vacc16 *a)
{
    for (int k = 0; k < 4; k++)
        a->l[k] = _mm256_setzero_pd();
}

/* Adds |d| to A and d² to Q; d holds lanes 8·part .. 8·part+7 of the current block of 16. */
static inline void qv_vacc16_add(qv_vacc16 *A, qv_vacc16 *Q, qv_vf d, int part)
{
    __m256 ad = qv_v_abs(d);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(ad)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(ad, 1));
    A->l[2 * part] = _mm256_add_pd(A->l[2 * part], lo);
    A->l[2 * part + 1] = _mm256_add_pd(A->l[2 * part + 1], hi);
    Q->l[2 * part] = _mm256_add_pd(Q->l[2 * part], _mm256_mul_pd(lo, lo));
    Q->l[2 * part + 1] = _mm256_add_pd(Q->l[2 * part + 1], _mm256_mul_pd(hi, hi));
}

static inline void qv_vacc16_spill(const qv_vacc16 *a, double *l16)
{
    for (int k = 0; k < 4; k++)
        _mm256_storeu_pd(l16 + 4 * k, a->l[k]);
}

#endif /* QV_SIMD_VEC_AVX2_H */
