/* Disassociate cancels what is pending; the fd number may then be closed and
 * come back for a new socket with a new key. */
#include "common/test.h"

int main(void) {
  test_begin("test_disassociate", 60);
  cp_port *p = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  /* An older connection whose receive stays pending throughout (an idle
   * player): it must not keep the socket disassociated below open. */
  int old_cli, old_srv, k0;
  test_pair(lfd, &addr, &old_cli, &old_srv);
  CHECK_EQ(cp_port_associate(p, old_srv, &k0), 0);
  cp_op old_op;
  CHECK_EQ(cp_port_recv_pooled(p, old_srv, &old_op), 0);
  int cli, srv;
  test_pair(lfd, &addr, &cli, &srv);
  int k1, k2;
  CHECK_EQ(cp_port_associate(p, srv, &k1), 0);
  cp_op op;
  CHECK_EQ(cp_port_recv_pooled(p, srv, &op), 0);
  CHECK_EQ(cp_port_disassociate(p, srv), 0);
  cp_completion c = test_wait_one(p);
  CHECK(c.op == &op && c.key == &k1);
  CHECK_EQ(c.result, CP_ECANCELED);
  int num = srv;
  close(srv);
  /* Disassociated, then closed: the socket is gone (io_uring's registered
   * file slot let go of it, though the older receive is still pending), so
   * the peer reads the FIN. */
  struct pollfd pf = {.fd = cli, .events = POLLIN};
  CHECK_EQ(poll(&pf, 1, 10000), 1);
  char eof;
  CHECK_EQ(recv(cli, &eof, 1, 0), 0);
  close(cli);
  int cli2, srv2;
  test_pair(lfd, &addr, &cli2, &srv2);
#ifndef _WIN32
  CHECK_EQ(srv2, num); /* the lowest free number comes back (POSIX; Windows handle values do not) */
#else
  (void)num;
#endif
  CHECK_EQ(cp_port_associate(p, srv2, &k2), 0);
  CHECK_EQ(cp_port_recv_pooled(p, srv2, &op), 0);
  test_send_all(cli2, "new", 3);
  c = test_wait_one(p);
  CHECK(c.key == &k2);
  CHECK_EQ(c.result, 3);
  cp_port_buf_release(p, c.buf);
  /* re-associating replaces the key */
  CHECK_EQ(cp_port_associate(p, srv2, &k1), 0);
  CHECK_EQ(cp_port_recv_pooled(p, srv2, &op), 0);
  test_send_all(cli2, "again", 5);
  c = test_wait_one(p);
  CHECK(c.key == &k1);
  cp_port_buf_release(p, c.buf);
  cp_port_disassociate(p, srv2);
  close(srv2);
  close(cli2);
  /* The older receive was pending all along; it still works. */
  test_send_all(old_cli, "old", 3);
  c = test_wait_one(p);
  CHECK(c.op == &old_op && c.key == &k0);
  CHECK_EQ(c.result, 3);
  CHECK(memcmp(c.buf, "old", 3) == 0);
  cp_port_buf_release(p, c.buf);
  cp_port_disassociate(p, old_srv);
  close(old_srv);
  close(old_cli);
  close(lfd);
  cp_port_destroy(p);
  return 0;
}
