/* A peer that half-closes (shutdown SHUT_WR) right after a burst of
 * requests whose replies need more than one gathered send still gets every
 * reply before the end, and the session ends exactly once as PEER_CLOSED.
 *
 * The client writes 1000 requests of 4 bytes (one receive's worth) and its
 * FIN at once. For each request the server queues two buffers from
 * on_packet: the echo and a 4 KiB packet derived from the request. 2000
 * buffers are more than one vectored send takes (IOV_MAX, 1024), so they
 * leave in two sends: the first (2 MiB) fits in the kernel's buffers, the
 * second waits for the client to read. The client waits until the first
 * send is done, then reads everything, compares every byte with what it
 * expects, and wants EOF after the last one. The session reads only after it
 * wrote (net.h), so the receive that finds the FIN must wait for both sends.
 *
 * Fails on c02138f: the receive is posted again after the first of the two
 * sends, finds the FIN, and the session ends at once, dropping the second
 * send; and on io_uring a send waiting on a half-closed socket can complete
 * with CP_EAGAIN (test_send_after_fin), ending the session as CP_REASON_ERROR. */
#include "common/nettest.h"

#include <limits.h>

#define ROUNDS 4
#define PACKETS 1000
#define FILL_BODY 4092u /* a 4 KiB packet per request */
#define ID_FILL 0xffff
#define REPLY (4 + 4 + FILL_BODY)

static atomic_long refused;

static void on_connected(cp_session *s) {
  nt_track_new(s);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  CHECK_EQ(pkt->size, 4);
  cp_sendbuf *echo = cp_sendbuf_copy(pkt->data, pkt->size);
  cp_sendbuf *fill = cp_packet_alloc(ID_FILL, FILL_BODY);
  CHECK(echo != NULL && fill != NULL);
  nt_packet(cp_sendbuf_data(fill), ID_FILL, pkt->id, FILL_BODY);
  int rc1 = cp_session_send(s, echo), rc2 = cp_session_send(s, fill);
  CHECK(rc1 == 0 || rc1 == CP_ENOTCONN);
  CHECK(rc2 == 0 || rc2 == CP_ENOTCONN);
  atomic_fetch_add(&refused, (rc1 != 0) + (rc2 != 0));
  cp_sendbuf_unref(echo);
  cp_sendbuf_unref(fill);
}

int main(void) {
  test_begin("test_net_fault_halfclose_burst", 120);
  CHECK(2 * PACKETS > IOV_MAX);
  cp_service_options o = {.threads = 2,
                          .send_queue_max = 2u * PACKETS * REPLY,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_disconnected = nt_track_end}};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  static uint8_t req[PACKETS * 4], want[PACKETS * REPLY], in[PACKETS * REPLY];
  for (uint32_t i = 0; i < PACKETS; i++) {
    nt_packet(req + 4 * i, (uint16_t)(i + 1), i, 0);
    memcpy(want + (size_t)i * REPLY, req + 4 * i, 4);
    nt_packet(want + (size_t)i * REPLY + 4, ID_FILL, i + 1, FILL_BODY);
  }
  int short_ends = 0;
  for (int r = 0; r < ROUNDS; r++) {
    cp_service_stats before = nt_stats(svc);
    int fd = test_connect(&addr);
    test_send_all(fd, req, sizeof req);
    CHECK_EQ(shutdown(fd, SHUT_WR), 0);
    /* The first send is with the kernel; the second waits for us. A correct
     * engine cannot end the session now: replies are unsent. One that ends
     * it at the FIN does so at once; give it up to 200 ms to show that
     * (this only makes the failure likelier, it never fails a correct run). */
    WAIT_UNTIL(nt_stats(svc).bytes_out > before.bytes_out);
    for (uint64_t t0 = test_now_ms(); test_now_ms() - t0 < 200;) {
      if (nt_disconnects(svc) > (uint64_t)r)
        break;
      test_sleep_ms(1);
    }
    size_t got = 0;
    ssize_t n;
    while (got < sizeof in) {
      n = recv(fd, in + got, sizeof in - got, 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      got += (size_t)n;
    }
    CHECK(!memcmp(in, want, got)); /* what came is right, in order */
    if (got < sizeof in) {
      fprintf(stderr, "round %d: the end came after %zu of %zu reply bytes\n", r, got, sizeof in);
      short_ends++;
    } else {
      char x;
      while ((n = recv(fd, &x, 1, 0)) < 0 && errno == EINTR)
        ;
      CHECK_EQ(n, 0); /* then the end */
    }
    close(fd);
    WAIT_UNTIL(nt_disconnects(svc) == (uint64_t)r + 1);
  }
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  WAIT_UNTIL(cp_sendbuf_outstanding() == 0);
  cp_service_stats st = nt_stats(svc);
  fprintf(stderr, "  %d bursts: %d cut short; %llu of %llu reply bytes left; %ld sends refused\n",
          ROUNDS, short_ends, (unsigned long long)st.bytes_out,
          (unsigned long long)ROUNDS * sizeof in, atomic_load(&refused));
  CHECK_EQ(short_ends, 0);
  CHECK_EQ(st.packets_in, (uint64_t)ROUNDS * PACKETS);
  CHECK_EQ(atomic_load(&refused), 0);
  CHECK_EQ(st.bytes_out, (uint64_t)ROUNDS * sizeof in);
  CHECK_EQ(st.disconnects[CP_REASON_PEER_CLOSED], ROUNDS);
  CHECK_EQ(nt_disconnects(svc), ROUNDS);
  nt_check_tracks_once();
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
