/* randn.c — picks the BF16 normal-deviate fill for the active kernel set (randn.h, cpu.h). */
#include "randn.h"

#include "cpu.h"

void qv_randn_bf16(uint16_t *dst, size_t n, qv_randn_key k, uint64_t first, float mean, float std)
{
    if (qv_isa_active() >= QV_ISA_AVX2)
        qv_randn_bf16_avx2(dst, n, k, first, mean, std);
    else
        qv_randn_bf16_ref(dst, n, k, first, mean, std);
}
