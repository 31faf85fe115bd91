/* cp_sendbuf_outstanding() with buffers made on one thread and freed on
 * another (each thread counts its own, without a locked instruction; an
 * exiting thread's count is folded into the shared one), and the last
 * reference dropped without a read-modify-write when it is the only one:
 *  1. made on the main thread, made on a worker, freed on a second worker
 *     that never made any (it counts in the shared count), the workers gone:
 *     the figure is exact at each step;
 *  2. small (chunk) and large (own allocation) buffers alike;
 *  3. two threads that pass buffers both ways, and drop shared references at
 *     once (refs 2 from two threads: one of them frees), 20,000 rounds: back
 *     to the baseline, every byte a reader saw was the writer's, and the
 *     figure read meanwhile by a third thread never goes below zero;
 *  4. cp__sendbuf_trim on a thread with its own count keeps the figure. */
#include "common/nettest.h"

#include "net/net_internal.h"
#include "platform/platform.h"

#include <stdint.h>
#include <string.h>

enum { N = 300 };

static cp_sendbuf *made[N];

static cp_sendbuf *make(size_t i) {
  /* every seventh one large: its own allocation, not a chunk's */
  size_t cap = i % 7 == 0 ? 40000 : 16 + i % 900;
  cp_sendbuf *b = cp_sendbuf_alloc(cap);
  CHECK(b != NULL);
  memset(cp_sendbuf_data(b), (int)(i & 0xff), cap);
  cp_sendbuf_set_len(b, cap);
  return b;
}

static void maker(void *arg) {
  (void)arg;
  for (size_t i = 0; i < N; i++)
    made[i] = make(i);
}

static void freer(void *arg) {
  size_t upto = *(size_t *)arg;
  for (size_t i = 0; i < upto; i++) {
    CHECK_EQ(cp_sendbuf_data(made[i])[0], (uint8_t)(i & 0xff));
    cp_sendbuf_unref(made[i]);
    made[i] = NULL;
  }
}

/* ---- 3: two threads, buffers both ways ---- */

#define ROUNDS 20000
static _Atomic(cp_sendbuf *) box[2]; /* box[k]: to thread k */
static _Atomic(cp_sendbuf *) shared_box[2];
static _Atomic int go;

static void pass(void *arg) {
  int me = (int)(intptr_t)arg, other = 1 - me;
  while (!atomic_load(&go))
    cp__thread_yield();
  for (int r = 0; r < ROUNDS; r++) {
    /* hand one to the other thread */
    cp_sendbuf *b = cp_sendbuf_alloc(64 + (size_t)(r % 200));
    CHECK(b != NULL);
    memset(cp_sendbuf_data(b), me + 1, 64);
    cp_sendbuf_set_len(b, 64);
    while (atomic_load(&box[other]) != NULL) /* the last one not taken yet */
      cp__thread_yield();
    atomic_store(&box[other], b);
    /* free what the other handed to us */
    cp_sendbuf *in;
    while (!(in = atomic_exchange(&box[me], NULL)))
      cp__thread_yield();
    for (int i = 0; i < 64; i++)
      CHECK_EQ(cp_sendbuf_data(in)[i], other + 1);
    cp_sendbuf_unref(in);
    /* a buffer both hold: each drops its reference at about the same time */
    if (me == 0) {
      cp_sendbuf *s = cp_sendbuf_alloc(32);
      CHECK(s != NULL);
      cp_sendbuf_ref(s);
      while (atomic_load(&shared_box[1]) != NULL)
        cp__thread_yield();
      atomic_store(&shared_box[1], s);
      cp_sendbuf_unref(s);
    } else {
      cp_sendbuf *s;
      while (!(s = atomic_exchange(&shared_box[1], NULL)))
        cp__thread_yield();
      cp_sendbuf_unref(s);
    }
  }
}

/* Reads the figure while the two threads pass buffers: never below zero (in
 * debug builds an assert in the sum; the freed counts are read before the made
 * ones, so a reader that is slow between them may count more, never fewer)
 * and never more than were ever made. */
static _Atomic int reading_done;
static size_t read_base;
static _Atomic long reads;
static void reader(void *arg) {
  (void)arg;
  while (!atomic_load(&reading_done)) {
    size_t n = cp_sendbuf_outstanding();
    CHECK(n <= read_base + 3 * ROUNDS + 8);
    atomic_fetch_add(&reads, 1);
  }
}

int main(void) {
  size_t base = cp_sendbuf_outstanding();

  /* 1 and 2 */
  cp_sendbuf *mine[10];
  for (size_t i = 0; i < 10; i++)
    mine[i] = make(i);
  CHECK_EQ(cp_sendbuf_outstanding(), base + 10);
  cp__thread t;
  CHECK_EQ(cp__thread_create(&t, maker, NULL), 0);
  cp__thread_join(&t);
  CHECK_EQ(cp_sendbuf_outstanding(), base + 10 + N); /* the maker is gone, its count kept */
  size_t upto = N - 40;
  CHECK_EQ(cp__thread_create(&t, freer, &upto), 0);
  cp__thread_join(&t);
  CHECK_EQ(cp_sendbuf_outstanding(), base + 10 + 40);
  for (size_t i = N - 40; i < N; i++) {
    CHECK_EQ(cp_sendbuf_data(made[i])[0], (uint8_t)(i & 0xff));
    cp_sendbuf_unref(made[i]);
  }
  CHECK_EQ(cp_sendbuf_outstanding(), base + 10);

  /* 4: trim on a thread with its own count (the main thread made buffers) */
  cp__sendbuf_trim();
  CHECK_EQ(cp_sendbuf_outstanding(), base + 10);
  for (size_t i = 0; i < 10; i++)
    cp_sendbuf_unref(mine[i]);
  CHECK_EQ(cp_sendbuf_outstanding(), base);
  fprintf(stderr, "  made on three threads, freed on others: the count exact at each step\n");

  /* 3 */
  cp__thread a, b, r;
  read_base = base;
  CHECK_EQ(cp__thread_create(&r, reader, NULL), 0);
  CHECK_EQ(cp__thread_create(&a, pass, (void *)(intptr_t)0), 0);
  CHECK_EQ(cp__thread_create(&b, pass, (void *)(intptr_t)1), 0);
  atomic_store(&go, 1);
  cp__thread_join(&a);
  cp__thread_join(&b);
  atomic_store(&reading_done, 1);
  cp__thread_join(&r);
  CHECK(atomic_load(&reads) > 0);
  CHECK(atomic_load(&box[0]) == NULL && atomic_load(&box[1]) == NULL);
  CHECK_EQ(cp_sendbuf_outstanding(), base);
  fprintf(stderr, "  %d rounds of buffers passed both ways and shared: back to %zu\n", ROUNDS,
          base);
  cp__sendbuf_trim();
  CHECK_EQ(cp_sendbuf_outstanding(), base);
  printf("test_net_sendbuf_count: ok\n");
  return 0;
}
