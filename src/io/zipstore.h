/* zipstore.h — the subset of the ZIP format that torch.save uses: uncompressed ("stored")
 * records with 64-byte aligned data, a central directory, and ZIP64 end records on read.
 *
 * Reader: maps the whole file, validates the end-of-central-directory record (plain or ZIP64)
 * and every central entry against the file size before handing out a view; compressed records
 * are refused (torch only writes stored ones; its mmap reader rejects the others too).
 * Writer: builds the archive in memory the way PyTorchStreamWriter lays it out (local header,
 * "FB" padding extra field so that data starts on a 64-byte boundary, CRC-32, central
 * directory, end record) and commits it crash-safely (temporary name, fsync, rename).
 * Archives above 4 GiB are refused on write: scale files are small. */
#ifndef QV_ZIPSTORE_H
#define QV_ZIPSTORE_H

#include "../core/common.h"

uint32_t qv_crc32(uint32_t crc, const void *data, size_t n);

typedef struct qv_zip_entry {
    char *name;
    const uint8_t *data; /* into the map */
    uint64_t size;
} qv_zip_entry;

typedef struct qv_zip {
    char *path;
    uint8_t *map;
    size_t map_len;
    size_t n;
    qv_zip_entry *entries;
} qv_zip;

qv_status qv_zip_open(const char *path, qv_zip **out);
/* Parses an archive image already in memory (not owned); `what` names it in errors. */
qv_status qv_zip_parse(const uint8_t *buf, size_t len, const char *what, qv_zip **out);
void qv_zip_close(qv_zip *z);
const qv_zip_entry *qv_zip_find(const qv_zip *z, const char *name);

typedef struct qv_zip_writer {
    uint8_t *buf;
    size_t len, cap;
    size_t n;
    struct qv_zip_wentry {
        char *name;
        uint32_t crc;
        uint64_t size, header_off;
    } *entries;
    bool oom;
} qv_zip_writer;

void qv_zip_writer_init(qv_zip_writer *w);
qv_status qv_zip_writer_add(qv_zip_writer *w, const char *name, const void *data, size_t n);
/* Writes the central directory and commits the archive to path (temp name + rename). */
qv_status qv_zip_writer_finish(qv_zip_writer *w, const char *path);
void qv_zip_writer_free(qv_zip_writer *w);

#endif
