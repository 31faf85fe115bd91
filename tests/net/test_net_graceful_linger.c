/* A graceful disconnect loses nothing even when the peer sent more than the
 * server read. The client asks for 2 MiB (more than the kernel buffers hold,
 * so the drain really waits) and, once the server has it, sends more
 * requests; the server queued the stream and disconnected gracefully, so
 * those requests are never read (it reads after it writes). Closing with them unread would make the
 * kernel send a reset, and the client's kernel would drop the end of the stream it had not read
 * yet. The client must read every byte, in order, then a clean end (EOF, not
 * ECONNRESET); the session ends once, as LOCAL. Several rounds. */
#include "common/nettest.h"

#define CHUNK (64u * 1024)
#define CHUNKS 32 /* 2 MiB */
#define ROUNDS 4
#define ID_STREAM 1
#define ID_MORE 2

static atomic_int streams, more_seen;

static void on_packet(cp_session *s, const cp_packet *pkt) {
  if (pkt->id != ID_STREAM) {
    atomic_fetch_add(&more_seen, 1); /* never: they come after the disconnect */
    return;
  }
  for (uint32_t c = 0; c < CHUNKS; c++) {
    cp_sendbuf *b = cp_sendbuf_alloc(CHUNK);
    CHECK(b != NULL);
    uint8_t *d = cp_sendbuf_data(b);
    for (uint32_t i = 0; i < CHUNK; i++)
      d[i] = (uint8_t)(c * 7u + i / 251u);
    cp_sendbuf_set_len(b, CHUNK);
    CHECK_EQ(cp_session_send(s, b), 0);
    cp_sendbuf_unref(b);
  }
  cp_session_disconnect(s, true);
  CHECK(!cp_session_connected(s));
  atomic_fetch_add(&streams, 1);
}

static void on_connected(cp_session *s) {
  nt_track_new(s);
}

int main(void) {
  test_begin("test_net_graceful_linger", 120);
  cp_service_options o = {.threads = 2,
                          .max_packet = 1024,
                          .send_queue_max = 2u * CHUNK * CHUNKS,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_disconnected = nt_track_end}};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  static uint8_t buf[CHUNK];
  for (int r = 0; r < ROUNDS; r++) {
    int fd = test_connect_rcvbuf(&addr, 4096);
    /* A stream that stops short is a failure with the state printed, not a
     * hang until the watchdog. */
    test_set_timeouts(fd, 30000);
    uint8_t p[16 * 8];
    test_send_all(fd, p, nt_packet(p, ID_STREAM, 0, 4));
    WAIT_UNTIL(atomic_load(&streams) == r + 1);
    /* The server reads after it writes: these wait, unread, while the
     * stream drains against the client's small window. */
    size_t n = 0;
    for (int k = 0; k < 15; k++)
      n += nt_packet(p + n, ID_MORE, (uint32_t)k, 4);
    test_send_all(fd, p, n);
    test_sleep_ms(50);
    size_t got = 0;
    for (;;) {
      ssize_t k = recv(fd, buf, sizeof buf, 0);
      if (k < 0 && errno == EINTR)
        continue;
      if (k < 0) {
        fprintf(stderr, "round %d: recv after %zu of %u bytes: %s\n", r, got, CHUNK * CHUNKS,
                strerror(errno));
        cp_service_stats st = nt_stats(svc);
        cp_port_stats ps;
        cp_port_get_stats(cp_service_port(svc), &ps);
        fprintf(stderr,
                "  sessions %llu, queued %llu, sends %llu, bytes out %llu, disconnects %llu; "
                "port: %llu ops started, %llu completed\n",
                (unsigned long long)st.sessions, (unsigned long long)st.send_queue_bytes,
                (unsigned long long)st.sends, (unsigned long long)st.bytes_out,
                (unsigned long long)nt_disconnects(svc), (unsigned long long)ps.started,
                (unsigned long long)ps.completed);
        exit(1);
      }
      if (k == 0)
        break;
      for (ssize_t i = 0; i < k; i++, got++) {
        uint32_t c = (uint32_t)(got / CHUNK), off = (uint32_t)(got % CHUNK);
        CHECK_EQ(buf[i], (uint8_t)(c * 7u + off / 251u));
      }
    }
    CHECK_EQ(got, (size_t)CHUNK * CHUNKS);
    close(fd);
    WAIT_UNTIL(nt_disconnects(svc) == (uint64_t)r + 1);
  }
  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.disconnects[CP_REASON_LOCAL], ROUNDS);
  CHECK_EQ(atomic_load(&more_seen), 0);
  nt_check_tracks_once();
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  fprintf(stderr, "PASS\n");
  return 0;
}
