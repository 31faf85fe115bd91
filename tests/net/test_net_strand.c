/* One session's callbacks never overlap, while sessions run in parallel:
 * 4 workers, 32 sessions under pipelined traffic from 4 client threads, and
 * a job queue broadcasting to every session meanwhile (so send completions
 * race packet deliveries). Every callback marks the session busy on entry
 * and counts an overlap if it already was. Every echo is checked. */
#include "common/nettest.h"

#define CONNS 32
#define CLIENT_THREADS 4
#define ROUNDS (TEST_SLOW ? 60 : 400)
#define PIPE 16 /* packets in flight per connection */
#define BODY 60

static atomic_long parallel_max, parallel_now, tick_count;
static cp_jobq *ticker;
static atomic_bool stop_ticks;
static cp_service *svc;

static void busy_enter(cp_session *s) {
  nt_cb_enter(cp_session_user(s));
  long now = atomic_fetch_add(&parallel_now, 1) + 1;
  long m = atomic_load(&parallel_max);
  while (now > m && !atomic_compare_exchange_weak(&parallel_max, &m, now))
    ;
}
static void busy_leave(cp_session *s) {
  atomic_fetch_sub(&parallel_now, 1);
  nt_cb_leave(cp_session_user(s));
}

static void on_connected(cp_session *s) {
  struct nt_track *t = nt_track_new(s);
  nt_cb_enter(t);
  nt_cb_leave(t);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  busy_enter(s);
  CHECK(nt_body_ok(pkt->body, pkt->body_len, pkt->id, 0) || pkt->id == 1);
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  CHECK_EQ(cp_session_send(s, b), 0);
  cp_sendbuf_unref(b);
  /* linger a little, so another worker has time to try this session */
  for (volatile int i = 0; i < 200; i++)
    ;
  busy_leave(s);
}

static void on_sent(cp_session *s, size_t bytes) {
  (void)bytes;
  busy_enter(s);
  busy_leave(s);
}

static void on_disconnected(cp_session *s, cp_reason why) {
  busy_enter(s);
  nt_track_end(s, why);
  busy_leave(s);
}

/* The job queue sends a 4-byte packet (id 9) to everyone, every ms. */
static void tick(void *arg) {
  (void)arg;
  if (atomic_load(&stop_ticks))
    return;
  cp_sendbuf *b = cp_packet_alloc(9, 0);
  cp_service_broadcast(svc, b);
  cp_sendbuf_unref(b);
  atomic_fetch_add(&tick_count, 1);
  cp_jobq_post_after(ticker, 1, tick, NULL);
}

static int fds[CONNS];

/* Read one packet; skip the ticker's. */
static void read_echo(int fd, const uint8_t *want, size_t n) {
  uint8_t in[4 + BODY];
  for (;;) {
    test_recv_all(fd, in, 4);
    uint16_t size = (uint16_t)(in[0] | in[1] << 8), id = (uint16_t)(in[2] | in[3] << 8);
    if (id == 9) {
      CHECK_EQ(size, 4);
      continue;
    }
    CHECK_EQ(size, n);
    test_recv_all(fd, in + 4, n - 4);
    CHECK(!memcmp(in, want, n));
    return;
  }
}

static void *client(void *arg) {
  long t = (long)(intptr_t)arg;
  uint8_t out[PIPE][4 + BODY];
  size_t n = 0;
  for (int r = 0; r < ROUNDS; r++)
    for (int c = (int)t; c < CONNS; c += CLIENT_THREADS) {
      for (int k = 0; k < PIPE; k++) {
        n = nt_packet(out[k], 1, 0, BODY);
        out[k][4] = (uint8_t)k;
        out[k][5] = (uint8_t)r;
        test_send_all(fds[c], out[k], n);
      }
      for (int k = 0; k < PIPE; k++)
        read_echo(fds[c], out[k], n);
    }
  return NULL;
}

int main(void) {
  test_begin("test_net_strand", 240);
  cp_service_options o = {.threads = 4,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_sent = on_sent,
                                        .on_disconnected = on_disconnected}};
  struct sockaddr_in addr;
  svc = nt_server(o, &addr);
  for (int i = 0; i < CONNS; i++)
    fds[i] = test_connect(&addr);
  WAIT_UNTIL(nt_stats(svc).sessions == CONNS);
  ticker = cp_jobq_create(svc);
  CHECK(ticker != NULL);
  CHECK_EQ(cp_jobq_post(ticker, tick, NULL), 0);
  pthread_t cl[CLIENT_THREADS];
  for (long i = 0; i < CLIENT_THREADS; i++)
    pthread_create(&cl[i], NULL, client, (void *)(intptr_t)i);
  for (int i = 0; i < CLIENT_THREADS; i++)
    pthread_join(cl[i], NULL);
  atomic_store(&stop_ticks, true);
  const uint64_t packets = (uint64_t)CONNS * ROUNDS * PIPE;
  WAIT_UNTIL(nt_stats(svc).packets_in == packets);
  for (int i = 0; i < CONNS; i++)
    close(fds[i]);
  WAIT_UNTIL(nt_disconnects(svc) == CONNS); /* FIN, or RST if ticks were unread */
  cp_service_stop(svc, 0);
  cp_jobq_destroy(ticker);
  long overlaps = 0;
  for (int i = 0; i < CONNS; i++)
    overlaps += atomic_load(&nt_tracks[i].overlaps);
  fprintf(stderr,
          "  %llu packets, %ld broadcasts, most sessions in callbacks at once: %ld, "
          "overlaps within a session: %ld\n",
          (unsigned long long)packets, atomic_load(&tick_count), atomic_load(&parallel_max),
          overlaps);
  CHECK_EQ(overlaps, 0);
  nt_check_tracks_once();
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
