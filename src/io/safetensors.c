/* safetensors.c — reader, checkpoint index and writer (safetensors.h, FORMATS.md §1). */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/fsutil.h"
#include "json.h"

/* =========================================================================================
 * Header parsing
 * ========================================================================================= */

static qv_status parse_u64(const qv_json *v, uint64_t *out)
{
    if (!qv_json_is_type(v, json_type_int))
        return QV_ERR_FORMAT;
    /* json-c keeps integers above INT64_MAX as uint64 */
    int64_t i = json_object_get_int64((qv_json *)v);
    if (i < 0)
        return QV_ERR_FORMAT;
    if (i == INT64_MAX) {
        uint64_t u = json_object_get_uint64((qv_json *)v);
        *out = u;
        return QV_OK;
    }
    *out = (uint64_t)i;
    return QV_OK;
}

static int cmp_begin(const void *a, const void *b)
{
    const qv_st_entry *x = *(const qv_st_entry *const *)a, *y = *(const qv_st_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static qv_status parse_entry(const char *what, const char *name, qv_json *v, qv_st_entry *e)
{
    if (!qv_json_is_type(v, json_type_object))
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: header entry is not an object", what, name);
    qv_json *dt = qv_json_get(v, "dtype"), *shape = qv_json_get(v, "shape"), *offs = qv_json_get(v, "data_offsets");
    if (!qv_json_is_type(dt, json_type_string))
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: missing or non-string \"dtype\"", what, name);
    const char *ds = json_object_get_string(dt);
    if (!qv_dtype_parse(ds, (size_t)json_object_get_string_len(dt), &e->dtype))
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: unknown or unsupported dtype \"%s\"", what, name, ds);
    if (!qv_json_is_type(shape, json_type_array))
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: missing or non-array \"shape\"", what, name);
    size_t nd = json_object_array_length(shape);
    if (nd > QV_MAX_DIMS)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: tensor %s: %zu dimensions (at most %d supported)", what, name, nd,
                       QV_MAX_DIMS);
    e->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (parse_u64(json_object_array_get_idx(shape, i), &d) != QV_OK || d > (uint64_t)INT64_MAX)
            return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: shape entries must be non-negative integers", what, name);
        e->shape[i] = (int64_t)d;
    }
    if (!qv_json_is_type(offs, json_type_array) || json_object_array_length(offs) != 2)
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: \"data_offsets\" must be [begin, end]", what, name);
    if (parse_u64(json_object_array_get_idx(offs, 0), &e->begin) != QV_OK ||
        parse_u64(json_object_array_get_idx(offs, 1), &e->end) != QV_OK)
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: \"data_offsets\" must be non-negative integers", what, name);
    if (e->begin > e->end)
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: data_offsets begin %llu > end %llu", what, name,
                       (unsigned long long)e->begin, (unsigned long long)e->end);
    /* numel x bits must equal the span; computed with overflow checks */
    uint64_t numel = 1;
    for (int i = 0; i < e->ndim; i++)
        if (__builtin_mul_overflow(numel, (uint64_t)e->shape[i], &numel))
            return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: shape overflows", what, name);
    uint64_t bits;
    if (__builtin_mul_overflow(numel, (uint64_t)qv_dtype_bits(e->dtype), &bits) || bits % 8)
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: shape overflows", what, name);
    if (bits / 8 != e->end - e->begin) {
        char sb[160];
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s: %s %s needs %llu bytes but data_offsets span %llu", what,
                       name, qv_dtype_name(e->dtype), qv_shape_str(sb, sizeof sb, e->ndim, e->shape),
                       (unsigned long long)(bits / 8), (unsigned long long)(e->end - e->begin));
    }
    return QV_OK;
}

static qv_status parse_meta(const char *what, qv_json *v, qv_st_header *h)
{
    if (!qv_json_is_type(v, json_type_object))
        return qv_fail(QV_ERR_FORMAT, "%s: __metadata__ is not an object", what);
    size_t n = (size_t)json_object_object_length(v);
    h->meta = qv_calloc(n ? n : 1, sizeof *h->meta, "safetensors metadata");
    if (!h->meta)
        return QV_ERR_NOMEM;
    json_object_object_foreach(v, key, val)
    {
        if (!qv_json_is_type(val, json_type_string))
            return qv_fail(QV_ERR_FORMAT, "%s: __metadata__ value of \"%s\" is not a string", what, key);
        qv_st_kv *kv = &h->meta[h->n_meta++];
        kv->key = qv_strdup(key);
        kv->value = qv_strndup(json_object_get_string(val), (size_t)json_object_get_string_len(val));
        if (!kv->key || !kv->value)
            return QV_ERR_NOMEM;
    }
    return QV_OK;
}

qv_status qv_st_parse(const uint8_t *file, size_t file_len, const char *what, qv_st_header *h)
{
    memset(h, 0, sizeof *h);
    qv_strmap_init(&h->by_name);
    if (file_len < 8)
        return qv_fail(QV_ERR_FORMAT, "%s: file too short for a safetensors header (%zu bytes)", what, file_len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | file[i];
    if (n > QV_ST_MAX_HEADER)
        return qv_fail(QV_ERR_FORMAT, "%s: header length %llu exceeds the 100000000-byte limit", what,
                       (unsigned long long)n);
    if (n > file_len - 8)
        return qv_fail(QV_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", what,
                       (unsigned long long)n, file_len);
    if (n < 2)
        return qv_fail(QV_ERR_FORMAT, "%s: header too short", what);
    h->header_len = n;
    h->data_len = file_len - 8 - n;
    qv_json *root = NULL;
    /* the reference writer pads with spaces, which the JSON parser accepts as trailing blanks */
    QV_TRY(qv_json_parse((const char *)file + 8, (size_t)n, what, QV_JSON_UNIQUE_KEYS, &root));
    qv_status st = QV_OK;
    if (!qv_json_is_type(root, json_type_object)) {
        st = qv_fail(QV_ERR_FORMAT, "%s: header is not a JSON object", what);
        goto done;
    }
    size_t total = (size_t)json_object_object_length(root);
    h->entries = qv_calloc(total ? total : 1, sizeof *h->entries, "safetensors header");
    if (!h->entries) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    json_object_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            QV_CHECK(st = parse_meta(what, val, h), done);
            continue;
        }
        qv_st_entry *e = &h->entries[h->n];
        QV_CHECK(st = parse_entry(what, key, val, e), done);
        e->name = qv_strdup(key);
        if (!e->name) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        h->n++;
        QV_CHECK(st = qv_strmap_put(&h->by_name, key, strlen(key), (int64_t)(h->n - 1), NULL), done);
    }
    /* the spans must tile [0, data_len) exactly */
    {
        const qv_st_entry **order = qv_malloc((h->n ? h->n : 1) * sizeof *order, "safetensors header");
        if (!order) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < h->n; i++)
            order[i] = &h->entries[i];
        qsort(order, h->n, sizeof *order, cmp_begin);
        uint64_t pos = 0;
        for (size_t i = 0; i < h->n && st == QV_OK; i++) {
            const qv_st_entry *e = order[i];
            if (e->begin < pos)
                st = qv_fail(QV_ERR_FORMAT, "%s: tensor %s overlaps %s", what, e->name, order[i - 1]->name);
            else if (e->begin > pos)
                st = qv_fail(QV_ERR_FORMAT, "%s: tensor %s: gap before data_offsets begin %llu", what, e->name,
                             (unsigned long long)e->begin);
            else if (e->end > h->data_len)
                st = qv_fail(QV_ERR_FORMAT, "%s: tensor %s: data_offsets end %llu runs past the end of the file", what,
                             e->name, (unsigned long long)e->end);
            pos = e->end;
        }
        qv_free(order);
        if (st == QV_OK && pos != h->data_len)
            st = qv_fail(QV_ERR_FORMAT, "%s: %llu trailing bytes after the last tensor", what,
                         (unsigned long long)(h->data_len - pos));
    }
done:
    qv_json_free(root);
    if (st != QV_OK)
        qv_st_header_free(h);
    return st;
}

void qv_st_header_free(qv_st_header *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        qv_free(h->entries[i].name);
    qv_free(h->entries);
    for (size_t i = 0; i < h->n_meta; i++) {
        qv_free(h->meta[i].key);
        qv_free(h->meta[i].value);
    }
    qv_free(h->meta);
    qv_strmap_free(&h->by_name);
    memset(h, 0, sizeof *h);
}

const qv_st_entry *qv_st_header_find(const qv_st_header *h, const char *name)
{
    int64_t i;
    if (!qv_strmap_get(&h->by_name, name, strlen(name), &i))
        return NULL;
    return &h->entries[i];
}

/* =========================================================================================
 * Files
 * ========================================================================================= */

qv_status qv_st_open(const char *path, qv_st_file **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO is refused, not waited on */
    if (fd < 0)
        return qv_fail(QV_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qv_fail(QV_ERR_IO, "%s: not a regular file", path);
    }
    qv_st_file *f = qv_calloc(1, sizeof *f, "safetensors file");
    if (!f) {
        close(fd);
        return QV_ERR_NOMEM;
    }
    f->path = qv_strdup(path);
    f->map_len = (size_t)sb.st_size;
    qv_status st = QV_OK;
    if (!f->path) {
        st = QV_ERR_NOMEM;
    } else if (f->map_len == 0) {
        st = qv_fail(QV_ERR_FORMAT, "%s: empty file", path);
    } else {
        void *m = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            st = qv_fail(QV_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        else
            f->map = m;
    }
    close(fd);
    if (st == QV_OK)
        st = qv_st_parse(f->map, f->map_len, path, &f->hdr);
    if (st != QV_OK) {
        qv_st_close(f);
        return st;
    }
    f->data = f->map + 8 + f->hdr.header_len;
    *out = f;
    return QV_OK;
}

void qv_st_close(qv_st_file *f)
{
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->map_len);
    qv_st_header_free(&f->hdr);
    qv_free(f->path);
    qv_free(f);
}

void qv_st_view(const qv_st_file *f, const qv_st_entry *e, qv_tensor *t)
{
    qv_tensor_view(t, e->dtype, (void *)(f->data + e->begin), e->ndim, e->shape);
}

qv_status qv_st_get(const qv_st_file *f, const char *name, qv_tensor *t)
{
    const qv_st_entry *e = qv_st_header_find(&f->hdr, name);
    if (!e)
        return qv_fail(QV_ERR_INVALID, "%s: tensor %s not found", f->path, name);
    qv_st_view(f, e, t);
    return QV_OK;
}

/* =========================================================================================
 * Checkpoints
 * ========================================================================================= */

static int cmp_ref_name(const void *a, const void *b, void *ctx)
{
    const qv_checkpoint *ck = ctx;
    const struct qv_ck_ref *x = a, *y = b;
    return strcmp(ck->shards[x->shard]->hdr.entries[x->entry].name, ck->shards[y->shard]->hdr.entries[y->entry].name);
}

static qv_status add_shard(qv_checkpoint *ck, const char *path)
{
    qv_st_file *f;
    QV_TRY(qv_st_open(path, &f));
    qv_st_file **s = qv_realloc(ck->shards, (ck->n_shards + 1) * sizeof *s, "checkpoint");
    if (!s) {
        qv_st_close(f);
        return QV_ERR_NOMEM;
    }
    ck->shards = s;
    ck->shards[ck->n_shards++] = f;
    return QV_OK;
}

static bool plain_file_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

void qv_st_index_free(qv_st_index *idx)
{
    if (!idx)
        return;
    for (size_t i = 0; i < idx->n; i++)
        qv_free(idx->names[i]);
    for (size_t i = 0; i < idx->n_shards; i++)
        qv_free(idx->shards[i]);
    qv_free(idx->names);
    qv_free(idx->shard);
    qv_free(idx->shards);
    memset(idx, 0, sizeof *idx);
}

qv_status qv_st_index_parse(const char *text, size_t len, const char *what, qv_st_index *idx)
{
    memset(idx, 0, sizeof *idx);
    qv_json *root = NULL, *wm;
    QV_TRY(qv_json_parse(text, len, what, 0, &root));
    qv_strmap shard_ids;
    qv_strmap_init(&shard_ids);
    qv_status st = qv_json_obj(root, "weight_map", what, &wm);
    size_t n = st == QV_OK ? (size_t)json_object_object_length(wm) : 0;
    if (st == QV_OK && n == 0)
        st = qv_fail(QV_ERR_FORMAT, "%s: weight_map is empty", what);
    if (st == QV_OK) {
        idx->names = qv_calloc(n, sizeof *idx->names, "checkpoint index");
        idx->shard = qv_calloc(n, sizeof *idx->shard, "checkpoint index");
        idx->shards = qv_calloc(n, sizeof *idx->shards, "checkpoint index");
        if (!idx->names || !idx->shard || !idx->shards)
            st = QV_ERR_NOMEM;
    }
    if (st != QV_OK)
        goto done;
    json_object_object_foreach(wm, tname, sval)
    {
        if (!qv_json_is_type(sval, json_type_string)) {
            st = qv_fail(QV_ERR_FORMAT, "%s: weight_map entry of %s is not a file name", what, tname);
            goto done;
        }
        const char *sname = json_object_get_string(sval);
        size_t slen = (size_t)json_object_get_string_len(sval);
        if (!plain_file_name(sname) || strlen(sname) != slen) {
            st = qv_fail(QV_ERR_FORMAT, "%s: weight_map entry of %s names \"%s\", not a file in the folder", what,
                         tname, sname);
            goto done;
        }
        int64_t sid;
        if (!qv_strmap_get(&shard_ids, sname, slen, &sid)) {
            sid = (int64_t)idx->n_shards;
            if (!(idx->shards[idx->n_shards] = qv_strdup(sname))) {
                st = QV_ERR_NOMEM;
                goto done;
            }
            idx->n_shards++;
            QV_CHECK(st = qv_strmap_put(&shard_ids, sname, slen, sid, NULL), done);
        }
        if (!(idx->names[idx->n] = qv_strdup(tname))) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        idx->shard[idx->n++] = (uint32_t)sid;
    }
done:
    qv_strmap_free(&shard_ids);
    qv_json_free(root);
    if (st != QV_OK)
        qv_st_index_free(idx);
    return st;
}

static qv_status open_index(qv_checkpoint *ck, const char *dir, const char *index_path)
{
    char *text;
    size_t len;
    QV_TRY(qv_read_file(index_path, QV_JSON_MAX_FILE, &text, &len));
    qv_st_index idx;
    qv_status st = qv_st_index_parse(text, len, index_path, &idx);
    qv_free(text);
    QV_TRY(st);
    /* open each distinct shard once, in order of first appearance */
    for (size_t s = 0; s < idx.n_shards && st == QV_OK; s++) {
        char *p = qv_path_join(dir, idx.shards[s]);
        if (!p)
            st = QV_ERR_NOMEM;
        else if (!qv_path_exists(p))
            st = qv_fail(QV_ERR_IO, "%s: shard %s is listed in the index but missing", index_path, idx.shards[s]);
        else
            st = add_shard(ck, p);
        qv_free(p);
    }
    /* every listed tensor must be in the shard the index names */
    for (size_t i = 0; i < idx.n && st == QV_OK; i++)
        if (!qv_st_header_find(&ck->shards[idx.shard[i]]->hdr, idx.names[i]))
            st = qv_fail(QV_ERR_FORMAT, "%s: tensor %s is listed in %s but that shard does not hold it", index_path,
                         idx.names[i], idx.shards[idx.shard[i]]);
    size_t held = 0;
    for (size_t i = 0; i < ck->n_shards; i++)
        held += ck->shards[i]->hdr.n;
    if (st == QV_OK && held != idx.n) {
        /* find one tensor the index does not list (or lists in another shard), to name it */
        qv_strmap listed;
        qv_strmap_init(&listed);
        for (size_t i = 0; i < idx.n && st == QV_OK; i++)
            st = qv_strmap_put(&listed, idx.names[i], strlen(idx.names[i]), (int64_t)idx.shard[i], NULL);
        for (size_t s = 0; s < ck->n_shards && st == QV_OK; s++)
            for (size_t j = 0; j < ck->shards[s]->hdr.n && st == QV_OK; j++) {
                const char *tn = ck->shards[s]->hdr.entries[j].name;
                int64_t sid;
                if (!qv_strmap_get(&listed, tn, strlen(tn), &sid) || (size_t)sid != s)
                    st = qv_fail(QV_ERR_FORMAT, "%s: tensor %s in shard %s is not listed in the index", index_path, tn,
                                 idx.shards[s]);
            }
        qv_strmap_free(&listed);
    }
    qv_st_index_free(&idx);
    return st;
}

qv_status qv_checkpoint_open(const char *path, qv_checkpoint **out)
{
    *out = NULL;
    qv_checkpoint *ck = qv_calloc(1, sizeof *ck, "checkpoint");
    if (!ck)
        return QV_ERR_NOMEM;
    qv_strmap_init(&ck->by_name);
    ck->path = qv_strdup(path);
    qv_status st = ck->path ? QV_OK : QV_ERR_NOMEM;
    if (st != QV_OK)
        goto fail;
    if (qv_is_dir(path)) {
        char *idx = qv_path_join(path, "model.safetensors.index.json");
        char *single = qv_path_join(path, "model.safetensors");
        if (!idx || !single) {
            st = QV_ERR_NOMEM;
        } else if (qv_path_exists(idx)) {
            ck->sharded = true;
            st = open_index(ck, path, idx);
        } else if (qv_path_exists(single)) {
            st = add_shard(ck, single);
        } else {
            st = qv_fail(QV_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json in the folder", path);
        }
        qv_free(idx);
        qv_free(single);
    } else if (qv_path_exists(path)) {
        st = add_shard(ck, path);
    } else {
        st = qv_fail(QV_ERR_IO, "%s: %s", path, strerror(ENOENT));
    }
    if (st != QV_OK)
        goto fail;
    for (size_t i = 0; i < ck->n_shards; i++)
        ck->n += ck->shards[i]->hdr.n;
    ck->refs = qv_calloc(ck->n ? ck->n : 1, sizeof *ck->refs, "checkpoint index");
    if (!ck->refs) {
        st = QV_ERR_NOMEM;
        goto fail;
    }
    size_t k = 0;
    for (size_t i = 0; i < ck->n_shards; i++)
        for (size_t j = 0; j < ck->shards[i]->hdr.n; j++)
            ck->refs[k++] = (struct qv_ck_ref){(uint32_t)i, (uint32_t)j};
    qsort_r(ck->refs, ck->n, sizeof *ck->refs, cmp_ref_name, ck);
    for (size_t i = 0; i < ck->n; i++) {
        const char *name = ck->shards[ck->refs[i].shard]->hdr.entries[ck->refs[i].entry].name;
        bool existed;
        QV_CHECK(st = qv_strmap_put(&ck->by_name, name, strlen(name), (int64_t)i, &existed), fail);
        if (existed) {
            st = qv_fail(QV_ERR_FORMAT, "%s: tensor %s appears in two shards", path, name);
            goto fail;
        }
    }
    *out = ck;
    return QV_OK;
fail:
    qv_checkpoint_close(ck);
    return st;
}

void qv_checkpoint_close(qv_checkpoint *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; i < ck->n_shards; i++)
        qv_st_close(ck->shards[i]);
    qv_free(ck->shards);
    qv_free(ck->refs);
    qv_strmap_free(&ck->by_name);
    qv_free(ck->path);
    qv_free(ck);
}

size_t qv_checkpoint_n_tensors(const qv_checkpoint *ck) { return ck ? ck->n : 0; }

const qv_st_entry *qv_checkpoint_entry(const qv_checkpoint *ck, size_t i, const qv_st_file **shard)
{
    const qv_st_file *f = ck->shards[ck->refs[i].shard];
    if (shard)
        *shard = f;
    return &f->hdr.entries[ck->refs[i].entry];
}

const qv_st_entry *qv_checkpoint_find(const qv_checkpoint *ck, const char *name, const qv_st_file **shard)
{
    int64_t i;
    if (!qv_strmap_get(&ck->by_name, name, strlen(name), &i))
        return NULL;
    return qv_checkpoint_entry(ck, (size_t)i, shard);
}

qv_status qv_checkpoint_get(const qv_checkpoint *ck, const char *name, qv_tensor *t)
{
    const qv_st_file *f;
    const qv_st_entry *e = qv_checkpoint_find(ck, name, &f);
    if (!e)
        return qv_fail(QV_ERR_INVALID, "%s: tensor %s not found", ck->path, name);
    qv_st_view(f, e, t);
    return QV_OK;
}

qv_status qv_checkpoint_get_shaped(const qv_checkpoint *ck, const char *name, int ndim, const int64_t *shape,
                                   qv_tensor *t)
{
    QV_TRY(qv_checkpoint_get(ck, name, t));
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char a[160], b[160];
        return qv_fail(QV_ERR_INVALID, "%s: tensor %s has shape %s, expected %s", ck->path, name,
                       qv_shape_str(a, sizeof a, t->ndim, t->shape), qv_shape_str(b, sizeof b, ndim, shape));
    }
    if (t->dtype != QV_F32 && t->dtype != QV_BF16 && t->dtype != QV_F16)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (F32, F16 or BF16 expected)", ck->path, name,
                       qv_dtype_name(t->dtype));
    return QV_OK;
}

void qv_checkpoint_release(const qv_checkpoint *ck, const qv_tensor *t)
{
    (void)ck;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data, e = a + qv_tensor_nbytes(t);
    uintptr_t pa = (a + (uintptr_t)page - 1) & ~((uintptr_t)page - 1), pe = e & ~((uintptr_t)page - 1);
    if (pe > pa)
        madvise((void *)pa, pe - pa, MADV_DONTNEED);
}

/* =========================================================================================
 * Writer
 * ========================================================================================= */

typedef struct wentry {
    char *name;
    qv_dtype dtype;
    int ndim;
    int64_t shape[QV_MAX_DIMS];
    uint64_t begin, end, written;
} wentry;

struct qv_st_writer {
    char *path, *tmp;
    int fd;
    qv_vec entries; /* wentry */
    qv_strmap by_name;
    qv_vec meta;    /* qv_st_kv */
    uint64_t data_off, file_size;
    bool begun;
};

/* The reference writer's order: the reverse of its dtype enum (FORMATS.md §1.3). */
static int dtype_rank(qv_dtype dt)
{
    static const qv_dtype order[] = {QV_U64, QV_I64, QV_F64, QV_F32, QV_U32, QV_I32, QV_BF16, QV_F16, QV_U16,
                                     QV_I16, QV_F8_E8M0, QV_F8_E4M3, QV_F8_E5M2, QV_I8, QV_U8, QV_BOOL};
    for (size_t i = 0; i < QV_ARRAY_LEN(order); i++)
        if (order[i] == dt)
            return (int)i;
    return 100;
}

static int cmp_wentry(const void *a, const void *b)
{
    const wentry *x = *(const wentry *const *)a, *y = *(const wentry *const *)b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry)
        return rx - ry;
    return strcmp(x->name, y->name);
}

static int cmp_kv(const void *a, const void *b) { return strcmp(((const qv_st_kv *)a)->key, ((const qv_st_kv *)b)->key); }

qv_status qv_st_writer_open(qv_st_writer **out, const char *path, const qv_st_kv *meta, size_t n_meta)
{
    *out = NULL;
    qv_st_writer *w = qv_calloc(1, sizeof *w, "safetensors writer");
    if (!w)
        return QV_ERR_NOMEM;
    w->fd = -1;
    qv_vec_init(&w->entries, sizeof(wentry));
    qv_vec_init(&w->meta, sizeof(qv_st_kv));
    qv_strmap_init(&w->by_name);
    qv_status st = QV_OK;
    w->path = qv_strdup(path);
    if (!w->path) {
        st = QV_ERR_NOMEM;
        goto fail;
    }
    bool have_format = false;
    for (size_t i = 0; i < n_meta; i++)
        have_format |= strcmp(meta[i].key, "format") == 0;
    if (!have_format) {
        qv_st_kv kv = {qv_strdup("format"), qv_strdup("pt")};
        QV_CHECK(st = qv_vec_push(&w->meta, &kv), fail);
    }
    for (size_t i = 0; i < n_meta; i++) {
        qv_st_kv kv = {qv_strdup(meta[i].key), qv_strdup(meta[i].value)};
        QV_CHECK(st = qv_vec_push(&w->meta, &kv), fail);
    }
    for (size_t i = 0; i < w->meta.len; i++) {
        qv_st_kv *kv = &QV_VEC_AT(&w->meta, qv_st_kv, i);
        if (!kv->key || !kv->value) {
            st = QV_ERR_NOMEM;
            goto fail;
        }
    }
    *out = w;
    return QV_OK;
fail:
    qv_st_writer_abort(w);
    return st;
}

qv_status qv_st_writer_add(qv_st_writer *w, const char *name, qv_dtype dt, int ndim, const int64_t *shape)
{
    if (w->begun)
        return qv_fail(QV_ERR_INTERNAL, "%s: tensor %s declared after the header was written", w->path, name);
    if (ndim < 0 || ndim > QV_MAX_DIMS || (unsigned)dt >= QV_DTYPE_COUNT)
        return qv_fail(QV_ERR_INVALID, "%s: tensor %s: bad dtype or rank", w->path, name);
    if (qv_strmap_get(&w->by_name, name, strlen(name), NULL))
        return qv_fail(QV_ERR_INVALID, "%s: tensor %s declared twice", w->path, name);
    /* validate before anything is recorded: a refused tensor leaves no trace in the map */
    wentry e = {0};
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return qv_fail(QV_ERR_INVALID, "%s: tensor %s: negative dimension", w->path, name);
        e.shape[i] = shape[i];
    }
    e.name = qv_strdup(name);
    if (!e.name)
        return QV_ERR_NOMEM;
    e.dtype = dt;
    e.ndim = ndim;
    qv_status st = qv_vec_push(&w->entries, &e);
    if (st == QV_OK && (st = qv_strmap_put(&w->by_name, name, strlen(name), (int64_t)w->entries.len - 1, NULL)) != QV_OK)
        w->entries.len--;
    if (st != QV_OK)
        qv_free(e.name);
    return st;
}

static qv_status build_header(qv_st_writer *w, qv_strbuf *sb)
{
    size_t n = w->entries.len;
    wentry **order = qv_malloc((n ? n : 1) * sizeof *order, "safetensors header");
    if (!order)
        return QV_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        order[i] = &QV_VEC_AT(&w->entries, wentry, i);
    qsort(order, n, sizeof *order, cmp_wentry);
    qsort(w->meta.data, w->meta.len, sizeof(qv_st_kv), cmp_kv);
    qv_sb_puts(sb, "{\"__metadata__\":{");
    for (size_t i = 0; i < w->meta.len; i++) {
        qv_st_kv *kv = &QV_VEC_AT(&w->meta, qv_st_kv, i);
        if (i)
            qv_sb_puts(sb, ",");
        qv_sb_json_str(sb, kv->key, strlen(kv->key));
        qv_sb_puts(sb, ":");
        qv_sb_json_str(sb, kv->value, strlen(kv->value));
    }
    qv_sb_puts(sb, "}");
    uint64_t off = 0;
    qv_status st = QV_OK;
    for (size_t i = 0; i < n; i++) {
        wentry *e = order[i];
        int64_t numel;
        uint64_t bytes;
        if (!qv_shape_numel(e->ndim, e->shape, &numel) ||
            __builtin_mul_overflow((uint64_t)numel, (uint64_t)qv_dtype_size(e->dtype), &bytes) ||
            __builtin_add_overflow(off, bytes, &e->end)) {
            st = qv_fail(QV_ERR_INVALID, "%s: tensor %s is too large", w->path, e->name);
            break;
        }
        e->begin = off;
        off = e->end;
        qv_sb_puts(sb, ",");
        qv_sb_json_str(sb, e->name, strlen(e->name));
        qv_sb_printf(sb, ":{\"dtype\":\"%s\",\"shape\":[", qv_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++)
            qv_sb_printf(sb, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        qv_sb_printf(sb, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)e->begin, (unsigned long long)e->end);
    }
    qv_sb_puts(sb, "}");
    while (sb->len % 8)
        qv_sb_puts(sb, " ");
    qv_free(order);
    if (st == QV_OK && sb->oom)
        st = QV_ERR_NOMEM;
    if (st == QV_OK && sb->len > QV_ST_MAX_HEADER)
        st = qv_fail(QV_ERR_INVALID, "%s: header would exceed 100000000 bytes", w->path);
    w->data_off = 8 + sb->len;
    w->file_size = w->data_off + off;
    return st;
}

static qv_status pwrite_all(qv_st_writer *w, const void *data, size_t n, uint64_t off)
{
    const char *p = data;
    while (n) {
        ssize_t k = pwrite(w->fd, p, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return qv_fail(QV_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return QV_OK;
}

qv_status qv_st_writer_begin(qv_st_writer *w)
{
    qv_strbuf sb;
    qv_sb_init(&sb);
    qv_status st = build_header(w, &sb);
    if (st == QV_OK) {
        static unsigned counter;
        w->tmp = qv_asprintf("%s.tmp.%ld.%u", w->path, (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
        if (!w->tmp)
            st = QV_ERR_NOMEM;
    }
    if (st == QV_OK) {
        qv_remove_stale_temps(w->path);
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (w->fd < 0)
            st = qv_fail(QV_ERR_IO, "%s: cannot create: %s", w->path, strerror(errno));
    }
    if (st == QV_OK) {
        uint8_t len8[8];
        uint64_t n = sb.len;
        for (int i = 0; i < 8; i++)
            len8[i] = (uint8_t)(n >> (8 * i));
        st = pwrite_all(w, len8, 8, 0);
        if (st == QV_OK)
            st = pwrite_all(w, sb.s, sb.len, 8);
        /* reserve the whole file now, so a full disk fails here rather than half-way */
        if (st == QV_OK && w->file_size > w->data_off) {
            int e = posix_fallocate(w->fd, (off_t)w->data_off, (off_t)(w->file_size - w->data_off));
            if (e == ENOSPC || e == EFBIG)
                st = qv_fail(QV_ERR_IO, "%s: no space for %llu bytes: %s", w->path, (unsigned long long)w->file_size,
                             strerror(e));
            else if (e != 0 && ftruncate(w->fd, (off_t)w->file_size) != 0)
                st = qv_fail(QV_ERR_IO, "%s: cannot size file: %s", w->path, strerror(errno));
        }
    }
    qv_sb_free(&sb);
    w->begun = st == QV_OK;
    return st;
}

uint64_t qv_st_writer_file_size(const qv_st_writer *w) { return w->file_size; }

qv_status qv_st_writer_put_part(qv_st_writer *w, const char *name, uint64_t offset, const void *data, size_t n)
{
    int64_t i;
    if (!w->begun)
        return qv_fail(QV_ERR_INTERNAL, "%s: data written before the header", w->path);
    if (!qv_strmap_get(&w->by_name, name, strlen(name), &i))
        return qv_fail(QV_ERR_INTERNAL, "%s: tensor %s was not declared", w->path, name);
    wentry *e = &QV_VEC_AT(&w->entries, wentry, i);
    if (offset > e->end - e->begin || n > e->end - e->begin - offset)
        return qv_fail(QV_ERR_INTERNAL, "%s: tensor %s: write past its %llu bytes", w->path, name,
                       (unsigned long long)(e->end - e->begin));
    QV_TRY(pwrite_all(w, data, n, w->data_off + e->begin + offset));
    e->written += n;
    return QV_OK;
}

qv_status qv_st_writer_put(qv_st_writer *w, const char *name, const void *data, size_t n)
{
    return qv_st_writer_put_part(w, name, 0, data, n);
}

static void writer_free(qv_st_writer *w)
{
    for (size_t i = 0; i < w->entries.len; i++)
        qv_free(QV_VEC_AT(&w->entries, wentry, i).name);
    qv_vec_free(&w->entries);
    for (size_t i = 0; i < w->meta.len; i++) {
        qv_free(QV_VEC_AT(&w->meta, qv_st_kv, i).key);
        qv_free(QV_VEC_AT(&w->meta, qv_st_kv, i).value);
    }
    qv_vec_free(&w->meta);
    qv_strmap_free(&w->by_name);
    qv_free(w->path);
    qv_free(w->tmp);
    qv_free(w);
}

qv_status qv_st_writer_finish(qv_st_writer *w)
{
    qv_status st = QV_OK;
    if (!w->begun)
        st = qv_st_writer_begin(w);
    for (size_t i = 0; st == QV_OK && i < w->entries.len; i++) {
        wentry *e = &QV_VEC_AT(&w->entries, wentry, i);
        if (e->written != e->end - e->begin)
            st = qv_fail(QV_ERR_INTERNAL, "%s: tensor %s: %llu of %llu bytes written", w->path, e->name,
                         (unsigned long long)e->written, (unsigned long long)(e->end - e->begin));
    }
    if (st == QV_OK && fsync(w->fd) != 0)
        st = qv_fail(QV_ERR_IO, "%s: fsync failed: %s", w->path, strerror(errno));
    if (w->fd >= 0 && close(w->fd) != 0 && st == QV_OK)
        st = qv_fail(QV_ERR_IO, "%s: close failed: %s", w->path, strerror(errno));
    w->fd = -1;
    if (st == QV_OK && rename(w->tmp, w->path) != 0)
        st = qv_fail(QV_ERR_IO, "%s: rename failed: %s", w->path, strerror(errno));
    if (st != QV_OK) {
        qv_st_writer_abort(w);
        return st;
    }
    char *d = qv_path_dirname(w->path);
    if (d)
        qv_fsync_dir(d);
    qv_free(d);
    writer_free(w);
    return QV_OK;
}

void qv_st_writer_abort(qv_st_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp)
        unlink(w->tmp);
    writer_free(w);
}

qv_status qv_st_write_file(const char *path, const qv_st_item *items, size_t n, const qv_st_kv *meta, size_t n_meta)
{
    qv_st_writer *w;
    QV_TRY(qv_st_writer_open(&w, path, meta, n_meta));
    qv_status st = QV_OK;
    for (size_t i = 0; i < n && st == QV_OK; i++)
        st = qv_st_writer_add(w, items[i].name, items[i].dtype, items[i].ndim, items[i].shape);
    if (st == QV_OK)
        st = qv_st_writer_begin(w);
    for (size_t i = 0; i < n && st == QV_OK; i++) {
        int64_t numel;
        qv_shape_numel(items[i].ndim, items[i].shape, &numel);
        st = qv_st_writer_put(w, items[i].name, items[i].data, (size_t)numel * qv_dtype_size(items[i].dtype));
    }
    if (st != QV_OK) {
        qv_st_writer_abort(w);
        return st;
    }
    return qv_st_writer_finish(w);
}

/* =========================================================================================
 * Sharded writer
 * ========================================================================================= */

typedef struct sentry {
    char *name;
    qv_dtype dtype;
    int ndim;
    int64_t shape[QV_MAX_DIMS];
    uint64_t bytes;
    uint32_t shard;
} sentry;

struct qv_st_sharded {
    char *dir, *base;
    uint64_t max_bytes, total;
    qv_vec entries; /* sentry */
    qv_strmap by_name;
    size_t n_shards;
    qv_st_writer **writers;
    char **shard_names;
};

qv_status qv_st_sharded_open(qv_st_sharded **out, const char *dir, const char *base, uint64_t max_shard_bytes)
{
    qv_st_sharded *w = qv_calloc(1, sizeof *w, "sharded writer");
    *out = NULL;
    if (!w)
        return QV_ERR_NOMEM;
    w->dir = qv_strdup(dir);
    w->base = qv_strdup(base);
    w->max_bytes = max_shard_bytes ? max_shard_bytes : UINT64_MAX;
    qv_vec_init(&w->entries, sizeof(sentry));
    qv_strmap_init(&w->by_name);
    if (!w->dir || !w->base) {
        qv_st_sharded_abort(w);
        return QV_ERR_NOMEM;
    }
    *out = w;
    return QV_OK;
}

qv_status qv_st_sharded_add(qv_st_sharded *w, const char *name, qv_dtype dt, int ndim, const int64_t *shape)
{
    sentry e = {0};
    int64_t numel;
    if (ndim < 0 || ndim > QV_MAX_DIMS || !qv_shape_numel(ndim, shape, &numel))
        return qv_fail(QV_ERR_INVALID, "%s: tensor %s: bad shape", w->dir, name);
    if (qv_strmap_get(&w->by_name, name, strlen(name), NULL))
        return qv_fail(QV_ERR_INVALID, "%s: tensor %s declared twice", w->dir, name);
    uint64_t total;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)qv_dtype_size(dt), &e.bytes) ||
        __builtin_add_overflow(w->total, e.bytes, &total))
        return qv_fail(QV_ERR_INVALID, "%s: tensor %s is too large", w->dir, name);
    e.name = qv_strdup(name);
    if (!e.name)
        return QV_ERR_NOMEM;
    e.dtype = dt;
    e.ndim = ndim;
    memcpy(e.shape, shape, (size_t)ndim * sizeof *shape);
    qv_status st = qv_vec_push(&w->entries, &e);
    if (st == QV_OK && (st = qv_strmap_put(&w->by_name, name, strlen(name), (int64_t)w->entries.len - 1, NULL)) != QV_OK)
        w->entries.len--;
    if (st != QV_OK) {
        qv_free(e.name);
        return st;
    }
    w->total = total;
    return QV_OK;
}

qv_status qv_st_sharded_begin(qv_st_sharded *w)
{
    /* greedy packing in declaration order, as transformers' shard_checkpoint */
    uint64_t cur = 0;
    size_t shard = 0;
    for (size_t i = 0; i < w->entries.len; i++) {
        sentry *e = &QV_VEC_AT(&w->entries, sentry, i);
        if (cur > 0 && cur + e->bytes > w->max_bytes) {
            shard++;
            cur = 0;
        }
        e->shard = (uint32_t)shard;
        cur += e->bytes;
    }
    w->n_shards = w->entries.len ? shard + 1 : 1;
    w->writers = qv_calloc(w->n_shards, sizeof *w->writers, "sharded writer");
    w->shard_names = qv_calloc(w->n_shards, sizeof *w->shard_names, "sharded writer");
    if (!w->writers || !w->shard_names)
        return QV_ERR_NOMEM;
    for (size_t s = 0; s < w->n_shards; s++) {
        if (w->n_shards == 1)
            w->shard_names[s] = qv_asprintf("%s.safetensors", w->base);
        else
            w->shard_names[s] = qv_asprintf("%s-%05zu-of-%05zu.safetensors", w->base, s + 1, w->n_shards);
        if (!w->shard_names[s])
            return QV_ERR_NOMEM;
        char *p = qv_path_join(w->dir, w->shard_names[s]);
        if (!p)
            return QV_ERR_NOMEM;
        qv_status st = qv_st_writer_open(&w->writers[s], p, NULL, 0);
        qv_free(p);
        QV_TRY(st);
    }
    for (size_t i = 0; i < w->entries.len; i++) {
        sentry *e = &QV_VEC_AT(&w->entries, sentry, i);
        QV_TRY(qv_st_writer_add(w->writers[e->shard], e->name, e->dtype, e->ndim, e->shape));
    }
    for (size_t s = 0; s < w->n_shards; s++)
        QV_TRY(qv_st_writer_begin(w->writers[s]));
    return QV_OK;
}

qv_status qv_st_sharded_put_part(qv_st_sharded *w, const char *name, uint64_t offset, const void *data, size_t n)
{
    int64_t i;
    if (!qv_strmap_get(&w->by_name, name, strlen(name), &i))
        return qv_fail(QV_ERR_INTERNAL, "%s: tensor %s was not declared", w->dir, name);
    return qv_st_writer_put_part(w->writers[QV_VEC_AT(&w->entries, sentry, i).shard], name, offset, data, n);
}

static int cmp_sentry_name(const void *a, const void *b)
{
    return strcmp((*(const sentry *const *)a)->name, (*(const sentry *const *)b)->name);
}

qv_status qv_st_sharded_finish(qv_st_sharded *w)
{
    qv_status st = QV_OK;
    for (size_t s = 0; s < w->n_shards && st == QV_OK; s++) {
        st = qv_st_writer_finish(w->writers[s]);
        w->writers[s] = NULL;
    }
    if (st == QV_OK && w->n_shards > 1) {
        size_t n = w->entries.len;
        sentry **order = qv_malloc(n * sizeof *order, "index");
        qv_strbuf sb;
        qv_sb_init(&sb);
        if (!order) {
            st = QV_ERR_NOMEM;
        } else {
            for (size_t i = 0; i < n; i++)
                order[i] = &QV_VEC_AT(&w->entries, sentry, i);
            qsort(order, n, sizeof *order, cmp_sentry_name);
            qv_sb_printf(&sb, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {",
                         (unsigned long long)w->total);
            for (size_t i = 0; i < n; i++) {
                qv_sb_puts(&sb, i ? ",\n    " : "\n    ");
                qv_sb_json_str(&sb, order[i]->name, strlen(order[i]->name));
                qv_sb_puts(&sb, ": ");
                const char *sn = w->shard_names[order[i]->shard];
                qv_sb_json_str(&sb, sn, strlen(sn));
            }
            qv_sb_puts(&sb, "\n  }\n}\n");
            char *ip = qv_asprintf("%s/%s.safetensors.index.json", w->dir, w->base);
            if (sb.oom || !ip)
                st = QV_ERR_NOMEM;
            else
                st = qv_write_file_atomic(ip, sb.s, sb.len);
            qv_free(ip);
        }
        qv_free(order);
        qv_sb_free(&sb);
    }
    qv_st_sharded_abort(w);
    return st;
}

void qv_st_sharded_abort(qv_st_sharded *w)
{
    if (!w)
        return;
    for (size_t s = 0; s < w->n_shards; s++) {
        if (w->writers)
            qv_st_writer_abort(w->writers[s]);
        if (w->shard_names)
            qv_free(w->shard_names[s]);
    }
    qv_free(w->writers);
    qv_free(w->shard_names);
    for (size_t i = 0; i < w->entries.len; i++)
        qv_free(QV_VEC_AT(&w->entries, sentry, i).name);
    qv_vec_free(&w->entries);
    qv_strmap_free(&w->by_name);
    qv_free(w->dir);
    qv_free(w->base);
    qv_free(w);
}
