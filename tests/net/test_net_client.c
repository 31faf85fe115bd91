/* Client services and the session cap: 50 client sessions each make 100
 * round trips with a packet-echo server and end gracefully; a client service
 * whose connects fail reports exactly that; a server with max_sessions
 * refuses what is above the cap and accepts again once sessions end. */
#include "common/nettest.h"

#define CLIENTS 50
#define ROUNDS 100

/* ---- the packet-echo server ------------------------------------------ */

static void echo_on_packet(cp_session *s, const cp_packet *pkt) {
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  CHECK(b != NULL);
  int rc = cp_session_send(s, b);
  CHECK(rc == 0 || rc == CP_ENOTCONN);
  cp_sendbuf_unref(b);
}

static cp_service *echo_server(unsigned max_sessions) {
  return nt_server((cp_service_options){.threads = 4,
                                        .max_sessions = max_sessions,
                                        .callbacks.on_packet = echo_on_packet},
                   NULL);
}

/* ---- (a) 50 clients, 100 round trips each ----------------------------- */

struct client {
  uint64_t id;
  int seq;                /* the packet in flight */
  atomic_int disconnects; /* on_disconnected calls */
  atomic_int reason;
};

static struct client clients[CLIENTS];
static atomic_int n_clients, a_connected, a_done, a_disconnected;

static size_t body_len_of(uint64_t id, int seq) {
  return 1 + (size_t)(id * 31 + (uint64_t)seq * 57) % 300;
}
static uint8_t pattern(uint64_t id, int seq, size_t j) {
  return (uint8_t)(id * 131 + (uint64_t)seq * 7 + j * 13);
}

static void send_next(cp_session *s, struct client *c) {
  size_t n = body_len_of(c->id, c->seq);
  cp_sendbuf *b = cp_packet_alloc((uint16_t)c->seq, n);
  CHECK(b != NULL);
  CHECK_EQ(cp_sendbuf_len(b), CP_PACKET_HEADER + n);
  uint8_t *body = cp_sendbuf_data(b) + CP_PACKET_HEADER;
  for (size_t j = 0; j < n; j++)
    body[j] = pattern(c->id, c->seq, j);
  CHECK_EQ(cp_session_send(s, b), 0);
  cp_sendbuf_unref(b);
}

static void a_on_connected(cp_session *s) {
  int i = atomic_fetch_add(&n_clients, 1);
  CHECK(i < CLIENTS);
  struct client *c = &clients[i];
  c->id = cp_session_id(s);
  c->seq = 0;
  cp_session_set_user(s, c);
  CHECK(cp_session_connected(s));
  atomic_fetch_add(&a_connected, 1);
  send_next(s, c);
}

static void a_on_packet(cp_session *s, const cp_packet *pkt) {
  struct client *c = cp_session_user(s);
  CHECK(c != NULL);
  CHECK(c->seq < ROUNDS);
  size_t n = body_len_of(c->id, c->seq);
  CHECK_EQ(pkt->id, c->seq);
  CHECK_EQ(pkt->size, CP_PACKET_HEADER + n);
  CHECK_EQ(pkt->body_len, n);
  CHECK(pkt->body == pkt->data + CP_PACKET_HEADER);
  CHECK_EQ(pkt->data[0] | pkt->data[1] << 8, pkt->size);
  CHECK_EQ(pkt->data[2] | pkt->data[3] << 8, pkt->id);
  for (size_t j = 0; j < n; j++)
    CHECK_EQ(pkt->body[j], pattern(c->id, c->seq, j));
  if (++c->seq < ROUNDS) {
    send_next(s, c);
  } else {
    atomic_fetch_add(&a_done, 1);
    cp_session_disconnect(s, true);
  }
}

static void a_on_disconnected(cp_session *s, cp_reason why) {
  struct client *c = cp_session_user(s);
  CHECK(c != NULL);
  CHECK_EQ(c->id, cp_session_id(s));
  atomic_store(&c->reason, (int)why);
  atomic_fetch_add(&c->disconnects, 1);
  atomic_fetch_add(&a_disconnected, 1);
}

/* ---- (b) connects that fail ------------------------------------------ */

static atomic_int b_connected, b_disconnected, b_bad_reason;

static void b_on_connected(cp_session *s) {
  (void)s;
  atomic_fetch_add(&b_connected, 1);
}

static void b_on_disconnected(cp_session *s, cp_reason why) {
  CHECK(!cp_session_connected(s));
  if (why != CP_REASON_CONNECT_FAILED) {
    fprintf(stderr, "connect failure reported as %s\n", cp_reason_name(why));
    atomic_fetch_add(&b_bad_reason, 1);
  }
  atomic_fetch_add(&b_disconnected, 1);
}

/* ---- (c) helpers for plain sockets ------------------------------------ */

/* recv(MSG_DONTWAIT): 0 data pending / EAGAIN -> 0, EOF or reset -> 1, data -> 2 */
static int probe(int fd) {
  char ch;
  ssize_t n;
  do
    n = recv(fd, &ch, 1, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return 0;
  if (n == 0 || (n < 0 && errno == ECONNRESET))
    return 1;
  if (n < 0) {
    fprintf(stderr, "recv: %s\n", strerror(errno));
    exit(1);
  }
  return 2;
}

/* One framed round trip on a plain socket. */
static void plain_round_trip(int fd, uint16_t id) {
  uint8_t out[4 + 10], in[sizeof out];
  out[0] = sizeof out;
  out[1] = 0;
  out[2] = (uint8_t)id;
  out[3] = (uint8_t)(id >> 8);
  for (int j = 0; j < 10; j++)
    out[4 + j] = (uint8_t)(id + j);
  test_send_all(fd, out, sizeof out);
  test_recv_all(fd, in, sizeof in);
  CHECK(!memcmp(in, out, sizeof out));
}

/* Sort 'n' plain sockets into refused (EOF/reset) and kept (nothing to
 * read): waits until exactly `want_refused` read EOF (at most 30 s). */
static void classify(const int *fds, int n, int want_refused, int *kept, int *nkept) {
  int refused = 0;
  uint64_t until = test_now_ms() + 30000;
  bool is_refused[64] = {false};
  CHECK(n <= 64);
  for (;;) {
    for (int i = 0; i < n; i++) {
      if (is_refused[i])
        continue;
      int r = probe(fds[i]);
      CHECK(r != 2); /* the server sends nothing unasked */
      if (r == 1) {
        is_refused[i] = true;
        refused++;
      }
    }
    if (refused >= want_refused || test_now_ms() > until)
      break;
    test_sleep_ms(2);
  }
  test_sleep_ms(20); /* a late EOF would show now */
  *nkept = 0;
  for (int i = 0; i < n; i++) {
    if (is_refused[i])
      continue;
    int r = probe(fds[i]);
    CHECK(r != 2);
    if (r == 1) {
      is_refused[i] = true;
      refused++;
    } else {
      kept[(*nkept)++] = fds[i];
    }
  }
  CHECK_EQ(refused, want_refused);
  CHECK_EQ(*nkept, n - want_refused);
}

int main(void) {
  test_begin("test_net_client", 120);
  test_raise_nofile();

  /* (a) a client service against a packet-echo server */
  cp_service *srv = echo_server(0);
  fprintf(stderr, "  backend: %s\n", cp_backend_name(cp_port_backend(cp_service_port(srv))));
  cp_service_options co = {.kind = CP_SERVICE_CLIENT,
                           .host = "127.0.0.1",
                           .port = cp_service_listen_port(srv),
                           .threads = 2,
                           .client_sessions = CLIENTS,
                           .callbacks = {.on_connected = a_on_connected,
                                         .on_packet = a_on_packet,
                                         .on_disconnected = a_on_disconnected}};
  CHECK(co.port != 0);
  cp_service *cli = NULL;
  CHECK_EQ(cp_service_create(&cli, &co), 0);
  CHECK_EQ(cp_service_start(cli), 0);
  WAIT_UNTIL(atomic_load(&a_disconnected) == CLIENTS);
  CHECK_EQ(atomic_load(&a_connected), CLIENTS);
  CHECK_EQ(atomic_load(&a_done), CLIENTS);
  CHECK_EQ(atomic_load(&a_disconnected), CLIENTS);
  WAIT_UNTIL(nt_stats(srv).disconnects[CP_REASON_PEER_CLOSED] == CLIENTS);
  cp_service_stats cs = nt_stats(cli), ss = nt_stats(srv);
  CHECK_EQ(cs.connects, CLIENTS);
  CHECK_EQ(cs.connect_failures, 0);
  CHECK_EQ(cs.packets_in, CLIENTS * ROUNDS);
  CHECK_EQ(cs.packets_out, CLIENTS * ROUNDS);
  CHECK_EQ(cs.disconnects[CP_REASON_LOCAL], CLIENTS);
  CHECK_EQ(ss.accepts, CLIENTS);
  CHECK_EQ(ss.refused, 0);
  CHECK_EQ(ss.packets_in, CLIENTS * ROUNDS);
  CHECK_EQ(ss.disconnects[CP_REASON_PEER_CLOSED], CLIENTS);
  CHECK_EQ(ss.bytes_in, cs.bytes_out);
  CHECK_EQ(cs.bytes_in, ss.bytes_in); /* everything came back */
  if (ss.bytes_out != ss.bytes_in)
    fprintf(stderr, "  note: server bytes_out %" PRIu64 " != bytes_in %" PRIu64 "\n", ss.bytes_out,
            ss.bytes_in);
  WAIT_UNTIL(nt_stats(srv).sessions == 0 && nt_stats(cli).sessions == 0);
  CHECK_EQ(nt_stats(srv).sessions, 0);
  CHECK_EQ(nt_stats(cli).sessions, 0);
  for (int i = 0; i < CLIENTS; i++) {
    CHECK_EQ(clients[i].seq, ROUNDS);
    CHECK_EQ(atomic_load(&clients[i].disconnects), 1);
    CHECK_EQ(atomic_load(&clients[i].reason), CP_REASON_LOCAL);
    for (int j = i + 1; j < CLIENTS; j++)
      CHECK(clients[i].id != clients[j].id);
  }
  cp_service_stop(cli, 0);
  cp_service_destroy(cli);
  for (int i = 0; i < CLIENTS; i++)
    CHECK_EQ(atomic_load(&clients[i].disconnects), 1); /* not again at stop */
  CHECK_EQ(nt_stats(srv).disconnects[CP_REASON_PEER_CLOSED], CLIENTS);
  cp_service_stop(srv, 0);
  cp_service_destroy(srv);

  /* (b) connects to a port where nothing listens (bound, not listening,
   * kept open so nobody else takes it) */
  int dead;
  cp_service_options bo = {
      .kind = CP_SERVICE_CLIENT,
      .host = "127.0.0.1",
      .port = nt_unlistened_port(&dead),
      .threads = 2,
      .client_sessions = 3,
      .callbacks = {.on_connected = b_on_connected, .on_disconnected = b_on_disconnected}};
  CHECK_EQ(cp_service_create(&cli, &bo), 0);
  CHECK_EQ(cp_service_start(cli), 0);
  WAIT_UNTIL(atomic_load(&b_disconnected) == 3);
  test_sleep_ms(20); /* nothing more comes */
  CHECK_EQ(atomic_load(&b_disconnected), 3);
  CHECK_EQ(atomic_load(&b_bad_reason), 0);
  CHECK_EQ(atomic_load(&b_connected), 0);
  cs = nt_stats(cli);
  CHECK_EQ(cs.connect_failures, 3);
  CHECK_EQ(cs.connects, 0);
  CHECK_EQ(cs.disconnects[CP_REASON_CONNECT_FAILED], 3);
  CHECK_EQ(cs.sessions, 0);
  cp_service_stop(cli, 0);
  cp_service_destroy(cli);
  CHECK_EQ(atomic_load(&b_disconnected), 3);
  close(dead);

  /* (c) max_sessions = 10: 25 plain connections */
  srv = echo_server(10);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons(cp_service_listen_port(srv))};
  int fds[25], kept[25], nkept;
  for (int i = 0; i < 25; i++)
    fds[i] = test_connect(&addr);
  WAIT_UNTIL(nt_stats(srv).accepts + nt_stats(srv).refused == 25);
  ss = nt_stats(srv);
  CHECK_EQ(ss.accepts, 10);
  CHECK_EQ(ss.refused, 15);
  CHECK_EQ(ss.sessions, 10);
  classify(fds, 25, 15, kept, &nkept);
  CHECK_EQ(nkept, 10);
  for (int i = 0; i < 25; i++) {
    bool k = false;
    for (int j = 0; j < nkept; j++)
      k |= kept[j] == fds[i];
    if (!k)
      close(fds[i]);
  }
  for (int j = 0; j < nkept; j++)
    plain_round_trip(kept[j], (uint16_t)j); /* the kept ones are live sessions */
  /* close 5 of them: room for 5 more */
  for (int j = 0; j < 5; j++)
    close(kept[j]);
  WAIT_UNTIL(nt_stats(srv).sessions == 5);
  ss = nt_stats(srv);
  CHECK_EQ(ss.sessions, 5);
  CHECK_EQ(ss.disconnects[CP_REASON_PEER_CLOSED], 5);
  /* 10 more: 5 accepted, 5 refused */
  int more[10], kept2[10], nkept2;
  for (int i = 0; i < 10; i++)
    more[i] = test_connect(&addr);
  WAIT_UNTIL(nt_stats(srv).accepts + nt_stats(srv).refused == 35);
  ss = nt_stats(srv);
  CHECK_EQ(ss.accepts, 15);
  CHECK_EQ(ss.refused, 20);
  CHECK_EQ(ss.sessions, 10);
  classify(more, 10, 5, kept2, &nkept2);
  CHECK_EQ(nkept2, 5);
  for (int j = 0; j < nkept2; j++)
    plain_round_trip(kept2[j], (uint16_t)(100 + j));
  for (int j = 5; j < 10; j++)
    plain_round_trip(kept[j], (uint16_t)(200 + j));

  /* (c2) a burst: with one session left (room for 9), 20 connects issued at
   * once fill exactly the 9; the cap holds though accepts complete on
   * several workers at the same time */
  for (int j = 0; j < nkept2; j++)
    close(kept2[j]);
  for (int j = 5; j < 9; j++)
    close(kept[j]);
  WAIT_UNTIL(nt_stats(srv).sessions == 1);
  CHECK_EQ(nt_stats(srv).sessions, 1);
  int burst[20];
  for (int i = 0; i < 20; i++) {
    burst[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(burst[i] >= 0);
    int r = connect(burst[i], (struct sockaddr *)&addr, sizeof addr);
    CHECK(r == 0 || errno == EINPROGRESS || errno == EINTR);
  }
  for (int i = 0; i < 20; i++) {
    struct pollfd pfd = {.fd = burst[i], .events = POLLOUT};
    int r;
    while ((r = poll(&pfd, 1, 30000)) < 0 && errno == EINTR)
      ;
    CHECK_EQ(r, 1);
  }
  WAIT_UNTIL(nt_stats(srv).accepts + nt_stats(srv).refused == 55);
  ss = nt_stats(srv);
  CHECK_EQ(ss.accepts + ss.refused, 55);
  CHECK_EQ(ss.sessions, 10);
  CHECK_EQ(ss.accepts, 24);
  CHECK_EQ(ss.refused, 31);
  int kept3[20], nkept3;
  classify(burst, 20, 11, kept3, &nkept3);
  CHECK_EQ(nkept3, 9);
  for (int i = 0; i < 20; i++) {
    bool k = false;
    for (int j = 0; j < nkept3; j++)
      k |= kept3[j] == burst[i];
    if (!k)
      close(burst[i]);
  }
  for (int j = 0; j < nkept3; j++) {
    test_set_nonblock(kept3[j], false);
    plain_round_trip(kept3[j], (uint16_t)(300 + j));
  }

  cp_service_stop(srv, 0);
  ss = nt_stats(srv);
  CHECK_EQ(ss.sessions, 0);
  CHECK_EQ(ss.disconnects[CP_REASON_SHUTDOWN], 10);
  CHECK_EQ(ss.disconnects[CP_REASON_PEER_CLOSED], 5 + 5 + 4);
  /* the sessions stop ended: their peers read EOF */
  for (int j = 0; j < nkept3; j++) {
    char ch;
    ssize_t n;
    while ((n = recv(kept3[j], &ch, 1, 0)) < 0 && errno == EINTR)
      ;
    CHECK(n == 0 || (n < 0 && errno == ECONNRESET));
    close(kept3[j]);
  }
  close(kept[9]);
  cp_service_destroy(srv);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
