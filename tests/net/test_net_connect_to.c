/* Outbound sessions (cp_service_connect_to) on a server service, and
 * cp_service_stop_accepting (issue 14 item 4).
 *
 * Service A (framed echo for its players, max_sessions 1) opens outbound
 * sessions to two peer services: P_raw (raw echo that checks a byte pattern)
 * and P_framed (framed echo that checks every packet). Checked: bytes both
 * ways in raw and framed mode; only the session's own callbacks run for it
 * (A's never do), its user pointer is there in on_connected; outbound
 * sessions are outside max_sessions, `sessions`, `accepts` and broadcast,
 * in the `outbound` gauge; a refused connect and a black-holed one (connect
 * timeout) end as CP_REASON_CONNECT_FAILED exactly once; per-session
 * send_queue_max and idle_timeout_ms; stop_accepting (new connects refused,
 * the player keeps echoing); cp_service_stop ends every inbound session
 * (their on_disconnected still sending on an outbound link) before any
 * outbound one; -EINVAL / -ESHUTDOWN / -EALREADY. */
#include "common/nettest.h"

/* ---- the order of every on_disconnected -------------------------------- */

static atomic_int order_seq;
static atomic_int inbound_last = -1, outbound_first = 1 << 30;

static void note_inbound_end(void) {
  int k = atomic_fetch_add(&order_seq, 1);
  int cur = atomic_load(&inbound_last);
  while (k > cur && !atomic_compare_exchange_weak(&inbound_last, &cur, k))
    ;
}
static void note_outbound_end(void) {
  int k = atomic_fetch_add(&order_seq, 1);
  int cur = atomic_load(&outbound_first);
  while (k < cur && !atomic_compare_exchange_weak(&outbound_first, &cur, k))
    ;
}

/* ---- P_raw: echoes bytes, checking they follow raw_byte() -------------- */

static uint8_t raw_byte(uint64_t i) {
  return (uint8_t)(i * 7u + 0xA5u + (i >> 9));
}

struct raw_peer {
  uint64_t off; /* bytes seen so far (the session's strand only) */
};
static atomic_int p_raw_bad;

static void p_raw_connected(cp_session *s) {
  struct raw_peer *p = calloc(1, sizeof *p);
  CHECK(p != NULL);
  cp_session_set_user(s, p);
}
static void p_raw_on_raw(cp_session *s, const void *data, size_t len) {
  struct raw_peer *p = cp_session_user(s);
  const uint8_t *b = data;
  for (size_t i = 0; i < len; i++)
    if (b[i] != raw_byte(p->off + i))
      atomic_fetch_add(&p_raw_bad, 1);
  p->off += len;
  int rc = cp_session_send_copy(s, data, len);
  CHECK(rc == 0 || rc == CP_ENOTCONN);
}
static void p_raw_disconnected(cp_session *s, cp_reason why) {
  (void)why;
  free(cp_session_user(s));
}

/* ---- P_framed: echoes packets, checking their bodies ------------------- */

static atomic_int p_framed_bad, p_framed_packets;

static void p_framed_on_packet(cp_session *s, const cp_packet *pkt) {
  uint32_t seq = pkt->body_len >= 2 ? (uint32_t)(pkt->body[0] | pkt->body[1] << 8) : 0;
  if (pkt->body_len > 2 && !nt_body_ok(pkt->body + 2, pkt->body_len - 2, pkt->id, seq))
    atomic_fetch_add(&p_framed_bad, 1);
  atomic_fetch_add(&p_framed_packets, 1);
  int rc = cp_session_send_copy(s, pkt->data, pkt->size);
  CHECK(rc == 0 || rc == CP_ENOTCONN);
}

/* A framed packet: body = seq (2 bytes LE) then nt_packet's pattern for seq. */
static cp_sendbuf *framed_packet(uint16_t id, uint32_t seq, size_t body_len) {
  CHECK(body_len >= 3);
  cp_sendbuf *b = cp_packet_alloc(id, body_len);
  CHECK(b != NULL);
  uint8_t *body = cp_sendbuf_data(b) + CP_PACKET_HEADER;
  body[0] = (uint8_t)seq;
  body[1] = (uint8_t)(seq >> 8);
  for (size_t j = 0; j < body_len - 2; j++)
    body[2 + j] = (uint8_t)(seq * 31u + id + j);
  return b;
}

/* ---- A's own callbacks: its players (inbound) -------------------------- */

static cp_session *redis_link; /* an outbound session the players' on_disconnected uses */
static atomic_int a_connected, a_disconnected, a_bad, a_end_send_rc = 1;

static void a_on_connected(cp_session *s) {
  if (cp_session_user(s) != NULL) /* an outbound session's user pointer: not ours */
    atomic_fetch_add(&a_bad, 1);
  atomic_fetch_add(&a_connected, 1);
}
static void a_on_packet(cp_session *s, const cp_packet *pkt) {
  int rc = cp_session_send_copy(s, pkt->data, pkt->size);
  CHECK(rc == 0 || rc == CP_ENOTCONN);
}
static void a_on_raw(cp_session *s, const void *d, size_t n) {
  (void)s, (void)d, (void)n;
  atomic_fetch_add(&a_bad, 1); /* A is framed: only an outbound raw session could get here */
}
static void a_on_disconnected(cp_session *s, cp_reason why) {
  if (cp_session_user(s) != NULL)
    atomic_fetch_add(&a_bad, 1);
  if (why == CP_REASON_SHUTDOWN) {
    /* The link to "Redis" is still up while players leave. */
    cp_sendbuf *b = framed_packet(77, 0, 8);
    atomic_store(&a_end_send_rc, cp_session_send(redis_link, b));
    cp_sendbuf_unref(b);
  }
  note_inbound_end();
  atomic_fetch_add(&a_disconnected, 1);
}

/* ---- the outbound sessions' callbacks ---------------------------------- */

struct ob {
  atomic_int connected, disconnected, reason, packets, bad, user_ok;
  atomic_ullong raw_in; /* raw: bytes that came back */
  uint32_t next_seq;    /* framed: the next packet expected (its strand only) */
};

static void ob_on_connected(cp_session *s) {
  struct ob *o = cp_session_user(s);
  CHECK(o != NULL); /* set before the connect */
  atomic_store(&o->user_ok, 1);
  atomic_fetch_add(&o->connected, 1);
}
static void ob_on_raw(cp_session *s, const void *data, size_t len) {
  struct ob *o = cp_session_user(s);
  uint64_t off = atomic_load(&o->raw_in);
  const uint8_t *b = data;
  for (size_t i = 0; i < len; i++)
    if (b[i] != raw_byte(off + i))
      atomic_fetch_add(&o->bad, 1);
  atomic_fetch_add(&o->raw_in, len);
}
static void ob_on_packet(cp_session *s, const cp_packet *pkt) {
  struct ob *o = cp_session_user(s);
  uint32_t seq = (uint32_t)(pkt->body[0] | pkt->body[1] << 8);
  if (pkt->id != 5 || seq != o->next_seq ||
      !nt_body_ok(pkt->body + 2, pkt->body_len - 2, pkt->id, seq))
    atomic_fetch_add(&o->bad, 1);
  o->next_seq++;
  atomic_fetch_add(&o->packets, 1);
}
static void ob_on_disconnected(cp_session *s, cp_reason why) {
  struct ob *o = cp_session_user(s);
  atomic_store(&o->reason, (int)why);
  atomic_fetch_add(&o->disconnected, 1);
  note_outbound_end();
}

static const cp_session_callbacks ob_raw_cb = {
    .on_connected = ob_on_connected, .on_raw = ob_on_raw, .on_disconnected = ob_on_disconnected};
static const cp_session_callbacks ob_framed_cb = {.on_connected = ob_on_connected,
                                                  .on_packet = ob_on_packet,
                                                  .on_disconnected = ob_on_disconnected};

/* Connects made by a job on one of the service's workers, whose stack is
 * reused at once: the connect op must not read the address from the
 * caller's stack after cp_service_connect_to returned (io_uring submits it
 * later, when the poller next enters the kernel). */
#define NW 40
static struct ob w_ob[NW];
static cp_service *w_svc;
static uint16_t w_port;
static atomic_int w_rc_bad;
static __attribute__((noinline)) void scribble(void) {
  volatile unsigned char junk[1024];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = 0xa5;
}
static void w_job(void *arg) {
  cp_connect_options c = {
      .host = "127.0.0.1", .port = w_port, .raw = true, .callbacks = ob_raw_cb, .user = arg};
  if (cp_service_connect_to(w_svc, &c, NULL) != 0)
    atomic_fetch_add(&w_rc_bad, 1);
  scribble();
}

static cp_session *open_ob(cp_service *svc, uint16_t port, bool raw, struct ob *o,
                           cp_connect_options extra) {
  extra.host = "127.0.0.1";
  extra.port = port;
  extra.raw = raw;
  extra.callbacks = raw ? ob_raw_cb : ob_framed_cb;
  extra.user = o;
  cp_session *s = NULL;
  int rc = cp_service_connect_to(svc, &extra, &s);
  if (rc)
    fprintf(stderr, "cp_service_connect_to: %s\n", cp_strerror(rc));
  CHECK_EQ(rc, 0);
  CHECK(s != NULL);
  CHECK_EQ(cp_session_user(s), o);
  return s;
}

/* A player's round trip on a plain socket. */
static void player_echo(int fd, uint32_t seq) {
  uint8_t out[64], in[64];
  size_t n = nt_packet(out, 9, seq, 40);
  test_send_all(fd, out, n);
  test_recv_all(fd, in, n);
  CHECK(memcmp(in, out, n) == 0);
}

/* A plain connect that must fail (refused): true if it did. */
static bool connect_fails(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
  int err = test_connect_wait(fd, &a);
  close(fd);
  return err != 0;
}

static uint16_t port_of(cp_service *svc) {
  return cp_service_listen_port(svc);
}

int main(void) {
  test_begin("test_net_connect_to", 240);

  cp_service *p_raw =
      nt_server((cp_service_options){.threads = 2,
                                     .raw = true,
                                     .callbacks = {.on_connected = p_raw_connected,
                                                   .on_raw = p_raw_on_raw,
                                                   .on_disconnected = p_raw_disconnected}},
                NULL);
  cp_service *p_framed = nt_server(
      (cp_service_options){.threads = 2, .callbacks.on_packet = p_framed_on_packet}, NULL);

  /* ---- bad calls, before A starts ---- */
  cp_service *a =
      nt_server_create((cp_service_options){.threads = 2,
                                            .max_sessions = 1,
                                            .callbacks = {.on_connected = a_on_connected,
                                                          .on_packet = a_on_packet,
                                                          .on_raw = a_on_raw,
                                                          .on_disconnected = a_on_disconnected}});
  cp_connect_options good = {.host = "127.0.0.1", .port = port_of(p_framed)};
  cp_session *s = (cp_session *)&good; /* not NULL: every failure must clear it */
  CHECK_EQ(cp_service_connect_to(a, &good, &s), CP_EINVAL); /* not started */
  CHECK(s == NULL);
  CHECK_EQ(cp_service_stop_accepting(a), CP_EINVAL); /* not started */
  nt_server_start(a, NULL);
  uint16_t a_port = port_of(a);
  CHECK_EQ(cp_service_connect_to(NULL, &good, NULL), CP_EINVAL);
  CHECK_EQ(cp_service_connect_to(a, NULL, NULL), CP_EINVAL);
  cp_connect_options bad = good;
  bad.host = NULL;
  CHECK_EQ(cp_service_connect_to(a, &bad, NULL), CP_EINVAL);
  bad = good;
  bad.port = 0;
  CHECK_EQ(cp_service_connect_to(a, &bad, NULL), CP_EINVAL);
  bad = good;
  bad.host = "not-an-ip.example";
  s = (cp_session *)&good;
  CHECK_EQ(cp_service_connect_to(a, &bad, &s), CP_EINVAL);
  CHECK(s == NULL);
  bad = good;
  bad.max_packet = 3;
  CHECK_EQ(cp_service_connect_to(a, &bad, NULL), CP_EINVAL);
  CHECK_EQ(cp_service_stop_accepting(NULL), CP_EINVAL);
  CHECK_EQ(nt_stats(a).outbound, 0);
  CHECK_EQ(nt_stats(a).outbound_failures, 0);

  /* ---- a player (the one max_sessions allows) ---- */
  struct sockaddr_in a_addr = {
      .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(a_port)};
  int player = test_connect(&a_addr);
  WAIT_UNTIL(nt_stats(a).sessions == 1);
  player_echo(player, 1);

  /* ---- raw outbound: 64 KiB each way, compared byte for byte ---- */
  static struct ob raw_ob;
  cp_session *raw_s = open_ob(a, port_of(p_raw), true, &raw_ob, (cp_connect_options){0});
  WAIT_UNTIL(atomic_load(&raw_ob.connected) == 1);
  CHECK_EQ(atomic_load(&raw_ob.user_ok), 1);
  enum { RAW_TOTAL = 64 * 1024, RAW_CHUNK = 4096 };
  for (uint64_t off = 0; off < RAW_TOTAL; off += RAW_CHUNK) {
    cp_sendbuf *b = cp_sendbuf_alloc(RAW_CHUNK);
    CHECK(b != NULL);
    for (size_t i = 0; i < RAW_CHUNK; i++)
      cp_sendbuf_data(b)[i] = raw_byte(off + i);
    cp_sendbuf_set_len(b, RAW_CHUNK);
    CHECK_EQ(cp_session_send(raw_s, b), 0);
    cp_sendbuf_unref(b);
  }
  WAIT_UNTIL(atomic_load(&raw_ob.raw_in) == RAW_TOTAL);
  CHECK_EQ(atomic_load(&raw_ob.bad), 0);
  CHECK_EQ(atomic_load(&p_raw_bad), 0);

  /* ---- three framed outbound sessions past max_sessions 1 ---- */
  enum { NFR = 3, PACKETS = 50 };
  static struct ob fr_ob[NFR];
  cp_session *fr_s[NFR];
  for (int i = 0; i < NFR; i++)
    fr_s[i] = open_ob(a, port_of(p_framed), false, &fr_ob[i], (cp_connect_options){0});
  for (int i = 0; i < NFR; i++)
    WAIT_UNTIL(atomic_load(&fr_ob[i].connected) == 1);
  for (int i = 0; i < NFR; i++) {
    for (uint32_t q = 0; q < PACKETS; q++) {
      cp_sendbuf *b = framed_packet(5, q, 3 + (q * 37 + (uint32_t)i) % 500);
      CHECK_EQ(cp_session_send(fr_s[i], b), 0);
      cp_sendbuf_unref(b);
    }
  }
  for (int i = 0; i < NFR; i++) {
    WAIT_UNTIL(atomic_load(&fr_ob[i].packets) == PACKETS);
    CHECK_EQ(atomic_load(&fr_ob[i].bad), 0);
    CHECK_EQ(atomic_load(&fr_ob[i].user_ok), 1);
  }
  CHECK_EQ(atomic_load(&p_framed_bad), 0);
  CHECK_EQ(atomic_load(&p_framed_packets), NFR * PACKETS);
  redis_link = fr_s[0];
  cp_service_stats st = nt_stats(a);
  CHECK_EQ(st.sessions, 1); /* the player only */
  CHECK_EQ(st.accepts, 1);
  CHECK_EQ(st.outbound, 1 + NFR);
  CHECK_EQ(st.outbound_failures, 0);
  CHECK_EQ(st.connects, 0); /* outbound connects are not the client's */
  CHECK_EQ(atomic_load(&a_connected), 1);

  /* Broadcast reaches the player only (an outbound one would echo it back to
   * ob_on_packet as a bad packet). */
  {
    uint8_t pkt[64];
    size_t n = nt_packet(pkt, 5, 999, 20);
    cp_sendbuf *b = cp_sendbuf_copy(pkt, n);
    CHECK_EQ(cp_service_broadcast(a, b), 1);
    cp_sendbuf_unref(b);
    uint8_t in[64];
    test_recv_all(player, in, n);
    CHECK(memcmp(in, pkt, n) == 0);
  }
  /* max_sessions still counts the player alone: a second one is refused. */
  int player2 = test_connect(&a_addr);
  WAIT_UNTIL(nt_stats(a).refused == 1);
  close(player2);
  for (int i = 0; i < NFR; i++)
    CHECK_EQ(atomic_load(&fr_ob[i].bad), 0);

  /* ---- refused: CONNECT_FAILED exactly once ---- */
  static struct ob refused_ob;
  int unl_fd;
  uint16_t unl = nt_unlistened_port(&unl_fd);
  cp_session *ref_s = open_ob(a, unl, false, &refused_ob, (cp_connect_options){0});
  WAIT_UNTIL(atomic_load(&refused_ob.disconnected) == 1);
  WAIT_UNTIL(nt_stats(a).outbound_failures == 1);
  CHECK_EQ(atomic_load(&refused_ob.reason), CP_REASON_CONNECT_FAILED);
  CHECK_EQ(atomic_load(&refused_ob.connected), 0);
  CHECK(!cp_session_connected(ref_s));
  cp_sendbuf *tiny = cp_sendbuf_copy("x", 1);
  CHECK_EQ(cp_session_send(ref_s, tiny), CP_ENOTCONN);
  cp_session_put(ref_s);
  close(unl_fd);

  /* ---- black-holed: a listener whose accept queue is full ---- */
  int lfd, filler;
  struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  {
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(lfd >= 0);
    CHECK_EQ(bind(lfd, (struct sockaddr *)&la, sizeof la), 0);
    CHECK_EQ(listen(lfd, 0), 0);
    socklen_t ll = sizeof la;
    CHECK_EQ(getsockname(lfd, (struct sockaddr *)&la, &ll), 0);
    filler = test_connect(&la); /* fills the queue (backlog 0: one connection) */
    static struct ob hole_ob;
    uint64_t t0 = test_now_ms();
    cp_session *hole_s = open_ob(a, ntohs(la.sin_port), false, &hole_ob,
                                 (cp_connect_options){.connect_timeout_ms = 300});
    WAIT_UNTIL(atomic_load(&hole_ob.disconnected) == 1);
    uint64_t took = test_now_ms() - t0;
    fprintf(stderr, "  black-holed connect ended after %llu ms\n", (unsigned long long)took);
    CHECK_EQ(atomic_load(&hole_ob.reason), CP_REASON_CONNECT_FAILED);
    CHECK_EQ(atomic_load(&hole_ob.connected), 0);
#ifndef _WIN32
    CHECK(took >= 300); /* the timeout ended it: the kernel never answered */
#endif
    WAIT_UNTIL(nt_stats(a).outbound_failures == 2);
    cp_session_put(hole_s);
    test_sleep_ms(50);
    CHECK_EQ(atomic_load(&hole_ob.disconnected), 1); /* once */
  }

  /* ---- per-session send_queue_max and idle_timeout_ms ---- */
  {
    static struct ob small_ob, idle_ob;
    cp_session *small = open_ob(a, port_of(p_framed), false, &small_ob,
                                (cp_connect_options){.send_queue_max = 1000});
    cp_session *idle =
        open_ob(a, port_of(p_raw), true, &idle_ob, (cp_connect_options){.idle_timeout_ms = 200});
    WAIT_UNTIL(atomic_load(&small_ob.connected) == 1);
    cp_sendbuf *big = framed_packet(5, 0, 1996); /* 2000 bytes > 1000 */
    CHECK_EQ(cp_session_send(small, big), CP_ENOBUFS);
    cp_sendbuf_unref(big);
    WAIT_UNTIL(atomic_load(&small_ob.disconnected) == 1);
    CHECK_EQ(atomic_load(&small_ob.reason), CP_REASON_SLOW_CONSUMER);
    WAIT_UNTIL(atomic_load(&idle_ob.disconnected) == 1);
    CHECK_EQ(atomic_load(&idle_ob.connected), 1);
    CHECK_EQ(atomic_load(&idle_ob.reason), CP_REASON_IDLE_TIMEOUT);
    cp_session_put(small);
    cp_session_put(idle);
    /* The rest stay: raw_ob has idle_timeout_ms 0 and was quiet as long. */
    CHECK_EQ(atomic_load(&raw_ob.disconnected), 0);
  }
  WAIT_UNTIL(nt_stats(a).outbound == 1 + NFR);
  CHECK_EQ(nt_stats(a).outbound_failures, 2);
  CHECK_EQ(nt_stats(a).sessions, 1);

  /* ---- stop_accepting ---- */
  cp_service *cli = NULL;
  CHECK_EQ(
      cp_service_create(
          &cli, &(cp_service_options){.kind = CP_SERVICE_CLIENT, .port = a_port, .threads = 1}),
      0);
  CHECK_EQ(cp_service_stop_accepting(cli), CP_EINVAL); /* a client (and not started) */
  cp_service_destroy(cli);
  CHECK_EQ(cp_service_stop_accepting(a), 0);
  CHECK_EQ(cp_service_stop_accepting(a), CP_EALREADY);
  CHECK(connect_fails(a_port));
  player_echo(player, 2); /* the player keeps echoing */
  CHECK_EQ(nt_stats(a).accepts, 1);
  CHECK_EQ(atomic_load(&a_connected), 1);
  /* outbound sessions still open */
  static struct ob late_ob;
  cp_session *late = open_ob(a, port_of(p_framed), false, &late_ob, (cp_connect_options){0});
  WAIT_UNTIL(atomic_load(&late_ob.connected) == 1);
  WAIT_UNTIL(nt_stats(a).outbound == 2 + NFR);
  /* ---- connects from the only worker, its stack reused at once: every one connects ---- */
  {
    w_svc = nt_server((cp_service_options){.threads = 1}, NULL);
    w_port = port_of(p_raw);
    cp_jobq *wq = cp_jobq_create(w_svc);
    CHECK(wq != NULL);
    for (int i = 0; i < NW; i++)
      CHECK_EQ(cp_jobq_post(wq, w_job, &w_ob[i]), 0);
    for (int i = 0; i < NW; i++)
      WAIT_UNTIL(atomic_load(&w_ob[i].connected) + atomic_load(&w_ob[i].disconnected) > 0);
    int failed = 0;
    for (int i = 0; i < NW; i++)
      failed += atomic_load(&w_ob[i].disconnected);
    fprintf(stderr, "  connects from a worker: %d of %d failed\n", failed, NW);
    CHECK_EQ(failed, 0);
    CHECK_EQ(atomic_load(&w_rc_bad), 0);
    WAIT_UNTIL(nt_stats(w_svc).outbound == NW);
    cp_jobq_destroy(wq);
    cp_service_stop(w_svc, 0);
    for (int i = 0; i < NW; i++) {
      CHECK_EQ(atomic_load(&w_ob[i].disconnected), 1);
      CHECK_EQ(atomic_load(&w_ob[i].reason), CP_REASON_SHUTDOWN);
    }
    cp_service_destroy(w_svc);
  }
  /* one still connecting when the stop comes (the black hole, a long timeout): its
   * on_disconnected is owed all the same - once, as a shutdown */
  static struct ob pending_ob;
  cp_session *pending = open_ob(a, ntohs(la.sin_port), false, &pending_ob,
                                (cp_connect_options){.connect_timeout_ms = 120000});

  /* ---- stop: the player's on_disconnected (which still sends on an
   * outbound link) before any outbound one ---- */
  /* stop waits for the application's references: ours go now (the service
   * holds its own until each session ends, redis_link's included) */
  cp_session_put(raw_s);
  cp_session_put(late);
  cp_session_put(pending);
  for (int i = 0; i < NFR; i++)
    cp_session_put(fr_s[i]);
  atomic_store(&outbound_first, 1 << 30); /* the ends before the stop do not count */
  cp_service_stop(a, 0);
  CHECK_EQ(atomic_load(&a_disconnected), 1);
  CHECK_EQ(atomic_load(&a_end_send_rc), 0);
  CHECK_EQ(atomic_load(&raw_ob.disconnected), 1);
  CHECK_EQ(atomic_load(&raw_ob.reason), CP_REASON_SHUTDOWN);
  CHECK_EQ(atomic_load(&late_ob.disconnected), 1);
  CHECK_EQ(atomic_load(&pending_ob.connected), 0);
  CHECK_EQ(atomic_load(&pending_ob.disconnected), 1);
  CHECK_EQ(atomic_load(&pending_ob.reason), CP_REASON_SHUTDOWN);
  for (int i = 0; i < NFR; i++) {
    CHECK_EQ(atomic_load(&fr_ob[i].disconnected), 1);
    CHECK_EQ(atomic_load(&fr_ob[i].reason), CP_REASON_SHUTDOWN);
  }
  fprintf(stderr, "  last inbound end #%d, first outbound end #%d\n", atomic_load(&inbound_last),
          atomic_load(&outbound_first));
  CHECK(atomic_load(&inbound_last) >= 0);
  CHECK(atomic_load(&inbound_last) < atomic_load(&outbound_first));
  CHECK_EQ(atomic_load(&a_bad), 0);
  st = nt_stats(a);
  CHECK_EQ(st.outbound, 0);
  CHECK_EQ(st.sessions, 0);
  CHECK_EQ(st.outbound_failures, 2);
  s = (cp_session *)&good;
  CHECK_EQ(cp_service_connect_to(a, &good, &s), CP_ESHUTDOWN);
  CHECK(s == NULL);
  nt_check_port_settled(a);
  close(filler);
  close(lfd);
  cp_sendbuf_unref(tiny);
  close(player);
  cp_service_destroy(a);
  cp_service_stop(p_raw, 0);
  cp_service_stop(p_framed, 0);
  cp_service_destroy(p_raw);
  cp_service_destroy(p_framed);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  fprintf(stderr, "ok\n");
  return 0;
}
