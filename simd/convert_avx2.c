/* convert_avx2.c — AVX2 bulk F32 <-> BF16 / F16 conversions (8 lanes): convert_body.h over
 * vec_avx2.h. Scalar twin: convert_ref.c. Tail strategy: scalar tail (simd/fp.h). */
#include "vec_avx2.h"

#include "convert_body.h"

void qv_f32_to_bf16_avx2(uint16_t *dst, const float *src, size_t n) { cvtb_f32_to_bf16(dst, src, n); }
void qv_bf16_to_f32_avx2(float *dst, const uint16_t *src, size_t n) { cvtb_bf16_to_f32(dst, src, n); }
void qv_f32_to_f16_avx2(uint16_t *dst, const float *src, size_t n) { cvtb_f32_to_f16(dst, src, n); }
void qv_f16_to_f32_avx2(float *dst, const uint16_t *src, size_t n) { cvtb_f16_to_f32(dst, src, n); }
