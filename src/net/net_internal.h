/*
 * net_internal.h - what the engine's files share. The engine sees the port
 * only through its public API (cport/port.h, cport/socket.h) and the few
 * socket calls of port/socket_internal.h: no system socket call of its own.
 */
#ifndef CPORT_NET_INTERNAL_H
#define CPORT_NET_INTERNAL_H

#include "cport/net.h"

#include "common/heap.h"
#include "common/log.h"
#include "common/mem.h"
#include "net/framing.h"
#include "net/registry.h"
#include "net/slab.h"

#include "platform/platform.h"
#include "port/socket_internal.h"
#include <assert.h>
#include <stdatomic.h>

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Completions are routed by the port's own op kind and the key: accepts go
 * to the listener, posts to the job queue that is their key, timeouts to the
 * service timer, and everything else to the session that is the fd's key. So
 * the engine's cp_ops need no type tag of their own. */

/* Session strand bits (see net.h). */
enum {
  ST_RUN = 1u << 0,
  ST_RECV = 1u << 1,    /* recv (or connect) completion, its result in s->rio (recv_stash) */
  ST_SEND = 1u << 2,    /* send completion in sendq.res */
  ST_CLOSE = 1u << 3,   /* the session began to close: call on_disconnected */
  ST_CONNECT = 1u << 4, /* connected: call on_connected, post the first recv */
  ST_LINGER = 1u << 5,  /* a graceful disconnect with nothing to send: linger */
  ST_TICK = 1u << 6,    /* an outbound session's timer: connect timeout, idle check */
};

/* Send-side state, allocated on a session's first send (idle sessions that
 * never sent hold none of it). Guarded by the session's send lock. */
struct sendq {
  cp_op op;
  int32_t res;       /* the finished send's result, for the strand */
  cp_sendbuf **ring; /* queued buffers, oldest first */
  uint32_t head, len, cap;
  uint32_t inflight;   /* buffers in the send in flight (the first `inflight` of ring) */
  size_t queued_bytes; /* everything in ring, in flight included */
  size_t inflight_bytes;
  cp_buf *iov; /* for gathered sends; one inline entry for single ones */
  uint32_t iov_cap;
  cp_buf one;
  /* The open buffer (cp_session_send_copy): the ring's last, allocated by the
   * engine, not in flight and referenced only by the ring, so more replies'
   * bytes may be appended to it. NULL once anything follows it, it goes into
   * a send, or it is dropped. */
  cp_sendbuf *open;
  bool busy;            /* a send is in flight */
  bool corked;          /* the strand is framing a receive: queue now, send when it is done */
  bool drain_close;     /* disconnect once empty (graceful, or the peer's FIN) */
  uint8_t drain_reason; /* with drain_close: CP_REASON_LOCAL, _PEER_CLOSED or _BAD_PACKET */
  /* The session's one deadline: the grace after a bad header the application
   * kept (on_bad_packet), then the linger after a graceful disconnect. Its
   * slot in the timer heap is reserved with the sendq, so starting it needs
   * no memory; while it is pending it holds a reference, and finish_close
   * cancels it. */
  cp_timer timer;
  /* An incomplete packet (framing.h), kept here, not in the session: the
   * strand alone touches it, with SF_PART set while it is not NULL (so a
   * receive reads s->sq only then, and never takes the send lock for it). */
  struct frame_part *part;
};

/* Session flags, strand only. */
enum {
  SF_OWED = 1, /* an outbound session whose connect began: on_disconnected is owed, connected
                  or not (a stop while it connects ends it as CP_REASON_SHUTDOWN) */
  SF_ANNOUNCED = 2,
  SF_CONNECTING = 4,
  SF_ADMITTED = 8,
  SF_RECV_AFTER_SEND = 16, /* the next recv waits for the send in flight to finish */
  SF_EOF = 32,             /* the peer's FIN came: no more receives */
  SF_LINGER = 64,          /* graceful disconnect done: our FIN sent, reading to the peer's */
  SF_FINISHED = 128,       /* finish_close ran (once) */
  SF_PART = 256,           /* sq->part holds an incomplete packet (sq exists) */
  /* Bits 9-10: the op references the strand's run holds (session.c, "the
   * strand"): of ops whose completions it handled, not yet handed to an op
   * it started nor put. At most 2 (what a run hands on: a receive and a
   * send); a run may be given more - sends started outside the strand take
   * references of their own - and puts those at once (ref_bank). */
  SF_BANK_ONE = 512,
  SF_BANK = 3 * SF_BANK_ONE,
};

/* Kept small on purpose: an idle connection costs this (from the service's
 * slab of sessions: exactly these 160 bytes on Linux, no allocator header), its fd's
 * entry in the port (32) and a registry slot (8): issue 13, <= 200 bytes in
 * all. What only some sessions need lives elsewhere: the send side and an
 * incomplete packet in the sendq (allocated on the first send or the first
 * split packet), an outbound session's options and timer in its struct
 * cp__outbound. */
struct cp_session {
  /* The pooled recv (and the client's connect). Between its completion and
   * the next start the op is ours (port.h: it needs no initialisation), and
   * it holds that completion's result for the strand (struct recv_stash). */
  cp_op rio;
  /* What dispatch reads (callbacks, mode, limits) and the service (cf->svc):
   * the service's own block for inbound and client sessions, the outbound
   * session's for cp_service_connect_to - one pointer, as svc was, and one
   * load less for a callback (s->cf->cb.x, not s->svc->o.callbacks.x). */
  const struct cp__sconf *cf;
  void *user;
  uint64_t id;
  struct sendq *sq; /* allocated on the first send or the first split packet */
  cp_socket_t fd;
  _Atomic uint32_t refs;
  uint32_t reg_idx;             /* index in the registry, or UINT32_MAX */
  _Atomic uint32_t last_active; /* ms since the service's epoch (wraps; compared by difference) */
  _Atomic uint8_t strand;       /* ST_* (seven bits) */
  cp__spin send_lock;
  _Atomic uint8_t closing;   /* set once: the session began to end */
  _Atomic uint8_t connected; /* 1 once on_connected is running or ran; 2 once a graceful
                                disconnect drains (no more packets or sends; under the send
                                lock); 3 held after a bad header (on_bad_packet: no more
                                receives, sends still go). Folded in here: an idle
                                session's size counts */
  uint8_t reason;            /* why it ended; written once, by cp__session_close */
  uint8_t outbound;          /* set at creation, never changed: a cp_service_connect_to
                                session (a struct cp__outbound) */
  uint16_t flags;            /* SF_* */
};
_Static_assert(sizeof(cp_session) == (sizeof(cp_socket_t) == 4 ? 160 : 168),
               "an idle session is 160 bytes on Linux (issue 13); Windows' SOCKET is 8");

/* A finished recv's (or connect's) result, from its completion to the strand
 * that handles it, kept in the bytes of the idle s->rio (memcpy in and out:
 * the port's own view of those bytes is struct op). */
struct recv_stash {
  void *buf;
  int32_t res;
};
_Static_assert(sizeof(struct recv_stash) <= sizeof(cp_op), "the recv stash must fit in cp_op");

/* What a session's dispatch reads: its service, callbacks, mode and limits.
 * Inbound and client sessions share the service's (cp_service.conf); an
 * outbound one has its own in its struct cp__outbound. Never changed once
 * set. */
struct cp__sconf {
  cp_service *svc;
  cp_session_callbacks cb;
  size_t send_queue_max;
  unsigned idle_timeout_ms; /* 0: never */
  uint16_t max_packet;
  bool raw;
};

/* An outbound session (cp_service_connect_to): the session first, then what
 * only outbound sessions need - so the idle inbound session pays nothing. */
struct cp__outbound {
  cp_session s;
  struct cp__sconf cf;
  unsigned connect_timeout_ms;
  /* The connect timeout, then (idle_timeout_ms) the idle checks: one-shot,
   * its heap slot reserved at creation; holds a reference while pending. */
  cp_timer timer;
};

/* jobq.c: a job in a queue's list - a cp_job's contents, or the engine's own. */
enum { JOB_USER = 0, JOB_ALLOC = 1 };
struct job {
  struct job *next;
  cp_job_fn fn;
  void *arg;
  cp_job_fn drop;         /* JOB_ALLOC: frees arg if the job never runs (stop, destroy) */
  _Atomic uint8_t queued; /* in a queue's list, not yet taken to run */
  uint8_t kind;           /* JOB_USER: the caller's, never touched after fn; JOB_ALLOC:
                             a block of the engine's that starts with the job, freed after fn */
};
_Static_assert(sizeof(struct job) <= sizeof(cp_job), "cp_job too small");

/* timers.c: a cp_timer's contents. */
struct timer {
  struct job job; /* first: a JOB_ALLOC timer is freed through its job */
  cp_jobq *q;
  cp_service *svc;
  struct cp__heap_node node; /* in the service's heap while it waits (timers' lock) */
  uint64_t period_ms;        /* 0: one-shot */
};
_Static_assert(sizeof(struct timer) <= sizeof(cp_timer), "cp_timer too small");

/* timers.c's state in the service: one heap, one port timeout op armed for
 * the earliest entry. Only timers.c touches it. */
struct cp__timers {
  cp__mutex mu;
  struct cp__heap heap; /* of struct timer, by due time then start order */
  uint64_t seq;
  cp_op op;
  bool running; /* the service started: the port op may be armed */
  bool armed, cancelling, stopped;
  uint64_t armed_due;
  uint32_t reserved; /* heap slots held for reserved timers (cp__timers_reserve) */
};

/* jobq.c's state in the service: queues whose run could not be posted (the
 * port out of memory), run by the next worker that comes by. Only jobq.c
 * touches it. */
struct cp__jobs {
  cp__mutex mu;
  cp_jobq *overflow; /* linked through cp_jobq.overflow_next */
  _Atomic bool any;
};

/* listener.c's state in the service. Only listener.c touches it. */
struct cp__listener {
  cp_socket_t fd;        /* CP_INVALID_SOCKET: none; written under mu */
  _Atomic uint16_t port; /* read from any thread (cp_service_listen_port) */
  struct acceptor *acceptors;
  _Atomic unsigned posted;   /* accepts in the port or in a back-off */
  _Atomic uint64_t admitted; /* server sessions holding a max_sessions slot */
  cp__mutex mu;              /* orders starting an accept against stop's cancel */
  bool stopped;              /* under mu: cp__listener_stop ran; no accept starts */
};

/* The counters (cp_service_stats) of per-session events: each module adds to
 * the ones of its own events with stat_add; only cp_service_get_stats reads
 * them. The per-message ones are in struct cp__ctr. */
struct cp__stats {
  _Atomic uint64_t accepts, refused, connects, connect_failures, accept_errors;
  _Atomic uint64_t disc[CP_REASON_COUNT];
  _Atomic uint64_t sessions;                    /* announced, not yet ended */
  _Atomic uint64_t outbound, outbound_failures; /* cp_service_connect_to's */
};

/* The per-message counters (issue 13): a block per worker, a cache line of
 * its own, written by that worker alone with a plain load and store (no
 * locked instruction, no line shared with another worker), and one shared
 * block for every other thread (an application thread's cp_session_send, a
 * worker of another service), added to atomically. cp_service_get_stats sums
 * the blocks. The queued-bytes gauge is two counts that only grow, the bytes
 * that went into send queues (CTR_Q_IN) and those that left them
 * (CTR_Q_OUT): a byte leaves after it went in (the send lock orders the two,
 * on whichever threads), the leaving is stored with release, and the reader
 * sums every CTR_Q_OUT (acquire) before any CTR_Q_IN, so it never sees more
 * bytes leave than go in: +n on one worker and -n on another sum to 0. */
enum {
  CTR_BYTES_IN,
  CTR_BYTES_OUT,
  CTR_PACKETS_IN,
  CTR_PACKETS_OUT,
  CTR_SENDS,
  CTR_Q_IN,
  CTR_Q_OUT,
  CTR_COUNT
};
struct cp__ctr {
  _Alignas(64) _Atomic uint64_t v[CTR_COUNT];
  cp_service *svc; /* whose block it is (set at creation, never changed) */
};
_Static_assert(sizeof(struct cp__ctr) == 64, "a counter block is one cache line");

/* The service (service.c): options, port, workers, start and stop. Its parts
 * belong to their modules, which alone write them. */
struct cp_service {
  cp_service_options o;
  struct cp__sconf conf; /* the inbound (and client) sessions' dispatch, from o */
  cp_port *port;
  struct sockaddr_storage addr; /* to listen on, or to connect to */
  socklen_t addrlen;
  cp__thread *workers;
  unsigned nworkers;
  /* Workers wait at this gate until start succeeded (GATE_GO) or failed
   * (GATE_ABORT: they end without touching the port). */
  cp__mutex gate_mu;
  cp__cond gate_cv;
  int gate;
  _Atomic bool started, stopping, stopped;
  uint64_t epoch_ms; /* sessions' activity times count from here */

  struct cp__listener listener;    /* listener.c */
  struct cp__registry reg;         /* registry.c: the connected sessions */
  struct cp__registry out_reg;     /* the outbound ones (cp_service_connect_to): apart, so
                                      broadcast and the idle scan never see them and stop
                                      closes them last */
  cp__mutex accept_mu;             /* serialises cp_service_stop_accepting */
  bool accept_stopped;             /* under accept_mu */
  _Atomic uint64_t sessions_alive; /* session.c: allocated, not yet freed */
  struct cp__slab sessions;        /* session.c: where inbound and client sessions live */
  struct cp__timers timers;        /* timers.c */
  struct cp__jobs jobs;            /* jobq.c */
  cp_jobq *sysq;                   /* the service's own jobs: idle scans, accept back-off, linger */
  cp_timer idle_timer;             /* service.c: the idle scan, every idle_timeout_ms / 4 */
  struct cp__stats st;             /* every module adds; cp_service_get_stats reads */
  struct cp__ctr *ctr;             /* o.threads workers' blocks, then the shared one */
  struct cp__ctr *ctr_shared;      /* &ctr[o.threads] */
  void *ctr_mem;                   /* what was allocated for ctr (aligned inside it) */
};

/* The workers are on their way out: nothing posted now would run. */
static inline bool cp__service_stopped(const cp_service *svc) {
  return atomic_load(&((cp_service *)svc)->stopped);
}

enum { CONN_NO = 0, CONN_YES = 1, CONN_DRAINING = 2, CONN_HELD = 3 };

static inline bool session_draining(const cp_session *s) {
  return atomic_load(&((cp_session *)s)->connected) == CONN_DRAINING;
}
static inline bool session_held(const cp_session *s) {
  return atomic_load(&((cp_session *)s)->connected) == CONN_HELD;
}

/* The registry s is kept in while connected. */
static inline struct cp__registry *session_reg(cp_session *s) {
  return s->outbound ? &s->cf->svc->out_reg : &s->cf->svc->reg;
}

static inline void stat_add(_Atomic uint64_t *c, uint64_t v) {
  atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* The counter block of the service whose worker this thread is (set by the
 * workers), or NULL. */
extern _Thread_local struct cp__ctr *cp__net_ctr;

/* This thread's own block of svc (it is one of svc's workers), or NULL. */
static inline struct cp__ctr *ctr_mine(const cp_service *svc) {
  struct cp__ctr *c = cp__net_ctr;
  return c && c->svc == svc ? c : NULL;
}
/* Add v to counter `which` (CTR_*) of a block no other thread writes (a
 * worker's own, or a strand run's private one). `order` is
 * memory_order_release for CTR_Q_OUT (see struct cp__ctr), relaxed for the
 * others. */
static inline void ctr_bump(struct cp__ctr *c, unsigned which, uint64_t v, memory_order order) {
  _Atomic uint64_t *p = &c->v[which];
  atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + v, order);
}
/* Add v to counter `which` of svc: in mine (ctr_mine), or else in the
 * shared block. */
static inline void ctr_add_to(cp_service *svc, struct cp__ctr *mine, unsigned which, uint64_t v,
                              memory_order order) {
  if (mine)
    ctr_bump(mine, which, v, order);
  else
    atomic_fetch_add_explicit(&svc->ctr_shared->v[which], v, order);
}
static inline void ctr_add(cp_service *svc, unsigned which, uint64_t v) {
  assert(which != CTR_Q_OUT); /* ctr_queued_out: it must be a release */
  ctr_add_to(svc, ctr_mine(svc), which, v, memory_order_relaxed);
}
/* n bytes left svc's send queues (sent, dropped, or never queued after all). */
static inline void ctr_queued_out(cp_service *svc, uint64_t n) {
  ctr_add_to(svc, ctr_mine(svc), CTR_Q_OUT, n, memory_order_release);
}
/* service.c: add a strand run's private block (one made on a thread that is
 * not svc's worker) to the shared one. */
void cp__ctr_flush(cp_service *svc, const struct cp__ctr *priv);
/* service.c: the bytes in svc's send queues now (the gauge, summed). */
uint64_t cp__ctr_queued(const cp_service *svc);

uint64_t cp__net_now_ms(void); /* timers.c: the engine's one clock (ms, monotonic) */
/* Now, in the 32-bit clock of session activity times. */
static inline uint32_t service_clock(const cp_service *svc) {
  return (uint32_t)(cp__net_now_ms() - svc->epoch_ms);
}

/* session.c */
/* The session slab's life: from the service's creation to its destruction
 * (every session freed by then). */
void cp__sessions_init(cp_service *svc);
void cp__sessions_destroy(cp_service *svc);
void cp__session_on_completion(cp_session *s, const cp_completion *c);
/* A posted completion whose result is NET_POST_STRAND: run s's strand. */
#define NET_POST_STRAND 1
void cp__session_on_strand_post(cp_session *s);
/* The service whose worker this thread is, or NULL (set by the workers). */
extern _Thread_local cp_service *cp__net_worker_of;
/* out_cf: an outbound session (a struct cp__outbound) with these options -
 * the caller sets its user and connect_timeout_ms before the connect; NULL:
 * an inbound or client session. NULL if out of memory (its timer's heap slot
 * included). */
cp_session *cp__session_new(cp_service *svc, cp_socket_t fd, const struct cp__sconf *out_cf);
int cp__session_connect(cp_session *s, const struct sockaddr *addr, socklen_t len);
/* Accepted: register, announce (on_connected), post the first receive;
 * admitted: it holds a max_sessions slot, given back when it ends. */
void cp__session_start(cp_session *s, bool admitted);
void cp__session_close(cp_session *s, cp_reason why);
void cp__session_check_idle(cp_session *s, uint64_t now_ms);
/* The registry's view of a session (references), and an id matcher. */
extern const struct cp__registry_ops cp__session_reg_ops;
bool cp__session_has_id(void *session, const void *id /* const uint64_t * */);

/* listener.c */
struct acceptor;
void cp__listener_init(cp_service *svc);
void cp__listener_fini(cp_service *svc);
/* Bind, listen, associate, allocate the accepts: nothing is posted yet.
 * 0 or an error, with nothing left open. */
int cp__listener_open(cp_service *svc);
/* Post the accepts: 0, or the error of the first (nothing posted then). */
int cp__listener_arm(cp_service *svc);
void cp__listener_on_accept(cp_service *svc, const cp_completion *c);
/* Stop accepting (cancel the posted accepts). */
void cp__listener_stop(cp_service *svc);
/* Accepts still in the port or in a back-off (stop waits for 0). */
unsigned cp__listener_pending(const cp_service *svc);
/* Close the socket and free the accepts (none pending). */
void cp__listener_close(cp_service *svc);
uint16_t cp__listener_port(const cp_service *svc);
/* A server session ends: give its max_sessions slot back. */
void cp__listener_unadmit(cp_service *svc);

/* sendbuf.c: free the chunks pooled for reuse, after letting go of the
 * buffers the calling thread keeps and of its buffer count (tests count every
 * byte). */
void cp__sendbuf_trim(void);
/* sendbuf.c: cp_sendbuf_alloc(cap) if it can be had without blocking (a
 * buffer this thread keeps, or room in its current chunk), else NULL: safe
 * under a spin lock. */
cp_sendbuf *cp__sendbuf_alloc_nowait(size_t cap);
/* sendbuf.c: n references more / fewer (never the last) in one atomic op. */
void cp__sendbuf_ref_n(cp_sendbuf *b, size_t n);
void cp__sendbuf_unref_n(cp_sendbuf *b, size_t n);
/* sendbuf.c: append len bytes to b if they fit in its capacity (true), else
 * leave it as it is (false). The caller makes sure nobody else sees b. */
bool cp__sendbuf_append(cp_sendbuf *b, const void *data, size_t len);

/* jobq.c */
void cp__jobs_init(cp_service *svc);
cp_service *cp__jobq_service(const cp_jobq *q);
void cp__jobs_destroy(cp_service *svc);
void cp__jobq_on_run(cp_jobq *q);
/* Worker: run the queues whose run the port had no room for. */
void cp__jobs_run_overflow(cp_service *svc);
/* Append j to q and schedule q's run: 0, or CP_ESHUTDOWN (the port is closed:
 * j is not queued). Never fails for memory. */
int cp__jobq_push(cp_jobq *q, struct job *j);
/* Take j out of q's list if it is there, not yet run: true if it was. */
bool cp__jobq_unlink(cp_jobq *q, struct job *j);
/* A job that will never run: drop(arg) and free a JOB_ALLOC one. */
void cp__job_drop(struct job *j);

/* timers.c */
void cp__timers_init(cp_service *svc);
void cp__timer_on_fire(cp_service *svc, const cp_completion *c);
/* The service started: arm the port op for the earliest timer (until then
 * timers wait in the heap and nothing of them is in the port). */
void cp__timers_run(cp_service *svc);
/* Stop: no timer fires any more; waits for the armed port op to come back. */
void cp__timers_stop(cp_service *svc);
/* Destroy: drops every pending timer (an owned one's arg is dropped). */
void cp__timers_destroy(cp_service *svc);
/* Drop q's pending timers (its destroy). */
void cp__timers_forget(cp_service *svc, cp_jobq *q);
/* A one-shot timer the engine owns: drop(arg) runs instead of fn if it never
 * runs (stop, destroy), so arg is never leaked. 0, CP_ENOMEM or CP_ESHUTDOWN. */
int cp__timer_post_owned(cp_jobq *q, uint64_t delay_ms, cp_job_fn fn, cp_job_fn drop, void *arg);
/* Hold a slot in the heap for one timer (0 or CP_ENOMEM), so that starting
 * it with cp__timer_start_reserved never fails for memory; give it back
 * with cp__timers_unreserve once the timer is idle for good. */
int cp__timers_reserve(cp_service *svc);
void cp__timers_unreserve(cp_service *svc);
/* cp_timer_start, one-shot, for a timer whose owner holds a reservation:
 * 0, CP_EBUSY or CP_ESHUTDOWN, never CP_ENOMEM. */
int cp__timer_start_reserved(cp_timer *t, cp_jobq *q, uint64_t delay_ms, cp_job_fn fn, void *arg);

#endif /* CPORT_NET_INTERNAL_H */
