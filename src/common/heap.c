/* heap.c - the intrusive binary min-heap (see heap.h). */
#include "common/heap.h"

#include "common/mem.h"

#include <assert.h>
#include <errno.h>

int cp__heap_init(struct cp__heap *h, uint32_t cap) {
  h->len = 0;
  h->cap = 0;
  h->a = NULL;
  if (cap) {
    h->a = mem_alloc(cap * sizeof *h->a);
    if (!h->a)
      return -ENOMEM;
    h->cap = cap;
  }
  return 0;
}

void cp__heap_free(struct cp__heap *h) {
  mem_free(h->a);
  h->a = NULL;
  h->len = h->cap = 0;
}

int cp__heap_reserve(struct cp__heap *h, uint32_t cap) {
  if (cap <= h->cap)
    return 0;
  struct cp__heap_node **a = mem_realloc(h->a, cap * sizeof *a);
  if (!a)
    return -ENOMEM;
  h->a = a;
  h->cap = cap;
  return 0;
}

static void place(struct cp__heap *h, uint32_t i, struct cp__heap_node *n) {
  h->a[i] = n;
  n->idx = i;
}

/* Move n, which belongs at i, up or down until the order holds. */
static void sift(struct cp__heap *h, uint32_t i, struct cp__heap_node *n) {
  uint64_t k = n->key;
  while (i > 0 && h->a[(i - 1) / 2]->key > k) {
    place(h, i, h->a[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    uint64_t mk = k;
    if (l < h->len && h->a[l]->key < mk)
      m = l, mk = h->a[l]->key;
    if (r < h->len && h->a[r]->key < mk)
      m = r;
    if (m == i)
      break;
    place(h, i, h->a[m]);
    i = m;
  }
  place(h, i, n);
}

int cp__heap_push(struct cp__heap *h, struct cp__heap_node *n) {
  assert(!cp__heap_contains(h, n));
  if (h->len == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 16;
    struct cp__heap_node **a = mem_realloc(h->a, cap * sizeof *a);
    if (!a)
      return -ENOMEM;
    h->a = a;
    h->cap = cap;
  }
  uint32_t i = h->len++;
  h->a[i] = n; /* a valid slot for sift's downward pass (it has no children) */
  sift(h, i, n);
  return 0;
}

bool cp__heap_remove(struct cp__heap *h, struct cp__heap_node *n) {
  if (!cp__heap_contains(h, n))
    return false;
  uint32_t i = n->idx;
  struct cp__heap_node *last = h->a[--h->len];
  n->idx = CP__HEAP_NONE;
  if (last != n)
    sift(h, i, last);
  return true;
}

struct cp__heap_node *cp__heap_pop(struct cp__heap *h) {
  struct cp__heap_node *n = cp__heap_min(h);
  if (n)
    cp__heap_remove(h, n);
  return n;
}

void cp__heap_rekey(struct cp__heap *h, struct cp__heap_node *n, uint64_t key) {
  assert(cp__heap_contains(h, n));
  n->key = key;
  sift(h, n->idx, n);
}
