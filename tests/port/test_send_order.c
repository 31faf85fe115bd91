/* Ops of one kind on one fd complete in the order they started: 200 sends
 * started back to back (socket buffer small, so most go short), and 50 recvs
 * started before any data. The bytes arrive in order too. */
#include "common/test.h"

#define SENDS 200
#define RECVS 50

static int cli;
static size_t total;
static unsigned char *stream;

static void *reader(void *arg) {
  (void)arg;
  unsigned char *buf = malloc(total);
  test_recv_all(cli, buf, total);
  CHECK(!memcmp(buf, stream, total));
  free(buf);
  return NULL;
}

int main(void) {
  test_begin("test_send_order", 120);
  cp_port *p = test_port(NULL);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  int srv;
  test_pair(lfd, &addr, &cli, &srv);
  int small = 8192;
  setsockopt(srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  CHECK_EQ(cp_port_associate(p, srv, NULL), 0);

  static size_t len[SENDS], off[SENDS];
  for (int i = 0; i < SENDS; i++) {
    len[i] = 1024 + (size_t)(i * 7919) % (63 * 1024);
    off[i] = total;
    total += len[i];
  }
  stream = malloc(total);
  for (size_t i = 0; i < total; i++)
    stream[i] = (unsigned char)(i * 31 + i / 4096);
  static cp_op ops[SENDS];
  static cp_buf iov[SENDS];
  for (int i = 0; i < SENDS; i++) {
    iov[i] = cp_buf_init(stream + off[i], len[i]);
    CHECK_EQ(cp_port_send(p, srv, &ops[i], &iov[i], 1), 0);
  }
  pthread_t t;
  pthread_create(&t, NULL, reader, NULL);
  for (int i = 0; i < SENDS; i++) {
    cp_completion c = test_wait_one(p);
    CHECK(c.op == &ops[i]); /* in start order */
    CHECK_EQ(c.result, len[i]);
  }
  pthread_join(t, NULL);

  /* recvs: started first, completed in order, bytes in order */
  static unsigned char bufs[RECVS][100];
  for (int i = 0; i < RECVS; i++) {
    iov[i] = cp_buf_init(bufs[i], sizeof bufs[i]);
    CHECK_EQ(cp_port_recv(p, srv, &ops[i], &iov[i], 1), 0);
  }
  unsigned char pattern[RECVS * 100];
  for (size_t i = 0; i < sizeof pattern; i++)
    pattern[i] = (unsigned char)(i * 13 + 7);
  test_send_all(cli, pattern, sizeof pattern);
  size_t got = 0;
  unsigned char joined[RECVS * 100];
  int done = 0;
  while (got < sizeof pattern) {
    cp_completion c = test_wait_one(p);
    CHECK(c.op == &ops[done]);
    CHECK(c.result > 0);
    memcpy(joined + got, bufs[done], (size_t)c.result);
    got += (size_t)c.result;
    done++;
  }
  CHECK(!memcmp(joined, pattern, sizeof pattern));
  /* recvs left over (if some got less than 100 bytes) are cancelled in order */
  cp_port_cancel(p, srv);
  for (; done < RECVS; done++) {
    cp_completion c = test_wait_one(p);
    CHECK(c.op == &ops[done]);
    CHECK_EQ(c.result, CP_ECANCELED);
  }
  cp_completion c;
  CHECK_EQ(cp_port_wait(p, &c, 1, 0), 0);
  cp_port_disassociate(p, srv);
  close(srv);
  close(cli);
  close(lfd);
  free(stream);
  cp_port_destroy(p);
  return 0;
}
