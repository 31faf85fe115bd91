/*
 * mem.h - every allocation cport makes goes through these, so that
 * cp_replace_allocator() sees all of it (src/common is the layer below port
 * and net; it includes nothing of theirs).
 */
#ifndef CPORT_COMMON_MEM_H
#define CPORT_COMMON_MEM_H

#include "cport/alloc.h"

struct cp__mem_fns {
  cp_malloc_fn malloc;
  cp_realloc_fn realloc;
  cp_calloc_fn calloc;
  cp_free_fn free;
};

extern struct cp__mem_fns cp__mem_fns;

static inline void *mem_alloc(size_t n) {
  return cp__mem_fns.malloc(n);
}
static inline void *mem_calloc(size_t count, size_t n) {
  return cp__mem_fns.calloc(count, n);
}
static inline void *mem_realloc(void *p, size_t n) {
  return cp__mem_fns.realloc(p, n);
}
static inline void mem_free(void *p) {
  if (p)
    cp__mem_fns.free(p);
}

#endif
