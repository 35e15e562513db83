/* test_fp.c — the number-format conversions: simd/fp.h against the measured tables of FORMATS.md
 * §7.1 (FP8 E4M3), §7.3 (BF16), §7.4 (F16), and every bulk conversion kernel of every kernel set
 * this host runs against fp.h, bit for bit (NaN payloads included), on every 16-bit pattern, on
 * 2^22 32-bit patterns (NaN, Inf, denormals, rounding ties) and on awkward lengths. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp.h"
#include "util/kernels_util.h"

/* ---- FORMATS.md §7 tables ----------------------------------------------------------------- */

Test(fp, e4m3_table)
{
    static const struct {
        float in;
        uint8_t out;
    } t[] = {
        {448.0f, 0x7e}, {456.0f, 0x7e}, {464.0f, 0x7e}, {464.01f, 0x7f}, {479.9f, 0x7f}, {480.0f, 0x7f},
        {1e9f, 0x7f},   {INFINITY, 0x7f}, {NAN, 0x7f},  {240.0f, 0x77},  {-0.0f, 0x80},  {0x1p-6f, 0x08},
        {0x1p-9f, 0x01}, {0x1p-10f, 0x00}, {0x1.8p-10f, 0x01}, {0.013671875f, 0x07}, {0.7265625f, 0x34},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        cr_expect_eq(qv_f32_to_e4m3(t[i].in), t[i].out, "e4m3(%a) = 0x%02x, FORMATS §7.1 says 0x%02x", t[i].in,
                     qv_f32_to_e4m3(t[i].in), t[i].out);
    /* decoding is exact: every non-NaN code survives the round trip; ±448 saturate */
    for (int b = 0; b < 256; b++) {
        float v = qv_e4m3_to_f32((uint8_t)b);
        if ((b & 0x7f) == 0x7f)
            cr_expect(isnan(v), "code 0x%02x must decode to NaN", b);
        else
            cr_expect_eq(qv_f32_to_e4m3(v), b, "code 0x%02x -> %a -> 0x%02x", b, v, qv_f32_to_e4m3(v));
    }
    cr_expect_eq(qv_f32_to_e4m3_sat(1e9f), 0x7e);
    cr_expect_eq(qv_f32_to_e4m3_sat(-500.0f), 0xfe);
}

Test(fp, bf16_table)
{
    static const struct {
        float in;
        uint16_t out;
    } t[] = {
        {1.0f + 0x1p-8f, 0x3f80}, {1.0f + 3 * 0x1p-8f, 0x3f82}, {1e-40f, 0x0001}, {-1e-40f, 0x8001},
        {3.3895314e38f, 0x7f7f},  {3.4e38f, 0x7f80},            {INFINITY, 0x7f80}, {-0.0f, 0x8000},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        cr_expect_eq(qv_f32_to_bf16(t[i].in), t[i].out, "bf16(%a) = 0x%04x, FORMATS §7.3 says 0x%04x", t[i].in,
                     qv_f32_to_bf16(t[i].in), t[i].out);
    /* NaN stays NaN (torch's bits differ; FORMATS §7.3 asks to compare NaN-ness) */
    cr_expect(isnan(qv_bf16_to_f32(qv_f32_to_bf16(NAN))));
    cr_expect(isnan(qv_bf16_to_f32(qv_f32_to_bf16(qv_bits_f32(0x7fffffffu)))));
    cr_expect(isnan(qv_bf16_to_f32(qv_f32_to_bf16(qv_bits_f32(0xff800001u)))));
}

Test(fp, f16_table)
{
    static const struct {
        float in;
        uint16_t out;
    } t[] = {
        {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00}, {0x1p-24f, 0x0001},
        {0x1p-25f, 0x0000}, {0x1.8p-25f, 0x0001}, {1e-8f, 0x0000}, {-65520.0f, 0xfc00},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        cr_expect_eq(qv_f32_to_f16(t[i].in), t[i].out, "f16(%a) = 0x%04x, FORMATS §7.4 says 0x%04x", t[i].in,
                     qv_f32_to_f16(t[i].in), t[i].out);
    /* every finite half survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 65536; h++)
        if ((h & 0x7c00) != 0x7c00 || !(h & 0x3ff))
            cr_expect_eq(qv_f32_to_f16(qv_f16_to_f32((uint16_t)h)), h, "0x%04x does not round-trip", h);
}

/* ---- bulk conversion kernels vs fp.h ------------------------------------------------------ */

/* 32-bit patterns that stress the rounding: random, NaN/Inf with random payloads, denormals,
 * exact ties and their neighbours for BF16 (bit 15) and F16 (bit 12), F16 range edges. */
static float *awkward_f32(size_t n)
{
    float *v = malloc(n * sizeof *v);
    cr_assert_not_null(v);
    qt_rng r = {0x9e3779b97f4a7c15ULL};
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)qt_next(&r);
        switch (i % 8) {
        case 0: break;                                                          /* anything */
        case 1: u = (u & 0x807fffffu) | 0x7f800000u; break;                   /* NaN / Inf */
        case 2: u &= 0x807fffffu; break;                                        /* denormal / zero */
        case 3: u = (u & 0xffff0000u) | 0x8000u | ((u >> 3) & 1u ? 0 : 1u); break; /* bf16 tie ± 1 */
        case 4: u = (u & 0xffffe000u) | 0x1000u; break;                         /* f16 tie */
        case 5: u = (u & 0x8fffffffu) | 0x30000000u; break;                     /* f16 subnormal range */
        case 6: u = (u & 0x807fffffu) | 0x47000000u; break;                     /* around 65504 */
        case 7: u = (u & 0x80ffffffu) | 0x7e000000u; break;                     /* bf16 overflow edge */
        }
        v[i] = qv_bits_f32(u);
    }
    return v;
}

Test(fp, conversion_kernels_bit_exact)
{
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    const qv_kernel_table *R = qv_kernels_for(QV_ISA_SCALAR);
    const size_t n = (size_t)1 << 22, n16 = 65536;
    float *src = awkward_f32(n), *f = malloc(n16 * sizeof *f), *fr = malloc(n16 * sizeof *fr);
    uint16_t *h = malloc(n * 2), *hr = malloc(n * 2), *all16 = malloc(n16 * 2);
    cr_assert(f && fr && h && hr && all16);
    for (size_t i = 0; i < n16; i++)
        all16[i] = (uint16_t)i;
    for (int t = 0; t < nt; t++) {
        const qv_kernel_table *k = tabs[t].k;
        /* F32 -> BF16 / F16 on every pattern class; offsets 0 and 1 (unaligned) */
        for (int off = 0; off < 2; off++) {
            R->f32_to_bf16(hr, src + off, n - off);
            k->f32_to_bf16(h, src + off, n - off);
            cr_assert(!memcmp(h, hr, (n - off) * 2), "%s f32_to_bf16 differs from fp.h", tabs[t].name);
            R->f32_to_f16(hr, src + off, n - off);
            k->f32_to_f16(h, src + off, n - off);
            cr_assert(!memcmp(h, hr, (n - off) * 2), "%s f32_to_f16 differs from fp.h", tabs[t].name);
        }
        /* BF16 / F16 -> F32 on all 65536 patterns (signalling NaNs included) */
        R->bf16_to_f32(fr, all16, n16);
        k->bf16_to_f32(f, all16, n16);
        cr_assert(!memcmp(f, fr, n16 * 4), "%s bf16_to_f32 differs from fp.h", tabs[t].name);
        R->f16_to_f32(fr, all16, n16);
        k->f16_to_f32(f, all16, n16);
        for (size_t i = 0; i < n16; i++)
            cr_assert_eq(qv_f32_bits(f[i]), qv_f32_bits(fr[i]), "%s f16_to_f32(0x%04zx) = 0x%08x, fp.h 0x%08x",
                         tabs[t].name, i, qv_f32_bits(f[i]), qv_f32_bits(fr[i]));
        /* awkward lengths: the tail paths, and nothing written past n */
        static const size_t lens[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 35, 64 + 3};
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t m = lens[li];
            uint16_t a[80], b[80];
            float fa[80], fb[80];
            memset(a, 0xab, sizeof a);
            memset(b, 0xab, sizeof b);
            k->f32_to_bf16(a, src + 3, m);
            R->f32_to_bf16(b, src + 3, m);
            cr_assert(!memcmp(a, b, sizeof a), "%s f32_to_bf16 length %zu", tabs[t].name, m);
            k->f32_to_f16(a, src + 5, m);
            R->f32_to_f16(b, src + 5, m);
            cr_assert(!memcmp(a, b, sizeof a), "%s f32_to_f16 length %zu", tabs[t].name, m);
            memset(fa, 0xab, sizeof fa);
            memset(fb, 0xab, sizeof fb);
            k->f16_to_f32(fa, all16 + 0x7c00 - 5, m);
            R->f16_to_f32(fb, all16 + 0x7c00 - 5, m);
            cr_assert(!memcmp(fa, fb, sizeof fa), "%s f16_to_f32 length %zu", tabs[t].name, m);
            k->bf16_to_f32(fa, all16 + 0x7f80 - 7, m);
            R->bf16_to_f32(fb, all16 + 0x7f80 - 7, m);
            cr_assert(!memcmp(fa, fb, sizeof fa), "%s bf16_to_f32 length %zu", tabs[t].name, m);
        }
    }
    free(src);
    free(f);
    free(fr);
    free(h);
    free(hr);
    free(all16);
}

Test(fp, conversion_kernels_format_tables)
{
    /* the §7.3 / §7.4 table entries through every bulk kernel */
    static const float in[] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1e-40f, -1e-40f, 3.3895314e38f, 3.4e38f,
                               65504.0f, 65519.0f, 65520.0f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f, 1e-8f,
                               0.0f, -0.0f, 1.0f, 2.0f, 3.0f};
    static const uint16_t bf[] = {0x3f80, 0x3f82, 0x0001, 0x8001, 0x7f7f, 0x7f80};
    static const uint16_t hf[] = {0x7bff, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x0001, 0x0000};
    qt_table tabs[QT_MAX_TABLES];
    int nt = qt_tables(tabs);
    for (int t = 0; t < nt; t++) {
        uint16_t o[18];
        tabs[t].k->f32_to_bf16(o, in, 18);
        for (int i = 0; i < 6; i++)
            cr_expect_eq(o[i], bf[i], "%s bf16(%a) = 0x%04x, expected 0x%04x", tabs[t].name, in[i], o[i], bf[i]);
        tabs[t].k->f32_to_f16(o, in, 18);
        for (int i = 0; i < 7; i++)
            cr_expect_eq(o[6 + i], hf[i], "%s f16(%a) = 0x%04x, expected 0x%04x", tabs[t].name, in[6 + i], o[6 + i],
                         hf[i]);
    }
}
