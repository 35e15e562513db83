/* utf8.h — the UTF-8 primitives the tokenizers need: strict validation (text handed to an
 * encoder), one-character decoding and encoding, and the lossy conversion that Rust's
 * String::from_utf8_lossy performs (each maximal invalid subpart becomes one U+FFFD), which is
 * how the HF `tokenizers` ByteLevel decoder turns bytes back into text. */
#ifndef QV_TOK_UTF8_H
#define QV_TOK_UTF8_H

#include "../core/common.h"
#include "../io/json.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when the bytes there are not one
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
size_t qv_utf8_valid_len(const unsigned char *s, size_t n);
/* Offset of the first invalid byte, or n when s[0..n) is valid UTF-8. */
size_t qv_utf8_check(const char *s, size_t n);
/* Decodes the valid sequence at s (qv_utf8_valid_len(s, n) > 0) and sets *len. */
uint32_t qv_utf8_decode(const unsigned char *s, size_t *len);
/* Writes code point cp (<= U+10FFFF) to out (4 bytes room); returns the byte count. */
size_t qv_utf8_encode(uint32_t cp, char *out);
/* Appends s[0..n) to b, replacing every maximal invalid subpart by U+FFFD. */
void qv_utf8_append_lossy(qv_strbuf *b, const char *s, size_t n);

#endif
