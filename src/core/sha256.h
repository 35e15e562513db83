/* sha256.h — SHA-256 (FIPS 180-4), for content hashes: the fixtures pin decoded images, tiles
 * and pixel tensors by the SHA-256 of their bytes (fixtures README §4, §13.3). */
#ifndef QV_SHA256_H
#define QV_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct qv_sha256_ctx {
    uint32_t h[8];
    uint64_t n;          /* bytes hashed so far */
    uint8_t buf[64];
    size_t fill;
} qv_sha256_ctx;

void qv_sha256_init(qv_sha256_ctx *c);
void qv_sha256_update(qv_sha256_ctx *c, const void *data, size_t n);
void qv_sha256_final(qv_sha256_ctx *c, uint8_t out[32]);
/* One call: digest of data[0..n). */
void qv_sha256(const void *data, size_t n, uint8_t out[32]);
/* Lower-case hex of data[0..n) into hex (65 bytes incl. NUL). */
void qv_sha256_hex(const void *data, size_t n, char hex[65]);

#endif
