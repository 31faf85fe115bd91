/*
 * registry.c - a container of referenced items (see registry.h). It knows
 * nothing of sessions: items are void *, referenced through the ops given
 * at init, their index kept at the offset given at init.
 */
#include "net/registry.h"

#include "common/mem.h"
#include "cport/error.h"

#include <assert.h>
#include <string.h>

/* The scratch this thread holds (scratch_mu held), or NULL. */
static _Thread_local void **scratch_held;

static uint32_t *idx_of(const struct cp__registry *r, void *item) {
  return (uint32_t *)(void *)((char *)item + r->idx_off);
}

void cp__registry_init(struct cp__registry *r, size_t idx_off, const struct cp__registry_ops *ops) {
  memset(r, 0, sizeof *r);
  cp__mutex_init(&r->mu);
  cp__mutex_init(&r->scratch_mu);
  r->idx_off = idx_off;
  r->ops = ops;
}

void cp__registry_destroy(struct cp__registry *r) {
  assert(r->len == 0);
  mem_free(r->items);
  cp__mutex_destroy(&r->mu);
  cp__mutex_destroy(&r->scratch_mu);
}

/* Grow the array (mu and scratch_mu held): one block, the items in the
 * first half and the snapshot's fallback scratch in the second. */
static int grow(struct cp__registry *r) {
  assert(r->len == r->cap); /* (mu and scratch_mu held: the callers' order) */
  uint32_t cap = r->cap ? r->cap * 2 : 256;
  void **a = mem_realloc(r->items, 2 * (size_t)cap * sizeof *a);
  if (!a)
    return CP_ENOMEM;
  r->items = a;
  r->cap = cap;
  return 0;
}

int cp__registry_add(struct cp__registry *r, void *item) {
  cp__mutex_lock(&r->mu);
  if (!r->closed && r->len == r->cap) {
    /* Growing moves the scratch a snapshot may be using: take scratch_mu
     * first (the lock order). This thread may hold it already (a callback
     * run inline under a fallback snapshot adds an item): then growing
     * would pull the scratch from under it. */
    if (scratch_held) {
      cp__mutex_unlock(&r->mu);
      return CP_ENOMEM;
    }
    cp__mutex_unlock(&r->mu);
    cp__mutex_lock(&r->scratch_mu);
    cp__mutex_lock(&r->mu);
    int rc = r->len == r->cap ? grow(r) : 0;
    cp__mutex_unlock(&r->scratch_mu);
    if (rc) {
      cp__mutex_unlock(&r->mu);
      return rc;
    }
  }
  if (r->closed) {
    cp__mutex_unlock(&r->mu);
    return CP_ESHUTDOWN;
  }
  assert(*idx_of(r, item) == CP__REG_NONE);
  *idx_of(r, item) = r->len;
  r->items[r->len++] = r->ops->ref(item);
  cp__mutex_unlock(&r->mu);
  return 0;
}

void cp__registry_remove(struct cp__registry *r, void *item) {
  cp__mutex_lock(&r->mu);
  uint32_t i = *idx_of(r, item);
  bool was = i != CP__REG_NONE;
  if (was) {
    assert(i < r->len && r->items[i] == item);
    void *last = r->items[--r->len];
    r->items[i] = last;
    *idx_of(r, last) = i;
    *idx_of(r, item) = CP__REG_NONE;
  }
  cp__mutex_unlock(&r->mu);
  if (was)
    r->ops->unref(item);
}

void cp__registry_close(struct cp__registry *r) {
  cp__mutex_lock(&r->mu);
  r->closed = true;
  cp__mutex_unlock(&r->mu);
}

size_t cp__registry_count(struct cp__registry *r) {
  cp__mutex_lock(&r->mu);
  size_t n = r->len;
  cp__mutex_unlock(&r->mu);
  return n;
}

void *cp__registry_find(struct cp__registry *r, bool (*match)(void *item, const void *ctx),
                        const void *ctx) {
  void *found = NULL;
  cp__mutex_lock(&r->mu);
  for (uint32_t i = 0; i < r->len && !found; i++)
    if (match(r->items[i], ctx))
      found = r->ops->ref(r->items[i]);
  cp__mutex_unlock(&r->mu);
  return found;
}

void **cp__registry_snapshot(struct cp__registry *r, size_t *n) {
  cp__mutex_lock(&r->mu);
  *n = r->len;
  void **v = *n ? mem_alloc(*n * sizeof *v) : NULL;
  if (!v && *n) {
    /* Out of memory: use the scratch kept as large as the registry, one
     * thread at a time. A thread that holds it already (a callback run
     * inline by what it does with the snapshot) gets nothing. */
    cp__mutex_unlock(&r->mu);
    if (scratch_held) {
      *n = 0;
      return NULL;
    }
    cp__mutex_lock(&r->scratch_mu);
    cp__mutex_lock(&r->mu);
    *n = r->len;
    v = scratch_held = r->items + r->cap;
  }
  for (size_t i = 0; i < *n; i++)
    v[i] = r->ops->ref(r->items[i]);
  cp__mutex_unlock(&r->mu);
  return v;
}

void cp__registry_release(struct cp__registry *r, void **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    r->ops->unref(v[i]);
  if (v && v == scratch_held) {
    scratch_held = NULL;
    cp__mutex_unlock(&r->scratch_mu);
  } else {
    mem_free(v);
  }
}
