/* 4 workers on one port echo 64 connections (pooled recv -> send the same
 * buffer -> release -> recv again) while client threads send sequence-
 * numbered messages and check every byte that comes back; then a clean
 * shutdown with every started op completed. */
#include "common/test.h"

#define WORKERS 4
#define CONNS 64
#define MSGS (TEST_SANITIZED ? 200 : 1000)
#define CLIENT_THREADS 4

struct conn {
  cp_op rop, sop;
  int srv, cli;
  cp_buf iov;
};

static cp_port *port;
static struct conn conns[CONNS];
static atomic_long started, completed, sends_done;

static void start_recv(struct conn *c) {
  if (cp_port_recv_pooled(port, c->srv, &c->rop) == 0)
    atomic_fetch_add(&started, 1);
}

static void *worker(void *arg) {
  (void)arg;
  cp_completion ev[16];
  for (;;) {
    int n = cp_port_wait(port, ev, 16, -1);
    if (n == CP_PORT_CLOSED)
      return NULL;
    for (int i = 0; i < n; i++) {
      struct conn *c = ev[i].key;
      atomic_fetch_add(&completed, 1);
      if (ev[i].kind == CP_OP_RECV_POOLED) {
        if (ev[i].result > 0) {
          c->iov = cp_buf_init(ev[i].buf, (size_t)ev[i].result);
          if (cp_port_send(port, c->srv, &c->sop, &c->iov, 1) == 0)
            atomic_fetch_add(&started, 1);
          else
            cp_port_buf_release(port, ev[i].buf);
        }
      } else {
        CHECK_EQ(ev[i].kind, CP_OP_SEND);
        cp_port_buf_release(port, c->iov.base);
        if (ev[i].result >= 0)
          start_recv(c);
        atomic_fetch_add(&sends_done, 1);
      }
    }
  }
}

static void *client(void *arg) {
  long t = (long)arg;
  for (int m = 0; m < MSGS; m++)
    for (int i = (int)t; i < CONNS; i += CLIENT_THREADS) {
      unsigned char out[64], in[64];
      for (int k = 0; k < 64; k++)
        out[k] = (unsigned char)(i + m * 3 + k);
      test_send_all(conns[i].cli, out, 64);
      test_recv_all(conns[i].cli, in, 64);
      CHECK(!memcmp(in, out, 64));
    }
  return NULL;
}

int main(void) {
  test_begin("test_pingpong_mt", 240);
  cp_port_options o = {.concurrency = WORKERS};
  port = test_port(&o);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  for (int i = 0; i < CONNS; i++) {
    test_pair(lfd, &addr, &conns[i].cli, &conns[i].srv);
    CHECK_EQ(cp_port_associate(port, conns[i].srv, &conns[i]), 0);
    start_recv(&conns[i]);
  }
  pthread_t w[WORKERS], cl[CLIENT_THREADS];
  for (int i = 0; i < WORKERS; i++)
    pthread_create(&w[i], NULL, worker, NULL);
  for (long i = 0; i < CLIENT_THREADS; i++)
    pthread_create(&cl[i], NULL, client, (void *)i);
  for (int i = 0; i < CLIENT_THREADS; i++)
    pthread_join(cl[i], NULL);
  /* shutdown: once every send has completed (and re-armed its recv, so no
   * recv can start after the cancel), cancel, and wait until every started
   * op has completed */
  while (atomic_load(&sends_done) < (long)MSGS * CONNS)
    test_sleep_ms(2);
  for (int i = 0; i < CONNS; i++)
    CHECK_EQ(cp_port_cancel(port, conns[i].srv), 0);
  while (atomic_load(&completed) < atomic_load(&started))
    test_sleep_ms(2);
  cp_port_close(port);
  for (int i = 0; i < WORKERS; i++)
    pthread_join(w[i], NULL);
  CHECK_EQ(atomic_load(&completed), atomic_load(&started));
  /* a recv per connection, then a send and a recv per message */
  CHECK_EQ(atomic_load(&started), CONNS + 2L * MSGS * CONNS);
  for (int i = 0; i < CONNS; i++) {
    close(conns[i].cli);
    cp_port_disassociate(port, conns[i].srv);
    close(conns[i].srv);
  }
  close(lfd);
  cp_port_destroy(port);
  return 0;
}
