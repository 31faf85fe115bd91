/* Sockets as IOCP users pass them: blocking. cp_port_associate makes each
 * nonblocking itself, so on every backend a recv started before any data
 * returns at once (epoll used to block inside recvmsg here), a send larger
 * than the socket buffer completes whole, accepts on a blocking listener and
 * a connect from a blocking socket work, and the socket stays nonblocking
 * after disassociation (documented). Non-sockets are refused. */
#include "common/test.h"

static void set_blocking(int fd) {
  test_set_nonblock(fd, false);
  if (test_can_tell_blocking(fd)) /* not a listener on Windows (test.h) */
    CHECK(!test_is_nonblocking(fd));
}

int main(void) {
  test_begin("test_blocking_socket", 60);
  cp_port *p = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  set_blocking(lfd);
  CHECK_EQ(cp_port_associate(p, lfd, NULL), 0);
  CHECK(test_is_nonblocking(lfd)); /* nothing waits on it yet */

  /* accept on a (formerly) blocking listener, connect from a blocking socket */
  cp_op aop, cop;
  CHECK_EQ(cp_port_accept(p, lfd, &aop, NULL, NULL), 0);
  int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* blocking */
  CHECK(cfd >= 0);
  CHECK_EQ(cp_port_associate(p, cfd, NULL), 0);
  CHECK_EQ(cp_port_connect(p, cfd, &cop, (struct sockaddr *)&addr, sizeof addr), 0);
  int srv = -1;
  for (int i = 0; i < 2; i++) {
    cp_completion c = test_wait_one(p);
    CHECK(c.result >= 0);
    if (c.op == &aop)
      srv = (int)c.result;
    else
      CHECK(c.op == &cop);
  }
  CHECK(srv >= 0);
  /* connected now, nothing to read yet: Windows can tell (test.h) */
  CHECK(test_is_nonblocking(cfd));
  set_blocking(srv);

  /* a recv started before any data: must return at once, not block */
  CHECK_EQ(cp_port_associate(p, srv, NULL), 0);
  CHECK(test_is_nonblocking(srv));
  char rbuf[64];
  cp_buf rb = cp_buf_init(rbuf, sizeof rbuf);
  cp_op rop;
  CHECK_EQ(cp_port_recv(p, srv, &rop, &rb, 1), 0); /* the watchdog catches a hang */
  cp_op pop;
  CHECK_EQ(cp_port_recv_pooled(p, cfd, &pop), 0);
  cp_completion c;
  CHECK_EQ(cp_port_wait(p, &c, 1, 50), 0); /* nothing yet */

  /* a send much larger than the socket buffer completes whole */
  enum { BIG = 8 << 20 };
  unsigned char *big = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    big[i] = (unsigned char)(i * 131 + (i >> 12));
  cp_buf sb = cp_buf_init(big, BIG);
  cp_op sop;
  CHECK_EQ(cp_port_send(p, srv, &sop, &sb, 1), 0);
  /* the client side reads it through pooled receives */
  unsigned char *got = malloc(BIG);
  size_t have = 0;
  bool sent = false;
  while (have < BIG || !sent) {
    c = test_wait_one(p);
    if (c.op == &sop) {
      CHECK_EQ(c.result, BIG);
      sent = true;
      continue;
    }
    CHECK(c.op == &pop);
    CHECK(c.result > 0);
    CHECK(have + (size_t)c.result <= BIG);
    memcpy(got + have, c.buf, (size_t)c.result);
    have += (size_t)c.result;
    cp_port_buf_release(p, c.buf);
    if (have < BIG)
      CHECK_EQ(cp_port_recv_pooled(p, cfd, &pop), 0);
  }
  CHECK(!memcmp(got, big, BIG));

  /* the early recv gets its data */
  cp_buf hb = cp_buf_init("hi", 2);
  cp_op hop;
  CHECK_EQ(cp_port_send(p, cfd, &hop, &hb, 1), 0);
  for (int i = 0; i < 2; i++) {
    c = test_wait_one(p);
    if (c.op == &rop) {
      CHECK_EQ(c.result, 2);
      CHECK(!memcmp(rbuf, "hi", 2));
    } else {
      CHECK(c.op == &hop);
      CHECK_EQ(c.result, 2);
    }
  }

  /* stays nonblocking after disassociation */
  CHECK_EQ(cp_port_disassociate(p, srv), 0);
  CHECK(test_is_nonblocking(srv));

  /* not a socket: refused, nothing changed */
  int pipefd[2];
  test_pipe(pipefd);
  CHECK_EQ(cp_port_associate(p, pipefd[0], NULL), CP_ENOTSOCK);
  test_pipe_untouched(pipefd);
  test_pipe_close(pipefd);

  cp_port_destroy(p);
  close(srv);
  close(cfd);
  close(lfd);
  free(big);
  free(got);
  return 0;
}
