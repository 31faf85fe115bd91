/* Half-open connections, both ways.
 *
 * 1. The client half-closes (shutdown SHUT_WR) right after sending its
 *    packets: the server still delivers every reply to every packet it got,
 *    byte for byte and in order (the client reads them all, compares them
 *    with what it sent, then sees the end), and the session ends exactly once
 *    as PEER_CLOSED. Two ways of replying from on_packet, on connections at
 *    once: echo (one cp_session_send per packet, packets of 4..2004 bytes)
 *    and split (each echo in three cp_session_send calls, packets of 7..16
 *    bytes, so most receives produce more buffers than one gathered send
 *    takes). Not covered: replies sent later, from a job queue (the engine
 *    ends the session at the FIN when nothing is queued to it yet, so they
 *    are refused with CP_ENOTCONN); and a burst whose replies need more than
 *    one gathered send after the FIN is seen (test_net_fault_halfclose_burst).
 * 2. The client vanishes without a FIN: it stops sending and reading, and
 *    the socket stays open. idle_timeout_ms ends each such session exactly
 *    once as IDLE_TIMEOUT - one that sent nothing more after a packet, one
 *    stuck in the middle of a packet, and one the server has a pending send
 *    to (under send_queue_max, so not a slow consumer) - and frees what was
 *    queued to it.
 * Each part ends with every send buffer freed, and after stop every op the
 * port started has completed. */
#include "common/nettest.h"

enum { ID_ECHO = 1, ID_SPLIT = 2, ID_HELLO = 3, ID_STREAM = 4 };

#define PER_MODE 3 /* connections per way of replying */
#define NCONN (2 * PER_MODE)
#define PACKETS (TEST_SLOW ? 1500 : 4000)
#define IDLE_MS 1000
#define STREAM_CHUNK (64u * 1024)
#define STREAM_CHUNKS 64 /* 4 MiB queued to a client that never reads */

static atomic_long refused_replies; /* cp_session_send said CP_ENOTCONN */

static void send_copy(cp_session *s, const void *data, size_t len) {
  cp_sendbuf *b = cp_sendbuf_copy(data, len);
  CHECK(b != NULL);
  int rc = cp_session_send(s, b);
  CHECK(rc == 0 || rc == CP_ENOTCONN);
  if (rc)
    atomic_fetch_add(&refused_replies, 1);
  cp_sendbuf_unref(b);
}

static void on_connected(cp_session *s) {
  nt_track_new(s);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  switch (pkt->id) {
  case ID_ECHO:
    send_copy(s, pkt->data, pkt->size);
    break;
  case ID_SPLIT: {
    CHECK(pkt->size > 6);
    send_copy(s, pkt->data, 1);
    send_copy(s, pkt->data + 1, 5);
    send_copy(s, pkt->data + 6, pkt->size - 6u);
    break;
  }
  case ID_HELLO:
    send_copy(s, pkt->data, pkt->size);
    break;
  case ID_STREAM:
    for (unsigned i = 0; i < STREAM_CHUNKS; i++) {
      cp_sendbuf *b = cp_sendbuf_alloc(STREAM_CHUNK);
      CHECK(b != NULL);
      memset(cp_sendbuf_data(b), 's', STREAM_CHUNK);
      cp_sendbuf_set_len(b, STREAM_CHUNK);
      CHECK_EQ(cp_session_send(s, b), 0);
      cp_sendbuf_unref(b);
    }
    break;
  default:
    CHECK(!"unexpected packet id");
  }
}

static const cp_session_callbacks cbs = {
    .on_connected = on_connected, .on_packet = on_packet, .on_disconnected = nt_track_end};

/* ---- 1. half-close after sending ------------------------------------- */

struct conn {
  int fd;
  uint16_t id;
  size_t len;   /* bytes of all its packets */
  uint8_t *out; /* all its packets, as sent */
};

static struct conn conns[NCONN];

static size_t body_len(uint16_t id, uint32_t seq, int c) {
  if (id == ID_SPLIT)
    return 3 + (seq * 7u + (unsigned)c) % 10; /* packets of 7..16 bytes */
  if (seq % 5 == 0)
    return 0;
  return (seq * 131u + (unsigned)c * 17u) % 2001;
}

static void *writer(void *arg) {
  struct conn *c = arg;
  test_send_all(c->fd, c->out, c->len);
  CHECK_EQ(shutdown(c->fd, SHUT_WR), 0);
  return NULL;
}

static void half_close(void) {
  cp_service_options o = {.threads = 2, .max_packet = 4096, .callbacks = cbs};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  for (int i = 0; i < NCONN; i++) {
    struct conn *c = &conns[i];
    c->id = (uint16_t)(ID_ECHO + i / PER_MODE);
    c->out = malloc((size_t)PACKETS * (4 + 2000));
    CHECK(c->out != NULL);
    c->len = 0;
    for (uint32_t seq = 0; seq < PACKETS; seq++)
      c->len += nt_packet(c->out + c->len, c->id, seq, body_len(c->id, seq, i));
    c->fd = test_connect(&addr);
  }
  pthread_t w[NCONN];
  for (int i = 0; i < NCONN; i++)
    CHECK_EQ(pthread_create(&w[i], NULL, writer, &conns[i]), 0);
  /* Read every connection's replies, in turns, and compare them with what it
   * sent; then its end of stream. */
  size_t got[NCONN] = {0};
  bool eof[NCONN] = {false};
  int short_ends = 0;
  uint8_t *in = malloc(65536);
  for (int left = NCONN; left;) {
    struct pollfd pfd[NCONN];
    for (int i = 0; i < NCONN; i++)
      pfd[i] = (struct pollfd){.fd = eof[i] ? -1 : conns[i].fd, .events = POLLIN};
    int r = poll(pfd, NCONN, 30000);
    if (r < 0 && errno == EINTR)
      continue;
    CHECK(r > 0);
    for (int i = 0; i < NCONN; i++) {
      if (!pfd[i].revents)
        continue;
      struct conn *c = &conns[i];
      ssize_t n = recv(c->fd, in, 65536, MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (n <= 0) {
        if (got[i] != c->len || n != 0)
          fprintf(stderr, "connection %d (id %u): the end (%s) came after %zu of %zu bytes\n", i,
                  c->id, n == 0 ? "EOF" : strerror(errno), got[i], c->len);
        short_ends += got[i] != c->len || n != 0;
        eof[i] = true;
        left--;
        continue;
      }
      CHECK(got[i] + (size_t)n <= c->len);
      if (memcmp(in, c->out + got[i], (size_t)n) != 0) {
        fprintf(stderr, "connection %d: wrong bytes at %zu\n", i, got[i]);
        exit(1);
      }
      got[i] += (size_t)n;
    }
  }
  free(in);
  for (int i = 0; i < NCONN; i++) {
    pthread_join(w[i], NULL);
    close(conns[i].fd);
    free(conns[i].out);
  }
  WAIT_UNTIL(nt_disconnects(svc) == NCONN);
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  WAIT_UNTIL(cp_sendbuf_outstanding() == 0);
  cp_service_stats st = nt_stats(svc);
  uint64_t bytes = 0;
  for (int i = 0; i < NCONN; i++)
    bytes += got[i];
  fprintf(stderr, "  half-close: %d connections, %llu bytes echoed, %ld replies refused\n", NCONN,
          (unsigned long long)bytes, atomic_load(&refused_replies));
  CHECK_EQ(short_ends, 0);                    /* each connection: every reply, then a FIN */
  WAIT_UNTIL(nt_stats(svc).accepts == NCONN); /* counted after the session started */
  CHECK_EQ(st.packets_in, (uint64_t)NCONN * PACKETS);
  CHECK_EQ(st.bytes_in, bytes);
  CHECK_EQ(st.bytes_out, bytes);
  CHECK_EQ(atomic_load(&refused_replies), 0);
  CHECK_EQ(st.disconnects[CP_REASON_PEER_CLOSED], NCONN);
  CHECK_EQ(nt_disconnects(svc), NCONN);
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
}

/* ---- 2. vanished without a FIN --------------------------------------- */

static int unread(int fd) {
  return test_unread(fd);
}

static void vanish(void) {
  int t0 = atomic_load(&nt_ntracks);
  cp_service_options o = {.threads = 2,
                          .idle_timeout_ms = IDLE_MS,
                          .send_queue_max = 2 * STREAM_CHUNK * STREAM_CHUNKS,
                          .callbacks = cbs};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  uint8_t pkt[64], in[64];
  size_t n;
  /* quiet: a round trip, then nothing */
  int quiet = test_connect(&addr);
  n = nt_packet(pkt, ID_HELLO, 1, 20);
  test_send_all(quiet, pkt, n);
  test_recv_all(quiet, in, n);
  CHECK(!memcmp(in, pkt, n));
  /* stuck: a round trip, then half a packet, then nothing */
  int stuck = test_connect(&addr);
  test_send_all(stuck, pkt, n);
  test_recv_all(stuck, in, n);
  n = nt_packet(pkt, ID_HELLO, 2, 40);
  test_send_all(stuck, pkt, n / 2);
  /* deaf: asks for a 4 MiB stream, reads none of it, says nothing more */
  int deaf = test_connect(&addr);
  int small = 4096;
  setsockopt(deaf, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  n = nt_packet(pkt, ID_STREAM, 1, 0);
  test_send_all(deaf, pkt, n);
  WAIT_UNTIL(unread(deaf) > 0);
  /* All three stay open and silent; the server ends them. */
  WAIT_UNTIL(nt_disconnects(svc) == 3);
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  WAIT_UNTIL(nt_stats(svc).send_queue_bytes == 0);
  WAIT_UNTIL(cp_sendbuf_outstanding() == 0);
  cp_service_stats st = nt_stats(svc);
  fprintf(stderr, "  vanished: idle_timeout %llu; %llu of %u stream bytes left\n",
          (unsigned long long)st.disconnects[CP_REASON_IDLE_TIMEOUT],
          (unsigned long long)(st.bytes_out - 2 * 24), STREAM_CHUNK * STREAM_CHUNKS);
  WAIT_UNTIL(nt_stats(svc).accepts == 3); /* counted after the session started */
  CHECK_EQ(st.disconnects[CP_REASON_IDLE_TIMEOUT], 3);
  CHECK_EQ(nt_disconnects(svc), 3);
  CHECK(st.bytes_out < 2 * 24 + (uint64_t)STREAM_CHUNK * STREAM_CHUNKS); /* it was pending */
  CHECK_EQ(atomic_load(&nt_ntracks), t0 + 3);
  for (int i = t0; i < t0 + 3; i++)
    CHECK_EQ(atomic_load(&nt_tracks[i].reason), CP_REASON_IDLE_TIMEOUT);
  /* The silent clients see the end: what was sent to them, then EOF. The
   * deaf one has megabytes to get through a window of a few KiB: reset it. */
  CHECK(nt_read_to_end(quiet));
  CHECK(nt_read_to_end(stuck));
  close(quiet);
  close(stuck);
  test_reset(deaf);
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
}

int main(void) {
  test_begin("test_net_fault_halfopen", 240);
  half_close();
  vanish();
  nt_check_tracks_once();
  return 0;
}
