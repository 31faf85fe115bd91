/*
 * heap.h - the one min-heap of cport: an intrusive binary heap of nodes
 * ordered by a 64-bit key (a deadline, in cp__now_ns() nanoseconds).
 *
 * The caller embeds a struct cp__heap_node in its own object and recovers
 * the object with container_of. The heap stores node pointers in one array
 * that grows by doubling; it never allocates per node. A node knows its
 * index, so removing any node (a cancelled timer) is O(log n). Nodes with
 * equal keys come out in no particular order.
 *
 * Not thread-safe: the owner guards it with its own lock.
 */
#ifndef CPORT_COMMON_HEAP_H
#define CPORT_COMMON_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CP__HEAP_NONE UINT32_MAX /* idx of a node that is in no heap */

struct cp__heap_node {
  uint64_t key;
  uint32_t idx; /* position in the heap's array, or CP__HEAP_NONE */
};

struct cp__heap {
  struct cp__heap_node **a;
  uint32_t len, cap;
};

/* An empty heap with room for cap nodes (0: allocate on first push). 0 or
 * -ENOMEM. */
int cp__heap_init(struct cp__heap *h, uint32_t cap);
void cp__heap_free(struct cp__heap *h);

/* Make room for cap nodes in all (nothing shrinks): 0, or -ENOMEM and h as
 * it was. A push into a heap with room allocates nothing and cannot fail. */
int cp__heap_reserve(struct cp__heap *h, uint32_t cap);
/* Insert n (its key set, not in any heap). 0, or -ENOMEM and n not inserted. */
int cp__heap_push(struct cp__heap *h, struct cp__heap_node *n);
/* Remove n if it is in h; true if it was. */
bool cp__heap_remove(struct cp__heap *h, struct cp__heap_node *n);
/* Remove and return the node with the smallest key, or NULL if empty. */
struct cp__heap_node *cp__heap_pop(struct cp__heap *h);
/* Give n (in h) a new key and restore the order. */
void cp__heap_rekey(struct cp__heap *h, struct cp__heap_node *n, uint64_t key);

static inline void cp__heap_node_init(struct cp__heap_node *n, uint64_t key) {
  n->key = key;
  n->idx = CP__HEAP_NONE;
}
static inline struct cp__heap_node *cp__heap_min(const struct cp__heap *h) {
  return h->len ? h->a[0] : NULL;
}
static inline bool cp__heap_contains(const struct cp__heap *h, const struct cp__heap_node *n) {
  return n->idx < h->len && h->a[n->idx] == n;
}
static inline uint32_t cp__heap_len(const struct cp__heap *h) {
  return h->len;
}
static inline uint32_t cp__heap_cap(const struct cp__heap *h) {
  return h->cap;
}

#endif
