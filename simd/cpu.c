/* cpu.c — see cpu.h. Follows libjpeg-turbo's jsimd.c: CPUID bits are only trusted when the OS
 * saves the matching register state (XCR0), and an environment variable can pin a lower set. */
#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "qvlm.h"

static qv_cpu_features g_cpu;
static qv_isa g_host, g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static void detect(void)
{
    unsigned a, b, c, d;
    qv_cpu_features *f = &g_cpu;
    memset(f, 0, sizeof *f);
    if (!__get_cpuid(1, &a, &b, &c, &d))
        goto done;
    bool osxsave = c & (1u << 27);
    f->fma = c & (1u << 12);
    f->f16c = c & (1u << 29);
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    f->os_avx = (xcr0 & 0x6) == 0x6;
    f->os_avx512 = f->os_avx && (xcr0 & 0xe0) == 0xe0;
    bool os_amx_state = (xcr0 & (3ull << 17)) == (3ull << 17);
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = b & (1u << 5);
        f->avx512f = b & (1u << 16);
        f->avx512dq = b & (1u << 17);
        f->avx512bw = b & (1u << 30);
        f->avx512vl = b & (1u << 31);
        f->avx512_vnni = c & (1u << 11);
        f->avx512_fp16 = d & (1u << 23);
        f->amx_bf16 = d & (1u << 22);
        f->amx_tile = d & (1u << 24);
        f->amx_int8 = d & (1u << 25);
        __cpuid_count(7, 1, a, b, c, d);
        f->avx512_bf16 = a & (1u << 5);
    }
    /* Linux gates AMX tile data behind a per-process permission request */
    if (f->amx_tile && os_amx_state)
        f->os_amx = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
done:
    g_host = QV_ISA_SCALAR;
    if (f->os_avx && f->avx2 && f->fma && f->f16c)
        g_host = QV_ISA_AVX2;
    if (g_host == QV_ISA_AVX2 && f->os_avx512 && f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl)
        g_host = QV_ISA_AVX512;
    if (g_host == QV_ISA_AVX512 && f->avx512_bf16 && f->os_amx && f->amx_bf16 && f->amx_int8)
        g_host = QV_ISA_AMX;
    g_active = g_host;
    const char *env = getenv("QVLM_ISA");
    if (env && *env) {
        for (int i = 0; i < QV_ISA_COUNT; i++)
            if (!strcmp(env, qv_isa_str((qv_isa)i)) && (qv_isa)i < g_active)
                g_active = (qv_isa)i;
    }
}

const qv_cpu_features *qv_cpu(void)
{
    pthread_once(&g_once, detect);
    return &g_cpu;
}

qv_isa qv_isa_host(void)
{
    pthread_once(&g_once, detect);
    return g_host;
}

qv_isa qv_isa_active(void)
{
    pthread_once(&g_once, detect);
    return g_active;
}

bool qv_isa_supported(qv_isa isa) { return isa <= qv_isa_host(); }

const char *qv_isa_str(qv_isa isa)
{
    static const char *names[] = {"scalar", "avx2", "avx512", "amx"};
    return (unsigned)isa < QV_ISA_COUNT ? names[isa] : "?";
}

const char *qv_isa_name(void) { return qv_isa_str(qv_isa_active()); }
