/* dp_emu.h — the VDPBF16PS primitives of gemm_dp_body.h emulated in plain C (hosts without
 * AVX-512-BF16 run the kernel source on it in the tests). Semantics from the Intel SDM: per lane
 * i, srcdest += src1.odd·src2.odd, then srcdest += src1.even·src2.even, each an FP32 FMA with
 * denormal inputs read as zero, a denormal result flushed, round to nearest even, MXCSR ignored.
 * NaN payloads are fmaf's, not the hardware's. */
#ifndef QV_SIMD_DP_EMU_H
#define QV_SIMD_DP_EMU_H

#include <stdint.h>
#include <string.h>

#include "gemm_impl.h"

typedef struct qv_dacc {
    float f[16];
} qv_dacc;
typedef struct qv_dpair {
    uint32_t u[16];
} qv_dpair;

static inline qv_dacc qv_d_zero(void) { return (qv_dacc){{0}}; }
static inline qv_dacc qv_d_load(const float *p)
{
    qv_dacc v;
    memcpy(v.f, p, sizeof v.f);
    return v;
}
static inline void qv_d_store(float *p, qv_dacc v) { memcpy(p, v.f, sizeof v.f); }
static inline qv_dpair qv_d_pairs(const uint16_t *p)
{
    qv_dpair v;
    memcpy(v.u, p, sizeof v.u);
    return v;
}
static inline qv_dpair qv_d_bcast(const uint16_t *p)
{
    qv_dpair v;
    uint32_t d;
    memcpy(&d, p, 4);
    for (int i = 0; i < 16; i++)
        v.u[i] = d;
    return v;
}
static inline qv_dacc qv_d_dp(qv_dacc acc, qv_dpair a, qv_dpair b)
{
    for (int i = 0; i < 16; i++) {
        float t = qv_fma_daz_ftz(qv_pair_hi(a.u[i]), qv_pair_hi(b.u[i]), acc.f[i]);
        acc.f[i] = qv_fma_daz_ftz(qv_pair_lo(a.u[i]), qv_pair_lo(b.u[i]), t);
    }
    return acc;
}

#endif /* QV_SIMD_DP_EMU_H */
