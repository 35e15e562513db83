/* json.h — JSON reading on json-c (Debian libjson-c-dev).
 *
 * Why json-c: a maintained, fuzzed parser already in Debian with a depth limit, strict mode and
 * UTF-8 validation; it keeps object keys in insertion order (needed for tokenizer vocabularies)
 * and exposes string lengths (embedded NULs survive). It lacks a duplicate-key check, which
 * safetensors headers require: qv_json_parse adds one (QV_JSON_UNIQUE_KEYS).
 *
 * Typed getters produce one-line errors naming the file and the key path. */
#ifndef QV_JSON_H
#define QV_JSON_H

#include <json-c/json.h>

#include "../core/common.h"

typedef struct json_object qv_json;

enum { QV_JSON_UNIQUE_KEYS = 1 };
#define QV_JSON_MAX_DEPTH 64
#define QV_JSON_MAX_FILE ((size_t)1 << 30)

/* Parses text[0..len) (not necessarily NUL-terminated). `what` names the source in errors.
 * Caller releases with qv_json_free. */
qv_status qv_json_parse(const char *text, size_t len, const char *what, int flags, qv_json **out);
qv_status qv_json_load_file(const char *path, int flags, qv_json **out);
void qv_json_free(qv_json *j);

/* Member lookup; NULL when absent (or when obj is not an object). */
qv_json *qv_json_get(const qv_json *obj, const char *key);
bool qv_json_is_type(const qv_json *j, json_type t);

/* Typed getters. `file` and `key` are used in the error: "<file>: <key>: expected integer".
 * The *_opt variants leave *out untouched when the key is absent or null and return QV_OK. */
qv_status qv_json_int(const qv_json *obj, const char *key, const char *file, int64_t *out);
qv_status qv_json_int_opt(const qv_json *obj, const char *key, const char *file, int64_t *out);
qv_status qv_json_num(const qv_json *obj, const char *key, const char *file, double *out);
qv_status qv_json_num_opt(const qv_json *obj, const char *key, const char *file, double *out);
qv_status qv_json_bool_opt(const qv_json *obj, const char *key, const char *file, bool *out);
/* The returned string borrows from obj. */
qv_status qv_json_str(const qv_json *obj, const char *key, const char *file, const char **out);
qv_status qv_json_str_opt(const qv_json *obj, const char *key, const char *file, const char **out);
/* Object / array members (required). */
qv_status qv_json_obj(const qv_json *obj, const char *key, const char *file, qv_json **out);
qv_status qv_json_arr(const qv_json *obj, const char *key, const char *file, qv_json **out);

/* A value as an integer: accepts JSON integers and integral doubles. */
bool qv_json_as_int(const qv_json *j, int64_t *out);

/* JSON string escaping for writers: appends the quoted string to a growing buffer. */
typedef struct qv_strbuf {
    char *s;
    size_t len, cap;
    bool oom;
} qv_strbuf;
void qv_sb_init(qv_strbuf *b);
void qv_sb_free(qv_strbuf *b);
void qv_sb_putn(qv_strbuf *b, const char *s, size_t n);
void qv_sb_puts(qv_strbuf *b, const char *s);
void qv_sb_printf(qv_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qv_sb_json_str(qv_strbuf *b, const char *s, size_t n);
/* Writes a double the way Python's json/repr does (shortest round-trip; NaN/Infinity). */
void qv_sb_json_double(qv_strbuf *b, double v);

#endif
