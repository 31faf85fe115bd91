/* Close with ops pending and threads waiting: every waiter returns
 * CP_PORT_CLOSED, later waits too, nothing starts any more, and destroy
 * frees everything (LeakSanitizer checks). */
#include "common/test.h"

#define WAITERS 4

static cp_port *port;
static atomic_int closed_seen;

static void *waiter(void *arg) {
  (void)arg;
  cp_completion c;
  int n = cp_port_wait(port, &c, 1, -1);
  CHECK_EQ(n, CP_PORT_CLOSED);
  atomic_fetch_add(&closed_seen, 1);
  return NULL;
}

int main(void) {
  test_begin("test_close_pending", 60);
  port = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  CHECK_EQ(cp_port_associate(port, lfd, NULL), 0);
  int cli, srv;
  test_pair(lfd, &addr, &cli, &srv);
  CHECK_EQ(cp_port_associate(port, srv, NULL), 0);
  cp_op ops[8];
  char buf[16];
  cp_buf iov = cp_buf_init(buf, sizeof buf);
  CHECK_EQ(cp_port_recv(port, srv, &ops[0], &iov, 1), 0);
  CHECK_EQ(cp_port_recv_pooled(port, srv, &ops[1]), 0);
  CHECK_EQ(cp_port_accept(port, lfd, &ops[2], NULL, NULL), 0);
  CHECK_EQ(cp_port_timeout(port, &ops[3], NULL, 60000), 0);
  pthread_t t[WAITERS];
  for (int i = 0; i < WAITERS; i++)
    pthread_create(&t[i], NULL, waiter, NULL);
  test_sleep_ms(50); /* let them block (the result is the same if not) */
  cp_port_close(port);
  for (int i = 0; i < WAITERS; i++)
    pthread_join(t[i], NULL);
  CHECK_EQ(atomic_load(&closed_seen), WAITERS);
  cp_completion c;
  CHECK_EQ(cp_port_wait(port, &c, 1, -1), CP_PORT_CLOSED);
  CHECK_EQ(cp_port_wait(port, &c, 1, 0), CP_PORT_CLOSED);
  CHECK_EQ(cp_port_recv(port, srv, &ops[4], &iov, 1), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_timeout(port, &ops[5], NULL, 1), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_post(port, NULL, NULL, 0), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_associate(port, cli, NULL), CP_ESHUTDOWN);
  cp_port_close(port); /* idempotent */
  cp_port_destroy(port);
  close(cli);
  close(srv);
  close(lfd);
  return 0;
}
