/* arena.c — see arena.h. */
#include "arena.h"

#include <stdlib.h>

qv_status qv_arena_init(qv_arena *a, size_t cap)
{
    a->used = a->peak = 0;
    a->cap = qv_arena_round(cap);
    a->base = qv_aligned_alloc(QV_ARENA_ALIGN, a->cap, "arena");
    return a->base ? QV_OK : QV_ERR_NOMEM;
}

void qv_arena_free(qv_arena *a)
{
    if (!a)
        return;
    free(a->base);
    a->base = NULL;
    a->cap = a->used = 0;
}

void *qv_arena_alloc(qv_arena *a, size_t n)
{
    size_t r = qv_arena_round(n);
    if (r < n || r > a->cap - a->used) {
        qv_fail(QV_ERR_NOMEM, "arena exhausted (%zu of %zu bytes used, %zu more requested)", a->used, a->cap, n);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += r;
    if (a->used > a->peak)
        a->peak = a->used;
    return p;
}
