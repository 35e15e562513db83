/* rng.c — numpy default_rng port: SeedSequence, PCG64 (XSL-RR 128/64), random_interval,
 * shuffle, permutation (rng.h; spec/ALGORITHMS.md §12.3). All arithmetic is unsigned and wraps,
 * as in numpy's C code (numpy/random/bit_generator.pyx, src/pcg64/pcg64.h,
 * src/distributions/distributions.c). */
#include "rng.h"

#include <string.h>

__extension__ typedef unsigned __int128 u128;

#define SS_INIT_A 0x43b0d7e5u
#define SS_MULT_A 0x931e8875u
#define SS_INIT_B 0x8b51f9ddu
#define SS_MULT_B 0x58f38dedu
#define SS_MIX_L 0xca01f9ddu
#define SS_MIX_R 0x4973f715u
#define SS_POOL 4

static uint32_t hashmix(uint32_t v, uint32_t *hc)
{
    v ^= *hc;
    *hc *= SS_MULT_A;
    v *= *hc;
    v ^= v >> 16;
    return v;
}

static uint32_t mix(uint32_t x, uint32_t y)
{
    uint32_t r = SS_MIX_L * x - SS_MIX_R * y;
    r ^= r >> 16;
    return r;
}

void qv_rng_seed_words(uint64_t seed, uint32_t pool_out[4], uint32_t words[8])
{
    /* _coerce_to_uint32_array(int): little-endian 32-bit words, 0 → [0]. */
    uint32_t entropy[2];
    size_t n_ent = 0;
    if (seed == 0) {
        entropy[n_ent++] = 0;
    } else {
        for (uint64_t s = seed; s; s >>= 32)
            entropy[n_ent++] = (uint32_t)s;
    }

    uint32_t pool[SS_POOL];
    uint32_t hc = SS_INIT_A;
    for (size_t i = 0; i < SS_POOL; i++)
        pool[i] = hashmix(i < n_ent ? entropy[i] : 0, &hc);
    for (size_t src = 0; src < SS_POOL; src++)
        for (size_t dst = 0; dst < SS_POOL; dst++)
            if (src != dst)
                pool[dst] = mix(pool[dst], hashmix(pool[src], &hc));
    for (size_t src = SS_POOL; src < n_ent; src++) /* never runs for 64-bit seeds; kept for shape */
        for (size_t dst = 0; dst < SS_POOL; dst++)
            pool[dst] = mix(pool[dst], hashmix(entropy[src], &hc));

    if (pool_out)
        memcpy(pool_out, pool, sizeof pool);
    if (words) {
        uint32_t hb = SS_INIT_B;
        for (size_t i = 0; i < 8; i++) {
            uint32_t v = pool[i % SS_POOL];
            v ^= hb;
            hb *= SS_MULT_B;
            v *= hb;
            v ^= v >> 16;
            words[i] = v;
        }
    }
}

static const u128 PCG_MULT = ((u128)0x2360ED051FC65DA4ull << 64) | 0x4385DF649FCCF645ull;

static u128 get_state(const qv_rng *r) { return ((u128)r->state_hi << 64) | r->state_lo; }
static u128 get_inc(const qv_rng *r) { return ((u128)r->inc_hi << 64) | r->inc_lo; }
static void put_state(qv_rng *r, u128 s)
{
    r->state_hi = (uint64_t)(s >> 64);
    r->state_lo = (uint64_t)s;
}

void qv_rng_seed(qv_rng *r, uint64_t seed)
{
    uint32_t w[8];
    qv_rng_seed_words(seed, NULL, w);
    uint64_t u[4];
    for (size_t k = 0; k < 4; k++)
        u[k] = (uint64_t)w[2 * k] | ((uint64_t)w[2 * k + 1] << 32);
    u128 initstate = ((u128)u[0] << 64) | u[1];
    u128 initseq = ((u128)u[2] << 64) | u[3];
    u128 inc = (initseq << 1) | 1u;
    /* pcg_setseq_128_srandom_r */
    u128 state = 0;
    state = state * PCG_MULT + inc;
    state += initstate;
    state = state * PCG_MULT + inc;
    put_state(r, state);
    r->inc_hi = (uint64_t)(inc >> 64);
    r->inc_lo = (uint64_t)inc;
    r->has_half = false;
    r->half = 0;
}

uint64_t qv_rng_next64(qv_rng *r)
{
    u128 state = get_state(r) * PCG_MULT + get_inc(r);
    put_state(r, state);
    uint64_t x = (uint64_t)(state >> 64) ^ (uint64_t)state;
    unsigned rot = (unsigned)(state >> 122);
    return (x >> rot) | (x << ((64 - rot) & 63));
}

uint32_t qv_rng_next32(qv_rng *r)
{
    if (r->has_half) {
        r->has_half = false;
        return r->half;
    }
    uint64_t v = qv_rng_next64(r);
    r->has_half = true;
    r->half = (uint32_t)(v >> 32);
    return (uint32_t)v;
}

uint64_t qv_rng_interval(qv_rng *r, uint64_t max)
{
    if (max == 0)
        return 0;
    uint64_t mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    uint64_t v;
    if (max <= 0xffffffffull) {
        while ((v = (qv_rng_next32(r) & mask)) > max) {
        }
    } else {
        while ((v = (qv_rng_next64(r) & mask)) > max) {
        }
    }
    return v;
}

static void swap_bytes(unsigned char *a, unsigned char *b, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        unsigned char t = a[k];
        a[k] = b[k];
        b[k] = t;
    }
}

void qv_rng_shuffle(qv_rng *r, void *base, size_t n, size_t elem_size)
{
    unsigned char *a = base;
    for (size_t i = n > 0 ? n - 1 : 0; i >= 1; i--) {
        size_t j = (size_t)qv_rng_interval(r, i);
        if (j != i)
            swap_bytes(a + i * elem_size, a + j * elem_size, elem_size);
    }
}

void qv_rng_permutation(qv_rng *r, size_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = i;
    qv_rng_shuffle(r, out, n, sizeof *out);
}
