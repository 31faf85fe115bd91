/* Pooled receives and data that arrives while none is started: with io_uring's
 * multishot receive (on unless CPORT_URING_MULTISHOT=0) the port keeps such arrivals in
 * pool buffers, a few per socket, and lets the socket hold the rest; on every
 * backend the caller sees the same thing. Every byte arrives once and in
 * order (compared), whether it came before the first receive, between
 * receives, or past what the port keeps; end of stream comes after the data
 * before it; a cancel with nothing started completes nothing and keeps the
 * data for the next receive; a disassociate leaves the pool whole (all its
 * buffers can be held at once, one more waits). */
#include "common/test.h"

#define BUFS 8
#define CHUNK 50
#define MAX_BYTES 4096

struct conn {
  cp_op op;
  int cli, srv;
  unsigned char sent[MAX_BYTES];
  size_t nsent, nrecv;
};

static unsigned char pattern(const struct conn *c, size_t i) {
  return (unsigned char)(i * 13 + (size_t)c->srv * 7 + 1);
}

/* Send n bytes of the connection's pattern in one write. */
static void client_send(struct conn *c, size_t n) {
  CHECK(c->nsent + n <= MAX_BYTES);
  for (size_t i = 0; i < n; i++)
    c->sent[c->nsent + i] = pattern(c, c->nsent + i);
  test_send_all(c->cli, c->sent + c->nsent, n);
  c->nsent += n;
}

/* Let the port take in what arrived while no receive is started: a wait that
 * must complete nothing. */
static void settle(cp_port *p) {
  cp_completion ev[4];
  CHECK_EQ(cp_port_wait(p, ev, 4, 50), 0);
}

/* `chunks` separate writes of CHUNK bytes, the port polled after each. */
static void send_apart(cp_port *p, struct conn *c, int chunks) {
  for (int i = 0; i < chunks; i++) {
    client_send(c, CHUNK);
    settle(p);
  }
}

/* Receive with pooled receives, one at a time, until all that was sent is
 * in; every byte compared. */
static void recv_sent(cp_port *p, struct conn *c) {
  while (c->nrecv < c->nsent) {
    CHECK_EQ(cp_port_recv_pooled(p, c->srv, &c->op), 0);
    cp_completion e = test_wait_one(p);
    CHECK(e.op == &c->op);
    CHECK(e.key == c);
    CHECK_EQ(e.kind, CP_OP_RECV_POOLED);
    CHECK(e.result > 0);
    CHECK(e.buf != NULL);
    CHECK(c->nrecv + (size_t)e.result <= c->nsent);
    CHECK_EQ(memcmp(e.buf, c->sent + c->nrecv, (size_t)e.result), 0);
    c->nrecv += (size_t)e.result;
    cp_port_buf_release(p, e.buf);
  }
}

static void open_conn(cp_port *p, int lfd, const struct sockaddr_in *addr, struct conn *c) {
  memset(c, 0, sizeof *c);
  test_pair(lfd, addr, &c->cli, &c->srv);
  CHECK_EQ(cp_port_associate(p, c->srv, c), 0);
}

static void close_conn(cp_port *p, struct conn *c) {
  CHECK_EQ(cp_port_disassociate(p, c->srv), 0);
  close(c->srv);
  close(c->cli);
  settle(p); /* nothing was started: nothing completes */
}

int main(void) {
  test_begin("test_pooled_arrivals", 120);
  cp_port_options o = {.buf_count = BUFS, .buf_size = 256};
  cp_port *p = test_port(&o);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  static struct conn c[BUFS + 4];

  /* 1. Arrivals before the first receive and between receives: in order. */
  open_conn(p, lfd, &addr, &c[0]);
  send_apart(p, &c[0], 2);
  recv_sent(p, &c[0]);
  send_apart(p, &c[0], 3);
  recv_sent(p, &c[0]);
  CHECK_EQ(c[0].nrecv, (size_t)5 * CHUNK);

  /* 2. More arrivals than the port keeps per socket (and than the pool
   * holds): nothing lost, then receives go on as before. */
  send_apart(p, &c[0], 20);
  recv_sent(p, &c[0]);
  client_send(&c[0], 100);
  recv_sent(p, &c[0]);
  CHECK_EQ(c[0].nrecv, (size_t)25 * CHUNK + 100);
  close_conn(p, &c[0]);

  /* 3. End of stream after arrivals nobody received yet: the data first,
   * then 0, and 0 again for a receive after it. */
  open_conn(p, lfd, &addr, &c[1]);
  client_send(&c[1], 10);
  recv_sent(p, &c[1]);
  send_apart(p, &c[1], 3);
  CHECK_EQ(shutdown(c[1].cli, SHUT_WR), 0);
  settle(p);
  recv_sent(p, &c[1]);
  CHECK_EQ(c[1].nrecv, (size_t)10 + 3 * CHUNK);
  for (int i = 0; i < 2; i++) {
    CHECK_EQ(cp_port_recv_pooled(p, c[1].srv, &c[1].op), 0);
    cp_completion e = test_wait_one(p);
    CHECK(e.op == &c[1].op);
    CHECK_EQ(e.result, 0);
    CHECK(e.buf == NULL);
  }
  close_conn(p, &c[1]);

  /* 4. Cancel while arrivals wait: nothing was started, so nothing
   * completes, and the data stays for the next receive, as it would in the
   * socket (every byte, in order, once). Then arrivals nobody received and a
   * disassociate: the pool gets back whatever held them (checked below: the
   * whole pool can be held at once). */
  open_conn(p, lfd, &addr, &c[2]);
  client_send(&c[2], 10);
  recv_sent(p, &c[2]);
  send_apart(p, &c[2], 4);
  CHECK_EQ(cp_port_cancel(p, c[2].srv), 0);
  settle(p);
  send_apart(p, &c[2], 2);
  recv_sent(p, &c[2]);
  CHECK_EQ(c[2].nrecv, (size_t)10 + 6 * CHUNK);
  send_apart(p, &c[2], 4);
  close_conn(p, &c[2]);

  /* The whole pool: BUFS receives hold a buffer each at the same time... */
  cp_port_stats st0, st1;
  cp_port_get_stats(p, &st0);
  struct conn *h = &c[3];
  void *held[BUFS];
  for (int i = 0; i < BUFS; i++) {
    open_conn(p, lfd, &addr, &h[i]);
    client_send(&h[i], 10);
    CHECK_EQ(cp_port_recv_pooled(p, h[i].srv, &h[i].op), 0);
  }
  for (int i = 0; i < BUFS; i++) {
    cp_completion e = test_wait_one(p);
    struct conn *k = e.key;
    CHECK(k >= h && k < h + BUFS);
    CHECK(e.op == &k->op);
    CHECK_EQ(e.result, 10);
    CHECK(e.buf != NULL);
    CHECK_EQ(memcmp(e.buf, k->sent, 10), 0);
    CHECK(k->nrecv == 0);
    k->nrecv = 10;
    held[i] = e.buf;
  }
  cp_port_get_stats(p, &st1);
  CHECK_EQ(st1.buf_waits, st0.buf_waits); /* none had to wait */
  /* ... and one more waits until one is released. */
  struct conn *x = &c[BUFS + 3];
  open_conn(p, lfd, &addr, x);
  client_send(x, 10);
  CHECK_EQ(cp_port_recv_pooled(p, x->srv, &x->op), 0);
  settle(p);
  cp_port_buf_release(p, held[0]);
  cp_completion e = test_wait_one(p);
  CHECK(e.op == &x->op);
  CHECK_EQ(e.result, 10);
  CHECK_EQ(memcmp(e.buf, x->sent, 10), 0);
  cp_port_buf_release(p, e.buf);
  for (int i = 1; i < BUFS; i++)
    cp_port_buf_release(p, held[i]);
  cp_port_get_stats(p, &st1);
  CHECK(st1.buf_waits > st0.buf_waits);
  close_conn(p, x);
  for (int i = 0; i < BUFS; i++)
    close_conn(p, &h[i]);

  close(lfd);
  cp_port_destroy(p);
  fprintf(stderr, "ok\n");
  return 0;
}
