/* utf8.c — UTF-8 validation, decoding and lossy repair (utf8.h). The ranges follow Unicode
 * Table 3-7 (well-formed byte sequences); "maximal subpart" replacement follows Unicode §3.9
 * U+FFFD substitution, as Rust's from_utf8_lossy does. */
#include "utf8.h"

/* How many leading bytes of s[0..n) form a prefix of some well-formed sequence (>= 1 for a
 * lead byte that is allowed at all, 0 otherwise); *complete tells whether it is a whole one. */
static size_t prefix_len(const unsigned char *s, size_t n, bool *complete)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    *complete = false;
    if (c < 0x80) {
        *complete = true;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    size_t i = 1;
    for (; i < need && i < n; i++) {
        unsigned char b = s[i];
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h)
            return i;
    }
    *complete = i == need;
    return i;
}

size_t qv_utf8_valid_len(const unsigned char *s, size_t n)
{
    if (!n)
        return 0;
    bool complete;
    size_t k = prefix_len(s, n, &complete);
    return complete ? k : 0;
}

size_t qv_utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = qv_utf8_valid_len(u + i, n - i);
        if (!k)
            return i;
        i += k;
    }
    return n;
}

uint32_t qv_utf8_decode(const unsigned char *s, size_t *len)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if (c < 0xF0) {
        *len = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
           (s[3] & 0x3F);
}

size_t qv_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

void qv_utf8_append_lossy(qv_strbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < n) {
        bool complete;
        size_t k = prefix_len(u + i, n - i, &complete);
        if (complete) {
            i += k;
            continue;
        }
        qv_sb_putn(b, s + run, i - run);
        qv_sb_puts(b, "\xEF\xBF\xBD");
        i += k ? k : 1;
        run = i;
    }
    qv_sb_putn(b, s + run, n - run);
}
