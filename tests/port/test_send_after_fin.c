/* A send that must wait for room, on a socket whose peer has half-closed
 * (its FIN was received), completes whole as the peer reads - never with
 * CP_EAGAIN. Each round: the peer shuts down its sending side, the port reads
 * the end of stream, a 3 MiB send fills the kernel's buffers, then a gathered
 * send of 976 iovecs (2 MB) waits while a thread reads everything and checks
 * every byte. (The engine turns a send error into a disconnect: a spurious
 * CP_EAGAIN ended sessions as CP_REASON_ERROR, see
 * test_net_fault_halfclose_burst.) */
#include "common/test.h"

#define ROUNDS (TEST_SANITIZED ? 30 : 60)
#define NIOV 976
#define FILL (3u << 20)

static int cli;
static size_t total;
static uint8_t *fill, *big;
static const uint8_t small[4] = {1, 2, 3, 4};
static atomic_int send_failed; /* the reader stops at the end, not a check */

/* The byte at offset `at` of the whole stream: FILL of `fill`, then the
 * iovecs (4 bytes of `small`, 4096 of `big`, alternating). */
static uint8_t expected(size_t at) {
  if (at < FILL)
    return fill[at];
  at -= FILL;
  size_t off = at % 4100;
  return off < 4 ? small[off] : big[off - 4];
}

static void *reader(void *arg) {
  (void)arg;
  uint8_t *buf = malloc(65536);
  size_t got = 0;
  while (got < FILL + total) {
    ssize_t n = recv(cli, buf, 65536, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0 && atomic_load(&send_failed))
      break;
    CHECK(n > 0);
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] != expected(got + (size_t)i)) {
        fprintf(stderr, "wrong byte at %zu\n", got + (size_t)i);
        exit(1);
      }
    got += (size_t)n;
  }
  free(buf);
  return NULL;
}

int main(void) {
  test_begin("test_send_after_fin", 240);
  fill = malloc(FILL);
  big = malloc(4096);
  for (size_t i = 0; i < FILL; i++)
    fill[i] = (uint8_t)(i * 2654435761u >> 13);
  for (size_t i = 0; i < 4096; i++)
    big[i] = (uint8_t)(i * 7 + 3);
  static cp_buf iov[NIOV];
  for (int i = 0; i < NIOV; i++) {
    iov[i] = (i & 1) ? cp_buf_init(big, 4096) : cp_buf_init((void *)small, 4);
    total += iov[i].len;
  }
  cp_port *p = test_port(NULL);
  int eagain = 0;
  for (int r = 0; r < ROUNDS; r++) {
    struct sockaddr_in addr;
    int lfd = test_listener(&addr);
    int srv;
    test_pair(lfd, &addr, &cli, &srv);
    close(lfd);
    CHECK_EQ(cp_port_associate(p, srv, NULL), 0);
    /* the peer half-closes; the port reads its FIN */
    CHECK_EQ(shutdown(cli, SHUT_WR), 0);
    char x;
    cp_buf xv = cp_buf_init(&x, 1);
    cp_op rop, fop, sop;
    CHECK_EQ(cp_port_recv(p, srv, &rop, &xv, 1), 0);
    cp_completion c = test_wait_one(p);
    CHECK(c.op == &rop);
    CHECK_EQ(c.result, 0);
    /* fill the kernel's buffers, then a gathered send that must wait */
    cp_buf fv = cp_buf_init(fill, FILL);
    CHECK_EQ(cp_port_send(p, srv, &fop, &fv, 1), 0);
    c = test_wait_one(p);
    CHECK(c.op == &fop);
    CHECK_EQ(c.result, FILL);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, reader, NULL), 0);
    CHECK_EQ(cp_port_send(p, srv, &sop, iov, NIOV), 0);
    c = test_wait_one(p);
    CHECK(c.op == &sop);
    if (c.result != (int64_t)total) {
      fprintf(stderr, "round %d: the gathered send completed with %lld (%s), not %zu\n", r,
              (long long)c.result, c.result < 0 ? cp_strerror((int)c.result) : "short", total);
      eagain++;
      atomic_store(&send_failed, 1);
      shutdown(cli, SHUT_RDWR); /* the reader ends */
    }
    pthread_join(t, NULL);
    CHECK_EQ(cp_port_disassociate(p, srv), 0);
    close(srv);
    close(cli);
    if (eagain)
      break;
  }
  CHECK_EQ(eagain, 0);
  cp_port_destroy(p);
  free(fill);
  free(big);
  return 0;
}
