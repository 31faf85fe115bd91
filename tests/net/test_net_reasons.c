/* Every way a session ends, one session per reason, each reason counted
 * exactly once and on_disconnected run exactly once per session: the peer
 * closes (FIN), the peer resets (RST), the server disconnects at once and
 * gracefully (the queued reply still arrives), a bad header, a slow consumer,
 * an idle session and a slowloris that dribbles a header byte by byte (both
 * idle timeouts), and shutdown. */
#include "common/nettest.h"

#define IDLE_MS 1500
#define SENDQ_MAX (64u * 1024)

enum { ID_ECHO = 1, ID_CLOSE_NOW = 2, ID_FLOOD = 3, ID_CLOSE_AFTER_REPLY = 4 };

static atomic_int flood_refusals;

static void on_connected(cp_session *s) {
  nt_track_new(s);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  switch (pkt->id) {
  case ID_ECHO:
  case ID_CLOSE_AFTER_REPLY: {
    cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
    CHECK_EQ(cp_session_send(s, b), 0);
    cp_sendbuf_unref(b);
    if (pkt->id == ID_CLOSE_AFTER_REPLY)
      cp_session_disconnect(s, true);
    break;
  }
  case ID_CLOSE_NOW:
    cp_session_disconnect(s, false);
    break;
  case ID_FLOOD: {
    /* Queue 16 KiB buffers until the cap: inside this callback no send
     * completion can be handled (the strand is ours), so the queue only
     * grows and the 5th send passes 64 KiB. */
    cp_sendbuf *b = cp_sendbuf_alloc(16 * 1024);
    memset(cp_sendbuf_data(b), 'f', 16 * 1024);
    cp_sendbuf_set_len(b, 16 * 1024);
    int rc, sent = 0;
    while ((rc = cp_session_send(s, b)) == 0)
      sent++;
    CHECK_EQ(rc, CP_ENOBUFS);
    CHECK_EQ(sent, SENDQ_MAX / (16 * 1024));
    CHECK_EQ(cp_session_send(s, b), CP_ENOTCONN); /* it is over now */
    atomic_fetch_add(&flood_refusals, 1);
    cp_sendbuf_unref(b);
    break;
  }
  default:
    CHECK(!"unexpected packet id");
  }
}

static void on_disconnected(cp_session *s, cp_reason why) {
  nt_track_end(s, why);
  /* After the end, sends are refused but the session is still valid. */
  cp_sendbuf *b = cp_packet_alloc(ID_ECHO, 0);
  CHECK_EQ(cp_session_send(s, b), CP_ENOTCONN);
  cp_sendbuf_unref(b);
  CHECK(!cp_session_connected(s));
}

static cp_service *svc;

static void expect_only(cp_reason r, uint64_t n) {
  WAIT_UNTIL(nt_stats(svc).disconnects[r] == n);
  cp_service_stats st = nt_stats(svc);
  for (int i = 0; i < CP_REASON_COUNT; i++)
    if (i != (int)r && st.disconnects[i]) {
      fprintf(stderr, "unexpected disconnect reason %s\n", cp_reason_name((cp_reason)i));
      exit(1);
    }
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  fprintf(stderr, "  %s: %llu\n", cp_reason_name(r), (unsigned long long)n);
}

static uint64_t total_disconnects(void) {
  cp_service_stats st = nt_stats(svc);
  uint64_t n = 0;
  for (int i = 0; i < CP_REASON_COUNT; i++)
    n += st.disconnects[i];
  return n;
}

static void roundtrip(int fd, uint16_t id) {
  uint8_t out[64], in[64];
  size_t n = nt_packet(out, id, 7, 20);
  test_send_all(fd, out, n);
  test_recv_all(fd, in, n);
  CHECK(!memcmp(in, out, n));
}

/* A client that echoes one packet and then resets the connection (SO_LINGER 0:
 * an RST and nothing else), while the server's receive is pending.
 *
 * Under Wine only (CPORT_TEST_RESET_HELPER set by tests/windows/with_reset_helper.sh):
 * Wine 8.0 cannot close a socket abortively - wineserver shuts the Linux socket
 * down before it closes it, so a FIN goes first (tests/windows/probe_abort_close.c)
 * - so that client is a native Linux process, tests/windows/reset_helper.py, told
 * the server's port and the packet; it answers with the bytes it read back. */
static void reset_after_roundtrip(const struct sockaddr_in *addr) {
  uint8_t out[64], in[64];
  size_t n = nt_packet(out, ID_ECHO, 7, 20);
  const char *helper = getenv("CPORT_TEST_RESET_HELPER");
  if (!helper) {
    int fd = test_connect(addr);
    roundtrip(fd, ID_ECHO);
    test_reset(fd);
    return;
  }
  struct sockaddr_in h = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                          .sin_port = htons((uint16_t)atoi(helper))};
  int ctl = test_connect(&h);
  char req[16 + 2 * sizeof out], reply[2 * sizeof in + 2];
  int len = snprintf(req, sizeof req, "%u ", (unsigned)ntohs(addr->sin_port));
  for (size_t i = 0; i < n; i++)
    len += snprintf(req + len, sizeof req - (size_t)len, "%02x", out[i]);
  req[len++] = '\n';
  test_send_all(ctl, req, (size_t)len);
  size_t got = 0;
  while (got < sizeof reply && (got == 0 || reply[got - 1] != '\n')) {
    ssize_t r = recv(ctl, reply + got, sizeof reply - got, 0);
    CHECK(r > 0);
    got += (size_t)r;
  }
  close(ctl);
  CHECK_EQ(got, 2 * n + 1); /* the whole echo, as hex, and a newline */
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    CHECK_EQ(sscanf(reply + 2 * i, "%2x", &v), 1);
    in[i] = (uint8_t)v;
  }
  CHECK(!memcmp(in, out, n));
}

int main(void) {
  test_begin("test_net_reasons", 120);
  cp_service_options o = {.threads = 2,
                          .max_packet = 1024,
                          .send_queue_max = SENDQ_MAX,
                          .idle_timeout_ms = IDLE_MS,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_disconnected = on_disconnected}};
  struct sockaddr_in addr;
  svc = nt_server(o, &addr);
  uint8_t pkt[64];
  size_t n;

  /* the peer closes */
  int fd = test_connect(&addr);
  roundtrip(fd, ID_ECHO);
  close(fd);
  expect_only(CP_REASON_PEER_CLOSED, 1);

  /* Every later scenario adds one reason; compare against the running sum. */
  cp_service_stats before = nt_stats(svc);

  /* the peer resets: RST while the server's receive is pending */
  reset_after_roundtrip(&addr);
  WAIT_UNTIL(total_disconnects() == 2); /* then which: a reset, not taken for a close */
  CHECK_EQ(nt_stats(svc).disconnects[CP_REASON_PEER_CLOSED], 1);
  CHECK_EQ(nt_stats(svc).disconnects[CP_REASON_RESET], 1);

  /* the server disconnects at once: the client sees the end */
  fd = test_connect(&addr);
  n = nt_packet(pkt, ID_CLOSE_NOW, 1, 8);
  test_send_all(fd, pkt, n);
  CHECK(nt_read_to_end(fd));
  close(fd);
  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_LOCAL] == 1);

  /* graceful: the reply queued before the disconnect arrives, then EOF */
  fd = test_connect(&addr);
  roundtrip(fd, ID_CLOSE_AFTER_REPLY);
  char c;
  ssize_t r;
  while ((r = recv(fd, &c, 1, 0)) < 0 && errno == EINTR)
    ;
  CHECK_EQ(r, 0);
  close(fd);
  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_LOCAL] == 2);

  /* a bad header */
  fd = test_connect(&addr);
  roundtrip(fd, ID_ECHO);
  uint8_t bad[4] = {2, 0, 1, 0}; /* size 2 < 4 */
  test_send_all(fd, bad, 4);
  CHECK(nt_read_to_end(fd));
  close(fd);
  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_BAD_PACKET] == 1);

  /* a slow consumer: asks for a flood and never reads */
  fd = test_connect(&addr);
  n = nt_packet(pkt, ID_FLOOD, 1, 0);
  test_send_all(fd, pkt, n);
  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_SLOW_CONSUMER] == 1);
  WAIT_UNTIL(atomic_load(&flood_refusals) == 1); /* the callback finishes after the count */
  WAIT_UNTIL(nt_stats(svc).send_queue_bytes == 0);
  close(fd);

  /* idle: connects and says nothing */
  fd = test_connect(&addr);
  uint64_t t0 = test_now_ms();
  CHECK(nt_read_to_end(fd));
  CHECK(test_now_ms() - t0 >= IDLE_MS - 100); /* never closed early (a lower bound only) */
  close(fd);
  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_IDLE_TIMEOUT] == 1);

  /* slowloris: a header one byte every 100 ms never completes a packet, so
   * the bytes do not keep the session alive */
  fd = test_connect(&addr);
  n = nt_packet(pkt, ID_ECHO, 1, 40);
  bool ended = false;
  for (size_t i = 0; i < n && !ended; i++) {
    if (send(fd, pkt + i, 1, MSG_NOSIGNAL) != 1)
      ended = true;
    test_sleep_ms(100);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 0) == 1)
      ended = true;
  }
  CHECK(ended); /* 44 bytes at 10/s take 4.4 s: far past the idle time */
  CHECK(nt_read_to_end(fd));
  close(fd);
  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_IDLE_TIMEOUT] == 2);

  /* shutdown: a live session when the service stops */
  fd = test_connect(&addr);
  roundtrip(fd, ID_ECHO);
  WAIT_UNTIL(nt_stats(svc).sessions == 1);
  cp_service_stop(svc, 1000);
  CHECK(nt_read_to_end(fd));
  close(fd);
  nt_check_port_settled(svc);

  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.disconnects[CP_REASON_PEER_CLOSED], before.disconnects[CP_REASON_PEER_CLOSED]);
  CHECK_EQ(st.disconnects[CP_REASON_PEER_CLOSED], 1);
  CHECK_EQ(st.disconnects[CP_REASON_RESET], 1);
  CHECK_EQ(st.disconnects[CP_REASON_LOCAL], 2);
  CHECK_EQ(st.disconnects[CP_REASON_BAD_PACKET], 1);
  CHECK_EQ(st.disconnects[CP_REASON_SLOW_CONSUMER], 1);
  CHECK_EQ(st.disconnects[CP_REASON_IDLE_TIMEOUT], 2);
  CHECK_EQ(st.disconnects[CP_REASON_SHUTDOWN], 1);
  CHECK_EQ(st.disconnects[CP_REASON_ERROR], 0);
  CHECK_EQ(st.disconnects[CP_REASON_CONNECT_FAILED], 0);
  CHECK_EQ(st.accepts, 9);
  CHECK_EQ(st.sessions, 0);
  /* Each session's own record agrees with the counters. */
  CHECK_EQ(atomic_load(&nt_ntracks), 9);
  nt_check_tracks_once();
  const cp_reason order[9] = {
      CP_REASON_PEER_CLOSED,  CP_REASON_RESET,        CP_REASON_LOCAL,
      CP_REASON_LOCAL,        CP_REASON_BAD_PACKET,   CP_REASON_SLOW_CONSUMER,
      CP_REASON_IDLE_TIMEOUT, CP_REASON_IDLE_TIMEOUT, CP_REASON_SHUTDOWN};
  for (int i = 0; i < 9; i++)
    CHECK_EQ(atomic_load(&nt_tracks[i].reason), order[i]);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
