/* yaml.h — a small YAML document tree on libyaml (Debian libyaml-dev), with line numbers, for
 * configuration files (spec/CLI.md "CONFIG (YAML)"; recipe files later).
 *
 * Why a tree of our own: libyaml only gives events or an untyped document, and the reference
 * loads configs with PyYAML's safe_load (YAML 1.1 typing: `True`, `yes`, `on` are booleans,
 * `010` is octal, `1e-3` is a string). The tree keeps each scalar's text and whether it was
 * quoted; qv_yaml_type() applies PyYAML's implicit typing to plain scalars on demand.
 *
 * Refused, each as "<file>:<line>: <problem>": a tab in the indentation of any non-blank line
 * (also inside block scalars, a simplification), duplicate mapping keys (PyYAML silently keeps
 * the last), non-scalar keys, aliases (`*name`; anchors alone are ignored), tags other than
 * !!str / !!map / !!seq / "!", more than one document, nesting deeper than QV_YAML_MAX_DEPTH,
 * more than QV_YAML_MAX_NODES nodes, and libyaml's own syntax errors. */
#ifndef QV_IO_YAML_H
#define QV_IO_YAML_H

#include "../core/common.h"

#define QV_YAML_MAX_DEPTH 16
#define QV_YAML_MAX_NODES 100000

typedef enum qv_yaml_kind { QV_YAML_KIND_SCALAR = 0, QV_YAML_KIND_SEQ, QV_YAML_KIND_MAP } qv_yaml_kind;

typedef struct qv_yaml_node {
    qv_yaml_kind kind;
    size_t line;                 /* 1-based line of the node's first character */
    char *text;                  /* scalar: the value, NUL-terminated */
    size_t len;
    bool quoted;                 /* scalar written quoted, as a block scalar, or tagged !!str */
    struct qv_yaml_node **kids;  /* SEQ: items; MAP: key0, value0, key1, value1, ... */
    size_t n_kids;
} qv_yaml_node;

/* Parses text[0..len); `file` names the source in errors. *root is NULL for an empty stream
 * (only comments/blank lines). Caller frees with qv_yaml_free. */
qv_status qv_yaml_parse(const char *text, size_t len, const char *file, qv_yaml_node **root);
/* Reads and parses a file of at most max_bytes. */
qv_status qv_yaml_load_file(const char *path, size_t max_bytes, qv_yaml_node **root);
void qv_yaml_free(qv_yaml_node *n);

/* Number of key/value pairs of a mapping; key i is kids[2i], value kids[2i+1]. */
static inline size_t qv_yaml_map_len(const qv_yaml_node *m) { return m->n_kids / 2; }

/* PyYAML (YAML 1.1) implicit type of a scalar: quoted scalars are strings; plain ones are null
 * (``, `~`, `null`, `Null`, `NULL`), bool (yes/no/true/false/on/off in three casings), int
 * (decimal, 0b, 0x, leading-0 octal, `_` separators; sexagesimal counts as a string here),
 * float (needs a `.`: `1.5`, `1.`, `.5`, `1.0e+3`, `.inf`, `.nan`), else string. */
typedef enum qv_yaml_type {
    QV_YAML_TYPE_NULL = 0,
    QV_YAML_TYPE_BOOL,
    QV_YAML_TYPE_INT,
    QV_YAML_TYPE_FLOAT,
    QV_YAML_TYPE_STR
} qv_yaml_type;
qv_yaml_type qv_yaml_type_of(const qv_yaml_node *scalar);

/* Typed reads of a scalar; false when the scalar is not of that type. */
bool qv_yaml_bool(const qv_yaml_node *n, bool *out);
/* An int scalar in [INT64_MIN, INT64_MAX]; *overflow (may be NULL) tells an int that does not fit. */
bool qv_yaml_int(const qv_yaml_node *n, int64_t *out, bool *overflow);
/* An int scalar in [0, UINT64_MAX]. */
bool qv_yaml_uint64(const qv_yaml_node *n, uint64_t *out, bool *overflow);
/* A number: a PyYAML int or float, and (an extension: PyYAML reads them as strings) plain
 * decimal literals with an exponent and no dot such as `1e-3`. */
bool qv_yaml_number(const qv_yaml_node *n, double *out);

#endif
