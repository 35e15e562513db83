/* gemm_dispatch.c — the packed-GEMM kernel sets of gemm.h and the choice of the active one (once,
 * from qv_isa_active(): CPUID + XGETBV + the AMX permission request of cpu.c, lowered by
 * QVLM_ISA). AMX first, then AVX-512-BF16; without either there is no set and callers use
 * oneDNN. The emulated sets run anywhere AVX2 runs, for the tests. */
#include <pthread.h>

#include "gemm_impl.h"

static const qv_gemm_kernels g_sets[QV_GEMM_ISA_COUNT] = {
    [QV_GEMM_AMX] = {QV_GEMM_AMX, "amx", 32, qv_gemm_fq_panel_amx, qv_gemm_panel_amx},
    [QV_GEMM_AVX512BF16] = {QV_GEMM_AVX512BF16, "avx512bf16", 12, qv_gemm_fq_panel_avx512bf16,
                            qv_gemm_panel_avx512bf16},
    [QV_GEMM_EMU_AMX] = {QV_GEMM_EMU_AMX, "emu-amx", 32, qv_gemm_fq_panel_emu_amx, qv_gemm_panel_emu_amx},
    [QV_GEMM_EMU_AVX512BF16] = {QV_GEMM_EMU_AVX512BF16, "emu-avx512bf16", 12, qv_gemm_fq_panel_emu_avx512bf16,
                                qv_gemm_panel_emu_avx512bf16},
};

static bool host_has(qv_gemm_isa isa)
{
    switch (isa) {
    case QV_GEMM_AMX: return qv_isa_supported(QV_ISA_AMX);
    case QV_GEMM_AVX512BF16: return qv_isa_supported(QV_ISA_AVX512) && qv_cpu()->avx512_bf16;
    case QV_GEMM_EMU_AMX:
    case QV_GEMM_EMU_AVX512BF16: return qv_isa_supported(QV_ISA_AVX2);
    default: return false;
    }
}

static const qv_gemm_kernels *g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    const qv_isa isa = qv_isa_active();
    if (isa == QV_ISA_AMX)
        g_active = &g_sets[QV_GEMM_AMX];
    else if (isa == QV_ISA_AVX512 && qv_cpu()->avx512_bf16)
        g_active = &g_sets[QV_GEMM_AVX512BF16];
    else
        g_active = NULL;
}

const qv_gemm_kernels *qv_gemm_kernels_active(void)
{
    pthread_once(&g_once, choose);
    return g_active;
}

const qv_gemm_kernels *qv_gemm_kernels_get(qv_gemm_isa isa)
{
    return (unsigned)isa < QV_GEMM_ISA_COUNT && host_has(isa) ? &g_sets[isa] : NULL;
}

int64_t qv_gemm_depth(qv_gemm_isa isa, int64_t K)
{
    return isa == QV_GEMM_AMX || isa == QV_GEMM_EMU_AMX ? 16 + 1 + K / QV_GEMM_KT : K;
}
