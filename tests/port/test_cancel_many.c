/* 1,000 ops in flight (recvs, pooled recvs, timeouts, accepts), then cancel:
 * completions counted equal ops started, each exactly once, each CP_ECANCELED,
 * and a socket's receives in the order they were started (the one with the
 * kernel first, then the one queued behind it). */
#include "common/test.h"

#define PAIRS 300

struct rec {
  cp_op op;
  int done;
  int seq; /* completion order */
};

int main(void) {
  test_begin("test_cancel_many", 120);
  test_raise_nofile();
  cp_port *p = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  CHECK_EQ(cp_port_associate(p, lfd, NULL), 0);
  static int cli[PAIRS], srv[PAIRS];
  static struct rec recs[1000];
  static char bufs[PAIRS][16];
  int n = 0;
  for (int i = 0; i < PAIRS; i++) {
    test_pair(lfd, &addr, &cli[i], &srv[i]);
    CHECK_EQ(cp_port_associate(p, srv[i], NULL), 0);
    cp_buf iov = cp_buf_init(bufs[i], sizeof bufs[i]);
    CHECK_EQ(cp_port_recv(p, srv[i], &recs[n++].op, &iov, 1), 0);
    CHECK_EQ(cp_port_recv_pooled(p, srv[i], &recs[n++].op), 0); /* queued behind */
  }
  int timers_from = n;
  while (n < 950)
    CHECK_EQ(cp_port_timeout(p, &recs[n++].op, NULL, 60000), 0);
  while (n < 1000)
    CHECK_EQ(cp_port_accept(p, lfd, &recs[n++].op, NULL, NULL), 0);

  for (int i = 0; i < PAIRS; i++)
    CHECK_EQ(cp_port_cancel(p, srv[i]), 0);
  for (int i = timers_from; i < 950; i++)
    CHECK_EQ(cp_port_cancel_op(p, &recs[i].op), 0);
  CHECK_EQ(cp_port_cancel(p, lfd), 0);

  cp_completion c[64];
  int got = 0;
  while (got < 1000) {
    int k = cp_port_wait(p, c, 64, 30000);
    CHECK(k > 0);
    for (int i = 0; i < k; i++) {
      struct rec *r = (struct rec *)(void *)c[i].op;
      CHECK(r >= recs && r < recs + 1000);
      CHECK_EQ(r->done, 0);
      r->done = 1;
      r->seq = got + i;
      CHECK_EQ(c[i].result, CP_ECANCELED);
      CHECK(c[i].buf == NULL);
    }
    got += k;
  }
  CHECK_EQ(got, 1000);
  for (int i = 0; i < PAIRS; i++)
    CHECK(recs[2 * i].seq < recs[2 * i + 1].seq); /* the recv, then the pooled one behind it */
  CHECK_EQ(cp_port_wait(p, c, 64, 100), 0);
  cp_port_stats st;
  cp_port_get_stats(p, &st);
  CHECK_EQ(st.started, 1000);
  CHECK_EQ(st.completed, 1000);
  /* a completed op is not pending any more */
  CHECK_EQ(cp_port_cancel_op(p, &recs[0].op), CP_ENOENT);
  CHECK_EQ(cp_port_cancel_op(p, &recs[timers_from].op), CP_ENOENT);
  /* the fds still work after a cancel */
  cp_buf iov = cp_buf_init(bufs[0], sizeof bufs[0]);
  CHECK_EQ(cp_port_recv(p, srv[0], &recs[0].op, &iov, 1), 0);
  test_send_all(cli[0], "after", 5);
  c[0] = test_wait_one(p);
  CHECK_EQ(c[0].result, 5);
  for (int i = 0; i < PAIRS; i++) {
    close(cli[i]);
    cp_port_disassociate(p, srv[i]);
    close(srv[i]);
  }
  close(lfd);
  cp_port_destroy(p);
  return 0;
}
