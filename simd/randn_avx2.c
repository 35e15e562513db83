/* randn_avx2.c — AVX2 BF16 normal-deviate fill; twin of qv_randn_bf16_ref (randn_ref.c), equal
 * bit for bit: the hash is integer arithmetic, then the same two f32 roundings (mul, add; no FMA)
 * and the same round-to-nearest-even to BF16. Sixteen elements per step as two independent
 * eight-lane chains (the hash is a long dependency chain; two in flight hide its latency). The
 * tail, and any step whose indices would cross a 2^32 boundary (where hi32(i) changes), go to
 * the scalar twin. */
#include <immintrin.h>

#include "randn.h"

static inline __m256i lowbias32_x8(__m256i x)
{
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x7feb352du));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x846ca68bu));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    return x;
}

/* Eight BF16 values for the indices lo..lo+7 (all with the same hi32). */
static inline __m128i randn_x8(__m256i idx, __m256i k0, __m256i hi_k1, __m256 vstd, __m256 vmean)
{
    const __m256i lo16 = _mm256_set1_epi32(0xffff), bias = _mm256_set1_epi32(131070);
    const __m256i rnd = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    __m256i r0 = lowbias32_x8(_mm256_xor_si256(idx, k0));
    __m256i r1 = lowbias32_x8(_mm256_xor_si256(r0, hi_k1));
    __m256i s = _mm256_add_epi32(_mm256_and_si256(r0, lo16), _mm256_srli_epi32(r0, 16));
    s = _mm256_add_epi32(s, _mm256_and_si256(r1, lo16));
    s = _mm256_add_epi32(s, _mm256_srli_epi32(r1, 16));
    s = _mm256_sub_epi32(s, bias);
    __m256 z = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(QV_RANDN_SCALE)); /* exact cvt: |s| < 2^18 */
    __m256 v = _mm256_add_ps(_mm256_mul_ps(z, vstd), vmean);
    __m256i u = _mm256_castps_si256(v);
    u = _mm256_add_epi32(u, _mm256_add_epi32(rnd, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
    u = _mm256_srli_epi32(u, 16);
    return _mm_packus_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
}

void qv_randn_bf16_avx2(uint16_t *dst, size_t n, qv_randn_key k, uint64_t first, float mean, float std)
{
    const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), eight = _mm256_set1_epi32(8);
    const __m256i k0 = _mm256_set1_epi32((int)k.k0);
    const __m256 vstd = _mm256_set1_ps(std), vmean = _mm256_set1_ps(mean);
    size_t j = 0;
    while (j + 16 <= n) {
        uint64_t i = first + j;
        uint32_t lo = (uint32_t)i;
        if (lo > 0xfffffff0u) { /* the 16 indices would straddle a change of hi32(i) */
            qv_randn_bf16_ref(dst + j, 16, k, i, mean, std);
            j += 16;
            continue;
        }
        __m256i hi_k1 = _mm256_set1_epi32((int)((uint32_t)(i >> 32) ^ k.k1));
        __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)lo), step);
        __m128i a = randn_x8(idx, k0, hi_k1, vstd, vmean);
        __m128i b = randn_x8(_mm256_add_epi32(idx, eight), k0, hi_k1, vstd, vmean);
        _mm_storeu_si128((__m128i *)(dst + j), a);
        _mm_storeu_si128((__m128i *)(dst + j + 8), b);
        j += 16;
    }
    if (j < n)
        qv_randn_bf16_ref(dst + j, n - j, k, first + j, mean, std);
}
