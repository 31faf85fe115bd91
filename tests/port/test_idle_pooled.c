/* 5,000 idle connections with a pooled recv each and only 256 buffers: idle
 * costs no buffer and produces nothing; then everyone talks at once, the pool
 * runs dry, receives wait for buffers instead of being lost, and every
 * message arrives exactly once with the right bytes. Twice. */
#include "common/test.h"

#define CONNS (TEST_SANITIZED ? 2000 : 5000)
#define MSG 100

struct conn {
  cp_op op;
  int cli, srv;
  int got;
};

int main(void) {
  test_begin("test_idle_pooled", 240);
  test_raise_nofile();
  if (test_nofile() < 2 * CONNS + 64) {
    fprintf(stderr, "  skip: needs %d descriptors\n", 2 * CONNS + 64);
    return 77;
  }
  cp_port_options o = {.buf_count = 256, .buf_size = 2048};
  cp_port *p = test_port(&o);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  struct conn *c = calloc(CONNS, sizeof *c);
  for (int i = 0; i < CONNS; i++) {
    test_pair(lfd, &addr, &c[i].cli, &c[i].srv);
    CHECK_EQ(cp_port_associate(p, c[i].srv, &c[i]), 0);
    CHECK_EQ(cp_port_recv_pooled(p, c[i].srv, &c[i].op), 0);
  }
  cp_completion ev[128];
  CHECK_EQ(cp_port_wait(p, ev, 128, 0), 0); /* idle: nothing happens */
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < CONNS; i++) {
      unsigned char m[MSG];
      for (int k = 0; k < MSG; k++)
        m[k] = (unsigned char)(i * 7 + k + round);
      test_send_all(c[i].cli, m, MSG);
      c[i].got = 0;
    }
    int done = 0;
    while (done < CONNS) {
      int n = cp_port_wait(p, ev, 128, 30000);
      CHECK(n > 0);
      for (int j = 0; j < n; j++) {
        struct conn *cn = ev[j].key;
        CHECK(ev[j].op == &cn->op);
        CHECK(ev[j].result > 0);
        int i = (int)(cn - c);
        for (int k = 0; k < ev[j].result; k++)
          CHECK_EQ(((unsigned char *)ev[j].buf)[k], (unsigned char)(i * 7 + cn->got + k + round));
        cn->got += (int)ev[j].result;
        cp_port_buf_release(p, ev[j].buf);
        CHECK(cn->got <= MSG);
        if (cn->got == MSG)
          done++;
        CHECK_EQ(cp_port_recv_pooled(p, cn->srv, &cn->op), 0);
      }
    }
    CHECK_EQ(cp_port_wait(p, ev, 128, 0), 0);
  }
  cp_port_stats st;
  cp_port_get_stats(p, &st);
  fprintf(stderr, "  %d connections, 256 buffers: %llu receives waited for a buffer\n", CONNS,
          (unsigned long long)st.buf_waits);
  for (int i = 0; i < CONNS; i++) {
    close(c[i].cli);
    cp_port_disassociate(p, c[i].srv);
    close(c[i].srv);
  }
  /* the cancelled recvs complete; drain them */
  int cancelled = 0;
  while (cancelled < CONNS) {
    int n = cp_port_wait(p, ev, 128, 30000);
    CHECK(n > 0);
    for (int j = 0; j < n; j++) {
      if (ev[j].buf)
        cp_port_buf_release(p, ev[j].buf);
      cancelled++;
    }
  }
  free(c);
  close(lfd);
  cp_port_destroy(p);
  return 0;
}
