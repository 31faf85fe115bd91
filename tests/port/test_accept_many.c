/* Pre-posted accepts: 500 connections through 16 posted accepts, re-posted as
 * they complete; then the 16 still posted are cancelled: exactly 16. */
#include "common/test.h"

#define POSTED 16
#define CONNS 500

int main(void) {
  test_begin("test_accept_many", 120);
  test_raise_nofile();
  cp_port *p = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  CHECK_EQ(cp_port_associate(p, lfd, NULL), 0);
  cp_op ops[POSTED];
  int times[POSTED] = {0};
  for (int i = 0; i < POSTED; i++)
    CHECK_EQ(cp_port_accept(p, lfd, &ops[i], NULL, NULL), 0);
  static int clients[CONNS], servers[CONNS];
  int accepted = 0;
  for (int i = 0; i < CONNS; i++) {
    clients[i] = test_connect(&addr);
    cp_completion c[POSTED];
    int n = cp_port_wait(p, c, POSTED, 0);
    for (int k = 0; k < n; k++) {
      CHECK_EQ(c[k].kind, CP_OP_ACCEPT);
      CHECK(c[k].result >= 0);
      servers[accepted++] = (int)c[k].result;
      times[c[k].op - ops]++;
      CHECK_EQ(cp_port_accept(p, lfd, c[k].op, NULL, NULL), 0);
    }
  }
  while (accepted < CONNS) {
    cp_completion c = test_wait_one(p);
    CHECK_EQ(c.kind, CP_OP_ACCEPT);
    CHECK(c.result >= 0);
    servers[accepted++] = (int)c.result;
    CHECK_EQ(cp_port_accept(p, lfd, c.op, NULL, NULL), 0);
  }
  /* every accepted fd is distinct and alive */
  for (int i = 0; i < CONNS; i++) {
    CHECK(test_is_open(servers[i]));
    for (int j = i + 1; j < CONNS; j++)
      CHECK(servers[i] != servers[j]);
  }
  CHECK_EQ(cp_port_cancel(p, lfd), 0);
  int cancelled = 0;
  cp_completion c;
  while (cancelled < POSTED) {
    c = test_wait_one(p);
    CHECK_EQ(c.kind, CP_OP_ACCEPT);
    CHECK_EQ(c.result, CP_ECANCELED);
    cancelled++;
  }
  CHECK_EQ(cp_port_wait(p, &c, 1, 50), 0);
  cp_port_stats st;
  cp_port_get_stats(p, &st);
  CHECK_EQ(st.started, st.completed);
  CHECK_EQ(st.completed, CONNS + POSTED);
  for (int i = 0; i < CONNS; i++) {
    close(clients[i]);
    close(servers[i]);
  }
  close(lfd);
  cp_port_destroy(p);
  return 0;
}
