/* Broadcast: one buffer to 1,000 sessions, many times over. Every session
 * gets every packet, in order, byte for byte; each buffer is freed exactly
 * once, when the last session's send of it is done (the count of live send
 * buffers returns to where it was; ASan would see a second free). Then one buffer to a set (every
 * other session) with cp_session_send_many. */
#include "common/nettest.h"

#define SESSIONS 1000
#define ROUNDS (TEST_SLOW ? 30 : 200)
#define PKT 32

static cp_session *sessions[SESSIONS];
static atomic_int nsessions;

static void on_connected(cp_session *s) {
  int i = atomic_fetch_add(&nsessions, 1);
  CHECK(i < SESSIONS);
  sessions[i] = cp_session_get(s);
}

int main(void) {
  test_begin("test_net_broadcast", 240);
  test_raise_nofile();
  if (test_nofile() < 2 * SESSIONS + 100) {
    fprintf(stderr, "  skipped: needs %d descriptors\n", 2 * SESSIONS + 100);
    return 77;
  }
  cp_service_options o = {.threads = 2, .callbacks = {.on_connected = on_connected}};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  static int fds[SESSIONS];
  for (int i = 0; i < SESSIONS; i++)
    fds[i] = test_connect(&addr);
  WAIT_UNTIL(nt_stats(svc).sessions == SESSIONS);
  WAIT_UNTIL(atomic_load(&nsessions) == SESSIONS);
  size_t base = cp_sendbuf_outstanding();

  /* the packets: id 7, body = seq then a pattern */
  for (uint32_t r = 0; r < ROUNDS; r++) {
    cp_sendbuf *b = cp_packet_alloc(7, PKT - 4);
    CHECK(b != NULL);
    nt_packet(cp_sendbuf_data(b), 7, r, PKT - 4);
    CHECK_EQ(cp_service_broadcast(svc, b), SESSIONS);
    cp_sendbuf_unref(b); /* the sessions hold it now */
  }
  /* to a set: the even sessions */
  static cp_session *even[SESSIONS / 2];
  for (int i = 0; i < SESSIONS / 2; i++)
    even[i] = sessions[2 * i];
  cp_sendbuf *b = cp_packet_alloc(8, PKT - 4);
  nt_packet(cp_sendbuf_data(b), 8, 0, PKT - 4);
  CHECK_EQ(cp_session_send_many(even, SESSIONS / 2, b), SESSIONS / 2);
  cp_sendbuf_unref(b);

  /* every client reads every packet, in order; the even ones one more */
  for (int i = 0; i < SESSIONS; i++) {
    uint8_t in[PKT], want[PKT];
    for (uint32_t r = 0; r < ROUNDS; r++) {
      test_recv_all(fds[i], in, PKT);
      nt_packet(want, 7, r, PKT - 4);
      if (memcmp(in, want, PKT)) {
        fprintf(stderr, "client %d, packet %u: wrong bytes\n", i, r);
        exit(1);
      }
    }
  }
  const uint64_t bytes = (uint64_t)SESSIONS * ROUNDS * PKT + (SESSIONS / 2) * PKT;
  WAIT_UNTIL(nt_stats(svc).bytes_out == bytes);
  /* the set's packet went exactly to the sessions in the set: count readers */
  int got_extra = 0;
  for (int i = 0; i < SESSIONS; i++) {
    uint8_t in[PKT], want[PKT];
    ssize_t n;
    while ((n = recv(fds[i], in, PKT, MSG_DONTWAIT)) < 0 && errno == EINTR)
      ;
    if (n == PKT) {
      nt_packet(want, 8, 0, PKT - 4);
      CHECK(!memcmp(in, want, PKT));
      got_extra++;
    } else {
      CHECK(n < 0 && errno == EAGAIN);
    }
  }
  CHECK_EQ(got_extra, SESSIONS / 2);
  /* every buffer freed once its last send was done */
  WAIT_UNTIL(cp_sendbuf_outstanding() == base);
  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.packets_out, (uint64_t)SESSIONS * ROUNDS + SESSIONS / 2);
  fprintf(stderr, "  %d packets x %d sessions delivered in order in %llu gathered sends\n", ROUNDS,
          SESSIONS, (unsigned long long)st.sends);
  for (int i = 0; i < SESSIONS; i++) {
    cp_session_put(sessions[i]);
    close(fds[i]);
  }
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
