/* fp.h — scalar conversions between F32 and the 16- and 8-bit float formats, bit-exact with
 * PyTorch (FORMATS.md §7): round to nearest even, denormals kept, NaN preserved as NaN.
 * Header-only (static inline) so that every kernel file can use it without extra ISA flags. */
#ifndef QV_SIMD_FP_H
#define QV_SIMD_FP_H

#include <stdint.h>
#include <string.h>

static inline uint32_t qv_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float qv_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- BF16 (FORMATS.md §7.3) ---------------------------------------------------------------- */

static inline float qv_bf16_to_f32(uint16_t h) { return qv_bits_f32((uint32_t)h << 16); }

static inline uint16_t qv_f32_to_bf16(float f)
{
    uint32_t u = qv_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet, sign kept */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* f32 -> bf16 -> f32: the value a bf16 store would keep. */
static inline float qv_round_bf16(float f) { return qv_bf16_to_f32(qv_f32_to_bf16(f)); }

/* ---- F16 (FORMATS.md §7.4), IEEE binary16, RNE, gradual underflow, overflow to Inf ------------ */

static inline float qv_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) /* Inf / NaN */
        return qv_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return qv_bits_f32(sign);
        /* subnormal: value = man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return qv_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t qv_f32_to_f16(float f)
{
    uint32_t u = qv_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* >= 65520 rounds to Inf (65504 + half ulp) */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {
        /* result subnormal or zero: value / 2^-24, rounded to nearest even integer. Adding 0.5
         * (2^-1) in f32 arithmetic rounds a*2^24 (< 2^10) at the integer boundary with RNE. */
        float v = qv_bits_f32(a) * 16777216.0f; /* exact: power-of-two scaling of a normal value */
        float r = v + 8388608.0f;              /* 2^23: forces rounding to an integer, RNE */
        uint32_t m = qv_f32_bits(r) - 0x4b000000u;
        return (uint16_t)(sign | m);
    }
    /* normal: rebias exponent, round mantissa from 23 to 10 bits, RNE; carry may bump the
     * exponent (and reach Inf only above the threshold handled earlier). */
    uint32_t lsb = (a >> 13) & 1u;
    a += 0x0fffu + lsb;
    return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
}

static inline float qv_round_f16(float f) { return qv_f16_to_f32(qv_f32_to_f16(f)); }

/* ---- FP8 E4M3FN (FORMATS.md §7.1), torch's c10 routine ------------------------------------ */

/* No clamp: |x| >= 480 (and values rounding above 448) become the NaN code 0x7f, as in torch.
 * Callers that quantize clamp to [-448, 448] first (qv_f32_to_e4m3_sat). */
static inline uint8_t qv_f32_to_e4m3(float f)
{
    const uint32_t fp8_max = UINT32_C(1087) << 20;     /* 480.0f */
    const uint32_t denorm_mask = UINT32_C(141) << 23;  /* 2^14 */
    uint32_t bits = qv_f32_bits(f);
    const uint32_t sign = bits & 0x80000000u;
    uint8_t result;
    bits ^= sign;
    if (bits >= fp8_max) {
        result = 0x7f;
    } else if (bits < (UINT32_C(121) << 23)) { /* below 2^-6: subnormal in E4M3 */
        bits = qv_f32_bits(qv_bits_f32(bits) + qv_bits_f32(denorm_mask));
        result = (uint8_t)(bits - denorm_mask);
    } else {
        uint32_t mant_odd = (bits >> 20) & 1u;
        bits += ((uint32_t)(7 - 127) << 23) + 0x7ffffu;
        bits += mant_odd;
        result = (uint8_t)(bits >> 20);
    }
    return (uint8_t)(result | (sign >> 24));
}

static inline uint8_t qv_f32_to_e4m3_sat(float f)
{
    if (f > 448.0f)
        f = 448.0f;
    else if (f < -448.0f)
        f = -448.0f;
    return qv_f32_to_e4m3(f);
}

static inline float qv_e4m3_to_f32(uint8_t b)
{
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t exp = (b >> 3) & 0xfu, man = b & 0x7u;
    float v;
    if (exp == 0xf && man == 0x7)
        return qv_bits_f32(sign | 0x7fc00000u);
    if (exp == 0)
        v = (float)man * 0.001953125f; /* 2^-9 */
    else
        v = qv_bits_f32(((exp + 120u) << 23) | (man << 20));
    return sign ? -v : v;
}

#endif /* QV_SIMD_FP_H */
