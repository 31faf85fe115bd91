/* A multi-megabyte send to a slow reader completes once, whole, and the
 * reader gets every byte in order. */
#include "common/test.h"

#define TOTAL (8u << 20)
#define PARTS 5

static int cli;
static unsigned char *expect;

static void *reader(void *arg) {
  (void)arg;
  unsigned char *buf = malloc(65536);
  size_t got = 0;
  while (got < TOTAL) {
    size_t want = TOTAL - got < 65536 ? TOTAL - got : 65536;
    ssize_t n = recv(cli, buf, want, 0);
    CHECK(n > 0);
    CHECK(!memcmp(buf, expect + got, (size_t)n));
    got += (size_t)n;
    if ((got / 65536) % 8 == 0)
      test_sleep_ms(1); /* slow: the socket buffer fills, the send goes short */
  }
  free(buf);
  return NULL;
}

int main(void) {
  test_begin("test_send_large", 120);
  cp_port *p = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  int srv;
  test_pair(lfd, &addr, &cli, &srv);
  int small = 4096;
  setsockopt(srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  CHECK_EQ(cp_port_associate(p, srv, NULL), 0);
  expect = malloc(TOTAL);
  for (size_t i = 0; i < TOTAL; i++)
    expect[i] = (unsigned char)(i * 2654435761u >> 13);
  cp_buf iov[PARTS];
  size_t part = TOTAL / PARTS, off = 0;
  for (int i = 0; i < PARTS; i++) {
    iov[i].base = (char *)expect + off;
    iov[i].len = i == PARTS - 1 ? TOTAL - off : part;
    off += iov[i].len;
  }
  cp_buf copy[PARTS];
  memcpy(copy, iov, sizeof iov);
  pthread_t t;
  pthread_create(&t, NULL, reader, NULL);
  cp_op op;
  CHECK_EQ(cp_port_send(p, srv, &op, iov, PARTS), 0);
  cp_completion c = test_wait_one(p);
  CHECK(c.kind == CP_OP_SEND && c.op == &op);
  CHECK_EQ(c.result, TOTAL);
  CHECK(!memcmp(copy, iov, sizeof iov)); /* the caller's iovecs are untouched */
  pthread_join(t, NULL);
  CHECK_EQ(cp_port_wait(p, &c, 1, 0), 0);
  cp_port_disassociate(p, srv);
  close(srv);
  close(cli);
  close(lfd);
  free(expect);
  cp_port_destroy(p);
  return 0;
}
