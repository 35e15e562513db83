/* arena.h — bump allocator for per-layer scratch: size first, one aligned allocation, pointers
 * carved out, reset between layers (after llm.c's malloc_and_point and ggml's context). */
#ifndef QV_ARENA_H
#define QV_ARENA_H

#include "common.h"

typedef struct qv_arena {
    unsigned char *base;
    size_t cap, used, peak;
} qv_arena;

#define QV_ARENA_ALIGN 64

qv_status qv_arena_init(qv_arena *a, size_t cap);
void qv_arena_free(qv_arena *a);
/* NULL (with the error set) when the arena is full. Memory is 64-byte aligned, uninitialised. */
void *qv_arena_alloc(qv_arena *a, size_t n);
static inline void qv_arena_reset(qv_arena *a) { a->used = 0; }
/* Rounds n up to the arena alignment: sum these to size an arena before creating it. */
static inline size_t qv_arena_round(size_t n) { return (n + QV_ARENA_ALIGN - 1) & ~(size_t)(QV_ARENA_ALIGN - 1); }

#endif
