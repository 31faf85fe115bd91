/*
 * order.c - the ONE-order check of a room's chats across its members: see order.h.
 */
#include "order.h"

#include <stdlib.h>
#include <string.h>

static void push(struct order *o, uint64_t key, enum order_kind kind) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? 2 * o->cap : 64;
    struct order_rec *r = realloc(o->recs, cap * sizeof *r);
    if (!r) {
      o->oom = true;
      return;
    }
    o->recs = r;
    o->cap = cap;
  }
  o->recs[o->n++] =
      (struct order_rec){.key = key, .hash = o->hash, .count = o->count, .kind = (uint8_t)kind};
}

void order_mark(struct order *o, uint64_t key) {
  if (o->complete || o->head)
    push(o, key, o->complete ? ORDER_SEGMENT : ORDER_HEAD);
  o->hash = ORDER_SEED;
  o->count = 0;
  o->complete = true;
  o->head = false;
  o->marker = key;
}

void order_start(struct order *o, uint64_t sent) {
  o->hash = ORDER_SEED;
  o->count = 0;
  o->complete = false;
  o->head = sent == 0;
}

void order_end(struct order *o) {
  if (o->complete)
    push(o, o->marker, ORDER_TAIL);
  else if (o->head)
    push(o, 0, ORDER_WHOLE);
  o->complete = o->head = false;
}

void order_free(struct order *o) {
  free(o->recs);
  *o = (struct order){0};
}

static int by_segment(const void *a, const void *b) {
  const struct order_rec *x = a, *y = b;
  if (x->kind != y->kind)
    return x->kind < y->kind ? -1 : 1;
  return x->key < y->key ? -1 : x->key > y->key;
}

struct order_result order_verify(struct order *const *members, size_t n) {
  struct order_result r = {0};
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    total += members[i]->n;
    r.incomplete |= members[i]->oom;
  }
  struct order_rec *all = total ? malloc(total * sizeof *all) : NULL;
  if (total && !all) {
    r.incomplete = true;
    return r;
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (members[i]->n)
      memcpy(all + k, members[i]->recs, members[i]->n * sizeof *all);
    k += members[i]->n;
  }
  if (total) /* (qsort wants an array, even of none) */
    qsort(all, total, sizeof *all, by_segment);
  for (size_t i = 0; i < total;) {
    size_t j = i + 1;
    bool same = true;
    for (; j < total && all[j].kind == all[i].kind && all[j].key == all[i].key; j++)
      same &= all[j].hash == all[i].hash && all[j].count == all[i].count;
    if (j - i >= 2) {
      r.checkpoints++;
      r.records += j - i;
      r.chats += (uint64_t)all[i].count * (j - i);
      if (!same && r.mismatches++ == 0) {
        r.first_key = all[i].key;
        r.first_kind = all[i].kind;
      }
    }
    i = j;
  }
  free(all);
  return r;
}
