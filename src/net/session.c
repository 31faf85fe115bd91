/*
 * session.c - reference-counted sessions: the strand, receiving and framing,
 * gathered sends, and the one way a session ends.
 *
 * References: the registry holds one while the session is registered, every
 * op in flight holds one, the thread running the strand holds one, and the
 * application may hold more. The last cp_session_put closes the fd and frees.
 *
 * The strand (see net.h): `strand` is a word of pending-event bits plus ST_RUN.
 * A thread that sets a bit and finds ST_RUN clear becomes the runner and
 * handles bits until it can swap ST_RUN back to 0 with nothing pending; a
 * thread that finds ST_RUN set just leaves its bit for the runner. Results
 * are stored in the session before the bit is set (release/acquire pairs).
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Atomic uint64_t next_session_id = 1;

/* ---- references ------------------------------------------------------ */

cp_session *cp_session_get(cp_session *s) {
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return s;
}

static void session_free(cp_session *s) {
  cp_service *svc = s->svc;
  cp_port_disassociate(svc->port, s->fd);
  close(s->fd);
  struct sendq *q = s->sq;
  if (q) {
    for (uint32_t i = 0; i < q->len; i++)
      cp_sendbuf_unref(q->ring[(q->head + i) % q->cap]);
    atomic_fetch_sub(&svc->queued_bytes, q->queued_bytes);
    mem_free(q->ring);
    mem_free(q->iov);
    mem_free(q);
  }
  cp__frame_reset(&s->part);
  mem_free(s);
  atomic_fetch_sub(&svc->sessions_alive, 1);
}

void cp_session_put(cp_session *s) {
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
    session_free(s);
}

uint64_t cp_session_id(const cp_session *s) {
  return s->id;
}
cp_service *cp_session_service(const cp_session *s) {
  return s->svc;
}
void cp_session_set_user(cp_session *s, void *user) {
  s->user = user;
}
void *cp_session_user(const cp_session *s) {
  return s->user;
}
bool cp_session_connected(const cp_session *s) {
  cp_session *m = (cp_session *)s;
  /* 1: connected; 2: draining after a graceful disconnect (net_internal.h) */
  return atomic_load(&m->connected) == 1 && !atomic_load(&m->closing);
}

const char *cp_session_peer(const cp_session *s, char *buf, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (getpeername(s->fd, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
      port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
      port = ntohs(a->sin6_port);
    }
  }
  snprintf(buf, len, "%s:%u", host, port);
  return buf;
}

/* ---- the strand ------------------------------------------------------ */

static void process(cp_session *s, uint32_t bits);
static void cork(cp_session *s);
static bool uncork(cp_session *s);

static void strand_loop(cp_session *s) {
  for (;;) {
    uint32_t bits = atomic_fetch_and_explicit(&s->strand, ST_RUN, memory_order_acq_rel) & ~ST_RUN;
    if (bits) {
      process(s, bits);
      continue;
    }
    uint32_t expect = ST_RUN;
    if (atomic_compare_exchange_strong_explicit(&s->strand, &expect, 0, memory_order_acq_rel,
                                                memory_order_acquire))
      return;
  }
}

/* The caller owns the strand (ST_RUN): run it to the end. Callbacks run
 * only on the service's workers, so a thread of the application (one that
 * calls cp_session_disconnect, or cp_service_stop) hands the strand to a
 * worker with a posted completion instead of running callbacks itself - it
 * may hold locks its callbacks take. */
static void strand_run(cp_session *s) {
  cp_session_get(s); /* the runner's own reference: events may drop the others */
  if (cp__net_worker_of != s->svc && cp_port_post(s->svc->port, s, NULL, NET_POST_STRAND) == 0)
    return; /* the reference travels with the post */
  strand_loop(s);
  cp_session_put(s);
}

void cp__session_on_strand_post(cp_session *s) {
  strand_loop(s);
  cp_session_put(s);
}

/* Queue events for s; run them here unless another thread already is. The
 * caller holds a reference that covers the events (an op's, or its own). */
static void strand_signal(cp_session *s, uint32_t bits) {
  uint32_t old = atomic_fetch_or_explicit(&s->strand, bits | ST_RUN, memory_order_acq_rel);
  if (old & ST_RUN)
    return;
  strand_run(s);
}

/* ---- creation -------------------------------------------------------- */

cp_session *cp__session_new(cp_service *svc, int fd, bool client) {
  cp_session *s = mem_calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->svc = svc;
  s->fd = fd;
  s->flags = client ? SF_CLIENT : 0;
  s->id = atomic_fetch_add(&next_session_id, 1);
  s->reg_idx = UINT32_MAX;
  atomic_init(&s->refs, 1);        /* the creator's */
  atomic_init(&s->strand, ST_RUN); /* the creator runs the strand until cp__session_start */
  atomic_init(&s->last_active, service_clock(svc));
  cp__spin_init(&s->send_lock);
  if (cp_port_associate(svc->port, fd, s) != 0) {
    mem_free(s);
    return NULL;
  }
  atomic_fetch_add(&svc->sessions_alive, 1);
  return s;
}

static void post_recv(cp_session *s) {
  if (atomic_load(&s->closing) || (s->flags & SF_EOF))
    return;
  cp_session_get(s);
  int rc = cp_port_recv_pooled(s->svc->port, s->fd, &s->rio);
  if (rc) {
    cp_session_put(s);
    cp__session_close(s, CP_REASON_ERROR);
  }
}

/* Announce a connected session; the caller owns the strand (ST_RUN). */
static void announce(cp_session *s) {
  cp_service *svc = s->svc;
  stat_add(&svc->n_sessions, 1);
  s->flags |= SF_ANNOUNCED; /* on_disconnected will follow, whatever happens next */
  atomic_store(&s->connected, 1);
  if (svc->o.callbacks.on_connected)
    svc->o.callbacks.on_connected(s);
  post_recv(s);
}

void cp__session_start(cp_session *s) {
  /* Accepted: register, announce, then let the strand go. */
  int rc = cp__registry_add(s->svc, s);
  if (rc) {
    cp__session_close(s, rc == -ESHUTDOWN ? CP_REASON_SHUTDOWN : CP_REASON_ERROR);
  } else {
    announce(s);
  }
  strand_run(s); /* events that came while we held the strand */
}

int cp__session_connect(cp_session *s, const struct sockaddr *addr, socklen_t len) {
  int rc = cp__registry_add(s->svc, s);
  if (rc == 0) {
    cp_session_get(s);
    s->flags |= SF_CONNECTING;
    rc = cp_port_connect(s->svc->port, s->fd, &s->rio, addr, len);
    if (rc) {
      s->flags &= (uint8_t)~SF_CONNECTING;
      cp_session_put(s);
    }
  }
  if (rc == -ESHUTDOWN) {
    cp__session_close(s, CP_REASON_SHUTDOWN); /* never connected: no callback */
  } else if (rc) {
    stat_add(&s->svc->n_connect_failures, 1);
    cp__session_close(s, CP_REASON_CONNECT_FAILED);
  }
  strand_run(s);
  return rc;
}

/* ---- ending ---------------------------------------------------------- */

void cp__session_close(cp_session *s, cp_reason why) {
  if (atomic_exchange(&s->closing, 1))
    return;
  /* reason is read by the strand after it sees ST_CLOSE (acq_rel on strand). */
  s->reason = (uint8_t)why;
  cp_port_cancel(s->svc->port, s->fd);
  shutdown(s->fd, SHUT_RDWR);
  strand_signal(s, ST_CLOSE);
}

/* A graceful disconnect has sent everything: closing now, with bytes from
 * the peer still unread, would make the kernel answer with a reset, and a
 * reset makes the peer's kernel drop what it has not read yet - the very
 * data the drain waited for. So send our FIN, keep reading (and dropping)
 * until the peer's FIN, an error or LINGER_MS, then close. */
#define LINGER_MS 2000

/* The linger's deadline. It names the session by id, not by a reference:
 * a reference would keep the socket open for the whole LINGER_MS even when
 * the peer closes at once (and every graceful disconnect would hold a
 * descriptor that long). */
struct linger_ticket {
  cp_service *svc;
  uint64_t id;
};

static void linger_end(void *arg) {
  struct linger_ticket *t = arg;
  cp_session *s = cp__registry_find(t->svc, t->id); /* referenced, or NULL: gone */
  if (s) {
    cp__session_close(s, CP_REASON_LOCAL);
    cp_session_put(s);
  }
  mem_free(t);
}

/* Strand: the drain of a graceful disconnect is done. */
static void linger(cp_session *s) {
  s->flags |= SF_LINGER;
  struct linger_ticket *t = mem_alloc(sizeof *t);
  if (t && shutdown(s->fd, SHUT_WR) == 0) {
    *t = (struct linger_ticket){.svc = s->svc, .id = s->id};
    if (cp__timer_post_owned(s->svc->sysq, LINGER_MS, linger_end, mem_free, t) == 0)
      return; /* the next recv (in flight, or posted after this send) sees the end */
  }
  mem_free(t);
  cp__session_close(s, CP_REASON_LOCAL);
}

void cp_session_disconnect(cp_session *s, bool graceful) {
  if (graceful) {
    cp__spin_lock(&s->send_lock);
    /* in flight, or queued behind a cork: either way a send completion or
     * the uncork will come and see drain_close */
    bool pending = s->sq && (s->sq->busy || s->sq->len);
    if (pending && !s->sq->drain_close) {
      s->sq->drain_close = true;
      s->sq->drain_reason = CP_REASON_LOCAL;
    }
    if (pending)
      atomic_store(&s->connected, 2); /* no more packets are delivered, no more sends queued */
    cp__spin_unlock(&s->send_lock);
    if (pending)
      return; /* the send completion closes it once the queue is empty */
  }
  cp__session_close(s, CP_REASON_LOCAL);
}

/* Strand: the session is over. Drop what is queued (the buffers of a send in
 * flight stay until it completes), tell the application, unregister. */
static void finish_close(cp_session *s) {
  cp_service *svc = s->svc;
  struct sendq *q = s->sq;
  cp_sendbuf *drop[64];
  for (;;) {
    uint32_t n = 0;
    cp__spin_lock(&s->send_lock);
    while (q && q->len > q->inflight && n < 64) {
      uint32_t last = (q->head + q->len - 1) % q->cap;
      cp_sendbuf *b = q->ring[last];
      q->len--;
      q->queued_bytes -= cp_sendbuf_len(b);
      atomic_fetch_sub(&svc->queued_bytes, cp_sendbuf_len(b));
      drop[n++] = b;
    }
    if (q)
      q->drain_close = false;
    cp__spin_unlock(&s->send_lock);
    for (uint32_t i = 0; i < n; i++)
      cp_sendbuf_unref(drop[i]);
    if (n < 64)
      break;
  }
  cp__frame_reset(&s->part);
  bool announced = s->flags & SF_ANNOUNCED;
  cp_reason why = (cp_reason)s->reason;
  if ((announced || why == CP_REASON_CONNECT_FAILED) && svc->o.callbacks.on_disconnected)
    svc->o.callbacks.on_disconnected(s, why);
  /* Counted once on_disconnected has returned: whoever sees the count reach
   * N also sees the N callbacks done (it was counted when the close began,
   * and a test that waited for the count then checked its callbacks found
   * one still running: test_net_graceful_linger on io_uring, once in ~300
   * runs under load). */
  stat_add(&svc->n_disc[why], 1);
  if (announced)
    atomic_fetch_sub(&svc->n_sessions, 1);
  if (s->flags & SF_ADMITTED)
    atomic_fetch_sub(&svc->admitted, 1);
  cp__registry_remove(svc, s);
}

void cp__session_check_idle(cp_session *s, uint64_t now_ms) {
  (void)now_ms;
  uint32_t idle =
      service_clock(s->svc) - atomic_load_explicit(&s->last_active, memory_order_relaxed);
  if (idle >= s->svc->o.idle_timeout_ms && idle < UINT32_MAX / 2)
    cp__session_close(s, CP_REASON_IDLE_TIMEOUT);
}

/* ---- receiving ------------------------------------------------------- */

static inline uint16_t le16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

/* framing.c hands over each complete packet; false stops it (closing, or
 * draining after a graceful disconnect: the packets after it are dropped). */
static bool deliver(void *ctx, const uint8_t *p, uint16_t size) {
  cp_session *s = ctx;
  cp_service *svc = s->svc;
  cp_packet pkt = {.id = le16(p + 2),
                   .size = size,
                   .data = p,
                   .body = p + CP_PACKET_HEADER,
                   .body_len = size - CP_PACKET_HEADER};
  stat_add(&svc->n_packets_in, 1);
  atomic_store_explicit(&s->last_active, service_clock(svc), memory_order_relaxed);
  if (svc->o.callbacks.on_packet)
    svc->o.callbacks.on_packet(s, &pkt);
  return !atomic_load(&s->closing) && !session_draining(s);
}

/* Frame the bytes of one receive (see framing.h). */
static void consume(cp_session *s, const uint8_t *p, size_t n) {
  switch (cp__frame_feed(&s->part, p, n, s->svc->o.max_packet, deliver, s)) {
  case FRAME_OK:
  case FRAME_STOP:
    break;
  case FRAME_BAD:
    cp__session_close(s, CP_REASON_BAD_PACKET);
    break;
  case FRAME_NOMEM:
    cp__session_close(s, CP_REASON_ERROR);
    break;
  }
}

static cp_reason reason_of(int64_t err) {
  switch (err) {
  case 0:
    return CP_REASON_PEER_CLOSED;
  case -ECONNRESET:
  case -EPIPE:
  case -ETIMEDOUT:
  case -EHOSTUNREACH:
  case -ENETUNREACH:
  case -ECONNABORTED:
    return CP_REASON_RESET;
  case -ECANCELED:
    return CP_REASON_LOCAL;
  default:
    return CP_REASON_ERROR;
  }
}

static void handle_recv(cp_session *s) {
  cp_service *svc = s->svc;
  int32_t res = s->recv_res;
  void *buf = s->recv_buf;
  s->recv_buf = NULL;
  if (s->flags & SF_CONNECTING) {
    s->flags &= (uint8_t)~SF_CONNECTING;
    if (res == 0 && !atomic_load(&s->closing)) {
      stat_add(&svc->n_connects, 1);
      announce(s);
    } else if (res != 0 && !atomic_load(&s->closing)) {
      stat_add(&svc->n_connect_failures, 1);
      cp__session_close(s, CP_REASON_CONNECT_FAILED);
    }
  } else if (res > 0) {
    stat_add(&svc->n_bytes_in, (uint64_t)res);
    bool sending = false;
    /* draining: the bytes are dropped; receiving goes on only to see the peer go */
    if (!atomic_load(&s->closing) && !session_draining(s)) {
      cork(s);
      if (svc->o.raw) {
        stat_add(&svc->n_packets_in, 1);
        atomic_store_explicit(&s->last_active, service_clock(svc), memory_order_relaxed);
        if (svc->o.callbacks.on_raw)
          svc->o.callbacks.on_raw(s, buf, (size_t)res);
      } else {
        consume(s, buf, (size_t)res);
      }
      sending = uncork(s);
    }
    cp_port_buf_release(svc->port, buf);
    /* Read after write: if a send is in flight (typically the reply to what
     * just came in), the next recv goes in when it completes. By then the
     * peer has usually answered, so the recv finds data at once instead of
     * arming a wait for every message; and a peer that does not read what
     * we send is not read from either (it can only stall itself). */
    if (!sending)
      post_recv(s); /* not if closing */
    else
      s->flags |= SF_RECV_AFTER_SEND;
  } else if (res == 0 && !atomic_load(&s->closing)) {
    /* The peer's FIN: it sends no more but may still read. What is queued
     * to it (the replies to its last packets may take several sends) goes
     * out first; the session ends as peer_closed when the queue is empty. */
    s->flags |= SF_EOF;
    cp__spin_lock(&s->send_lock);
    bool pending = s->sq && (s->sq->busy || s->sq->len);
    if (pending && !s->sq->drain_close) {
      s->sq->drain_close = true;
      s->sq->drain_reason = CP_REASON_PEER_CLOSED;
    }
    cp__spin_unlock(&s->send_lock);
    if (!pending)
      cp__session_close(s, s->flags & SF_LINGER ? CP_REASON_LOCAL : CP_REASON_PEER_CLOSED);
  } else {
    cp__session_close(s, s->flags & SF_LINGER ? CP_REASON_LOCAL : reason_of(res));
  }
  cp_session_put(s); /* the op's reference */
}

/* ---- sending --------------------------------------------------------- */

/* Build the next gathered send from the queue head (send lock held). */
static void build_batch(struct sendq *q) {
  uint32_t k = q->len < CP_BUF_MAX ? q->len : CP_BUF_MAX;
  if (k > 1 && q->iov_cap < k) {
    uint32_t cap = q->iov_cap ? q->iov_cap : 16;
    while (cap < k)
      cap *= 2;
    cp_buf *v = mem_realloc(q->iov, cap * sizeof *v);
    if (v) {
      q->iov = v;
      q->iov_cap = cap;
    } else {
      k = q->iov_cap ? q->iov_cap : 1; /* send what fits; the rest follows */
    }
  }
  cp_buf *v = k == 1 ? &q->one : q->iov;
  size_t bytes = 0;
  for (uint32_t i = 0; i < k; i++) {
    cp_sendbuf *b = q->ring[(q->head + i) % q->cap];
    v[i] = cp_buf_init(cp_sendbuf_data(b), cp_sendbuf_len(b));
    bytes += v[i].len;
  }
  q->inflight = k;
  q->inflight_bytes = bytes;
  q->busy = true;
}

static int start_send(cp_session *s) {
  struct sendq *q = s->sq;
  cp_buf *v = q->inflight == 1 ? &q->one : q->iov;
  stat_add(&s->svc->n_sends, 1);
  return cp_port_send(s->svc->port, s->fd, &q->op, v, (int)q->inflight);
}

static bool ring_push(struct sendq *q, cp_sendbuf *b) {
  if (q->len == q->cap) {
    uint32_t cap = q->cap ? q->cap * 2 : 8;
    cp_sendbuf **r = mem_alloc(cap * sizeof *r);
    if (!r)
      return false;
    for (uint32_t i = 0; i < q->len; i++)
      r[i] = q->ring[(q->head + i) % q->cap];
    mem_free(q->ring);
    q->ring = r;
    q->cap = cap;
    q->head = 0;
  }
  q->ring[(q->head + q->len) % q->cap] = b;
  q->len++;
  return true;
}

/* Start the batch just built (q->busy set under the lock). */
static void send_now(cp_session *s) {
  cp_session_get(s);
  int rc = start_send(s);
  if (rc) {
    s->sq->res = rc;
    strand_signal(s, ST_SEND); /* handled like a failed send */
  }
}

/* Strand: while one receive is framed, the replies its packets produce are
 * queued and go out together in one gathered send when it is done (cork),
 * instead of the first going alone and the rest after it. */
static void cork(cp_session *s) {
  cp__spin_lock(&s->send_lock);
  if (!s->sq)
    s->sq = mem_calloc(1, sizeof *s->sq); /* NULL: no cork, sends start at once */
  if (s->sq)
    s->sq->corked = true;
  cp__spin_unlock(&s->send_lock);
}

/* Returns whether a send is in flight afterwards (for read after write). */
static bool uncork(cp_session *s) {
  struct sendq *q = s->sq;
  if (!q)
    return false;
  cp__spin_lock(&s->send_lock);
  q->corked = false;
  bool start = q->len && !q->busy && !atomic_load(&s->closing);
  if (start)
    build_batch(q);
  bool busy = q->busy;
  cp__spin_unlock(&s->send_lock);
  if (start)
    send_now(s);
  return busy;
}

int cp_session_send(cp_session *s, cp_sendbuf *b) {
  if (!s || !b)
    return -EINVAL;
  size_t len = cp_sendbuf_len(b);
  if (!len)
    return -EINVAL;
  cp_service *svc = s->svc;
  if (atomic_load(&s->closing) || !atomic_load(&s->connected))
    return -ENOTCONN;
  cp__spin_lock(&s->send_lock);
  if (atomic_load(&s->closing) || session_draining(s)) {
    cp__spin_unlock(&s->send_lock);
    return -ENOTCONN;
  }
  if (!s->sq) {
    s->sq = mem_calloc(1, sizeof *s->sq);
    if (!s->sq) {
      cp__spin_unlock(&s->send_lock);
      return -ENOMEM;
    }
  }
  struct sendq *q = s->sq;
  if (q->queued_bytes + len > svc->o.send_queue_max) {
    cp__spin_unlock(&s->send_lock);
    cp__session_close(s, CP_REASON_SLOW_CONSUMER);
    return -ENOBUFS;
  }
  if (!ring_push(q, cp_sendbuf_ref(b))) {
    cp__spin_unlock(&s->send_lock);
    cp_sendbuf_unref(b);
    return -ENOMEM;
  }
  q->queued_bytes += len;
  atomic_fetch_add(&svc->queued_bytes, len);
  stat_add(&svc->n_packets_out, 1);
  bool start = !q->busy && !q->corked;
  if (start)
    build_batch(q);
  cp__spin_unlock(&s->send_lock);
  if (start)
    send_now(s);
  return 0;
}

size_t cp_session_send_many(cp_session *const *v, size_t n, cp_sendbuf *b) {
  size_t ok = 0;
  for (size_t i = 0; i < n; i++) {
    if (!v[i])
      continue;
    int rc = cp_session_send(v[i], b);
    if (rc == 0)
      ok++;
    else if (rc == -ENOMEM)
      cp__session_close(v[i], CP_REASON_ERROR); /* it must not miss a packet and go on */
  }
  return ok;
}

size_t cp_session_send_queued(const cp_session *s) {
  cp_session *m = (cp_session *)s;
  cp__spin_lock(&m->send_lock);
  size_t n = m->sq ? m->sq->queued_bytes : 0;
  cp__spin_unlock(&m->send_lock);
  return n;
}

static void handle_send(cp_session *s) {
  cp_service *svc = s->svc;
  struct sendq *q = s->sq;
  int32_t res = q->res;
  cp_sendbuf *done[64];
  size_t bytes;
  bool again = false, close_now = false;
  cp_reason close_why = CP_REASON_LOCAL;
  /* Drop the buffers of the finished send (in chunks, outside the lock). */
  cp__spin_lock(&s->send_lock);
  bytes = q->inflight_bytes;
  q->queued_bytes -= bytes;
  atomic_fetch_sub(&svc->queued_bytes, bytes);
  uint32_t k = q->inflight;
  q->inflight = 0;
  q->inflight_bytes = 0;
  cp__spin_unlock(&s->send_lock);
  while (k) {
    uint32_t n = 0;
    cp__spin_lock(&s->send_lock);
    while (k && n < 64) {
      done[n++] = q->ring[q->head];
      q->head = (q->head + 1) % q->cap;
      q->len--;
      k--;
    }
    cp__spin_unlock(&s->send_lock);
    for (uint32_t i = 0; i < n; i++)
      cp_sendbuf_unref(done[i]);
  }
  bool closing = atomic_load(&s->closing);
  if (res >= 0)
    stat_add(&svc->n_bytes_out, bytes); /* they left, closing or not */
  if (res >= 0 && !closing) {
    if (svc->o.callbacks.on_sent)
      svc->o.callbacks.on_sent(s, bytes);
  }
  cp__spin_lock(&s->send_lock);
  if (res < 0 || atomic_load(&s->closing)) {
    q->busy = false;
  } else if (q->len) {
    build_batch(q);
    again = true;
  } else {
    q->busy = false;
    close_now = q->drain_close;
    close_why = (cp_reason)q->drain_reason;
  }
  cp__spin_unlock(&s->send_lock);
  if (res < 0)
    cp__session_close(s, reason_of(res));
  if (close_now && close_why == CP_REASON_LOCAL && !(s->flags & SF_EOF))
    linger(s);
  else if (close_now)
    cp__session_close(s, close_why);
  if (s->flags & SF_RECV_AFTER_SEND) {
    s->flags &= (uint8_t)~SF_RECV_AFTER_SEND;
    post_recv(s); /* not if closing */
  }
  if (again) {
    int rc = start_send(s); /* the op's reference carries over */
    if (rc) {
      cp__spin_lock(&s->send_lock);
      q->busy = false;
      cp__spin_unlock(&s->send_lock);
      cp__session_close(s, CP_REASON_ERROR);
      cp_session_put(s);
    }
    return;
  }
  cp_session_put(s); /* the op's reference */
}

/* ---- dispatch -------------------------------------------------------- */

static void process(cp_session *s, uint32_t bits) {
  if (bits & ST_RECV)
    handle_recv(s);
  if (bits & ST_SEND)
    handle_send(s);
  if (bits & ST_CLOSE)
    finish_close(s);
}

void cp__session_on_completion(cp_session *s, const cp_completion *c) {
  if (c->kind == CP_OP_SEND) {
    s->sq->res = c->result < INT32_MIN ? INT32_MIN : (int32_t)c->result;
    strand_signal(s, ST_SEND);
  } else {
    s->recv_res = c->result > INT32_MAX ? INT32_MAX : (int32_t)c->result;
    s->recv_buf = c->buf;
    strand_signal(s, ST_RECV);
  }
}
