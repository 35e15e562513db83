/* cpu.h — x86-64 feature detection from CPUID *and* OS support (XGETBV, and the Linux AMX
 * permission request), the QVLM_ISA override, and the name of the kernel set in use.
 * Depends on nothing in src/. */
#ifndef QV_SIMD_CPU_H
#define QV_SIMD_CPU_H

#include <stdbool.h>

typedef enum qv_isa {
    QV_ISA_SCALAR = 0,
    QV_ISA_AVX2,      /* AVX2 + FMA + F16C */
    QV_ISA_AVX512,    /* AVX-512 F/BW/DQ/VL (+ BF16 when avx512_bf16) */
    QV_ISA_AMX,       /* AVX-512 + AMX-TILE/BF16/INT8, OS permission granted */
    QV_ISA_COUNT
} qv_isa;

typedef struct qv_cpu_features {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512dq, avx512vl, avx512_bf16, avx512_fp16, avx512_vnni;
    bool amx_tile, amx_bf16, amx_int8;
    bool os_avx, os_avx512, os_amx; /* XCR0 state enabled (and AMX permission granted) */
} qv_cpu_features;

/* Detected once (thread-safe). */
const qv_cpu_features *qv_cpu(void);
/* Best ISA this host supports, ignoring QVLM_ISA. */
qv_isa qv_isa_host(void);
/* ISA in use: the host's best, lowered by QVLM_ISA=scalar|avx2|avx512|amx (a request above
 * what the host supports falls back to the host's best). */
qv_isa qv_isa_active(void);
bool qv_isa_supported(qv_isa isa);
const char *qv_isa_str(qv_isa isa);

#endif
