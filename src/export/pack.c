/* pack.c — dense bit streams, the compressed-tensors 0.17 floor packing and the AWQ interleave
 * (pack.h; FORMATS.md §2.4, §3.2, §4.3). */
#include "pack.h"

#include <string.h>

int64_t qv_pack_words(int64_t n, int b) { return (n * b + 31) / 32; }

void qv_pack_stream(uint32_t *dst, int64_t dst_stride, const uint8_t *src, int64_t src_stride, int64_t n, int b)
{
    const uint32_t mask = (1u << b) - 1u;
    int64_t nw = qv_pack_words(n, b);
    for (int64_t w = 0; w < nw; w++)
        dst[w * dst_stride] = 0;
    for (int64_t j = 0; j < n; j++) {
        uint64_t bit = (uint64_t)j * (uint64_t)b;
        int64_t w = (int64_t)(bit >> 5);
        unsigned off = (unsigned)(bit & 31);
        uint32_t v = src[j * src_stride] & mask;
        dst[w * dst_stride] |= v << off;
        if (off + (unsigned)b > 32) /* the code straddles two words */
            dst[(w + 1) * dst_stride] |= v >> (32 - off);
    }
}

void qv_unpack_stream(uint8_t *dst, int64_t dst_stride, const uint32_t *src, int64_t src_stride, int64_t n, int b)
{
    const uint32_t mask = (1u << b) - 1u;
    for (int64_t j = 0; j < n; j++) {
        uint64_t bit = (uint64_t)j * (uint64_t)b;
        int64_t w = (int64_t)(bit >> 5);
        unsigned off = (unsigned)(bit & 31);
        uint32_t v = src[w * src_stride] >> off;
        if (off + (unsigned)b > 32)
            v |= src[(w + 1) * src_stride] << (32 - off);
        dst[j * dst_stride] = (uint8_t)(v & mask);
    }
}

int64_t qv_pack_words_floor(int64_t n, int b)
{
    int64_t per = 32 / b;
    return (n + per - 1) / per;
}

void qv_unpack_floor(uint8_t *dst, const uint32_t *src, int64_t n, int b)
{
    const uint32_t mask = (1u << b) - 1u;
    int64_t per = 32 / b;
    for (int64_t j = 0; j < n; j++)
        dst[j] = (uint8_t)((src[j / per] >> (b * (j % per))) & mask);
}

static const int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

void qv_pack_awq(uint32_t *dst, const uint8_t *src, int64_t n)
{
    for (int64_t j = 0; j < n / 8; j++) {
        uint32_t word = 0;
        for (int i = 0; i < 8; i++)
            word |= (uint32_t)(src[8 * j + awq_order[i]] & 0xf) << (4 * i);
        dst[j] = word;
    }
}

void qv_unpack_awq(uint8_t *dst, const uint32_t *src, int64_t n)
{
    for (int64_t j = 0; j < n / 8; j++)
        for (int i = 0; i < 8; i++)
            dst[8 * j + awq_order[i]] = (uint8_t)((src[j] >> (4 * i)) & 0xf);
}

void qv_words_store(void *dst, const uint32_t *w, size_t n)
{
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++) {
        d[4 * i] = (uint8_t)w[i];
        d[4 * i + 1] = (uint8_t)(w[i] >> 8);
        d[4 * i + 2] = (uint8_t)(w[i] >> 16);
        d[4 * i + 3] = (uint8_t)(w[i] >> 24);
    }
}

void qv_words_load(uint32_t *w, const void *src, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++)
        w[i] = (uint32_t)s[4 * i] | ((uint32_t)s[4 * i + 1] << 8) | ((uint32_t)s[4 * i + 2] << 16) |
               ((uint32_t)s[4 * i + 3] << 24);
}
