/*
 * loadgen - the echo load generator of the benchmarks.
 *
 *   loadgen [--host 127.0.0.1] [--port 7777] [--conns N] [--size BYTES] [--depth D]
 *           [--duration S] [--warmup S] [--threads T] [--json] [--quiet]
 *           [--connect-timeout S] [--stall-timeout S] [--server-pid PID] [--framed]
 *
 * One process, T threads, each an epoll loop over its share of the N connections.
 *
 * Connect: N nonblocking connects, at most --connect-window (256) in progress at once so
 * the server's listen backlog never overflows; ECONNREFUSED/EAGAIN/timeouts are retried with
 * exponential backoff until --connect-timeout (5 s) has passed for that connection, then the
 * run fails with the reason. Any other connect error fails at once.
 *
 * Load: closed loop. Each connection keeps D messages of SIZE bytes in flight: every echoed
 * message lets the next one go. Message `seq` of connection `c` is a pure function of
 * (c, seq, offset): bytes 0-7 are seq, 8-15 the connection id and a magic, the rest a
 * pattern seeded from (c, seq). With --framed every message is one cport packet: bytes 0-3
 * are the header {uint16 size = SIZE; uint16 id = 1} and 4-7 the low half of seq, so a
 * packet-echo server echoes it unchanged. Nothing is stored per message but its send time; expected
 * bytes are regenerated to verify every byte that comes back, in order. Any difference
 * (corrupted, lost, reordered, duplicated or extra bytes), an early close, or a connection
 * that waits more than --stall-timeout (5 s) for its echo is reported with where it happened,
 * and the run exits 1. After the measured window, no new messages are sent and every message
 * in flight must come back (drain), so a message lost at the very end is caught too.
 *
 * Measures, over the window after the warm-up: messages/s, echoed bytes/s, and round-trip
 * latency (from the moment a message is due to be sent to the moment its last byte is back)
 * in a log-linear histogram (HdrHistogram-style: 128 linear sub-buckets per power of two,
 * < 0.8% error; nothing stored per sample). With --server-pid it also samples the server's
 * CPU time (utime+stime from /proc/PID/stat) at the exact start and end of the window and its
 * VmRSS at the end, so CPU per message needs no guessing about when the window was.
 *
 * Exit: 0 ok, 1 an error (verification, connect, stall, early close), 2 bad usage, 130 stopped
 * early by SIGINT/SIGTERM (the report covers the window up to then).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../apps/common/proc_cpu.h" /* proc_cpu_ticks */

#define IO_CHUNK (64 * 1024)
#define MAX_EVENTS 512
#define MAGIC UINT64_C(0x474c5043) /* "CPLG" */
#define NS_PER_S UINT64_C(1000000000)

/* ---------------------------------------------------------------- options */

static struct {
  const char *host;
  int port;
  int conns;
  uint32_t size;
  uint32_t depth;
  double duration;
  double warmup;
  int threads;
  bool json;
  bool quiet;
  double connect_timeout;
  int connect_window;
  double stall_timeout;
  long server_pid;
  bool framed;
} opt = {"127.0.0.1", 7777, 1, 64, 1, 10, 1, 1, false, false, 5, 256, 5, 0, false};

/* ------------------------------------------------------------------ time */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
  struct timespec ts = {.tv_sec = (time_t)(t / NS_PER_S), .tv_nsec = (long)(t % NS_PER_S)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/* ------------------------------------------------------------- histogram */

/* Log-linear, HdrHistogram-style: values < 2^SUB_BITS are exact; above, each power of two
 * is split into 2^(SUB_BITS-1) equal sub-buckets. Values are nanoseconds. */
#define SUB_BITS 8
#define HALF (1u << (SUB_BITS - 1))
#define HIST_BUCKETS ((64 - SUB_BITS + 1) * HALF + HALF)

struct hist {
  uint64_t count;
  uint64_t max;
  uint64_t b[HIST_BUCKETS];
};

static unsigned hist_index(uint64_t v) {
  if (v < (UINT64_C(1) << SUB_BITS))
    return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - (SUB_BITS - 1);
  return shift * HALF + (unsigned)(v >> shift);
}

/* The highest value that lands in bucket i. */
static uint64_t hist_bucket_high(unsigned i) {
  if (i < (1u << SUB_BITS))
    return i;
  unsigned shift = i / HALF - 1;
  uint64_t top = i - shift * HALF;
  return ((top + 1) << shift) - 1;
}

static void hist_record(struct hist *h, uint64_t v) {
  h->b[hist_index(v)]++;
  h->count++;
  if (v > h->max)
    h->max = v;
}

static void hist_merge(struct hist *to, const struct hist *from) {
  for (unsigned i = 0; i < HIST_BUCKETS; i++)
    to->b[i] += from->b[i];
  to->count += from->count;
  if (from->max > to->max)
    to->max = from->max;
}

/* Value at percentile p (0..100): the top of the bucket that holds the ceil(p% * n)-th value. */
static uint64_t hist_percentile(const struct hist *h, double p) {
  if (h->count == 0)
    return 0;
  double want = p / 100.0 * (double)h->count;
  uint64_t rank = (uint64_t)want;
  if ((double)rank < want)
    rank++;
  if (rank < 1)
    rank = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= rank) {
      uint64_t v = hist_bucket_high(i);
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}

/* --------------------------------------------------------------- pattern */

/* Word k (8 bytes) of message seq of connection id. Deterministic and position-dependent:
 * a lost, duplicated, reordered or altered byte never matches. */
static inline uint64_t msg_word(uint32_t id, uint64_t seq, uint64_t k) {
  if (k == 0) /* framed: a packet header {uint16 size; uint16 id = 1} (little-endian) first */
    return opt.framed ? (uint64_t)opt.size | UINT64_C(1) << 16 | seq << 32 : seq;
  if (k == 1)
    return ((uint64_t)id << 32) | MAGIC;
  uint64_t x = ((uint64_t)id << 40) ^ (seq * UINT64_C(0xd1b54a32d192ed03));
  x += k * UINT64_C(0x9e3779b97f4a7c15);
  return x ^ (x >> 29) ^ (x << 7);
}

/* Bytes [off, off+n) of message seq (n <= size - off). */
static void msg_bytes(uint32_t id, uint64_t seq, uint32_t off, uint8_t *dst, uint32_t n) {
  while (n > 0) {
    uint64_t k = off / 8;
    uint32_t in = off % 8;
    uint32_t take = 8 - in < n ? 8 - in : n;
    uint64_t w = msg_word(id, seq, k);
    memcpy(dst, (const uint8_t *)&w + in, take);
    dst += take;
    off += take;
    n -= take;
  }
}

/* Fill dst with the stream from (seq, off), whole messages while seq < end_seq, at most cap
 * bytes. Returns the byte count. */
static size_t stream_bytes(uint32_t id, uint64_t seq, uint32_t off, uint64_t end_seq, uint8_t *dst,
                           size_t cap) {
  size_t len = 0;
  while (seq < end_seq && len < cap) {
    uint32_t n = opt.size - off;
    if (n > cap - len)
      n = (uint32_t)(cap - len);
    msg_bytes(id, seq, off, dst + len, n);
    len += n;
    off = 0;
    seq++;
  }
  return len;
}

/* ------------------------------------------------------------ connections */

struct conn {
  int fd;
  uint32_t id;
  uint64_t issued;   /* messages allowed on the wire so far */
  uint64_t send_seq; /* message being written ... */
  uint32_t send_off; /* ... and how many of its bytes are written */
  uint64_t recv_seq; /* message being received ... */
  uint32_t recv_off; /* ... and how many of its bytes came back, verified */
  bool want_out;     /* EPOLLOUT is armed */
  uint64_t last_progress;
  uint64_t *sent_at; /* depth slots: time message seq was due, at [seq % depth] */
};

struct worker {
  int idx;
  pthread_t tid;
  int ep;
  struct conn **conns;
  int nconns;
  int active; /* connections with messages in flight */
  uint64_t win_msgs;
  uint64_t total_msgs;
  struct hist hist;
  uint8_t rbuf[IO_CHUNK];
  uint8_t expect[IO_CHUNK];
  uint8_t wbuf[IO_CHUNK];
};

static struct conn *conns;
static struct worker **workers;
static struct sockaddr_in target;
static uint64_t t_start, t_measure;
static _Atomic uint64_t t_end; /* may move earlier on SIGINT */
static atomic_bool fatal;
static atomic_int n_errors;
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  if (interrupted)
    _exit(130);
  interrupted = 1;
}

/* Report one error (the first few in full) and stop the run. */
static void fail(const char *fmt, ...) {
  int n = atomic_fetch_add(&n_errors, 1);
  atomic_store(&fatal, true);
  if (n >= 10)
    return;
  pthread_mutex_lock(&err_mu);
  fprintf(stderr, "loadgen: ERROR: ");
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (n == 9)
    fprintf(stderr, "loadgen: (further errors are counted, not printed)\n");
  pthread_mutex_unlock(&err_mu);
}

static void info(const char *fmt, ...) {
  if (opt.quiet)
    return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "loadgen: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static unsigned local_port(int fd) {
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
    return 0;
  return ntohs(sa.sin_port);
}

static void hexdump(char *out, size_t cap, const uint8_t *p, size_t n) {
  size_t o = 0;
  out[0] = 0;
  for (size_t i = 0; i < n && o + 4 < cap; i++)
    o += (size_t)snprintf(out + o, cap - o, "%s%02x", i ? " " : "", p[i]);
}

/* Describe a mismatch between what came back (got) and what was sent (want), both n bytes,
 * starting at (seq, off) of connection c. */
static void report_mismatch(struct conn *c, const uint8_t *got, const uint8_t *want, size_t n,
                            uint64_t seq, uint32_t off) {
  size_t i = 0;
  while (i < n && got[i] == want[i])
    i++;
  uint64_t base = seq * opt.size + off; /* stream offset of got[0] */
  uint64_t stream = base + i;
  uint64_t s = stream / opt.size, o = stream % opt.size;
  size_t from = i >= 4 ? i - 4 : 0;
  size_t len = n - from < 16 ? n - from : 16;
  char g[64], w[64];
  hexdump(g, sizeof g, got + from, len);
  hexdump(w, sizeof w, want + from, len);
  const char *hint = "";
  if (opt.size >= 8 && o < 8)
    hint = " (in the sequence-number field: a message lost, duplicated or reordered?)";
  else if (opt.size >= 16 && o < 16)
    hint = " (in the connection-id field: bytes of another connection?)";
  fail("verification failed on conn %u (local port %u): message seq %" PRIu64 ", byte %" PRIu64
       " of %u (stream offset %" PRIu64 "): expected 0x%02x, got 0x%02x%s\n"
       "         stream bytes %" PRIu64 "..%" PRIu64 " got:      %s\n"
       "         stream bytes %" PRIu64 "..%" PRIu64 " expected: %s",
       c->id, local_port(c->fd), s, o, opt.size, stream, want[i], got[i], hint, base + from,
       base + from + len - 1, g, base + from, base + from + len - 1, w);
}

static void arm(struct worker *w, struct conn *c, bool out) {
  if (c->want_out == out)
    return;
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
  if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
    fail("epoll_ctl(MOD) conn %u: %s", c->id, strerror(errno));
  c->want_out = out;
}

/* Write whatever issued messages are not on the wire yet. */
static void conn_flush(struct worker *w, struct conn *c) {
  while (c->send_seq < c->issued) {
    size_t len = stream_bytes(c->id, c->send_seq, c->send_off, c->issued, w->wbuf, IO_CHUNK);
    ssize_t n = write(c->fd, w->wbuf, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        arm(w, c, true);
        return;
      }
      fail("write on conn %u (local port %u) failed: %s (after %" PRIu64 " messages)", c->id,
           local_port(c->fd), strerror(errno), c->send_seq);
      return;
    }
    uint64_t pos = (uint64_t)c->send_off + (uint64_t)n;
    c->send_seq += pos / opt.size;
    c->send_off = (uint32_t)(pos % opt.size);
    if ((size_t)n < len) {
      arm(w, c, true);
      return;
    }
  }
  arm(w, c, false);
}

/* Check and account n echoed bytes. Returns false on an error (already reported). */
static bool conn_consume(struct worker *w, struct conn *c, const uint8_t *p, size_t n, uint64_t now,
                         uint64_t end) {
  /* Every byte must be the next one sent, and nothing may come back that was not sent. */
  uint64_t sent = c->send_seq * opt.size + c->send_off;
  uint64_t got = c->recv_seq * opt.size + c->recv_off;
  size_t valid = got + n > sent ? (size_t)(sent - got) : n;
  stream_bytes(c->id, c->recv_seq, c->recv_off, UINT64_MAX, w->expect, valid);
  if (memcmp(p, w->expect, valid) != 0) {
    report_mismatch(c, p, w->expect, valid, c->recv_seq, c->recv_off);
    return false;
  }
  if (valid < n) {
    fail("conn %u (local port %u): the server echoed %zu bytes more than were ever sent to it "
         "(%" PRIu64 " bytes sent, all echoed correctly; then extra bytes: duplicated data?)",
         c->id, local_port(c->fd), n - valid, sent);
    return false;
  }
  c->last_progress = now;
  uint64_t pos = (uint64_t)c->recv_off + n;
  uint64_t done = pos / opt.size;
  c->recv_off = (uint32_t)(pos % opt.size);
  for (uint64_t i = 0; i < done; i++) {
    uint64_t seq = c->recv_seq++;
    uint64_t lat = now - c->sent_at[seq % opt.depth];
    w->total_msgs++;
    if (now >= t_measure && now < end) {
      w->win_msgs++;
      hist_record(&w->hist, lat);
    }
    if (now < end) {
      c->sent_at[c->issued % opt.depth] = now;
      c->issued++;
    }
  }
  if (done && c->recv_seq == c->issued && c->recv_off == 0)
    w->active--;
  return true;
}

static void conn_readable(struct worker *w, struct conn *c, uint64_t end) {
  for (;;) {
    ssize_t n = read(c->fd, w->rbuf, IO_CHUNK);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      fail("read on conn %u (local port %u) failed: %s (after %" PRIu64 " echoed messages)", c->id,
           local_port(c->fd), strerror(errno), c->recv_seq);
      return;
    }
    if (n == 0) {
      fail("conn %u (local port %u): the server closed the connection after echoing %" PRIu64
           " messages and %u bytes; %" PRIu64 " messages were in flight",
           c->id, local_port(c->fd), c->recv_seq, c->recv_off, c->issued - c->recv_seq);
      return;
    }
    if (!conn_consume(w, c, w->rbuf, (size_t)n, now_ns(), end))
      return;
    if (n < IO_CHUNK)
      break;
  }
  conn_flush(w, c);
}

static void check_stalls(struct worker *w, uint64_t now) {
  uint64_t limit = (uint64_t)(opt.stall_timeout * 1e9);
  for (int i = 0; i < w->nconns; i++) {
    struct conn *c = w->conns[i];
    if ((c->recv_seq < c->issued) && now - c->last_progress > limit) {
      fail("stall: conn %u (local port %u) got no echo for %.1f s: waiting for message seq "
           "%" PRIu64 " (%u of %u bytes back), %" PRIu64 " messages and %u bytes written; "
           "the server lost or withheld data",
           c->id, local_port(c->fd), (double)(now - c->last_progress) / 1e9, c->recv_seq,
           c->recv_off, opt.size, c->send_seq, c->send_off);
      return;
    }
  }
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct epoll_event evs[MAX_EVENTS];
  uint64_t now = now_ns();
  for (int i = 0; i < w->nconns; i++) {
    struct conn *c = w->conns[i];
    c->last_progress = now;
    for (uint32_t d = 0; d < opt.depth; d++) {
      c->sent_at[c->issued % opt.depth] = now;
      c->issued++;
    }
    w->active++;
    conn_flush(w, c);
  }
  uint64_t next_scan = now + NS_PER_S / 4;
  while (!atomic_load_explicit(&fatal, memory_order_relaxed)) {
    int n = epoll_wait(w->ep, evs, MAX_EVENTS, 100);
    if (n < 0 && errno != EINTR) {
      fail("epoll_wait: %s", strerror(errno));
      break;
    }
    uint64_t end = atomic_load_explicit(&t_end, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_readable(w, c, end);
      else if (evs[i].events & EPOLLOUT)
        conn_flush(w, c);
    }
    now = now_ns();
    if (now >= end && w->active == 0)
      break; /* drained: everything sent came back */
    if (now >= next_scan) {
      next_scan = now + NS_PER_S / 4;
      check_stalls(w, now);
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------- connect */

enum { CS_NEW, CS_WAIT, CS_CONNECTING, CS_DONE };

struct cstate {
  int state;
  int attempts;
  uint64_t first;    /* first attempt */
  uint64_t deadline; /* of the attempt in progress */
  uint64_t not_before;
};

struct connector {
  struct cstate *cs;
  int *retry; /* connections waiting for their next attempt */
  int nretry;
  int inflight;
  int done;
  int ep;
  uint64_t limit;         /* per connection, over all its attempts */
  uint64_t attempt_limit; /* one attempt */
};

static bool retryable(int e) {
  return e == ECONNREFUSED || e == EAGAIN || e == ETIMEDOUT || e == ECONNRESET || e == EINTR ||
         e == ECONNABORTED;
}

/* Attempt of connection i failed with e: retry later with backoff, or fail the run. */
static bool attempt_failed(struct connector *k, int i, int e) {
  struct cstate *cs = &k->cs[i];
  uint64_t now = now_ns();
  if (conns[i].fd >= 0)
    close(conns[i].fd);
  conns[i].fd = -1;
  uint64_t backoff = UINT64_C(10000000) << (cs->attempts < 6 ? cs->attempts : 6); /* 20 ms.. */
  if (!retryable(e) || now + backoff - cs->first > k->limit) {
    fail("cannot connect connection %d of %d to %s:%d: %s (after %d attempt%s over %.1f s; "
         "%d connected)",
         i + 1, opt.conns, opt.host, opt.port, strerror(e), cs->attempts,
         cs->attempts == 1 ? "" : "s", (double)(now - cs->first) / 1e9, k->done);
    return false;
  }
  cs->state = CS_WAIT;
  cs->not_before = now + backoff;
  k->retry[k->nretry++] = i;
  return true;
}

static bool start_attempt(struct connector *k, int i, uint64_t now) {
  struct cstate *cs = &k->cs[i];
  if (cs->attempts++ == 0)
    cs->first = now;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail("socket() for connection %d of %d: %s%s", i + 1, opt.conns, strerror(errno),
         errno == EMFILE ? " (out of file descriptors: raise `ulimit -n`)" : "");
    return false;
  }
  conns[i].fd = fd;
  if (connect(fd, (struct sockaddr *)&target, sizeof target) == 0) {
    cs->state = CS_DONE;
    k->done++;
    return true;
  }
  if (errno != EINPROGRESS)
    return attempt_failed(k, i, errno);
  struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
  if (epoll_ctl(k->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    fail("epoll_ctl(ADD) while connecting: %s", strerror(errno));
    return false;
  }
  cs->state = CS_CONNECTING;
  cs->deadline = now + k->attempt_limit;
  if (cs->deadline > cs->first + k->limit)
    cs->deadline = cs->first + k->limit;
  k->inflight++;
  return true;
}

/* Connect every connection, at most connect_window at a time. Returns false after reporting
 * why not. */
static bool connect_all(void) {
  struct connector k = {0};
  k.cs = calloc((size_t)opt.conns, sizeof *k.cs);
  k.retry = malloc((size_t)opt.conns * sizeof *k.retry);
  k.ep = epoll_create1(EPOLL_CLOEXEC);
  if (!k.cs || !k.retry || k.ep < 0) {
    fail("out of memory or epoll_create1 failed");
    return false;
  }
  k.limit = (uint64_t)(opt.connect_timeout * 1e9);
  k.attempt_limit = k.limit < 3 * NS_PER_S ? k.limit : 3 * NS_PER_S;
  int next_new = 0;
  bool ok = true;
  struct epoll_event evs[256];

  while (ok && k.done < opt.conns) {
    if (interrupted) {
      fail("interrupted while connecting (%d of %d connected)", k.done, opt.conns);
      ok = false;
      break;
    }
    uint64_t now = now_ns();
    /* Start attempts: due retries first, then new connections. */
    for (int r = 0; ok && r < k.nretry && k.inflight < opt.connect_window;) {
      int i = k.retry[r];
      if (now < k.cs[i].not_before) {
        r++;
        continue;
      }
      k.retry[r] = k.retry[--k.nretry];
      ok = start_attempt(&k, i, now);
    }
    /* While some connections are backing off, the server is refusing: do not pile on. */
    while (ok && k.nretry == 0 && k.inflight < opt.connect_window && next_new < opt.conns)
      ok = start_attempt(&k, next_new++, now);
    if (!ok)
      break;
    int n = epoll_wait(k.ep, evs, 256, 10);
    if (n < 0 && errno != EINTR) {
      fail("epoll_wait while connecting: %s", strerror(errno));
      ok = false;
      break;
    }
    for (int e = 0; ok && e < n; e++) {
      int i = (int)evs[e].data.u32;
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(conns[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
      epoll_ctl(k.ep, EPOLL_CTL_DEL, conns[i].fd, NULL);
      k.inflight--;
      if (err == 0) {
        k.cs[i].state = CS_DONE;
        k.done++;
      } else {
        ok = attempt_failed(&k, i, err);
      }
    }
    /* Attempts that took too long (a linear scan, only while connecting). */
    now = now_ns();
    for (int i = 0; ok && i < next_new; i++) {
      if (k.cs[i].state == CS_CONNECTING && now > k.cs[i].deadline) {
        epoll_ctl(k.ep, EPOLL_CTL_DEL, conns[i].fd, NULL);
        k.inflight--;
        ok = attempt_failed(&k, i, ETIMEDOUT);
      }
    }
  }
  close(k.ep);
  free(k.cs);
  free(k.retry);
  return ok;
}

/* ------------------------------------------------------------------ /proc */

static long proc_rss_kb(long pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------- main */

static void usage(FILE *f) {
  fprintf(f, "usage: loadgen [--host 127.0.0.1] [--port 7777] [--conns N] [--size BYTES]\n"
             "               [--depth D] [--duration S] [--warmup S] [--threads T] [--json]\n"
             "               [--quiet] [--connect-timeout S] [--connect-window N]\n"
             "               [--stall-timeout S] [--server-pid PID]\n"
             "  --conns N            connections (default 1)\n"
             "  --size BYTES         message size (default 64)\n"
             "  --depth D            messages in flight per connection (default 1: ping-pong)\n"
             "  --duration S         measured seconds, after the warm-up (default 10)\n"
             "  --warmup S           seconds of load before measuring (default 1)\n"
             "  --threads T          client threads (default 1)\n"
             "  --json               print one JSON object instead of the report\n"
             "  --quiet              no progress lines on stderr (errors still go there)\n"
             "  --connect-timeout S  give up on a connection after S seconds of retries (5)\n"
             "  --connect-window N   connects in progress at once (256)\n"
             "  --stall-timeout S    fail if a connection waits S seconds for its echo (5)\n"
             "  --server-pid PID     sample that process's CPU time and RSS over the window\n"
             "  --framed             each message is a packet {u16 size, u16 id} (8 .. 65535 B)\n");
}

static bool parse_num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  enum { O_CT = 256, O_CW, O_ST, O_PID, O_FRAMED };
  static const struct option longopts[] = {{"host", required_argument, 0, 'H'},
                                           {"port", required_argument, 0, 'p'},
                                           {"conns", required_argument, 0, 'c'},
                                           {"size", required_argument, 0, 's'},
                                           {"depth", required_argument, 0, 'd'},
                                           {"duration", required_argument, 0, 'D'},
                                           {"warmup", required_argument, 0, 'w'},
                                           {"threads", required_argument, 0, 't'},
                                           {"json", no_argument, 0, 'j'},
                                           {"quiet", no_argument, 0, 'q'},
                                           {"connect-timeout", required_argument, 0, O_CT},
                                           {"connect-window", required_argument, 0, O_CW},
                                           {"stall-timeout", required_argument, 0, O_ST},
                                           {"server-pid", required_argument, 0, O_PID},
                                           {"help", no_argument, 0, 'h'},
                                           {"framed", no_argument, 0, O_FRAMED},
                                           {0, 0, 0, 0}};
  int o;
  double v;
  while ((o = getopt_long(argc, argv, "H:p:c:s:d:D:w:t:jqh", longopts, NULL)) != -1) {
    const char *what = NULL;
    switch (o) {
    case 'H':
      opt.host = optarg;
      break;
    case 'p':
      if (!parse_num(optarg, 1, 65535, &v))
        what = "--port";
      opt.port = (int)v;
      break;
    case 'c':
      if (!parse_num(optarg, 1, 1000000, &v))
        what = "--conns";
      opt.conns = (int)v;
      break;
    case 's':
      if (!parse_num(optarg, 1, 16 << 20, &v))
        what = "--size (1 .. 16 MiB)";
      opt.size = (uint32_t)v;
      break;
    case 'd':
      if (!parse_num(optarg, 1, 4096, &v))
        what = "--depth (1 .. 4096)";
      opt.depth = (uint32_t)v;
      break;
    case 'D':
      if (!parse_num(optarg, 0.001, 86400, &v))
        what = "--duration";
      opt.duration = v;
      break;
    case 'w':
      if (!parse_num(optarg, 0, 86400, &v))
        what = "--warmup";
      opt.warmup = v;
      break;
    case 't':
      if (!parse_num(optarg, 1, 256, &v))
        what = "--threads (1 .. 256)";
      opt.threads = (int)v;
      break;
    case 'j':
      opt.json = true;
      break;
    case 'q':
      opt.quiet = true;
      break;
    case O_CT:
      if (!parse_num(optarg, 0.001, 3600, &v))
        what = "--connect-timeout";
      opt.connect_timeout = v;
      break;
    case O_CW:
      if (!parse_num(optarg, 1, 65536, &v))
        what = "--connect-window";
      opt.connect_window = (int)v;
      break;
    case O_ST:
      if (!parse_num(optarg, 0.01, 3600, &v))
        what = "--stall-timeout";
      opt.stall_timeout = v;
      break;
    case O_FRAMED:
      opt.framed = true;
      break;
    case O_PID:
      if (!parse_num(optarg, 1, 1e9, &v))
        what = "--server-pid";
      opt.server_pid = (long)v;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
    if (what) {
      fprintf(stderr, "loadgen: bad %s: %s\n", what, optarg);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "loadgen: unexpected argument %s\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  if (opt.framed && (opt.size < 8 || opt.size > 65535)) {
    fprintf(stderr, "loadgen: --framed needs --size from 8 to 65535\n");
    return 2;
  }
  if (opt.threads > opt.conns)
    opt.threads = opt.conns;

  /* Descriptors: one per connection plus a few. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)opt.conns + 16 + (rlim_t)opt.threads > rl.rlim_cur) {
      fprintf(stderr, "loadgen: %d connections need more descriptors than the limit (%llu)\n",
              opt.conns, (unsigned long long)rl.rlim_cur);
      return 1;
    }
  }

  target.sin_family = AF_INET;
  target.sin_port = htons((uint16_t)opt.port);
  if (inet_pton(AF_INET, opt.host, &target.sin_addr) != 1) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(opt.host, NULL, &hints, &ai) != 0) {
      fprintf(stderr, "loadgen: cannot resolve host %s\n", opt.host);
      return 2;
    }
    target.sin_addr = ((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr;
    freeaddrinfo(ai);
  }

  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  conns = calloc((size_t)opt.conns, sizeof *conns);
  uint64_t *slots = calloc((size_t)opt.conns * opt.depth, sizeof *slots);
  workers = calloc((size_t)opt.threads, sizeof *workers);
  if (!conns || !slots || !workers) {
    fprintf(stderr, "loadgen: out of memory\n");
    return 1;
  }
  for (int i = 0; i < opt.conns; i++) {
    conns[i].fd = -1;
    conns[i].id = (uint32_t)i;
    conns[i].sent_at = slots + (size_t)i * opt.depth;
  }

  info("connecting %d connections to %s:%d", opt.conns, opt.host, opt.port);
  uint64_t t0 = now_ns();
  bool connected = connect_all();
  double connect_s = (double)(now_ns() - t0) / 1e9;
  if (connected)
    info("connected %d in %.2f s", opt.conns, connect_s);

  int one = 1;
  for (int t = 0; connected && t < opt.threads; t++) {
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
      fprintf(stderr, "loadgen: out of memory\n");
      return 1;
    }
    w->idx = t;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->conns = calloc((size_t)(opt.conns / opt.threads + 1), sizeof *w->conns);
    if (w->ep < 0 || !w->conns) {
      fprintf(stderr, "loadgen: epoll_create1/out of memory\n");
      return 1;
    }
    workers[t] = w;
  }
  for (int i = 0; connected && i < opt.conns; i++) {
    struct worker *w = workers[i % opt.threads];
    struct conn *c = &conns[i];
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
      fprintf(stderr, "loadgen: epoll_ctl(ADD): %s\n", strerror(errno));
      return 1;
    }
    w->conns[w->nconns++] = c;
  }

  long long cpu0 = -1, cpu1 = -1;
  long rss_kb = -1;
  double self0 = 0, self1 = 0;
  double window_s = 0;
  if (connected) {
    t_start = now_ns() + NS_PER_S / 100;
    t_measure = t_start + (uint64_t)(opt.warmup * 1e9);
    atomic_store(&t_end, t_measure + (uint64_t)(opt.duration * 1e9));
    sleep_until(t_start);
    for (int t = 0; t < opt.threads; t++) {
      if (pthread_create(&workers[t]->tid, NULL, worker_main, workers[t]) != 0) {
        fprintf(stderr, "loadgen: pthread_create failed\n");
        return 1;
      }
    }
    if (opt.warmup > 0)
      info("warming up for %.1f s", opt.warmup);
    /* Sample at the start and the end of the window; stop early on a signal or an error. */
    bool started = false, ended = false;
    while (!ended && !atomic_load(&fatal)) {
      uint64_t now = now_ns();
      if (interrupted && now < atomic_load(&t_end)) {
        info("interrupted: stopping");
        atomic_store(&t_end, now > t_measure ? now : t_measure);
      }
      uint64_t end = atomic_load(&t_end);
      if (!started && now >= t_measure) {
        started = true;
        if (opt.server_pid)
          cpu0 = proc_cpu_ticks(opt.server_pid);
        self0 = self_cpu_s();
        info("measuring for %.1f s", opt.duration);
      }
      if (started && now >= end) {
        ended = true;
        if (opt.server_pid) {
          cpu1 = proc_cpu_ticks(opt.server_pid);
          rss_kb = proc_rss_kb(opt.server_pid);
        }
        self1 = self_cpu_s();
        window_s = (double)(end - t_measure) / 1e9;
        break;
      }
      uint64_t next = started ? end : t_measure;
      uint64_t step = now + NS_PER_S / 20;
      sleep_until(next < step ? next : step);
    }
    for (int t = 0; t < opt.threads; t++)
      pthread_join(workers[t]->tid, NULL);
  }

  struct hist *h = calloc(1, sizeof *h);
  uint64_t msgs = 0, total = 0;
  for (int t = 0; connected && t < opt.threads; t++) {
    hist_merge(h, &workers[t]->hist);
    msgs += workers[t]->win_msgs;
    total += workers[t]->total_msgs;
  }
  int errors = atomic_load(&n_errors);
  double mps = window_s > 0 ? (double)msgs / window_s : 0;
  double bps = mps * opt.size;
  double p50 = (double)hist_percentile(h, 50) / 1e3, p90 = (double)hist_percentile(h, 90) / 1e3;
  double p99 = (double)hist_percentile(h, 99) / 1e3, p999 = (double)hist_percentile(h, 99.9) / 1e3;
  double pmax = (double)h->max / 1e3;
  double client_cpu_pct = window_s > 0 ? (self1 - self0) / window_s * 100 : 0;
  double srv_cpu_s = -1, srv_us_per_msg = -1;
  if (cpu0 >= 0 && cpu1 >= 0) {
    srv_cpu_s = (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK);
    srv_us_per_msg = msgs ? srv_cpu_s * 1e6 / (double)msgs : 0;
  }

  if (opt.json) {
    printf("{\"conns\":%d,\"size\":%u,\"depth\":%u,\"threads\":%d,\"duration_s\":%.3f,"
           "\"warmup_s\":%.3f,\"connect_s\":%.3f,\"messages\":%" PRIu64
           ",\"total_messages\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"bytes_per_s\":%.1f,"
           "\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,"
           "\"client_cpu_pct\":%.1f",
           opt.conns, opt.size, opt.depth, opt.threads, window_s, opt.warmup, connect_s, msgs,
           total, mps, bps, p50, p90, p99, p999, pmax, client_cpu_pct);
    if (opt.server_pid)
      printf(",\"server_pid\":%ld,\"server_cpu_s\":%.3f,\"server_cpu_us_per_msg\":%.4f,"
             "\"server_rss_kb\":%ld",
             opt.server_pid, srv_cpu_s, srv_us_per_msg, rss_kb);
    printf(",\"errors\":%d}\n", errors);
  } else if (connected && !errors) {
    printf("loadgen: %s:%d  conns %d  size %u B  depth %u  threads %d\n", opt.host, opt.port,
           opt.conns, opt.size, opt.depth, opt.threads);
    printf("  connected   %d in %.2f s\n", opt.conns, connect_s);
    printf("  measured    %.2f s after %.1f s warm-up: %" PRIu64 " messages\n", window_s,
           opt.warmup, msgs);
    printf("  throughput  %.0f msg/s, %.2f MB/s echoed\n", mps, bps / 1e6);
    printf("  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", p50, p90, p99,
           p999, pmax);
    printf("  verified    %" PRIu64 " messages (%" PRIu64 " bytes) byte for byte, %d errors\n",
           total, total * opt.size, errors);
    printf("  loadgen CPU %.0f%% of a core\n", client_cpu_pct);
    if (opt.server_pid)
      printf("  server      pid %ld: %.3f s CPU, %.3f us CPU/msg, RSS %ld kB\n", opt.server_pid,
             srv_cpu_s, srv_us_per_msg, rss_kb);
  }
  for (int i = 0; i < opt.conns; i++)
    if (conns[i].fd >= 0)
      close(conns[i].fd);
  if (errors) {
    fprintf(stderr, "loadgen: FAILED with %d error%s (%" PRIu64 " messages verified before)\n",
            errors, errors == 1 ? "" : "s", total);
    return 1;
  }
  return interrupted ? 130 : 0;
}
