/* json.c — json-c wrappers with file-and-key error messages (json.h). */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fsutil.h"

static void line_col(const char *text, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* Number of object members in the raw text: every ':' outside strings introduces one. */
static size_t count_members_raw(const char *t, size_t n)
{
    size_t count = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == ':') {
            count++;
        }
    }
    return count;
}

static size_t count_members_tree(qv_json *j)
{
    size_t n = 0;
    if (json_object_is_type(j, json_type_object)) {
        json_object_object_foreach(j, k, v)
        {
            (void)k;
            n += 1 + count_members_tree(v);
        }
    } else if (json_object_is_type(j, json_type_array)) {
        size_t len = json_object_array_length(j);
        for (size_t i = 0; i < len; i++)
            n += count_members_tree(json_object_array_get_idx(j, i));
    }
    return n;
}

qv_status qv_json_parse(const char *text, size_t len, const char *what, int flags, qv_json **out)
{
    *out = NULL;
    if (len > (size_t)INT32_MAX)
        return qv_fail(QV_ERR_INVALID, "%s: JSON text too large", what);
    struct json_tokener *tok = json_tokener_new_ex(QV_JSON_MAX_DEPTH);
    if (!tok)
        return qv_fail(QV_ERR_NOMEM, "out of memory (JSON parser for %s)", what);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    qv_json *j = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error err = json_tokener_get_error(tok);
    size_t off = json_tokener_get_parse_end(tok);
    if (err == json_tokener_continue && off == len) {
        /* a number (or literal) that ends the text is complete, but json-c waits for a
         * delimiter to know that: give it the end of the string */
        j = json_tokener_parse_ex(tok, "", 1);
        err = json_tokener_get_error(tok);
        if (err != json_tokener_success) { /* truly truncated */
            json_object_put(j);
            j = NULL;
            err = json_tokener_continue;
        }
    }
    json_tokener_free(tok);
    if (err == json_tokener_continue || (!j && err == json_tokener_success)) {
        json_object_put(j);
        return qv_fail(QV_ERR_FORMAT, "%s: invalid JSON: unexpected end of input", what);
    }
    if (err != json_tokener_success) {
        int line, col;
        line_col(text, off < len ? off : len, &line, &col);
        json_object_put(j);
        return qv_fail(QV_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", what, line, col,
                       json_tokener_error_desc(err));
    }
    for (size_t i = off; i < len; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != 0) {
            int line, col;
            line_col(text, i, &line, &col);
            json_object_put(j);
            return qv_fail(QV_ERR_FORMAT, "%s: invalid JSON at line %d column %d: trailing characters", what, line,
                           col);
        }
    }
    if ((flags & QV_JSON_UNIQUE_KEYS) && count_members_raw(text, off) != count_members_tree(j)) {
        json_object_put(j);
        return qv_fail(QV_ERR_FORMAT, "%s: duplicate key in JSON object", what);
    }
    *out = j;
    return QV_OK;
}

qv_status qv_json_load_file(const char *path, int flags, qv_json **out)
{
    char *text;
    size_t len;
    *out = NULL;
    QV_TRY(qv_read_file(path, QV_JSON_MAX_FILE, &text, &len));
    qv_status st = qv_json_parse(text, len, path, flags, out);
    qv_free(text);
    return st;
}

void qv_json_free(qv_json *j) { json_object_put(j); }

qv_json *qv_json_get(const qv_json *obj, const char *key)
{
    qv_json *v = NULL;
    if (!obj || !json_object_is_type((qv_json *)obj, json_type_object))
        return NULL;
    if (!json_object_object_get_ex((qv_json *)obj, key, &v))
        return NULL;
    return v;
}

bool qv_json_is_type(const qv_json *j, json_type t) { return j && json_object_is_type((qv_json *)j, t); }

bool qv_json_as_int(const qv_json *j, int64_t *out)
{
    if (qv_json_is_type(j, json_type_int)) {
        *out = json_object_get_int64((qv_json *)j);
        return true;
    }
    if (qv_json_is_type(j, json_type_double)) {
        double d = json_object_get_double((qv_json *)j);
        if (d == floor(d) && fabs(d) < 9.0e15) {
            *out = (int64_t)d;
            return true;
        }
    }
    return false;
}

static qv_status missing(const char *file, const char *key)
{
    return qv_fail(QV_ERR_INVALID, "%s: missing field \"%s\"", file, key);
}

static qv_status wrong(const char *file, const char *key, const char *want)
{
    return qv_fail(QV_ERR_INVALID, "%s: field \"%s\": expected %s", file, key, want);
}

static bool absent(const qv_json *v) { return !v || json_object_is_type((qv_json *)v, json_type_null); }

qv_status qv_json_int_opt(const qv_json *obj, const char *key, const char *file, int64_t *out)
{
    qv_json *v = qv_json_get(obj, key);
    if (absent(v))
        return QV_OK;
    if (!qv_json_as_int(v, out))
        return wrong(file, key, "an integer");
    return QV_OK;
}

qv_status qv_json_int(const qv_json *obj, const char *key, const char *file, int64_t *out)
{
    if (absent(qv_json_get(obj, key)))
        return missing(file, key);
    return qv_json_int_opt(obj, key, file, out);
}

qv_status qv_json_num_opt(const qv_json *obj, const char *key, const char *file, double *out)
{
    qv_json *v = qv_json_get(obj, key);
    if (absent(v))
        return QV_OK;
    if (!qv_json_is_type(v, json_type_int) && !qv_json_is_type(v, json_type_double))
        return wrong(file, key, "a number");
    *out = json_object_get_double(v);
    return QV_OK;
}

qv_status qv_json_num(const qv_json *obj, const char *key, const char *file, double *out)
{
    if (absent(qv_json_get(obj, key)))
        return missing(file, key);
    return qv_json_num_opt(obj, key, file, out);
}

qv_status qv_json_bool_opt(const qv_json *obj, const char *key, const char *file, bool *out)
{
    qv_json *v = qv_json_get(obj, key);
    if (absent(v))
        return QV_OK;
    if (!qv_json_is_type(v, json_type_boolean))
        return wrong(file, key, "true or false");
    *out = json_object_get_boolean(v);
    return QV_OK;
}

qv_status qv_json_str_opt(const qv_json *obj, const char *key, const char *file, const char **out)
{
    qv_json *v = qv_json_get(obj, key);
    if (absent(v))
        return QV_OK;
    if (!qv_json_is_type(v, json_type_string))
        return wrong(file, key, "a string");
    *out = json_object_get_string(v);
    return QV_OK;
}

qv_status qv_json_str(const qv_json *obj, const char *key, const char *file, const char **out)
{
    if (absent(qv_json_get(obj, key)))
        return missing(file, key);
    return qv_json_str_opt(obj, key, file, out);
}

qv_status qv_json_obj(const qv_json *obj, const char *key, const char *file, qv_json **out)
{
    qv_json *v = qv_json_get(obj, key);
    if (absent(v))
        return missing(file, key);
    if (!qv_json_is_type(v, json_type_object))
        return wrong(file, key, "an object");
    *out = v;
    return QV_OK;
}

qv_status qv_json_arr(const qv_json *obj, const char *key, const char *file, qv_json **out)
{
    qv_json *v = qv_json_get(obj, key);
    if (absent(v))
        return missing(file, key);
    if (!qv_json_is_type(v, json_type_array))
        return wrong(file, key, "an array");
    *out = v;
    return QV_OK;
}

/* ---- string buffer ---------------------------------------------------------------------- */

void qv_sb_init(qv_strbuf *b)
{
    b->s = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

void qv_sb_free(qv_strbuf *b)
{
    free(b->s);
    qv_sb_init(b);
}

static bool sb_grow(qv_strbuf *b, size_t extra)
{
    if (b->oom)
        return false;
    size_t need;
    if (!qv_add_size(b->len, extra, &need) || !qv_add_size(need, 1, &need) || need > SIZE_MAX / 2) {
        b->oom = true;
        qv_fail(QV_ERR_NOMEM, "out of memory (text of %zu + %zu bytes)", b->len, extra);
        return false;
    }
    if (need <= b->cap)
        return true;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap *= 2;
    char *p = realloc(b->s, ncap);
    if (!p) {
        b->oom = true;
        qv_fail(QV_ERR_NOMEM, "out of memory (%zu bytes for text)", ncap);
        return false;
    }
    b->s = p;
    b->cap = ncap;
    return true;
}

void qv_sb_putn(qv_strbuf *b, const char *s, size_t n)
{
    if (!sb_grow(b, n))
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void qv_sb_puts(qv_strbuf *b, const char *s) { qv_sb_putn(b, s, strlen(s)); }

void qv_sb_printf(qv_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !sb_grow(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void qv_sb_json_str(qv_strbuf *b, const char *s, size_t n)
{
    qv_sb_putn(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': qv_sb_putn(b, "\\\"", 2); break;
        case '\\': qv_sb_putn(b, "\\\\", 2); break;
        case '\n': qv_sb_putn(b, "\\n", 2); break;
        case '\r': qv_sb_putn(b, "\\r", 2); break;
        case '\t': qv_sb_putn(b, "\\t", 2); break;
        case '\b': qv_sb_putn(b, "\\b", 2); break;
        case '\f': qv_sb_putn(b, "\\f", 2); break;
        default:
            if (c < 0x20)
                qv_sb_printf(b, "\\u%04x", c);
            else
                qv_sb_putn(b, (const char *)&c, 1);
        }
    }
    qv_sb_putn(b, "\"", 1);
}

void qv_sb_json_double(qv_strbuf *b, double v)
{
    if (isnan(v)) {
        qv_sb_puts(b, "NaN");
        return;
    }
    if (isinf(v)) {
        qv_sb_puts(b, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    qv_sb_puts(b, buf);
    if (!strpbrk(buf, ".eEn"))
        qv_sb_puts(b, ".0");
}
