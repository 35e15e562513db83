/* pytext.c — Python str.strip / line splitting on UTF-8 bytes (pytext.h). */
#include "pytext.h"

bool qv_py_isspace(uint32_t cp)
{
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f);
    switch (cp) {
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

/* Decodes the well-formed UTF-8 sequence at s[i..end); returns its length, or 0 if ill-formed. */
static size_t utf8_at(const unsigned char *s, size_t i, size_t end, uint32_t *cp)
{
    unsigned c = s[i];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (end - i < n)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i + k] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

void qv_py_strip(const char *str, size_t *begin, size_t *end)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t b = *begin, e = *end;
    while (b < e) {
        uint32_t cp;
        size_t n = utf8_at(s, b, e, &cp);
        if (!n || !qv_py_isspace(cp))
            break;
        b += n;
    }
    while (e > b) {
        /* the last code point starts at most 3 continuation bytes back */
        size_t st = e - 1;
        while (st > b && e - st < 4 && (s[st] & 0xc0) == 0x80)
            st--;
        uint32_t cp;
        size_t n = utf8_at(s, st, e, &cp);
        if (n != e - st || !qv_py_isspace(cp))
            break;
        e = st;
    }
    *begin = b;
    *end = e;
}

bool qv_py_next_line(const char *s, size_t len, size_t *pos, size_t *line_begin, size_t *line_end)
{
    size_t i = *pos;
    if (i >= len)
        return false;
    *line_begin = i;
    for (; i < len; i++) {
        if (s[i] == '\n' || s[i] == '\r') {
            *line_end = i;
            *pos = i + (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n' ? 2 : 1);
            return true;
        }
    }
    *line_end = len;
    *pos = len;
    return true;
}
