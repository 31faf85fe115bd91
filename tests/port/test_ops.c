/* Every op's success path: accept, connect (and refused), recv into iovecs,
 * pooled recv, vectored send, disconnect, timeout, post; kinds and keys. */
#include "common/test.h"

int main(void) {
  test_begin("test_ops", 60);
  cp_port *p = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  int lkey;
  CHECK_EQ(cp_port_associate(p, lfd, &lkey), 0);

  /* accept: a nonblocking, close-on-exec fd and the peer's address */
  cp_op acc;
  struct sockaddr_storage peer;
  socklen_t plen = sizeof peer;
  CHECK_EQ(cp_port_accept(p, lfd, &acc, (struct sockaddr *)&peer, &plen), 0);
  int cli = test_connect(&addr);
  cp_completion c = test_wait_one(p);
  CHECK(c.op == &acc);
  CHECK(c.key == &lkey);
  CHECK_EQ(c.kind, CP_OP_ACCEPT);
  CHECK(c.result >= 0);
  int srv = (int)c.result;
  CHECK(test_is_nonblocking(srv));
  CHECK(test_is_cloexec(srv));
  CHECK_EQ(plen, sizeof(struct sockaddr_in));
  struct sockaddr_in cl;
  socklen_t cll = sizeof cl;
  getsockname(cli, (struct sockaddr *)&cl, &cll);
  CHECK_EQ(((struct sockaddr_in *)&peer)->sin_port, cl.sin_port);
  int skey;
  CHECK_EQ(cp_port_associate(p, srv, &skey), 0);

  /* recv into two iovecs */
  char a[3], b[10];
  cp_buf riov[2] = {cp_buf_init(a, sizeof a), cp_buf_init(b, sizeof b)};
  cp_op rop;
  CHECK_EQ(cp_port_recv(p, srv, &rop, riov, 2), 0);
  test_send_all(cli, "hello world!!", 13);
  c = test_wait_one(p);
  CHECK(c.op == &rop && c.key == &skey && c.kind == CP_OP_RECV);
  CHECK_EQ(c.result, 13);
  CHECK(!memcmp(a, "hel", 3) && !memcmp(b, "lo world!!", 10));

  /* pooled recv: the data arrives in a port buffer */
  CHECK_EQ(cp_port_recv_pooled(p, srv, &rop), 0);
  test_send_all(cli, "pooled", 6);
  c = test_wait_one(p);
  CHECK(c.kind == CP_OP_RECV_POOLED && c.op == &rop && c.key == &skey);
  CHECK_EQ(c.result, 6);
  CHECK(c.buf && !memcmp(c.buf, "pooled", 6));
  cp_port_buf_release(p, c.buf);

  /* send from three iovecs */
  cp_buf siov[3] = {cp_buf_init("one ", 4), cp_buf_init("two ", 4), cp_buf_init("three", 5)};
  cp_op sop;
  CHECK_EQ(cp_port_send(p, srv, &sop, siov, 3), 0);
  c = test_wait_one(p);
  CHECK(c.kind == CP_OP_SEND && c.op == &sop && c.key == &skey);
  CHECK_EQ(c.result, 13);
  char got[13];
  test_recv_all(cli, got, 13);
  CHECK(!memcmp(got, "one two three", 13));

  /* disconnect (SHUT_WR): the peer reads everything sent before, then EOF */
  CHECK_EQ(cp_port_send(p, srv, &sop, siov, 3), 0);
  cp_op dop;
  CHECK_EQ(cp_port_disconnect(p, srv, &dop, SHUT_WR), 0);
  int sends = 0, discs = 0;
  for (int i = 0; i < 2; i++) {
    c = test_wait_one(p);
    if (c.kind == CP_OP_SEND) {
      CHECK_EQ(discs, 0); /* the disconnect waits for the send before it */
      CHECK_EQ(c.result, 13);
      sends++;
    } else {
      CHECK(c.kind == CP_OP_DISCONNECT && c.op == &dop);
      CHECK_EQ(c.result, 0);
      discs++;
    }
  }
  CHECK(sends == 1 && discs == 1);
  test_recv_all(cli, got, 13);
  CHECK(!memcmp(got, "one two three", 13));
  CHECK_EQ(recv(cli, got, 1, 0), 0);

  /* connect: to the listener, and to a closed port */
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int ckey;
  CHECK_EQ(cp_port_associate(p, fd, &ckey), 0);
  cp_op cop;
  /* the address is the port's copy: the caller's is gone before the wait
   * (io_uring submits it then, when no thread waits in the port) */
  struct sockaddr_in gone = addr;
  CHECK_EQ(cp_port_connect(p, fd, &cop, (struct sockaddr *)&gone, sizeof gone), 0);
  memset(&gone, 0xff, sizeof gone);
  c = test_wait_one(p);
  CHECK(c.kind == CP_OP_CONNECT && c.op == &cop && c.key == &ckey);
  CHECK_EQ(c.result, 0);
  int acc2 = accept(lfd, NULL, NULL);
  for (int i = 0; acc2 < 0 && i < 1000; i++) {
    test_sleep_ms(1);
    acc2 = accept(lfd, NULL, NULL);
  }
  CHECK(acc2 >= 0);
  close(acc2);
  cp_port_disassociate(p, fd);
  close(fd);

  struct sockaddr_in dead;
  int tmp = test_unlistened(&dead); /* nothing listens there, and nobody can */
  fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  CHECK_EQ(cp_port_associate(p, fd, &ckey), 0);
  CHECK_EQ(cp_port_connect(p, fd, &cop, (struct sockaddr *)&dead, sizeof dead), 0);
  c = test_wait_one(p);
  CHECK(c.kind == CP_OP_CONNECT);
  CHECK_EQ(c.result, CP_ECONNREFUSED);
  cp_port_disassociate(p, fd);
  close(fd);
  close(tmp);

  /* timeout: completes with 0, carrying its key */
  cp_op top;
  int tkey;
  CHECK_EQ(cp_port_timeout(p, &top, &tkey, 20), 0);
  c = test_wait_one(p);
  CHECK(c.kind == CP_OP_TIMEOUT && c.op == &top && c.key == &tkey);
  CHECK_EQ(c.result, 0);

  /* post: handed back as given; op may be NULL */
  cp_op pop;
  int pkey;
  CHECK_EQ(cp_port_post(p, &pkey, &pop, 12345), 0);
  CHECK_EQ(cp_port_post(p, NULL, NULL, -7), 0);
  c = test_wait_one(p);
  CHECK(c.kind == CP_OP_POST && c.op == &pop && c.key == &pkey);
  CHECK_EQ(c.result, 12345);
  c = test_wait_one(p);
  CHECK(c.kind == CP_OP_POST && c.op == NULL && c.key == NULL);
  CHECK_EQ(c.result, -7);

  /* nothing else is pending */
  CHECK_EQ(cp_port_wait(p, &c, 1, 0), 0);
  cp_port_stats st;
  cp_port_get_stats(p, &st);
  CHECK_EQ(st.started, st.completed);

  cp_port_disassociate(p, srv);
  close(srv);
  close(cli);
  cp_port_disassociate(p, lfd);
  close(lfd);
  cp_port_destroy(p);
  return 0;
}
