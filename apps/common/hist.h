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
