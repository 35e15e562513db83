/* zipstore.c — stored-only ZIP reader and writer for torch.save archives (zipstore.h).
 * Layout written: PKWARE APPNOTE 6.3 local headers / central directory / end record, as
 * caffe2/serialize/inline_container.cc (PyTorchStreamWriter) lays them out: method 0, CRC-32,
 * a "FB" extra field of 'Z' bytes that pads each record's data to a 64-byte boundary. */
#include "zipstore.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/fsutil.h"

/* ---- CRC-32 (reflected, polynomial 0xEDB88320, as zlib) ------------------------------------ */

static uint32_t crc_table[256];
static bool crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    __atomic_store_n(&crc_ready, true, __ATOMIC_RELEASE);
}

uint32_t qv_crc32(uint32_t crc, const void *data, size_t n)
{
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE))
        crc_init(); /* idempotent: concurrent first calls compute the same table */
    const uint8_t *p = data;
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- little-endian helpers ------------------------------------------------------------------ */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* =========================================================================================
 * Reader
 * ========================================================================================= */

enum { SIG_LOCAL = 0x04034b50, SIG_CENTRAL = 0x02014b50, SIG_EOCD = 0x06054b50, SIG_EOCD64 = 0x06064b50,
       SIG_LOC64 = 0x07064b50 };

static qv_status find_eocd(const uint8_t *b, size_t len, const char *what, uint64_t *cd_off, uint64_t *cd_size,
                           uint64_t *count)
{
    if (len < 22)
        return qv_fail(QV_ERR_FORMAT, "%s: not a zip archive (too short)", what);
    size_t lo = len > 22 + 65535 ? len - 22 - 65535 : 0;
    size_t pos = len - 22 + 1;
    bool found = false;
    while (pos-- > lo) {
        if (rd32(b + pos) == SIG_EOCD && pos + 22 + rd16(b + pos + 20) == len) {
            found = true;
            break;
        }
    }
    if (!found)
        return qv_fail(QV_ERR_FORMAT, "%s: not a zip archive (no end-of-central-directory record)", what);
    const uint8_t *e = b + pos;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: multi-disk zip archives are not supported", what);
    *count = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    if (*count == 0xffff || *cd_size == 0xffffffffu || *cd_off == 0xffffffffu) {
        /* ZIP64: the locator sits just before the end record */
        if (pos < 20 || rd32(b + pos - 20) != SIG_LOC64)
            return qv_fail(QV_ERR_FORMAT, "%s: ZIP64 end record locator missing", what);
        uint64_t off64 = rd64(b + pos - 20 + 8);
        if (off64 > len || len - off64 < 56 || rd32(b + off64) != SIG_EOCD64)
            return qv_fail(QV_ERR_FORMAT, "%s: bad ZIP64 end record", what);
        *count = rd64(b + off64 + 32);
        *cd_size = rd64(b + off64 + 40);
        *cd_off = rd64(b + off64 + 48);
    }
    if (*cd_off > len || *cd_size > len - *cd_off)
        return qv_fail(QV_ERR_FORMAT, "%s: central directory lies outside the file", what);
    return QV_OK;
}

/* ZIP64 extended information (header id 1) overrides the 0xffffffff fields, in order. */
static qv_status zip64_extra(const uint8_t *x, size_t xlen, const char *what, uint64_t *usize, uint64_t *csize,
                             uint64_t *off)
{
    size_t i = 0;
    while (i + 4 <= xlen) {
        uint16_t id = rd16(x + i), sz = rd16(x + i + 2);
        if (i + 4 + sz > xlen)
            break;
        if (id == 1) {
            const uint8_t *p = x + i + 4, *end = p + sz;
            uint64_t *fields[3] = {usize, csize, off};
            for (int k = 0; k < 3; k++) {
                if (*fields[k] != 0xffffffffu)
                    continue;
                if (end - p < 8)
                    return qv_fail(QV_ERR_FORMAT, "%s: truncated ZIP64 extra field", what);
                *fields[k] = rd64(p);
                p += 8;
            }
            return QV_OK;
        }
        i += 4 + (size_t)sz;
    }
    return QV_OK;
}

static qv_status parse_entries(qv_zip *z, const uint8_t *b, size_t len, const char *what)
{
    uint64_t cd_off = 0, cd_size = 0, count = 0;
    QV_TRY(find_eocd(b, len, what, &cd_off, &cd_size, &count));
    if (count > cd_size / 46 + 1)
        return qv_fail(QV_ERR_FORMAT, "%s: central directory too small for %llu entries", what, (unsigned long long)count);
    z->entries = qv_calloc(count ? count : 1, sizeof *z->entries, "zip directory");
    if (!z->entries)
        return QV_ERR_NOMEM;
    const uint8_t *p = b + cd_off, *end = b + cd_off + cd_size;
    for (uint64_t k = 0; k < count; k++) {
        if (end - p < 46 || rd32(p) != SIG_CENTRAL)
            return qv_fail(QV_ERR_FORMAT, "%s: central directory entry %llu is corrupt", what, (unsigned long long)k);
        uint16_t method = rd16(p + 10), flags = rd16(p + 8);
        uint64_t csize = rd32(p + 20), usize = rd32(p + 24);
        size_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
        uint64_t loff = rd32(p + 42);
        if ((size_t)(end - p) < 46 + nlen + xlen + clen)
            return qv_fail(QV_ERR_FORMAT, "%s: central directory entry %llu is truncated", what, (unsigned long long)k);
        QV_TRY(zip64_extra(p + 46 + nlen, xlen, what, &usize, &csize, &loff));
        char *name = qv_strndup((const char *)p + 46, nlen);
        if (!name)
            return QV_ERR_NOMEM;
        z->entries[z->n].name = name;
        z->n++;
        if (memchr(name, 0, nlen))
            return qv_fail(QV_ERR_FORMAT, "%s: record name contains a NUL byte", what);
        if (method != 0 || csize != usize)
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: record %s is compressed (method %u); only stored records are read",
                           what, name, method);
        if (flags & 1)
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: record %s is encrypted", what, name);
        if (loff > len || len - loff < 30 || rd32(b + loff) != SIG_LOCAL)
            return qv_fail(QV_ERR_FORMAT, "%s: record %s: bad local header offset", what, name);
        uint64_t data_off = loff + 30 + rd16(b + loff + 26) + rd16(b + loff + 28);
        if (data_off > len || usize > len - data_off)
            return qv_fail(QV_ERR_FORMAT, "%s: record %s runs past the end of the file", what, name);
        z->entries[z->n - 1].data = b + data_off;
        z->entries[z->n - 1].size = usize;
        p += 46 + nlen + xlen + clen;
    }
    return QV_OK;
}

qv_status qv_zip_parse(const uint8_t *buf, size_t len, const char *what, qv_zip **out)
{
    *out = NULL;
    qv_zip *z = qv_calloc(1, sizeof *z, "zip");
    if (!z)
        return QV_ERR_NOMEM;
    z->path = qv_strdup(what);
    qv_status st = z->path ? parse_entries(z, buf, len, what) : QV_ERR_NOMEM;
    if (st != QV_OK) {
        qv_zip_close(z);
        return st;
    }
    *out = z;
    return QV_OK;
}

qv_status qv_zip_open(const char *path, qv_zip **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qv_fail(QV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qv_fail(QV_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *map = NULL;
    if (len) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return qv_fail(QV_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        }
    }
    close(fd);
    qv_zip *z;
    qv_status st = qv_zip_parse(map, len, path, &z);
    if (st != QV_OK) {
        if (map)
            munmap(map, len);
        return st;
    }
    z->map = map;
    z->map_len = len;
    *out = z;
    return QV_OK;
}

void qv_zip_close(qv_zip *z)
{
    if (!z)
        return;
    for (size_t i = 0; i < z->n; i++)
        qv_free(z->entries[i].name);
    qv_free(z->entries);
    if (z->map)
        munmap(z->map, z->map_len);
    qv_free(z->path);
    qv_free(z);
}

const qv_zip_entry *qv_zip_find(const qv_zip *z, const char *name)
{
    for (size_t i = 0; i < z->n; i++)
        if (strcmp(z->entries[i].name, name) == 0)
            return &z->entries[i];
    return NULL;
}

/* =========================================================================================
 * Writer
 * ========================================================================================= */

#define ZIP_ALIGN 64

void qv_zip_writer_init(qv_zip_writer *w) { memset(w, 0, sizeof *w); }

static void put(qv_zip_writer *w, const void *p, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *nb = qv_realloc(w->buf, cap, "zip archive");
        if (!nb) {
            w->oom = true;
            return;
        }
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put16(qv_zip_writer *w, uint32_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(w, b, 2);
}

static void put32(qv_zip_writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(w, b, 4);
}

/* DOS time 00:00:00, date 1980-01-01: torch writes the current time; a fixed stamp keeps our
 * files reproducible and no reader looks at it. */
enum { DOS_TIME = 0, DOS_DATE = (0 << 9) | (1 << 5) | 1 };

qv_status qv_zip_writer_add(qv_zip_writer *w, const char *name, const void *data, size_t n)
{
    size_t nlen = strlen(name);
    if (nlen > 0xffff || n >= 0xffffffffu || w->len >= 0xffffffffu - n - 4096)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: zip record too large for this writer", name);
    struct qv_zip_wentry *ne = qv_realloc(w->entries, (w->n + 1) * sizeof *ne, "zip directory");
    if (!ne)
        return QV_ERR_NOMEM;
    w->entries = ne;
    struct qv_zip_wentry *e = &w->entries[w->n];
    e->name = qv_strdup(name);
    if (!e->name)
        return QV_ERR_NOMEM;
    w->n++;
    e->crc = qv_crc32(0, data, n);
    e->size = n;
    e->header_off = w->len;
    /* the extra field: "FB", u16 size, then size 'Z' bytes, so that data lands on a multiple of
     * 64; a zero-size pad is still written (4 bytes), as PyTorchStreamWriter does */
    size_t start = w->len + 30 + nlen + 4;
    size_t pad = (ZIP_ALIGN - start % ZIP_ALIGN) % ZIP_ALIGN;
    put32(w, SIG_LOCAL);
    put16(w, 20);             /* version needed: 2.0 */
    put16(w, 0);              /* flags */
    put16(w, 0);              /* method: stored */
    put16(w, DOS_TIME);
    put16(w, DOS_DATE);
    put32(w, e->crc);
    put32(w, (uint32_t)n);
    put32(w, (uint32_t)n);
    put16(w, (uint32_t)nlen);
    put16(w, (uint32_t)(pad + 4));
    put(w, name, nlen);
    put(w, "FB", 2);
    put16(w, (uint32_t)pad);
    for (size_t i = 0; i < pad; i++)
        put(w, "Z", 1);
    put(w, data, n);
    return w->oom ? QV_ERR_NOMEM : QV_OK;
}

qv_status qv_zip_writer_finish(qv_zip_writer *w, const char *path)
{
    size_t cd_off = w->len;
    for (size_t i = 0; i < w->n; i++) {
        struct qv_zip_wentry *e = &w->entries[i];
        size_t nlen = strlen(e->name);
        put32(w, SIG_CENTRAL);
        put16(w, 20);  /* version made by */
        put16(w, 20);  /* version needed */
        put16(w, 0);
        put16(w, 0);
        put16(w, DOS_TIME);
        put16(w, DOS_DATE);
        put32(w, e->crc);
        put32(w, (uint32_t)e->size);
        put32(w, (uint32_t)e->size);
        put16(w, (uint32_t)nlen);
        put16(w, 0); /* extra */
        put16(w, 0); /* comment */
        put16(w, 0); /* disk */
        put16(w, 0); /* internal attributes */
        put32(w, 0); /* external attributes */
        put32(w, (uint32_t)e->header_off);
        put(w, e->name, nlen);
    }
    size_t cd_size = w->len - cd_off;
    if (w->n > 0xffff || w->len > 0xffffffffu)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: archive too large for this writer", path);
    put32(w, SIG_EOCD);
    put16(w, 0);
    put16(w, 0);
    put16(w, (uint32_t)w->n);
    put16(w, (uint32_t)w->n);
    put32(w, (uint32_t)cd_size);
    put32(w, (uint32_t)cd_off);
    put16(w, 0);
    if (w->oom)
        return QV_ERR_NOMEM;
    return qv_write_file_atomic(path, w->buf, w->len);
}

void qv_zip_writer_free(qv_zip_writer *w)
{
    for (size_t i = 0; i < w->n; i++)
        qv_free(w->entries[i].name);
    qv_free(w->entries);
    qv_free(w->buf);
    memset(w, 0, sizeof *w);
}
