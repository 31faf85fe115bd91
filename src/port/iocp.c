/*
 * iocp.c - the completion port on Windows' own I/O Completion Port.
 *
 * On Linux port.c emulates IOCP; here the kernel is IOCP, so this file is the whole of port.h
 * on Windows (port.c, uring.c and epoll.c are not built). The mapping, op by op:
 *
 *   cp_port_create      CreateIoCompletionPort(concurrency); Winsock started once (WSAStartup,
 *                       the AcceptEx/ConnectEx/GetAcceptExSockaddrs pointers loaded)
 *   cp_port_wait        GetQueuedCompletionStatusEx; internal packets (a send's rest, a
 *                       pooled receive's second step) are handled and not returned
 *   cp_port_post        PostQueuedCompletionStatus of a small allocated record
 *   cp_port_close       one close packet that every waiter that takes it posts again, so every
 *                       waiter, present and future, sees it (closing the handle would not wake
 *                       waiters under Wine, and N packets do not wake N GQCSEx waiters)
 *   cp_port_associate   CreateIoCompletionPort(socket) + FIONBIO; the key lives in cport's
 *                       socket entry so that associating again can replace it
 *   cp_port_accept      AcceptEx into a socket of the listener's family, then
 *                       SO_UPDATE_ACCEPT_CONTEXT and GetAcceptExSockaddrs for the peer
 *   cp_port_connect     bind to the wildcard if unbound, ConnectEx, SO_UPDATE_CONNECT_CONTEXT
 *   cp_port_recv        WSARecv
 *   cp_port_recv_pooled a zero-byte WSARecv (no buffer while idle), then a pooled buffer and a
 *                       nonblocking recv(); WSAEWOULDBLOCK goes back to the zero-byte read
 *   cp_port_send        WSASend; a short completion resubmits the rest, the op completes whole
 *   cp_port_disconnect  shutdown() once the sends before it completed (not DisconnectEx: see
 *                       docs/windows.md); SHUT_RDWR ends pending receives with 0 as on Linux
 *   cp_port_timeout     a thread-pool timer that posts the completion
 *   cp_port_cancel(_op) CancelIoEx per op (never CancelIoEx(h, NULL), whose answer Wine gets
 *                       wrong), exactly once through the op's own state
 *
 * Order: the read side (recv, pooled recv) and the write side (send, disconnect) of a socket
 * each have one op with the kernel at a time and a FIFO behind it, as the Linux backends do;
 * that is what makes a resubmitted send's rest go out before the next send, and ops of one kind
 * complete in start order. Accepts run in parallel; connect is one op.
 *
 * Socket entries are type-stable: disassociated entries go to a free list and are reused, and
 * freed only with the port, so an op's pointer to its entry can always be locked and checked.
 *
 * Skip-on-success (as libuv's UV_HANDLE_SYNC_BYPASS_IOCP): an associated socket of an IFS
 * provider is put in FILE_SKIP_COMPLETION_PORT_ON_SUCCESS mode, so an op that succeeds at once
 * queues no kernel packet. Such an op goes on the port's ready list instead, which
 * cp_port_wait drains before it asks the kernel, and is then handled exactly as its packet
 * would have been: every op still completes once, through cp_port_wait. A thread blocked in
 * GetQueuedCompletionStatusEx is woken with one packet when the list fills; a send's rest that
 * goes out at once continues in place. CPORT_IOCP_SKIP=0 (read at cp_port_create) turns the
 * mode off for that port's sockets.
 */
#ifdef _WIN32
#include <winsock2.h>

#include <mswsock.h>
#include <windows.h>
#include <winternl.h>
#include <ws2tcpip.h>

#include "cport/port.h"
#include "port/win32_internal.h"

#include "common/log.h"
#include "common/mem.h"
#include "platform/platform.h"

#include <assert.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Completion keys of the packets on the kernel port. */
enum {
  KEY_IO = 0,    /* an op's kernel I/O finished (its OVERLAPPED) */
  KEY_DONE = 1,  /* an op finished in user space; its result is in the op */
  KEY_POST = 2,  /* cp_port_post: the OVERLAPPED pointer is a struct post */
  KEY_CLOSE = 3, /* the port is closed; each waiter that takes it posts it again */
  KEY_WAKE = 4,  /* the ready list has ops and a waiter was blocked in the kernel */
};

enum stage { ST_IDLE = 0, ST_QUEUED, ST_KERNEL, ST_STARVED, ST_DONE };

struct sockent;

/* The private view of a cp_op: exactly its 104 bytes. */
struct op {
  OVERLAPPED ov;
  struct op *next;    /* the side's FIFO, the accept list, the starved list */
  struct sockent *se; /* NULL for timers */
  void *key;          /* completion key, copied at start */
  int64_t result;     /* ST_DONE: what the completion says */
  union {
    struct {
      const cp_buf *bufs; /* the caller's, laid out as WSABUF */
      size_t total, done;
      int nbufs;
    } io;
    struct {
      struct sockaddr *addr;
      socklen_t *addrlen;
      SOCKET as;
      char *abuf;
    } acc;
    struct {
      void *buf; /* the pooled buffer, once taken */
    } pooled;
    struct {
      PTP_TIMER tp;
      cp_port *port;
    } timer;
  } u;
  LONG gen;          /* the socket's cancel generation at start; timers: 1 armed, 2 ended */
  uint8_t kind;      /* cp_op_kind */
  uint8_t stage;     /* enum stage, changed under the socket entry's lock */
  uint8_t cancelled; /* cp_port_cancel_op asked */
  uint8_t how;       /* disconnect: SD_SEND or SD_BOTH */
};
_Static_assert(sizeof(struct op) <= sizeof(cp_op), "struct op must fit in cp_op");

static inline struct op *op_of(cp_op *o) {
  return (struct op *)(void *)o;
}
static inline struct op *op_of_ov(OVERLAPPED *ov) {
  return (struct op *)(void *)ov; /* ov is the first member */
}

struct fifo {
  struct op *head, *tail;
};
static void fifo_push(struct fifo *q, struct op *o) {
  o->next = NULL;
  if (q->tail)
    q->tail->next = o;
  else
    q->head = o;
  q->tail = o;
}
static struct op *fifo_pop(struct fifo *q) {
  struct op *o = q->head;
  if (o) {
    q->head = o->next;
    if (!q->head)
      q->tail = NULL;
    o->next = NULL;
  }
  return o;
}

struct sockent {
  /* Guards the fields from key on and the stage of the ops on this socket. First, and never
   * re-initialised when the entry is reused: a cp_port_cancel_op may be taking it for an op
   * this entry served before. */
  SRWLOCK mu;
  struct sockent *hnext; /* hash chain, or the free list (under the table lock) */
  SOCKET s;
  void *key;
  LONG refs;       /* 1 while associated + 1 per op not yet delivered (Interlocked) */
  LONG gen;        /* bumped by cancel and disassociate */
  uint64_t serial; /* this association's number (the port's count), for the reset scan */
  int reset_err;   /* Wine: the reset scan found the connection gone (see reset_scan) */
  bool associated;
  bool skip;         /* the socket is in FILE_SKIP_COMPLETION_PORT_ON_SUCCESS mode */
  bool rd_shut;      /* shutdown(SD_BOTH) was done: reads complete with 0 */
  struct op *rd_cur; /* the read-side op started (kernel, starved or done-posted) */
  struct op *wr_cur;
  struct op *conn;    /* a pending ConnectEx */
  struct op *accepts; /* pending AcceptEx ops (a list through next) */
  struct fifo rd, wr; /* waiting behind rd_cur / wr_cur */
};

#define NBUCKETS 4096u
#define SCAN_BATCH 128u /* sockets the reset scan polls per tick */

static _Atomic uint64_t next_port_id = 1;

struct post {
  cp_op *op;
  void *key;
  int64_t result;
  struct post *next; /* in the port's free list */
};

struct cp_port {
  HANDLE iocp;
  unsigned concurrency;
  bool one_waiter;          /* CP_PORT_ONE_WAITER */
  _Atomic uintptr_t waiter; /* one_waiter: its cp__thread_token (0 until it first waits) */
  uint64_t id;              /* unique, so thread-local slots never confuse ports */
  _Atomic bool closed;
  /* The concurrency cap as port.h states it: a thread holds one of `concurrency` slots from
   * the moment cp_port_wait returns it completions until it calls cp_port_wait again, blocked
   * or not (IOCP's own count lets another thread run when one blocks). A waiter takes a slot
   * before it waits on the kernel port. */
  HANDLE slots;     /* a semaphore of `concurrency` */
  HANDLE closed_ev; /* set by close: wakes threads waiting for a slot */

  /* cp_port_post's records (the op is the caller's, untouched): kept for reuse once taken
   * back, so a port that has posted N at once before never allocates for N again - as the
   * Linux ports' ready ring only grows (the engine's release paths rely on it). */
  SRWLOCK pmu;
  struct post *free_posts;
  void *free_abufs; /* AcceptEx address buffers, the same way (each links the next) */

  SRWLOCK tmu; /* the table and the free list */
  struct sockent *buckets[NBUCKETS];
  struct sockent *free_ents;

  /* pooled buffers */
  SRWLOCK bmu;
  char *slab;
  size_t slab_len;
  uint32_t buf_count, buf_size, nfree;
  uint32_t *free_idx;
  struct fifo starved;

  /* timers: a thread-pool environment with a cleanup group, so destroy ends them all */
  TP_CALLBACK_ENVIRON tpenv;
  PTP_CLEANUP_GROUP tpgroup;
  bool timers_closed; /* destroy closed every timer through the group */

  /* Under Wine only: the reset scan's timer, where the next scan starts, and one batch (see
   * reset_scan; part of the port so that the scan never allocates). */
  PTP_TIMER scan_timer;
  _Atomic bool scanning;
  uint64_t next_serial; /* under tmu */
  unsigned scan_bucket;
  WSAPOLLFD scan_fds[SCAN_BATCH];
  struct sockent *scan_ents[SCAN_BATCH];
  uint64_t scan_serials[SCAN_BATCH];

  /* Skip-on-success (see the top of the file): ops whose kernel part succeeded at once, in the
   * order they finished, each with its byte count in ov.InternalHigh as a packet would carry. */
  bool skip;   /* CPORT_IOCP_SKIP, read once at create: set the mode on sockets */
  SRWLOCK rmu; /* the ready list */
  struct fifo ready;
  _Atomic long nready;       /* its length */
  _Atomic long blocked;      /* threads inside GetQueuedCompletionStatusEx */
  _Atomic bool wake_pending; /* a KEY_WAKE packet is queued and not yet taken */
  unsigned ready_streak;     /* (under rmu) drains in a row without a look at the kernel */

  _Atomic long inflight; /* packets owed by the kernel or by ourselves (the ready list too) */
  _Atomic uint64_t n_started, n_completed, n_syscalls, n_buf_waits;
  _Atomic uint64_t n_gqcs, n_packets, n_inline, n_wakes, n_skip_sockets; /* cp__iocp_counts */
};

static char *abuf_get(cp_port *p);
static void abuf_put(cp_port *p, char *b);

/* ---- Winsock start-up and errors ----------------------------------------------------- */

int (*cp__iocp_accept_fault)(void);

static LPFN_ACCEPTEX fn_acceptex;
static LPFN_CONNECTEX fn_connectex;
static LPFN_GETACCEPTEXSOCKADDRS fn_getacceptexsockaddrs;
static int wsa_status = CP_ENOSYS;
static bool under_wine; /* ntdll exports wine_get_version */

static void *ext_fn(SOCKET s, GUID g) {
  void *fn = NULL;
  DWORD n = 0;
  if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &g, sizeof g, &fn, sizeof fn, &n, NULL, NULL))
    return NULL;
  return fn;
}

static void wsa_init(void) {
  wsa_status = cp__winsock_start();
  if (wsa_status)
    return;
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  under_wine = ntdll && GetProcAddress(ntdll, "wine_get_version");
  wsa_status = CP_ENOSYS;
  SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
  if (s == INVALID_SOCKET)
    return;
  fn_acceptex = (LPFN_ACCEPTEX)ext_fn(s, (GUID)WSAID_ACCEPTEX);
  fn_connectex = (LPFN_CONNECTEX)ext_fn(s, (GUID)WSAID_CONNECTEX);
  fn_getacceptexsockaddrs = (LPFN_GETACCEPTEXSOCKADDRS)ext_fn(s, (GUID)WSAID_GETACCEPTEXSOCKADDRS);
  closesocket(s);
  if (fn_acceptex && fn_connectex && fn_getacceptexsockaddrs)
    wsa_status = 0;
}

static cp__once_t wsa_once = CP__ONCE_INIT;

/* The status a kernel packet carries (an NTSTATUS in OVERLAPPED.Internal) as cport's code. */
static int packet_error(const OVERLAPPED *ov) {
  NTSTATUS st = (NTSTATUS)ov->Internal;
  if (st == 0)
    return 0;
  if (st == (NTSTATUS)0xC0000120L) /* STATUS_CANCELLED */
    return CP_ECANCELED;
  return cp__error_from_win(RtlNtStatusToDosError(st));
}

/* ---- socket entries ------------------------------------------------------------------ */

static unsigned bucket_of(SOCKET s) {
  uint64_t v = (uint64_t)s;
  v ^= v >> 17;
  v *= 0x9E3779B97F4A7C15ull;
  return (unsigned)(v >> 40) & (NBUCKETS - 1);
}

/* The associated entry of s with a reference taken, or NULL. */
static struct sockent *ent_get(cp_port *p, SOCKET s) {
  AcquireSRWLockShared(&p->tmu);
  struct sockent *e = p->buckets[bucket_of(s)];
  while (e && e->s != s)
    e = e->hnext;
  if (e)
    InterlockedIncrement(&e->refs);
  ReleaseSRWLockShared(&p->tmu);
  return e;
}

static void ent_put(cp_port *p, struct sockent *e) {
  if (InterlockedDecrement(&e->refs) != 0)
    return;
  /* Unhashed already (refs hold 1 while associated); back to the free list. */
  AcquireSRWLockExclusive(&p->tmu);
  e->hnext = p->free_ents;
  p->free_ents = e;
  ReleaseSRWLockExclusive(&p->tmu);
}

/* ---- packets we owe ourselves -------------------------------------------------------- */

/* Finish o in user space: its completion is delivered through the port (KEY_DONE). The caller
 * holds o's socket entry lock if it has one. Never fails: PostQueuedCompletionStatus on our own
 * handle fails only without memory, and then we retry. */
static void post_done(cp_port *p, struct op *o, int64_t result) {
  o->result = result;
  o->stage = ST_DONE;
  atomic_fetch_add(&p->inflight, 1);
  while (!PostQueuedCompletionStatus(p->iocp, 0, KEY_DONE, &o->ov))
    Sleep(1);
}

/* A thread is blocked in the kernel while the ready list has ops: wake one (one wake-up packet
 * queued at a time; its taker drains the list and wakes another if ops are left). */
static void ready_wake(cp_port *p) {
  if (atomic_load(&p->blocked) > 0 && atomic_load(&p->nready) > 0 &&
      !atomic_exchange(&p->wake_pending, true)) {
    atomic_fetch_add(&p->n_wakes, 1);
    while (!PostQueuedCompletionStatus(p->iocp, 0, KEY_WAKE, NULL))
      Sleep(1);
  }
}

/* o's kernel part succeeded at once on a socket in skip mode, so no packet will come: put o on
 * the ready list in its place (the caller holds o's entry lock; o stays ST_KERNEL, as with a
 * queued packet, so a cancel finds it finished). */
static void ready_push(cp_port *p, struct op *o, DWORD bytes) {
  assert(o->se && o->se->skip && o->stage == ST_KERNEL);
  o->ov.Internal = 0; /* STATUS_SUCCESS */
  o->ov.InternalHigh = bytes;
  atomic_fetch_add(&p->n_inline, 1);
  atomic_fetch_add(&p->inflight, 1);
  AcquireSRWLockExclusive(&p->rmu);
  fifo_push(&p->ready, o);
  ReleaseSRWLockExclusive(&p->rmu);
  /* nready then blocked here, blocked then nready in wait_slot (both sequentially consistent):
   * either the waiter sees the op, or this sees the waiter and wakes it. */
  atomic_fetch_add(&p->nready, 1);
  ready_wake(p);
}

static struct op *ready_pop(cp_port *p) {
  AcquireSRWLockExclusive(&p->rmu);
  struct op *o = fifo_pop(&p->ready);
  ReleaseSRWLockExclusive(&p->rmu);
  if (o)
    atomic_fetch_sub(&p->nready, 1);
  return o;
}

/* ---- buffers ------------------------------------------------------------------------- */

static void *buf_take(cp_port *p) {
  void *b = NULL;
  AcquireSRWLockExclusive(&p->bmu);
  if (p->nfree)
    b = p->slab + (size_t)p->free_idx[--p->nfree] * p->buf_size;
  ReleaseSRWLockExclusive(&p->bmu);
  return b;
}

static long buf_index(cp_port *p, const void *buf) {
  const char *c = buf;
  if (!p->slab || c < p->slab || c >= p->slab + p->slab_len)
    return -1;
  size_t off = (size_t)(c - p->slab);
  return off % p->buf_size ? -1 : (long)(off / p->buf_size);
}

/* Take o off the starved list (it is there: its stage says so, under its entry lock). */
static void starved_remove(cp_port *p, struct op *o) {
  AcquireSRWLockExclusive(&p->bmu);
  struct fifo keep = {0};
  for (struct op *it; (it = fifo_pop(&p->starved));)
    if (it != o)
      fifo_push(&keep, it);
  p->starved = keep;
  ReleaseSRWLockExclusive(&p->bmu);
}

/* ---- starting kernel I/O ------------------------------------------------------------- */

_Static_assert(sizeof(cp_buf) == sizeof(WSABUF) && offsetof(cp_buf, len) == offsetof(WSABUF, len) &&
                   offsetof(cp_buf, base) == offsetof(WSABUF, buf),
               "cp_buf is laid out as WSABUF");

/* The WSABUFs for what is left of o's buffers after `skip` bytes: the caller's array itself
 * when nothing was sent yet, else a copy of the rest (Winsock copies the array before it
 * returns, so the copy lives for the call only). Returns the count, or CP_ENOMEM. */
static int rest_wsabufs(const cp_buf *bufs, int nbufs, size_t skip, WSABUF *stack, int cap,
                        WSABUF **out) {
  if (!skip) {
    *out = (WSABUF *)(void *)bufs;
    return nbufs;
  }
  int i = 0;
  while (i < nbufs && skip >= bufs[i].len) {
    skip -= bufs[i].len;
    i++;
  }
  int n = nbufs - i;
  WSABUF *w = n <= cap ? stack : mem_alloc((size_t)n * sizeof *w);
  if (!w)
    return CP_ENOMEM;
  memcpy(w, bufs + i, (size_t)n * sizeof *w);
  w[0].buf += skip;
  w[0].len -= (ULONG)skip;
  *out = w;
  return n;
}

enum { KS_PENDING = 0, KS_INLINE = 1 };

/* Start o's kernel part (the caller holds the entry lock). KS_PENDING when a packet will come;
 * KS_INLINE when it succeeded at once on a socket in skip mode (no packet: *bytes says how
 * much, and the caller delivers it); else the error (no packet). */
static int kernel_start(cp_port *p, struct sockent *se, struct op *o, DWORD *bytes) {
  memset(&o->ov, 0, sizeof o->ov);
  o->stage = ST_KERNEL;
  atomic_fetch_add(&p->n_syscalls, 1);
  DWORD flags = 0;
  *bytes = 0;
  int rc;
  switch (o->kind) {
  case CP_OP_RECV:
  case CP_OP_SEND: {
    WSABUF stack[16], *w;
    int n = rest_wsabufs(o->u.io.bufs, o->u.io.nbufs, o->u.io.done, stack, 16, &w);
    if (n < 0)
      return n;
    if (o->kind == CP_OP_RECV)
      rc = WSARecv(se->s, w, (DWORD)n, bytes, &flags, &o->ov, NULL);
    else
      rc = WSASend(se->s, w, (DWORD)n, bytes, 0, &o->ov, NULL);
    if (w != stack && w != (WSABUF *)(void *)o->u.io.bufs)
      mem_free(w);
    break;
  }
  case CP_OP_RECV_POOLED: {
    static char dummy;
    WSABUF w = {.len = 0, .buf = &dummy};
    rc = WSARecv(se->s, &w, 1, bytes, &flags, &o->ov, NULL);
    break;
  }
  default:
    assert(0);
    return CP_EINVAL;
  }
  int err = rc ? WSAGetLastError() : 0;
  if (rc == 0 && se->skip)
    return KS_INLINE;
  if (rc == 0 || err == WSA_IO_PENDING) {
    atomic_fetch_add(&p->inflight, 1);
    return KS_PENDING;
  }
  /* An associated socket the caller closed meanwhile: Linux says EBADF for that. */
  return err == WSAENOTSOCK ? CP_EBADF : cp__error_from_win((DWORD)err);
}

/* Make o the running op of its side and start it (the caller holds the entry lock). Whatever
 * happens, exactly one packet for o follows, or o waits for a buffer. */
static void side_run(cp_port *p, struct sockent *se, struct op *o) {
  bool rd = o->kind != CP_OP_SEND && o->kind != CP_OP_DISCONNECT;
  if (rd)
    se->rd_cur = o;
  else
    se->wr_cur = o;
  if (o->cancelled || o->gen != se->gen || atomic_load(&p->closed)) {
    post_done(p, o, CP_ECANCELED);
    return;
  }
  if (rd && se->rd_shut) {
    post_done(p, o, 0);
    return;
  }
  if (o->kind == CP_OP_DISCONNECT) {
    atomic_fetch_add(&p->n_syscalls, 1);
    int rc = shutdown(se->s, o->how) ? cp__error_from_win((DWORD)WSAGetLastError()) : 0;
    if (rc == 0 && o->how == SD_BOTH) {
      se->rd_shut = true;
      struct op *r = se->rd_cur;
      if (r && r->stage == ST_KERNEL)
        CancelIoEx((HANDLE)se->s, &r->ov); /* completes with 0 (rd_shut) */
      else if (r && r->stage == ST_STARVED) {
        starved_remove(p, r);
        post_done(p, r, 0);
      }
    }
    post_done(p, o, rc);
    return;
  }
  DWORD bytes;
  int rc = kernel_start(p, se, o, &bytes);
  if (rc == KS_INLINE)
    ready_push(p, o, bytes);
  else if (rc)
    post_done(p, o, rc);
}

/* The side's running op was delivered: start the next one waiting. Entry lock held. */
static void side_next(cp_port *p, struct sockent *se, bool rd) {
  struct fifo *q = rd ? &se->rd : &se->wr;
  if (rd)
    se->rd_cur = NULL;
  else
    se->wr_cur = NULL;
  struct op *n = fifo_pop(q);
  if (n)
    side_run(p, se, n);
}

/* ---- Wine: ops left pending by a reset -------------------------------------------------- */

/* Wine 8.0 may never complete an op pending when the peer resets the connection (on Windows it
 * completes with WSAECONNRESET): wineserver stops polling a socket once its poll reports
 * POLLERR/POLLHUP without a hangup, and wakes a pending op only in some of those cases (a send
 * being retried at that moment, a receive whose MSG_PEEK took the error; probe_send_reset,
 * docs/windows.md). So under Wine, every RESET_SCAN_MS, the sockets with a receive or send in
 * the kernel are polled at once (WSAPoll); one whose connection is gone - POLLERR, or POLLHUP
 * with SO_ERROR set (a peer's FIN alone is POLLHUP without an error, and a send may still be
 * pending legitimately then) - has those ops cancelled with CancelIoEx, exactly as
 * cp_port_cancel_op does (one packet each; an op the kernel finished meanwhile keeps its own
 * result), and a cancelled one completes with the reset's error instead of CP_ECANCELED,
 * which is what Windows reports. An op the caller cancelled itself still says CP_ECANCELED.
 * Each tick polls at most SCAN_BATCH sockets, going round the table, so that thousands of idle
 * connections cost wineserver a bounded amount (a poll per socket per call). */
#define RESET_SCAN_MS 100

static bool in_kernel(const struct op *o) {
  return o && o->stage == ST_KERNEL;
}

/* The entry's connection is gone (its lock held): cancel its receive and send in the kernel. */
static void reset_cancel(struct sockent *e, int err) {
  e->reset_err = err;
  struct op *sides[2] = {e->rd_cur, e->wr_cur};
  for (int i = 0; i < 2; i++)
    if (in_kernel(sides[i]))
      CancelIoEx((HANDLE)e->s, &sides[i]->ov);
}

static void reset_scan(cp_port *p) {
  size_t n = 0;
  unsigned b = p->scan_bucket;
  AcquireSRWLockShared(&p->tmu);
  for (unsigned seen = 0; seen < NBUCKETS && n < SCAN_BATCH; seen++, b = (b + 1) % NBUCKETS)
    for (struct sockent *e = p->buckets[b]; e && n < SCAN_BATCH; e = e->hnext) {
      AcquireSRWLockShared(&e->mu);
      if (e->associated && !e->reset_err && (in_kernel(e->rd_cur) || in_kernel(e->wr_cur))) {
        p->scan_fds[n] = (WSAPOLLFD){.fd = e->s, .events = 0};
        p->scan_ents[n] = e;
        p->scan_serials[n] = e->serial;
        n++;
      }
      ReleaseSRWLockShared(&e->mu);
    }
  ReleaseSRWLockShared(&p->tmu);
  p->scan_bucket = b; /* the next tick goes on from here: at most SCAN_BATCH per tick */
  /* One call for them all; it fails as a whole if one of the sockets was closed meanwhile (the
   * next scan will do without it). */
  if (!n)
    return;
  if (WSAPoll(p->scan_fds, (ULONG)n, 0) <= 0)
    return;
  for (size_t i = 0; i < n; i++) {
    SHORT ev = p->scan_fds[i].revents;
    if (!(ev & (POLLERR | POLLHUP)) || (ev & POLLNVAL))
      continue;
    struct sockent *e = p->scan_ents[i]; /* type-stable: lock it, then check it is the same */
    AcquireSRWLockExclusive(&e->mu);
    if (e->associated && e->serial == p->scan_serials[i] && !e->reset_err) {
      int soerr = 0, len = sizeof soerr;
      if (getsockopt(e->s, SOL_SOCKET, SO_ERROR, (char *)&soerr, &len))
        soerr = 0;
      if (soerr || (ev & POLLERR))
        reset_cancel(e, soerr ? cp__error_from_win((DWORD)soerr) : CP_ECONNRESET);
    }
    ReleaseSRWLockExclusive(&e->mu);
  }
}

static void CALLBACK reset_scan_fired(PTP_CALLBACK_INSTANCE inst, PVOID arg, PTP_TIMER tp) {
  (void)inst;
  (void)tp;
  cp_port *p = arg;
  if (atomic_exchange(&p->scanning, true))
    return; /* the previous scan is still running */
  reset_scan(p);
  atomic_store(&p->scanning, false);
}

/* ---- creation, close, destroy -------------------------------------------------------- */

static int parse_env(void) {
  const char *v = getenv("CPORT_BACKEND");
  cp_backend b = CP_BACKEND_AUTO;
  if (v && cp_backend_from_name(v, &b)) {
    cp__log(CP_LOG_ERROR, "cport: CPORT_BACKEND=%s is not one of auto, iocp", v);
    return CP_EINVAL;
  }
  return b == CP_BACKEND_AUTO || b == CP_BACKEND_IOCP ? 0 : CP_ENODEV;
}

/* CPORT_IOCP_SKIP: unset or "1" puts associated sockets in skip-on-success mode, "0" does not. */
static int parse_skip(bool *skip) {
  const char *v = getenv("CPORT_IOCP_SKIP");
  *skip = true;
  if (!v || !strcmp(v, "1"))
    return 0;
  if (!strcmp(v, "0")) {
    *skip = false;
    return 0;
  }
  cp__log(CP_LOG_ERROR, "cport: CPORT_IOCP_SKIP=%s is not 0 or 1", v);
  return CP_EINVAL;
}

int cp_port_create(cp_port **out, const cp_port_options *opts) {
  if (!out)
    return CP_EINVAL;
  *out = NULL;
  cp_port_options o = {0};
  if (opts)
    o = *opts;
  if (o.backend == CP_BACKEND_URING || o.backend == CP_BACKEND_EPOLL)
    return CP_ENODEV;
  if (o.backend != CP_BACKEND_AUTO && o.backend != CP_BACKEND_IOCP)
    return CP_EINVAL;
  if (o.backend == CP_BACKEND_AUTO) {
    int rc = parse_env();
    if (rc)
      return rc;
  }
  if (!o.concurrency)
    o.concurrency = cp__cpu_count();
  if (!o.buf_count)
    o.buf_count = 4096;
  if (!o.buf_size)
    o.buf_size = 4096;
  if (o.queue_depth > 32768 || o.buf_count > 32768 || o.buf_size > (1u << 24) ||
      (o.flags & ~CP_PORT_ONE_WAITER))
    return CP_EINVAL;
  uint32_t count = 1;
  while (count < o.buf_count)
    count <<= 1;

  bool skip;
  int src = parse_skip(&skip);
  if (src)
    return src;
  cp__once(&wsa_once, wsa_init);
  if (wsa_status)
    return wsa_status;

  cp_port *p = mem_calloc(1, sizeof *p);
  if (!p)
    return CP_ENOMEM;
  p->concurrency = o.concurrency;
  p->skip = skip;
  p->id = atomic_fetch_add(&next_port_id, 1);
  p->slots = CreateSemaphoreW(NULL, (LONG)o.concurrency, (LONG)o.concurrency, NULL);
  p->closed_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
  InitializeSRWLock(&p->pmu);
  InitializeSRWLock(&p->tmu);
  InitializeSRWLock(&p->bmu);
  InitializeSRWLock(&p->rmu);
  p->buf_count = count;
  p->buf_size = o.buf_size;
  p->one_waiter = (o.flags & CP_PORT_ONE_WAITER) != 0;
  p->slab_len = (size_t)count * o.buf_size;
  /* Committed but untouched pages cost no memory until a buffer is first written. */
  p->slab = VirtualAlloc(NULL, p->slab_len, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  p->free_idx = mem_alloc(count * sizeof *p->free_idx);
  p->iocp = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, o.concurrency);
  InitializeThreadpoolEnvironment(&p->tpenv);
  p->tpgroup = CreateThreadpoolCleanupGroup();
  if (!p->slab || !p->free_idx || !p->iocp || !p->tpgroup || !p->slots || !p->closed_ev) {
    int rc = p->iocp && p->slab && p->free_idx ? CP_ENOMEM : cp__error_from_win(GetLastError());
    if (p->slots)
      CloseHandle(p->slots);
    if (p->closed_ev)
      CloseHandle(p->closed_ev);
    if (p->iocp)
      CloseHandle(p->iocp);
    if (p->slab)
      VirtualFree(p->slab, 0, MEM_RELEASE);
    if (p->tpgroup)
      CloseThreadpoolCleanupGroup(p->tpgroup);
    mem_free(p->free_idx);
    mem_free(p);
    return rc ? rc : CP_ENOMEM;
  }
  SetThreadpoolCallbackCleanupGroup(&p->tpenv, p->tpgroup, NULL);
  if (under_wine) {
    /* In the cleanup group, so destroy stops it with the timers. Not fatal if it fails. */
    p->scan_timer = CreateThreadpoolTimer(reset_scan_fired, p, &p->tpenv);
    if (p->scan_timer) {
      FILETIME due = {.dwLowDateTime = (DWORD)(-(LONGLONG)RESET_SCAN_MS * 10000),
                      .dwHighDateTime = 0xFFFFFFFFu};
      SetThreadpoolTimer(p->scan_timer, &due, RESET_SCAN_MS, RESET_SCAN_MS / 2);
    }
  }
  /* Hand out low indices first: LIFO from the top of the stack. */
  for (uint32_t i = 0; i < count; i++)
    p->free_idx[i] = count - 1 - i;
  p->nfree = count;
  *out = p;
  return 0;
}

void cp_port_close(cp_port *p) {
  if (!p || atomic_exchange(&p->closed, true))
    return;
  SetEvent(p->closed_ev);
  while (!PostQueuedCompletionStatus(p->iocp, 0, KEY_CLOSE, NULL))
    Sleep(1);
}

static int on_packet(cp_port *p, const OVERLAPPED_ENTRY *e, cp_completion *c, bool discard);

void cp_port_destroy(cp_port *p) {
  if (!p)
    return;
  cp_port_close(p);
  /* Timers: cancel the pending ones, wait for running callbacks. A timer that fired has posted
   * its packet (counted in inflight). */
  CloseThreadpoolCleanupGroupMembers(p->tpgroup, TRUE, NULL);
  p->timers_closed = true;
  CloseThreadpoolCleanupGroup(p->tpgroup);
  DestroyThreadpoolEnvironment(&p->tpenv);
  /* Every socket's kernel I/O: cancelled; the packets are drained below. */
  AcquireSRWLockShared(&p->tmu);
  for (unsigned b = 0; b < NBUCKETS; b++)
    for (struct sockent *e = p->buckets[b]; e; e = e->hnext)
      CancelIoEx((HANDLE)e->s, NULL);
  ReleaseSRWLockShared(&p->tmu);
  /* Starved ops hold nothing of the kernel's; forget them. */
  p->starved = (struct fifo){0};
  OVERLAPPED_ENTRY ent[64];
  cp_completion c;
  unsigned idle = 0;
  while (atomic_load(&p->inflight) > 0 && idle < 100) {
    for (struct op *o; (o = ready_pop(p));) {
      OVERLAPPED_ENTRY re = {.lpCompletionKey = KEY_IO,
                             .lpOverlapped = &o->ov,
                             .dwNumberOfBytesTransferred = (DWORD)o->ov.InternalHigh};
      on_packet(p, &re, &c, true);
    }
    if (atomic_load(&p->inflight) <= 0)
      break;
    ULONG n = 0;
    if (!GetQueuedCompletionStatusEx(p->iocp, ent, 64, &n, 50, FALSE)) {
      idle++; /* ops of sockets the caller closed already completed; 5 s without a packet:
                 give up rather than hang */
      continue;
    }
    for (ULONG i = 0; i < n; i++)
      if (ent[i].lpCompletionKey != KEY_CLOSE && ent[i].lpCompletionKey != KEY_WAKE)
        on_packet(p, &ent[i], &c, true);
  }
  CloseHandle(p->iocp);
  CloseHandle(p->slots);
  CloseHandle(p->closed_ev);
  for (unsigned b = 0; b < NBUCKETS; b++)
    for (struct sockent *e = p->buckets[b], *n; e; e = n) {
      n = e->hnext;
      mem_free(e);
    }
  for (struct sockent *e = p->free_ents, *n; e; e = n) {
    n = e->hnext;
    mem_free(e);
  }
  for (struct post *r = p->free_posts, *n; r; r = n) {
    n = r->next;
    mem_free(r);
  }
  for (void *b = p->free_abufs, *n; b; b = n) {
    memcpy(&n, b, sizeof n);
    mem_free(b);
  }
  VirtualFree(p->slab, 0, MEM_RELEASE);
  mem_free(p->free_idx);
  mem_free(p);
}

cp_backend cp_port_backend(const cp_port *p) {
  return p ? CP_BACKEND_IOCP : CP_BACKEND_AUTO;
}

/* ---- association --------------------------------------------------------------------- */

/* Put s in skip-on-success mode if its provider allows it: only a socket of an IFS provider
 * (XP1_IFS_HANDLES) is a real kernel handle whose completions the kernel skips; a non-IFS
 * layered provider completes through its own path and may still queue a packet (libuv makes
 * the same check). True if the mode is set. */
static bool skip_mode_set(SOCKET s) {
  WSAPROTOCOL_INFOW info;
  int len = sizeof info;
  if (getsockopt(s, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &len) ||
      !(info.dwServiceFlags1 & XP1_IFS_HANDLES))
    return false;
  return SetFileCompletionNotificationModes((HANDLE)s, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                           FILE_SKIP_SET_EVENT_ON_HANDLE);
}

int cp_port_associate(cp_port *p, cp_socket_t sock, void *key) {
  if (!p)
    return CP_EINVAL;
  if (atomic_load(&p->closed))
    return CP_ESHUTDOWN;
  SOCKET s = sock;
  int rc = cp__socket_prepare(s); /* Winsock started, a socket, nonblocking */
  if (rc)
    return rc;
  bool bound = CreateIoCompletionPort((HANDLE)s, p->iocp, KEY_IO, 0) != NULL;
  DWORD err = bound ? 0 : GetLastError();
  /* A handle stays bound to its port until it is closed, so binding fails with
   * ERROR_INVALID_PARAMETER for a socket associated before (and maybe disassociated since).
   * That it was this port is the caller's promise, as with IOCP itself. */
  if (!bound && err != ERROR_INVALID_PARAMETER)
    return cp__error_from_win(err) == CP_EINVAL ? CP_EBADF : cp__error_from_win(err);
  struct sockent *e = ent_get(p, s);
  if (e && !bound) { /* associated already: replace the key */
    AcquireSRWLockExclusive(&e->mu);
    e->key = key;
    ReleaseSRWLockExclusive(&e->mu);
    ent_put(p, e);
    return 0;
  }
  if (e) {
    /* The kernel took the handle, so it is a new socket under the number of one that was
     * closed without cp_port_disassociate: forget that one first. */
    ent_put(p, e);
    cp_port_disassociate(p, sock);
  }
  AcquireSRWLockExclusive(&p->tmu);
  e = p->free_ents;
  if (e)
    p->free_ents = e->hnext;
  ReleaseSRWLockExclusive(&p->tmu);
  if (!e) {
    e = mem_calloc(1, sizeof *e);
    if (!e)
      return CP_ENOMEM;
    InitializeSRWLock(&e->mu);
  } else {
    size_t keep = offsetof(struct sockent, hnext);
    memset((char *)e + keep, 0, sizeof *e - keep);
  }
  e->s = s;
  e->key = key;
  e->refs = 1;
  e->associated = true;
  /* Set before any op can start on the socket (ops need the entry). The mode stays with the
   * handle, so a socket associated again is set again, to the same. */
  e->skip = p->skip && skip_mode_set(s);
  if (e->skip)
    atomic_fetch_add(&p->n_skip_sockets, 1);
  AcquireSRWLockExclusive(&p->tmu);
  /* A racing associate of the same socket: keep the first. */
  struct sockent *other = p->buckets[bucket_of(s)];
  while (other && other->s != s)
    other = other->hnext;
  if (other) {
    other->key = key;
    e->hnext = p->free_ents;
    p->free_ents = e;
  } else {
    e->serial = ++p->next_serial;
    e->hnext = p->buckets[bucket_of(s)];
    p->buckets[bucket_of(s)] = e;
  }
  ReleaseSRWLockExclusive(&p->tmu);
  return 0;
}

/* Cancel everything on the entry (lock held): kernel ops per op, a starved receive at once,
 * waiting ops as they come up (their generation is stale). */
static void ent_cancel(cp_port *p, struct sockent *e) {
  InterlockedIncrement(&e->gen);
  struct op *sides[3] = {e->rd_cur, e->wr_cur, e->conn};
  for (int i = 0; i < 3; i++)
    if (sides[i] && sides[i]->stage == ST_KERNEL)
      CancelIoEx((HANDLE)e->s, &sides[i]->ov);
  for (struct op *a = e->accepts; a; a = a->next)
    CancelIoEx((HANDLE)e->s, &a->ov);
  struct op *r = e->rd_cur;
  if (r && r->stage == ST_STARVED) {
    starved_remove(p, r);
    post_done(p, r, CP_ECANCELED);
  }
}

int cp_port_disassociate(cp_port *p, cp_socket_t sock) {
  if (!p)
    return CP_EINVAL;
  SOCKET s = sock;
  AcquireSRWLockExclusive(&p->tmu);
  struct sockent **pp = &p->buckets[bucket_of(s)];
  while (*pp && (*pp)->s != s)
    pp = &(*pp)->hnext;
  struct sockent *e = *pp;
  if (e)
    *pp = e->hnext;
  ReleaseSRWLockExclusive(&p->tmu);
  if (!e)
    return CP_EBADF;
  AcquireSRWLockExclusive(&e->mu);
  e->associated = false;
  ent_cancel(p, e);
  ReleaseSRWLockExclusive(&e->mu);
  ent_put(p, e); /* the association's reference */
  return 0;
}

int cp_port_cancel(cp_port *p, cp_socket_t sock) {
  if (!p)
    return CP_EINVAL;
  struct sockent *e = ent_get(p, sock);
  if (!e)
    return CP_EBADF;
  AcquireSRWLockExclusive(&e->mu);
  ent_cancel(p, e);
  ReleaseSRWLockExclusive(&e->mu);
  ent_put(p, e);
  return 0;
}

/* ---- starting ops -------------------------------------------------------------------- */

/* Common checks and set-up; on success the entry is returned locked, with a reference that the
 * op holds until it is delivered. */
static int op_begin(cp_port *p, cp_socket_t sock, cp_op *cop, uint8_t kind, struct sockent **out) {
  if (!p || !cop)
    return CP_EINVAL;
  if (atomic_load(&p->closed))
    return CP_ESHUTDOWN;
  if (sock == INVALID_SOCKET)
    return CP_EBADF;
  struct sockent *e = ent_get(p, sock);
  if (!e)
    return CP_EBADF;
  AcquireSRWLockExclusive(&e->mu);
  struct op *o = op_of(cop);
  memset(o, 0, sizeof *o);
  o->se = e;
  o->key = e->key;
  o->gen = e->gen;
  o->kind = kind;
  o->stage = ST_QUEUED;
  *out = e;
  return 0;
}

static void op_end(cp_port *p, struct sockent *e) {
  ReleaseSRWLockExclusive(&e->mu);
  atomic_fetch_add(&p->n_started, 1);
}

/* Queue o on its side, running it at once if the side is free. Entry lock held. */
static void side_submit(cp_port *p, struct sockent *e, struct op *o) {
  bool rd = o->kind != CP_OP_SEND && o->kind != CP_OP_DISCONNECT;
  if (rd ? e->rd_cur : e->wr_cur)
    fifo_push(rd ? &e->rd : &e->wr, o);
  else
    side_run(p, e, o);
}

static int check_bufs(const cp_buf *bufs, int nbufs, size_t *total) {
  if (!bufs || nbufs < 1 || nbufs > CP_BUF_MAX)
    return CP_EINVAL;
  size_t t = 0;
  for (int i = 0; i < nbufs; i++) {
    if (bufs[i].len && !bufs[i].base)
      return CP_EFAULT; /* as the Linux backends answer it */
    t += bufs[i].len;
  }
  if (!t)
    return CP_EINVAL;
  *total = t;
  return 0;
}

static int start_rw(cp_port *p, cp_socket_t sock, cp_op *op, const cp_buf *bufs, int nbufs,
                    uint8_t kind) {
  size_t total;
  int rc = check_bufs(bufs, nbufs, &total);
  if (rc)
    return rc;
  struct sockent *e;
  rc = op_begin(p, sock, op, kind, &e);
  if (rc)
    return rc;
  struct op *o = op_of(op);
  o->u.io.bufs = bufs;
  o->u.io.nbufs = nbufs;
  o->u.io.total = total;
  side_submit(p, e, o);
  op_end(p, e);
  return 0;
}

int cp_port_recv(cp_port *p, cp_socket_t sock, cp_op *op, const cp_buf *bufs, int nbufs) {
  return start_rw(p, sock, op, bufs, nbufs, CP_OP_RECV);
}

int cp_port_send(cp_port *p, cp_socket_t sock, cp_op *op, const cp_buf *bufs, int nbufs) {
  return start_rw(p, sock, op, bufs, nbufs, CP_OP_SEND);
}

int cp_port_recv_pooled(cp_port *p, cp_socket_t sock, cp_op *op) {
  struct sockent *e;
  int rc = op_begin(p, sock, op, CP_OP_RECV_POOLED, &e);
  if (rc)
    return rc;
  side_submit(p, e, op_of(op));
  op_end(p, e);
  return 0;
}

_Static_assert(CP_SHUT_WR == SD_SEND && CP_SHUT_RDWR == SD_BOTH, "shutdown's numbers");

int cp_port_disconnect(cp_port *p, cp_socket_t sock, cp_op *op, int how) {
  if (how != CP_SHUT_WR && how != CP_SHUT_RDWR)
    return CP_EINVAL;
  struct sockent *e;
  int rc = op_begin(p, sock, op, CP_OP_DISCONNECT, &e);
  if (rc)
    return rc;
  op_of(op)->how = (uint8_t)how;
  side_submit(p, e, op_of(op));
  op_end(p, e);
  return 0;
}

#define ADDR_SLOT (sizeof(struct sockaddr_storage) + 16)

int cp_port_accept(cp_port *p, cp_socket_t lsock, cp_op *op, struct sockaddr *addr,
                   socklen_t *addrlen) {
  if (!p || !op)
    return CP_EINVAL;
  if (atomic_load(&p->closed))
    return CP_ESHUTDOWN;
  if ((addr == NULL) != (addrlen == NULL) || (addrlen && *addrlen < 0))
    return CP_EINVAL;
  struct sockaddr_storage ls;
  int lslen = sizeof ls;
  if (lsock == INVALID_SOCKET || getsockname(lsock, (struct sockaddr *)&ls, &lslen))
    return CP_EBADF;
  struct sockent *e;
  int rc = op_begin(p, lsock, op, CP_OP_ACCEPT, &e);
  if (rc)
    return rc;
  struct op *o = op_of(op);
  o->u.acc.addr = addr;
  o->u.acc.addrlen = addrlen;
  o->u.acc.as = INVALID_SOCKET;
  /* The socket to accept into. Without one (WSAEMFILE, WSAENOBUFS: out of sockets or memory)
   * the accept fails as on Linux, where accept() says EMFILE: with a completion, so the
   * caller's back-off is the same on both (a synchronous error would leave it with one accept
   * fewer for good). */
  DWORD fault = cp__iocp_accept_fault ? (DWORD)cp__iocp_accept_fault() : 0;
  SOCKET as = fault ? INVALID_SOCKET
                    : WSASocketW(ls.ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                                 WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  char *abuf = as == INVALID_SOCKET ? NULL : abuf_get(p);
  if (!abuf) {
    int err = as != INVALID_SOCKET ? CP_ENOMEM
                                   : cp__error_from_win(fault ? fault : (DWORD)WSAGetLastError());
    if (as != INVALID_SOCKET)
      closesocket(as);
    post_done(p, o, err);
    op_end(p, e);
    return 0;
  }
  o->u.acc.as = as;
  o->u.acc.abuf = abuf;
  o->stage = ST_KERNEL;
  atomic_fetch_add(&p->n_syscalls, 1);
  DWORD got = 0;
  BOOL now = fn_acceptex(e->s, as, abuf, 0, ADDR_SLOT, ADDR_SLOT, &got, &o->ov);
  if (now && e->skip) {
    ready_push(p, o, got); /* a connection was waiting: no packet will come */
  } else if (now || WSAGetLastError() == WSA_IO_PENDING) {
    atomic_fetch_add(&p->inflight, 1);
    o->next = e->accepts;
    e->accepts = o;
  } else {
    int err = cp__error_from_win((DWORD)WSAGetLastError());
    closesocket(as);
    abuf_put(p, abuf);
    o->u.acc.abuf = NULL;
    o->u.acc.as = INVALID_SOCKET;
    post_done(p, o, err);
  }
  op_end(p, e);
  return 0;
}

int cp_port_connect(cp_port *p, cp_socket_t sock, cp_op *op, const struct sockaddr *addr,
                    socklen_t addrlen) {
  /* as on Linux: an IPv4 or IPv6 address (ConnectEx copies it) */
  if (!addr || addrlen < (socklen_t)sizeof(struct sockaddr_in) ||
      addrlen > (socklen_t)sizeof(struct sockaddr_in6))
    return CP_EINVAL;
  struct sockent *e;
  int rc = op_begin(p, sock, op, CP_OP_CONNECT, &e);
  if (rc)
    return rc;
  struct op *o = op_of(op);
  if (e->conn) { /* one connect at a time */
    ReleaseSRWLockExclusive(&e->mu);
    ent_put(p, e);
    return CP_EALREADY;
  }
  /* ConnectEx needs a bound socket. */
  struct sockaddr_storage me;
  int melen = sizeof me;
  if (getsockname(e->s, (struct sockaddr *)&me, &melen)) {
    struct sockaddr_storage any = {.ss_family = addr->sa_family};
    int anylen =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(e->s, (struct sockaddr *)&any, anylen)) {
      int err = cp__error_from_win((DWORD)WSAGetLastError());
      ReleaseSRWLockExclusive(&e->mu);
      ent_put(p, e);
      return err == CP_EINVAL ? CP_EINVAL : err;
    }
  }
  o->stage = ST_KERNEL;
  atomic_fetch_add(&p->n_syscalls, 1);
  BOOL now = fn_connectex(e->s, addr, addrlen, NULL, 0, NULL, &o->ov);
  if (now && e->skip) {
    e->conn = o;
    ready_push(p, o, 0); /* connected at once: no packet will come */
  } else if (now || WSAGetLastError() == WSA_IO_PENDING) {
    atomic_fetch_add(&p->inflight, 1);
    e->conn = o;
  } else {
    post_done(p, o, cp__error_from_win((DWORD)WSAGetLastError()));
  }
  op_end(p, e);
  return 0;
}

static void CALLBACK timer_fired(PTP_CALLBACK_INSTANCE inst, PVOID arg, PTP_TIMER tp) {
  (void)inst;
  (void)tp;
  struct op *o = arg;
  if (InterlockedCompareExchange(&o->gen, 2, 1) == 1)
    post_done(o->u.timer.port, o, 0);
}

int cp_port_timeout(cp_port *p, cp_op *op, void *key, uint64_t ms) {
  if (!p || !op || ms > UINT64_MAX / 1000000ull / 2) /* the same limit as on Linux */
    return CP_EINVAL;
  if (atomic_load(&p->closed))
    return CP_ESHUTDOWN;
  struct op *o = op_of(op);
  memset(o, 0, sizeof *o);
  o->kind = CP_OP_TIMEOUT;
  o->key = key;
  o->u.timer.port = p;
  o->gen = 1;
  o->stage = ST_KERNEL;
  o->u.timer.tp = CreateThreadpoolTimer(timer_fired, o, &p->tpenv);
  if (!o->u.timer.tp)
    return CP_ENOMEM;
  /* Relative due time in 100 ns units, negative. */
  uint64_t t = ms * 10000; /* fits: ms < 2^64 / 2e6 */
  ULARGE_INTEGER due = {.QuadPart = (ULONGLONG)(-(int64_t)t)};
  FILETIME ft = {.dwLowDateTime = due.LowPart, .dwHighDateTime = due.HighPart};
  atomic_fetch_add(&p->n_started, 1);
  SetThreadpoolTimer(o->u.timer.tp, &ft, 0, 0);
  return 0;
}

/* An AcceptEx address buffer (2 * ADDR_SLOT bytes): a reused one, or NULL if out of memory. */
static char *abuf_get(cp_port *p) {
  AcquireSRWLockExclusive(&p->pmu);
  char *b = p->free_abufs;
  if (b)
    memcpy(&p->free_abufs, b, sizeof p->free_abufs);
  ReleaseSRWLockExclusive(&p->pmu);
  return b ? b : mem_alloc(2 * ADDR_SLOT);
}

/* An address buffer back to the port's free list (NULL: nothing). */
static void abuf_put(cp_port *p, char *b) {
  if (!b)
    return;
  AcquireSRWLockExclusive(&p->pmu);
  memcpy(b, &p->free_abufs, sizeof p->free_abufs);
  p->free_abufs = b;
  ReleaseSRWLockExclusive(&p->pmu);
}

/* A post record back to the port's free list. */
static void post_put(cp_port *p, struct post *r) {
  AcquireSRWLockExclusive(&p->pmu);
  r->next = p->free_posts;
  p->free_posts = r;
  ReleaseSRWLockExclusive(&p->pmu);
}

int cp_port_post(cp_port *p, void *key, cp_op *op, int64_t result) {
  if (!p)
    return CP_EINVAL;
  if (atomic_load(&p->closed))
    return CP_ESHUTDOWN;
  AcquireSRWLockExclusive(&p->pmu);
  struct post *r = p->free_posts;
  if (r)
    p->free_posts = r->next;
  ReleaseSRWLockExclusive(&p->pmu);
  if (!r && !(r = mem_alloc(sizeof *r)))
    return CP_ENOMEM;
  *r = (struct post){op, key, result, NULL};
  atomic_fetch_add(&p->inflight, 1);
  atomic_fetch_add(&p->n_started, 1);
  if (!PostQueuedCompletionStatus(p->iocp, 0, KEY_POST, (OVERLAPPED *)(void *)r)) {
    atomic_fetch_sub(&p->inflight, 1);
    atomic_fetch_sub(&p->n_started, 1);
    post_put(p, r);
    return CP_ENOMEM;
  }
  return 0;
}

int cp_port_cancel_op(cp_port *p, cp_op *cop) {
  if (!p || !cop)
    return CP_EINVAL;
  struct op *o = op_of(cop);
  if (o->kind == CP_OP_TIMEOUT && !o->se) {
    if (o->u.timer.port != p || InterlockedCompareExchange(&o->gen, 2, 1) != 1)
      return CP_ENOENT;
    post_done(p, o, CP_ECANCELED);
    return 0;
  }
  struct sockent *e = o->se;
  if (!e)
    return CP_ENOENT;
  AcquireSRWLockExclusive(&e->mu);
  int rc = CP_ENOENT;
  if (o->se == e) {
    switch (o->stage) {
    case ST_QUEUED:
      o->cancelled = 1; /* cancelled when it comes up */
      rc = 0;
      break;
    case ST_KERNEL:
      o->cancelled = 1;
      if (CancelIoEx((HANDLE)e->s, &o->ov)) {
        rc = 0;
      } else {
        o->cancelled = 0; /* the kernel finished it: its packet is queued */
      }
      break;
    case ST_STARVED:
      starved_remove(p, o);
      post_done(p, o, CP_ECANCELED);
      rc = 0;
      break;
    default:
      break;
    }
  }
  ReleaseSRWLockExclusive(&e->mu);
  return rc;
}

/* ---- Wine: a reset read as the end of the stream ----------------------------------------- */

/* What a receive that read 0 (the end of the stream) reports: the reset scan's error if it
 * found one; under Wine also a reset that wineserver took for itself. When the peer's RST
 * arrives with no receive pending, wineserver reads and clears the socket's error (SO_ERROR)
 * and only marks it reset (server/sock.c of Wine 8.0: sock_error); a receive started later
 * reads 0 from the Linux socket, where Windows fails it with WSAECONNRESET. Its poll still
 * tells: a reset comes back as POLLERR (AFD_POLL_RESET), a FIN as POLLHUP alone. One wineserver
 * call per end of stream, under Wine only. Entry lock held. */
static int eof_result(struct sockent *e) {
  if (e->reset_err || !under_wine)
    return e->reset_err;
  WSAPOLLFD f = {.fd = e->s, .events = 0};
  if (WSAPoll(&f, 1, 0) > 0 && (f.revents & POLLERR) && !(f.revents & POLLNVAL))
    return CP_ECONNRESET;
  return 0;
}

/* ---- pooled receive, second step ----------------------------------------------------- */

enum { POOLED_DELIVER, POOLED_WAIT };

/* The zero-byte read said "readable" (entry lock held): take a buffer and read. A buffer not
 * kept is left in *spare for the caller to release once it holds no entry lock (a release may
 * serve another socket's starved receive). */
static int pooled_read(cp_port *p, struct sockent *e, struct op *o, void *buf, void **spare) {
  if (!buf)
    buf = buf_take(p);
  if (!buf) {
    o->stage = ST_STARVED;
    atomic_fetch_add(&p->n_buf_waits, 1);
    AcquireSRWLockExclusive(&p->bmu);
    fifo_push(&p->starved, o);
    ReleaseSRWLockExclusive(&p->bmu);
    return POOLED_WAIT;
  }
  atomic_fetch_add(&p->n_syscalls, 1);
  int n = recv(e->s, buf, (int)p->buf_size, 0);
  if (n > 0) {
    o->result = n;
    o->u.pooled.buf = buf;
    return POOLED_DELIVER;
  }
  *spare = buf;
  if (n == 0) {
    o->result = eof_result(e); /* 0, or the reset that came first */
    o->u.pooled.buf = NULL;
    return POOLED_DELIVER;
  }
  int err = WSAGetLastError();
  if (err == WSAEWOULDBLOCK) { /* someone else read it: wait for readability again */
    DWORD bytes;
    int rc = kernel_start(p, e, o, &bytes);
    if (rc == KS_INLINE) /* readable again already: its turn comes from the ready list */
      ready_push(p, o, bytes);
    if (rc >= 0)
      return POOLED_WAIT;
    o->result = rc;
  } else {
    o->result = cp__error_from_win((DWORD)err);
  }
  o->u.pooled.buf = NULL;
  return POOLED_DELIVER;
}

void cp_port_buf_release(cp_port *p, void *buf) {
  if (!p || !buf)
    return;
  long idx = buf_index(p, buf);
  if (idx < 0) {
    cp__log(CP_LOG_ERROR, "cport: cp_port_buf_release: %p is not a pooled buffer of this port",
            buf);
    return;
  }
  AcquireSRWLockExclusive(&p->bmu);
  struct op *o = fifo_pop(&p->starved);
  if (!o)
    p->free_idx[p->nfree++] = (uint32_t)idx;
  ReleaseSRWLockExclusive(&p->bmu);
  if (!o)
    return;
  /* A starved receive takes the buffer. Its entry is alive: the op holds a reference. */
  struct sockent *e = o->se;
  void *spare = NULL;
  AcquireSRWLockExclusive(&e->mu);
  if (o->stage != ST_STARVED) { /* cancelled meanwhile: it was taken off the list then */
    spare = buf;
  } else if (o->cancelled || o->gen != e->gen) {
    post_done(p, o, CP_ECANCELED);
    spare = buf;
  } else if (pooled_read(p, e, o, buf, &spare) == POOLED_DELIVER) {
    post_done(p, o, o->result);
  }
  ReleaseSRWLockExclusive(&e->mu);
  if (spare)
    cp_port_buf_release(p, spare);
}

/* ---- completions --------------------------------------------------------------------- */

static void fill(cp_completion *c, struct op *o, int64_t result, void *buf) {
  c->op = (cp_op *)(void *)o;
  c->key = o->key;
  c->result = result;
  c->buf = buf;
  c->kind = (cp_op_kind)o->kind;
}

/* o is done with `result`: give its side to the next op, drop its reference. Entry lock held
 * on entry, released here. */
static void op_release(cp_port *p, struct sockent *e, struct op *o) {
  o->stage = ST_IDLE;
  o->se = NULL;
  if (e->rd_cur == o)
    side_next(p, e, true);
  else if (e->wr_cur == o)
    side_next(p, e, false);
  ReleaseSRWLockExclusive(&e->mu);
  ent_put(p, e);
}

static void accept_unlink(struct sockent *e, struct op *o) {
  for (struct op **pp = &e->accepts; *pp; pp = &(*pp)->next)
    if (*pp == o) {
      *pp = o->next;
      o->next = NULL;
      return;
    }
}

/* The accepted socket, made ready; the peer's address copied out. 0 or an error. */
static int accept_finish(struct sockent *le, struct op *o) {
  SOCKET as = o->u.acc.as;
  if (setsockopt(as, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&le->s, sizeof le->s))
    return cp__error_from_win((DWORD)WSAGetLastError());
  u_long nb = 1;
  ioctlsocket(as, FIONBIO, &nb);
  if (o->u.acc.addr) {
    struct sockaddr *lp, *rp;
    int llen = 0, rlen = 0;
    fn_getacceptexsockaddrs(o->u.acc.abuf, 0, ADDR_SLOT, ADDR_SLOT, &lp, &llen, &rp, &rlen);
    int cap = *o->u.acc.addrlen;
    memcpy(o->u.acc.addr, rp, (size_t)(rlen < cap ? rlen : cap));
    *o->u.acc.addrlen = rlen;
  }
  return 0;
}

/* One packet taken from the kernel port. Returns 1 if it yields a completion for the caller
 * (written to *c), 0 if it was internal. discard: the port is closing - release, deliver
 * nothing, start nothing. */
static int on_packet(cp_port *p, const OVERLAPPED_ENTRY *ent, cp_completion *c, bool discard) {
  assert(ent->lpCompletionKey != KEY_CLOSE && ent->lpCompletionKey != KEY_WAKE);
  atomic_fetch_sub(&p->inflight, 1);
  if (ent->lpCompletionKey == KEY_POST) {
    struct post *r = (struct post *)(void *)ent->lpOverlapped;
    *c = (cp_completion){.op = r->op, .key = r->key, .result = r->result, .kind = CP_OP_POST};
    post_put(p, r);
    return !discard;
  }
  struct op *o = op_of_ov(ent->lpOverlapped);
  if (o->kind == CP_OP_TIMEOUT && !o->se) {
    /* Stop it, wait until its callback (which may have posted this very packet) has left, and
     * free it: after this the op is the caller's again. */
    if (!p->timers_closed) {
      SetThreadpoolTimer(o->u.timer.tp, NULL, 0, 0);
      WaitForThreadpoolTimerCallbacks(o->u.timer.tp, TRUE);
      CloseThreadpoolTimer(o->u.timer.tp);
    }
    o->stage = ST_IDLE;
    fill(c, o, o->result, NULL);
    return !discard;
  }
  struct sockent *e = o->se;
  AcquireSRWLockExclusive(&e->mu);
  bool stale = o->cancelled || o->gen != e->gen;
  void *spare = NULL;

  if (ent->lpCompletionKey == KEY_DONE) {
    void *buf = o->kind == CP_OP_RECV_POOLED ? o->u.pooled.buf : NULL;
    if (o->kind == CP_OP_ACCEPT)
      abuf_put(p, o->u.acc.abuf);
    fill(c, o, o->result, buf);
    op_release(p, e, o);
    if (discard && buf)
      cp_port_buf_release(p, buf);
    return !discard;
  }

  /* KEY_IO: the kernel finished o's I/O. */
  int err = packet_error(&o->ov);
  int64_t bytes = (int64_t)ent->dwNumberOfBytesTransferred;
  switch (o->kind) {
  case CP_OP_ACCEPT: {
    accept_unlink(e, o);
    if (!err && !discard)
      err = accept_finish(e, o);
    abuf_put(p, o->u.acc.abuf);
    if (err || discard)
      closesocket(o->u.acc.as);
    fill(c, o, err ? err : (int64_t)o->u.acc.as, NULL);
    break;
  }
  case CP_OP_CONNECT:
    e->conn = NULL;
    if (!err && setsockopt(e->s, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0))
      err = cp__error_from_win((DWORD)WSAGetLastError());
    fill(c, o, err, NULL);
    break;
  case CP_OP_RECV:
    if (err == CP_ECANCELED && e->rd_shut && !stale)
      err = 0, bytes = 0;
    else if (e->reset_err && !stale && err == CP_ECANCELED)
      err = e->reset_err; /* the reset scan found the connection gone */
    else if (!err && !bytes && o->u.io.total && !stale)
      err = eof_result(e); /* the end of the stream, or a reset that came first */
    fill(c, o, err ? err : bytes, NULL);
    break;
  case CP_OP_SEND:
    if (err == CP_ECANCELED && e->reset_err && !stale)
      err = e->reset_err;
    /* The rest, before any later send; a part that goes out at once (skip mode) continues
     * here without a round trip through the port. */
    while (!err && (o->u.io.done += (size_t)bytes) < o->u.io.total) {
      if (stale || discard) {
        err = CP_ECANCELED;
        break;
      }
      DWORD now;
      int rc = kernel_start(p, e, o, &now);
      if (rc == KS_PENDING) {
        ReleaseSRWLockExclusive(&e->mu);
        return 0;
      }
      if (rc < 0)
        err = rc;
      bytes = now;
    }
    fill(c, o, err ? err : (int64_t)o->u.io.total, NULL);
    break;
  case CP_OP_RECV_POOLED:
    if (err == CP_ECANCELED && e->reset_err && !e->rd_shut && !stale)
      err = e->reset_err;
    if (err == CP_ECANCELED && e->rd_shut && !stale) {
      fill(c, o, 0, NULL);
    } else if (err || discard) {
      fill(c, o, err ? err : CP_ECANCELED, NULL);
    } else if (stale) {
      fill(c, o, CP_ECANCELED, NULL);
    } else if (pooled_read(p, e, o, NULL, &spare) == POOLED_WAIT) {
      ReleaseSRWLockExclusive(&e->mu);
      if (spare)
        cp_port_buf_release(p, spare);
      return 0;
    } else {
      fill(c, o, o->result, o->u.pooled.buf);
    }
    break;
  default:
    assert(0);
    fill(c, o, CP_EIO, NULL);
  }
  op_release(p, e, o);
  if (spare)
    cp_port_buf_release(p, spare);
  return !discard;
}

static int wait_slot(cp_port *p, cp_completion *out, int max, int timeout_ms, uint64_t deadline);

/* ---- the concurrency cap: thread-local slots ---------------------------------------------- */

/* Ids of the ports on which this thread holds a slot (ids are never reused). */
#define HELD 8
static _Thread_local uint64_t held[HELD];
static bool slot_held_drop(cp_port *p) {
  for (int i = 0; i < HELD; i++)
    if (held[i] == p->id) {
      held[i] = 0;
      return true;
    }
  return false;
}

static void slot_keep(cp_port *p) {
  for (int i = 0; i < HELD; i++)
    if (!held[i]) {
      held[i] = p->id;
      return;
    }
  /* More ports than entries on one thread: give the slot back rather than lose it. */
  ReleaseSemaphore(p->slots, 1, NULL);
}

int cp_port_wait(cp_port *p, cp_completion *out, int max, int timeout_ms) {
  if (!p || !out || max < 1)
    return CP_EINVAL;
  if (p->one_waiter) {
    /* CP_PORT_ONE_WAITER: the first thread to wait is the only one that may
     * (the rule is kept on every backend; IOCP itself needs no such promise). */
    uintptr_t me = cp__thread_token(), none = 0;
    if (!atomic_compare_exchange_strong(&p->waiter, &none, me) && none != me)
      return CP_EINVAL;
  }
  if (slot_held_drop(p)) /* back in wait: this thread no longer runs */
    ReleaseSemaphore(p->slots, 1, NULL);
  if (atomic_load(&p->closed))
    return CP_PORT_CLOSED;
  uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : cp__now_ns() + (uint64_t)timeout_ms * 1000000u;
  HANDLE hs[2] = {p->slots, p->closed_ev};
  DWORD w = WaitForMultipleObjects(2, hs, FALSE, timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
  if (w == WAIT_TIMEOUT)
    return 0;
  if (w != WAIT_OBJECT_0)
    return CP_PORT_CLOSED;
  int n = wait_slot(p, out, max, timeout_ms, deadline);
  if (n > 0)
    slot_keep(p);
  else
    ReleaseSemaphore(p->slots, 1, NULL);
  return n;
}

/* Up to cap ops from the ready list, each handled as its packet would be; the count of
 * completions for the caller written to out. */
static int ready_drain(cp_port *p, cp_completion *out, int cap) {
  int k = 0;
  struct op *o;
  while (k < cap && (o = ready_pop(p))) {
    OVERLAPPED_ENTRY re = {.lpCompletionKey = KEY_IO,
                           .lpOverlapped = &o->ov,
                           .dwNumberOfBytesTransferred = (DWORD)o->ov.InternalHigh};
    k += on_packet(p, &re, &out[k], false);
  }
  return k;
}

/* How often cp_port_wait looks at the kernel port before the ready list when both may have
 * completions (see wait_slot). */
#define READY_STREAK_MAX 8

/* cp_port_wait with a slot held. */
static int wait_slot(cp_port *p, cp_completion *out, int max, int timeout_ms, uint64_t deadline) {
  OVERLAPPED_ENTRY ent[64];
  ULONG cap = max < 64 ? (ULONG)max : 64;
  for (;;) {
    /* The ready list first: no system call for what finished at once. Every
     * READY_STREAK_MAX-th time the kernel port is looked at first (without waiting), so a
     * stream of inline successes cannot hold back posts, timers and other sockets' packets. */
    int k = 0;
    bool look_now = false;
    if (atomic_load(&p->nready) > 0) {
      AcquireSRWLockExclusive(&p->rmu);
      look_now = ++p->ready_streak >= READY_STREAK_MAX;
      if (look_now)
        p->ready_streak = 0;
      ReleaseSRWLockExclusive(&p->rmu);
      if (!look_now && (k = ready_drain(p, out, (int)cap)) > 0) {
        atomic_fetch_add(&p->n_completed, (uint64_t)k);
        return k;
      }
    }
    DWORD wait_ms = INFINITE;
    if (look_now) {
      wait_ms = 0;
    } else if (timeout_ms >= 0) {
      uint64_t now = cp__now_ns();
      wait_ms = now >= deadline ? 0 : (DWORD)((deadline - now + 999999u) / 1000000u);
    }
    bool blocking = wait_ms != 0;
    if (blocking) {
      /* blocked then nready here, nready then blocked in ready_push: see there. */
      atomic_fetch_add(&p->blocked, 1);
      if (atomic_load(&p->nready) > 0) { /* an op became ready meanwhile: take it instead */
        atomic_fetch_sub(&p->blocked, 1);
        continue;
      }
    }
    ULONG n = 0;
    atomic_fetch_add(&p->n_syscalls, 1);
    atomic_fetch_add(&p->n_gqcs, 1);
    BOOL got = GetQueuedCompletionStatusEx(p->iocp, ent, cap, &n, wait_ms, FALSE);
    DWORD gerr = got ? 0 : GetLastError();
    if (blocking)
      atomic_fetch_sub(&p->blocked, 1);
    if (!got) {
      if (atomic_load(&p->closed))
        return CP_PORT_CLOSED;
      if (gerr != WAIT_TIMEOUT)
        return cp__error_from_win(gerr);
      if (look_now || atomic_load(&p->nready) > 0) /* a look only, or ready ops to take */
        continue;
      return 0;
    }
    bool closing = false;
    for (ULONG i = 0; i < n; i++)
      if (ent[i].lpCompletionKey == KEY_CLOSE)
        closing = true;
      else if (ent[i].lpCompletionKey == KEY_WAKE)
        atomic_store(&p->wake_pending, false); /* taken: the next push may wake again */
    if (closing)                               /* pass it on to the next waiter */
      while (!PostQueuedCompletionStatus(p->iocp, 0, KEY_CLOSE, NULL))
        Sleep(1);
    for (ULONG i = 0; i < n; i++)
      if (ent[i].lpCompletionKey != KEY_CLOSE && ent[i].lpCompletionKey != KEY_WAKE) {
        atomic_fetch_add(&p->n_packets, 1);
        k += on_packet(p, &ent[i], &out[k], closing);
      }
    if (closing)
      return CP_PORT_CLOSED;
    /* What the packets made ready (the next op of a side, started at once) goes out with
     * them; what is left wakes a blocked waiter. */
    if (k < (int)cap && atomic_load(&p->nready) > 0)
      k += ready_drain(p, out + k, (int)cap - k);
    ready_wake(p);
    if (k > 0) {
      atomic_fetch_add(&p->n_completed, (uint64_t)k);
      return k;
    }
    if (timeout_ms >= 0 && cp__now_ns() >= deadline)
      return 0;
  }
}

void cp_port_get_stats(const cp_port *p, cp_port_stats *out) {
  if (!p || !out)
    return;
  cp_port *q = (cp_port *)p;
  out->started = atomic_load_explicit(&q->n_started, memory_order_relaxed);
  out->completed = atomic_load_explicit(&q->n_completed, memory_order_relaxed);
  out->syscalls = atomic_load_explicit(&q->n_syscalls, memory_order_relaxed);
  out->buf_waits = atomic_load_explicit(&q->n_buf_waits, memory_order_relaxed);
}

void cp__iocp_get_counts(const cp_port *p, cp__iocp_counts *out) {
  cp_port *q = (cp_port *)p;
  *out = (cp__iocp_counts){.skip = q->skip,
                           .gqcs = atomic_load(&q->n_gqcs),
                           .packets = atomic_load(&q->n_packets),
                           .inline_ok = atomic_load(&q->n_inline),
                           .wakes = atomic_load(&q->n_wakes),
                           .skip_sockets = atomic_load(&q->n_skip_sockets)};
}

#endif /* _WIN32 */
