/*
 * test_net_alloc_fail - out of memory at every allocation, one at a time.
 *
 * A scenario that walks the engine's allocating paths - service and port
 * creation, start, accept (session, registry), receive (a packet split over
 * three writes keeps a partial copy), send (queue, ring, gathered iovec),
 * job queues, timers and broadcast - is first run with an allocator that
 * never fails, counting its allocations (about N). Then it runs again N + 20
 * times, the n-th run failing exactly the n-th allocation (a cp_replace_
 * allocator hook, like libuv's tests do with uv_replace_allocator).
 *
 * Every run must end cleanly, whichever allocation failed:
 *  - create/start return CP_ENOMEM (and nothing else), or they succeed;
 *  - a session hit by the failure is disconnected (reason ERROR, or LOCAL
 *    when the application disconnects after a NULL from cp_packet_alloc or
 *    an CP_ENOMEM from cp_session_send, cp_session_send_copy - every other
 *    echo - or cp_jobq_post), or never accepted;
 *  - a session that survives to cp_service_stop (reason SHUTDOWN) has lost
 *    nothing: its three echoes, byte for byte, in order, and every broadcast
 *    the jobs made (a broadcast cannot skip a session and keep it);
 *  - what any client received is well formed: echoes a prefix, in order;
 *  - after destroy, every allocation was freed (counted by the hook), every
 *    send buffer is back, and the port saw as many completions as ops.
 * The clean run must deliver everything to both clients.
 *
 * Then a graceful disconnect's linger with every allocation failing: it
 * lingers all the same (it allocates nothing, its timer's slot reserved).
 *
 * ALLOC_FAIL_TRACE=1 prints each run's number and the failed allocation's
 * backtrace (addr2line -e test_net_alloc_fail turns it into lines).
 */
#include "common/nettest.h"

#include "cport/alloc.h"
#include "net/net_internal.h" /* cp__sendbuf_trim: pooled chunks are freed for the count */

#ifndef _WIN32
#include <execinfo.h>
#endif
#include <stdlib.h>

/* ---- the failing allocator ----------------------------------------------- */

static _Atomic long calls;   /* allocations attempted in this run */
static _Atomic long fail_at; /* fail this one (1-based); 0: none */
static _Atomic long injected;
static _Atomic long live; /* blocks allocated through the hook and not freed */

static _Atomic bool fail_all; /* fail every allocation (the linger phase) */

static bool should_fail(void) {
  long k = atomic_fetch_add(&calls, 1) + 1;
  if (atomic_load(&fail_all)) {
    atomic_fetch_add(&injected, 1);
    return true;
  }
  if (k == atomic_load(&fail_at)) {
    atomic_fetch_add(&injected, 1);
#ifndef _WIN32
    if (getenv("ALLOC_FAIL_TRACE")) {
      void *bt[16];
      backtrace_symbols_fd(bt, backtrace(bt, 16), 2);
    }
#endif
    return true;
  }
  return false;
}
static void *t_malloc(size_t n) {
  if (should_fail())
    return NULL;
  void *p = malloc(n);
  if (p)
    atomic_fetch_add(&live, 1);
  return p;
}
static void *t_calloc(size_t c, size_t n) {
  if (should_fail())
    return NULL;
  void *p = calloc(c, n);
  if (p)
    atomic_fetch_add(&live, 1);
  return p;
}
static void *t_realloc(void *old, size_t n) {
  if (should_fail())
    return NULL;
  void *p = realloc(old, n);
  if (p && !old)
    atomic_fetch_add(&live, 1);
  return p;
}
static void t_free(void *p) {
  if (p)
    atomic_fetch_sub(&live, 1);
  free(p);
}

/* ---- the server application ---------------------------------------------- */

enum { ID_HELLO = 1, ID_ECHO = 2, ID_BCAST = 3, ID_BCAST_JOB = 4, ID_BCAST_TIMER = 5 };
#define NCLIENTS 2
#define BODY 40

struct client_rec {
  _Atomic int connected; /* 0, or 1 once HELLO named the session */
  _Atomic int ended;     /* on_disconnected ran */
  _Atomic int reason;    /* its reason */
  _Atomic int last_seen; /* the last echo sequence the server handled, -1 none */
};

static struct client_rec recs[NCLIENTS];
static cp_service *svc;
static cp_jobq *jq;
static _Atomic long jobs_pending; /* posted jobs and timers not yet run */
static _Atomic long bcast_job_runs, bcast_timer_runs;

static void app_fail(cp_session *s) {
  cp_session_disconnect(s, false); /* the application's answer to CP_ENOMEM */
}

static void echo(cp_session *s, const cp_packet *p) {
  if (p->id == ID_ECHO && ((p->body[0] - 'a') & 1)) {
    /* every other echo through the open send buffer (its allocation fails too) */
    if (cp_session_send_copy(s, p->data, p->size) == CP_ENOMEM)
      app_fail(s);
    return;
  }
  cp_sendbuf *b = cp_packet_alloc(p->id, p->body_len);
  if (!b) {
    app_fail(s);
    return;
  }
  memcpy(cp_sendbuf_data(b) + CP_PACKET_HEADER, p->body, p->body_len);
  int rc = cp_session_send(s, b);
  cp_sendbuf_unref(b);
  if (rc == CP_ENOMEM)
    app_fail(s);
}

static void broadcast(uint16_t id, _Atomic long *runs) {
  cp_sendbuf *b = cp_packet_alloc(id, BODY);
  if (b) {
    memset(cp_sendbuf_data(b) + CP_PACKET_HEADER, id, BODY);
    cp_service_broadcast(svc, b);
    cp_sendbuf_unref(b);
    atomic_fetch_add(runs, 1);
  } else {
    /* Nothing was sent to anyone: the broadcast did not happen. */
  }
}

static void timer_job(void *arg) {
  (void)arg;
  broadcast(ID_BCAST_TIMER, &bcast_timer_runs);
  atomic_fetch_sub(&jobs_pending, 1);
}

static void bcast_job(void *arg) {
  cp_session *origin = arg;
  broadcast(ID_BCAST_JOB, &bcast_job_runs);
  atomic_fetch_add(&jobs_pending, 1);
  if (cp_jobq_post_after(jq, 2, timer_job, NULL) != 0) {
    atomic_fetch_sub(&jobs_pending, 1);
    app_fail(origin);
  }
  cp_session_put(origin);
  atomic_fetch_sub(&jobs_pending, 1);
}

static void on_packet(cp_session *s, const cp_packet *p) {
  if (p->id == ID_HELLO) {
    CHECK_EQ(p->body_len, 1u);
    unsigned i = p->body[0];
    CHECK(i < NCLIENTS);
    cp_session_set_user(s, &recs[i]);
    atomic_store(&recs[i].connected, 1);
    echo(s, p);
    return;
  }
  struct client_rec *r = cp_session_user(s);
  CHECK(r != NULL);
  if (p->id == ID_ECHO) {
    CHECK_EQ(p->body_len, (size_t)BODY);
    echo(s, p);
    atomic_store(&r->last_seen, (int)p->body[0] - 'a');
  } else if (p->id == ID_BCAST) {
    atomic_fetch_add(&jobs_pending, 1);
    int rc = cp_jobq_post(jq, bcast_job, cp_session_get(s));
    if (rc) {
      CHECK_EQ(rc, CP_ENOMEM);
      cp_session_put(s);
      atomic_fetch_sub(&jobs_pending, 1);
      app_fail(s);
    }
  }
}

static void on_disconnected(cp_session *s, cp_reason why) {
  struct client_rec *r = cp_session_user(s);
  if (!r)
    return; /* ended before its HELLO */
  atomic_store(&r->reason, (int)why);
  CHECK_EQ(atomic_fetch_add(&r->ended, 1), 0);
}

/* ---- the clients ------------------------------------------------------------ */

struct client {
  int fd;
  bool eof;
  uint8_t in[8192];
  size_t in_len;
};

static void send_packet(struct client *c, uint16_t id, const uint8_t *body, size_t len, int parts) {
  uint8_t p[128];
  size_t n = CP_PACKET_HEADER + len;
  p[0] = (uint8_t)n, p[1] = (uint8_t)(n >> 8), p[2] = (uint8_t)id, p[3] = (uint8_t)(id >> 8);
  memcpy(p + CP_PACKET_HEADER, body, len);
  size_t off = 0;
  for (int k = 1; k <= parts; k++) {
    size_t end = n * (size_t)k / (size_t)parts;
    if (send(c->fd, p + off, end - off, MSG_NOSIGNAL) != (ssize_t)(end - off))
      return; /* the server closed it: seen when reading */
    off = end;
    if (k < parts)
      test_sleep_ms(1); /* arrive apart, most of the time */
  }
}

/* Read until EOF or reset. */
static void read_to_end(struct client *c) {
  while (!c->eof) {
    CHECK(c->in_len < sizeof c->in);
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      fprintf(stderr, "a client waited 30 s for the server to close\n");
      exit(1);
    }
    if (n <= 0) {
      c->eof = true;
      break;
    }
    c->in_len += (size_t)n;
  }
}

/* Read until the HELLO echo came, or the connection ended. */
static bool wait_hello(struct client *c) {
  while (c->in_len < CP_PACKET_HEADER + 1) {
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    CHECK(!(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)));
    if (n <= 0) {
      c->eof = true;
      return false;
    }
    c->in_len += (size_t)n;
  }
  return true;
}

struct tally {
  int echoes, bjob, btimer;
};

/* Parse what c received; fail on anything malformed or out of order. */
static struct tally check_stream(const struct client *c, unsigned idx) {
  struct tally t = {0};
  size_t off = 0;
  bool hello = false;
  while (c->in_len - off >= CP_PACKET_HEADER) {
    const uint8_t *p = c->in + off;
    uint16_t size = (uint16_t)(p[0] | p[1] << 8), id = (uint16_t)(p[2] | p[3] << 8);
    CHECK(size >= CP_PACKET_HEADER);
    if (c->in_len - off < size)
      break;
    const uint8_t *body = p + CP_PACKET_HEADER;
    size_t blen = size - CP_PACKET_HEADER;
    switch (id) {
    case ID_HELLO:
      CHECK(!hello);
      CHECK(blen == 1 && body[0] == idx);
      hello = true;
      break;
    case ID_ECHO:
      CHECK(hello);
      CHECK_EQ(blen, (size_t)BODY);
      CHECK_EQ(body[0], (uint8_t)('a' + t.echoes));
      for (size_t j = 1; j < blen; j++)
        CHECK_EQ(body[j], (uint8_t)(idx * 7u + (unsigned)t.echoes + j));
      t.echoes++;
      break;
    case ID_BCAST_JOB:
    case ID_BCAST_TIMER:
      CHECK_EQ(blen, (size_t)BODY);
      for (size_t j = 0; j < blen; j++)
        CHECK_EQ(body[j], (uint8_t)id);
      if (id == ID_BCAST_JOB)
        t.bjob++;
      else
        t.btimer++;
      break;
    default:
      fprintf(stderr, "client %u: unexpected packet id %u\n", idx, id);
      exit(1);
    }
    off += size;
  }
  /* A cut-off tail is possible only for a session that was reset. */
  return t;
}

/* ---- one run --------------------------------------------------------------- */

static void check_no_leak(long n) {
  cp__sendbuf_trim();
  if (atomic_load(&live) != 0) {
    fprintf(stderr, "run failing allocation %ld: %ld blocks not freed\n", n, atomic_load(&live));
    exit(1);
  }
  CHECK_EQ(cp_sendbuf_outstanding(), 0u);
}

/* Returns the allocations the run made. */
static long run(long n, bool verbose) {
  atomic_store(&calls, 0);
  atomic_store(&injected, 0);
  atomic_store(&fail_at, n);
  atomic_store(&jobs_pending, 0);
  atomic_store(&bcast_job_runs, 0);
  atomic_store(&bcast_timer_runs, 0);
  memset(recs, 0, sizeof recs);
  for (int i = 0; i < NCLIENTS; i++)
    atomic_store(&recs[i].last_seen, -1);

  cp_service_options o = {
      .kind = CP_SERVICE_SERVER,
      .host = "127.0.0.1",
      .threads = 2,
      .accepts = 2,
      .max_packet = 1024,
      .port_opts = {.queue_depth = 64, .buf_count = 16, .buf_size = 2048},
      .callbacks = {.on_packet = on_packet, .on_disconnected = on_disconnected},
  };
  svc = NULL;
  int rc = cp_service_create(&svc, &o);
  if (rc) {
    CHECK_EQ(rc, CP_ENOMEM);
    CHECK(atomic_load(&injected) == 1);
    check_no_leak(n);
    return atomic_load(&calls);
  }
  jq = cp_jobq_create(svc);
  if (!jq) {
    CHECK(atomic_load(&injected) == 1);
    cp_service_destroy(svc);
    check_no_leak(n);
    return atomic_load(&calls);
  }
  rc = cp_service_start(svc);
  if (rc) {
    CHECK_EQ(rc, CP_ENOMEM);
    CHECK(atomic_load(&injected) == 1);
    cp_jobq_destroy(jq);
    cp_service_destroy(svc);
    check_no_leak(n);
    return atomic_load(&calls);
  }
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons(cp_service_listen_port(svc))};

  static struct client cl[NCLIENTS];
  for (unsigned i = 0; i < NCLIENTS; i++) {
    cl[i] = (struct client){.fd = test_connect(&addr)};
    uint8_t b = (uint8_t)i;
    send_packet(&cl[i], ID_HELLO, &b, 1, 1);
  }
  /* Both named and echoed (or gone) before any broadcast, so a broadcast
   * reaches every session that is still there. */
  bool alive[NCLIENTS];
  for (unsigned i = 0; i < NCLIENTS; i++)
    alive[i] = wait_hello(&cl[i]);
  for (unsigned i = 0; i < NCLIENTS; i++) {
    if (!alive[i])
      continue;
    uint8_t body[BODY];
    for (int seq = 0; seq < 3; seq++) {
      body[0] = (uint8_t)('a' + seq);
      for (size_t j = 1; j < BODY; j++)
        body[j] = (uint8_t)(i * 7u + (unsigned)seq + j);
      send_packet(&cl[i], ID_ECHO, body, BODY, seq == 1 ? 3 : 1);
      if (seq == 1)
        send_packet(&cl[i], ID_BCAST, body, 0, 1);
    }
  }
  /* Quiet: each session handled its last echo or ended; every job and
   * timer ran. */
  for (unsigned i = 0; i < NCLIENTS; i++)
    if (alive[i])
      WAIT_UNTIL(atomic_load(&recs[i].ended) || atomic_load(&recs[i].last_seen) == 2);
  WAIT_UNTIL(atomic_load(&jobs_pending) == 0);
  cp_service_stop(svc, 10000); /* queued replies go out first */

  nt_check_port_settled(svc);
  long bj = atomic_load(&bcast_job_runs), bt = atomic_load(&bcast_timer_runs);
  bool failed = atomic_load(&injected) > 0;
  for (unsigned i = 0; i < NCLIENTS; i++) {
    read_to_end(&cl[i]);
    struct tally t = check_stream(&cl[i], i);
    struct client_rec *r = &recs[i];
    int why = atomic_load(&r->connected) ? atomic_load(&r->reason) : -1;
    if (verbose)
      fprintf(stderr, "  client %u: reason %s, %d echoes, %d+%d broadcasts (of %ld+%ld)\n", i,
              why < 0 ? "never named" : cp_reason_name((cp_reason)why), t.echoes, t.bjob, t.btimer,
              bj, bt);
    CHECK(t.bjob <= bj && t.btimer <= bt);
    if (why == CP_REASON_SHUTDOWN) {
      /* It lived to the end: it lost nothing. */
      CHECK_EQ(t.echoes, 3);
      CHECK_EQ((long)t.bjob, bj);
      CHECK_EQ((long)t.btimer, bt);
      CHECK_EQ(atomic_load(&r->ended), 1);
    } else {
      /* Ended early, or was never accepted: only because of the failure. */
      if (!failed)
        fprintf(stderr, "client %u ended (reason %d) with no allocation failed\n", i, why);
      CHECK(failed);
      CHECK(why == -1 || why == CP_REASON_ERROR || why == CP_REASON_LOCAL);
    }
    close(cl[i].fd);
  }
  if (!failed) {
    CHECK_EQ(bj, (long)NCLIENTS);
    CHECK_EQ(bt, (long)NCLIENTS);
  }
  cp_jobq_destroy(jq);
  cp_service_destroy(svc);
  check_no_leak(n);
  return atomic_load(&calls);
}

/* ---- the linger allocates nothing ---------------------------------------- */

/* A graceful disconnect's end - the drain, our FIN, the reads up to the
 * peer's FIN, the linger's deadline - with every allocation failing from
 * the disconnect on: none is even tried, the peer gets the reply and then a
 * FIN (no reset), and the session waits for the peer's FIN (it is still
 * there after the peer saw ours) and ends as local. */
static _Atomic int linger_ended, linger_reason;

static void linger_packet(cp_session *s, const cp_packet *p) {
  cp_sendbuf *b = cp_sendbuf_copy(p->data, p->size);
  CHECK(b != NULL);
  CHECK_EQ(cp_session_send(s, b), 0);
  cp_sendbuf_unref(b);
  atomic_store(&fail_all, true);
  cp_session_disconnect(s, true);
}

static void linger_disconnected(cp_session *s, cp_reason why) {
  (void)s;
  atomic_store(&linger_reason, (int)why);
  atomic_fetch_add(&linger_ended, 1);
}

static void linger_phase(void) {
  atomic_store(&calls, 0);
  atomic_store(&injected, 0);
  atomic_store(&fail_at, 0);
  cp_service_options o = {
      .threads = 2,
      .callbacks = {.on_packet = linger_packet, .on_disconnected = linger_disconnected}};
  struct sockaddr_in addr;
  cp_service *ls = nt_server(o, &addr);
  for (int round = 0; round < 5; round++) {
    int fd = test_connect(&addr);
    uint8_t out[64], in[64];
    size_t n = nt_packet(out, 7, (uint32_t)round, 20);
    test_send_all(fd, out, n);
    test_recv_all(fd, in, n);
    CHECK(!memcmp(in, out, n));
    CHECK_EQ(recv(fd, in, sizeof in, 0), 0); /* our FIN: a clean end, not a reset */
    test_sleep_ms(20);
    /* lingering (not closed at once for want of memory), though the peer
     * has its FIN: it waits for ours */
    CHECK_EQ(atomic_load(&linger_ended), round);
    test_send_all(fd, out, n); /* read and dropped by the linger */
    close(fd);
    WAIT_UNTIL(atomic_load(&linger_ended) == round + 1);
    CHECK_EQ(atomic_load(&linger_reason), CP_REASON_LOCAL);
    CHECK_EQ(atomic_load(&injected), 0); /* nothing even tried to allocate */
    atomic_store(&fail_all, false);
  }
  fprintf(stderr, "  5 graceful disconnects with every allocation failing from the "
                  "disconnect on: each lingered to the peer's FIN, no allocation tried\n");
  cp_service_destroy(ls);
  check_no_leak(0);
}

int main(void) {
  test_begin("test_net_alloc_fail", 280);
  CHECK_EQ(cp_replace_allocator(t_malloc, t_realloc, t_calloc, t_free), 0);
  long total = run(0, true);
  fprintf(stderr, "  clean run: %ld allocations\n", total);
  CHECK(total > 10);
  long met = 0;
  for (long n = 1; n <= total + 20; n++) {
    if (getenv("ALLOC_FAIL_TRACE"))
      fprintf(stderr, "  run failing allocation %ld\n", n);
    run(n, false);
    met += atomic_load(&injected) > 0;
  }
  fprintf(stderr, "  failed each of allocations 1..%ld in turn: %ld runs met a failure\n",
          total + 20, met);
  CHECK(met >= total / 2);
  run(0, true);
  linger_phase();
  fprintf(stderr, "PASS\n");
  return 0;
}
