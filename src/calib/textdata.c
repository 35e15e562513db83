/* textdata.c — text dataset reader and the §7.5 / §7.6 token selections (textdata.h;
 * spec/ALGORITHMS.md §7.5, §7.6, §11 items 14–15). */
#include "textdata.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../io/json.h"
#include "pytext.h"
#include "rng.h"

/* ---- open / close ------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static bool blank_json(const char *s, size_t b, size_t e)
{
    for (size_t i = b; i < e; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static qv_status map_file(const char *path, const char **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO is refused, not waited on */
    if (fd < 0)
        return qv_fail(QV_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qv_fail(QV_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX / 2) {
        close(fd);
        return qv_fail(QV_ERR_INVALID, "%s: file too large", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return qv_fail(QV_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
        *data = p;
        *size = (size_t)st.st_size;
    }
    close(fd);
    return QV_OK;
}

static qv_status index_rows(qv_text_docs *d)
{
    qv_vec rows;
    qv_vec_init(&rows, sizeof(qv_text_row));
    size_t pos = 0, b, e, line = 0;
    while (qv_py_next_line(d->data, d->size, &pos, &b, &e)) {
        line++;
        if (d->format == QV_TEXT_FORMAT_JSONL && blank_json(d->data, b, e))
            continue;
        qv_text_row r = {.off = b, .len = e - b, .line = line};
        qv_status st = qv_vec_push(&rows, &r);
        if (st != QV_OK) {
            qv_vec_free(&rows);
            return st;
        }
    }
    d->rows = rows.data;
    d->n = rows.len;
    return QV_OK;
}

qv_status qv_textdata_open(const char *path, qv_text_docs *out)
{
    memset(out, 0, sizeof *out);
    static const char *const compressed[] = {".zst", ".gz", ".bz2", ".xz", ".zip", ".lz4", ".7z"};
    for (size_t i = 0; i < QV_ARRAY_LEN(compressed); i++)
        if (ends_with(path, compressed[i]))
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: compressed text data is not read directly; decompress it first",
                           path);
    out->format = ends_with(path, ".jsonl") || ends_with(path, ".json") ? QV_TEXT_FORMAT_JSONL : QV_TEXT_FORMAT_PLAIN;
    out->path = qv_strdup(path);
    if (!out->path)
        return QV_ERR_NOMEM;
    qv_status st = map_file(path, &out->data, &out->size);
    if (st == QV_OK && out->format == QV_TEXT_FORMAT_JSONL) {
        size_t i = 0;
        while (i < out->size && (out->data[i] == ' ' || out->data[i] == '\t' || out->data[i] == '\r' ||
                                 out->data[i] == '\n'))
            i++;
        if (i < out->size && out->data[i] == '[')
            st = qv_fail(QV_ERR_UNSUPPORTED, "%s: a JSON array of documents; convert it to JSON Lines (one "
                                             "{\"text\": ...} object per line)", path);
    }
    if (st == QV_OK)
        st = index_rows(out);
    if (st != QV_OK)
        qv_textdata_close(out);
    return st;
}

void qv_textdata_close(qv_text_docs *d)
{
    if (!d)
        return;
    if (d->data)
        munmap((void *)d->data, d->size);
    qv_free(d->rows);
    qv_free(d->path);
    memset(d, 0, sizeof *d);
}

/* ---- rows --------------------------------------------------------------------------------- */

static qv_status jsonl_text(const qv_text_docs *d, const qv_text_row *r, char **text, size_t *len)
{
    if (r->len > (size_t)INT32_MAX)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: line too long", d->path, r->line);
    struct json_tokener *tok = json_tokener_new_ex(QV_JSON_MAX_DEPTH);
    if (!tok)
        return qv_fail(QV_ERR_NOMEM, "out of memory (JSON parser for %s)", d->path);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    qv_json *o = json_tokener_parse_ex(tok, d->data + r->off, (int)r->len);
    enum json_tokener_error err = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (err == json_tokener_continue) {
        o = json_tokener_parse_ex(tok, "", 1);
        err = json_tokener_get_error(tok);
        end = r->len;
    }
    json_tokener_free(tok);
    qv_status st = QV_OK;
    if (err != json_tokener_success || !o) {
        st = qv_fail(QV_ERR_FORMAT, "%s:%zu: invalid JSON: %s", d->path, r->line,
                     err == json_tokener_success ? "unexpected end of line" : json_tokener_error_desc(err));
    } else if (!blank_json(d->data + r->off, end, r->len)) {
        st = qv_fail(QV_ERR_FORMAT, "%s:%zu: invalid JSON: unexpected characters after the object", d->path, r->line);
    } else if (!json_object_is_type(o, json_type_object)) {
        st = qv_fail(QV_ERR_INVALID, "%s:%zu: expected a JSON object with a \"text\" field", d->path, r->line);
    } else {
        qv_json *t = NULL;
        if (!json_object_object_get_ex(o, "text", &t)) /* (a JSON null is a NULL value in json-c) */
            st = qv_fail(QV_ERR_INVALID, "%s:%zu: missing field \"text\"", d->path, r->line);
        else if (!json_object_is_type(t, json_type_string))
            st = qv_fail(QV_ERR_INVALID, "%s:%zu: field \"text\": expected a string", d->path, r->line);
        else {
            *len = (size_t)json_object_get_string_len(t);
            *text = qv_malloc(*len + 1, "text row");
            if (!*text)
                st = QV_ERR_NOMEM;
            else {
                memcpy(*text, json_object_get_string(t), *len);
                (*text)[*len] = 0;
            }
        }
    }
    json_object_put(o);
    return st;
}

qv_status qv_textdata_get(const qv_text_docs *d, size_t i, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (i >= d->n)
        return qv_fail(QV_ERR_INTERNAL, "%s: row %zu out of range (%zu rows)", d->path, i, d->n);
    const qv_text_row *r = &d->rows[i];
    if (d->format == QV_TEXT_FORMAT_JSONL)
        return jsonl_text(d, r, text, len);
    *text = qv_malloc(r->len + 1, "text row");
    if (!*text)
        return QV_ERR_NOMEM;
    memcpy(*text, d->data + r->off, r->len);
    (*text)[r->len] = 0;
    *len = r->len;
    return QV_OK;
}

qv_status qv_textdata_join(const qv_text_docs *d, const char *sep, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    qv_strbuf b;
    qv_sb_init(&b);
    for (size_t i = 0; i < d->n; i++) {
        char *t;
        size_t n;
        qv_status st = qv_textdata_get(d, i, &t, &n);
        if (st != QV_OK) {
            qv_sb_free(&b);
            return st;
        }
        if (i)
            qv_sb_puts(&b, sep);
        qv_sb_putn(&b, t, n);
        qv_free(t);
        if (b.oom) {
            qv_sb_free(&b);
            return qv_fail(QV_ERR_NOMEM, "%s: out of memory joining the text", d->path);
        }
    }
    if (!b.s) {
        *out = qv_strdup("");
        return *out ? QV_OK : QV_ERR_NOMEM;
    }
    *out = b.s;
    *len = b.len;
    return QV_OK;
}

/* ---- token selections --------------------------------------------------------------------- */

/* Row i's text.strip() tokenized. */
static qv_status encode_row(const qv_text_docs *d, size_t i, qv_encode_fn encode, void *ctx, int32_t **ids,
                            size_t *n)
{
    char *t;
    size_t len;
    *ids = NULL;
    *n = 0;
    QV_TRY(qv_textdata_get(d, i, &t, &len));
    size_t b = 0, e = len;
    qv_py_strip(t, &b, &e);
    int rc = encode(ctx, t + b, e - b, ids, n);
    qv_free(t);
    if (rc != 0) {
        qv_free(*ids);
        *ids = NULL;
        if (rc > 0 && rc <= (int)QV_ERR_INTERNAL)
            return (qv_status)rc;
        return qv_fail(QV_ERR_INTERNAL, "%s:%zu: tokenizer failed (code %d)", d->path, d->rows[i].line, rc);
    }
    if (*n && !*ids)
        return qv_fail(QV_ERR_INTERNAL, "%s:%zu: tokenizer returned no ids", d->path, d->rows[i].line);
    return QV_OK;
}

static qv_status visiting_order(const qv_text_docs *d, uint64_t seed, size_t **perm)
{
    size_t bytes;
    *perm = NULL;
    if (!qv_mul_size(d->n ? d->n : 1, sizeof(size_t), &bytes))
        return qv_fail(QV_ERR_NOMEM, "%s: too many rows", d->path);
    *perm = qv_malloc(bytes, "text row order");
    if (!*perm)
        return QV_ERR_NOMEM;
    qv_rng r;
    qv_rng_seed(&r, seed);
    qv_rng_permutation(&r, *perm, d->n);
    return QV_OK;
}

/* Appends n ids to v. */
static qv_status push_ids(qv_vec *v, const int32_t *ids, size_t n)
{
    size_t need;
    if (!qv_add_size(v->len, n, &need))
        return qv_fail(QV_ERR_NOMEM, "token stream too long");
    QV_TRY(qv_vec_reserve(v, need));
    memcpy((int32_t *)v->data + v->len, ids, n * sizeof *ids);
    v->len = need;
    return QV_OK;
}

qv_status qv_textdata_pile_blocks(const qv_text_docs *d, uint64_t seed, size_t n_lines, size_t max_doc_tokens,
                                  size_t block, qv_encode_fn encode, void *ctx, int32_t **ids, size_t *n_blocks,
                                  size_t *n_kept)
{
    *ids = NULL;
    *n_blocks = 0;
    if (n_kept)
        *n_kept = 0;
    if (n_lines == 0 || block == 0)
        return qv_fail(QV_ERR_INVALID, "%s: pile blocks need n_samples >= 1 and a block length >= 1", d->path);
    size_t *perm;
    QV_TRY(visiting_order(d, seed, &perm));
    qv_vec stream;
    qv_vec_init(&stream, sizeof(int32_t));
    qv_status st = QV_OK;
    size_t kept = 0;
    for (size_t k = 0; k < d->n && kept < n_lines; k++) {
        int32_t *doc;
        size_t n;
        if ((st = encode_row(d, perm[k], encode, ctx, &doc, &n)) != QV_OK)
            break;
        if (n > 0 && n <= max_doc_tokens) { /* §11 item 14: ≤ 512 here, > 512 in §7.5 */
            st = push_ids(&stream, doc, n);
            kept++;
        }
        qv_free(doc);
        if (st != QV_OK)
            break;
    }
    qv_free(perm);
    if (st == QV_OK && stream.len / block == 0)
        st = qv_fail(QV_ERR_INVALID,
                     "%s: the %zu documents with 1..%zu tokens give %zu tokens, fewer than one block of %zu", d->path,
                     kept, max_doc_tokens, stream.len, block);
    if (st != QV_OK) {
        qv_vec_free(&stream);
        return st;
    }
    *n_blocks = stream.len / block;
    stream.len = *n_blocks * block; /* the tail is dropped */
    *ids = stream.data;
    if (n_kept)
        *n_kept = kept;
    return QV_OK;
}

qv_status qv_textdata_interleave_pool(const qv_text_docs *d, uint64_t seed, size_t n_pieces, size_t piece_len,
                                      qv_encode_fn encode, void *ctx, int32_t **pieces, size_t *n_got)
{
    *pieces = NULL;
    *n_got = 0;
    if (piece_len == 0)
        return qv_fail(QV_ERR_INVALID, "%s: interleave pieces need a length >= 1", d->path);
    size_t *perm;
    QV_TRY(visiting_order(d, seed, &perm));
    qv_vec pool;
    qv_vec_init(&pool, sizeof(int32_t));
    qv_status st = QV_OK;
    size_t got = 0;
    for (size_t k = 0; k < d->n && got < n_pieces; k++) {
        int32_t *doc;
        size_t n;
        if ((st = encode_row(d, perm[k], encode, ctx, &doc, &n)) != QV_OK)
            break;
        if (n > piece_len) { /* only documents LONGER than a piece, truncated (§7.5) */
            st = push_ids(&pool, doc, piece_len);
            got++;
        }
        qv_free(doc);
        if (st != QV_OK)
            break;
    }
    qv_free(perm);
    if (st != QV_OK) {
        qv_vec_free(&pool);
        return st;
    }
    *pieces = pool.data;
    *n_got = got;
    return QV_OK;
}
