/*
 * hist.h - a latency histogram in the HdrHistogram manner: log-linear
 * buckets (16 per power of two, so any value is recorded within 1/16 of
 * itself), fixed memory, lock-free recording from any thread.
 */
#ifndef CPORT_APPS_HIST_H
#define CPORT_APPS_HIST_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define HIST_SUB 16
#define HIST_MAJ 40
#define HIST_N (HIST_MAJ * HIST_SUB)

struct hist {
  _Atomic uint64_t b[HIST_N];
  _Atomic uint64_t count, max;
};

static inline unsigned hist_index(uint64_t v) {
  if (v < HIST_SUB)
    return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 4 */
  unsigned major = msb - 3u;                         /* 1.. */
  unsigned sub = (unsigned)(v >> (msb - 4u)) & (HIST_SUB - 1);
  unsigned i = major * HIST_SUB + sub;
  return i < HIST_N ? i : HIST_N - 1;
}

/* The largest value that lands in bucket i. */
static inline uint64_t hist_value(unsigned i) {
  if (i < HIST_SUB)
    return i;
  unsigned major = i / HIST_SUB, sub = i % HIST_SUB;
  unsigned msb = major + 3u;
  return ((uint64_t)(HIST_SUB + sub) << (msb - 4u)) + ((1ull << (msb - 4u)) - 1);
}

static inline void hist_add(struct hist *h, uint64_t v) {
  atomic_fetch_add_explicit(&h->b[hist_index(v)], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
  uint64_t m = atomic_load_explicit(&h->max, memory_order_relaxed);
  while (v > m && !atomic_compare_exchange_weak_explicit(&h->max, &m, v, memory_order_relaxed,
                                                         memory_order_relaxed))
    ;
}

/* Record v in a histogram only this thread records in: plain loads and
 * stores, no locked read-modify-write (readers on other threads still see
 * whole values). */
static inline void hist_add_owned(struct hist *h, uint64_t v) {
  _Atomic uint64_t *b = &h->b[hist_index(v)];
  atomic_store_explicit(b, atomic_load_explicit(b, memory_order_relaxed) + 1, memory_order_relaxed);
  atomic_store_explicit(&h->count, atomic_load_explicit(&h->count, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  if (v > atomic_load_explicit(&h->max, memory_order_relaxed))
    atomic_store_explicit(&h->max, v, memory_order_relaxed);
}

/* Add src's records to dst (dst the caller's own). */
static inline void hist_merge(struct hist *dst, struct hist *src) {
  uint64_t total = 0; /* the buckets as read (src may be recording) */
  for (unsigned i = 0; i < HIST_N; i++) {
    uint64_t n = atomic_load_explicit(&src->b[i], memory_order_relaxed);
    if (n)
      atomic_fetch_add_explicit(&dst->b[i], n, memory_order_relaxed);
    total += n;
  }
  atomic_fetch_add_explicit(&dst->count, total, memory_order_relaxed);
  uint64_t m = atomic_load_explicit(&src->max, memory_order_relaxed);
  if (m > atomic_load_explicit(&dst->max, memory_order_relaxed))
    atomic_store_explicit(&dst->max, m, memory_order_relaxed);
}

/* The value at quantile q (0..1): an upper bound within 1/16. */
static inline uint64_t hist_quantile(struct hist *h, double q) {
  uint64_t n = atomic_load_explicit(&h->count, memory_order_relaxed);
  if (!n)
    return 0;
  uint64_t want = (uint64_t)(q * (double)n + 0.5);
  if (want < 1)
    want = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HIST_N; i++) {
    seen += atomic_load_explicit(&h->b[i], memory_order_relaxed);
    if (seen >= want) {
      uint64_t v = hist_value(i), m = atomic_load_explicit(&h->max, memory_order_relaxed);
      return v < m ? v : m;
    }
  }
  return atomic_load_explicit(&h->max, memory_order_relaxed);
}

static inline void hist_reset(struct hist *h) {
  for (unsigned i = 0; i < HIST_N; i++)
    atomic_store_explicit(&h->b[i], 0, memory_order_relaxed);
  atomic_store(&h->count, 0);
  atomic_store(&h->max, 0);
}

#endif
