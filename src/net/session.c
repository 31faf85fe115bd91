/*
 * session.c - reference-counted sessions: the strand, receiving and framing,
 * gathered sends, and the one way a session ends.
 *
 * References: the registry holds one while the session is registered, every
 * op in flight holds one, a strand's run holds one (below), and the
 * application may hold more. The last cp_session_put closes the fd and frees.
 *
 * The strand (see net.h): `strand` is a word of pending-event bits plus ST_RUN.
 * A thread that sets a bit and finds ST_RUN clear becomes the runner and
 * handles bits until it can swap ST_RUN back to 0 with nothing pending; a
 * thread that finds ST_RUN set just leaves its bit for the runner. Results
 * are stored in the session before the bit is set (release/acquire pairs).
 * With ST_RUN clear the word is 0 (bits are only set with ST_RUN, and the
 * run lets go only with none pending), so a thread that finds it 0 takes it
 * with one CAS to ST_RUN and handles its own event at once, without setting
 * its bit and taking it back.
 *
 * A run's reference. An op's reference goes, with its completion, to the
 * run that handles it, which keeps it in the session's bank (SF_BANK, strand
 * only) and either hands it to the next op it starts (the receive after a
 * send, the send after a receive: no get, no put) or puts it once the run
 * has let the strand go. So a run started by a completion is kept alive by
 * that completion's op reference, and takes none of its own: while it holds
 * the strand, every op reference is either banked or with an op in flight,
 * whose completion only a run can handle - this one. Other runs (a close, a
 * timer, a post from the application's thread) take a reference of their own.
 *
 * The bank holds at most two, and a reference that finds it full is put at
 * once (ref_bank). Two is what a run hands on - the receive's and the send's
 * - but not a bound on what it is given: a send started outside the strand
 * (cp_session_send from the application, a job or a timer, another session's
 * callback - a chat room's broadcast) cannot reach the strand-only bank and
 * takes a reference of its own, and a run handles every completion that
 * comes before it lets go. A run that banks a send's reference and has no op
 * to give it to (the receive is in flight already, nothing more is queued,
 * or the session is held, draining or closing) keeps it while it runs, and
 * each such outside send it sees complete brings one more: without bound
 * while completions keep coming before its let-go CAS. (fuzz_chat's case: a
 * run kept going by a client's ping-pong carried one such reference, then
 * handled a receive - whose reply could not start, another worker's
 * broadcast being in flight - and that broadcast's send: a third.)
 * test_net_strand_refs has one run handle six sends started outside it.
 * The put is never the last: the two banked references stay with the run
 * until it hands them to ops or lets go.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t next_session_id = 1;

/* The idle-memory goal (docs/performance.md, issue 13: <= 200 bytes per idle
 * connection) counts this struct: an idle session must not grow. */
#if UINTPTR_MAX == UINT64_MAX
/* 168 bytes with Linux's 4-byte descriptor (glibc's chunk: 176; at 169 it
 * would be 192); 176 on Windows, whose SOCKET is 8 (and padding). */
_Static_assert(sizeof(struct cp_session) <= 160 + 2 * sizeof(cp_socket_t),
               "an idle session grew past 168 bytes (176 on Windows)");
#endif

/* Strand ownership, checked in debug builds: the session whose strand this
 * thread runs (strands nest: a callback that disconnects another session may
 * run that one's strand inline). */
#ifndef NDEBUG
static _Thread_local const cp_session *strand_owner;
#define STRAND_BEGIN(s)                                                                            \
  const cp_session *strand_prev_ = strand_owner;                                                   \
  strand_owner = (s)
#define STRAND_END() (strand_owner = strand_prev_)
#define ASSERT_STRAND(s)                                                                           \
  assert(strand_owner == (s) && (atomic_load(&((cp_session *)(s))->strand) & ST_RUN))
#else
#define STRAND_BEGIN(s) ((void)0)
#define STRAND_END() ((void)0)
#define ASSERT_STRAND(s) ((void)0)
#endif
#define ASSERT_SEND_LOCKED(s) ((void)(s), assert(cp__spin_held(&(s)->send_lock)))

/* ---- references ------------------------------------------------------ */

cp_session *cp_session_get(cp_session *s) {
  if (!s)
    return NULL;
  uint32_t was = atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  assert(was > 0); /* a reference is taken only from another one */
  (void)was;
  return s;
}

/* The ring index of position i from the ring's start (cap is a power of two:
 * a mask, not a division - this runs for every buffer queued, sent and freed). */
static inline uint32_t ring_at(const struct sendq *q, uint32_t i) {
  assert(q->cap && !(q->cap & (q->cap - 1)));
  return i & (q->cap - 1);
}

/* A session's send-side state, with its deadline's slot in the timer heap
 * reserved (net_internal.h): NULL if out of memory. */
static struct sendq *sq_new(cp_service *svc) {
  struct sendq *q = mem_calloc(1, sizeof *q);
  if (q && cp__timers_reserve(svc) != 0) {
    mem_free(q);
    q = NULL;
  }
  return q;
}

static void sq_free(cp_service *svc, struct sendq *q) {
  cp__timers_unreserve(svc);
  mem_free(q);
}

/* s->sq, allocated if there is none yet (outside the send lock: the
 * reservation takes the timers' lock); NULL if out of memory. */
static struct sendq *sq_get(cp_session *s) {
  cp__spin_lock(&s->send_lock);
  struct sendq *q = s->sq;
  cp__spin_unlock(&s->send_lock);
  if (q)
    return q;
  struct sendq *mine = sq_new(s->cf->svc);
  if (!mine)
    return NULL;
  cp__spin_lock(&s->send_lock);
  if (!s->sq) {
    s->sq = mine;
    mine = NULL;
  }
  q = s->sq;
  cp__spin_unlock(&s->send_lock);
  if (mine)
    sq_free(s->cf->svc, mine); /* another thread's came first */
  return q;
}

/* Out of line, so that cp_session_put's common path (not the last reference:
 * once per session per broadcast) stays a few instructions with no frame to
 * set up. */
__attribute__((noinline)) static void session_free(cp_session *s) {
  cp_service *svc = s->cf->svc;
  cp_port_disassociate(svc->port, s->fd);
  cp_socket_close(s->fd);
  struct sendq *q = s->sq;
  if (q) {
    for (uint32_t i = 0; i < q->len; i++)
      cp_sendbuf_unref(q->ring[ring_at(q, q->head + i)]);
    ctr_queued_out(svc, q->queued_bytes);
    mem_free(q->ring);
    mem_free(q->iov);
    cp__frame_reset(&q->part);
    sq_free(svc, q);
  }
  if (s->outbound) {
    cp__timers_unreserve(svc); /* its timer's slot (cp__session_new) */
    mem_free(s);               /* its whole struct cp__outbound: the session is first */
  } else {
    cp__slab_free(&svc->sessions, s);
  }
  atomic_fetch_sub(&svc->sessions_alive, 1); /* last: stop may go on to destroy the slab */
}

void cp_session_put(cp_session *s) {
  if (!s)
    return;
  uint32_t was = atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel);
  assert(was > 0); /* never below zero */
  if (was == 1)
    session_free(s);
}

/* Put n references at once (none: nothing is touched). */
static void session_put_n(cp_session *s, uint32_t n) {
  if (!n)
    return;
  uint32_t was = atomic_fetch_sub_explicit(&s->refs, n, memory_order_acq_rel);
  assert(was >= n); /* never below zero */
  if (was == n)
    session_free(s);
}

/* The registry (registry.h) holds sessions through these. */
static void *reg_ref(void *s) {
  return cp_session_get(s);
}
static void reg_unref(void *s) {
  cp_session_put(s);
}
const struct cp__registry_ops cp__session_reg_ops = {reg_ref, reg_unref};

bool cp__session_has_id(void *s, const void *id) {
  return ((cp_session *)s)->id == *(const uint64_t *)id;
}

uint64_t cp_session_id(const cp_session *s) {
  return s ? s->id : 0;
}
cp_service *cp_session_service(const cp_session *s) {
  return s ? s->cf->svc : NULL;
}
void cp_session_set_user(cp_session *s, void *user) {
  if (s)
    s->user = user;
}
void *cp_session_user(const cp_session *s) {
  return s ? s->user : NULL;
}
bool cp_session_connected(const cp_session *s) {
  if (!s)
    return false;
  cp_session *m = (cp_session *)s;
  /* 1: connected; 3: held after a bad header, sends still go; 2: draining
   * after a graceful disconnect (net_internal.h) */
  uint8_t c = atomic_load(&m->connected);
  return (c == CONN_YES || c == CONN_HELD) && !atomic_load(&m->closing);
}

const char *cp_session_peer(const cp_session *s, char *buf, size_t len) {
  if (!buf || !len)
    return buf;
  char host[64] = "?";
  uint16_t port = 0;
  if (s)
    cp__socket_peer(s->fd, host, sizeof host, &port);
  snprintf(buf, len, "%s:%u", host, (unsigned)port);
  return buf;
}

/* ---- the strand ------------------------------------------------------ */

static void process(cp_session *s, uint32_t bits, struct cp__ctr *c);
static void cork(cp_session *s);
static bool uncork(cp_session *s, struct cp__ctr *c);

/* Strand: a reference for a full bank, put at once (see the top of the
 * file). Never the last: the two banked ones are still counted. */
__attribute__((noinline)) static void ref_bank_full(cp_session *s) {
  ASSERT_STRAND(s);
  uint32_t was = atomic_fetch_sub_explicit(&s->refs, 1, memory_order_release);
  assert(was > 2); /* this one and the two banked */
  (void)was;
}

/* Strand: an op's reference, its completion handled, kept for this run -
 * or put at once if the run keeps two already (see the top of the file). */
static void ref_bank(cp_session *s) {
  ASSERT_STRAND(s);
  if (__builtin_expect((s->flags & SF_BANK) == 2 * SF_BANK_ONE, 0)) {
    ref_bank_full(s);
    return;
  }
  assert((s->flags & SF_BANK) < 2 * SF_BANK_ONE); /* two at most: the field holds 3 */
  s->flags = (uint16_t)(s->flags + SF_BANK_ONE);
}

/* Strand: a reference for an op about to start - a banked one if the run
 * holds one, else a new one. A start that fails gives it back (ref_bank). */
static void ref_for_op(cp_session *s) {
  ASSERT_STRAND(s);
  if (s->flags & SF_BANK)
    s->flags = (uint16_t)(s->flags - SF_BANK_ONE);
  else
    cp_session_get(s);
}

/* The caller owns the strand (ST_RUN), `bits` taken already (0: none): run
 * it until it can let go, counting the per-message counters in c (a block
 * only this thread writes: the worker's own, or strand_loop_apart's).
 * Returns the references the run banked, for the caller to put now that the
 * strand is let go. */
static inline __attribute__((always_inline)) uint32_t strand_loop_body(cp_session *s, uint32_t bits,
                                                                       struct cp__ctr *c) {
  STRAND_BEGIN(s);
  for (;;) {
    if (bits)
      process(s, bits, c);
    /* Let go with one CAS: the usual case is that no new bit came meanwhile
     * (a fetch_and first to find nothing would be one more atomic RMW). The
     * bank is emptied before: once the strand is let go, another run may
     * own the flags. (Usually it is empty: the references went to ops.) */
    uint32_t banked = 0;
    if (__builtin_expect((s->flags & SF_BANK) != 0, 0)) {
      banked = (s->flags & SF_BANK) / SF_BANK_ONE;
      s->flags &= (uint16_t)~SF_BANK;
    }
    uint8_t expect = ST_RUN;
    if (atomic_compare_exchange_strong_explicit(&s->strand, &expect, 0, memory_order_acq_rel,
                                                memory_order_acquire)) {
      STRAND_END();
      return banked;
    }
    s->flags = (uint16_t)(s->flags + banked * SF_BANK_ONE); /* still ours */
    bits = atomic_fetch_and_explicit(&s->strand, (uint8_t)ST_RUN, memory_order_acq_rel) & ~ST_RUN;
  }
}

/* strand_loop_body, out of line for all but the completions' entry
 * (strand_run_held), which has it inline. */
__attribute__((noinline)) static uint32_t strand_loop(cp_session *s, uint32_t bits,
                                                      struct cp__ctr *c) {
  return strand_loop_body(s, bits, c);
}

/* strand_loop on a thread that is not one of the service's workers (its
 * port could not take the post): the counters go to a block of the run's
 * own, added to the shared one at the end. */
__attribute__((noinline)) static uint32_t strand_loop_apart(cp_session *s, uint32_t bits) {
  cp_service *svc = s->cf->svc;
  struct cp__ctr mine = {.svc = svc};
  uint32_t banked = strand_loop(s, bits, &mine);
  cp__ctr_flush(svc, &mine);
  return banked;
}

/* strand_run on a thread that is not one of the service's workers: hand
 * the strand to one with a posted completion, or run it here if the port
 * cannot take the post. */
__attribute__((noinline)) static void strand_hand_over(cp_session *s, uint32_t bits) {
  cp_session_get(s); /* the posted run's own: it travels with the post */
  if (bits)
    atomic_fetch_or_explicit(&s->strand, (uint8_t)bits, memory_order_release); /* its to take */
  if (cp_port_post(s->cf->svc->port, s, NULL, NET_POST_STRAND) == 0)
    return;
  /* no post: run it here; the post's reference is the runner's own, and our
   * bits are in the word */
  session_put_n(s, strand_loop_apart(s, 0) + 1);
}

/* The caller owns the strand (ST_RUN), `bits` taken from the word already:
 * run it to the end, with a reference of its own (events may drop the
 * others). Callbacks run only on the service's workers, so a thread of the
 * application (one that calls cp_session_disconnect, or cp_service_stop)
 * hands the strand to a worker with a posted completion instead of running
 * callbacks itself - it may hold locks its callbacks take. */
static void strand_run(cp_session *s, uint32_t bits) {
  struct cp__ctr *c = ctr_mine(s->cf->svc); /* NULL: not a worker of the service */
  if (__builtin_expect(!c, 0)) {
    strand_hand_over(s, bits);
    return;
  }
  cp_session_get(s);
  session_put_n(s, strand_loop(s, bits, c) + 1);
}

/* strand_run for a completion: its op's reference goes to this run (see the
 * top of the file), which then needs none of its own. */
static void strand_run_held(cp_session *s, uint32_t bits) {
  struct cp__ctr *c = ctr_mine(s->cf->svc);
  if (__builtin_expect(!c, 0)) {
    strand_hand_over(s, bits);
    return;
  }
  uint32_t banked = strand_loop_body(s, bits, c);
  if (banked)
    session_put_n(s, banked);
}

void cp__session_on_strand_post(cp_session *s) {
  uint32_t bits =
      atomic_fetch_and_explicit(&s->strand, (uint8_t)ST_RUN, memory_order_acq_rel) & ~ST_RUN;
  struct cp__ctr *c = ctr_mine(s->cf->svc); /* a worker's, as posts run on them */
  uint32_t banked = c ? strand_loop(s, bits, c) : strand_loop_apart(s, bits);
  session_put_n(s, banked + 1); /* and the post's reference */
}

/* Queue events for s: true if this thread is to run them (ST_RUN was
 * clear), with *bits the ones to handle first (0: they are in the word);
 * false if another thread runs the strand and will see them. */
static inline bool strand_take(cp_session *s, uint32_t *bits) {
  uint8_t expect = 0;
  if (atomic_compare_exchange_strong_explicit(&s->strand, &expect, (uint8_t)ST_RUN,
                                              memory_order_acq_rel, memory_order_relaxed))
    return true;           /* ours to run, bits and all */
  assert(expect & ST_RUN); /* not 0: a run has it (the word is 0 without ST_RUN) */
  uint32_t old =
      atomic_fetch_or_explicit(&s->strand, (uint8_t)(*bits | ST_RUN), memory_order_acq_rel);
  *bits = 0;
  return !(old & ST_RUN); /* it let go meanwhile: ours, our bits in the word */
}

/* Queue events for s; run them here unless another thread already is. The
 * caller holds a reference that covers the events, kept until this returns. */
static void strand_signal(cp_session *s, uint32_t bits) {
  if (strand_take(s, &bits))
    strand_run(s, bits);
}

/* ---- creation -------------------------------------------------------- */

cp_session *cp__session_new(cp_service *svc, cp_socket_t fd, const struct cp__sconf *out_cf) {
  cp_session *s;
  if (out_cf) {
    struct cp__outbound *x = mem_calloc(1, sizeof *x);
    if (x && cp__timers_reserve(svc) != 0) {
      mem_free(x);
      x = NULL;
    }
    if (!x)
      return NULL;
    x->cf = *out_cf;
    x->cf.svc = svc;
    s = &x->s;
    s->cf = &x->cf;
    s->outbound = 1;
  } else if (!(s = cp__slab_alloc(&svc->sessions))) {
    return NULL;
  } else {
    s->cf = &svc->conf;
  }
  s->fd = fd;
  s->id = atomic_fetch_add(&next_session_id, 1);
  s->reg_idx = UINT32_MAX;
  atomic_init(&s->refs, 1);        /* the creator's */
  atomic_init(&s->strand, ST_RUN); /* the creator runs the strand until cp__session_start */
  atomic_init(&s->last_active, service_clock(svc));
  cp__spin_init(&s->send_lock);
  if (cp_port_associate(svc->port, fd, s) != 0) {
    if (s->outbound) {
      cp__timers_unreserve(svc);
      mem_free(s);
    } else {
      cp__slab_free(&svc->sessions, s);
    }
    return NULL;
  }
  atomic_fetch_add(&svc->sessions_alive, 1);
  return s;
}

/* ---- outbound sessions' timer ------------------------------------------ */

static struct cp__outbound *outbound_of(cp_session *s) {
  assert(s->outbound);
  return container_of(s, struct cp__outbound, s);
}

/* The timer fell due (on the service's queue): hand it to the strand, where
 * the connect's outcome and the close are decided (ST_TICK). */
static void out_fire(void *arg) {
  cp_session *s = arg;
  strand_signal(s, ST_TICK);
  cp_session_put(s); /* the timer's */
}

/* Strand: (re)start the outbound session's one timer; it holds a reference
 * while pending. Its heap slot is reserved: it fails only once the service is
 * stopping (then the session is being closed anyway) or if it is pending
 * already (a tick that raced a connect's completion). */
static void out_timer_start(cp_session *s, unsigned ms) {
  cp_session_get(s);
  if (cp__timer_start_reserved(&outbound_of(s)->timer, s->cf->svc->sysq, ms, out_fire, s) != 0)
    cp_session_put(s);
}

static void out_timer_cancel(cp_session *s) {
  if (s->outbound && cp_timer_cancel(&outbound_of(s)->timer) == 0)
    cp_session_put(s);
}

/* How often an outbound session with an idle timeout looks at itself (as
 * the service's idle scan does: a quarter of it, within [10 ms, 1 s]). */
static unsigned idle_period(unsigned idle_ms) {
  unsigned p = idle_ms / 4;
  return p < 10 ? 10 : p > 1000 ? 1000 : p;
}

/* Strand: the outbound timer ran out. Still connecting: the connect timed
 * out. Connected: the idle check, and the next one. */
static void out_tick(cp_session *s) {
  ASSERT_STRAND(s);
  if (atomic_load(&s->closing))
    return;
  if (s->flags & SF_CONNECTING) {
    cp__session_close(s, CP_REASON_CONNECT_FAILED); /* cancels the connect op */
    return;
  }
  unsigned idle = outbound_of(s)->cf.idle_timeout_ms;
  if (!idle || !atomic_load(&s->connected))
    return;
  cp__session_check_idle(s, 0);
  if (!atomic_load(&s->closing))
    out_timer_start(s, idle_period(idle));
}

static void post_recv(cp_session *s) {
  ASSERT_STRAND(s);
  if (atomic_load(&s->closing) || (s->flags & SF_EOF))
    return;
  ref_for_op(s);
  int rc = cp_port_recv_pooled(s->cf->svc->port, s->fd, &s->rio);
  if (rc) {
    ref_bank(s);
    cp__session_close(s, CP_REASON_ERROR);
  }
}

/* Announce a connected session; the caller owns the strand (ST_RUN). */
static void announce(cp_session *s) {
  cp_service *svc = s->cf->svc;
  stat_add(s->outbound ? &svc->st.outbound : &svc->st.sessions, 1);
  ASSERT_STRAND(s);
  s->flags |= SF_ANNOUNCED; /* on_disconnected will follow, whatever happens next */
  uint8_t was = atomic_exchange(&s->connected, 1);
  assert(was == 0); /* announced once */
  (void)was;
  const struct cp__sconf *cf = s->cf;
  if (cf->cb.on_connected)
    cf->cb.on_connected(s);
  post_recv(s);
}

void cp__session_start(cp_session *s, bool admitted) {
  /* Accepted: register, announce, then let the strand go. */
  STRAND_BEGIN(s); /* the creator holds the strand (ST_RUN) until strand_run */
  if (admitted)
    s->flags |= SF_ADMITTED;
  int rc = cp__registry_add(session_reg(s), s);
  if (rc) {
    cp__session_close(s, rc == CP_ESHUTDOWN ? CP_REASON_SHUTDOWN : CP_REASON_ERROR);
  } else {
    announce(s);
  }
  STRAND_END();
  strand_run(s, 0); /* events that came while we held the strand */
}

int cp__session_connect(cp_session *s, const struct sockaddr *addr, socklen_t len) {
  STRAND_BEGIN(s); /* the creator holds the strand (ST_RUN) until strand_run */
  int rc = cp__registry_add(session_reg(s), s);
  if (rc == 0) {
    cp_session_get(s);
    s->flags |= SF_CONNECTING;
    rc = cp_port_connect(s->cf->svc->port, s->fd, &s->rio, addr, len);
    if (rc) {
      s->flags &= (uint16_t)~SF_CONNECTING;
      cp_session_put(s);
    }
  }
  if (s->outbound && rc != CP_ESHUTDOWN) {
    s->flags |= SF_OWED; /* connect_to returns 0: one on_disconnected will come */
    if (rc == 0)         /* before the completion is handled: we hold the strand */
      out_timer_start(s, outbound_of(s)->connect_timeout_ms);
  }
  if (rc == CP_ESHUTDOWN) {
    cp__session_close(s, CP_REASON_SHUTDOWN); /* never connected: no callback */
  } else if (rc) {
    if (!s->outbound) /* an outbound one's failure is counted as it ends (finish_close) */
      stat_add(&s->cf->svc->st.connect_failures, 1);
    cp__session_close(s, CP_REASON_CONNECT_FAILED);
  }
  STRAND_END();
  strand_run(s, 0);
  return rc;
}

/* ---- ending ---------------------------------------------------------- */

void cp__session_close(cp_session *s, cp_reason why) {
  /* held after a bad header: however the application or the idle scan ends
   * it, it ends because of the bad header */
  if ((why == CP_REASON_LOCAL || why == CP_REASON_IDLE_TIMEOUT) && session_held(s))
    why = CP_REASON_BAD_PACKET;
  if (atomic_exchange(&s->closing, 1))
    return;
  /* reason is read by the strand after it sees ST_CLOSE (acq_rel on strand). */
  s->reason = (uint8_t)why;
  /* A slow consumer does not read: a FIN would wait behind the bytes it has
   * not taken, in the kernel's memory, for as long as it keeps its window
   * shut. No FIN then: the connection is reset when the socket is closed
   * (session_free), and what was not sent is dropped at once. */
  bool reset = why == CP_REASON_SLOW_CONSUMER && cp__socket_abortive(s->fd) == 0;
  cp_port_cancel(s->cf->svc->port, s->fd);
  cp__socket_shutdown(s->fd, reset ? CP__SHUT_RD : CP_SHUT_RDWR);
  strand_signal(s, ST_CLOSE);
}

/* A graceful disconnect has sent everything: closing now, with bytes from
 * the peer still unread, would make the kernel answer with a reset, and a
 * reset makes the peer's kernel drop what it has not read yet - the very
 * data the drain waited for. So send our FIN, keep reading (and dropping)
 * until the peer's FIN, an error or LINGER_MS, then close. */
#define LINGER_MS 2000

/* Why a lingering session ends: why its drain began (local, or bad_packet). */
static cp_reason linger_reason(cp_session *s) {
  return s->sq ? (cp_reason)s->sq->drain_reason : CP_REASON_LOCAL;
}

/* Start the session's deadline (sq->timer, its heap slot reserved): fn(s)
 * runs after ms with a reference of its own, unless finish_close cancels it
 * first. 0, or CP_EBUSY / CP_ESHUTDOWN (never for lack of memory). */
static int deadline_start(cp_session *s, unsigned ms, cp_job_fn fn) {
  cp_session_get(s); /* the timer's */
  int rc = cp__timer_start_reserved(&s->sq->timer, s->cf->svc->sysq, ms, fn, s);
  if (rc)
    cp_session_put(s);
  return rc;
}

/* Cancel the deadline if it is pending (its reference goes with it). */
static void deadline_cancel(cp_session *s) {
  cp__spin_lock(&s->send_lock);
  struct sendq *q = s->sq;
  cp__spin_unlock(&s->send_lock);
  if (q && cp_timer_cancel(&q->timer) == 0)
    cp_session_put(s);
}

static void linger_end(void *arg) {
  cp_session *s = arg;
  cp__session_close(s, linger_reason(s));
  cp_session_put(s); /* the timer's */
}

/* Strand: the drain of a graceful disconnect is done. The deadline holds a
 * reference, but the session's end (the peer's FIN, usually at once)
 * cancels it, so the descriptor is not kept for LINGER_MS. It allocates
 * nothing: an out-of-memory cannot turn the linger into a reset. */
static void linger(cp_session *s) {
  ASSERT_STRAND(s);
  s->flags |= SF_LINGER;
  if (cp__socket_shutdown(s->fd, CP_SHUT_WR) == 0 && deadline_start(s, LINGER_MS, linger_end) == 0)
    return; /* the next recv (in flight, or posted after this send) sees the end */
  cp__session_close(s, linger_reason(s));
}

/* Close once what is queued is sent (then linger), or at once if nothing is. */
static void drain_then_close(cp_session *s, cp_reason why) {
  /* Held after a bad header: the grace is over. Cancelled first, so that the
   * timer is free for the linger when the drain ends. */
  if (session_held(s))
    deadline_cancel(s);
  cp__spin_lock(&s->send_lock);
  uint8_t state = atomic_load(&s->connected);
  if (state == CONN_HELD)
    why = CP_REASON_BAD_PACKET; /* the end the application was to decide */
  else if (state == CONN_DRAINING && s->sq)
    why = (cp_reason)s->sq->drain_reason; /* again: the first drain's reason */
  /* in flight, or queued behind a cork: either way a send completion or
   * the uncork will come and see drain_close */
  bool pending = s->sq && (s->sq->busy || s->sq->len);
  if (pending && !s->sq->drain_close) {
    s->sq->drain_close = true;
    s->sq->drain_reason = (uint8_t)why;
  }
  /* Nothing to send: linger all the same (the strand starts it), since
   * closing now with bytes of the peer unread would reset the connection
   * and destroy what it has not read yet - unless it is ending anyway. */
  bool linger_now =
      !pending && s->sq && (state == CONN_YES || state == CONN_HELD) && !atomic_load(&s->closing);
  if (linger_now)
    s->sq->drain_reason = (uint8_t)why;
  if (pending || linger_now) {
    /* no more packets are delivered, no more sends queued */
    uint8_t was = atomic_exchange(&s->connected, CONN_DRAINING);
    assert(was == CONN_YES || was == CONN_DRAINING || was == CONN_HELD); /* it was connected */
    (void)was;
  }
  cp__spin_unlock(&s->send_lock);
  if (linger_now)
    strand_signal(s, ST_LINGER); /* the caller's reference covers it */
  else if (!pending && state != CONN_DRAINING)
    cp__session_close(s, why); /* else the send completion closes it once the queue is empty */
}

/* Strand: a graceful disconnect found nothing to send: our FIN, then read to
 * the peer's (as after a drain). */
static void linger_idle(cp_session *s) {
  ASSERT_STRAND(s);
  if (atomic_load(&s->closing) || (s->flags & SF_LINGER))
    return;
  if (s->flags & SF_EOF) {
    cp__session_close(s, linger_reason(s)); /* the peer is gone already */
    return;
  }
  linger(s);
  if (s->flags & SF_RECV_AFTER_SEND) { /* held after a bad header: no recv in flight */
    s->flags &= (uint16_t)~SF_RECV_AFTER_SEND;
    post_recv(s); /* not if closing */
  }
}

/* The grace after a bad header ran out: end the session as the application
 * would have (what it queued goes out first). */
static void grace_end(void *arg) {
  cp_session *s = arg;
  if (session_held(s))
    drain_then_close(s, CP_REASON_BAD_PACKET);
  cp_session_put(s); /* the timer's */
}

/* Strand: a bad header after the packets just delivered. With on_bad_packet,
 * the application may keep the session to finish its answers: it is held -
 * no more receives, sends still go - until it disconnects it or the grace
 * runs out. Otherwise (or out of memory: no sendq) the replies queued so
 * far go out, then it closes. */
static void bad_header(cp_session *s) {
  ASSERT_STRAND(s);
  bool (*keep)(cp_session *) = s->cf->cb.on_bad_packet;
  if (keep && s->sq && deadline_start(s, s->cf->svc->o.bad_packet_grace_ms, grace_end) == 0) {
    cp__spin_lock(&s->send_lock);
    uint8_t expect = CONN_YES;
    bool held = !atomic_load(&s->closing) &&
                atomic_compare_exchange_strong(&s->connected, &expect, CONN_HELD);
    cp__spin_unlock(&s->send_lock);
    if (held && keep(s))
      return; /* the application disconnects it (or grace_end does) */
    if (!held)
      deadline_cancel(s);
  }
  drain_then_close(s, CP_REASON_BAD_PACKET); /* releases a hold (and its deadline) */
}

void cp_session_disconnect(cp_session *s, bool graceful) {
  if (!s)
    return;
  if (graceful)
    drain_then_close(s, CP_REASON_LOCAL);
  else
    cp__session_close(s, CP_REASON_LOCAL);
}

/* Strand: the session is over. Drop what is queued (the buffers of a send in
 * flight stay until it completes), tell the application, unregister. */
static void finish_close(cp_session *s) {
  ASSERT_STRAND(s);
  assert(atomic_load(&s->closing) && !(s->flags & SF_FINISHED)); /* once, after the close */
  s->flags |= SF_FINISHED;
  cp_service *svc = s->cf->svc;
  struct sendq *q = s->sq;
  cp_sendbuf *drop[64];
  for (;;) {
    uint32_t n = 0;
    cp__spin_lock(&s->send_lock);
    while (q && q->len > q->inflight && n < 64) {
      uint32_t last = ring_at(q, q->head + q->len - 1);
      cp_sendbuf *b = q->ring[last];
      q->len--;
      q->queued_bytes -= cp_sendbuf_len(b);
      ctr_queued_out(svc, cp_sendbuf_len(b));
      drop[n++] = b;
    }
    if (q) {
      q->open = NULL; /* dropped, or (in flight) closed already */
      q->drain_close = false;
    }
    cp__spin_unlock(&s->send_lock);
    for (uint32_t i = 0; i < n; i++)
      cp_sendbuf_unref(drop[i]);
    if (n < 64)
      break;
  }
  deadline_cancel(s);  /* a grace or linger still pending: its reference goes */
  out_timer_cancel(s); /* an outbound one's connect timeout or idle check */
  if (s->flags & SF_PART) {
    cp__frame_reset(&s->sq->part);
    s->flags &= (uint16_t)~SF_PART;
  }
  bool announced = s->flags & SF_ANNOUNCED;
  cp_reason why = (cp_reason)s->reason;
  if (s->outbound && !announced && why == CP_REASON_CONNECT_FAILED)
    stat_add(&svc->st.outbound_failures, 1); /* refused, timed out, or failed at once */
  const struct cp__sconf *cf = s->cf;
  if ((announced || why == CP_REASON_CONNECT_FAILED || (s->flags & SF_OWED)) &&
      cf->cb.on_disconnected)
    cf->cb.on_disconnected(s, why);
  /* The order the counters promise (net.h): the session leaves the
   * sessions gauge (and gives its max_sessions slot back) once
   * on_disconnected has returned, and only then is it counted in
   * disconnects. So whoever sees the count reach N also sees the N callbacks
   * done (it was counted when the close began, and a test that waited for
   * the count then checked its callbacks found one still running:
   * test_net_graceful_linger on io_uring, once in ~300 runs under load), and
   * sees the gauge without them (the gauge used to go down after the count:
   * test_net_disconnect_count read sessions 1 right after the count moved,
   * once under TSan on epoll). */
  if (announced)
    atomic_fetch_sub_explicit(s->outbound ? &svc->st.outbound : &svc->st.sessions, 1,
                              memory_order_release);
  if (s->flags & SF_ADMITTED)
    cp__listener_unadmit(svc);
  atomic_fetch_add_explicit(&svc->st.disc[why], 1, memory_order_release);
  cp__registry_remove(session_reg(s), s);
}

void cp__session_check_idle(cp_session *s, uint64_t now_ms) {
  (void)now_ms;
  uint32_t idle =
      service_clock(s->cf->svc) - atomic_load_explicit(&s->last_active, memory_order_relaxed);
  if (idle >= s->cf->idle_timeout_ms && idle < UINT32_MAX / 2)
    cp__session_close(s, CP_REASON_IDLE_TIMEOUT);
}

/* ---- receiving ------------------------------------------------------- */

/* A packet came: the session is active now. Only a session with an idle
 * timeout is ever checked (its conf never changes), so only it reads the clock
 * (a vDSO call, 0.4% of the server's CPU in ping-pong). */
static inline void touch(cp_session *s) {
  if (s->cf->idle_timeout_ms)
    atomic_store_explicit(&s->last_active, service_clock(s->cf->svc), memory_order_relaxed);
}

static inline uint16_t le16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

/* framing.c hands over each complete packet; false stops it (closing, or
 * draining after a graceful disconnect: the packets after it are dropped). */
/* Packets delivered by the consume() running on this thread (see there). */
static _Thread_local uint32_t delivered;

static bool deliver(void *ctx, const uint8_t *p, uint16_t size) {
  cp_session *s = ctx;
  void (*on_packet)(cp_session *, const cp_packet *) = s->cf->cb.on_packet;
  cp_packet pkt = {.id = le16(p + 2),
                   .size = size,
                   .data = p,
                   .body = p + CP_PACKET_HEADER,
                   .body_len = size - CP_PACKET_HEADER};
  delivered++;
  if (on_packet)
    on_packet(s, &pkt);
  return !atomic_load(&s->closing) && !session_draining(s);
}

/* After a receive's framing, with a packet's beginning left over (part) or
 * one kept before (q: sq with SF_PART): keep part in the sendq (allocated
 * for it if the session never sent), or forget it. FRAME_NOMEM if there is
 * no memory to keep it. */
static frame_status keep_part(cp_session *s, struct sendq *q, struct frame_part *part,
                              frame_status r) {
  if (!part) {
    q->part = NULL;
    s->flags &= (uint16_t)~SF_PART;
    return r;
  }
  if (!q && !(q = sq_get(s))) {
    cp__frame_reset(&part);
    return FRAME_NOMEM;
  }
  q->part = part;
  s->flags |= SF_PART;
  return r;
}

/* Frame the bytes of one receive (see framing.h). The packets it delivers
 * are counted once, and the session is active (a whole packet came) as of
 * this receive: one clock read and one shared counter add per receive, not
 * per packet (a chat client gets dozens in one). A callback may consume
 * another session's bytes on this thread meanwhile: the count is saved. */
static void consume(cp_session *s, const uint8_t *p, size_t n, struct cp__ctr *c) {
  uint32_t outer = delivered;
  delivered = 0;
  /* The incomplete packet is in the sendq, read only when SF_PART says
   * there is one: the strand set it, after its own sq_get, so s->sq is
   * known here without the send lock. */
  struct sendq *q = s->flags & SF_PART ? s->sq : NULL;
  struct frame_part *part = q ? q->part : NULL;
  frame_status r = cp__frame_feed(&part, p, n, s->cf->max_packet, deliver, s);
  if (part || q)
    r = keep_part(s, q, part, r);
  if (delivered) {
    ctr_bump(c, CTR_PACKETS_IN, delivered, memory_order_relaxed);
    touch(s);
  }
  delivered = outer;
  switch (r) {
  case FRAME_OK:
  case FRAME_STOP:
    break;
  case FRAME_BAD:
    /* The replies to the packets before the bad header go out first. */
    bad_header(s);
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
  case CP_ECONNRESET:
  case CP_EPIPE:
  case CP_ETIMEDOUT:
  case CP_EHOSTUNREACH:
  case CP_ENETUNREACH:
  case CP_ECONNABORTED:
    return CP_REASON_RESET;
  case CP_ECANCELED:
    return CP_REASON_LOCAL;
  default:
    return CP_REASON_ERROR;
  }
}

/* Strand: a client's connect finished. */
static void connected(cp_session *s, int32_t res) {
  s->flags &= (uint16_t)~SF_CONNECTING;
  if (atomic_load(&s->closing))
    return;
  if (res == 0) {
    if (s->outbound) {
      out_timer_cancel(s); /* the connect timeout (a tick already on its way finds it done) */
      atomic_store_explicit(&s->last_active, service_clock(s->cf->svc), memory_order_relaxed);
      if (outbound_of(s)->cf.idle_timeout_ms)
        out_timer_start(s, idle_period(outbound_of(s)->cf.idle_timeout_ms));
    } else {
      stat_add(&s->cf->svc->st.connects, 1);
    }
    announce(s);
  } else {
    if (!s->outbound) /* counted as it ends (finish_close) */
      stat_add(&s->cf->svc->st.connect_failures, 1);
    cp__session_close(s, CP_REASON_CONNECT_FAILED);
  }
}

/* Strand: n bytes came (a pooled buffer, given back here). */
static void received(cp_session *s, void *buf, size_t n, struct cp__ctr *c) {
  cp_service *svc = s->cf->svc;
  ctr_bump(c, CTR_BYTES_IN, n, memory_order_relaxed);
  bool sending = false;
  /* draining: the bytes are dropped; receiving goes on only to see the peer go */
  if (!atomic_load(&s->closing) && !session_draining(s)) {
    cork(s);
    const struct cp__sconf *cf = s->cf;
    if (cf->raw) {
      ctr_bump(c, CTR_PACKETS_IN, 1, memory_order_relaxed);
      touch(s);
      if (cf->cb.on_raw)
        cf->cb.on_raw(s, buf, n);
    } else {
      consume(s, buf, n, c);
    }
    sending = uncork(s, c);
  }
  cp_port_buf_release(svc->port, buf);
  /* Read after write: if a send is in flight (typically the reply to what
   * just came in), the next recv goes in when it completes. By then the
   * peer has usually answered, so the recv finds data at once instead of
   * arming a wait for every message; and a peer that does not read what
   * we send is not read from either (it can only stall itself). Held after
   * a bad header: none until the hold ends in a drain (then the linger's
   * reads, after the last send). */
  if (!sending && !session_held(s))
    post_recv(s); /* not if closing */
  else
    s->flags |= SF_RECV_AFTER_SEND;
}

/* Strand: the peer's FIN. It sends no more but may still read. What is
 * queued to it (the replies to its last packets may take several sends)
 * goes out first; the session ends as peer_closed when the queue is empty. */
static void peer_finished(cp_session *s) {
  s->flags |= SF_EOF;
  cp__spin_lock(&s->send_lock);
  bool pending = s->sq && (s->sq->busy || s->sq->len);
  if (pending && !s->sq->drain_close) {
    s->sq->drain_close = true;
    s->sq->drain_reason = CP_REASON_PEER_CLOSED;
  }
  cp__spin_unlock(&s->send_lock);
  if (!pending)
    cp__session_close(s, s->flags & SF_LINGER ? linger_reason(s) : CP_REASON_PEER_CLOSED);
}

static void handle_recv(cp_session *s, struct cp__ctr *c) {
  ref_bank(s); /* the op's reference: to the next op, or put at the run's end */
  struct recv_stash st;
  memcpy(&st, &s->rio, sizeof st); /* cp__session_on_completion's */
  int32_t res = st.res;
  void *buf = st.buf;
  if (s->flags & SF_CONNECTING)
    connected(s, res);
  else if (res > 0)
    received(s, buf, (size_t)res, c);
  else if (res == 0 && !atomic_load(&s->closing))
    peer_finished(s);
  else /* an error, or the end of a session already closing */
    cp__session_close(s, s->flags & SF_LINGER ? linger_reason(s) : reason_of(res));
}

/* ---- sending --------------------------------------------------------- */

/* Build the next gathered send from the queue head (send lock held). */
static void build_batch(cp_session *s, struct sendq *q) {
  ASSERT_SEND_LOCKED(s);
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
    cp_sendbuf *b = q->ring[ring_at(q, q->head + i)];
    v[i] = cp_buf_init(cp_sendbuf_data(b), cp_sendbuf_len(b));
    bytes += v[i].len;
  }
  if (k == q->len)
    q->open = NULL; /* its bytes are in flight now */
  q->inflight = k;
  q->inflight_bytes = bytes;
  q->busy = true;
}

/* The caller counts it (CTR_SENDS). */
static int start_send(cp_session *s) {
  struct sendq *q = s->sq;
  cp_buf *v = q->inflight == 1 ? &q->one : q->iov;
  return cp_port_send(s->cf->svc->port, s->fd, &q->op, v, (int)q->inflight);
}

static bool ring_push(cp_session *s, struct sendq *q, cp_sendbuf *b) {
  ASSERT_SEND_LOCKED(s);
  if (q->len == q->cap) {
    uint32_t cap = q->cap ? q->cap * 2 : 8;
    cp_sendbuf **r = mem_alloc(cap * sizeof *r);
    if (!r)
      return false;
    for (uint32_t i = 0; i < q->len; i++)
      r[i] = q->ring[ring_at(q, q->head + i)];
    mem_free(q->ring);
    q->ring = r;
    q->cap = cap;
    q->head = 0;
  }
  q->ring[ring_at(q, q->head + q->len)] = b;
  q->len++;
  q->open = NULL; /* b follows it: nothing more may go into it */
  return true;
}

/* Start the batch just built (q->busy set under the lock), counted, with
 * a reference the caller took for it. */
static void send_start(cp_session *s) {
  int rc = start_send(s);
  if (rc) {
    s->sq->res = rc;
    strand_signal(s, ST_SEND); /* handled like a failed send */
  }
}

/* send_start from any thread (not the strand's bank or counter block). */
__attribute__((noinline)) static void send_start_any(cp_session *s) {
  cp_session_get(s);
  ctr_add(s->cf->svc, CTR_SENDS, 1);
  send_start(s);
}

/* Strand: while one receive is framed, the replies its packets produce are
 * queued and go out together in one gathered send when it is done (cork),
 * instead of the first going alone and the rest after it. */
static void cork(cp_session *s) {
  ASSERT_STRAND(s);
  cp__spin_lock(&s->send_lock);
  struct sendq *q = s->sq;
  if (q) { /* the common case: one lock round trip */
    q->corked = true;
    cp__spin_unlock(&s->send_lock);
    return;
  }
  cp__spin_unlock(&s->send_lock);
  if (!(q = sq_get(s))) /* NULL: no cork, sends start at once */
    return;
  cp__spin_lock(&s->send_lock);
  q->corked = true;
  cp__spin_unlock(&s->send_lock);
}

/* Returns whether a send is in flight afterwards (for read after write). */
static bool uncork(cp_session *s, struct cp__ctr *c) {
  ASSERT_STRAND(s);
  struct sendq *q = s->sq;
  if (!q)
    return false;
  cp__spin_lock(&s->send_lock);
  q->corked = false;
  bool start = q->len && !q->busy && !atomic_load(&s->closing);
  if (start)
    build_batch(s, q);
  bool busy = q->busy;
  cp__spin_unlock(&s->send_lock);
  if (start) {
    ref_for_op(s);
    ctr_bump(c, CTR_SENDS, 1, memory_order_relaxed);
    send_start(s);
  }
  return busy;
}

/* Queue b (len bytes) on s, with a reference the caller took for it, and
 * start a send if none is in flight: 0, or an error (the reference is the
 * caller's again). The service's queued_bytes is the caller's to have raised
 * by len beforehand, and packets_out to count. */
/* s's send queue, locked, once the session may take len more bytes: its
 * sendq allocated, open for sends, and under send_queue_max. Otherwise NULL,
 * the lock released, and the error in *rc (a slow consumer is disconnected). */
static struct sendq *sq_lock_room(cp_session *s, size_t len, int *rc) {
  if (atomic_load(&s->closing) || !atomic_load(&s->connected)) {
    *rc = CP_ENOTCONN;
    return NULL;
  }
  cp__spin_lock(&s->send_lock);
  if (!s->sq) { /* the first send: allocated outside the lock (sq_get) */
    cp__spin_unlock(&s->send_lock);
    if (!sq_get(s)) {
      *rc = CP_ENOMEM;
      return NULL;
    }
    cp__spin_lock(&s->send_lock);
  }
  if (atomic_load(&s->closing) || session_draining(s)) {
    cp__spin_unlock(&s->send_lock);
    *rc = CP_ENOTCONN;
    return NULL;
  }
  struct sendq *q = s->sq;
  if (q->queued_bytes + len > s->cf->send_queue_max) {
    cp__spin_unlock(&s->send_lock);
    cp__session_close(s, CP_REASON_SLOW_CONSUMER);
    *rc = CP_ENOBUFS;
    return NULL;
  }
  return q;
}

/* len more bytes are in q (locked by sq_lock_room): count them, start a send
 * if none is in flight or corked, and release the lock. */
static void sq_queued_unlock(cp_session *s, struct sendq *q, size_t len) {
  ASSERT_SEND_LOCKED(s);
  q->queued_bytes += len;
  bool start = !q->busy && !q->corked;
  if (start)
    build_batch(s, q);
  cp__spin_unlock(&s->send_lock);
  if (start)
    send_start_any(s);
}

static int send_queued(cp_session *s, cp_sendbuf *b, size_t len) {
  int rc;
  struct sendq *q = sq_lock_room(s, len, &rc);
  if (!q)
    return rc;
  if (!ring_push(s, q, b)) {
    cp__spin_unlock(&s->send_lock);
    return CP_ENOMEM;
  }
  sq_queued_unlock(s, q, len);
  return 0;
}

int cp_session_send(cp_session *s, cp_sendbuf *b) {
  if (!s || !b)
    return CP_EINVAL;
  size_t len = cp_sendbuf_len(b);
  if (!len)
    return CP_EINVAL;
  cp_service *svc = s->cf->svc;
  /* counted in before the queue holds it, so that the send's release (on
   * whichever thread) always comes after (struct cp__ctr) */
  struct cp__ctr *mine = ctr_mine(svc);
  ctr_add_to(svc, mine, CTR_Q_IN, len, memory_order_relaxed);
  int rc = send_queued(s, cp_sendbuf_ref(b), len);
  if (rc) {
    ctr_add_to(svc, mine, CTR_Q_OUT, len, memory_order_release);
    cp_sendbuf_unref(b); /* not the last: the caller holds one */
  } else {
    ctr_add_to(svc, mine, CTR_PACKETS_OUT, 1, memory_order_relaxed);
  }
  return rc;
}

/* An open buffer's capacity (at least the bytes it is made for): room for
 * the replies to 16 pipelined 64-byte packets. */
#define OPEN_CAP 1024u

int cp_session_send_copy(cp_session *s, const void *data, size_t len) {
  if (!s || !data || !len)
    return CP_EINVAL;
  cp_service *svc = s->cf->svc;
  struct cp__ctr *mine = ctr_mine(svc);
  ctr_add_to(svc, mine, CTR_Q_IN, len, memory_order_relaxed); /* as in cp_session_send */
  cp_sendbuf *fresh = NULL;
  int rc = 0;
  for (;;) {
    struct sendq *q = sq_lock_room(s, len, &rc);
    if (!q)
      break;
    if (q->open && cp__sendbuf_append(q->open, data, len)) {
      sq_queued_unlock(s, q, len);
      break;
    }
    if (!fresh && len <= OPEN_CAP) /* usually: no second lock round trip */
      fresh = cp__sendbuf_alloc_nowait(OPEN_CAP);
    if (fresh) {
      if (!ring_push(s, q, fresh)) {
        cp__spin_unlock(&s->send_lock);
        rc = CP_ENOMEM;
        break;
      }
      bool fits = cp__sendbuf_append(fresh, data, len);
      assert(fits); /* made for at least len */
      (void)fits;
      q->open = fresh;
      fresh = NULL; /* the ring's now */
      sq_queued_unlock(s, q, len);
      break;
    }
    /* No open buffer with room, and none to be had without blocking: make
     * one outside the lock, then look again (another thread may have opened
     * one meanwhile). */
    cp__spin_unlock(&s->send_lock);
    fresh = cp_sendbuf_alloc(len > OPEN_CAP ? len : OPEN_CAP);
    if (!fresh) {
      rc = CP_ENOMEM;
      break;
    }
  }
  cp_sendbuf_unref(fresh); /* not needed after all, or the send failed */
  if (rc)
    ctr_add_to(svc, mine, CTR_Q_OUT, len, memory_order_release);
  else
    ctr_add_to(svc, mine, CTR_PACKETS_OUT, 1, memory_order_relaxed);
  return rc;
}

/* The end of a run of cp_session_send_many on svc: `pre` sessions were counted in
 * queued_bytes in advance, `done` of them took the packet. */
static void many_counted(cp_service *svc, size_t len, size_t pre, size_t done) {
  if (pre > done)
    ctr_queued_out(svc, (pre - done) * len);
  ctr_add(svc, CTR_PACKETS_OUT, done);
}

/* A broadcast (a chat to a room of 2,000) is this loop: per session only its
 * send lock; the buffer's references and the service's counters are taken
 * once for the whole array, and the sessions a few places ahead are
 * prefetched (each is a cache miss otherwise, and the lock's atomic waits
 * for it). */
size_t cp_session_send_many(cp_session *const *v, size_t n, cp_sendbuf *b) {
  size_t ok = 0;
  if (!v || !b || !n)
    return 0;
  size_t len = cp_sendbuf_len(b);
  if (!len)
    return 0;
  cp__sendbuf_ref_n(b, n);
  size_t unused = 0, pre = 0, done = 0;
  cp_service *svc = NULL;
  const struct cp__sconf *cf = NULL;
  for (size_t i = 0; i < n; i++) {
    if (i + 4 < n && v[i + 4]) {
      __builtin_prefetch(&v[i + 4]->cf);
      __builtin_prefetch(&v[i + 4]->send_lock, 1);
    }
    cp_session *s = v[i];
    if (!s) {
      unused++;
      continue;
    }
    if (s->cf != cf && (cf = s->cf)->svc != svc) { /* inbound ones share their cf */
      if (svc)
        many_counted(svc, len, pre, done);
      svc = cf->svc;
      pre = n - i;
      done = 0;
      ctr_add(svc, CTR_Q_IN, pre * len);
    }
    int rc = send_queued(s, b, len);
    if (rc == 0) {
      ok++;
      done++;
    } else {
      unused++;
      if (rc == CP_ENOMEM)
        cp__session_close(s, CP_REASON_ERROR); /* it must not miss a packet and go on */
    }
  }
  if (svc)
    many_counted(svc, len, pre, done);
  if (unused)
    cp__sendbuf_unref_n(b, unused); /* never the last: the caller holds one */
  return ok;
}

size_t cp_session_send_queued(const cp_session *s) {
  if (!s)
    return 0;
  cp_session *m = (cp_session *)s;
  cp__spin_lock(&m->send_lock);
  size_t n = m->sq ? m->sq->queued_bytes : 0;
  cp__spin_unlock(&m->send_lock);
  return n;
}

/* What comes after a send. */
enum send_next { SN_IDLE, SN_AGAIN, SN_DRAINED };

/* Strand, send lock held: build the next batch if more is queued (SN_AGAIN),
 * or see that a drain (graceful disconnect, the peer's FIN) is complete
 * (SN_DRAINED, with its reason in *why). */
static enum send_next decide_next(cp_session *s, bool failed, cp_reason *why) {
  ASSERT_SEND_LOCKED(s);
  struct sendq *q = s->sq;
  if (failed || atomic_load(&s->closing)) {
    q->busy = false;
    return SN_IDLE;
  }
  if (q->len) {
    build_batch(s, q);
    return SN_AGAIN;
  }
  q->busy = false;
  if (!q->drain_close)
    return SN_IDLE;
  *why = (cp_reason)q->drain_reason;
  return SN_DRAINED;
}

/* Strand: the send finished; drop its buffers (unreferenced outside the
 * lock, in chunks) and return how many bytes it carried. With next != NULL
 * it also decides what comes next (decide_next) in the same critical
 * section as the last chunk: one lock round trip for a send of up to 64
 * buffers. */
static size_t release_sent(cp_session *s, enum send_next *next, bool failed, cp_reason *why,
                           struct cp__ctr *c) {
  ASSERT_STRAND(s);
  struct sendq *q = s->sq;
  cp_sendbuf *done[64];
  cp__spin_lock(&s->send_lock);
  size_t bytes = q->inflight_bytes;
  q->queued_bytes -= bytes;
  ctr_bump(c, CTR_Q_OUT, bytes, memory_order_release); /* struct cp__ctr */
  uint32_t k = q->inflight;
  q->inflight = 0;
  q->inflight_bytes = 0;
  for (;;) {
    uint32_t n = 0;
    while (k && n < 64) {
      done[n++] = q->ring[q->head];
      q->head = ring_at(q, q->head + 1);
      q->len--;
      k--;
    }
    if (!k && next)
      *next = decide_next(s, failed, why);
    cp__spin_unlock(&s->send_lock);
    for (uint32_t i = 0; i < n; i++)
      cp_sendbuf_unref(done[i]);
    if (!k)
      return bytes;
    cp__spin_lock(&s->send_lock);
  }
}

/* Strand: decide_next under its own lock round trip (after on_sent ran). */
static enum send_next next_send(cp_session *s, bool failed, cp_reason *why) {
  ASSERT_STRAND(s);
  cp__spin_lock(&s->send_lock);
  enum send_next next = decide_next(s, failed, why);
  cp__spin_unlock(&s->send_lock);
  return next;
}

/* Strand: start the batch next_send built. */
static void send_again(cp_session *s, struct cp__ctr *c) {
  ref_for_op(s);
  ctr_bump(c, CTR_SENDS, 1, memory_order_relaxed);
  if (start_send(s) == 0)
    return;
  ref_bank(s);
  cp__spin_lock(&s->send_lock);
  s->sq->busy = false;
  cp__spin_unlock(&s->send_lock);
  cp__session_close(s, CP_REASON_ERROR);
}

static void handle_send(cp_session *s, struct cp__ctr *c) {
  ref_bank(s); /* the op's reference: to the next op, or put at the run's end */
  int32_t res = s->sq->res;
  cp_reason why = CP_REASON_LOCAL;
  enum send_next next = SN_IDLE;
  /* Without on_sent nothing runs between the release and the decision: take
   * both in one lock round trip. With it, decide after it (it may send). */
  void (*on_sent)(cp_session *, size_t) = s->cf->cb.on_sent;
  bool with_cb = on_sent != NULL;
  size_t bytes = release_sent(s, with_cb ? NULL : &next, res < 0, &why, c);
  if (res >= 0) {
    ctr_bump(c, CTR_BYTES_OUT, bytes, memory_order_relaxed); /* they left, closing or not */
    if (with_cb && !atomic_load(&s->closing))
      on_sent(s, bytes);
  }
  if (with_cb)
    next = next_send(s, res < 0, &why);
  if (res < 0)
    cp__session_close(s, reason_of(res));
  /* our graceful disconnect, or a bad header's: FIN, then read to the peer's */
  if (next == SN_DRAINED && (why == CP_REASON_LOCAL || why == CP_REASON_BAD_PACKET) &&
      !(s->flags & SF_EOF))
    linger(s);
  else if (next == SN_DRAINED)
    cp__session_close(s, why);
  if ((s->flags & SF_RECV_AFTER_SEND) && !session_held(s)) {
    s->flags &= (uint16_t)~SF_RECV_AFTER_SEND;
    post_recv(s); /* not if closing */
  }
  if (next == SN_AGAIN)
    send_again(s, c);
}

/* ---- dispatch -------------------------------------------------------- */

static void process(cp_session *s, uint32_t bits, struct cp__ctr *c) {
  ASSERT_STRAND(s);
  if (bits & ST_RECV)
    handle_recv(s, c);
  if (bits & ST_SEND)
    handle_send(s, c);
  if (bits & ST_LINGER)
    linger_idle(s);
  if (bits & ST_TICK)
    out_tick(s);
  if (bits & ST_CLOSE)
    finish_close(s);
}

void cp__session_on_completion(cp_session *s, const cp_completion *c) {
  if (c->kind == CP_OP_SEND) {
    s->sq->res = c->result < INT32_MIN ? INT32_MIN : (int32_t)c->result;
    uint32_t bits = ST_SEND; /* with the op's reference */
    if (strand_take(s, &bits))
      strand_run_held(s, bits);
  } else {
    /* The op is ours until the strand starts the next recv: keep the result in it. */
    struct recv_stash st = {.buf = c->buf,
                            .res = c->result > INT32_MAX ? INT32_MAX : (int32_t)c->result};
    memcpy(&s->rio, &st, sizeof st);
    uint32_t bits = ST_RECV; /* with the op's reference */
    if (strand_take(s, &bits))
      strand_run_held(s, bits);
  }
}

/* ---- the session slab ------------------------------------------------ */

void cp__sessions_init(cp_service *svc) {
  cp__slab_init(&svc->sessions, sizeof(cp_session), 64); /* 10 KiB chunks */
}

void cp__sessions_destroy(cp_service *svc) {
  cp__slab_destroy(&svc->sessions);
}
