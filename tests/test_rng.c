/* test_rng.c — numpy default_rng port (src/calib/rng.h) against the vectors of
 * spec/ALGORITHMS.md §12.3 (seed 42) and further vectors computed with numpy 1.24.2
 * (Debian python3-numpy) for seeds 0, 2^32+5, 2^64−1 and 7. All comparisons are exact. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "calib/rng.h"

static void expect_perm(uint64_t seed, size_t n, const size_t *want, size_t n_want, size_t at)
{
    size_t *p = malloc((n ? n : 1) * sizeof *p);
    cr_assert_not_null(p);
    qv_rng r;
    qv_rng_seed(&r, seed);
    qv_rng_permutation(&r, p, n);
    for (size_t i = 0; i < n_want; i++)
        cr_expect_eq(p[at + i], want[i], "seed %llu permutation(%zu)[%zu] = %zu, want %zu", (unsigned long long)seed,
                     n, at + i, p[at + i], want[i]);
    /* it is a permutation */
    char *seen = calloc(n ? n : 1, 1);
    for (size_t i = 0; i < n; i++) {
        cr_assert_lt(p[i], n);
        cr_assert_eq(seen[p[i]], 0);
        seen[p[i]] = 1;
    }
    free(seen);
    free(p);
}

Test(rng, seed_sequence_words_seed42)
{
    uint32_t pool[4], w[8];
    qv_rng_seed_words(42, pool, w);
    const uint32_t want_pool[4] = {0x631d3606, 0x07ae90ae, 0x6fc4be28, 0x2ced5c75};
    const uint32_t want_w[8] = {3444837047u, 2669555309u, 2046530742u, 3581440988u,
                                1691623607u, 2099784219u, 1184028159u, 862288241u};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(pool[i], want_pool[i], "pool[%d] = %#x", i, pool[i]);
    for (int i = 0; i < 8; i++)
        cr_expect_eq(w[i], want_w[i], "w[%d] = %u", i, w[i]);
}

Test(rng, seed_sequence_words_other_seeds)
{
    /* numpy: SeedSequence(s).pool, .generate_state(8) */
    static const struct {
        uint64_t seed;
        uint32_t pool[4], w[8];
    } cases[] = {
        {0,
         {0xfe40eb07, 0x4f363a36, 0x4eb2009d, 0xc89a7aa7},
         {0xb0f478be, 0xdb2cd7e7, 0x2c71ba49, 0xabf4641a, 0x9d7b8d41, 0x20c6ed6d, 0x223c39d4, 0x2c4099de}},
        {4294967301ull, /* 2^32 + 5: two entropy words */
         {0x73d34ef0, 0xda919992, 0x5c469880, 0x2789f14b},
         {0xe249d9ac, 0xf9c15bd6, 0x36320ed7, 0xb2021b40, 0xe6dcf739, 0x9388b47f, 0xad6439e1, 0x5eeba8d9}},
        {UINT64_MAX,
         {0xfaf3ecf4, 0xfa0f8930, 0xe9f89a67, 0x0e23d1f9},
         {0x928cad0d, 0xaebca151, 0x8638dc7a, 0x119c3044, 0x59e642a7, 0x1bbb1556, 0xe8c4a8f6, 0xa76b11e3}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint32_t pool[4], w[8];
        qv_rng_seed_words(cases[c].seed, pool, w);
        for (int i = 0; i < 4; i++)
            cr_expect_eq(pool[i], cases[c].pool[i], "seed %llu pool[%d] = %#x", (unsigned long long)cases[c].seed, i,
                         pool[i]);
        for (int i = 0; i < 8; i++)
            cr_expect_eq(w[i], cases[c].w[i], "seed %llu w[%d] = %#x", (unsigned long long)cases[c].seed, i, w[i]);
    }
}

Test(rng, pcg64_initial_state)
{
    static const struct {
        uint64_t seed, st_hi, st_lo, inc_hi, inc_lo;
    } cases[] = {
        {42, 0xcea44f6798798f2aull, 0xacbc7c9d68860ac8ull, 0xfa505436c9a8416eull, 0x66caf2e28d25abffull},
        {0, 0x1aa1b5345996452dull, 0x09585eb7a69561e3ull, 0x418ddadb3af71a82ull, 0x588133bc447873a9ull},
        {4294967301ull, 0x2931d0c6dbee79bfull, 0xece8058fe085a345ull, 0x271168ffcdb9ee72ull, 0xbdd751b35ac873c3ull},
        {UINT64_MAX, 0xddc419442aebde79ull, 0x4d8b0a3b048acdb0ull, 0x37762aacb3cc854full, 0x4ed623c7d18951edull},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        qv_rng r;
        qv_rng_seed(&r, cases[c].seed);
        cr_expect_eq(r.state_hi, cases[c].st_hi, "seed %llu", (unsigned long long)cases[c].seed);
        cr_expect_eq(r.state_lo, cases[c].st_lo, "seed %llu", (unsigned long long)cases[c].seed);
        cr_expect_eq(r.inc_hi, cases[c].inc_hi, "seed %llu", (unsigned long long)cases[c].seed);
        cr_expect_eq(r.inc_lo, cases[c].inc_lo, "seed %llu", (unsigned long long)cases[c].seed);
    }
}

Test(rng, next64_and_next32)
{
    qv_rng r;
    qv_rng_seed(&r, 42);
    const uint64_t want64[3] = {0xc621fbcd16d92688ull, 0x705a5661a791ffc1ull, 0xdbcd12c26eda1624ull};
    for (int i = 0; i < 3; i++)
        cr_expect_eq(qv_rng_next64(&r), want64[i], "next64 #%d", i);
    qv_rng_seed(&r, 42);
    const uint32_t want32[4] = {0x16d92688, 0xc621fbcd, 0xa791ffc1, 0x705a5661};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(qv_rng_next32(&r), want32[i], "next32 #%d", i);

    /* numpy random_raw(3) for other seeds */
    static const struct {
        uint64_t seed, v[3];
    } cases[] = {
        {0, {0xa30febcfd9c2825full, 0x4510bdf882d9d721ull, 0x0a7d3da94ecde8b8ull}},
        {1, {0x8306bdf37922e4ffull, 0xf35196bbc152a866ull, 0x24e7a4f608ec18cdull}},
        {4294967295ull, {0x407f5fa930d8fd9full, 0x3814b22eb9684802ull, 0x498b7dcee8d8dc95ull}},
        {4294967296ull, {0xe3c5ebe285ac1625ull, 0x8ea09968fe31dbccull, 0xcd084ff84d8de9beull}},
        {UINT64_MAX, {0xae163a7a8c47568full, 0xd86659f5f3382359ull, 0x01e52b195bc2d24aull}},
        {123456789012345ull, {0x87ae8961b8510ee6ull, 0x0b608e9cda245b8full, 0xc1e268f093dfa25cull}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        qv_rng_seed(&r, cases[c].seed);
        for (int i = 0; i < 3; i++)
            cr_expect_eq(qv_rng_next64(&r), cases[c].v[i], "seed %llu next64 #%d", (unsigned long long)cases[c].seed,
                         i);
    }
}

Test(rng, permutation_vectors)
{
    expect_perm(42, 10, (const size_t[]){5, 6, 0, 7, 3, 2, 4, 9, 1, 8}, 10, 0);
    expect_perm(42, 5, (const size_t[]){4, 2, 3, 1, 0}, 5, 0);
    expect_perm(42, 4, (const size_t[]){3, 2, 1, 0}, 4, 0);
    expect_perm(42, 2, (const size_t[]){1, 0}, 2, 0);
    expect_perm(42, 100, (const size_t[]){59, 21, 56, 18, 33, 42, 50, 27, 92, 71}, 10, 0);
    expect_perm(42, 1000, (const size_t[]){978, 933, 859, 916, 127, 608, 856, 260, 147, 810}, 10, 0);
    expect_perm(4294967301ull, 1000, (const size_t[]){960, 33, 387, 707, 209}, 5, 995);
    expect_perm(0, 12, (const size_t[]){9, 2, 7, 4, 5, 11, 0, 3, 6, 10, 8, 1}, 12, 0);
    expect_perm(UINT64_MAX, 12, (const size_t[]){8, 6, 3, 2, 11, 0, 4, 7, 1, 5, 9, 10}, 12, 0);
    expect_perm(3, 1, (const size_t[]){0}, 1, 0);
    expect_perm(3, 0, NULL, 0, 0);
}

Test(rng, shuffle_matches_permutation)
{
    /* numpy: a = list('abcdefg'); default_rng(42).shuffle(a) -> d c g e b f a */
    char a[] = "abcdefg";
    qv_rng r;
    qv_rng_seed(&r, 42);
    qv_rng_shuffle(&r, a, 7, 1);
    cr_expect_str_eq(a, "dcgebfa");

    /* L'[k] = L[permutation(len(L))[k]] for wider elements too */
    struct wide {
        double x;
        char tag[13];
    } items[37];
    for (int i = 0; i < 37; i++) {
        memset(&items[i], 0, sizeof items[i]);
        items[i].x = i;
        items[i].tag[0] = (char)('A' + i % 26);
    }
    size_t perm[37];
    qv_rng_seed(&r, 2024);
    qv_rng_permutation(&r, perm, 37);
    qv_rng_seed(&r, 2024);
    qv_rng_shuffle(&r, items, 37, sizeof items[0]);
    for (int k = 0; k < 37; k++) {
        cr_expect_eq(items[k].x, (double)perm[k]);
        cr_expect_eq(items[k].tag[0], (char)('A' + perm[k] % 26));
    }
}

Test(rng, interval_64bit_path)
{
    /* max ≥ 2^32 draws next64 & mask (numpy's random_interval): values recomputed in Python from
     * default_rng(7).bit_generator.random_raw() with max = 2^40 + 12345. */
    qv_rng r;
    qv_rng_seed(&r, 7);
    const uint64_t want[5] = {410505640290ull, 657368502597ull, 924642322228ull, 616326891229ull, 527492701256ull};
    for (int i = 0; i < 5; i++)
        cr_expect_eq(qv_rng_interval(&r, (1ull << 40) + 12345), want[i], "draw %d", i);
    cr_expect_eq(qv_rng_interval(&r, 0), 0);
}
