/* kernels_util.h — what the kernel tests share: the list of kernel tables this host can run
 * (every supported ISA plus the AVX-512 bodies over the AVX2 emulation), a seeded generator of
 * awkward values, and T buffers. */
#ifndef QV_KERNELS_UTIL_H
#define QV_KERNELS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "simd.h"

#define QT_MAX_TABLES 8

typedef struct qt_table {
    const qv_kernel_table *k;
    const char *name; /* "scalar", "avx2", "avx512", "amx", "emu512" */
} qt_table;

/* Every table this host can run, scalar first; n returned. Logs the list once per process, with
 * the ISAs that were NOT exercised, so a test log says which code ran. */
int qt_tables(qt_table *out);

/* xorshift64* with a fixed seed per test. */
typedef struct qt_rng {
    uint64_t s;
} qt_rng;
static inline uint64_t qt_next(qt_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}
float qt_uniform(qt_rng *r);  /* [0, 1) */
float qt_normal(qt_rng *r);   /* N(0, 1), Box-Muller */

/* n values of dtype dt (F32, BF16, F16) in a malloc'd buffer, from fp32 values rounded to T. */
void *qt_t_from_f32(const float *v, size_t n, qv_dtype dt);
/* Element i of a T buffer as fp32. */
float qt_t_get(const void *p, qv_dtype dt, size_t i);
size_t qt_t_size(qv_dtype dt);
const char *qt_dt_name(qv_dtype dt);

#endif
