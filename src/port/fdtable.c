/*
 * fdtable.c - per-fd state, found by fd number without a lock.
 *
 * Two levels: a fixed array of chunk pointers and chunks of FDT_CHUNK entries,
 * allocated on first use and never moved or freed until the port goes. So a
 * lookup (cp__fdtable_get, inline in port_internal.h) is two loads, and memory grows with the
 * highest fd, in 1024-entry steps, not with the number of ports or ops.
 */
#define _GNU_SOURCE
#include "port/port_internal.h"

#include <errno.h>
#include <stdlib.h>

int cp__fdtable_init(struct fdtable *t) {
  for (unsigned i = 0; i < FDT_CHUNKS; i++)
    atomic_init(&t->chunks[i], NULL);
  return cp__mutex_init(&t->grow);
}

void cp__fdtable_free(struct fdtable *t) {
  for (unsigned i = 0; i < FDT_CHUNKS; i++) {
    struct fdent *c = atomic_load_explicit(&t->chunks[i], memory_order_relaxed);
    if (!c)
      continue;
    mem_free(c);
  }
  cp__mutex_destroy(&t->grow);
}

struct fdent *cp__fdtable_make(struct fdtable *t, int fd) {
  struct fdent *e = cp__fdtable_get(t, fd);
  if (e || fd < 0 || (unsigned)fd >= FDT_CHUNK * FDT_CHUNKS)
    return e;
  cp__mutex_lock(&t->grow);
  unsigned ci = (unsigned)fd >> FDT_CHUNK_BITS;
  struct fdent *c = atomic_load_explicit(&t->chunks[ci], memory_order_relaxed);
  if (!c) {
    c = mem_calloc(FDT_CHUNK, sizeof *c);
    if (c) {
      atomic_store_explicit(&t->chunks[ci], c, memory_order_release);
    }
  }
  cp__mutex_unlock(&t->grow);
  return c ? &c[(unsigned)fd & (FDT_CHUNK - 1)] : NULL;
}
