/* randn_ref.c — scalar reference of the BF16 normal-deviate fill (randn.h). */
#include "randn.h"

#include "fp.h"

void qv_randn_bf16_ref(uint16_t *dst, size_t n, qv_randn_key k, uint64_t first, float mean, float std)
{
    for (size_t j = 0; j < n; j++) {
        float z = qv_randn_at(k, first + j);
        float v = z * std;
        v = v + mean;
        dst[j] = qv_f32_to_bf16(v);
    }
}
