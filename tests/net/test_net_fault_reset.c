/* A peer that resets, or goes away, while the server has megabytes queued
 * for it. Proves, for each case: exactly one disconnect per session, with
 * the exact reason; on_disconnected once; the stream was really cut short
 * (some bytes never left, so a send was pending when the peer went); sends
 * complete whole or not at all; the queue gauge and every send buffer go
 * back to 0; and after stop every op the port started has completed.
 *
 * 1. RST while a multi-megabyte stream (one cp_session_send per 256 KiB) is
 *    pending to a peer that never reads. The stream is asked for with a
 *    packet, so only the send is pending: read after write keeps the
 *    receive back while a send is in flight.
 * 2. The same, the stream queued from on_connected: a receive is pending too.
 * 3. Peer gone with unread data: the client asks for megabytes of replies in
 *    one write, waits until some arrived, and closes without reading them.
 * 4. The same on 16 connections at once, each closing right after its
 *    requests, replies arrived or not.
 *
 * The stream is larger than the kernel's largest send buffer (tcp_wmem's
 * max) plus 1 MiB, and at least 3 MiB; the client's receive window is a few
 * KiB, so it cannot all leave (with tcp_wmem's max at 4 MiB, Linux 6.18 took
 * ~3 MB into the server's send buffer).
 *
 * Which reason. An RST sets the socket's error (ECONNRESET) once: the first
 * receive or send to look takes it, later sends see EPIPE and later receives
 * end of stream (0). A send failing either way is CP_REASON_RESET; a receive
 * of 0 is CP_REASON_PEER_CLOSED. So:
 *  - only a send pending (1, 3): RESET, always, on both backends. Closing a
 *    socket with unread data makes Linux send RST, not FIN, so 3 is a reset.
 *  - a send and a receive pending (2): whichever op looks first takes the
 *    ECONNRESET. Usually the receive (epoll tries the read side first on an
 *    error edge; io_uring woke the earlier-armed receive first), giving
 *    RESET; but a send started or retried just as the RST lands takes it (on
 *    epoll a send is tried at once when started; on io_uring each op's retry
 *    runs in the thread that submitted it, and the engine's workers race),
 *    and then the receive reads 0 and the session ends as PEER_CLOSED. Seen
 *    on both backends in port-level runs, a few in 100 in this test on
 *    io_uring. So: exactly one of the two, exactly once.
 *  - 4 also races FIN (replies not there yet at close) against RST. */
#include "common/nettest.h"

#define CHUNK (256u * 1024)
#define REPLY_BODY 65000u
#define REPLY_SIZE (CP_PACKET_HEADER + REPLY_BODY)
#define MAX_REQUESTS 1000
#define MANY 16
#define MANY_REQUESTS 8

enum { ID_STREAM = 1, ID_REPLY = 2 };

static unsigned chunks;              /* the stream: chunks x CHUNK bytes */
static uint64_t stream_bytes;        /* chunks * CHUNK */
static unsigned requests;            /* case 3: replies of REPLY_SIZE, about stream_bytes */
static atomic_int stream_on_connect; /* case 2: stream from on_connected */
static atomic_int streams_queued;    /* streams whose sends all returned 0 */
static atomic_ullong sent_bytes;     /* what on_sent reported */

static void queue_stream(cp_session *s) {
  for (unsigned i = 0; i < chunks; i++) {
    cp_sendbuf *b = cp_sendbuf_alloc(CHUNK);
    CHECK(b != NULL);
    memset(cp_sendbuf_data(b), 'a' + (int)(i % 26), CHUNK);
    cp_sendbuf_set_len(b, CHUNK);
    CHECK_EQ(cp_session_send(s, b), 0); /* send_queue_max holds all of it */
    cp_sendbuf_unref(b);
  }
  atomic_fetch_add(&streams_queued, 1);
}

static void on_connected(cp_session *s) {
  nt_track_new(s);
  if (atomic_load(&stream_on_connect))
    queue_stream(s);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  if (pkt->id == ID_STREAM) {
    queue_stream(s);
    return;
  }
  CHECK_EQ(pkt->id, ID_REPLY);
  cp_sendbuf *b = cp_packet_alloc(ID_REPLY, REPLY_BODY);
  CHECK(b != NULL);
  memset(cp_sendbuf_data(b) + CP_PACKET_HEADER, 'r', REPLY_BODY);
  int rc = cp_session_send(s, b);
  CHECK(rc == 0 || rc == CP_ENOTCONN); /* CP_ENOTCONN: the peer is already gone */
  cp_sendbuf_unref(b);
}

static void on_sent(cp_session *s, size_t bytes) {
  (void)s;
  atomic_fetch_add(&sent_bytes, bytes);
}

/* A blocking client whose receive buffer (and so its window) is small, so
 * the kernel holds little of what the server sends it. */
static int connect_small(const struct sockaddr_in *addr) {
  return test_connect_rcvbuf(addr, 4096);
}

/* The kernel's largest TCP send buffer (tcp_wmem's max); 4 MiB if unknown. */
static uint64_t wmem_max(void) {
  unsigned long lo, def, max = 4ul << 20;
  FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
  if (f) {
    if (fscanf(f, "%lu %lu %lu", &lo, &def, &max) != 3)
      max = 4ul << 20;
    fclose(f);
  }
  return max;
}

static int unread(int fd) {
  return test_unread(fd);
}

static cp_service *svc;

/* Wait for `n` more sessions to end and everything they held to go; return
 * the disconnect counts of just those sessions. */
static cp_service_stats settle(const cp_service_stats *before, uint64_t n) {
  uint64_t want = 0;
  for (int i = 0; i < CP_REASON_COUNT; i++)
    want += before->disconnects[i];
  want += n;
  WAIT_UNTIL(nt_disconnects(svc) == want);
  /* accepts is counted after the accepting worker has started the session,
   * which may be after another worker has already ended it */
  WAIT_UNTIL(nt_stats(svc).accepts >= before->accepts + n);
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  WAIT_UNTIL(nt_stats(svc).send_queue_bytes == 0);
  WAIT_UNTIL(cp_sendbuf_outstanding() == 0); /* the send in flight has completed too */
  cp_service_stats st = nt_stats(svc), d = st;
  for (int i = 0; i < CP_REASON_COUNT; i++)
    d.disconnects[i] = st.disconnects[i] - before->disconnects[i];
  d.bytes_out = st.bytes_out - before->bytes_out;
  d.accepts = st.accepts - before->accepts;
  d.packets_in = st.packets_in - before->packets_in;
  CHECK_EQ(d.accepts, n);
  /* on_sent reports what left; a send that completes after the session
   * began to close is counted in bytes_out but not reported */
  CHECK(atomic_load(&sent_bytes) <= st.bytes_out);
  return d;
}

static void expect_only(const cp_service_stats *d, cp_reason r, uint64_t n) {
  for (int i = 0; i < CP_REASON_COUNT; i++) {
    if (d->disconnects[i] != (i == (int)r ? n : 0)) {
      fprintf(stderr, "disconnects[%s] = %llu, expected %llu\n", cp_reason_name((cp_reason)i),
              (unsigned long long)d->disconnects[i], (unsigned long long)(i == (int)r ? n : 0));
      exit(1);
    }
  }
}

static cp_reason last_reason(void) {
  int n = atomic_load(&nt_ntracks);
  CHECK(n > 0);
  CHECK_EQ(atomic_load(&nt_tracks[n - 1].disconnected), 1);
  return (cp_reason)atomic_load(&nt_tracks[n - 1].reason);
}

/* 1 and 2: a multi-megabyte stream to a peer that never reads, then RST. */
static void reset_stream(const struct sockaddr_in *addr, bool from_connect) {
  cp_service_stats before = nt_stats(svc);
  int q0 = atomic_load(&streams_queued);
  atomic_store(&stream_on_connect, from_connect);
  int fd = connect_small(addr);
  if (!from_connect) {
    uint8_t pkt[8];
    test_send_all(fd, pkt, nt_packet(pkt, ID_STREAM, 0, 0));
  }
  WAIT_UNTIL(atomic_load(&streams_queued) == q0 + 1);
  WAIT_UNTIL(unread(fd) > 0); /* the stream is flowing, the client not reading */
  test_reset(fd);
  cp_service_stats d = settle(&before, 1);
  atomic_store(&stream_on_connect, 0);
  fprintf(stderr, "  reset with %s pending: %s; %llu of %llu bytes left\n",
          from_connect ? "send and receive" : "a send", cp_reason_name(last_reason()),
          (unsigned long long)d.bytes_out, (unsigned long long)stream_bytes);
  CHECK(d.bytes_out < stream_bytes); /* cut short: a send was pending at the reset */
  CHECK_EQ(d.bytes_out % CHUNK, 0);  /* sends complete whole, or fail */
  if (!from_connect) {
    /* Only the send was pending: it takes the ECONNRESET (or, after a
     * partial write, its retry gets EPIPE): RESET. */
    expect_only(&d, CP_REASON_RESET, 1);
    CHECK_EQ(last_reason(), CP_REASON_RESET);
  } else {
    /* Send and receive pending: RESET or PEER_CLOSED (see the top). */
    cp_reason r = last_reason();
    CHECK(r == CP_REASON_RESET || r == CP_REASON_PEER_CLOSED);
    expect_only(&d, r, 1);
  }
}

/* 3: requests for megabytes of replies, some arrive, the client closes
 * without reading them. */
static void gone_unread(const struct sockaddr_in *addr) {
  cp_service_stats before = nt_stats(svc);
  int fd = connect_small(addr);
  static uint8_t req[MAX_REQUESTS * 4];
  size_t n = 0;
  for (uint32_t i = 0; i < requests; i++)
    n += nt_packet(req + n, ID_REPLY, i, 0);
  test_send_all(fd, req, n); /* one write: usually framed in one receive */
  WAIT_UNTIL(nt_stats(svc).packets_in == before.packets_in + requests);
  WAIT_UNTIL(unread(fd) > 0);
  close(fd); /* unread data: the kernel sends RST */
  cp_service_stats d = settle(&before, 1);
  fprintf(stderr, "  gone with unread data: %s; %llu of %llu reply bytes left\n",
          cp_reason_name(last_reason()), (unsigned long long)d.bytes_out,
          (unsigned long long)requests * REPLY_SIZE);
  CHECK_EQ(d.packets_in, requests);
  CHECK(d.bytes_out < (uint64_t)requests * REPLY_SIZE); /* replies were still queued */
  expect_only(&d, CP_REASON_RESET, 1);
  CHECK_EQ(last_reason(), CP_REASON_RESET);
}

/* 4: many clients send requests and close at once, read nothing. */
static void gone_many(const struct sockaddr_in *addr) {
  cp_service_stats before = nt_stats(svc);
  int fds[MANY];
  uint8_t req[MANY_REQUESTS * 8];
  size_t n = 0;
  for (uint32_t i = 0; i < MANY_REQUESTS; i++)
    n += nt_packet(req + n, ID_REPLY, i, 0);
  for (int i = 0; i < MANY; i++)
    fds[i] = connect_small(addr);
  for (int i = 0; i < MANY; i++) {
    test_send_all(fds[i], req, n);
    close(fds[i]);
  }
  cp_service_stats d = settle(&before, MANY);
  fprintf(stderr, "  %d gone at once: peer_closed %llu, reset %llu\n", MANY,
          (unsigned long long)d.disconnects[CP_REASON_PEER_CLOSED],
          (unsigned long long)d.disconnects[CP_REASON_RESET]);
  /* A client whose replies had not arrived when it closed sent FIN; one with
   * replies waiting sent RST; a FIN followed by replies draws an RST too. So
   * each ends as peer_closed or reset - exactly once, and nothing else. */
  CHECK_EQ(d.disconnects[CP_REASON_PEER_CLOSED] + d.disconnects[CP_REASON_RESET], MANY);
  for (int i = 0; i < CP_REASON_COUNT; i++)
    if (i != CP_REASON_PEER_CLOSED && i != CP_REASON_RESET)
      CHECK_EQ(d.disconnects[i], 0);
}

int main(void) {
  test_begin("test_net_fault_reset", 240);
  uint64_t want = wmem_max() + (1u << 20);
  if (want < (3u << 20))
    want = 3u << 20;
  chunks = (unsigned)((want + CHUNK - 1) / CHUNK);
  stream_bytes = (uint64_t)chunks * CHUNK;
  requests = (unsigned)((stream_bytes + REPLY_SIZE - 1) / REPLY_SIZE);
  CHECK(requests <= MAX_REQUESTS);
  fprintf(stderr, "  stream: %u x 256 KiB; %u replies of %u bytes\n", chunks, requests, REPLY_SIZE);
  cp_service_options o = {.threads = 2,
                          .max_packet = 1024,
                          .send_queue_max = 2 * stream_bytes,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_sent = on_sent,
                                        .on_disconnected = nt_track_end}};
  struct sockaddr_in addr;
  svc = nt_server(o, &addr);
  reset_stream(&addr, false);
  reset_stream(&addr, true);
  gone_unread(&addr);
  gone_many(&addr);
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  nt_check_tracks_once();
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
