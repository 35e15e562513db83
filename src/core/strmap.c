/* strmap.c — linear-probing hash map, FNV-1a-mixed hash (strmap.h). */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

struct qv_strmap_slot {
    char *key; /* NULL = empty */
    size_t klen;
    uint64_t hash;
    int64_t value;
};

uint64_t qv_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

void qv_strmap_init(qv_strmap *m)
{
    m->slots = NULL;
    m->cap = m->len = 0;
}

void qv_strmap_free(qv_strmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}

static struct qv_strmap_slot *find(const qv_strmap *m, const char *key, size_t klen, uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct qv_strmap_slot *s = &m->slots[i];
        if (!s->key || (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0))
            return s;
    }
}

static qv_status grow(qv_strmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    struct qv_strmap_slot *old = m->slots;
    size_t ocap = m->cap;
    m->slots = qv_calloc(ncap, sizeof *m->slots, "hash map");
    if (!m->slots) {
        m->slots = old;
        return QV_ERR_NOMEM;
    }
    m->cap = ncap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].key)
            *find(m, old[i].key, old[i].klen, old[i].hash) = old[i];
    free(old);
    return QV_OK;
}

qv_status qv_strmap_put(qv_strmap *m, const char *key, size_t klen, int64_t value, bool *existed)
{
    if ((m->len + 1) * 4 >= m->cap * 3)
        QV_TRY(grow(m));
    uint64_t h = qv_hash_bytes(key, klen);
    struct qv_strmap_slot *s = find(m, key, klen, h);
    if (existed)
        *existed = s->key != NULL;
    if (!s->key) {
        s->key = qv_strndup(key, klen);
        if (!s->key)
            return QV_ERR_NOMEM;
        s->klen = klen;
        s->hash = h;
        m->len++;
    }
    s->value = value;
    return QV_OK;
}

bool qv_strmap_get(const qv_strmap *m, const char *key, size_t klen, int64_t *value)
{
    if (!m->cap)
        return false;
    struct qv_strmap_slot *s = find(m, key, klen, qv_hash_bytes(key, klen));
    if (!s->key)
        return false;
    if (value)
        *value = s->value;
    return true;
}
