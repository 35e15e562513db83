/* convert_ref.c — scalar reference of the bulk F32 <-> BF16 / F16 conversions (FORMATS.md §7.3,
 * §7.4): simd/fp.h applied element by element. */
#include "kernel_impl.h"

void qv_f32_to_bf16_ref(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = qv_f32_to_bf16(src[i]);
}

void qv_bf16_to_f32_ref(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = qv_bf16_to_f32(src[i]);
}

void qv_f32_to_f16_ref(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = qv_f32_to_f16(src[i]);
}

void qv_f16_to_f32_ref(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = qv_f16_to_f32(src[i]);
}
