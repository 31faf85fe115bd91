/* Stop with traffic in flight: clients keep pipelined packets going on every
 * connection while the service stops. Every session is disconnected exactly
 * once, nothing stays referenced, every send buffer is freed (LeakSanitizer
 * checks the rest), and the clients see their connections end. Then a second
 * service on the same thread starts and stops with no traffic at all. */
#include "common/nettest.h"

#define CONNS (TEST_SLOW ? 60 : 200)
#define CLIENT_THREADS 4

static void on_connected(cp_session *s) {
  nt_track_new(s);
}
static void on_packet(cp_session *s, const cp_packet *pkt) {
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  cp_session_send(s, b); /* CP_ENOTCONN once stopping: fine */
  cp_sendbuf_unref(b);
}
static int fds[CONNS];
static atomic_long echoed;

static void *client(void *arg) {
  long t = (long)(intptr_t)arg;
  uint8_t out[4][64], in[64];
  for (uint32_t seq = 0;; seq++)
    for (int c = (int)t; c < CONNS; c += CLIENT_THREADS) {
      if (fds[c] < 0)
        continue;
      size_t n = 0;
      bool ok = true;
      for (int k = 0; k < 4 && ok; k++) {
        n = nt_packet(out[k], 1, seq + (uint32_t)k, 40);
        ok = send(fds[c], out[k], n, MSG_NOSIGNAL) == (ssize_t)n;
      }
      for (int k = 0; k < 4 && ok; k++) {
        size_t got = 0;
        while (ok && got < n) {
          ssize_t r = recv(fds[c], in + got, n - got, 0);
          if (r < 0 && errno == EINTR)
            continue;
          ok = r > 0;
          got += r > 0 ? (size_t)r : 0;
        }
        if (ok) {
          CHECK(!memcmp(in, out[k], n)); /* what arrives is right, to the end */
          atomic_fetch_add(&echoed, 1);
        }
      }
      if (!ok) { /* the server went away: this connection is done */
        close(fds[c]);
        fds[c] = -1;
        bool any = false;
        for (int i = (int)t; i < CONNS; i += CLIENT_THREADS)
          any |= fds[i] >= 0;
        if (!any)
          return NULL;
      }
    }
}

int main(void) {
  test_begin("test_net_stop", 180);
  cp_service_options o = {.threads = 4,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_disconnected = nt_track_end}};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  for (int i = 0; i < CONNS; i++)
    fds[i] = test_connect(&addr);
  WAIT_UNTIL(nt_stats(svc).sessions == CONNS);
  pthread_t cl[CLIENT_THREADS];
  for (long i = 0; i < CLIENT_THREADS; i++)
    pthread_create(&cl[i], NULL, client, (void *)(intptr_t)i);
  WAIT_UNTIL(atomic_load(&echoed) > 20L * CONNS); /* traffic everywhere */
  cp_service_stop(svc, 200);
  /* stop returned: every session is gone, its callback has run */
  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.sessions, 0);
  CHECK_EQ(st.accepts, CONNS);
  CHECK_EQ(st.disconnects[CP_REASON_SHUTDOWN], CONNS);
  CHECK_EQ(nt_disconnects(svc), CONNS);
  CHECK_EQ(atomic_load(&nt_ntracks), CONNS);
  nt_check_tracks_once();
  nt_check_port_settled(svc);
  for (int i = 0; i < CLIENT_THREADS; i++)
    pthread_join(cl[i], NULL);
  fprintf(stderr, "  stopped with traffic on %d sessions (%ld echoes before): all ended once\n",
          CONNS, atomic_load(&echoed));
  cp_service_stop(svc, 0); /* again: nothing happens */
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);

  /* a service that never had a session, and one that never started */
  svc = nt_server((cp_service_options){.threads = 2}, NULL);
  cp_service_stop(svc, 1000);
  cp_service_destroy(svc);
  cp_service *idle = NULL;
  CHECK_EQ(cp_service_create(&idle, &(cp_service_options){.threads = 1}), 0);
  cp_service_destroy(idle);
  return 0;
}
