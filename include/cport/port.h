/*
 * cport/port.h - the completion port.
 *
 * Windows' I/O Completion Port contract, on io_uring (the default on Linux),
 * epoll (the Linux fallback) or IOCP itself. A program creates one port, associates each socket
 * with it under a completion key, starts operations with caller-owned cp_op
 * contexts (the "overlapped"), and any number of worker threads take the
 * finished operations with cp_port_wait().
 *
 * Rules that hold for every function below:
 *  - Errors are cport's negative codes CP_E* (cport/error.h; on Linux each is
 *    -errno), named by cp_strerror().
 *  - Exactly once: an operation whose start function returned 0 yields exactly
 *    one completion: its result, CP_ECANCELED, or the error that ended it. A
 *    start function that returns an error started nothing and yields none.
 *    The one exception is cp_port_close(): completions not yet taken by then
 *    are never delivered (cp_port_destroy() reclaims the ops).
 *  - Start functions return 0 when started, or: CP_EINVAL (NULL port or op,
 *    bad buffer count, zero length, bad address length), CP_EFAULT (a
 *    buffer with a length and no base), CP_EBADF (socket not associated),
 *    CP_ESHUTDOWN (after close), CP_ENOMEM. Starting an op again while its
 *    completion has not been returned is a caller error and not detected.
 *  - The cp_op and every buffer, cp_buf array and address passed to a start
 *    function are owned by the caller and must stay valid and untouched until
 *    the op's completion has been returned by cp_port_wait() (or until
 *    cp_port_destroy() returns). The port never frees them.
 *  - Ops of one kind on one socket complete in the order they were started
 *    (accepts excepted: each takes its own connection, and cancelled ones may
 *    complete in any order); a send completes only once every byte is with
 *    the kernel (or with an error), never with a short count. The order is
 *    exact as seen by one waiting thread when one thread starts the ops. When
 *    several threads start ops on one socket at the same moment, or several
 *    threads wait, two completions that become ready at the same moment may
 *    be handed out in either order (the data is not affected: see below).
 *  - Several sends in flight on one stream socket, from any number of
 *    threads: the bytes of each reach the wire whole (never interleaved with
 *    another send's) and in the order the sends were started (the order in
 *    which their cp_port_send calls returned 0; two calls racing in two
 *    threads are ordered by whichever the port took first). If one fails,
 *    the ones started after it fail too (the connection is broken) or are
 *    cancelled; none of their bytes is sent after a gap.
 *  - Every function is thread-safe unless its comment says otherwise.
 *
 * On the io_uring backend the kernel finishes some work of an op in the
 * context of the thread that submitted it, announced to that thread like a
 * signal: a blocking system call of a thread that starts ops (connect(),
 * poll(), nanosleep(), ...) may then return EINTR. Retry on EINTR, as with
 * any signal, or keep blocking calls out of the threads that start ops.
 * That work is cooperative (IORING_SETUP_COOP_TASKRUN): a thread that is
 * running is not interrupted for it, but does it at its next system call or
 * timer tick - so an op started by a thread that then computes for a long
 * time without a system call may complete up to a tick (1-10 ms) late. The
 * workers of a service enter the kernel all the time; CPORT_URING_COOP=0 in
 * the environment interrupts instead (slower under load: every arrival on a
 * busy worker's socket costs an inter-processor interrupt).
 */
#ifndef CPORT_PORT_H
#define CPORT_PORT_H

#include "cport/error.h"
#include "cport/export.h"
#include "cport/socket.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The port. Opaque; create with cp_port_create(). */
typedef struct cp_port cp_port;

/* Which kernel interface a port runs on. */
typedef enum cp_backend {
  CP_BACKEND_AUTO = 0, /* CPORT_BACKEND from the environment, else io_uring if usable, else epoll */
  CP_BACKEND_URING = 1, /* io_uring through liburing */
  CP_BACKEND_EPOLL = 2, /* epoll readiness, completed in user space (Linux) */
  CP_BACKEND_IOCP = 3,  /* the Windows I/O Completion Port */
} cp_backend;

/* What kind of operation a completion belongs to. */
typedef enum cp_op_kind {
  CP_OP_NONE = 0,
  CP_OP_ACCEPT,      /* result: the new socket, (cp_socket_t)result (nonblocking, close-on-exec) */
  CP_OP_CONNECT,     /* result: 0 */
  CP_OP_RECV,        /* result: bytes received into the caller's cp_bufs; 0 = peer closed */
  CP_OP_RECV_POOLED, /* result: bytes in cp_completion.buf; 0 = peer closed (no buffer) */
  CP_OP_SEND,        /* result: every byte of the cp_bufs */
  CP_OP_DISCONNECT,  /* result: 0 */
  CP_OP_TIMEOUT,     /* result: 0 when the time is up */
  CP_OP_POST,        /* result: what the poster passed */
} cp_op_kind;

/*
 * The overlapped: per-operation context, owned by the caller. Embed it in your
 * own struct (recover the struct with offsetof/container_of) next to your own
 * type tag. Its contents are private to the port; it needs no initialisation,
 * and it may be reused for a new op as soon as its completion was returned.
 */
typedef struct cp_op {
  union {
    uint64_t words[13];
    void *align;
  } opaque;
} cp_op;

/* One finished operation, as returned by cp_port_wait(). */
typedef struct cp_completion {
  cp_op *op;       /* the op that finished (NULL for a post made without one) */
  void *key;       /* the socket's completion key (cp_port_associate), or the post's key */
  int64_t result;  /* >= 0 on success (see cp_op_kind), else CP_E*; CP_ECANCELED if cancelled */
  void *buf;       /* CP_OP_RECV_POOLED with result > 0: the data; give it back with
                      cp_port_buf_release(). NULL otherwise. */
  cp_op_kind kind; /* which operation this was */
} cp_completion;

/* Options for cp_port_create(). Zero means "default" for every field. */
typedef struct cp_port_options {
  cp_backend backend;   /* default CP_BACKEND_AUTO */
  unsigned concurrency; /* threads released from cp_port_wait() at once; default: CPU count */
  unsigned queue_depth; /* io_uring submission entries / epoll events per poll; default 1024 */
  unsigned buf_count;   /* pooled receive buffers, rounded up to a power of two; default 4096
                         * (memory is touched only as buffers are used; on io_uring,
                         * which uses every buffer in turn, in 2 MiB huge pages where
                         * the kernel has them; CPORT_URING_HUGE=0: small pages) */
  unsigned buf_size;    /* bytes per pooled buffer; default 4096 */
  unsigned flags;       /* CP_PORT_* below; default 0 */
} cp_port_options;

/*
 * cp_port_options.flags: CP_PORT_ONE_WAITER. The caller promises that one
 * thread - the first to call cp_port_wait() - is the only one that ever waits
 * on the port; a wait from any other thread returns CP_EINVAL (on every
 * backend). Ops may still be started, cancelled and posted from any thread.
 * On io_uring the ring then takes SINGLE_ISSUER + DEFER_TASKRUN (Linux 6.1;
 * probed, CPORT_URING_DEFER=0 turns it off): only the waiting thread enters
 * the kernel, and the work of finished ops runs in its wait, as one batch,
 * instead of interrupting it. Registered files (CPORT_URING_FIXED) are off on
 * such a ring. Another thread's ops reach the kernel when the waiting thread
 * next polls: one that finds the submission queue (queue_depth) full waits
 * for it, up to 2 s, then fails with CP_EBUSY (at once if no thread has
 * waited yet: start at most queue_depth ops before the first wait). Close
 * the port while that thread waits or before its next wait (it cancels what
 * is in flight and waits for the kernel to let go before it returns
 * CP_PORT_CLOSED), or destroy it on that thread. Destroyed on another thread
 * with ops in flight that were never drained, the kernel may still write
 * the caller's buffers and cp_ops after cp_port_destroy() returns; the port
 * keeps its own buffer pool then (leaked, and logged). cp_service sets the
 * flag when it has one worker thread.
 */
#define CP_PORT_ONE_WAITER 1u

/* Returned by cp_port_wait() once the port is closed. */
#define CP_PORT_CLOSED CP_ESHUTDOWN

/*
 * Create a port. opts may be NULL for defaults. On success stores the port in
 * *out and returns 0. Returns CP_ENODEV if a backend was forced (opts or
 * CPORT_BACKEND) and is not available here, CP_EINVAL for a NULL out, a bad
 * option or a bad CPORT_BACKEND value, CP_ENOMEM, or the kernel's error.
 * The caller owns the port (cp_port_destroy). Any thread.
 */
CP_API int cp_port_create(cp_port **out, const cp_port_options *opts);

/*
 * Close the port: every thread in cp_port_wait() returns CP_PORT_CLOSED, and
 * so does every later wait; start functions return CP_ESHUTDOWN. Ops still in
 * flight are not delivered; their cp_op memory may be reused once
 * cp_port_destroy() has returned. Idempotent; NULL is a no-op. Any thread.
 */
CP_API void cp_port_close(cp_port *port);

/*
 * Close (if not yet closed), cancel everything in flight, wait for the kernel
 * to let go of every caller buffer, and free the port. No thread may be inside
 * or enter any cp_port_* call on this port during or after it. Pooled buffers
 * still held by the caller are freed too. NULL is a no-op; destroying a port
 * twice is a caller error (the memory is gone), as with free().
 */
CP_API void cp_port_destroy(cp_port *port);

/* The backend this port runs on (never CP_BACKEND_AUTO; CP_BACKEND_AUTO for a
 * NULL port). Any thread. */
CP_API cp_backend cp_port_backend(const cp_port *port);

/* "uring", "epoll", "iocp" or "auto" ("unknown" for other values). Static
 * string. Any thread. */
CP_API const char *cp_backend_name(cp_backend backend);

/*
 * Parse a backend name as programs take it (--backend, CPORT_BACKEND):
 * "auto" (or an empty string), "uring" or "io_uring", "epoll", "iocp". Stores
 * the backend in *out and returns 0, or returns CP_EINVAL (NULL name or out,
 * or another name) and leaves *out alone. Whether the backend is available
 * here is cp_port_create's answer (CP_ENODEV), not this one's. Any thread.
 */
CP_API int cp_backend_from_name(const char *name, cp_backend *out);

/*
 * Associate a socket with the port: every completion of an op on sock
 * carries key. Must precede any op on sock. Associating a socket again
 * replaces its key. The port makes the socket nonblocking (as IOCP users
 * never do it themselves, they need not: a blocking socket works the same,
 * on every backend); it stays nonblocking after disassociation. The caller
 * keeps owning sock, and disassociates it before closing it: with io_uring's
 * registered files (CPORT_URING_FIXED=1) the port holds the socket in the
 * ring's file table, and a socket closed while associated stays open (the
 * peer sees no FIN) until its number is associated again or the port is
 * destroyed; on io_uring an armed multishot receive (the default) holds it
 * too, until its peer sends or closes, and what it then receives may reach
 * the receives of a socket that reuses the number. Returns 0, CP_EINVAL for
 * a NULL port, CP_EBADF for a
 * socket that is not open, CP_ENOTSOCK for a descriptor that is not a socket
 * (or cannot be polled), CP_ESHUTDOWN after close, CP_ENOMEM. Any thread.
 */
CP_API int cp_port_associate(cp_port *port, cp_socket_t sock, void *key);

/*
 * Forget sock: every op still pending on it completes with CP_ECANCELED (or
 * with its result, if it finished first). Afterwards sock may be closed at
 * once (the port lets go of it; an op not yet completed holds it until its
 * completion, as the kernel does), and the same number may be associated
 * again. Always disassociate before close. Returns 0, CP_EINVAL for
 * a NULL port, or CP_EBADF if sock was not associated. Any thread.
 */
CP_API int cp_port_disassociate(cp_port *port, cp_socket_t sock);

/*
 * Accept a connection on the listening socket lsock (AcceptEx). Completes
 * with the new socket, already nonblocking and close-on-exec, not yet
 * associated. addr and addrlen may both be NULL; otherwise *addrlen holds
 * addr's size on entry and the peer's address length on completion. Several
 * accepts may be pending on one socket. Returns 0 when started.
 */
CP_API int cp_port_accept(cp_port *port, cp_socket_t lsock, cp_op *op, struct sockaddr *addr,
                          socklen_t *addrlen);

/*
 * Connect the associated, unconnected socket sock (cp_socket_tcp) to addr
 * (ConnectEx), an IPv4 or IPv6 address: it is copied, so the caller's may go
 * once this returns (CP_EINVAL if addrlen is 0 or larger than a
 * sockaddr_in6). Completes with 0 or the connect error (e.g.
 * CP_ECONNREFUSED).
 */
CP_API int cp_port_connect(cp_port *port, cp_socket_t sock, cp_op *op, const struct sockaddr *addr,
                           socklen_t addrlen);

/*
 * Receive into the caller's buffers (WSARecv). Completes with the number of
 * bytes received (at least 1), or 0 when the peer has closed. nbufs must be
 * 1..CP_BUF_MAX and the total length non-zero.
 */
CP_API int cp_port_recv(cp_port *port, cp_socket_t sock, cp_op *op, const cp_buf *bufs, int nbufs);

/*
 * Receive into a buffer the port takes from its pool only once data is there,
 * so an idle connection holds no memory. The completion's buf holds result
 * bytes; the caller owns it until cp_port_buf_release(). When the pool is
 * empty the op waits (it is not lost) until a buffer is released.
 * On io_uring (kernel 6.0 or later; CPORT_URING_MULTISHOT=0 in the
 * environment when the port is made turns it off) the first pooled receive
 * on a socket arms one multishot receive that stays armed, and data that
 * arrives while no receive is started waits in up to 4 pool buffers per
 * socket (the socket holds the rest). The completions are the same as
 * without it, cp_port_cancel() included (what was taken in goes to the next
 * receive); cp_port_disassociate() drops that data (the buffers go back to
 * the pool), where without it the data would stay in the socket.
 */
CP_API int cp_port_recv_pooled(cp_port *port, cp_socket_t sock, cp_op *op);

/* Give a pooled buffer (cp_completion.buf) back to the port. NULL port or
 * buf: no-op; a pointer that is not one of this port's pooled buffers is
 * ignored. Any thread. */
CP_API void cp_port_buf_release(cp_port *port, void *buf);

/*
 * Send every byte of the caller's buffers (WSASend). Completes with the
 * total length once all of it is with the kernel, or with an error (e.g.
 * CP_EPIPE, CP_ECONNRESET). Never completes short. nbufs must be
 * 1..CP_BUF_MAX, the total non-zero. Never raises SIGPIPE. Several sends may
 * be in flight on one socket: see the ordering rule at the top.
 */
CP_API int cp_port_send(cp_port *port, cp_socket_t sock, cp_op *op, const cp_buf *bufs, int nbufs);

/*
 * Graceful disconnect (DisconnectEx): shut the socket down once every send
 * started before it has completed. how is CP_SHUT_WR (send FIN, keep
 * reading) or CP_SHUT_RDWR (also ends pending receives with 0). Completes
 * with 0 or an error. The caller still closes the socket.
 */
CP_API int cp_port_disconnect(cp_port *port, cp_socket_t sock, cp_op *op, int how);

/*
 * A timer: completes with 0 after ms milliseconds (key is passed through to
 * the completion), or with CP_ECANCELED if cp_port_cancel_op() stops it
 * first. Returns 0, CP_EINVAL (NULL port or op, ms too large), CP_ESHUTDOWN,
 * CP_ENOMEM.
 */
CP_API int cp_port_timeout(cp_port *port, cp_op *op, void *key, uint64_t ms);

/*
 * Queue a completion by hand (PostQueuedCompletionStatus): a waiter gets
 * {op, key, result, kind = CP_OP_POST}. op may be NULL; if not, it is handed
 * back as-is and the port does not touch it. Never blocks. Returns 0,
 * CP_EINVAL for a NULL port, CP_ESHUTDOWN after close, CP_ENOMEM.
 */
CP_API int cp_port_post(cp_port *port, void *key, cp_op *op, int64_t result);

/*
 * Cancel every op pending on sock (CancelIoEx(sock, NULL)). Each completes
 * with CP_ECANCELED, or with its result if it finished first. Returns 0 (also
 * when nothing was pending), CP_EINVAL for a NULL port, or CP_EBADF if sock
 * is not associated.
 */
CP_API int cp_port_cancel(cp_port *port, cp_socket_t sock);

/*
 * Cancel one op (CancelIoEx(sock, op)), e.g. a timer. Returns 0 if a cancel
 * was requested (the op then completes with CP_ECANCELED or its result),
 * CP_ENOENT if the op is not pending (its completion is queued or already
 * delivered), CP_EINVAL for a NULL port or op. op must have been started on
 * this port at least once (a zeroed cp_op that was never started is also
 * answered CP_ENOENT).
 */
CP_API int cp_port_cancel_op(cp_port *port, cp_op *op);

/*
 * Wait for completions (GetQueuedCompletionStatusEx): fills out[0..max-1] and
 * returns how many (>= 1), 0 if timeout_ms passed first (-1 waits forever, 0
 * only polls), CP_PORT_CLOSED once the port is closed, CP_EINVAL for a NULL
 * port or out, or max < 1 (and, on a CP_PORT_ONE_WAITER port, for a thread
 * other than its waiter). Any number of threads may wait on one port; each
 * completion goes to exactly one of them. At most `concurrency` threads are released at
 * once: a thread counts as running from the moment it returns with
 * completions until it calls cp_port_wait() on this port again. Unlike IOCP,
 * a running thread that blocks (a database call, a lock) keeps its slot:
 * nothing notices it blocking, so budget concurrency for that.
 */
CP_API int cp_port_wait(cp_port *port, cp_completion *out, int max, int timeout_ms);

/* Counters, readable at any time from any thread (relaxed snapshot). */
typedef struct cp_port_stats {
  uint64_t started;   /* ops started (posts included) */
  uint64_t completed; /* completions delivered by cp_port_wait() */
  uint64_t syscalls;  /* kernel entries made by the port itself */
  uint64_t buf_waits; /* pooled receives that had to wait for a free buffer */
} cp_port_stats;
/* NULL port or out: no-op. */
CP_API void cp_port_get_stats(const cp_port *port, cp_port_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* CPORT_PORT_H */
