/* 4 threads x 100,000 posts, 4 waiters: each post delivered exactly once. */
#include "common/test.h"

#define POSTERS 4
#define WAITERS 4
#define PER (TEST_SANITIZED ? 25000 : 100000)

static cp_port *port;
static unsigned char seen[POSTERS][100000];
static atomic_long delivered;

static void *poster(void *arg) {
  long t = (long)(intptr_t)arg;
  for (long i = 0; i < PER; i++) {
    int rc;
    while ((rc = cp_port_post(port, (void *)(intptr_t)t, NULL, t * 1000000 + i)) == CP_ENOMEM)
      ;
    CHECK_EQ(rc, 0);
  }
  return NULL;
}

static void *waiter(void *arg) {
  (void)arg;
  cp_completion c[32];
  for (;;) {
    int n = cp_port_wait(port, c, 32, -1);
    if (n == CP_PORT_CLOSED)
      return NULL;
    CHECK(n > 0);
    for (int i = 0; i < n; i++) {
      CHECK_EQ(c[i].kind, CP_OP_POST);
      long t = (long)(intptr_t)c[i].key, seq = (long)(c[i].result - t * 1000000);
      CHECK(t >= 0 && t < POSTERS && seq >= 0 && seq < PER);
      /* one writer per slot: exactly-once means this flips 0 -> 1 once */
      CHECK_EQ(__atomic_exchange_n(&seen[t][seq], 1, __ATOMIC_RELAXED), 0);
    }
    atomic_fetch_add(&delivered, n);
  }
}

int main(void) {
  test_begin("test_post_mt", 240);
  cp_port_options o = {.concurrency = WAITERS};
  port = test_port(&o);
  pthread_t w[WAITERS], p[POSTERS];
  for (long i = 0; i < WAITERS; i++)
    pthread_create(&w[i], NULL, waiter, NULL);
  for (long i = 0; i < POSTERS; i++)
    pthread_create(&p[i], NULL, poster, (void *)(intptr_t)i);
  for (int i = 0; i < POSTERS; i++)
    pthread_join(p[i], NULL);
  while (atomic_load(&delivered) < (long)POSTERS * PER)
    test_sleep_ms(5);
  cp_port_close(port);
  for (int i = 0; i < WAITERS; i++)
    pthread_join(w[i], NULL);
  CHECK_EQ(atomic_load(&delivered), (long)POSTERS * PER);
  for (int t = 0; t < POSTERS; t++)
    for (int i = 0; i < PER; i++)
      CHECK_EQ(seen[t][i], 1);
  cp_port_stats st;
  cp_port_get_stats(port, &st);
  CHECK_EQ(st.started, (uint64_t)POSTERS * PER);
  CHECK_EQ(st.completed, (uint64_t)POSTERS * PER);
  cp_port_destroy(port);
  return 0;
}
