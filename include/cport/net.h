/*
 * cport/net.h - the server engine on the completion port.
 *
 * What IOCP game servers call their ServerCore, in C: a service (server or
 * client) owns a port and a pool of worker threads; a listener keeps accepts
 * posted; sessions are reference counted and frame packets; send buffers are
 * reference counted and shared; job queues run shared state one job at a time.
 *
 * Threads. Every callback runs on a worker thread of the service. Callbacks
 * of one session never run at the same time: each session has a lock-free
 * "strand" - a worker that takes one of the session's completions sets a
 * pending bit and only runs the session's handlers if no other worker is
 * running them already; the running worker keeps going until no bit is left.
 * So no worker ever blocks on another session's lock, different sessions run
 * in parallel on every worker, and one session's callbacks are serial and in
 * order. Callbacks may call any function here except cp_service_stop() and
 * cp_service_destroy().
 *
 * Lifetime. A session is reference counted. The service holds one reference
 * while the session is connected, every operation in flight holds one, and
 * the application may hold more (cp_session_get/put). Memory goes with the
 * last reference, so a session may be dropped, or disconnected, at any moment
 * with I/O in flight: no freed memory is ever touched. After on_disconnected
 * a session still accepts calls (sends fail with -ENOTCONN) until its last
 * reference is put.
 *
 * Releasing a reference held by shared state (a room on a job queue) must
 * not fail, or the room keeps a dangling pointer or stop waits forever. So
 * post the release with a job you own, which needs no memory:
 *
 *   struct member { cp_session *s; cp_job leave; ... };   // zeroed at join
 *   static void leave(void *arg) {                         // on the room's queue
 *     struct member *m = arg;
 *     room_remove(m); cp_session_put(m->s); free(m);       // the job may go with it
 *   }
 *   static void on_disconnected(cp_session *s, cp_reason why) {
 *     struct member *m = cp_session_user(s);
 *     cp_jobq_post_job(room_q, &m->leave, leave, m);       // cannot fail here
 *   }
 *
 * (examples/chat_relay.c does this in full, out of memory included.)
 *
 * Receiving. An idle session holds no receive buffer: it waits with a pooled
 * receive, and only an incomplete packet is copied into the session. A
 * session reads after it writes: while a send of its is in flight, its next
 * receive waits for that send to finish (so a request-reply session finds
 * the next request already there instead of arming a wait per message, and a
 * peer that stops reading what it is sent is not read from either: if it
 * keeps sending meanwhile, no packet of it completes, so idle_timeout_ms
 * applies; size send_queue_max and idle_timeout_ms together).
 *
 * Errors are negative codes, as in cport/port.h. NULL: a function given a
 * NULL object returns -EINVAL (those returning an int), NULL, 0 or false, or
 * does nothing (the void ones); none crashes or blocks on it.
 */
#ifndef CPORT_NET_H
#define CPORT_NET_H

#include "cport/export.h"
#include "cport/port.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cp_service cp_service;
typedef struct cp_session cp_session;
typedef struct cp_sendbuf cp_sendbuf;
typedef struct cp_jobq cp_jobq;

/* Why a session ended; passed to on_disconnected exactly once. */
typedef enum cp_reason {
  CP_REASON_PEER_CLOSED = 0, /* the peer closed its side (recv returned 0); what was
                                queued to it is sent first (it may still read; one
                                that never does waits for idle_timeout_ms) */
  CP_REASON_RESET,           /* the connection was reset or broke (ECONNRESET, EPIPE, ...) */
  CP_REASON_LOCAL,           /* cp_session_disconnect() */
  CP_REASON_BAD_PACKET,      /* a header with size < 4 or over max_packet */
  CP_REASON_SLOW_CONSUMER,   /* queued send bytes passed send_queue_max; the connection is
                              * reset (what it did not read is dropped at once, so a reader
                              * that stops reading holds no socket memory on the server) */
  CP_REASON_IDLE_TIMEOUT,    /* no complete packet (raw: no byte) for idle_timeout_ms */
  CP_REASON_SHUTDOWN,        /* cp_service_stop() */
  CP_REASON_CONNECT_FAILED,  /* client: the connect failed */
  CP_REASON_ERROR,           /* any other error (out of memory, ...) */
  CP_REASON_COUNT
} cp_reason;

/* A short name for a reason ("peer_closed", "bad_packet", ...). Static string. */
CP_API const char *cp_reason_name(cp_reason r);

/* Packet framing: a little-endian header {uint16 size; uint16 id}, size
 * counting the 4 header bytes, then size - 4 bytes of body. */
#define CP_PACKET_HEADER 4u

/* One received packet. The memory is the engine's and valid only during the
 * on_packet call: copy what you keep. */
typedef struct cp_packet {
  uint16_t id;         /* from the header */
  uint16_t size;       /* from the header: the whole packet, header included */
  const uint8_t *data; /* the whole packet, header first */
  const uint8_t *body; /* data + 4 */
  size_t body_len;     /* size - 4 */
} cp_packet;

/* Session callbacks. Any may be NULL. See the header comment for threads. */
typedef struct cp_session_callbacks {
  /* The session is connected (accepted, or a client's connect succeeded). */
  void (*on_connected)(cp_session *s);
  /* Framed mode: one complete packet. */
  void (*on_packet)(cp_session *s, const cp_packet *pkt);
  /* Raw mode: bytes as they arrived, valid only during the call. */
  void (*on_raw)(cp_session *s, const void *data, size_t len);
  /* A send finished: `bytes` more are with the kernel (a gathered send may
   * cover several cp_session_send calls). */
  void (*on_sent)(cp_session *s, size_t bytes);
  /* The session is over; called exactly once. The session's memory stays
   * valid while references are held. */
  void (*on_disconnected)(cp_session *s, cp_reason why);
  /*
   * Framed mode, optional: a bad header came (size < 4 or over max_packet),
   * after every complete packet before it was given to on_packet. NULL, or
   * false returned: the session ends as it does without this callback - what
   * is queued is sent, then it closes as CP_REASON_BAD_PACKET. Return true if
   * answers to those packets are still to come (from a job queue, say): the
   * engine reads nothing more from the peer (the rest of its bytes are never
   * looked at), sends still work, and you call cp_session_disconnect(s, true)
   * once the last answer is queued. The session then ends as
   * CP_REASON_BAD_PACKET (whichever disconnect ends it, the idle timeout
   * included; not a reset or a stop), after what was queued went out. If you
   * have not disconnected it within bad_packet_grace_ms, the engine does.
   * Called on the session's strand, like on_packet; at most once.
   */
  bool (*on_bad_packet)(cp_session *s);
} cp_session_callbacks;

typedef enum cp_service_kind { CP_SERVICE_SERVER = 0, CP_SERVICE_CLIENT = 1 } cp_service_kind;

/* Options for cp_service_create(). Zero means "default" for every number. */
typedef struct cp_service_options {
  cp_service_kind kind;
  const char *host;             /* server: address to listen on; client: to connect to.
                                   IPv4 or IPv6 literal; default "127.0.0.1" */
  uint16_t port;                /* server: 0 picks a free port (see cp_service_port) */
  cp_port_options port_opts;    /* backend, queue sizes, receive buffer pool */
  unsigned threads;             /* workers; default: CPU count. With 1, the port is made
                                   CP_PORT_ONE_WAITER (cport/port.h). */
  unsigned accepts;             /* server: accepts kept posted; default 64 */
  unsigned backlog;             /* server: listen backlog; default 4096 */
  unsigned max_sessions;        /* server: refuse connections above this; default unlimited */
  unsigned client_sessions;     /* client: sessions cp_service_start opens; default 1 */
  bool raw;                     /* no framing: on_raw gets the bytes */
  uint16_t max_packet;          /* largest packet accepted, header included; default 16384 */
  size_t send_queue_max;        /* bytes queued per session before it is a slow consumer;
                                   default 4 MiB */
  unsigned idle_timeout_ms;     /* close sessions idle this long; 0: never */
  unsigned bad_packet_grace_ms; /* with callbacks.on_bad_packet: how long the application
                                   may take to disconnect a session it kept after a bad
                                   header before the engine does it (gracefully);
                                   default 5000 */
  cp_session_callbacks callbacks;
  void *user; /* for the application: cp_service_user() */
} cp_service_options;

/* Counters, readable from any thread at any time without stopping anything. */
typedef struct cp_service_stats {
  uint64_t sessions; /* connected now: a session leaves this gauge once its
                        on_disconnected has returned, before it is counted in
                        disconnects (so one snapshot never has it in both) */
  uint64_t accepts;  /* connections accepted (and kept); counted once the session has
                        started, which may be after another worker has ended it */
  uint64_t refused;  /* connections closed at once: max_sessions reached */
  uint64_t connects; /* client: connects that succeeded */
  uint64_t connect_failures;
  uint64_t accept_errors; /* failed accepts (EMFILE, ENFILE, ...) */
  uint64_t bytes_in, bytes_out;
  uint64_t packets_in;                   /* framed packets (raw mode: receives) */
  uint64_t packets_out;                  /* cp_session_send calls that were queued */
  uint64_t sends;                        /* vectored sends made (packets_out / sends = gathering) */
  uint64_t disconnects[CP_REASON_COUNT]; /* sessions ended, by reason; counted once
                                           on_disconnected has returned */
  uint64_t send_queue_bytes;             /* bytes queued in all sessions right now (a gauge) */
  uint64_t outbound;                     /* cp_service_connect_to sessions connected now (a gauge;
                                            not in sessions) */
  uint64_t outbound_failures; /* cp_service_connect_to connects that failed or timed out */
} cp_service_stats;

/*
 * Create a service (nothing runs until cp_service_start). Copies opts.
 * Returns 0 and stores it in *out, -EINVAL for NULL or bad options, -ENOMEM,
 * or the port's error (-ENODEV for a forced backend that is unavailable).
 * Any thread.
 */
CP_API int cp_service_create(cp_service **out, const cp_service_options *opts);

/*
 * Start: server: bind, listen and post the accepts; client: open
 * client_sessions connections; start the workers. All or nothing: returns 0,
 * or an error (-EADDRINUSE, -ENOMEM, ...) with nothing started - no worker,
 * no listening socket, no connection, no timer armed - and the service as it
 * was, so it may be started again. -EALREADY once started, -ESHUTDOWN once
 * stopped, -EINVAL for NULL. (A client connect that fails after the start
 * succeeded is reported by on_disconnected, CP_REASON_CONNECT_FAILED.) Any
 * thread.
 */
CP_API int cp_service_start(cp_service *svc);

/*
 * Stop: stop accepting; let queued sends drain for up to drain_ms; disconnect
 * every session (reason CP_REASON_SHUTDOWN) - the inbound (and client) ones
 * first, then, once each of their on_disconnected has returned, the outbound
 * ones (cp_service_connect_to), so those may still be used meanwhile; wait
 * until every session is gone (each on_disconnected has returned and every reference is put); stop
 * the workers. It blocks until the application has put every reference it
 * holds - put them in on_disconnected, or in a job it posts from there (it
 * says so every 5 s while it waits, as a CP_LOG_WARN message: cport/log.h).
 * A referenced session keeps its socket open until its last put.
 * Idempotent; NULL is a no-op; a service never started is just marked
 * stopped. Any thread except the service's workers (a callback or a job
 * would wait for itself).
 */
CP_API void cp_service_stop(cp_service *svc, unsigned drain_ms);

/*
 * Client service: open one more session to the service's address - to grow
 * the pool, or to reconnect from on_disconnected. The outcome arrives as
 * on_connected, or on_disconnected with CP_REASON_CONNECT_FAILED. Returns 0,
 * -EINVAL (NULL, a server, or not started), -ESHUTDOWN once stopping,
 * -ENOMEM, or socket()'s error. Any thread, callbacks included.
 */
CP_API int cp_service_connect(cp_service *svc);

/*
 * Options for cp_service_connect_to(): one outbound session with its own
 * callbacks and mode, on any started service (a server's included - a game
 * server's connection to its database or to Redis runs on the same port and
 * workers as its players). Zero means "default" for every number.
 */
typedef struct cp_connect_options {
  const char *host;               /* IPv4 or IPv6 literal; required */
  uint16_t port;                  /* required (not 0) */
  bool raw;                       /* no framing: on_raw gets the bytes */
  uint16_t max_packet;            /* framed: largest packet accepted; default 16384 */
  size_t send_queue_max;          /* default: the service's */
  unsigned idle_timeout_ms;       /* 0: never (not the service's: an outbound link may be
                                     legitimately quiet, e.g. a subscriber) */
  unsigned connect_timeout_ms;    /* a connect not done by then fails
                                     (CP_REASON_CONNECT_FAILED); default 5000 */
  cp_session_callbacks callbacks; /* this session's, not the service's */
  void *user;                     /* cp_session_user(), set before the connect starts */
} cp_connect_options;

/*
 * Open an outbound session to o->host:o->port on svc (server or client,
 * started). It is the application's, not a player: never counted in
 * max_sessions, accepts, connects or sessions (but in `outbound`; its end in
 * disconnects), never in cp_service_broadcast nor in the service's idle scan;
 * its callbacks, mode and limits are o's (the service's are never called for
 * it; bad_packet_grace_ms is the service's). The outcome arrives as
 * o->callbacks.on_connected, or on_disconnected with CP_REASON_CONNECT_FAILED
 * (refused, failed at once, or not connected within connect_timeout_ms; then
 * counted in outbound_failures). Once it returned 0, on_disconnected runs
 * exactly once, connected or not (CP_REASON_SHUTDOWN if the service stops
 * while it connects): free the user's state there. With out non-NULL, *out
 * gets a reference the caller must put (cp_session_put; cp_service_stop
 * waits for it) - to send to it or disconnect it later; the session is valid
 * from return, sends fail with -ENOTCONN until on_connected. Returns 0,
 * -EINVAL (NULL, no host, port 0, a host that is not an IP literal, max_packet
 * under 4, not started), -ESHUTDOWN once stopping, -ENOMEM, or socket()'s
 * error; nothing was started then, no callback comes and *out is NULL.
 * cp_service_stop disconnects outbound sessions last, once every inbound
 * session's on_disconnected has returned (CP_REASON_SHUTDOWN). Any thread,
 * callbacks included.
 */
CP_API int cp_service_connect_to(cp_service *svc, const cp_connect_options *o, cp_session **out);

/*
 * Server: close the listening socket and stop accepting (a connect to the
 * port is refused from return on; cp_service_listen_port says 0); sessions
 * already connected, outbound ones and job queues go on until
 * cp_service_stop. For a shutdown in steps (stop taking players, let them
 * leave over a link that must stay up, then stop). 0, -EINVAL (NULL, not a
 * started server, or called on one of svc's workers), or -EALREADY the
 * second time. Any thread except svc's workers (it waits for the accepts in
 * flight to come back).
 */
CP_API int cp_service_stop_accepting(cp_service *svc);

/* Stop if needed, then free the service and everything it owns. NULL is a
 * no-op; once only (the service is gone after it). */
CP_API void cp_service_destroy(cp_service *svc);

/* Snapshot of the counters (all 0 for a NULL svc; a NULL out is ignored).
 * Any thread. */
CP_API void cp_service_get_stats(const cp_service *svc, cp_service_stats *out);

/* The port the service runs on: to read its backend or its counters. Its
 * workers own every completion on it, so start no ops of your own there (use
 * a job queue, or a port of your own). */
CP_API cp_port *cp_service_port(const cp_service *svc);
/* The listening port, once started (useful with port 0); 0 before, after a
 * failed start or cp_service_stop_accepting, or for NULL. */
CP_API uint16_t cp_service_listen_port(const cp_service *svc);
CP_API void *cp_service_user(const cp_service *svc);

/*
 * Send buf to every connected session (broadcast). Takes no ownership of the
 * caller's reference. Returns how many sessions it was queued to (0 for a
 * NULL svc or buf). It needs
 * no memory of its own (out of memory, it falls back to scratch kept with the
 * registry) and, like cp_session_send_many, disconnects a session it cannot
 * queue to for lack of memory. Any thread;
 * cheapest from a worker (a job queue, as rooms do): on the epoll backend a
 * send from another thread may complete at once and wake a worker for it.
 */
CP_API size_t cp_service_broadcast(cp_service *svc, cp_sendbuf *buf);

/* ---- sessions -------------------------------------------------------- */

/* Take / drop a reference (get returns s). NULL: NULL / a no-op. Putting a
 * reference you do not hold is a bug (asserted in debug builds). Any
 * thread. */
CP_API cp_session *cp_session_get(cp_session *s);
CP_API void cp_session_put(cp_session *s);

/*
 * Queue buf for sending; the session takes its own reference (the caller
 * keeps its one). At most one send is in flight per session; everything
 * queued meanwhile goes out in one gathered send. Returns 0, -ENOTCONN if
 * the session is closing or closed, -ENOBUFS if this would pass
 * send_queue_max (the session is then disconnected as a slow consumer),
 * -ENOMEM (the session stays; cp_session_send_many disconnects it), -EINVAL
 * for NULL or an empty buffer. Any thread.
 */
CP_API int cp_session_send(cp_session *s, cp_sendbuf *buf);

/*
 * Queue a copy of len bytes of data for sending, in order with everything
 * else queued on s. Made for replies: the bytes go at the end of the
 * session's open send buffer - one the engine allocated for earlier
 * cp_session_send_copy calls, still last in the queue, not yet sending, and
 * with room - so the replies to the packets of one receive share one buffer
 * and one send; otherwise into a new buffer (1 KiB or len, whichever is more)
 * that becomes the open one. A cp_session_send in between, or the start of a
 * send, closes it. The caller keeps data. Returns 0 or the errors of
 * cp_session_send (-EINVAL also for NULL data or len 0). Any thread; calls
 * from several threads at once are each queued whole, in some order.
 */
CP_API int cp_session_send_copy(cp_session *s, const void *data, size_t len);

/* Bytes queued on s and not yet handed to the kernel (the send in flight
 * included): a producer that must not be cut off as a slow consumer keeps
 * this under send_queue_max, sending more from on_sent. Any thread. */
CP_API size_t cp_session_send_queued(const cp_session *s);

/* Send one buffer to many sessions (a room); NULL entries are skipped, a
 * NULL array or buf queues nothing. Returns how many queued it.
 * A session it cannot be queued to for lack of memory is disconnected
 * (CP_REASON_ERROR): no member silently misses a packet and stays. Any
 * thread. */
CP_API size_t cp_session_send_many(cp_session *const *sessions, size_t n, cp_sendbuf *buf);

/*
 * Disconnect. graceful: after everything queued so far is sent - meanwhile
 * no more packets are delivered (bytes that arrive are dropped), sends fail
 * with -ENOTCONN and cp_session_connected() is false - then the engine sends
 * its FIN and reads (dropping) until the peer's, for up to 2 s, so that
 * closing with unread bytes does not reset the connection and destroy what
 * the peer has not read yet. Otherwise at once (queued data is dropped).
 * on_disconnected then runs with CP_REASON_LOCAL, unless the session was
 * already ending (a peer that half-closed first: CP_REASON_PEER_CLOSED).
 * Again, or after the session ended: nothing more happens. NULL: a no-op.
 * Any thread.
 */
CP_API void cp_session_disconnect(cp_session *s, bool graceful);

/* Accessors; any thread, while a reference is held. The user pointer is a
 * plain field: set it in on_connected (or before others read it). For NULL:
 * 0, NULL, false, a no-op; cp_session_peer writes "?:0". */
CP_API uint64_t cp_session_id(const cp_session *s); /* unique in the process, from 1 */
CP_API cp_service *cp_session_service(const cp_session *s);
CP_API void cp_session_set_user(cp_session *s, void *user); /* the application's pointer */
CP_API void *cp_session_user(const cp_session *s);
CP_API bool cp_session_connected(const cp_session *s); /* false once it began to close */
/* The peer's address as text ("127.0.0.1:50312"); buf of at least 64 bytes.
 * Asks the socket, which may not know any more once the session began to
 * close ("?:0"): note it in on_connected if you need it later. */
CP_API const char *cp_session_peer(const cp_session *s, char *buf, size_t len);

/* ---- send buffers ----------------------------------------------------
 *
 * Every function here may be called from any thread. For a NULL buffer:
 * data NULL, len and cap 0, set_len/unref a no-op, ref NULL. Once a buffer is
 * queued (cp_session_send, a broadcast) its bytes are shared with the
 * sessions' sends: do not change them, or its length, while any reference
 * the engine took is alive; allocate a new buffer instead.
 */

/*
 * A send buffer with room for cap bytes, reference count 1, length 0. Small
 * buffers are carved from per-thread chunks (no malloc per send); large ones
 * are allocated on their own. NULL if out of memory. Any thread.
 */
CP_API cp_sendbuf *cp_sendbuf_alloc(size_t cap);
/* A framed packet with room for body_len bytes of body: header written,
 * length set; fill cp_sendbuf_data(b) + 4. NULL if 4 + body_len > 65535 or
 * out of memory. (Receivers refuse packets over their max_packet.) */
CP_API cp_sendbuf *cp_packet_alloc(uint16_t id, size_t body_len);
/* Copy of bytes as a send buffer; NULL if out of memory (or data is NULL
 * with len > 0). */
CP_API cp_sendbuf *cp_sendbuf_copy(const void *data, size_t len);
CP_API uint8_t *cp_sendbuf_data(cp_sendbuf *b);
CP_API size_t cp_sendbuf_len(const cp_sendbuf *b);
CP_API size_t cp_sendbuf_cap(const cp_sendbuf *b);
/* Set the length (<= cap) before sending. Not after it was queued. */
CP_API void cp_sendbuf_set_len(cp_sendbuf *b, size_t len);
CP_API cp_sendbuf *cp_sendbuf_ref(cp_sendbuf *b);
/* Drop a reference; the memory goes with the last. NULL is a no-op. */
CP_API void cp_sendbuf_unref(cp_sendbuf *b);
/* Send buffers allocated in this process and not yet freed (for leak checks
 * and tests). Any thread. */
CP_API size_t cp_sendbuf_outstanding(void);

/* ---- job queues ------------------------------------------------------ */

typedef void (*cp_job_fn)(void *arg);

/*
 * A caller-owned job, as cp_op is for I/O: embed it in your own struct, and
 * posting it (cp_jobq_post_job) allocates nothing, so it cannot fail for
 * lack of memory. Zero it once before its first use (static, calloc, = {0});
 * after that it is the engine's from a successful post until its fn is
 * called (or the queue drops it), and the engine never touches it after it
 * calls fn: fn may free it, or post it again. Contents are private.
 */
typedef struct cp_job {
  union {
    uint64_t words[6];
    void *align;
  } opaque;
} cp_job;

/*
 * A serial executor on the service's workers: jobs posted from any thread run
 * one at a time, in post order, never two at once (though not always on the
 * same thread). Rooms and other shared state live on one. NULL if svc is
 * NULL or out of memory. Create after cp_service_create; destroy before
 * cp_service_destroy.
 */
CP_API cp_jobq *cp_jobq_create(cp_service *svc);
/* Run fn(arg) on q (the engine allocates the job). 0, -EINVAL (no q or fn),
 * -ENOMEM, or -ESHUTDOWN once cp_service_stop has disconnected every session
 * and is stopping the workers (jobs posted while sessions are still ending,
 * e.g. from on_disconnected, do run). Any thread. Where a post must not fail
 * (releasing a reference), use cp_jobq_post_job. */
CP_API int cp_jobq_post(cp_jobq *q, cp_job_fn fn, void *arg);
/*
 * Run fn(arg) on q with the caller's job (see cp_job): never -ENOMEM. 0,
 * -EINVAL (no q, job or fn), -EBUSY (job is posted and has not run yet), or
 * -ESHUTDOWN as cp_jobq_post (so never from on_disconnected). Any thread.
 */
CP_API int cp_jobq_post_job(cp_jobq *q, cp_job *job, cp_job_fn fn, void *arg);
/* Run fn(arg) on q after delay_ms (a one-shot timer the engine allocates;
 * never earlier). Same returns as cp_jobq_post. It cannot be cancelled: for
 * that, use a cp_timer. */
CP_API int cp_jobq_post_after(cp_jobq *q, uint64_t delay_ms, cp_job_fn fn, void *arg);
/* Free the queue. Jobs and timers not yet run are dropped: fn is not called,
 * and arg is not freed; a dropped cp_job or cp_timer is idle again (the
 * caller's to free or reuse). Safe while the service runs (even from one of
 * the queue's own jobs) and after cp_service_stop; nothing may post to the
 * queue afterwards. Call it before cp_service_destroy. NULL is a no-op. */
CP_API void cp_jobq_destroy(cp_jobq *q);

/* ---- timers ------------------------------------------------------------ */

/*
 * A caller-owned timer that runs a job on a job queue after a delay, once or
 * repeatedly, and can be cancelled. Zero it once before its first use; it is
 * idle then, after a successful cp_timer_cancel, after its queue dropped it,
 * and (a one-shot) from the moment its fn is called. The engine never touches
 * it after it calls fn (fn may free it once it is idle, or start it again).
 * Contents are private.
 */
typedef struct cp_timer {
  union {
    uint64_t words[12];
    void *align;
  } opaque;
} cp_timer;

/*
 * Start t: fn(arg) runs on q after delay_ms (never earlier), then, if
 * period_ms > 0, every period_ms after each time it fell due (a run that
 * falls due while the last one still waits in the queue is merged into it).
 * 0, -EINVAL (no t, q or fn), -EBUSY (t is pending: cancel it first),
 * -ENOMEM (the engine's timer heap could not grow), or -ESHUTDOWN once the
 * service is stopping its workers. Any thread.
 */
CP_API int cp_timer_start(cp_timer *t, cp_jobq *q, uint64_t delay_ms, uint64_t period_ms,
                          cp_job_fn fn, void *arg);
/*
 * Cancel t. Exactly once, whichever thread wins a race with its firing:
 * returns 0 if t was pending (waiting for its time, or its run waiting in
 * the queue): that run will never happen, no later one either, and t is
 * idle. Returns -ENOENT if nothing was pending: a one-shot whose fn has been
 * called (it ran, or is running on another thread), or a timer never
 * started, cancelled already, or dropped with its queue. -EINVAL for NULL.
 * A repeating timer's run that already began on another thread finishes;
 * cancel from a job on t's own queue (or from fn) to know none is running.
 * Any thread.
 */
CP_API int cp_timer_cancel(cp_timer *t);

#ifdef __cplusplus
}
#endif

#endif /* CPORT_NET_H */
