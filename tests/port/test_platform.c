/* The layers under the port: the platform layer (threads, mutex, condition
 * variable with a deadline, once, keys, spin lock, clock) and the one heap
 * (random pushes, removals of arbitrary nodes, rekeys; pops come out sorted). */
#include "common/test.h"

#include "common/heap.h"
#include "platform/platform.h"

/* ---- heap ---- */

struct item {
  struct cp__heap_node node;
  int live;
};

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void test_heap(void) {
  enum { N = 5000 };
  static struct item it[N];
  struct cp__heap h;
  CHECK_EQ(cp__heap_init(&h, 0), 0);
  CHECK(cp__heap_pop(&h) == NULL);
  int live = 0;
  for (int i = 0; i < N; i++) {
    cp__heap_node_init(&it[i].node, next_rand() % 1000);
    CHECK_EQ(cp__heap_push(&h, &it[i].node), 0);
    it[i].live = 1;
    live++;
  }
  /* remove a third at random positions, rekey another third */
  for (int i = 0; i < N; i += 3) {
    CHECK(cp__heap_remove(&h, &it[i].node));
    CHECK(!cp__heap_remove(&h, &it[i].node)); /* not twice */
    CHECK(!cp__heap_contains(&h, &it[i].node));
    it[i].live = 0;
    live--;
  }
  for (int i = 1; i < N; i += 3)
    cp__heap_rekey(&h, &it[i].node, next_rand() % 1000);
  CHECK_EQ(cp__heap_len(&h), live);
  uint64_t last = 0;
  int popped = 0;
  for (struct cp__heap_node *n; (n = cp__heap_pop(&h));) {
    CHECK(n->key >= last);
    CHECK_EQ(n->idx, CP__HEAP_NONE);
    struct item *x = (struct item *)(void *)n;
    CHECK(x->live);
    x->live = 0;
    last = n->key;
    popped++;
  }
  CHECK_EQ(popped, live);
  cp__heap_free(&h);
}

/* ---- platform ---- */

static cp__mutex mu;
static cp__cond cv;
static int counter, ready;
static cp__spin spin;
static long spin_count;
static cp__once_t once = CP__ONCE_INIT;
static atomic_int once_runs;
static cp__key key;
static atomic_int dtor_runs;

static void once_fn(void) {
  atomic_fetch_add(&once_runs, 1);
}
static void dtor(void *v) {
  CHECK(v == &key);
  atomic_fetch_add(&dtor_runs, 1);
}

static void worker(void *arg) {
  (void)arg;
  cp__once(&once, once_fn);
  cp__key_set(key, &key);
  for (int i = 0; i < 20000; i++) {
    cp__spin_lock(&spin);
    CHECK(cp__spin_held(&spin));
    spin_count++;
    cp__spin_unlock(&spin);
  }
  cp__mutex_lock(&mu);
  counter++;
  while (!ready)
    cp__cond_wait(&cv, &mu);
  cp__mutex_unlock(&mu);
}

static void test_platform(void) {
  enum { T = 4 };
  CHECK_EQ(cp__mutex_init(&mu), 0);
  CHECK_EQ(cp__cond_init(&cv), 0);
  CHECK_EQ(cp__key_create(&key, dtor), 0);
  cp__spin_init(&spin);
  CHECK(cp__cpu_count() >= 1);

  /* a timed wait with nobody to signal times out, on the one clock */
  cp__mutex_lock(&mu);
  uint64_t t0 = cp__now_ns();
  int rc;
  while ((rc = cp__cond_timedwait(&cv, &mu, t0 + 20000000ull)) == 0)
    ;
  CHECK_EQ(rc, CP__TIMEDOUT);
  CHECK(cp__now_ns() >= t0 + 20000000ull);
  cp__mutex_unlock(&mu);

  cp__thread t[T];
  for (int i = 0; i < T; i++)
    CHECK_EQ(cp__thread_create(&t[i], worker, NULL), 0);
  cp__mutex_lock(&mu);
  while (counter < T)
    CHECK_EQ(cp__cond_timedwait(&cv, &mu, cp__now_ns() + 1000000ull) >= 0, 1);
  ready = 1;
  cp__cond_broadcast(&cv);
  cp__mutex_unlock(&mu);
  for (int i = 0; i < T; i++)
    cp__thread_join(&t[i]);
  CHECK_EQ(spin_count, T * 20000L);
  CHECK_EQ(atomic_load(&once_runs), 1);
  CHECK_EQ(atomic_load(&dtor_runs), T);
  cp__cond_destroy(&cv);
  cp__mutex_destroy(&mu);
}

/* cp__lock: T threads, each adding to a plain counter under it; every 64th
 * hold yields inside, so others find it held and (on Linux) sleep on the
 * futex: the count is exact, and the lock is free at the end. */
static cp__lock lk;
static long lk_count;
static void lock_worker(void *arg) {
  (void)arg;
  for (int i = 0; i < 20000; i++) {
    cp__lock_acquire(&lk);
    long v = lk_count;
    if (i % 64 == 0)
      cp__thread_yield(); /* hold it a while: contention, waiters */
    lk_count = v + 1;
    cp__lock_release(&lk);
  }
}
static void test_lock(void) {
  enum { T = 4 };
  cp__lock_init(&lk);
  cp__thread t[T];
  for (int i = 0; i < T; i++)
    CHECK_EQ(cp__thread_create(&t[i], lock_worker, NULL), 0);
  for (int i = 0; i < T; i++)
    cp__thread_join(&t[i]);
  CHECK_EQ(lk_count, T * 20000L);
  cp__lock_acquire(&lk); /* free: taken at once */
  cp__lock_release(&lk);
}

int main(void) {
  test_begin("test_platform", 60);
  test_heap();
  test_platform();
  test_lock();
  return 0;
}
