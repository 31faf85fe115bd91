/* A peer that closes: recv completes with 0 (pooled recv too, without a
 * buffer). A peer that resets: the pending recv ends with CP_ECONNRESET. */
#include "common/test.h"

int main(void) {
  test_begin("test_recv_eof", 60);
  cp_port *p = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  int cli, srv;
  char buf[64];
  cp_buf iov = cp_buf_init(buf, sizeof buf);
  cp_op op;
  cp_completion c;

  /* orderly close, plain recv */
  test_pair(lfd, &addr, &cli, &srv);
  CHECK_EQ(cp_port_associate(p, srv, NULL), 0);
  CHECK_EQ(cp_port_recv(p, srv, &op, &iov, 1), 0);
  close(cli);
  c = test_wait_one(p);
  CHECK(c.kind == CP_OP_RECV && c.op == &op);
  CHECK_EQ(c.result, 0);
  cp_port_disassociate(p, srv);
  close(srv);

  /* orderly close after data, pooled recv: the data, then 0 with no buffer */
  test_pair(lfd, &addr, &cli, &srv);
  CHECK_EQ(cp_port_associate(p, srv, NULL), 0);
  test_send_all(cli, "last words", 10);
  close(cli);
  CHECK_EQ(cp_port_recv_pooled(p, srv, &op), 0);
  c = test_wait_one(p);
  CHECK_EQ(c.result, 10);
  CHECK(!memcmp(c.buf, "last words", 10));
  cp_port_buf_release(p, c.buf);
  CHECK_EQ(cp_port_recv_pooled(p, srv, &op), 0);
  c = test_wait_one(p);
  CHECK(c.kind == CP_OP_RECV_POOLED);
  CHECK_EQ(c.result, 0);
  CHECK(c.buf == NULL);
  cp_port_disassociate(p, srv);
  close(srv);

  /* reset while a recv is pending */
  test_pair(lfd, &addr, &cli, &srv);
  CHECK_EQ(cp_port_associate(p, srv, NULL), 0);
  CHECK_EQ(cp_port_recv_pooled(p, srv, &op), 0);
  test_sleep_ms(20); /* let it be armed (either way the result is the same) */
  test_reset(cli);
  c = test_wait_one(p);
  CHECK_EQ(c.result, CP_ECONNRESET);
  CHECK(c.buf == NULL);
  cp_port_disassociate(p, srv);
  close(srv);

  CHECK_EQ(cp_port_wait(p, &c, 1, 0), 0);
  close(lfd);
  cp_port_destroy(p);
  return 0;
}
