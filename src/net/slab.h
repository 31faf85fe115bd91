/*
 * slab.h - fixed-size objects carved from larger chunks: no allocator header
 * per object (an idle session costs its own bytes, not malloc's 8 more; issue
 * 13). Chunks come from mem_alloc (cp_replace_allocator sees them) and are
 * freed by cp__slab_destroy only: freed objects are reused, last freed first
 * out, so a service keeps its peak number of sessions' chunks until it is
 * destroyed. Thread-safe: one spin lock, taken once per alloc and free (a
 * session's creation and its end, never per message).
 */
#ifndef CPORT_NET_SLAB_H
#define CPORT_NET_SLAB_H

#include "platform/platform.h"

#include <stddef.h>
#include <stdint.h>

struct cp__slab {
  cp__spin lock;
  uint32_t size;      /* each object's bytes (a multiple of 8) */
  uint32_t per_chunk; /* objects in a chunk */
  void *free;         /* freed objects, linked through their first word */
  char *bump;         /* the newest chunk's objects never handed out */
  uint32_t bump_left;
  void *chunks; /* every chunk, linked through its first word */
  size_t live;  /* objects handed out and not freed */
};

void cp__slab_init(struct cp__slab *s, size_t size, uint32_t per_chunk);
/* Free every chunk; every object was freed (asserted). */
void cp__slab_destroy(struct cp__slab *s);
/* size bytes, zeroed and 8-byte aligned, or NULL if out of memory. */
void *cp__slab_alloc(struct cp__slab *s);
/* Give back an object of this slab. */
void cp__slab_free(struct cp__slab *s, void *obj);

#endif /* CPORT_NET_SLAB_H */
