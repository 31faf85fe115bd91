/* on_bad_packet: the application finishes its answers after a bad header.
 *
 * The server answers every packet later, from a job queue (a timer 10 ms
 * out, as a room's job would), never inline. Five packets and then a bad
 * header (size 3) reach it, followed by bytes a hostile client keeps
 * sending (more valid packets among them). Rounds:
 *  - KEEP: on_bad_packet keeps the session and posts a job, behind the
 *    answers, that disconnects it gracefully: the peer gets all five
 *    answers byte for byte, then the end of the stream (a FIN, no reset);
 *  - KEEP_BYTES: the same with every byte written on its own;
 *  - KEEP_LATE: the disconnect comes after every answer was sent, with
 *    100 KB of the hostile tail still unread, and the peer reads only later:
 *    still every answer and a FIN (a close with unread bytes would reset the
 *    connection and destroy the answers the peer had not read yet);
 *  - FORGET: it keeps the session and never disconnects it: the engine does
 *    after bad_packet_grace_ms, with the five answers sent first;
 *  - REFUSE: it returns false: the session closes as without the callback
 *    (the answers, posted for later, fail with CP_ENOTCONN; none reaches the
 *    peer before its end).
 * Each session ends as bad_packet; on_bad_packet runs once per session; no
 * byte after the bad header is ever framed (packets_in is exactly five per
 * round); nothing is left referenced or allocated. */
#include "common/nettest.h"

enum { KEEP, KEEP_BYTES, KEEP_LATE, FORGET, REFUSE, MODES };
#define ROUNDS_PER_MODE 6
#define GOOD 5

static cp_jobq *q;
static _Atomic int mode;
static _Atomic int hook_calls, answers_sent, answers_refused, ended_bad, ended_other;

struct answer {
  cp_session *s; /* a reference */
  cp_sendbuf *b;
};

static void answer_job(void *arg) {
  struct answer *a = arg;
  int rc = cp_session_send(a->s, a->b);
  if (rc == 0) {
    atomic_fetch_add(&answers_sent, 1);
  } else {
    CHECK_EQ(rc, CP_ENOTCONN);
    atomic_fetch_add(&answers_refused, 1);
  }
  cp_sendbuf_unref(a->b);
  cp_session_put(a->s);
  free(a);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  struct answer *a = malloc(sizeof *a);
  CHECK(a != NULL);
  a->s = cp_session_get(s);
  a->b = cp_sendbuf_copy(pkt->data, pkt->size);
  CHECK(a->b != NULL);
  CHECK_EQ(cp_jobq_post_after(q, 10, answer_job, a), 0);
}

static void close_job(void *arg) {
  cp_session *s = arg;
  CHECK(cp_session_connected(s)); /* held: still sending */
  cp_session_disconnect(s, true);
  cp_session_put(s);
}

static bool on_bad_packet(cp_session *s) {
  atomic_fetch_add(&hook_calls, 1);
  int m = atomic_load(&mode);
  if (m == REFUSE)
    return false;
  if (m != FORGET) /* behind the answers (same delay, started later; or well after) */
    CHECK_EQ(cp_jobq_post_after(q, m == KEEP_LATE ? 60 : 10, close_job, cp_session_get(s)), 0);
  return true;
}

static void on_disconnected(cp_session *s, cp_reason why) {
  (void)s;
  if (why == CP_REASON_BAD_PACKET) {
    atomic_fetch_add(&ended_bad, 1);
  } else {
    atomic_fetch_add(&ended_other, 1);
    fprintf(stderr, "  reason %s\n", cp_reason_name(why));
  }
}

/* Read until the end: true for a FIN, false for a reset. */
static bool read_fin(int fd, uint8_t *extra, size_t *nextra) {
  *nextra = 0;
  for (;;) {
    uint8_t buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      *nextra += (size_t)n;
      if (extra)
        memcpy(extra, buf, (size_t)n < 64 ? (size_t)n : 64);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    return n == 0;
  }
}

int main(void) {
  test_begin("test_net_bad_packet_hook", 120);
  cp_service_options o = {.threads = 2,
                          .max_packet = 512,
                          .bad_packet_grace_ms = 200,
                          .callbacks = {.on_packet = on_packet,
                                        .on_bad_packet = on_bad_packet,
                                        .on_disconnected = on_disconnected}};
  struct sockaddr_in addr;
  cp_service *svc = nt_server_create(o);
  q = cp_jobq_create(svc);
  CHECK(q != NULL);
  nt_server_start(svc, &addr);
  int round = 0;
  for (int m = 0; m < MODES; m++) {
    atomic_store(&mode, m);
    for (int r = 0; r < ROUNDS_PER_MODE; r++, round++) {
      int fd = test_connect(&addr);
      static uint8_t out[128 * 1024];
      uint8_t in[512];
      size_t n = 0;
      for (uint32_t k = 0; k < GOOD; k++)
        n += nt_packet(out + n, 1, (uint32_t)round * 8 + k, 20 + k);
      size_t good = n;
      const uint8_t bad[] = {3, 0, 1, 0};
      memcpy(out + n, bad, sizeof bad);
      n += sizeof bad;
      /* what a hostile client sends next: valid packets, never framed */
      for (uint32_t k = 0; k < (m == KEEP_LATE ? 3000 : 4); k++)
        n += nt_packet(out + n, 2, k, 30);
      if (m == KEEP_BYTES) {
        for (size_t i = 0; i < n; i++)
          test_send_all(fd, out + i, 1);
      } else {
        test_send_all(fd, out, n);
      }
      if (m == KEEP_LATE)
        test_sleep_ms(150); /* the session is lingering by now */
      if (m != REFUSE) {
        test_recv_all(fd, in, good);
        CHECK(!memcmp(in, out, good)); /* all five, in order, byte for byte */
        size_t extra;
        CHECK(read_fin(fd, NULL, &extra)); /* then a FIN, not a reset */
        CHECK_EQ(extra, 0u);               /* and nothing more */
        if (m == KEEP_LATE)                /* lingering: it waits for our FIN (2 s at most) */
          CHECK_EQ(nt_disconnects(svc), (uint64_t)round);
      } else {
        size_t extra;
        read_fin(fd, NULL, &extra); /* closes at once: no answer was queued */
        CHECK_EQ(extra, 0u);
      }
      close(fd);
      WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_BAD_PACKET] == (uint64_t)round + 1);
      CHECK_EQ(atomic_load(&hook_calls), round + 1);
      CHECK_EQ(nt_stats(svc).packets_in, (uint64_t)(round + 1) * GOOD);
    }
  }
  int total = MODES * ROUNDS_PER_MODE;
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  WAIT_UNTIL(atomic_load(&answers_sent) + atomic_load(&answers_refused) == total * GOOD);
  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(nt_disconnects(svc), (uint64_t)total);
  CHECK_EQ(st.disconnects[CP_REASON_BAD_PACKET], (uint64_t)total);
  CHECK_EQ(atomic_load(&ended_bad), total);
  CHECK_EQ(atomic_load(&ended_other), 0);
  CHECK_EQ(atomic_load(&answers_sent), (MODES - 1) * ROUNDS_PER_MODE * GOOD);
  CHECK_EQ(atomic_load(&answers_refused), ROUNDS_PER_MODE * GOOD);
  CHECK_EQ(st.packets_in, (uint64_t)total * GOOD);
  fprintf(stderr,
          "  %d sessions x (5 packets, a bad header, more packets): every kept one answered 5 "
          "times, then a FIN; all bad_packet\n",
          total);
  nt_finish(svc, q);
  return 0;
}
