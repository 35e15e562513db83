/* yaml.c — libyaml events to a line-numbered tree, and PyYAML's implicit scalar typing
 * (yaml.h). */
#include "yaml.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "../core/fsutil.h"

/* ---- tree --------------------------------------------------------------------------------- */

void qv_yaml_free(qv_yaml_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        qv_yaml_free(n->kids[i]);
    qv_free(n->kids);
    qv_free(n->text);
    qv_free(n);
}

typedef struct builder {
    yaml_parser_t parser;
    const char *file;
    const char *text;
    size_t len;
    size_t n_nodes;
} builder;

static size_t line_of_offset(const char *t, size_t len, size_t off)
{
    size_t line = 1;
    for (size_t i = 0; i < off && i < len; i++)
        line += t[i] == '\n';
    return line;
}

static qv_status parser_error(builder *b)
{
    const yaml_parser_t *p = &b->parser;
    if (p->error == YAML_MEMORY_ERROR)
        return qv_fail(QV_ERR_NOMEM, "out of memory (YAML parser for %s)", b->file);
    size_t line = p->error == YAML_READER_ERROR ? line_of_offset(b->text, b->len, p->problem_offset)
                                                : (size_t)p->problem_mark.line + 1;
    const char *problem = p->problem ? p->problem : "syntax error";
    if (p->context)
        return qv_fail(QV_ERR_FORMAT, "%s:%zu: invalid YAML: %s %s", b->file, line, problem, p->context);
    return qv_fail(QV_ERR_FORMAT, "%s:%zu: invalid YAML: %s", b->file, line, problem);
}

static qv_status next_event(builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev))
        return parser_error(b);
    return QV_OK;
}

static bool tag_ok(const yaml_char_t *tag, const char *allowed)
{
    if (!tag)
        return true;
    const char *t = (const char *)tag;
    return strcmp(t, "!") == 0 || strcmp(t, allowed) == 0;
}

static qv_status new_node(builder *b, qv_yaml_kind kind, size_t line, qv_yaml_node **out)
{
    if (++b->n_nodes > QV_YAML_MAX_NODES)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: YAML document too large (more than %d nodes)", b->file, line,
                       QV_YAML_MAX_NODES);
    *out = qv_calloc(1, sizeof **out, "YAML node");
    if (!*out)
        return QV_ERR_NOMEM;
    (*out)->kind = kind;
    (*out)->line = line;
    return QV_OK;
}

static qv_status add_kid(qv_yaml_node *parent, qv_yaml_node *kid)
{
    if ((parent->n_kids & (parent->n_kids - 1)) == 0) { /* grow at powers of two */
        size_t cap = parent->n_kids ? parent->n_kids * 2 : 4;
        qv_yaml_node **k = qv_realloc(parent->kids, cap * sizeof *k, "YAML node");
        if (!k)
            return QV_ERR_NOMEM;
        parent->kids = k;
    }
    parent->kids[parent->n_kids++] = kid;
    return QV_OK;
}

/* Checks the key just added to a mapping against the earlier ones. */
static qv_status check_key(builder *b, const qv_yaml_node *map, const qv_yaml_node *key)
{
    if (key->kind != QV_YAML_KIND_SCALAR)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: mapping keys must be plain names", b->file, key->line);
    for (size_t i = 0; i + 1 < map->n_kids; i += 2) {
        const qv_yaml_node *k = map->kids[i];
        if (k->len == key->len && memcmp(k->text, key->text, k->len) == 0)
            return qv_fail(QV_ERR_INVALID, "%s:%zu: duplicate key \"%s\" (first at line %zu)", b->file, key->line,
                           key->text, k->line);
    }
    return QV_OK;
}

/* Builds the node whose first event is *ev (consumed here). */
static qv_status build(builder *b, yaml_event_t *ev, int depth, qv_yaml_node **out)
{
    *out = NULL;
    size_t line = (size_t)ev->start_mark.line + 1;
    if (depth > QV_YAML_MAX_DEPTH)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: YAML nested deeper than %d levels", b->file, line, QV_YAML_MAX_DEPTH);
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return qv_fail(QV_ERR_UNSUPPORTED, "%s:%zu: YAML aliases (*%s) are not supported", b->file, line,
                       (const char *)ev->data.alias.anchor);
    case YAML_SCALAR_EVENT: {
        if (!tag_ok(ev->data.scalar.tag, "tag:yaml.org,2002:str"))
            return qv_fail(QV_ERR_UNSUPPORTED, "%s:%zu: unsupported YAML tag %s", b->file, line,
                           (const char *)ev->data.scalar.tag);
        QV_TRY(new_node(b, QV_YAML_KIND_SCALAR, line, out));
        qv_yaml_node *n = *out;
        n->len = ev->data.scalar.length;
        n->text = qv_strndup((const char *)ev->data.scalar.value, n->len);
        if (!n->text)
            return QV_ERR_NOMEM;
        if (memchr(n->text, 0, n->len))
            return qv_fail(QV_ERR_INVALID, "%s:%zu: NUL character in a YAML scalar", b->file, line);
        n->quoted = ev->data.scalar.tag != NULL || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        return QV_OK;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool is_map = ev->type == YAML_MAPPING_START_EVENT;
        const yaml_char_t *tag = is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
        if (!tag_ok(tag, is_map ? "tag:yaml.org,2002:map" : "tag:yaml.org,2002:seq"))
            return qv_fail(QV_ERR_UNSUPPORTED, "%s:%zu: unsupported YAML tag %s", b->file, line, (const char *)tag);
        QV_TRY(new_node(b, is_map ? QV_YAML_KIND_MAP : QV_YAML_KIND_SEQ, line, out));
        qv_yaml_node *n = *out;
        yaml_event_type_t end = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
        for (;;) {
            yaml_event_t kid_ev;
            QV_TRY(next_event(b, &kid_ev));
            if (kid_ev.type == end) {
                yaml_event_delete(&kid_ev);
                return QV_OK;
            }
            qv_yaml_node *kid = NULL;
            qv_status st = build(b, &kid_ev, depth + 1, &kid);
            yaml_event_delete(&kid_ev);
            if (st == QV_OK)
                st = add_kid(n, kid);
            if (st != QV_OK) {
                qv_yaml_free(kid);
                return st;
            }
            if (is_map && n->n_kids % 2 == 1)
                QV_TRY(check_key(b, n, kid));
        }
    }
    default:
        return qv_fail(QV_ERR_FORMAT, "%s:%zu: invalid YAML: unexpected event", b->file, line);
    }
}

/* YAML forbids tabs in indentation; libyaml's message for them is cryptic, so say it first. */
static qv_status check_tabs(const char *t, size_t len, const char *file)
{
    size_t line = 1;
    for (size_t i = 0; i < len;) {
        bool tab = false;
        size_t j = i;
        while (j < len && (t[j] == ' ' || t[j] == '\t'))
            tab |= t[j++] == '\t';
        if (tab && j < len && t[j] != '\n' && t[j] != '\r')
            return qv_fail(QV_ERR_FORMAT, "%s:%zu: tab used for indentation (YAML allows only spaces)", file, line);
        while (j < len && t[j] != '\n')
            j++;
        i = j + 1;
        line++;
    }
    return QV_OK;
}

qv_status qv_yaml_parse(const char *text, size_t len, const char *file, qv_yaml_node **root)
{
    *root = NULL;
    QV_TRY(check_tabs(text, len, file));
    builder b = {.file = file, .text = text, .len = len};
    if (!yaml_parser_initialize(&b.parser))
        return qv_fail(QV_ERR_NOMEM, "out of memory (YAML parser for %s)", file);
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)text, len);
    qv_status st = QV_OK;
    int docs = 0;
    for (bool done = false; !done && st == QV_OK;) {
        yaml_event_t ev;
        if ((st = next_event(&b, &ev)) != QV_OK)
            break;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                st = qv_fail(QV_ERR_INVALID, "%s:%zu: more than one YAML document", file,
                             (size_t)ev.start_mark.line + 1);
            break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        default:
            st = build(&b, &ev, 1, root);
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&b.parser);
    if (st != QV_OK) {
        qv_yaml_free(*root);
        *root = NULL;
    }
    return st;
}

qv_status qv_yaml_load_file(const char *path, size_t max_bytes, qv_yaml_node **root)
{
    char *text;
    size_t len;
    *root = NULL;
    QV_TRY(qv_read_file(path, max_bytes, &text, &len));
    qv_status st = qv_yaml_parse(text, len, path, root);
    qv_free(text);
    return st;
}

/* ---- PyYAML implicit typing --------------------------------------------------------------- */

static bool in_set(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, set[i]) == 0)
            return true;
    return false;
}

static const char *const k_true[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
static const char *const k_false[] = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"};
static const char *const k_null[] = {"", "~", "null", "Null", "NULL"};

static bool all_of(const char *s, const char *chars)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!strchr(chars, *s))
            return false;
    return true;
}

/* PyYAML int forms without sexagesimal: base and digits (underscores kept) or 0. */
static int int_form(const char *s, const char **digits, bool *neg)
{
    *neg = false;
    if (*s == '-' || *s == '+')
        *neg = *s++ == '-';
    if (s[0] == '0' && s[1] == 'b')
        return all_of(s + 2, "01_") ? (*digits = s + 2, 2) : 0;
    if (s[0] == '0' && s[1] == 'x')
        return all_of(s + 2, "0123456789abcdefABCDEF_") ? (*digits = s + 2, 16) : 0;
    if (s[0] == '0' && s[1] == 0)
        return *digits = s, 10;
    if (s[0] == '0')
        return all_of(s + 1, "01234567_") ? (*digits = s + 1, 8) : 0;
    if (s[0] >= '1' && s[0] <= '9' && all_of(s, "0123456789_"))
        return *digits = s, 10;
    return 0;
}

/* Magnitude of an int form; false if it has no digit (PyYAML would raise) or exceeds 2^64-1. */
static bool int_value(const char *digits, int base, uint64_t *mag, bool *overflow)
{
    uint64_t v = 0;
    bool any = false;
    *overflow = false;
    for (const char *p = digits; *p; p++) {
        if (*p == '_')
            continue;
        int d = *p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10;
        any = true;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            *overflow = true;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    *mag = v;
    return any;
}

static bool float_form(const char *s)
{
    const char *p = s;
    if (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0)
        return true;
    if (*p == '-' || *p == '+')
        p++;
    if (strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 || strcmp(p, ".INF") == 0)
        return true;
    if (*p == '.') { /* `.5`: no sign allowed in PyYAML's pattern */
        if (p != s || !(p[1] >= '0' && p[1] <= '9'))
            return false;
        p++;
    } else {
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while ((*p >= '0' && *p <= '9') || *p == '_')
            p++;
        if (*p != '.')
            return false;
        p++;
    }
    while ((*p >= '0' && *p <= '9') || *p == '_')
        p++;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p != '-' && *p != '+')
            return false;
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == 0;
}

qv_yaml_type qv_yaml_type_of(const qv_yaml_node *n)
{
    if (n->kind != QV_YAML_KIND_SCALAR || n->quoted)
        return QV_YAML_TYPE_STR;
    const char *s = n->text;
    if (in_set(s, k_null, QV_ARRAY_LEN(k_null)))
        return QV_YAML_TYPE_NULL;
    if (in_set(s, k_true, QV_ARRAY_LEN(k_true)) || in_set(s, k_false, QV_ARRAY_LEN(k_false)))
        return QV_YAML_TYPE_BOOL;
    if (float_form(s)) /* PyYAML tries float before int */
        return QV_YAML_TYPE_FLOAT;
    const char *digits;
    bool neg;
    if (int_form(s, &digits, &neg))
        return QV_YAML_TYPE_INT;
    return QV_YAML_TYPE_STR;
}

bool qv_yaml_bool(const qv_yaml_node *n, bool *out)
{
    if (qv_yaml_type_of(n) != QV_YAML_TYPE_BOOL)
        return false;
    *out = in_set(n->text, k_true, QV_ARRAY_LEN(k_true));
    return true;
}

static bool int_parts(const qv_yaml_node *n, uint64_t *mag, bool *neg, bool *overflow)
{
    const char *digits;
    *overflow = false;
    if (qv_yaml_type_of(n) != QV_YAML_TYPE_INT)
        return false;
    int base = int_form(n->text, &digits, neg);
    return int_value(digits, base, mag, overflow);
}

bool qv_yaml_int(const qv_yaml_node *n, int64_t *out, bool *overflow)
{
    uint64_t mag;
    bool neg, ovf;
    if (overflow)
        *overflow = false;
    if (!int_parts(n, &mag, &neg, &ovf))
        return false;
    if (ovf || mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX)) {
        if (overflow)
            *overflow = true;
        return false;
    }
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return true;
}

bool qv_yaml_uint64(const qv_yaml_node *n, uint64_t *out, bool *overflow)
{
    uint64_t mag;
    bool neg, ovf;
    if (overflow)
        *overflow = false;
    if (!int_parts(n, &mag, &neg, &ovf))
        return false;
    if (ovf || (neg && mag != 0)) {
        if (overflow)
            *overflow = true;
        return false;
    }
    *out = mag;
    return true;
}

bool qv_yaml_number(const qv_yaml_node *n, double *out)
{
    qv_yaml_type t = qv_yaml_type_of(n);
    int64_t i;
    if (t == QV_YAML_TYPE_INT && qv_yaml_int(n, &i, NULL)) {
        *out = (double)i;
        return true;
    }
    const char *s = n->text;
    if (t == QV_YAML_TYPE_FLOAT) {
        const char *p = s + (*s == '-' || *s == '+');
        if (p[0] == '.' && (p[1] | 0x20) == 'i') {
            *out = *s == '-' ? -INFINITY : INFINITY;
            return true;
        }
        if (p[0] == '.' && (p[1] | 0x20) == 'n') {
            *out = NAN;
            return true;
        }
    } else if (!(t == QV_YAML_TYPE_STR && !n->quoted && all_of(s, "0123456789+-.eE_"))) {
        return false; /* the extension: plain decimal literals like 1e-3 */
    }
    char buf[128];
    size_t k = 0;
    for (const char *p = s; *p && k + 1 < sizeof buf; p++)
        if (*p != '_')
            buf[k++] = *p;
    buf[k] = 0;
    if (k == 0 || strlen(s) >= sizeof buf)
        return false;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end != 0 || end == buf)
        return false;
    *out = v;
    return true;
}
