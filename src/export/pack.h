/* pack.h — bit packing of integer codes into 32-bit words for the checkpoint formats
 * (FORMATS.md §2.4 AWQ, §3.2 GPTQ, §4.3 compressed-tensors). Words are built as uint32_t and
 * stored as the same 4 little-endian bytes (the files call them I32).
 *
 * The dense stream: n codes of b bits become ceil(n*b/32) words, code j at stream bits
 * b*j .. b*j+b-1, bit 0 = LSB of word 0. For b in {1,2,4,8} that is "32/b codes per word, LSB
 * first"; for b = 3 it is GPTQ's 96-bit blocks and compressed-tensors >= 0.18's dense layout.
 * Strided so one routine serves rows (CT weight_packed), columns (GPTQ qweight [in*b/32, out])
 * and the zero points packed along the output dimension. */
#ifndef QV_EXPORT_PACK_H
#define QV_EXPORT_PACK_H

#include "core/common.h"

/* Number of words for n codes of b bits. */
int64_t qv_pack_words(int64_t n, int b);

/* dst[w * dst_stride] (w < qv_pack_words(n, b)) <- src[j * src_stride] (j < n); codes must fit
 * in b bits (higher bits are masked off). */
void qv_pack_stream(uint32_t *dst, int64_t dst_stride, const uint8_t *src, int64_t src_stride, int64_t n, int b);
void qv_unpack_stream(uint8_t *dst, int64_t dst_stride, const uint32_t *src, int64_t src_stride, int64_t n, int b);

/* compressed-tensors 0.17.x pack-quantized (#715): floor(32/b) whole codes per word, the high
 * 32 mod b bits zero; ceil(n / floor(32/b)) words. Read-only (third-party files). */
int64_t qv_pack_words_floor(int64_t n, int b);
void qv_unpack_floor(uint8_t *dst, const uint32_t *src, int64_t n, int b);

/* AutoAWQ GEMM: 8 four-bit codes of columns 8j..8j+7 per word, nibble i holds column
 * 8j + ORDER[i], ORDER = (0, 2, 4, 6, 1, 3, 5, 7). n must be a multiple of 8. */
void qv_pack_awq(uint32_t *dst, const uint8_t *src, int64_t n);
void qv_unpack_awq(uint8_t *dst, const uint32_t *src, int64_t n);

/* Words to and from their little-endian byte image (I32 tensors in safetensors). */
void qv_words_store(void *dst, const uint32_t *w, size_t n);
void qv_words_load(uint32_t *w, const void *src, size_t n);

#endif
