/* Bad input for every port function: NULL, a closed, foreign or never
 * associated socket, a non-socket, bad buffers and arguments, calls after
 * close: the documented CP_E* code, no crash, no hang, no leak, and no
 * completion for anything that did not start. An op on a socket closed
 * behind the port's back completes with an error. */
#include "common/test.h"

#include <limits.h>

int main(void) {
  test_begin("test_bad_input", 60);
  cp_port *p = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  int cli, srv;
  test_pair(lfd, &addr, &cli, &srv);
  cp_op op;
  char buf[8];
  cp_buf iov = cp_buf_init(buf, sizeof buf), zero = cp_buf_init(buf, 0), nul = cp_buf_init(NULL, 8);
  cp_buf many[CP_BUF_MAX + 1];
  for (int i = 0; i <= CP_BUF_MAX; i++)
    many[i] = iov;

  CHECK_EQ(cp_port_create(NULL, NULL), CP_EINVAL);
  /* NULL port everywhere */
  CHECK_EQ(cp_port_associate(NULL, srv, NULL), CP_EINVAL);
  CHECK_EQ(cp_port_disassociate(NULL, srv), CP_EINVAL);
  CHECK_EQ(cp_port_accept(NULL, lfd, &op, NULL, NULL), CP_EINVAL);
  CHECK_EQ(cp_port_connect(NULL, srv, &op, (struct sockaddr *)&addr, sizeof addr), CP_EINVAL);
  CHECK_EQ(cp_port_recv_pooled(NULL, srv, &op), CP_EINVAL);
  CHECK_EQ(cp_port_send(NULL, srv, &op, &iov, 1), CP_EINVAL);
  CHECK_EQ(cp_port_disconnect(NULL, srv, &op, CP_SHUT_WR), CP_EINVAL);
  CHECK_EQ(cp_port_timeout(NULL, &op, NULL, 1), CP_EINVAL);
  CHECK_EQ(cp_port_post(NULL, NULL, NULL, 0), CP_EINVAL);
  CHECK_EQ(cp_port_cancel(NULL, srv), CP_EINVAL);
  CHECK_EQ(cp_port_cancel_op(NULL, &op), CP_EINVAL);
  CHECK_EQ(cp_port_backend(NULL), CP_BACKEND_AUTO);
  cp_port_get_stats(NULL, NULL);
  cp_port_buf_release(NULL, buf);
  cp_port_close(NULL);
  /* not a socket */
  int pfd[2];
  test_pipe(pfd);
  CHECK_EQ(cp_port_associate(p, pfd[0], NULL), CP_ENOTSOCK);
  CHECK_EQ(cp_port_recv(p, pfd[0], &op, &iov, 1), CP_EBADF);
  test_pipe_untouched(pfd);
  test_pipe_close(pfd);
  CHECK_EQ(cp_port_associate(p, 1 << 30, NULL), CP_EBADF);
  /* foreign: associated with another port, not this one */
  cp_port *other = test_port(NULL);
  CHECK_EQ(cp_port_associate(other, srv, NULL), 0);
  CHECK_EQ(cp_port_recv(p, srv, &op, &iov, 1), CP_EBADF);
  CHECK_EQ(cp_port_cancel(p, srv), CP_EBADF);
  CHECK_EQ(cp_port_disassociate(p, srv), CP_EBADF);
  CHECK_EQ(cp_port_disassociate(other, srv), 0);
  cp_port_destroy(other);
  /* a zeroed op that never started: nothing to cancel */
  cp_op never;
  memset(&never, 0, sizeof never);
  CHECK_EQ(cp_port_cancel_op(p, &never), CP_ENOENT);
  /* a timer too far away to represent */
  CHECK_EQ(cp_port_timeout(p, &op, NULL, UINT64_MAX), CP_EINVAL);
  CHECK_EQ(cp_port_associate(p, -1, NULL), CP_EBADF);
  int dead = test_dead_socket();
  CHECK_EQ(cp_port_associate(p, dead, NULL), CP_EBADF);
  /* ops on an fd never associated */
  CHECK_EQ(cp_port_recv(p, srv, &op, &iov, 1), CP_EBADF);
  CHECK_EQ(cp_port_recv_pooled(p, srv, &op), CP_EBADF);
  CHECK_EQ(cp_port_send(p, srv, &op, &iov, 1), CP_EBADF);
  CHECK_EQ(cp_port_accept(p, lfd, &op, NULL, NULL), CP_EBADF);
  CHECK_EQ(cp_port_cancel(p, srv), CP_EBADF);
  CHECK_EQ(cp_port_disassociate(p, srv), CP_EBADF);
  CHECK_EQ(cp_port_recv(p, -5, &op, &iov, 1), CP_EBADF);
  CHECK_EQ(cp_port_recv(p, 1 << 30, &op, &iov, 1), CP_EBADF);

  CHECK_EQ(cp_port_associate(p, srv, NULL), 0);
  CHECK_EQ(cp_port_associate(p, lfd, NULL), 0);
  /* bad buffers */
  CHECK_EQ(cp_port_recv(p, srv, &op, NULL, 1), CP_EINVAL);
  CHECK_EQ(cp_port_recv(p, srv, &op, &iov, 0), CP_EINVAL);
  CHECK_EQ(cp_port_recv(p, srv, &op, &iov, -1), CP_EINVAL);
  CHECK_EQ(cp_port_recv(p, srv, &op, many, CP_BUF_MAX + 1), CP_EINVAL);
  CHECK_EQ(cp_port_recv(p, srv, &op, &zero, 1), CP_EINVAL);
  CHECK_EQ(cp_port_send(p, srv, &op, &zero, 1), CP_EINVAL);
  CHECK_EQ(cp_port_send(p, srv, &op, &nul, 1), CP_EFAULT);
  CHECK_EQ(cp_port_send(p, srv, &op, NULL, 0), CP_EINVAL);
  /* NULL op or port */
  CHECK_EQ(cp_port_recv(p, srv, NULL, &iov, 1), CP_EINVAL);
  CHECK_EQ(cp_port_recv_pooled(p, srv, NULL), CP_EINVAL);
  CHECK_EQ(cp_port_timeout(p, NULL, NULL, 1), CP_EINVAL);
  CHECK_EQ(cp_port_recv(NULL, srv, &op, &iov, 1), CP_EINVAL);
  CHECK_EQ(cp_port_cancel_op(p, NULL), CP_EINVAL);
  /* other bad arguments */
  CHECK_EQ(cp_port_disconnect(p, srv, &op, 12345), CP_EINVAL);
  CHECK_EQ(cp_port_connect(p, srv, &op, NULL, 0), CP_EINVAL);
  socklen_t len = 0;
  CHECK_EQ(cp_port_accept(p, lfd, &op, NULL, &len), CP_EINVAL);
  cp_completion c;
  CHECK_EQ(cp_port_wait(p, &c, 0, 0), CP_EINVAL);
  CHECK_EQ(cp_port_wait(p, NULL, 1, 0), CP_EINVAL);
  CHECK_EQ(cp_port_wait(NULL, &c, 1, 0), CP_EINVAL);
  cp_port_buf_release(p, buf); /* not a pool buffer: ignored, with a message */
  cp_port_buf_release(p, NULL);
  /* none of that started anything */
  CHECK_EQ(cp_port_wait(p, &c, 1, 20), 0);
  cp_port_stats st;
  cp_port_get_stats(p, &st);
  CHECK_EQ(st.started, 0);
  /* disassociate twice */
  CHECK_EQ(cp_port_disassociate(p, srv), 0);
  CHECK_EQ(cp_port_disassociate(p, srv), CP_EBADF);
  /* a socket closed behind the port's back: its ops end with an error,
   * never hang; then it can be forgotten */
  {
    int c2, s2;
    test_pair(lfd, &addr, &c2, &s2);
    CHECK_EQ(cp_port_associate(p, s2, NULL), 0);
    close(s2);
    cp_op rop, sop;
    int started = 0;
    if (cp_port_recv(p, s2, &rop, &iov, 1) == 0)
      started++;
    if (cp_port_send(p, s2, &sop, &iov, 1) == 0)
      started++;
    for (int i = 0; i < started; i++) {
      cp_completion e = test_wait_one(p);
      CHECK(e.op == &rop || e.op == &sop);
      CHECK(e.result < 0); /* CP_EBADF (or, on io_uring, whatever the kernel says) */
    }
    CHECK_EQ(cp_port_disassociate(p, s2), 0);
    close(c2);
    cp_port_stats st2;
    cp_port_get_stats(p, &st2);
    CHECK_EQ(st2.started, st2.completed);
  }
  /* strerror: always a message */
  CHECK(cp_strerror(0) && *cp_strerror(0));
  CHECK(!strcmp(cp_strerror(CP_EBADF), cp_strerror(EBADF)));
  CHECK(cp_strerror(-99999) && *cp_strerror(-99999));
  CHECK(cp_strerror(INT_MIN + 1) && *cp_strerror(INT_MIN + 1));
  /* after close */
  cp_port_close(p);
  CHECK_EQ(cp_port_associate(p, srv, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_accept(p, lfd, &op, NULL, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_timeout(p, &op, NULL, 1), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_post(p, NULL, NULL, 0), CP_ESHUTDOWN);
  cp_port_close(p); /* idempotent */
  CHECK_EQ(cp_port_wait(p, &c, 1, -1), CP_PORT_CLOSED);
  CHECK_EQ(cp_port_recv(p, srv, &op, &iov, 1), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_send(p, srv, &op, &iov, 1), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_recv_pooled(p, srv, &op), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_disconnect(p, srv, &op, CP_SHUT_WR), CP_ESHUTDOWN);
  cp_port_destroy(p);
  cp_port_destroy(NULL);
  close(cli);
  close(srv);
  close(lfd);
  return 0;
}
