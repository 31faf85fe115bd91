/*
 * cport/alloc.h - the allocator cport uses for its own memory.
 */
#ifndef CPORT_ALLOC_H
#define CPORT_ALLOC_H

#include "cport/export.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void *(*cp_malloc_fn)(size_t size);
typedef void *(*cp_realloc_fn)(void *ptr, size_t size);
typedef void *(*cp_calloc_fn)(size_t count, size_t size);
typedef void (*cp_free_fn)(void *ptr);

/*
 * Replace the functions cport allocates its own memory with (like libuv's
 * uv_replace_allocator): for tracking, pools, or tests that make the n-th
 * allocation fail. All four must be given, and must behave like the standard
 * functions. Call it before any other cport function, from one thread; memory
 * allocated before the call must still be freed by the functions it was
 * allocated with, so never switch while cport objects exist. Returns 0, or
 * CP_EINVAL if a function is NULL.
 */
CP_API int cp_replace_allocator(cp_malloc_fn m, cp_realloc_fn r, cp_calloc_fn c, cp_free_fn f);

#ifdef __cplusplus
}
#endif

#endif /* CPORT_ALLOC_H */
