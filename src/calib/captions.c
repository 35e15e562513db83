/* captions.c — caption file reader and the §7.2 selection order (captions.h;
 * spec/ALGORITHMS.md §7.1–7.2, §11 item 20). */
#include "captions.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/fsutil.h"
#include "../io/json.h"
#include "pytext.h"
#include "rng.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static const char *json_type_word(const qv_json *j)
{
    switch (json_object_get_type(j)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double:
    case json_type_int: return "a number";
    case json_type_object: return "an object";
    case json_type_array: return "a list";
    case json_type_string: return "a string";
    }
    return "a value";
}

/* Copies a JSON string, refusing embedded NULs (the rest of the pipeline uses C strings). */
static qv_status dup_json_str(const qv_json *s, char **out, const char *file, size_t line, size_t index,
                              const char *field)
{
    size_t n = (size_t)json_object_get_string_len(s);
    const char *p = json_object_get_string((qv_json *)s);
    if (memchr(p, 0, n))
        return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: field \"%s\": contains a NUL character", file, line, index,
                       field);
    *out = qv_strndup(p, n);
    return *out ? QV_OK : QV_ERR_NOMEM;
}

static void item_free(qv_caption_item *it)
{
    qv_free(it->id);
    for (size_t k = 0; k < it->n_images; k++)
        qv_free(it->images[k]);
    qv_free(it->images);
    for (size_t k = 0; k < it->n_turns; k++) {
        qv_free(it->turns[k].from);
        qv_free(it->turns[k].value);
    }
    qv_free(it->turns);
    memset(it, 0, sizeof *it);
}

/* Member lookup that tells a JSON null (json-c: a NULL value) from an absent key. */
static bool member(const qv_json *o, const char *key, qv_json **v)
{
    *v = NULL;
    return json_object_object_get_ex((qv_json *)o, key, v);
}

/* ---- one item ----------------------------------------------------------------------------- */

static qv_status read_id(const qv_json *o, qv_caption_item *it, const char *file)
{
    qv_json *v = qv_json_get(o, "id");
    if (!v || json_object_is_type(v, json_type_null))
        return QV_OK;
    if (json_object_is_type(v, json_type_string))
        return dup_json_str(v, &it->id, file, it->line, it->index, "id");
    if (json_object_is_type(v, json_type_int)) {
        it->id = qv_asprintf("%lld", (long long)json_object_get_int64(v));
        return it->id ? QV_OK : QV_ERR_NOMEM;
    }
    if (json_object_is_type(v, json_type_double)) {
        qv_strbuf b;
        qv_sb_init(&b);
        qv_sb_json_double(&b, json_object_get_double(v));
        if (b.oom) {
            qv_sb_free(&b);
            return qv_fail(QV_ERR_NOMEM, "out of memory (caption id)");
        }
        it->id = b.s;
        return QV_OK;
    }
    return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: field \"id\": expected a string or a number, got %s", file,
                   it->line, it->index, json_type_word(v));
}

static qv_status read_images(const qv_json *o, qv_caption_item *it, const char *file)
{
    qv_json *v;
    if (!member(o, "image", &v))
        return QV_OK;
    if (json_object_is_type(v, json_type_string)) {
        if (json_object_get_string_len(v) == 0)
            return QV_OK;
        it->images = qv_calloc(1, sizeof *it->images, "caption images");
        if (!it->images)
            return QV_ERR_NOMEM;
        QV_TRY(dup_json_str(v, &it->images[0], file, it->line, it->index, "image"));
        it->n_images = 1;
        return QV_OK;
    }
    if (!json_object_is_type(v, json_type_array))
        return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: field \"image\": expected a path or a list of paths, got %s",
                       file, it->line, it->index, json_type_word(v));
    it->image_is_list = true;
    size_t n = json_object_array_length(v);
    if (n == 0)
        return QV_OK;
    it->images = qv_calloc(n, sizeof *it->images, "caption images");
    if (!it->images)
        return QV_ERR_NOMEM;
    for (size_t k = 0; k < n; k++) {
        qv_json *e = json_object_array_get_idx(v, k);
        char field[48];
        snprintf(field, sizeof field, "image[%zu]", k);
        if (!json_object_is_type(e, json_type_string) || json_object_get_string_len(e) == 0)
            return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: field \"%s\": expected a non-empty path, got %s", file,
                           it->line, it->index, field,
                           json_object_is_type(e, json_type_string) ? "\"\"" : json_type_word(e));
        QV_TRY(dup_json_str(e, &it->images[k], file, it->line, it->index, field));
        it->n_images = k + 1;
    }
    return QV_OK;
}

static qv_status read_turns(const qv_json *o, qv_caption_item *it, const char *file)
{
    qv_json *v;
    if (!member(o, "conversations", &v))
        return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: missing field \"conversations\"", file, it->line, it->index);
    if (!json_object_is_type(v, json_type_array))
        return qv_fail(QV_ERR_INVALID,
                       "%s:%zu: entry %zu: field \"conversations\": expected a list of {\"from\", \"value\"} objects, "
                       "got %s",
                       file, it->line, it->index, json_type_word(v));
    size_t n = json_object_array_length(v);
    if (n == 0)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: field \"conversations\": empty list", file, it->line,
                       it->index);
    it->turns = qv_calloc(n, sizeof *it->turns, "caption turns");
    if (!it->turns)
        return QV_ERR_NOMEM;
    for (size_t k = 0; k < n; k++) {
        qv_json *t = json_object_array_get_idx(v, k);
        if (!json_object_is_type(t, json_type_object))
            return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: field \"conversations[%zu]\": expected an object, got %s",
                           file, it->line, it->index, k, json_type_word(t));
        it->n_turns = k + 1;
        static const char *const keys[2] = {"from", "value"};
        for (int f = 0; f < 2; f++) {
            qv_json *s;
            bool present = member(t, keys[f], &s);
            char field[64];
            snprintf(field, sizeof field, "conversations[%zu].%s", k, keys[f]);
            if (!present)
                return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: missing field \"%s\"", file, it->line, it->index,
                               field);
            if (!json_object_is_type(s, json_type_string))
                return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: field \"%s\": expected a string, got %s", file,
                               it->line, it->index, field, json_type_word(s));
            QV_TRY(dup_json_str(s, f == 0 ? &it->turns[k].from : &it->turns[k].value, file, it->line, it->index,
                                field));
        }
    }
    return QV_OK;
}

static qv_status read_item(const qv_json *o, qv_caption_item *it, const char *file)
{
    if (!json_object_is_type(o, json_type_object))
        return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: expected an object, got %s", file, it->line, it->index,
                       json_type_word(o));
    QV_TRY(read_id(o, it, file));
    QV_TRY(read_images(o, it, file));
    return read_turns(o, it, file);
}

/* ---- parsing ------------------------------------------------------------------------------ */

typedef struct parser {
    const char *path;
    const char *text;
    size_t len;
    struct json_tokener *tok;
    qv_vec items; /* qv_caption_item */
} parser;

static size_t count_lines(const char *t, size_t from, size_t to)
{
    size_t n = 0;
    for (size_t i = from; i < to; i++)
        n += t[i] == '\n';
    return n;
}

/* Parses text[b..e) as one JSON value and appends the item. `line` is the line of text[b]. */
static qv_status parse_entry(parser *p, size_t b, size_t e, size_t line)
{
    qv_caption_item it;
    memset(&it, 0, sizeof it);
    it.index = p->items.len;
    it.line = line;
    if (e - b > (size_t)INT32_MAX)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu: too large", p->path, line, it.index);
    json_tokener_reset(p->tok);
    qv_json *o = json_tokener_parse_ex(p->tok, p->text + b, (int)(e - b));
    enum json_tokener_error err = json_tokener_get_error(p->tok);
    size_t end = b + json_tokener_get_parse_end(p->tok);
    if (err == json_tokener_continue) {
        /* a bare number at the end of the slice needs a terminator to be complete */
        o = json_tokener_parse_ex(p->tok, "", 1);
        err = json_tokener_get_error(p->tok);
        end = e;
    }
    if (err == json_tokener_success && o) {
        while (end < e && (p->text[end] == ' ' || p->text[end] == '\t' || p->text[end] == '\n' || p->text[end] == '\r'))
            end++;
        if (end < e) {
            json_object_put(o);
            return qv_fail(QV_ERR_FORMAT, "%s:%zu: entry %zu: invalid JSON: unexpected characters after the value",
                           p->path, line + count_lines(p->text, b, end), it.index);
        }
    } else {
        json_object_put(o);
        const char *desc = err == json_tokener_continue || err == json_tokener_success
                               ? "unexpected end of the entry"
                               : json_tokener_error_desc(err);
        return qv_fail(QV_ERR_FORMAT, "%s:%zu: entry %zu: invalid JSON: %s", p->path,
                       line + count_lines(p->text, b, end < e ? end : e), it.index, desc);
    }
    qv_status st = read_item(o, &it, p->path);
    json_object_put(o);
    if (st == QV_OK)
        st = qv_vec_push(&p->items, &it);
    if (st != QV_OK)
        item_free(&it);
    return st;
}

static bool json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* `*.json`: one array; each element is located by bracket matching outside strings, then
 * parsed on its own (json-c checks the element fully, so the scan only has to find its end). */
static qv_status parse_array(parser *p)
{
    const char *t = p->text;
    size_t n = p->len, i = 0, line = 1;
    while (i < n && json_ws(t[i]))
        line += t[i++] == '\n';
    if (i == n || t[i] != '[')
        return qv_fail(QV_ERR_FORMAT, "%s:%zu: expected a JSON array of objects", p->path, line);
    i++;
    bool first = true;
    for (;;) {
        while (i < n && json_ws(t[i]))
            line += t[i++] == '\n';
        if (i == n)
            return qv_fail(QV_ERR_FORMAT, "%s:%zu: invalid JSON: unexpected end of file inside the array", p->path, line);
        if (t[i] == ']' && first) {
            i++;
            break;
        }
        size_t b = i, depth = 0;
        bool in_str = false;
        for (; i < n; i++) {
            char c = t[i];
            if (in_str) {
                if (c == '\\')
                    i++;
                else if (c == '"')
                    in_str = false;
            } else if (c == '"') {
                in_str = true;
            } else if (c == '[' || c == '{') {
                depth++;
            } else if (c == ']' || c == '}') {
                if (depth == 0)
                    break;
                depth--;
            } else if (c == ',' && depth == 0) {
                break;
            }
        }
        if (i >= n)
            return qv_fail(QV_ERR_FORMAT, "%s:%zu: entry %zu: invalid JSON: unexpected end of file", p->path, line,
                           p->items.len);
        size_t e = i;
        while (e > b && json_ws(t[e - 1]))
            e--;
        if (e == b)
            return qv_fail(QV_ERR_FORMAT, "%s:%zu: entry %zu: invalid JSON: missing value", p->path, line,
                           p->items.len);
        QV_TRY(parse_entry(p, b, e, line));
        line += count_lines(t, b, i);
        first = false;
        if (t[i] == ',') {
            i++;
            continue;
        }
        if (t[i] != ']')
            return qv_fail(QV_ERR_FORMAT, "%s:%zu: invalid JSON: unexpected '%c' in the array", p->path, line, t[i]);
        i++;
        break;
    }
    while (i < n && json_ws(t[i]))
        line += t[i++] == '\n';
    if (i < n)
        return qv_fail(QV_ERR_FORMAT, "%s:%zu: invalid JSON: unexpected characters after the array", p->path, line);
    return QV_OK;
}

/* `*.jsonl`: `for line in f: json.loads(line.strip())`. */
static qv_status parse_lines(parser *p)
{
    size_t pos = 0, b, e, line = 0;
    while (qv_py_next_line(p->text, p->len, &pos, &b, &e)) {
        line++;
        qv_py_strip(p->text, &b, &e);
        if (b == e)
            return qv_fail(QV_ERR_FORMAT, "%s:%zu: entry %zu: empty line (JSON Lines needs one object per line)",
                           p->path, line, p->items.len);
        QV_TRY(parse_entry(p, b, e, line));
    }
    return QV_OK;
}

qv_status qv_captions_parse(const char *text, size_t len, const char *name, qv_caption_file *out)
{
    memset(out, 0, sizeof *out);
    bool jsonl = ends_with(name, ".jsonl");
    if (!jsonl && !ends_with(name, ".json"))
        return qv_fail(QV_ERR_INVALID, "%s: unsupported caption file type (expected .json or .jsonl)", name);
    parser p = {.path = name, .text = text, .len = len};
    qv_vec_init(&p.items, sizeof(qv_caption_item));
    qv_status st = QV_OK;
    p.tok = json_tokener_new_ex(QV_JSON_MAX_DEPTH);
    if (!p.tok) {
        st = qv_fail(QV_ERR_NOMEM, "out of memory (JSON parser for %s)", name);
    } else {
        json_tokener_set_flags(p.tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        st = jsonl ? parse_lines(&p) : parse_array(&p);
        json_tokener_free(p.tok);
    }
    if (st == QV_OK && !(out->path = qv_strdup(name)))
        st = QV_ERR_NOMEM;
    out->items = p.items.data;
    out->n_items = p.items.len;
    if (st != QV_OK)
        qv_captions_free(out);
    return st;
}

qv_status qv_captions_load(const char *path, qv_caption_file *out)
{
    memset(out, 0, sizeof *out);
    if (!ends_with(path, ".jsonl") && !ends_with(path, ".json"))
        return qv_fail(QV_ERR_INVALID, "%s: unsupported caption file type (expected .json or .jsonl)", path);
    char *text;
    size_t len;
    QV_TRY(qv_read_file(path, QV_CAPTIONS_MAX_FILE, &text, &len));
    qv_status st = qv_captions_parse(text, len, path, out);
    qv_free(text);
    return st;
}

void qv_captions_free(qv_caption_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_items; i++)
        item_free(&f->items[i]);
    qv_free(f->items);
    qv_free(f->path);
    memset(f, 0, sizeof *f);
}

qv_status qv_captions_check_images(const qv_caption_file *f, const char *image_folder, size_t *bad)
{
    const char *name = f->path ? f->path : "caption file";
    for (size_t i = 0; i < f->n_items; i++) {
        const qv_caption_item *it = &f->items[i];
        for (size_t k = 0; k < it->n_images; k++) {
            char *p = qv_path_join(image_folder, it->images[k]);
            if (!p)
                return QV_ERR_NOMEM;
            struct stat st;
            bool ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
            qv_free(p);
            if (!ok) {
                if (bad)
                    *bad = i;
                return qv_fail(QV_ERR_IO, "%s:%zu: entry %zu: image \"%s\" not found in %s", name, it->line, it->index,
                               it->images[k], image_folder);
            }
        }
    }
    return QV_OK;
}

/* ---- selection (§7.2) --------------------------------------------------------------------- */

void qv_captions_shuffle_order(size_t n_items, uint64_t seed, size_t *perm)
{
    qv_rng r;
    qv_rng_seed(&r, seed);
    qv_rng_permutation(&r, perm, n_items);
}

qv_status qv_captions_select(const qv_caption_file *f, uint64_t seed, size_t n_samples, size_t *order)
{
    const char *name = f->path ? f->path : "caption file";
    if (f->n_items == 0)
        return qv_fail(QV_ERR_INVALID, "%s: no caption items to calibrate with", name);
    if (n_samples == 0)
        return qv_fail(QV_ERR_INVALID, "%s: n_samples must be at least 1", name);
    size_t bytes;
    if (!qv_mul_size(f->n_items, sizeof(size_t), &bytes))
        return qv_fail(QV_ERR_NOMEM, "%s: too many items", name);
    size_t *perm = qv_malloc(bytes, "caption order");
    if (!perm)
        return QV_ERR_NOMEM;
    qv_captions_shuffle_order(f->n_items, seed, perm);
    for (size_t i = 0; i < n_samples; i++)
        order[i] = perm[i % f->n_items];
    qv_free(perm);
    return QV_OK;
}
