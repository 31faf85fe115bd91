/*
 * stats.c - cport-dummy: what the receiving threads measure, and the errors (dummy.h).
 */
#define _GNU_SOURCE
#include "dummy.h"
#include <stdarg.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the receiving threads measure, one shard per thread: each delivery is
 * recorded without a read-modify-write on a line another thread writes too
 * (shared counters and one shared histogram cost the two receiving threads
 * five contended atomics per delivery). Readers merge the shards. A thread
 * past SHARDS_MAX shares the last shard, with atomic adds. */
#define SHARDS_MAX 16
struct shard {
  _Alignas(64) struct hist lat; /* delivery / echo latency, us */
  _Atomic uint64_t msgs, bytes; /* received while measuring */
  bool shared;
};
static struct shard shards[SHARDS_MAX];
static _Atomic unsigned n_shards;
static _Thread_local struct shard *my_shard;

static struct shard *shard(void) {
  if (!my_shard) {
    unsigned i = atomic_fetch_add(&n_shards, 1);
    if (i >= SHARDS_MAX - 1) {
      i = SHARDS_MAX - 1;
      shards[i].shared = true; /* (set before any use by the threads that share it) */
    }
    my_shard = &shards[i];
  }
  return my_shard;
}

/* Add v to a counter of my shard. */
static void shard_add(struct shard *sh, _Atomic uint64_t *c, uint64_t v) {
  if (sh->shared)
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
  else /* mine alone: no locked instruction */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* A delivery (echo: a message back) with this latency, while measuring. */
void count_delivery(uint64_t latency_us) {
  struct shard *sh = shard();
  if (sh->shared)
    hist_add(&sh->lat, latency_us);
  else
    hist_add_owned(&sh->lat, latency_us);
  shard_add(sh, &sh->msgs, 1);
}

/* Bytes received. */
void count_bytes(uint64_t n) {
  struct shard *sh = shard();
  shard_add(sh, &sh->bytes, n);
}

/* The shards' sums (msgs, bytes), and their latencies merged into *h if h. */
void recv_totals(uint64_t *msgs, uint64_t *bytes, struct hist *h) {
  *msgs = *bytes = 0;
  if (h)
    hist_reset(h);
  for (unsigned i = 0; i < SHARDS_MAX; i++) {
    *msgs += atomic_load_explicit(&shards[i].msgs, memory_order_relaxed);
    *bytes += atomic_load_explicit(&shards[i].bytes, memory_order_relaxed);
    if (h)
      hist_merge(h, &shards[i].lat);
  }
}

void dummy_error(const char *fmt, ...) {
  uint64_t n = atomic_fetch_add(&n_errors, 1);
  if (n >= 20)
    return; /* counted, not printed */
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "cport-dummy: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}
