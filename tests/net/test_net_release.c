/* The seeds' crash scenario, thousands of times: sessions are released and
 * dropped while receives and sends are in flight - by the peer (FIN or RST in
 * the middle of a burst), by the server (a disconnect right after queueing
 * sends), and by the application, which holds its own references on another
 * thread and sends through them after the session may have ended. ASan
 * catches any use after free; the counts prove every session ended exactly
 * once and every send buffer was freed. */
#include "common/nettest.h"

#define CLIENT_THREADS 4
#define ROUNDS (TEST_SLOW ? 150 : 600) /* connections per client thread */
#define BURST 16

/* Sessions the application holds, handed to the app thread. */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static cp_session *held[CLIENT_THREADS * ROUNDS];
static size_t held_head, held_tail;
static atomic_bool app_done;
static atomic_long app_sends_ok, app_sends_failed;

static void on_connected(cp_session *s) {
  nt_track_new(s);
  pthread_mutex_lock(&held_mu);
  held[held_tail++] = cp_session_get(s); /* the application's own reference */
  pthread_mutex_unlock(&held_mu);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  CHECK(b != NULL);
  cp_session_send(s, b);
  cp_sendbuf_unref(b);
  /* id 2: the server drops the session with the echo still queued */
  if (pkt->id == 2)
    cp_session_disconnect(s, false);
}

/* The application thread: sends through the sessions it holds, sometimes
 * disconnects them, and drops its references - whenever it gets to them,
 * racing every completion. */
static void *app_thread(void *arg) {
  (void)arg;
  unsigned k = 0;
  for (;;) {
    cp_session *s = NULL;
    pthread_mutex_lock(&held_mu);
    if (held_head < held_tail)
      s = held[held_head++];
    pthread_mutex_unlock(&held_mu);
    if (!s) {
      if (atomic_load(&app_done))
        return NULL;
      test_sleep_ms(1);
      continue;
    }
    cp_sendbuf *b = cp_packet_alloc(9, 40);
    CHECK(b != NULL);
    memset(cp_sendbuf_data(b) + 4, 0x5a, 40);
    if (cp_session_send(s, b) == 0)
      atomic_fetch_add(&app_sends_ok, 1);
    else
      atomic_fetch_add(&app_sends_failed, 1);
    cp_sendbuf_unref(b);
    if (++k % 3 == 0)
      cp_session_disconnect(s, k % 2);
    cp_session_put(s);
  }
}

static struct sockaddr_in addr;

static void *client_thread(void *arg) {
  long t = (long)(intptr_t)arg;
  uint8_t out[BURST * 104];
  for (int r = 0; r < ROUNDS; r++) {
    int fd = test_connect(&addr);
    int how = (int)((r + t) % 4);
    size_t len = 0;
    for (int i = 0; i < BURST; i++)
      len += nt_packet(out + len, how == 3 && i == BURST / 2 ? 2 : 1, (uint32_t)i, 100);
    /* the server may already have closed (id 2): errors are fine here */
    ssize_t n;
    while ((n = send(fd, out, len, MSG_NOSIGNAL)) < 0 && errno == EINTR)
      ;
    switch (how) {
    case 0: /* vanish at once: RST with the burst in flight */
      test_reset(fd);
      break;
    case 1: /* FIN with the burst in flight, never read */
      close(fd);
      break;
    case 2: { /* read part of the echo, then RST */
      char in[512];
      while ((n = recv(fd, in, sizeof in, 0)) < 0 && errno == EINTR)
        ;
      test_reset(fd);
      break;
    }
    default: /* read until the server's disconnect */
      CHECK(nt_read_to_end(fd));
      close(fd);
      break;
    }
  }
  return NULL;
}

int main(void) {
  test_begin("test_net_release", 240);
  cp_service_options o = {.threads = 4,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_disconnected = nt_track_end}};
  cp_service *svc = nt_server(o, &addr);
  pthread_t app, cl[CLIENT_THREADS];
  pthread_create(&app, NULL, app_thread, NULL);
  for (long i = 0; i < CLIENT_THREADS; i++)
    pthread_create(&cl[i], NULL, client_thread, (void *)(intptr_t)i);
  for (int i = 0; i < CLIENT_THREADS; i++)
    pthread_join(cl[i], NULL);
  const long total = (long)CLIENT_THREADS * ROUNDS;
  WAIT_UNTIL(nt_stats(svc).accepts == (uint64_t)total);
  /* Every session ends on its own (the peer is gone), stop or no stop. */
  WAIT_UNTIL(nt_disconnects(svc) == (uint64_t)total);
  atomic_store(&app_done, true);
  pthread_join(app, NULL);
  CHECK_EQ(held_head, (size_t)total);
  /* disconnects are counted when a session begins to end, `sessions` when
   * its on_disconnected has run */
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.disconnects[CP_REASON_SHUTDOWN], 0);
  CHECK_EQ(st.disconnects[CP_REASON_BAD_PACKET], 0);
  CHECK_EQ(st.disconnects[CP_REASON_SLOW_CONSUMER], 0);
  fprintf(stderr,
          "  %ld sessions: peer_closed %llu, reset %llu, local %llu, error %llu; "
          "app sends %ld ok, %ld refused\n",
          total, (unsigned long long)st.disconnects[CP_REASON_PEER_CLOSED],
          (unsigned long long)st.disconnects[CP_REASON_RESET],
          (unsigned long long)st.disconnects[CP_REASON_LOCAL],
          (unsigned long long)st.disconnects[CP_REASON_ERROR], atomic_load(&app_sends_ok),
          atomic_load(&app_sends_failed));
  cp_service_stop(svc, 0);
  CHECK_EQ(atomic_load(&nt_ntracks), total);
  nt_check_tracks_once();
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
