/* json_scan.c — forward JSON scanner (json_scan.h). */
#include "json_scan.h"

#include <string.h>

#include "utf8.h"

static qv_status bad(const qv_jscan *j, const char *what)
{
    int line = 1, col = 1;
    for (const char *q = j->s; q < j->p && q < j->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return qv_fail(QV_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", j->file, line, col, what);
}

void qv_jscan_init(qv_jscan *j, const char *text, size_t len, const char *file)
{
    j->s = j->p = text;
    j->end = text + len;
    j->file = file;
}

static void ws(qv_jscan *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

char qv_jscan_peek(qv_jscan *j)
{
    ws(j);
    return j->p < j->end ? *j->p : 0;
}

qv_status qv_jscan_open(qv_jscan *j, char open)
{
    if (qv_jscan_peek(j) != open)
        return bad(j, open == '{' ? "expected an object" : "expected an array");
    j->p++;
    return QV_OK;
}

qv_status qv_jscan_more(qv_jscan *j, char open, size_t index, bool *more)
{
    char close = open == '{' ? '}' : ']', c = qv_jscan_peek(j);
    if (c == close) {
        j->p++;
        *more = false;
        return QV_OK;
    }
    if (index > 0) {
        if (c != ',')
            return bad(j, open == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        j->p++;
        if (qv_jscan_peek(j) == close)
            return bad(j, "trailing comma");
    }
    *more = true;
    return QV_OK;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Scans a string; decodes into out when out is not NULL. */
static qv_status string(qv_jscan *j, qv_strbuf *out)
{
    if (qv_jscan_peek(j) != '"')
        return bad(j, "expected a string");
    j->p++;
    if (out)
        out->len = 0;
    for (;;) {
        const char *run = j->p;
        while (j->p < j->end && *j->p != '"' && *j->p != '\\' && (unsigned char)*j->p >= 0x20)
            j->p++;
        size_t n = (size_t)(j->p - run);
        if (qv_utf8_check(run, n) != n) {
            j->p = run + qv_utf8_check(run, n);
            return bad(j, "invalid UTF-8 in a string");
        }
        if (out)
            qv_sb_putn(out, run, n);
        if (j->p >= j->end)
            return bad(j, "unterminated string");
        char c = *j->p;
        if (c == '"') {
            j->p++;
            break;
        }
        if (c != '\\')
            return bad(j, "control character in a string");
        if (j->end - j->p < 2)
            return bad(j, "unterminated string");
        char e = j->p[1], lit = 0;
        j->p += 2;
        switch (e) {
        case '"': lit = '"'; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            int u = j->end - j->p >= 4 ? hex4(j->p) : -1;
            if (u < 0)
                return bad(j, "bad \\u escape");
            j->p += 4;
            uint32_t cp = (uint32_t)u;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                int lo = j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u' ? hex4(j->p + 2) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return bad(j, "lone surrogate in a \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                j->p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return bad(j, "lone surrogate in a \\u escape");
            }
            if (out) {
                char buf[4];
                qv_sb_putn(out, buf, qv_utf8_encode(cp, buf));
            }
            continue;
        }
        default:
            return bad(j, "bad escape in a string");
        }
        if (out)
            qv_sb_putn(out, &lit, 1);
    }
    if (out && !out->s)
        qv_sb_putn(out, "", 0); /* an empty string still gets a buffer */
    if (out && out->oom)
        return qv_fail(QV_ERR_NOMEM, "%s: out of memory reading JSON", j->file);
    return QV_OK;
}

qv_status qv_jscan_string(qv_jscan *j, qv_strbuf *out) { return string(j, out); }

qv_status qv_jscan_key(qv_jscan *j, qv_strbuf *out)
{
    QV_TRY(string(j, out));
    if (qv_jscan_peek(j) != ':')
        return bad(j, "expected ':'");
    j->p++;
    return QV_OK;
}

qv_status qv_jscan_uint(qv_jscan *j, int64_t *out)
{
    ws(j);
    const char *q = j->p;
    int64_t v = 0;
    while (q < j->end && *q >= '0' && *q <= '9') {
        if (v > (INT64_MAX - 9) / 10)
            return bad(j, "integer too large");
        v = v * 10 + (*q++ - '0');
    }
    if (q == j->p || (q - j->p > 1 && *j->p == '0') ||
        (q < j->end && (*q == '.' || *q == 'e' || *q == 'E' || *q == '-' || *q == '+')))
        return bad(j, "expected a non-negative integer");
    j->p = q;
    *out = v;
    return QV_OK;
}

static qv_status number(qv_jscan *j)
{
    const char *q = j->p;
    if (q < j->end && *q == '-')
        q++;
    const char *d = q;
    while (q < j->end && *q >= '0' && *q <= '9')
        q++;
    if (q == d || (q - d > 1 && *d == '0'))
        return bad(j, "bad number");
    if (q < j->end && *q == '.') {
        d = ++q;
        while (q < j->end && *q >= '0' && *q <= '9')
            q++;
        if (q == d)
            return bad(j, "bad number");
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < j->end && (*q == '+' || *q == '-'))
            q++;
        d = q;
        while (q < j->end && *q >= '0' && *q <= '9')
            q++;
        if (q == d)
            return bad(j, "bad number");
    }
    j->p = q;
    return QV_OK;
}

static qv_status value(qv_jscan *j, int depth)
{
    if (depth > QV_JSON_MAX_DEPTH)
        return bad(j, "nesting too deep");
    char c = qv_jscan_peek(j);
    if (c == '{' || c == '[') {
        j->p++;
        bool more;
        for (size_t i = 0;; i++) {
            QV_TRY(qv_jscan_more(j, c, i, &more));
            if (!more)
                return QV_OK;
            if (c == '{') {
                QV_TRY(string(j, NULL));
                if (qv_jscan_peek(j) != ':')
                    return bad(j, "expected ':'");
                j->p++;
            }
            QV_TRY(value(j, depth + 1));
        }
    }
    if (c == '"')
        return string(j, NULL);
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, lits[i], n)) {
            j->p += n;
            return QV_OK;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return number(j);
    return bad(j, c ? "unexpected character" : "unexpected end of input");
}

qv_status qv_jscan_value(qv_jscan *j, const char **start, size_t *len)
{
    qv_jscan_peek(j);
    const char *a = j->p;
    QV_TRY(value(j, 1));
    *start = a;
    *len = (size_t)(j->p - a);
    return QV_OK;
}

qv_status qv_jscan_finish(qv_jscan *j)
{
    if (qv_jscan_peek(j))
        return bad(j, "trailing characters");
    return QV_OK;
}
