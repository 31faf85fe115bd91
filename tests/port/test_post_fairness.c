/* A completion that re-posts itself forever (a busy job queue) must not
 * starve the kernel: while one worker does nothing but re-post, a send it
 * starts, a receive of data that arrives and a timer all complete. */
#include "common/test.h"

static cp_port *port;
static int srv;
static atomic_int got_recv, got_send, got_timer;
static atomic_long spins;

static void *worker(void *arg) {
  (void)arg;
  cp_op rop = {0}, sop = {0}, top = {0};
  char rbuf[16], sbuf[5] = "hello";
  cp_buf riov = {rbuf, sizeof rbuf}, siov = {sbuf, 5};
  CHECK_EQ(cp_port_post(port, NULL, NULL, 1), 0);
  cp_completion ev[4];
  for (;;) {
    int n = cp_port_wait(port, ev, 4, -1);
    if (n == CP_PORT_CLOSED)
      return NULL;
    for (int i = 0; i < n; i++) {
      switch (ev[i].kind) {
      case CP_OP_POST:
        if (atomic_fetch_add(&spins, 1) == 0) {
          /* started from inside the loop: nothing but the loop polls */
          CHECK_EQ(cp_port_recv(port, srv, &rop, &riov, 1), 0);
          CHECK_EQ(cp_port_send(port, srv, &sop, &siov, 1), 0);
          CHECK_EQ(cp_port_timeout(port, &top, NULL, 20), 0);
        }
        if (!(atomic_load(&got_recv) && atomic_load(&got_send) && atomic_load(&got_timer)))
          CHECK_EQ(cp_port_post(port, NULL, NULL, 1), 0); /* again, at once */
        break;
      case CP_OP_RECV:
        CHECK_EQ(ev[i].result, 4);
        CHECK(!memcmp(rbuf, "ping", 4));
        atomic_store(&got_recv, 1);
        break;
      case CP_OP_SEND:
        CHECK_EQ(ev[i].result, 5);
        atomic_store(&got_send, 1);
        break;
      case CP_OP_TIMEOUT:
        CHECK_EQ(ev[i].result, 0);
        atomic_store(&got_timer, 1);
        break;
      default:
        CHECK(!"unexpected completion");
      }
    }
  }
}

int main(void) {
  test_begin("test_post_fairness", 60);
  port = test_port(&(cp_port_options){.concurrency = 1});
  struct sockaddr_in addr;
  int lfd = test_listener(&addr), cli;
  test_pair(lfd, &addr, &cli, &srv);
  CHECK_EQ(cp_port_associate(port, srv, NULL), 0);
  pthread_t w;
  pthread_create(&w, NULL, worker, NULL);
  while (atomic_load(&spins) < 1000)
    test_sleep_ms(1);
  test_send_all(cli, "ping", 4);
  char in[5];
  test_recv_all(cli, in, 5);
  CHECK(!memcmp(in, "hello", 5));
  while (!(atomic_load(&got_recv) && atomic_load(&got_send) && atomic_load(&got_timer)))
    test_sleep_ms(1);
  fprintf(stderr, "  recv, send and timer completed among %ld self-posts\n", atomic_load(&spins));
  cp_port_close(port);
  pthread_join(w, NULL);
  close(cli);
  cp_port_disassociate(port, srv);
  close(srv);
  close(lfd);
  cp_port_destroy(port);
  return 0;
}
