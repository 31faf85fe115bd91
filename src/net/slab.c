/*
 * slab.c - fixed-size objects carved from larger chunks (see slab.h).
 *
 * Under AddressSanitizer every object not handed out is poisoned (a freed
 * session's use is reported, until the object is handed out again), and the
 * chunks are an allocation like any other for its leak check.
 */
#include "net/slab.h"

#include "common/asan.h"
#include "common/mem.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

/* A chunk: its link to the next chunk, then the objects (8-aligned). */
#define CHUNK_HEAD 16

void cp__slab_init(struct cp__slab *s, size_t size, uint32_t per_chunk) {
  assert(size >= sizeof(void *) && size % 8 == 0 && size <= UINT32_MAX && per_chunk > 0);
  memset(s, 0, sizeof *s);
  cp__spin_init(&s->lock);
  s->size = (uint32_t)size;
  s->per_chunk = per_chunk;
}

void cp__slab_destroy(struct cp__slab *s) {
  assert(s->live == 0); /* every object came back */
  for (void *c = s->chunks; c;) {
    CP__UNPOISON(c, CHUNK_HEAD + (size_t)s->size * s->per_chunk);
    void *next = *(void **)c;
    mem_free(c);
    c = next;
  }
  memset(s, 0, sizeof *s);
}

void *cp__slab_alloc(struct cp__slab *s) {
  void *obj = NULL;
  for (;;) {
    cp__spin_lock(&s->lock);
    if (s->free) {
      obj = s->free;
      CP__UNPOISON(obj, s->size);
      s->free = *(void **)obj;
    } else if (s->bump_left) {
      obj = s->bump;
      CP__UNPOISON(obj, s->size);
      s->bump += s->size;
      s->bump_left--;
    }
    if (obj) {
      s->live++;
      cp__spin_unlock(&s->lock);
      memset(obj, 0, s->size);
      return obj;
    }
    cp__spin_unlock(&s->lock);
    /* A new chunk, allocated outside the lock; its objects are handed out
     * as they are needed, so its pages are touched only then. */
    char *c = mem_alloc(CHUNK_HEAD + (size_t)s->size * s->per_chunk);
    if (!c)
      return NULL;
    CP__POISON(c + CHUNK_HEAD, (size_t)s->size * s->per_chunk);
    cp__spin_lock(&s->lock);
    bool mine = !s->bump_left; /* else another thread added one meanwhile */
    if (mine) {
      *(void **)(void *)c = s->chunks;
      s->chunks = c;
      s->bump = c + CHUNK_HEAD;
      s->bump_left = s->per_chunk;
    }
    cp__spin_unlock(&s->lock);
    if (!mine) {
      CP__UNPOISON(c + CHUNK_HEAD, (size_t)s->size * s->per_chunk);
      mem_free(c);
    }
  }
}

void cp__slab_free(struct cp__slab *s, void *obj) {
  if (!obj)
    return;
  cp__spin_lock(&s->lock);
  assert(s->live > 0);
  s->live--;
  *(void **)obj = s->free;
  s->free = obj;
  CP__POISON(obj, s->size);
  cp__spin_unlock(&s->lock);
}
