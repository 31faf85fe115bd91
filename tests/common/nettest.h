/*
 * nettest.h - what the engine tests share on top of test.h: a server on a
 * free loopback port, stats, waiting for a condition, framed packets from
 * plain sockets, and a per-session record that proves on_disconnected ran
 * exactly once. Header-only.
 */
#ifndef CPORT_NETTEST_H
#define CPORT_NETTEST_H

#include "common/test.h"

/* Poll until cond holds; fail (naming cond) after 60 s. Never a timing
 * assertion: 60 s only turns a hang into a failure. */
#define WAIT_UNTIL(cond)                                                                           \
  do {                                                                                             \
    uint64_t wu_t0_ = test_now_ms();                                                               \
    while (!(cond)) {                                                                              \
      if (test_now_ms() - wu_t0_ > 60000) {                                                        \
        fprintf(stderr, "%s:%d: gave up waiting for %s\n", __FILE__, __LINE__, #cond);             \
        exit(1);                                                                                   \
      }                                                                                            \
      test_nap();                                                                                  \
    }                                                                                              \
  } while (0)

static inline cp_service_stats nt_stats(const cp_service *svc) {
  cp_service_stats st;
  cp_service_get_stats(svc, &st);
  return st;
}

static inline uint64_t nt_disconnects(const cp_service *svc) {
  cp_service_stats st = nt_stats(svc);
  uint64_t n = 0;
  for (int i = 0; i < CP_REASON_COUNT; i++)
    n += st.disconnects[i];
  return n;
}

/* Create a server on 127.0.0.1, port 0 (not started: create job queues
 * first, so the workers see them). The backend comes from CPORT_BACKEND. */
static inline cp_service *nt_server_create(cp_service_options o) {
  o.kind = CP_SERVICE_SERVER;
  o.host = "127.0.0.1";
  o.port = 0;
  cp_service *svc = NULL;
  int rc = cp_service_create(&svc, &o);
  if (rc)
    fprintf(stderr, "cp_service_create: %s\n", cp_strerror(rc));
  CHECK_EQ(rc, 0);
  return svc;
}

/* Start it; fill *addr with where it listens. */
static inline void nt_server_start(cp_service *svc, struct sockaddr_in *addr) {
  int rc = cp_service_start(svc);
  if (rc)
    fprintf(stderr, "cp_service_start: %s\n", cp_strerror(rc));
  CHECK_EQ(rc, 0);
  fprintf(stderr, "  backend: %s\n", cp_backend_name(cp_port_backend(cp_service_port(svc))));
  if (addr) {
    *addr = (struct sockaddr_in){.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons(cp_service_listen_port(svc))};
  }
}

/* Both at once. */
static inline cp_service *nt_server(cp_service_options o, struct sockaddr_in *addr) {
  cp_service *svc = nt_server_create(o);
  nt_server_start(svc, addr);
  return svc;
}

/* A loopback port where nothing listens: a socket bound to it, not
 * listening, kept open (in *fd) so nobody else takes the port. Connects to
 * it are refused. */
static inline uint16_t nt_unlistened_port(int *fd) {
  struct sockaddr_in a;
  *fd = test_unlistened(&a);
  return ntohs(a.sin_port);
}

/* After cp_service_stop: every op the port started has completed, each
 * exactly once (the port counts both). */
static inline void nt_check_port_settled(const cp_service *svc) {
  cp_port_stats ps;
  cp_port_get_stats(cp_service_port(svc), &ps);
  fprintf(stderr, "  port: %llu ops started, %llu completed\n", (unsigned long long)ps.started,
          (unsigned long long)ps.completed);
  CHECK_EQ(ps.started, ps.completed);
}

/* The end of a test with a job queue: stop, check the port settled, free
 * everything, and check that no send buffer is left. */
static inline void nt_finish(cp_service *svc, cp_jobq *q) {
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  cp_jobq_destroy(q);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
}

/* Write a packet {size, id} + body into out (size = 4 + body_len). The body
 * is a pattern of id and seq, so the receiver can check every byte. */
static inline size_t nt_packet(uint8_t *out, uint16_t id, uint32_t seq, size_t body_len) {
  size_t size = CP_PACKET_HEADER + body_len;
  out[0] = (uint8_t)size;
  out[1] = (uint8_t)(size >> 8);
  out[2] = (uint8_t)id;
  out[3] = (uint8_t)(id >> 8);
  for (size_t j = 0; j < body_len; j++)
    out[4 + j] = (uint8_t)(seq * 31u + id + j);
  return size;
}

/* Does this packet's body follow nt_packet's pattern for seq? */
static inline bool nt_body_ok(const uint8_t *body, size_t len, uint16_t id, uint32_t seq) {
  for (size_t j = 0; j < len; j++)
    if (body[j] != (uint8_t)(seq * 31u + id + j))
      return false;
  return true;
}

/* Read from fd until EOF or reset; true if it ended (0 or ECONNRESET). */
static inline bool nt_read_to_end(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0)
      continue;
    if (n < 0 && errno == EINTR)
      continue;
    return n == 0 || errno == ECONNRESET;
  }
}

/* One record per session, kept past the session's end, so a test can say
 * that on_disconnected ran exactly once and with which reason. */
struct nt_track {
  atomic_int connected, disconnected, reason, in_cb, overlaps;
};

#define NT_MAX_TRACKS 20000
static struct nt_track nt_tracks[NT_MAX_TRACKS];
static atomic_int nt_ntracks;

/* Call from on_connected. */
static inline struct nt_track *nt_track_new(cp_session *s) {
  int i = atomic_fetch_add(&nt_ntracks, 1);
  CHECK(i < NT_MAX_TRACKS);
  struct nt_track *t = &nt_tracks[i];
  atomic_store(&t->connected, 1);
  cp_session_set_user(s, t);
  return t;
}

/* Call from on_disconnected, or use it as on_disconnected. */
static inline void nt_track_end(cp_session *s, cp_reason why) {
  struct nt_track *t = cp_session_user(s);
  CHECK(t != NULL);
  atomic_store(&t->reason, (int)why);
  atomic_fetch_add(&t->disconnected, 1);
}

/* Every tracked session ended exactly once. */
static inline void nt_check_tracks_once(void) {
  int n = atomic_load(&nt_ntracks);
  for (int i = 0; i < n; i++) {
    if (atomic_load(&nt_tracks[i].disconnected) != 1) {
      fprintf(stderr, "session #%d: on_disconnected ran %d times\n", i,
              atomic_load(&nt_tracks[i].disconnected));
      exit(1);
    }
  }
}

/* Enter/leave a callback of t's session; counts overlaps (two callbacks of
 * one session at the same time). */
static inline void nt_cb_enter(struct nt_track *t) {
  if (atomic_exchange(&t->in_cb, 1))
    atomic_fetch_add(&t->overlaps, 1);
}
static inline void nt_cb_leave(struct nt_track *t) {
  atomic_store(&t->in_cb, 0);
}

#endif /* CPORT_NETTEST_H */
