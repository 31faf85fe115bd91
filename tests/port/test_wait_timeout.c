/* wait: 0 on timeout (and for a poll), the count once there is something,
 * batched up to max. */
#include "common/test.h"

int main(void) {
  test_begin("test_wait_timeout", 60);
  cp_port *p = test_port(NULL);
  cp_completion c[8];
  CHECK_EQ(cp_port_wait(p, c, 8, 0), 0);
  CHECK_EQ(cp_port_wait(p, c, 8, 50), 0);
  CHECK_EQ(cp_port_post(p, NULL, NULL, 1), 0);
  CHECK_EQ(cp_port_wait(p, c, 8, 50), 1);
  CHECK_EQ(c[0].result, 1);
  for (int i = 0; i < 5; i++)
    CHECK_EQ(cp_port_post(p, NULL, NULL, i), 0);
  CHECK_EQ(cp_port_wait(p, c, 3, -1), 3);
  CHECK_EQ(cp_port_wait(p, c, 8, 0), 2);
  CHECK_EQ(c[0].result, 3); /* posts from one thread come out in order */
  CHECK_EQ(c[1].result, 4);
  /* a timer wakes a waiter with an infinite timeout */
  cp_op t;
  CHECK_EQ(cp_port_timeout(p, &t, NULL, 30), 0);
  CHECK_EQ(cp_port_wait(p, c, 8, -1), 1);
  CHECK(c[0].op == &t && c[0].kind == CP_OP_TIMEOUT);
  cp_port_destroy(p);
  return 0;
}
