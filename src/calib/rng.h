/* rng.h — numpy's `default_rng(seed)` (SeedSequence → PCG64) and the two draws the reference
 * makes with it: `shuffle` and `permutation` (spec/ALGORITHMS.md §12.3). Bit-exact with numpy
 * ≥ 1.17 for every non-negative seed below 2^64: the seed is split into little-endian 32-bit
 * entropy words (0 → [0]; ≥ 2^32 → [lo, hi]) exactly as numpy's SeedSequence does.
 *
 * Uses: the caption shuffle (§7.2, `rng.shuffle(items)`), and the pile-val visiting order
 * (§7.5–7.6, `datasets.Dataset.shuffle(seed)` = `default_rng(seed).permutation(len)`).
 * Not thread-safe per generator; a generator is a plain value (copy it to fork a stream). */
#ifndef QV_CALIB_RNG_H
#define QV_CALIB_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qv_rng {
    uint64_t state_hi, state_lo; /* 128-bit LCG state */
    uint64_t inc_hi, inc_lo;     /* 128-bit odd increment */
    bool has_half;               /* next32 keeps the upper half of a next64 draw */
    uint32_t half;
} qv_rng;

/* SeedSequence(seed): the 4-word entropy pool and the 8 words generate_state(8, uint32) gives
 * (either output may be NULL). Exposed for tests and for anyone needing the raw words. */
void qv_rng_seed_words(uint64_t seed, uint32_t pool[4], uint32_t words[8]);

/* numpy.random.default_rng(seed). */
void qv_rng_seed(qv_rng *r, uint64_t seed);

/* bit_generator.random_raw(): one 64-bit PCG64 (XSL-RR) output. */
uint64_t qv_rng_next64(qv_rng *r);
/* next_uint32: the lower half of a fresh next64, then its buffered upper half. */
uint32_t qv_rng_next32(qv_rng *r);
/* random_interval(max): uniform in [0, max] by masked rejection (next32 when max < 2^32). */
uint64_t qv_rng_interval(qv_rng *r, uint64_t max);

/* Generator.shuffle of a 1-D array or list of n elements of elem_size bytes, in place
 * (Fisher–Yates from the end: for i = n−1 .. 1, swap a[i] with a[interval(i)]). */
void qv_rng_shuffle(qv_rng *r, void *base, size_t n, size_t elem_size);
/* Generator.permutation(n): out[0..n) = shuffle of 0, 1, ..., n−1. */
void qv_rng_permutation(qv_rng *r, size_t *out, size_t n);

#endif
