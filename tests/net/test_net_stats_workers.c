/* The per-message counters under concurrency (issue 13: a counter block per
 * worker, one shared block for other threads, summed when read). Four
 * workers echo every packet of 8 clients (cp_session_send_copy, on the
 * workers) while the application's thread pushes packets to the same
 * sessions (cp_session_send, the shared block), so a send queued on one
 * thread leaves its queue on another. A reader thread samples the counters
 * all along: each only grows, and the queued-bytes gauge never passes every
 * byte ever queued (a sum that went below zero would wrap far past it). At
 * the end every counter is exact and the gauge is back to 0. */
#include "common/nettest.h"

#define CLIENTS 8
#define ROUNDS (TEST_SLOW ? 300 : 2000) /* echoes per client */
#define PUSHES (TEST_SLOW ? 100 : 500)  /* application packets per client */
#define PKT 48
#define ECHO_ID 1
#define PUSH_ID 2

static cp_session *sessions[CLIENTS];
static atomic_int nsessions;
static atomic_bool sampling;
static atomic_long samples;

static void on_connected(cp_session *s) {
  int i = atomic_fetch_add(&nsessions, 1);
  CHECK(i < CLIENTS);
  sessions[i] = cp_session_get(s);
}

static void on_packet(cp_session *s, const cp_packet *p) {
  CHECK_EQ(p->size, PKT);
  CHECK_EQ(cp_session_send_copy(s, p->data, p->size), 0);
}

/* A client: ROUNDS packets sent one at a time, each echo awaited; the
 * application's pushes come in between, PUSHES of them in order. */
static void *client(void *arg) {
  int fd = (int)(intptr_t)arg;
  uint32_t echoes = 0, pushes = 0;
  uint8_t out[PKT], in[PKT];
  while (echoes < ROUNDS || pushes < PUSHES) {
    if (echoes < ROUNDS) {
      nt_packet(out, ECHO_ID, echoes, PKT - CP_PACKET_HEADER);
      CHECK_EQ(send(fd, out, PKT, 0), PKT);
    }
    for (;;) { /* until this round's echo (or, once they are all back, a push) */
      test_recv_all(fd, in, PKT);
      CHECK_EQ(in[0] | in[1] << 8, PKT);
      uint16_t id = (uint16_t)(in[2] | in[3] << 8);
      if (id == PUSH_ID) {
        CHECK(nt_body_ok(in + 4, PKT - 4, PUSH_ID, pushes));
        pushes++;
        if (echoes == ROUNDS)
          break;
        continue;
      }
      CHECK_EQ(id, ECHO_ID);
      CHECK(nt_body_ok(in + 4, PKT - 4, ECHO_ID, echoes));
      echoes++;
      break;
    }
  }
  close(fd); /* done: the session ends as peer_closed */
  return NULL;
}

static void *pusher(void *arg) {
  (void)arg;
  for (uint32_t k = 0; k < PUSHES; k++) {
    for (int i = 0; i < CLIENTS; i++) {
      cp_sendbuf *b = cp_packet_alloc(PUSH_ID, PKT - CP_PACKET_HEADER);
      CHECK(b != NULL);
      nt_packet(cp_sendbuf_data(b), PUSH_ID, k, PKT - CP_PACKET_HEADER);
      CHECK_EQ(cp_session_send(sessions[i], b), 0);
      cp_sendbuf_unref(b);
    }
    if (k % 64 == 0)
      test_nap();
  }
  return NULL;
}

static void *sampler(void *arg) {
  cp_service *svc = arg;
  const uint64_t all = (uint64_t)CLIENTS * (ROUNDS + PUSHES) * PKT;
  cp_service_stats last = {0};
  while (atomic_load(&sampling)) {
    cp_service_stats st = nt_stats(svc);
    CHECK(st.send_queue_bytes <= all);
    CHECK(st.bytes_in >= last.bytes_in && st.bytes_out >= last.bytes_out);
    CHECK(st.packets_in >= last.packets_in && st.packets_out >= last.packets_out);
    CHECK(st.sends >= last.sends);
    CHECK(st.bytes_in <= (uint64_t)CLIENTS * ROUNDS * PKT && st.bytes_out <= all);
    last = st;
    atomic_fetch_add(&samples, 1);
  }
  return NULL;
}

int main(void) {
  test_begin("test_net_stats_workers", 240);
  cp_service_options o = {.threads = 4,
                          .callbacks = {.on_connected = on_connected, .on_packet = on_packet}};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  int fds[CLIENTS];
  for (int i = 0; i < CLIENTS; i++)
    fds[i] = test_connect(&addr);
  WAIT_UNTIL(atomic_load(&nsessions) == CLIENTS);

  atomic_store(&sampling, true);
  pthread_t cl[CLIENTS], push, samp;
  CHECK_EQ(pthread_create(&samp, NULL, sampler, svc), 0);
  for (int i = 0; i < CLIENTS; i++)
    CHECK_EQ(pthread_create(&cl[i], NULL, client, (void *)(intptr_t)fds[i]), 0);
  CHECK_EQ(pthread_create(&push, NULL, pusher, NULL), 0);
  pthread_join(push, NULL);
  for (int i = 0; i < CLIENTS; i++)
    pthread_join(cl[i], NULL);

  const uint64_t in_pkts = (uint64_t)CLIENTS * ROUNDS;
  const uint64_t out_pkts = (uint64_t)CLIENTS * (ROUNDS + PUSHES);
  /* a send's bytes are counted when it completes, maybe after the client read them */
  WAIT_UNTIL(nt_stats(svc).bytes_out == out_pkts * PKT);
  WAIT_UNTIL(nt_stats(svc).send_queue_bytes == 0);
  atomic_store(&sampling, false);
  pthread_join(samp, NULL);
  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.packets_in, in_pkts);
  CHECK_EQ(st.bytes_in, in_pkts * PKT);
  CHECK_EQ(st.packets_out, out_pkts);
  CHECK_EQ(st.bytes_out, out_pkts * PKT);
  CHECK_EQ(st.send_queue_bytes, 0);
  CHECK(st.sends >= 1 && st.sends <= out_pkts);
  CHECK(atomic_load(&samples) > 0);
  fprintf(stderr, "  %llu packets in, %llu out in %llu sends; %ld samples of the counters\n",
          (unsigned long long)st.packets_in, (unsigned long long)st.packets_out,
          (unsigned long long)st.sends, atomic_load(&samples));

  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_PEER_CLOSED] == CLIENTS);
  for (int i = 0; i < CLIENTS; i++)
    cp_session_put(sessions[i]); /* the last references: the sessions go */
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
