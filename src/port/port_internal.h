/*
 * port_internal.h - what the port core and its backends share.
 *
 * The core (port.c) owns the parts of IOCP that do not depend on the kernel
 * interface: the fd table, the ready queue, the leader/follower wait loop, the
 * concurrency cap and close. A backend (uring.c, epoll.c) starts ops, polls the
 * kernel and turns what it finds into completions. Only one thread at a time
 * polls (the "poller"); the others wait on a condition variable and take ready
 * completions, so a completion goes to exactly one thread.
 */
#ifndef CPORT_PORT_INTERNAL_H
#define CPORT_PORT_INTERNAL_H

#include "cport/port.h"

#include "common/heap.h"
#include "common/mem.h"
#include "platform/platform.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>

/* An op's state, as far as the port is concerned. */
enum op_state {
  OPS_IDLE = 0, /* never started, or its completion was handed out */
  OPS_QUEUED,   /* waiting in a per-fd queue in user space */
  OPS_INFLIGHT, /* with the kernel (uring) or being tried (epoll) */
  OPS_STARVED,  /* pooled recv waiting for a free buffer */
  OPS_TIMER,    /* epoll timer in the heap */
  OPS_DONE,     /* completion produced, not yet handed out */
};

/* The private view of a cp_op. Kept small: an idle session embeds one. */
struct op {
  struct op *next;        /* per-fd queue; uring: also the starved list */
  void *key;              /* completion key, copied at start */
  struct iovec *iov_rest; /* port-owned copy of what is left to send, or NULL */
  int64_t done;           /* bytes already sent (partial sends); epoll connect: issued */
  int fd;                 /* -1 for timers */
  uint32_t gen;           /* the fd's gen word at start (fdent.gen: associated, generation) */
  uint8_t kind;           /* cp_op_kind */
  uint8_t state;          /* enum op_state */
  uint16_t how;           /* disconnect: SHUT_WR / SHUT_RDWR; OPF_* flags above */
  union {
    struct msghdr msg; /* recv/send: msg_iov and msg_iovlen are the op's iovecs */
    struct {
      struct sockaddr *addr;
      socklen_t *addrlen;
    } accept;
    struct {
      /* a copy: the caller's address may go once cp_port_connect returns,
       * while the kernel reads it when the op is submitted (later, if it
       * waits in the fd's queue or the submission ring) */
      struct sockaddr_in6 addr; /* AF_INET or AF_INET6 */
      socklen_t addrlen;
    } connect;
    struct {
      struct cp__timespec {
        int64_t tv_sec, tv_nsec;
      } ts;                      /* uring: the relative time (as __kernel_timespec) */
      struct cp__heap_node node; /* epoll: key = deadline (cp__now_ns) */
    } timer;
  } u;
};

_Static_assert(sizeof(struct op) <= sizeof(cp_op), "struct op must fit in cp_op");

static inline struct op *op_of(cp_op *o) {
  return (struct op *)(void *)o;
}
static inline cp_op *cp_op_of(struct op *o) {
  return (cp_op *)(void *)o;
}

/* Read side: ops that take data in; write side: ops that put data out. */
static inline bool op_is_read(uint8_t kind) {
  return (1u << (kind & 31)) & (1u << CP_OP_RECV | 1u << CP_OP_RECV_POOLED | 1u << CP_OP_ACCEPT);
}

/* A FIFO of ops linked through op->next, kept as its tail alone: the list is
 * circular, so tail->next is the head. One pointer per queue keeps the fd
 * table small (an idle connection costs its fd entry). */
struct opq {
  struct op *tail;
};

static inline struct op *opq_head(const struct opq *q) {
  return q->tail ? q->tail->next : NULL;
}

/* o becomes the head (the oldest): a parked op going back in front. */
static inline void opq_push_front(struct opq *q, struct op *o) {
  if (q->tail) {
    o->next = q->tail->next; /* after the tail: the head of a circular list */
    q->tail->next = o;
  } else {
    o->next = o;
    q->tail = o;
  }
}

static inline void opq_push(struct opq *q, struct op *o) {
  opq_push_front(q, o);
  q->tail = o; /* the head just inserted becomes the tail instead */
}

static inline struct op *opq_pop(struct opq *q) {
  struct op *h = opq_head(q);
  if (!h)
    return NULL;
  if (h == q->tail)
    q->tail = NULL;
  else
    q->tail->next = h->next;
  h->next = NULL;
  return h;
}

/* Unlink it, queued in q after prev (prev == it: it is alone). */
static inline void opq_unlink(struct opq *q, struct op *prev, struct op *it) {
  assert(prev->next == it);
  if (it == prev) {
    q->tail = NULL;
  } else {
    prev->next = it->next;
    if (q->tail == it)
      q->tail = prev;
  }
  it->next = NULL;
}

/* Unlink o if it is queued here; true if it was. */
static inline bool opq_remove(struct opq *q, struct op *o) {
  if (!q->tail)
    return false;
  struct op *prev = q->tail;
  do {
    struct op *it = prev->next;
    if (it == o) {
      opq_unlink(q, prev, it);
      return true;
    }
    prev = it;
  } while (prev != q->tail);
  return false;
}

/* An fd's queue holds both sides' ops, in start order (one pointer in the fd
 * entry, not two: an idle connection costs its entry). A side's ops keep
 * their order; its head is the oldest op of that side (op_is_read), found
 * by a walk that passes over the other side's (at most a few: the engine
 * queues one recv and one send at a time). */
static inline struct op *opq_side_head(const struct opq *q, bool rd, struct op **prev) {
  struct op *t = q->tail, *pv = t;
  if (!t)
    return NULL;
  for (;;) {
    struct op *it = pv->next;
    if (op_is_read(it->kind) == rd) {
      *prev = pv;
      return it;
    }
    if (it == t)
      return NULL;
    pv = it;
  }
}

/* Unlink and return the head of one side, or NULL. */
static inline struct op *opq_side_pop(struct opq *q, bool rd) {
  struct op *pv;
  struct op *h = opq_side_head(q, rd, &pv);
  if (h)
    opq_unlink(q, pv, h);
  return h;
}

/* One per associated fd. Lives in a two-level table that never moves. */
struct fdent {
  /* key and the associated bit of gen are written under lock, read without
   * it by op starts (gen with acquire, then key): see begin() in port.c. */
  _Atomic(void *) key;
  /* Ops waiting in user space, both sides in one FIFO (opq_side_head):
   * read side recv / recv_pooled / (epoll) accept, write side send /
   * disconnect / (epoll) connect. */
  struct opq q;
  /* Bit 0 (FDE_ASSOC): associated. The rest: the cancel generation, bumped
   * (FDE_GEN_STEP) by cancel and disassociate, so ops resubmitted later see
   * it; an op keeps the whole word it started under (op.gen). One word: an
   * idle connection costs its fd entry. */
  _Atomic uint32_t gen;
  cp__spin lock; /* key/associated writes; epoll: the queues and the I/O attempts */
  union {        /* one backend per port: each has its own three bytes */
    struct __attribute__((packed)) {
      uint8_t busy;        /* FDE_RD_BUSY / FDE_WR_BUSY: that side has an op with the kernel;
                              FDE_FIXED: the fd is in the ring's registered file table */
      uint16_t kernel_ops; /* ops of this fd with the kernel (at most UINT16_MAX) */
    } ur;                  /* uring, guarded by its lock */
    uint8_t starved[3];    /* epoll, guarded by its lock: the starved list's link, 24 bits
                              (epoll.c: starved_link) */
  };
};

enum {
  FDE_ASSOC = 1u,    /* fdent.gen: associated */
  FDE_GEN_STEP = 2u, /* fdent.gen: one cancel generation */
  FDE_RD_BUSY = 1u,  /* fdent.ur.busy */
  FDE_WR_BUSY = 2u,
  FDE_FIXED = 4u, /* fdent.ur.busy: registered file slot fd holds this fd (uring.c) */
};

/* An idle connection costs its fd entry (and the engine's session with its
 * cp_ops): the memory goals in docs/performance.md depend on these sizes. */
_Static_assert(sizeof(struct fdent) == 24, "the fd entry is 24 bytes (issue 13's idle memory)");
_Static_assert(offsetof(struct fdent, ur) == 21 && sizeof(((struct fdent *)0)->ur) == 3,
               "the backends' bytes are the entry's last three");
_Static_assert(sizeof(cp_op) == 104, "cp_op is part of the ABI and of the session's size");

/* Is e associated (acquire: the key stored before the bit is visible)? */
static inline bool fdent_associated(struct fdent *e) {
  return atomic_load_explicit(&e->gen, memory_order_acquire) & FDE_ASSOC;
}

#define FDT_CHUNK_BITS 10
#define FDT_CHUNK (1u << FDT_CHUNK_BITS)
#define FDT_CHUNKS 1024 /* 1M fds */
_Static_assert(FDT_CHUNK *FDT_CHUNKS < 0xffffff, "an fd + 1 fits epoll's 24-bit starved link");

struct fdtable {
  _Atomic(struct fdent *) chunks[FDT_CHUNKS];
  cp__mutex grow;
};

int cp__fdtable_init(struct fdtable *t);
void cp__fdtable_free(struct fdtable *t);
/* The entry for fd, or NULL if fd is out of range or was never touched.
 * Inline: every op start and completion looks its fd up, several times. */
static inline struct fdent *cp__fdtable_get(struct fdtable *t, int fd) {
  if (fd < 0 || (unsigned)fd >= FDT_CHUNK * FDT_CHUNKS)
    return NULL;
  struct fdent *c =
      atomic_load_explicit(&t->chunks[(unsigned)fd >> FDT_CHUNK_BITS], memory_order_acquire);
  return c ? &c[(unsigned)fd & (FDT_CHUNK - 1)] : NULL;
}
/* The entry for fd, created if needed. NULL for out of range or -ENOMEM. */
struct fdent *cp__fdtable_make(struct fdtable *t, int fd);

/* Pooled receive buffers: one slab, indexed. */
struct bufpool {
  char *slab;
  size_t slab_len;
  uint32_t count;
  uint32_t size;
};

int cp__bufpool_init(struct bufpool *b, uint32_t count, uint32_t size);
/* Ask the kernel to back the pool with transparent huge pages (MADV_HUGEPAGE):
 * for a backend that goes round every buffer of the pool, whose first touch of
 * each buffer would otherwise miss the TLB. 0, or a CP_E* code (the pool works
 * either way). */
int cp__bufpool_huge(struct bufpool *b);
void cp__bufpool_free(struct bufpool *b);
static inline void *bufpool_addr(const struct bufpool *b, uint32_t idx) {
  return b->slab + (size_t)idx * b->size;
}
/* The index of buf, or -1 if buf is not a buffer of this pool. */
long cp__bufpool_index(const struct bufpool *b, const void *buf);

struct backend;

struct cp_port {
  const struct backend *be;
  void *be_data;
  cp_backend backend;
  uint64_t id; /* unique, so thread-local concurrency slots never confuse ports */

  struct fdtable fds;
  struct bufpool bufs;
  unsigned queue_depth;
  unsigned concurrency;
  bool one_waiter; /* CP_PORT_ONE_WAITER */
  bool keep_bufs;  /* destroy: the kernel may still write the pool; do not free it */

  /* Everything below up to the counters is guarded by mu. */
  cp__mutex mu;
  cp__cond cv;
  cp_completion *ready; /* ring of completions ready to hand out */
  uint32_t ready_cap, ready_head, ready_len;
  uint64_t ready_pushed, ready_taken; /* totals: which queued ones predate a poll */
  unsigned waiters;                   /* threads blocked on cv */
  unsigned active;                    /* threads released and not back in cp_port_wait */
  bool polling;                       /* a thread holds the poller role */
  bool drained;                       /* one_waiter: closed, and be->drain has run */
  _Atomic uintptr_t waiter; /* one_waiter: the waiting thread's cp__thread_token (set once) */
  uint32_t ready_streak;    /* waits served from the ready ring since the last poll */
  _Atomic bool in_kernel;   /* the poller is (about to be) blocked in the kernel */
  _Atomic bool closed;

  _Atomic uint64_t n_started, n_completed, n_syscalls, n_buf_waits;
};

/* The backend vtable. Every entry is called without port->mu held. */
struct backend {
  const char *name;
  /* Is this backend usable here? 0, or -errno explaining why not. */
  int (*probe)(void);
  int (*init)(cp_port *p);
  /* Cancel and reap everything, free backend state. Called once, last. */
  void (*destroy)(cp_port *p);
  int (*associate)(cp_port *p, int fd, struct fdent *e);
  /* Cancel every op on fd (fdent's gen was already bumped). */
  int (*cancel_fd)(cp_port *p, int fd, struct fdent *e, bool forget);
  int (*cancel_op)(cp_port *p, struct op *o);
  /* Start a validated op. 0, or -errno and nothing started. */
  int (*start)(cp_port *p, struct op *o, struct fdent *e);
  /* Only the poller calls this. Wait up to timeout_ms (-1 forever) for kernel
   * events; fill out[] with up to max completions and return the count (it may
   * also push completions with cp__port_emit). 0 means nothing for the caller (a
   * timeout, a wake-up, or only internal work). */
  int (*poll)(cp_port *p, cp_completion *out, int max, int timeout_ms);
  /* Make a poller that is blocked in the kernel return soon. */
  void (*wake)(cp_port *p);
  void (*buf_release)(cp_port *p, uint32_t idx);
  /* Optional, for CP_PORT_ONE_WAITER: the port is closed and its waiting
   * thread (the only one that may enter the kernel) is here: cancel and reap
   * everything in flight, as destroy would, so destroy may run elsewhere. */
  void (*drain)(cp_port *p);
  /* Optional: is kernel-side work waiting for a poll (ops not yet handed to
   * the kernel)? Read without the port lock; a hint. */
  bool (*has_work)(cp_port *p);
};

extern const struct backend cp__backend_uring;
extern const struct backend cp__backend_epoll;

/*
 * Queue a completion for the waiters (used for posts, for completions found
 * outside the poller, and for the poller's overflow). Never fails: the ready
 * ring grows, and if that allocation fails the caller spins until it can.
 */
void cp__port_emit(cp_port *p, const cp_completion *c);
/* Several at once, under one lock. */
void cp__port_emit_many(cp_port *p, const cp_completion *c, int n);
/* Like cp__port_emit_many but never calls the backend's wake(): returns true if
 * the caller must call it (after dropping its own locks). */
bool cp__port_queue(cp_port *p, const cp_completion *c, int n);
/* The poller, after setting in_kernel and before blocking: is a completion
 * waiting in the ready ring? (One queued before in_kernel went up did not
 * wake it; one queued after does.) Takes p->mu. */
bool cp__port_has_ready(cp_port *p);

/* Count one kernel entry made by the port (cp_port_stats.syscalls). */
static inline void cp__count_syscall(cp_port *p) {
  atomic_fetch_add_explicit(&p->n_syscalls, 1, memory_order_relaxed);
}

/*
 * A sink gathers the completions a backend finds, usually while it holds
 * its own locks: first into the caller's out[] (the poller's batch), then
 * into a spill that goes to the ready ring. Queueing the spill never wakes
 * the poller under those locks (a backend's wake() may take them); the need
 * is noted and cp__sink_flush() acts on it once the locks are dropped.
 */
struct sink {
  cp_completion *out;
  int n, max;
  cp_completion spill[64];
  int nspill;
  bool wake; /* a queued spill needs the poller woken */
};

/* A sink that fills out[0..max-1] first (out may be NULL with max 0). */
static inline void cp__sink_init(struct sink *s, cp_completion *out, int max) {
  s->out = out;
  s->n = 0;
  s->max = max;
  s->nspill = 0;
  s->wake = false;
}
/* Complete o with res (and buf) into the sink; frees o's partial-send copy.
 * Safe under any backend lock. */
void cp__sink_put(cp_port *p, struct sink *s, struct op *o, int64_t res, void *buf);
/* Complete every op of q, in order, with res. */
void cp__sink_drain(cp_port *p, struct sink *s, struct opq *q, int64_t res);
/* Hand the spill to the waiters and wake the poller if needed. Call with no
 * backend lock held. */
void cp__sink_flush(cp_port *p, struct sink *s);

/* Fill a completion for a finished op and mark the op idle. */
static inline void op_complete(struct op *o, cp_completion *c, int64_t result, void *buf) {
  c->op = cp_op_of(o);
  c->key = o->key;
  c->result = result;
  c->buf = buf;
  c->kind = (cp_op_kind)o->kind;
  o->state = OPS_DONE;
}

/* Make sure sock is an open socket and put it in the mode the backends
 * need (nonblocking on POSIX): 0, CP_EBADF (not open) or CP_ENOTSOCK.
 * socket_posix.c / socket_win32.c. */
int cp__socket_prepare(cp_socket_t sock);

/* Give back the iov copy made after a partial send. */
void cp__op_free_rest(struct op *o);
/* Advance o's iovecs past n more sent bytes. 1 if all was sent, 0 if some is
 * left (o->u.msg.msg_iov now points at a port-owned copy of the rest), -ENOMEM. */
int cp__op_advance_send(struct op *o, size_t n);

#endif /* CPORT_PORT_INTERNAL_H */
