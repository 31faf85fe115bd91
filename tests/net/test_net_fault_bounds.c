/* Bounds that hold while clients misbehave, with exact counts.
 *
 * 1. Memory stays bounded under slow consumers: 8 clients ask for floods and
 *    never read; a job queue pushes packets of 1-60 KiB at each until a send
 *    is refused. After every send, no session has more than send_queue_max
 *    queued and the service's gauge is at most 8 x send_queue_max (strictly
 *    under the cap: a send that would pass it is refused); exactly 8 SLOW_CONSUMER
 *    disconnects, exactly one CP_ENOBUFS per flood, then CP_ENOTCONN; the gauge
 *    and every send buffer go back to 0.
 * 2. A crowd of slowloris clients (a header byte now and then, never a whole
 *    packet) beside one healthy client doing verified echo: each slowloris
 *    ends exactly once as IDLE_TIMEOUT, the healthy client's every byte comes
 *    back and it stays connected until stop (SHUTDOWN).
 * After each stop, every op the port started has completed. */
#include "common/nettest.h"

#define FLOODS 8
#define SENDQ_MAX (512u * 1024)
#define LORIS 16
#define IDLE_MS 3000

/* ---- 1. slow consumers ------------------------------------------------- */

static cp_jobq *q;
static cp_service *flood_svc;
static atomic_int floods_over, enobufs, after_enotconn;
static uint64_t session_peak, gauge_peak; /* touched only by the queue's jobs */

struct flood {
  cp_session *s;
  uint32_t n;
};

/* On the job queue: push until refused, checking the session's queue. */
static void flood(void *arg) {
  struct flood *f = arg;
  for (int i = 0; i < 32; i++, f->n++) {
    size_t body = 1000 + (f->n * 7919u) % 60000; /* 1 KiB .. 60 KiB */
    cp_sendbuf *b = cp_packet_alloc(1, body);
    CHECK(b != NULL);
    int rc = cp_session_send(f->s, b);
    if (rc == CP_ENOBUFS) {
      atomic_fetch_add(&enobufs, 1);
      /* refused: nothing more is taken, the session is over */
      if (cp_session_send(f->s, b) == CP_ENOTCONN)
        atomic_fetch_add(&after_enotconn, 1);
      cp_sendbuf_unref(b);
      cp_session_put(f->s);
      free(f);
      atomic_fetch_add(&floods_over, 1);
      return;
    }
    cp_sendbuf_unref(b);
    CHECK_EQ(rc, 0);
    /* Right after a send is when queues are fullest: sample here. */
    size_t mine = cp_session_send_queued(f->s);
    uint64_t all = nt_stats(flood_svc).send_queue_bytes;
    CHECK(mine <= SENDQ_MAX); /* the cap holds, to the byte */
    CHECK(all <= (uint64_t)FLOODS * SENDQ_MAX);
    session_peak = mine > session_peak ? mine : session_peak;
    gauge_peak = all > gauge_peak ? all : gauge_peak;
  }
  CHECK_EQ(cp_jobq_post(q, flood, f), 0);
}

static void flood_packet(cp_session *s, const cp_packet *pkt) {
  (void)pkt;
  struct flood *f = calloc(1, sizeof *f);
  CHECK(f != NULL);
  f->s = cp_session_get(s);
  CHECK_EQ(cp_jobq_post(q, flood, f), 0);
}

static void check_port_done(cp_service *svc) {
  nt_check_port_settled(svc);
}

static void slow_consumers(void) {
  cp_service_options o = {
      .threads = 2, .send_queue_max = SENDQ_MAX, .callbacks = {.on_packet = flood_packet}};
  struct sockaddr_in addr;
  cp_service *svc = flood_svc = nt_server_create(o);
  q = cp_jobq_create(svc);
  nt_server_start(svc, &addr);
  int fds[FLOODS];
  uint8_t pkt[8];
  for (int i = 0; i < FLOODS; i++) {
    fds[i] = test_connect(&addr);
    int small = 4096;
    setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    test_send_all(fds[i], pkt, nt_packet(pkt, 1, 0, 0));
  }
  WAIT_UNTIL(atomic_load(&floods_over) == FLOODS);
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  WAIT_UNTIL(nt_stats(svc).send_queue_bytes == 0);
  WAIT_UNTIL(cp_sendbuf_outstanding() == 0);
  cp_service_stats st = nt_stats(svc);
  fprintf(stderr,
          "  %d slow consumers: peak %llu KiB queued on one (cap %u KiB), %llu KiB on all\n",
          FLOODS, (unsigned long long)session_peak / 1024, SENDQ_MAX / 1024,
          (unsigned long long)gauge_peak / 1024);
  CHECK_EQ(atomic_load(&enobufs), FLOODS);
  CHECK_EQ(atomic_load(&after_enotconn), FLOODS);
  WAIT_UNTIL(nt_stats(svc).accepts == FLOODS); /* counted after the session started */
  CHECK_EQ(st.disconnects[CP_REASON_SLOW_CONSUMER], FLOODS);
  CHECK_EQ(nt_disconnects(svc), FLOODS);
  /* Megabytes wait for each in a window of a few KiB: reset, do not read. */
  for (int i = 0; i < FLOODS; i++)
    test_reset(fds[i]);
  cp_service_stop(svc, 0);
  check_port_done(svc);
  cp_jobq_destroy(q);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
}

/* ---- 2. slowloris crowd ----------------------------------------------- */

static void echo_packet(cp_session *s, const cp_packet *pkt) {
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  CHECK(b != NULL);
  CHECK_EQ(cp_session_send(s, b), 0);
  cp_sendbuf_unref(b);
}

static void on_connected(cp_session *s) {
  nt_track_new(s);
}
static atomic_int loris_left;
static int loris_fd[LORIS];

/* Each slowloris sends its header bytes one at a time, the next only when
 * every other has sent the same number, spread over the idle time; it never
 * gets to the end of its packet (44 bytes). */
static void *loris(void *arg) {
  (void)arg;
  uint8_t pkt[64];
  size_t n = nt_packet(pkt, 1, 0, 40);
  bool ended[LORIS] = {false};
  int left = LORIS;
  for (size_t i = 0; i < n - 1 && left; i++) {
    for (int c = 0; c < LORIS; c++)
      if (!ended[c] && send(loris_fd[c], pkt + i, 1, MSG_NOSIGNAL) != 1) {
        ended[c] = true;
        left--;
      }
    test_sleep_ms(IDLE_MS / 8);
  }
  atomic_store(&loris_left, left);
  return NULL;
}

static void slowloris(void) {
  int t0 = atomic_load(&nt_ntracks);
  cp_service_options o = {.threads = 2,
                          .idle_timeout_ms = IDLE_MS,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = echo_packet,
                                        .on_disconnected = nt_track_end}};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  int healthy = test_connect(&addr);
  for (int i = 0; i < LORIS; i++)
    loris_fd[i] = test_connect(&addr);
  WAIT_UNTIL(nt_stats(svc).accepts == LORIS + 1);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, loris, NULL), 0);
  /* The healthy client echoes until every slowloris is gone. */
  uint8_t out[4 + 500], in[4 + 500];
  uint32_t seq = 0;
  while (nt_stats(svc).disconnects[CP_REASON_IDLE_TIMEOUT] < LORIS) {
    size_t n = nt_packet(out, 2, seq, seq % 500);
    test_send_all(healthy, out, n);
    test_recv_all(healthy, in, n);
    CHECK(!memcmp(in, out, n));
    seq++;
  }
  pthread_join(t, NULL);
  for (int i = 0; i < LORIS; i++) {
    CHECK(nt_read_to_end(loris_fd[i]));
    close(loris_fd[i]);
  }
  cp_service_stats st = nt_stats(svc);
  fprintf(stderr, "  %d slowloris timed out; the healthy client echoed %u packets meanwhile\n",
          LORIS, seq);
  CHECK_EQ(st.disconnects[CP_REASON_IDLE_TIMEOUT], LORIS);
  CHECK_EQ(nt_disconnects(svc), LORIS);
  CHECK_EQ(st.sessions, 1); /* the healthy one */
  CHECK_EQ(st.packets_in, seq);
  cp_service_stop(svc, 0);
  CHECK_EQ(nt_stats(svc).disconnects[CP_REASON_SHUTDOWN], 1);
  CHECK_EQ(nt_disconnects(svc), LORIS + 1);
  CHECK(nt_read_to_end(healthy));
  close(healthy);
  check_port_done(svc);
  CHECK_EQ(atomic_load(&nt_ntracks), t0 + LORIS + 1);
  nt_check_tracks_once();
  int idle = 0, shut = 0;
  for (int i = t0; i < t0 + 1 + LORIS; i++) {
    idle += atomic_load(&nt_tracks[i].reason) == CP_REASON_IDLE_TIMEOUT;
    shut += atomic_load(&nt_tracks[i].reason) == CP_REASON_SHUTDOWN;
  }
  CHECK_EQ(idle, LORIS); /* each session's own record agrees */
  CHECK_EQ(shut, 1);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
}

int main(void) {
  test_begin("test_net_fault_bounds", 240);
  slow_consumers();
  slowloris();
  return 0;
}
