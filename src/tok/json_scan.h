/* json_scan.h — a validating forward scanner over JSON text, for the two members of a
 * tokenizer.json that are too large to hold as json-c trees: "model.vocab" (150k members) and
 * "model.merges" (150k pairs). Building and freeing those trees costs json-c ~0.4 s for a real
 * Qwen2 tokenizer; scanning them costs a tenth of that. Everything else in the file is still
 * parsed by json-c (io/json.h) from the spans this scanner hands out.
 *
 * Grammar: RFC 8259 (no comments, no trailing commas, strings valid UTF-8 with no raw control
 * characters, no lone surrogates in \u escapes), nesting limited to QV_JSON_MAX_DEPTH. Errors are
 * one line: "<file>: invalid JSON at line L column C: <what>". */
#ifndef QV_TOK_JSON_SCAN_H
#define QV_TOK_JSON_SCAN_H

#include "../io/json.h"

typedef struct qv_jscan {
    const char *s, *p, *end; /* whole text, cursor, end */
    const char *file;
} qv_jscan;

void qv_jscan_init(qv_jscan *j, const char *text, size_t len, const char *file);
/* Consumes the opening '{' or '['. */
qv_status qv_jscan_open(qv_jscan *j, char open);
/* Before element `index` of the container opened with `open`: consumes the ',' (index > 0) or
 * the closing bracket; *more is false once the container is closed. */
qv_status qv_jscan_more(qv_jscan *j, char open, size_t index, bool *more);
/* An object key and its ':' (the decoded key replaces out's content). */
qv_status qv_jscan_key(qv_jscan *j, qv_strbuf *out);
/* A string value, decoded, replacing out's content. */
qv_status qv_jscan_string(qv_jscan *j, qv_strbuf *out);
/* A non-negative integer value without fraction or exponent. */
qv_status qv_jscan_uint(qv_jscan *j, int64_t *out);
/* Any value, validated and skipped; its text is start[0..len). */
qv_status qv_jscan_value(qv_jscan *j, const char **start, size_t *len);
/* The next significant character (0 at the end), not consumed. */
char qv_jscan_peek(qv_jscan *j);
/* Only whitespace remains. */
qv_status qv_jscan_finish(qv_jscan *j);

#endif
