/*
 * test_net_send_copy - cp_session_send_copy: the replies to the packets of
 * one receive go into one open send buffer.
 *
 *  1. Order and bytes: one write of 60 packets, answered by send_copy (small
 *     and, above the open buffer's 1 KiB, large) and cp_session_send mixed;
 *     the client gets exactly the expected stream, byte for byte. Inside
 *     each on_packet the queue is inspected: a small copy that fits goes
 *     into the open buffer (no new buffer in the ring), a cp_session_send
 *     closes it, a copy that does not fit opens a new one.
 *  2. Limits: under one receive (corked: nothing leaves) copies of 1,000
 *     bytes against send_queue_max 4,500: exactly 4 are queued, the 5th
 *     returns CP_ENOBUFS and disconnects the session as a slow consumer,
 *     the 6th CP_ENOTCONN.
 *  3. Threads: a job on another worker and the strand copy into the same
 *     session at once; every packet arrives whole, each thread's in order.
 *  4. Bad input: NULL session or data, length 0: CP_EINVAL.
 */
#include "common/nettest.h"

#include "net/net_internal.h" /* the session's queue, inspected under its lock */

#define LIMIT 4500u
enum { ID_COPY = 1, ID_SEND = 2, ID_BIG = 3, ID_FLOOD = 4, ID_THREADS = 5, ID_A = 6, ID_B = 7 };
#define BIG_BODY 1500
#define THREAD_N 400

static cp_jobq *jq;
static _Atomic long flood_ok, flood_nobufs, flood_notconn;

struct snap {
  cp_sendbuf *open;
  uint32_t len;
  size_t open_len;
};

static struct snap snap_of(cp_session *s) {
  struct snap v = {0};
  cp__spin_lock(&s->send_lock);
  if (s->sq) {
    v.open = s->sq->open;
    v.len = s->sq->len;
    v.open_len = cp_sendbuf_len(v.open);
    CHECK(!v.open || s->sq->ring[(s->sq->head + s->sq->len - 1) % s->sq->cap] == v.open);
  }
  cp__spin_unlock(&s->send_lock);
  return v;
}

/* A reply by send_copy, checked against the queue before and after. */
static void reply_copy(cp_session *s, const uint8_t *data, size_t n) {
  struct snap a = snap_of(s);
  CHECK_EQ(cp_session_send_copy(s, data, n), 0);
  struct snap b = snap_of(s);
  CHECK(b.open != NULL); /* corked: nothing is in flight that could close it */
  if (a.open && a.open_len + n <= cp_sendbuf_cap(a.open)) {
    CHECK(b.open == a.open); /* appended */
    CHECK_EQ(b.len, a.len);
    CHECK_EQ(b.open_len, a.open_len + n);
  } else {
    CHECK(b.open != a.open); /* a new one */
    CHECK_EQ(b.len, a.len + 1);
    CHECK_EQ(b.open_len, n);
    CHECK(cp_sendbuf_cap(b.open) >= (n > 1024 ? n : 1024));
  }
}

static void thread_job(void *arg) {
  cp_session *s = arg;
  uint8_t p[64];
  for (uint32_t i = 0; i < THREAD_N; i++)
    CHECK_EQ(cp_session_send_copy(s, p, nt_packet(p, ID_A, i, 20)), 0);
  cp_session_put(s);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  switch (pkt->id) {
  case ID_COPY:
  case ID_BIG:
    reply_copy(s, pkt->data, pkt->size);
    break;
  case ID_SEND: {
    CHECK_EQ(cp_session_send_copy(s, NULL, 1), CP_EINVAL);
    CHECK_EQ(cp_session_send_copy(s, pkt->data, 0), CP_EINVAL);
    cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
    CHECK_EQ(cp_session_send(s, b), 0);
    cp_sendbuf_unref(b);
    struct snap v = snap_of(s);
    CHECK(v.open == NULL); /* closed by the buffer after it */
    break;
  }
  case ID_FLOOD: {
    uint8_t big[1000];
    memset(big, 7, sizeof big);
    for (int i = 0; i < 6; i++) {
      int rc = cp_session_send_copy(s, big, sizeof big);
      if (rc == 0) {
        atomic_fetch_add(&flood_ok, 1);
        CHECK_EQ(cp_session_send_queued(s), (size_t)atomic_load(&flood_ok) * sizeof big);
      } else if (rc == CP_ENOBUFS) {
        atomic_fetch_add(&flood_nobufs, 1);
      } else {
        CHECK_EQ(rc, CP_ENOTCONN);
        atomic_fetch_add(&flood_notconn, 1);
      }
    }
    break;
  }
  case ID_THREADS: {
    CHECK_EQ(cp_jobq_post(jq, thread_job, cp_session_get(s)), 0);
    uint8_t p[64];
    for (uint32_t i = 0; i < THREAD_N; i++)
      CHECK_EQ(cp_session_send_copy(s, p, nt_packet(p, ID_B, i, 20)), 0);
    break;
  }
  default:
    CHECK(0);
  }
}

static cp_service *serve(size_t limit, struct sockaddr_in *addr) {
  cp_service_options o = {
      .threads = 2, .send_queue_max = limit, .callbacks = {.on_packet = on_packet}};
  cp_service *svc = nt_server_create(o);
  jq = cp_jobq_create(svc);
  CHECK(jq != NULL);
  nt_server_start(svc, addr);
  return svc;
}

int main(void) {
  test_begin("test_net_send_copy", 120);
  struct sockaddr_in addr;
  cp_service *svc = serve(0, &addr); /* the default limit */

  /* 4. bad input (a session's own: in on_packet) */
  uint8_t x = 0;
  CHECK_EQ(cp_session_send_copy(NULL, &x, 1), CP_EINVAL);

  /* 1. order and bytes */
  static uint8_t out[60 * (4 + BIG_BODY)], in[sizeof out];
  size_t n = 0;
  for (uint32_t i = 0; i < 60; i++) {
    uint16_t id = i % 7 == 3 ? ID_SEND : i % 11 == 5 ? ID_BIG : ID_COPY;
    n += nt_packet(out + n, id, i, id == ID_BIG ? BIG_BODY : 10 + i % 40);
  }
  int c = test_connect(&addr);
  test_send_all(c, out, n);
  test_recv_all(c, in, n);
  CHECK(memcmp(in, out, n) == 0);
  close(c);

  /* 3. threads */
  uint8_t p[8];
  c = test_connect(&addr);
  test_send_all(c, p, nt_packet(p, ID_THREADS, 0, 0));
  uint32_t next[2] = {0, 0};
  for (uint32_t k = 0; k < 2 * THREAD_N; k++) {
    uint8_t h[4 + 20];
    test_recv_all(c, h, sizeof h);
    CHECK_EQ(h[0] | h[1] << 8, (int)sizeof h);
    uint16_t id = (uint16_t)(h[2] | h[3] << 8);
    CHECK(id == ID_A || id == ID_B);
    uint32_t *seq = &next[id - ID_A];
    CHECK(nt_body_ok(h + 4, 20, id, *seq));
    (*seq)++;
  }
  CHECK_EQ(next[0], THREAD_N);
  CHECK_EQ(next[1], THREAD_N);
  close(c);
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  WAIT_UNTIL(nt_stats(svc).send_queue_bytes == 0);
  CHECK_EQ(nt_stats(svc).packets_out, 60 + 2 * THREAD_N);
  nt_finish(svc, jq);

  /* 2. limits */
  svc = serve(LIMIT, &addr);
  c = test_connect(&addr);
  test_send_all(c, p, nt_packet(p, ID_FLOOD, 0, 0));
  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_SLOW_CONSUMER] == 1);
  CHECK_EQ(atomic_load(&flood_ok), (long)(LIMIT / 1000));
  CHECK_EQ(atomic_load(&flood_nobufs), 1);
  CHECK_EQ(atomic_load(&flood_notconn), 6 - (long)(LIMIT / 1000) - 1);
  close(c);
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  WAIT_UNTIL(nt_stats(svc).send_queue_bytes == 0);
  nt_finish(svc, jq);
  return 0;
}
