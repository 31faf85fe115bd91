/*
 * registry.h - a container of referenced items (the service's connected
 * sessions), knowing nothing of what they are: an array, each item's index
 * kept in the item itself (at an offset given at init), so adding and
 * removing are O(1) (the last entry moves into the hole). The registry holds
 * one reference per item through the ops given at init.
 *
 * Snapshots are referenced copies taken under the lock and used outside it,
 * so what is done with them (a send that ends a session) may remove items
 * without deadlocking. The array's block is twice its capacity: the second
 * half is scratch for a snapshot that cannot be allocated, so a snapshot
 * never fails for lack of memory (it may wait for scratch another thread
 * holds).
 */
#ifndef CPORT_NET_REGISTRY_H
#define CPORT_NET_REGISTRY_H

#include "platform/platform.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CP__REG_NONE UINT32_MAX /* the index of an item in no registry */

struct cp__registry_ops {
  void *(*ref)(void *item); /* take a reference; returns item */
  void (*unref)(void *item);
};

struct cp__registry {
  cp__mutex mu;
  cp__mutex scratch_mu; /* the snapshots' fallback scratch; taken before mu */
  void **items;
  uint32_t len, cap;
  bool closed;    /* no more adds (the service is stopping) */
  size_t idx_off; /* where an item keeps its uint32_t index */
  const struct cp__registry_ops *ops;
};

void cp__registry_init(struct cp__registry *r, size_t idx_off, const struct cp__registry_ops *ops);
void cp__registry_destroy(struct cp__registry *r); /* empty by then */
/* Add item, referenced: 0, CP_ENOMEM, or CP_ESHUTDOWN once closed. */
int cp__registry_add(struct cp__registry *r, void *item);
/* Remove item if it is in r (dropping the registry's reference). */
void cp__registry_remove(struct cp__registry *r, void *item);
/* No more adds: whoever adds after this gets CP_ESHUTDOWN, and an item either
 * made it in before (and is in every later snapshot) or is refused. */
void cp__registry_close(struct cp__registry *r);
/* How many items are in r now. */
size_t cp__registry_count(struct cp__registry *r);
/* The first item match() accepts, referenced; NULL if none (O(n)). */
void *cp__registry_find(struct cp__registry *r, bool (*match)(void *item, const void *ctx),
                        const void *ctx);
/* A referenced copy of the items; give it back with cp__registry_release. */
void **cp__registry_snapshot(struct cp__registry *r, size_t *n);
void cp__registry_release(struct cp__registry *r, void **v, size_t n);

#endif /* CPORT_NET_REGISTRY_H */
