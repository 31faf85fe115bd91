/* The concurrency cap: with concurrency N, never more than N threads are
 * between a returning cp_port_wait and their next call; every post is still
 * delivered exactly once. */
#include "common/test.h"

#define THREADS 6
#define ITEMS 200

static cp_port *port;
static atomic_int running, max_running, got;
static atomic_uchar seen[ITEMS];

static void *worker(void *arg) {
  (void)arg;
  cp_completion c;
  for (;;) {
    int n = cp_port_wait(port, &c, 1, -1);
    if (n == CP_PORT_CLOSED)
      return NULL;
    CHECK_EQ(n, 1);
    int r = atomic_fetch_add(&running, 1) + 1;
    int m = atomic_load(&max_running);
    while (r > m && !atomic_compare_exchange_weak(&max_running, &m, r))
      ;
    CHECK_EQ(atomic_exchange(&seen[c.result], 1), 0);
    test_sleep_ms(1);
    atomic_fetch_sub(&running, 1);
    atomic_fetch_add(&got, 1);
  }
}

static void run(unsigned cap) {
  cp_port_options o = {.concurrency = cap};
  port = test_port(&o);
  atomic_store(&running, 0);
  atomic_store(&max_running, 0);
  atomic_store(&got, 0);
  for (int i = 0; i < ITEMS; i++)
    atomic_store(&seen[i], 0);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < ITEMS; i++)
    CHECK_EQ(cp_port_post(port, NULL, NULL, i), 0);
  while (atomic_load(&got) < ITEMS)
    test_sleep_ms(2);
  cp_port_close(port);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  fprintf(stderr, "  concurrency %u: at most %d ran at once\n", cap, atomic_load(&max_running));
  CHECK(atomic_load(&max_running) <= (int)cap);
  CHECK(atomic_load(&max_running) >= 1);
  CHECK_EQ(atomic_load(&got), ITEMS);
  cp_port_destroy(port);
}

int main(void) {
  test_begin("test_concurrency", 120);
  run(2);
  run(1);
  return 0;
}
