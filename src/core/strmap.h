/* strmap.h — open-addressing hash map from byte strings to int64 values (tensor names,
 * vocabularies, merges). Keys are copied into the map's own storage. */
#ifndef QV_STRMAP_H
#define QV_STRMAP_H

#include <string.h>

#include "common.h"

typedef struct qv_strmap {
    struct qv_strmap_slot *slots; /* cap slots, cap a power of two */
    size_t cap, len;
} qv_strmap;

void qv_strmap_init(qv_strmap *m);
void qv_strmap_free(qv_strmap *m);
/* Inserts or overwrites. *existed (may be NULL) tells whether the key was present. */
qv_status qv_strmap_put(qv_strmap *m, const char *key, size_t klen, int64_t value, bool *existed);
/* Returns true and sets *value when found. */
bool qv_strmap_get(const qv_strmap *m, const char *key, size_t klen, int64_t *value);
static inline bool qv_strmap_gets(const qv_strmap *m, const char *key, int64_t *value)
{
    return qv_strmap_get(m, key, strlen(key), value);
}
uint64_t qv_hash_bytes(const void *p, size_t n);

#endif
