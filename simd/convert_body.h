/* convert_body.h — the SIMD bodies of the bulk F32 <-> BF16 / F16 conversions, in the
 * primitives of a vec_<isa>.h (included first); instantiated by convert_avx2.c,
 * convert_avx512.c and emu512_avx2.c. Scalar twin: convert_ref.c (simd/fp.h, FORMATS.md §7.3,
 * §7.4). BF16 rounding is integer arithmetic with NaN lanes patched (no VCVTNEPS2BF16, which
 * flushes denormals); F16 uses F16C with signalling NaNs patched on the way in. Tail strategy:
 * the last n % QV_VL elements go through the fp.h functions. */
#ifndef QV_SIMD_CONVERT_BODY_H
#define QV_SIMD_CONVERT_BODY_H

#include "kernel_impl.h"

static inline void cvtb_f32_to_bf16(uint16_t *dst, const float *src, size_t n)
{
    size_t nv = n - n % QV_VL, i;
    for (i = 0; i < nv; i += QV_VL)
        qv_v_store_bf16(dst + i, qv_v_round_bf16_nan(qv_v_load_f32(src + i)));
    for (; i < n; i++)
        dst[i] = qv_f32_to_bf16(src[i]);
}

static inline void cvtb_bf16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    size_t nv = n - n % QV_VL, i;
    for (i = 0; i < nv; i += QV_VL)
        qv_v_store_f32(dst + i, qv_v_load_bf16(src + i));
    for (; i < n; i++)
        dst[i] = qv_bf16_to_f32(src[i]);
}

static inline void cvtb_f32_to_f16(uint16_t *dst, const float *src, size_t n)
{
    size_t nv = n - n % QV_VL, i;
    for (i = 0; i < nv; i += QV_VL)
        qv_v_store_f16(dst + i, qv_v_load_f32(src + i));
    for (; i < n; i++)
        dst[i] = qv_f32_to_f16(src[i]);
}

static inline void cvtb_f16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    size_t nv = n - n % QV_VL, i;
    for (i = 0; i < nv; i += QV_VL)
        qv_v_store_f32(dst + i, qv_v_load_f16_exact(src + i));
    for (; i < n; i++)
        dst[i] = qv_f16_to_f32(src[i]);
}

#endif /* QV_SIMD_CONVERT_BODY_H */
