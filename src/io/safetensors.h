/* safetensors.h — memory-mapped safetensors reader (single files and sharded checkpoints with
 * model.safetensors.index.json) and a streaming, crash-safe writer (FORMATS.md §1).
 *
 * Reader: the 8-byte header length, the JSON header and every entry are validated before any
 * view is made (FORMATS.md §1.2 rules: known dtype, shape x dtype size = byte span, spans tile
 * the data area exactly, file ends at the last span, unique names, string-only metadata).
 * Tensor data is never copied: views point into the read-only map owned by the qv_st_file.
 *
 * Writer: tensors are declared first (name, dtype, shape); the layout is then fixed the way the
 * reference writer fixes it (dtype order, then name; header padded to 8 bytes) so our files are
 * byte-identical to safetensors' own; data is written with pwrite in any order and in parts;
 * the file lives under a temporary name until qv_st_writer_finish fsyncs and renames it. */
#ifndef QV_SAFETENSORS_H
#define QV_SAFETENSORS_H

#include "../core/strmap.h"
#include "../core/tensor.h"

#define QV_ST_MAX_HEADER 100000000ull

typedef struct qv_st_entry {
    char *name;
    qv_dtype dtype;
    int ndim;
    int64_t shape[QV_MAX_DIMS];
    uint64_t begin, end; /* byte span relative to the data area */
} qv_st_entry;

typedef struct qv_st_kv {
    char *key, *value;
} qv_st_kv;

typedef struct qv_st_header {
    size_t n;
    qv_st_entry *entries; /* in header order */
    size_t n_meta;
    qv_st_kv *meta;
    uint64_t header_len; /* N: JSON bytes after the 8-byte prefix */
    uint64_t data_len;
    qv_strmap by_name;   /* name -> index into entries */
} qv_st_header;

/* Validates a whole file image (header and the size of the data area). `what` names the file
 * in errors. Usable on any memory buffer (fuzzing). */
qv_status qv_st_parse(const uint8_t *file, size_t file_len, const char *what, qv_st_header *h);
void qv_st_header_free(qv_st_header *h);
const qv_st_entry *qv_st_header_find(const qv_st_header *h, const char *name);

typedef struct qv_st_file {
    char *path;
    uint8_t *map;
    size_t map_len;
    const uint8_t *data; /* start of the data area */
    qv_st_header hdr;
} qv_st_file;

qv_status qv_st_open(const char *path, qv_st_file **out);
void qv_st_close(qv_st_file *f);
/* View of a tensor (borrowed from the map). Error names the file when absent. */
qv_status qv_st_get(const qv_st_file *f, const char *name, qv_tensor *t);
void qv_st_view(const qv_st_file *f, const qv_st_entry *e, qv_tensor *t);

/* ---- checkpoints ---------------------------------------------------------------------------- */

struct qv_checkpoint {
    char *path;       /* the folder (or the single file) given to open */
    size_t n_shards;
    qv_st_file **shards;
    size_t n;         /* tensors over all shards */
    struct qv_ck_ref {
        uint32_t shard, entry;
    } *refs;          /* sorted by name */
    qv_strmap by_name; /* name -> index into refs */
    bool sharded;
};

/* model.safetensors.index.json: the weight_map's tensors, each with the shard that holds it.
 * Shard names must be plain file names (no folders). Usable on any memory buffer (fuzzing). */
typedef struct qv_st_index {
    size_t n;          /* tensors listed, in file order */
    char **names;      /* [n] */
    uint32_t *shard;   /* [n] index into shards */
    size_t n_shards;
    char **shards;     /* [n_shards] distinct shard file names, in order of first appearance */
} qv_st_index;
qv_status qv_st_index_parse(const char *text, size_t len, const char *what, qv_st_index *idx);
void qv_st_index_free(qv_st_index *idx);

const qv_st_entry *qv_checkpoint_entry(const qv_checkpoint *ck, size_t i, const qv_st_file **shard);
/* Lookup; NULL when absent. */
const qv_st_entry *qv_checkpoint_find(const qv_checkpoint *ck, const char *name, const qv_st_file **shard);
/* View of a tensor; "<path>: tensor <name> not found" when absent. */
qv_status qv_checkpoint_get(const qv_checkpoint *ck, const char *name, qv_tensor *t);
/* As qv_checkpoint_get, and checks the dtype class and shape: "<path>: tensor <name> has shape
 * [a,b], expected [c,d]". Floating dtypes (F32/F16/BF16) are accepted for float tensors. */
qv_status qv_checkpoint_get_shaped(const qv_checkpoint *ck, const char *name, int ndim, const int64_t *shape,
                                   qv_tensor *t);
/* Drops the pages of a tensor from this process (weights of a finished layer). */
void qv_checkpoint_release(const qv_checkpoint *ck, const qv_tensor *t);

/* ---- writer ----------------------------------------------------------------------------------- */

typedef struct qv_st_writer qv_st_writer;

/* meta may be NULL; "format":"pt" is always written. */
qv_status qv_st_writer_open(qv_st_writer **w, const char *path, const qv_st_kv *meta, size_t n_meta);
qv_status qv_st_writer_add(qv_st_writer *w, const char *name, qv_dtype dt, int ndim, const int64_t *shape);
/* Fixes the layout and writes the header. */
qv_status qv_st_writer_begin(qv_st_writer *w);
/* Writes bytes [offset, offset+n) of a declared tensor. */
qv_status qv_st_writer_put_part(qv_st_writer *w, const char *name, uint64_t offset, const void *data, size_t n);
qv_status qv_st_writer_put(qv_st_writer *w, const char *name, const void *data, size_t n);
/* Checks every byte was written, fsyncs and renames onto the destination; frees w. */
qv_status qv_st_writer_finish(qv_st_writer *w);
/* Removes the temporary file; frees w. Accepts NULL. */
void qv_st_writer_abort(qv_st_writer *w);
/* Bytes the file will have (valid after begin). */
uint64_t qv_st_writer_file_size(const qv_st_writer *w);

/* Convenience for small files: writes contiguous tensors in one call. */
typedef struct qv_st_item {
    const char *name;
    qv_dtype dtype;
    int ndim;
    int64_t shape[QV_MAX_DIMS];
    const void *data;
} qv_st_item;
qv_status qv_st_write_file(const char *path, const qv_st_item *items, size_t n, const qv_st_kv *meta, size_t n_meta);

/* Sharded checkpoint writer: tensors declared in order are packed greedily into shards of at
 * most max_shard_bytes (a larger tensor gets a shard of its own), named
 * <base>-00001-of-0000N.safetensors plus <base>.safetensors.index.json, or <base>.safetensors
 * alone when one shard suffices. */
typedef struct qv_st_sharded qv_st_sharded;
qv_status qv_st_sharded_open(qv_st_sharded **w, const char *dir, const char *base, uint64_t max_shard_bytes);
qv_status qv_st_sharded_add(qv_st_sharded *w, const char *name, qv_dtype dt, int ndim, const int64_t *shape);
qv_status qv_st_sharded_begin(qv_st_sharded *w);
qv_status qv_st_sharded_put_part(qv_st_sharded *w, const char *name, uint64_t offset, const void *data, size_t n);
qv_status qv_st_sharded_finish(qv_st_sharded *w);
void qv_st_sharded_abort(qv_st_sharded *w);

#endif
