/*
 * port.c - the completion port's core: creation and backend choice, the fd
 * table, argument checks, the ready queue, and cp_port_wait().
 *
 * Waiting is leader/follower. At most one waiting thread holds the "poller"
 * role and blocks in the kernel (io_uring_enter or epoll_wait); the others
 * sleep on a condition variable. When the poller comes back with completions
 * it returns them to its caller and signals a follower to take the role over,
 * so the kernel is always watched and each completion is handed to exactly one
 * thread. Completions that appear elsewhere (posts, epoll ops that finish at
 * once, a poller's overflow) go through the ready ring under `mu`; an emitter
 * wakes a follower, or the poller through the backend's wake() when nobody
 * else could take them.
 *
 * The concurrency cap is IOCP's: a thread counts as running from the moment
 * cp_port_wait() hands it completions until it calls cp_port_wait() on the
 * same port again. Threads over the cap stay asleep even if work is queued.
 */
#define _GNU_SOURCE
#include "port/port_internal.h"

#include "common/log.h"

#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_QUEUE_DEPTH 1024u
#define DEFAULT_BUF_COUNT 4096u
#define DEFAULT_BUF_SIZE 4096u
#define MAX_BUF_COUNT 32768u /* io_uring's provided-buffer ring limit */

static _Atomic uint64_t next_port_id = 1;

/* Waits served from the ready ring in a row before one polls the kernel. */
#define READY_STREAK_MAX 8

/* ---- thread-local concurrency slots ---------------------------------- */

/* Ids of the ports on which this thread currently counts as running. Ids are
 * never reused, so an entry left by a destroyed port is simply never matched. */
#define SLOTS 8
static _Thread_local uint64_t held_slots[SLOTS];

static bool slot_take_back(cp_port *p) {
  for (int i = 0; i < SLOTS; i++)
    if (held_slots[i] == p->id) {
      held_slots[i] = 0;
      return true;
    }
  return false;
}

static void slot_hold(cp_port *p) {
  int free_i = -1;
  for (int i = 0; i < SLOTS; i++) {
    if (held_slots[i] == p->id)
      return;
    if (!held_slots[i] && free_i < 0)
      free_i = i;
  }
  if (free_i < 0) {
    /* More ports than slots on one thread: forget the oldest. Its port keeps
     * counting this thread until the thread waits there again. */
    memmove(held_slots, held_slots + 1, sizeof held_slots - sizeof held_slots[0]);
    free_i = SLOTS - 1;
  }
  held_slots[free_i] = p->id;
}

/* ---- creation -------------------------------------------------------- */

static int parse_backend_env(cp_backend *out) {
  const char *v = getenv("CPORT_BACKEND");
  if (!v) {
    *out = CP_BACKEND_AUTO;
    return 0;
  }
  int rc = cp_backend_from_name(v, out);
  if (rc)
    cp__log(CP_LOG_ERROR, "cport: CPORT_BACKEND=%s is not one of auto, uring, epoll", v);
  return rc;
}

static int choose_backend(cp_backend want, const struct backend **be, cp_backend *got) {
  if (want == CP_BACKEND_AUTO) {
    int rc = parse_backend_env(&want);
    if (rc)
      return rc;
  }
  if (want == CP_BACKEND_IOCP)
    return CP_ENODEV; /* Windows only */
  if (want == CP_BACKEND_EPOLL) {
    *be = &cp__backend_epoll;
    *got = CP_BACKEND_EPOLL;
    return 0;
  }
  int rc = cp__backend_uring.probe();
  if (rc == 0) {
    *be = &cp__backend_uring;
    *got = CP_BACKEND_URING;
    return 0;
  }
  if (want == CP_BACKEND_URING) {
    cp__log(CP_LOG_WARN, "cport: the uring backend was asked for but io_uring is unavailable: %s",
            cp_strerror(rc));
    return CP_ENODEV;
  }
  static _Atomic bool logged;
  if (!atomic_exchange(&logged, true))
    cp__log(CP_LOG_INFO, "cport: io_uring unavailable (%s), using epoll", cp_strerror(rc));
  *be = &cp__backend_epoll;
  *got = CP_BACKEND_EPOLL;
  return 0;
}

static uint32_t round_pow2(uint32_t v) {
  uint32_t r = 1;
  while (r < v)
    r <<= 1;
  return r;
}

int cp_port_create(cp_port **out, const cp_port_options *opts) {
  if (!out)
    return CP_EINVAL;
  *out = NULL;
  cp_port_options o = {0};
  if (opts)
    o = *opts;
  if (o.backend != CP_BACKEND_AUTO && o.backend != CP_BACKEND_URING &&
      o.backend != CP_BACKEND_EPOLL && o.backend != CP_BACKEND_IOCP)
    return CP_EINVAL;
  if (!o.concurrency)
    o.concurrency = cp__cpu_count();
  if (!o.queue_depth)
    o.queue_depth = DEFAULT_QUEUE_DEPTH;
  if (!o.buf_count)
    o.buf_count = DEFAULT_BUF_COUNT;
  if (!o.buf_size)
    o.buf_size = DEFAULT_BUF_SIZE;
  if (o.queue_depth > 32768 || o.buf_count > MAX_BUF_COUNT || o.buf_size > (1u << 24) ||
      (o.flags & ~CP_PORT_ONE_WAITER))
    return CP_EINVAL;

  const struct backend *be;
  cp_backend which;
  int rc = choose_backend(o.backend, &be, &which);
  if (rc)
    return rc;

  cp_port *p = mem_calloc(1, sizeof *p);
  if (!p)
    return CP_ENOMEM;
  p->be = be;
  p->backend = which;
  p->id = atomic_fetch_add(&next_port_id, 1);
  p->queue_depth = o.queue_depth;
  p->concurrency = o.concurrency;
  p->one_waiter = (o.flags & CP_PORT_ONE_WAITER) != 0;
  p->ready_cap = 2 * round_pow2(o.queue_depth);
  p->ready = mem_alloc(p->ready_cap * sizeof *p->ready);
  if (!p->ready) {
    mem_free(p);
    return CP_ENOMEM;
  }
  rc = cp__cond_init(&p->cv);
  if (rc) {
    mem_free(p->ready);
    mem_free(p);
    return rc;
  }
  cp__mutex_init(&p->mu);
  rc = cp__fdtable_init(&p->fds);
  if (!rc)
    rc = cp__bufpool_init(&p->bufs, round_pow2(o.buf_count), o.buf_size);
  if (!rc)
    rc = be->init(p);
  if (rc) {
    cp__bufpool_free(&p->bufs);
    cp__fdtable_free(&p->fds);
    cp__cond_destroy(&p->cv);
    cp__mutex_destroy(&p->mu);
    mem_free(p->ready);
    mem_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

void cp_port_close(cp_port *p) {
  if (!p || atomic_exchange(&p->closed, true))
    return;
  cp__mutex_lock(&p->mu);
  cp__cond_broadcast(&p->cv);
  cp__mutex_unlock(&p->mu);
  p->be->wake(p);
}

void cp_port_destroy(cp_port *p) {
  if (!p)
    return;
  cp_port_close(p);
  p->be->destroy(p);
  if (!p->keep_bufs)
    cp__bufpool_free(&p->bufs);
  cp__fdtable_free(&p->fds);
  cp__cond_destroy(&p->cv);
  cp__mutex_destroy(&p->mu);
  mem_free(p->ready);
  mem_free(p);
}

cp_backend cp_port_backend(const cp_port *p) {
  return p ? p->backend : CP_BACKEND_AUTO;
}

void cp_port_get_stats(const cp_port *p, cp_port_stats *s) {
  if (!p || !s)
    return;
  s->started = atomic_load_explicit(&p->n_started, memory_order_relaxed);
  s->completed = atomic_load_explicit(&p->n_completed, memory_order_relaxed);
  s->syscalls = atomic_load_explicit(&p->n_syscalls, memory_order_relaxed);
  s->buf_waits = atomic_load_explicit(&p->n_buf_waits, memory_order_relaxed);
}

/* ---- association ----------------------------------------------------- */

int cp_port_associate(cp_port *p, cp_socket_t fd, void *key) {
  if (!p)
    return CP_EINVAL;
  if (atomic_load(&p->closed))
    return CP_ESHUTDOWN;
  int rc = cp__socket_prepare(fd);
  if (rc)
    return rc;
  struct fdent *e = cp__fdtable_make(&p->fds, fd);
  if (!e)
    return fd >= 0 && (unsigned)fd >= FDT_CHUNK * FDT_CHUNKS ? CP_EBADF : CP_ENOMEM;
  rc = p->be->associate(p, fd, e);
  if (rc)
    return rc;
  cp__spin_lock(&e->lock);
  atomic_store_explicit(&e->key, key, memory_order_relaxed);
  atomic_fetch_or_explicit(&e->gen, FDE_ASSOC, memory_order_release); /* after key: see begin() */
  cp__spin_unlock(&e->lock);
  return 0;
}

static struct fdent *associated_fd(cp_port *p, int fd) {
  struct fdent *e = cp__fdtable_get(&p->fds, fd);
  if (!e)
    return NULL;
  return fdent_associated(e) ? e : NULL;
}

int cp_port_disassociate(cp_port *p, cp_socket_t fd) {
  if (!p)
    return CP_EINVAL;
  struct fdent *e = cp__fdtable_get(&p->fds, fd);
  if (!e)
    return CP_EBADF;
  /* The key stays: an op start that read associated == 1 just before reads
   * the key that went with it (a cleared key could pair with a stale 1). */
  cp__spin_lock(&e->lock);
  /* Associated: adding one clears the bit and carries into the generation
   * (one step), in one write. Under the lock, as associate's write is. */
  bool was = atomic_load_explicit(&e->gen, memory_order_relaxed) & FDE_ASSOC;
  if (was)
    atomic_fetch_add(&e->gen, FDE_GEN_STEP - FDE_ASSOC);
  cp__spin_unlock(&e->lock);
  if (!was)
    return CP_EBADF;
  return p->be->cancel_fd(p, fd, e, true);
}

int cp_port_cancel(cp_port *p, cp_socket_t fd) {
  if (!p)
    return CP_EINVAL;
  struct fdent *e = associated_fd(p, fd);
  if (!e)
    return CP_EBADF;
  atomic_fetch_add(&e->gen, FDE_GEN_STEP);
  return p->be->cancel_fd(p, fd, e, false);
}

int cp_port_cancel_op(cp_port *p, cp_op *op) {
  if (!p || !op)
    return CP_EINVAL;
  return p->be->cancel_op(p, op_of(op));
}

/* ---- starting ops ---------------------------------------------------- */

static int start(cp_port *p, struct op *o, struct fdent *e) {
  int rc = p->be->start(p, o, e);
  if (rc == 0)
    atomic_fetch_add_explicit(&p->n_started, 1, memory_order_relaxed);
  return rc;
}

/* Check the port and fd, and fill the fields every op has. */
static int begin(cp_port *p, int fd, cp_op *cop, cp_op_kind kind, struct op **op,
                 struct fdent **ent) {
  if (!p || !cop)
    return CP_EINVAL;
  if (atomic_load_explicit(&p->closed, memory_order_relaxed))
    return CP_ESHUTDOWN;
  struct fdent *e = cp__fdtable_get(&p->fds, fd);
  if (!e)
    return CP_EBADF;
  struct op *o = op_of(cop);
  /* No lock: the gen word (acquire: associated, and the generation) then
   * the key stored before the bit was set. An op started while another
   * thread disassociates the fd may still pass here; the generation it
   * keeps (bumped by disassociate before its cancel) ends it, as before. */
  uint32_t gen = atomic_load_explicit(&e->gen, memory_order_acquire);
  if (!(gen & FDE_ASSOC))
    return CP_EBADF;
  o->key = atomic_load_explicit(&e->key, memory_order_relaxed);
  o->next = NULL;
  o->fd = fd;
  o->kind = (uint8_t)kind;
  o->state = OPS_IDLE;
  o->how = 0;
  o->gen = gen;
  o->done = 0;
  o->iov_rest = NULL;
  *op = o;
  *ent = e;
  return 0;
}

/* cp_buf is laid out as struct iovec here, so the caller's array goes to
 * the kernel as it is. */
_Static_assert(sizeof(cp_buf) == sizeof(struct iovec) &&
                   offsetof(cp_buf, base) == offsetof(struct iovec, iov_base) &&
                   offsetof(cp_buf, len) == offsetof(struct iovec, iov_len),
               "cp_buf must match struct iovec");
_Static_assert(CP_BUF_MAX <= IOV_MAX, "CP_BUF_MAX must not exceed IOV_MAX");

static int check_bufs(const cp_buf *b, int n) {
  if (!b || n < 1 || n > CP_BUF_MAX)
    return CP_EINVAL;
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    if (b[i].len && !b[i].base)
      return CP_EFAULT;
    if (b[i].len > SSIZE_MAX - total)
      return CP_EINVAL;
    total += b[i].len;
  }
  return total ? 0 : CP_EINVAL;
}

int cp_port_accept(cp_port *p, cp_socket_t lfd, cp_op *cop, struct sockaddr *addr,
                   socklen_t *addrlen) {
  if ((addr == NULL) != (addrlen == NULL))
    return CP_EINVAL;
  struct op *o;
  struct fdent *e;
  int rc = begin(p, lfd, cop, CP_OP_ACCEPT, &o, &e);
  if (rc)
    return rc;
  o->u.accept.addr = addr;
  o->u.accept.addrlen = addrlen;
  return start(p, o, e);
}

int cp_port_connect(cp_port *p, cp_socket_t fd, cp_op *cop, const struct sockaddr *addr,
                    socklen_t addrlen) {
  if (!addr || addrlen == 0 || addrlen > (socklen_t)sizeof(struct sockaddr_in6))
    return CP_EINVAL;
  struct op *o;
  struct fdent *e;
  int rc = begin(p, fd, cop, CP_OP_CONNECT, &o, &e);
  if (rc)
    return rc;
  memcpy(&o->u.connect.addr, addr, addrlen);
  o->u.connect.addrlen = addrlen;
  return start(p, o, e);
}

int cp_port_recv(cp_port *p, cp_socket_t fd, cp_op *cop, const cp_buf *iov, int iovcnt) {
  int rc = check_bufs(iov, iovcnt);
  if (rc)
    return rc;
  struct op *o;
  struct fdent *e;
  rc = begin(p, fd, cop, CP_OP_RECV, &o, &e);
  if (rc)
    return rc;
  memset(&o->u.msg, 0, sizeof o->u.msg);
  o->u.msg.msg_iov = (struct iovec *)(void *)iov;
  o->u.msg.msg_iovlen = (size_t)iovcnt;
  return start(p, o, e);
}

int cp_port_recv_pooled(cp_port *p, cp_socket_t fd, cp_op *cop) {
  struct op *o;
  struct fdent *e;
  int rc = begin(p, fd, cop, CP_OP_RECV_POOLED, &o, &e);
  if (rc)
    return rc;
  return start(p, o, e);
}

int cp_port_send(cp_port *p, cp_socket_t fd, cp_op *cop, const cp_buf *iov, int iovcnt) {
  int rc = check_bufs(iov, iovcnt);
  if (rc)
    return rc;
  struct op *o;
  struct fdent *e;
  rc = begin(p, fd, cop, CP_OP_SEND, &o, &e);
  if (rc)
    return rc;
  memset(&o->u.msg, 0, sizeof o->u.msg);
  o->u.msg.msg_iov = (struct iovec *)(void *)iov;
  o->u.msg.msg_iovlen = (size_t)iovcnt;
  return start(p, o, e);
}

int cp_port_disconnect(cp_port *p, cp_socket_t fd, cp_op *cop, int how) {
  if (how != CP_SHUT_WR && how != CP_SHUT_RDWR)
    return CP_EINVAL;
  struct op *o;
  struct fdent *e;
  int rc = begin(p, fd, cop, CP_OP_DISCONNECT, &o, &e);
  if (rc)
    return rc;
  o->how = (uint16_t)how;
  return start(p, o, e);
}

int cp_port_timeout(cp_port *p, cp_op *cop, void *key, uint64_t ms) {
  if (!p || !cop)
    return CP_EINVAL;
  if (ms > UINT64_MAX / 1000000ull / 2)
    return CP_EINVAL;
  if (atomic_load_explicit(&p->closed, memory_order_relaxed))
    return CP_ESHUTDOWN;
  struct op *o = op_of(cop);
  memset(o, 0, sizeof *o);
  o->fd = -1;
  o->key = key;
  o->kind = CP_OP_TIMEOUT;
  o->u.timer.ts.tv_sec = (int64_t)(ms / 1000);
  o->u.timer.ts.tv_nsec = (int64_t)(ms % 1000) * 1000000;
  cp__heap_node_init(&o->u.timer.node, cp__now_ns() + ms * 1000000ull);
  return start(p, o, NULL);
}

/* ---- iovec bookkeeping for partial sends ----------------------------- */

void cp__op_free_rest(struct op *o) {
  mem_free(o->iov_rest);
  o->iov_rest = NULL;
}

int cp__op_advance_send(struct op *o, size_t n) {
  o->done += (int64_t)n;
  struct iovec *v = o->u.msg.msg_iov;
  size_t cnt = o->u.msg.msg_iovlen;
  while (cnt > 0 && n >= v->iov_len) {
    n -= v->iov_len;
    v++;
    cnt--;
  }
  if (cnt == 0)
    return 1;
  if (!o->iov_rest) {
    /* First short send of this op: copy what is left, never touch the
     * caller's array. Later short sends adjust the copy in place. */
    struct iovec *rest = mem_alloc(cnt * sizeof *rest);
    if (!rest)
      return CP_ENOMEM;
    memcpy(rest, v, cnt * sizeof *rest);
    o->iov_rest = rest;
    v = rest;
  } else if (v != o->iov_rest) {
    memmove(o->iov_rest, v, cnt * sizeof *v);
    v = o->iov_rest;
  }
  v->iov_base = (char *)v->iov_base + n;
  v->iov_len -= n;
  o->u.msg.msg_iov = v;
  o->u.msg.msg_iovlen = cnt;
  return 0;
}

/* ---- buffers --------------------------------------------------------- */

void cp_port_buf_release(cp_port *p, void *buf) {
  if (!p || !buf)
    return;
  long idx = cp__bufpool_index(&p->bufs, buf);
  if (idx < 0) {
    cp__log(CP_LOG_ERROR, "cport: cp_port_buf_release: %p is not a pooled buffer of this port",
            buf);
    return;
  }
  p->be->buf_release(p, (uint32_t)idx);
}

/* ---- the ready ring and posts ---------------------------------------- */

/* Make room for n more; mu held. */
static int ready_reserve(cp_port *p, uint32_t n) {
  if (p->ready_len + n <= p->ready_cap)
    return 0;
  uint32_t cap = p->ready_cap;
  while (cap < p->ready_len + n)
    cap *= 2;
  cp_completion *r = mem_alloc((size_t)cap * sizeof *r);
  if (!r)
    return CP_ENOMEM;
  for (uint32_t i = 0; i < p->ready_len; i++)
    r[i] = p->ready[(p->ready_head + i) & (p->ready_cap - 1)];
  mem_free(p->ready);
  p->ready = r;
  p->ready_cap = cap;
  p->ready_head = 0;
  return 0;
}

/* Push; mu held, room reserved. */
static void ready_push(cp_port *p, const cp_completion *c) {
  p->ready[(p->ready_head + p->ready_len) & (p->ready_cap - 1)] = *c;
  p->ready_len++;
  p->ready_pushed++;
}

/* Insert n completions at position pos from the head (pos <= ready_len),
 * ahead of the ones after it; mu held, room reserved. */
static void ready_insert(cp_port *p, uint32_t pos, const cp_completion *c, uint32_t n) {
  assert(pos <= p->ready_len && p->ready_len + n <= p->ready_cap);
  uint32_t mask = p->ready_cap - 1;
  for (uint32_t i = p->ready_len; i-- > pos;)
    p->ready[(p->ready_head + i + n) & mask] = p->ready[(p->ready_head + i) & mask];
  for (uint32_t j = 0; j < n; j++)
    p->ready[(p->ready_head + pos + j) & mask] = c[j];
  p->ready_len += n;
  p->ready_pushed += n;
}

static int ready_take(cp_port *p, cp_completion *out, int max) {
  int n = 0;
  while (n < max && p->ready_len) {
    out[n++] = p->ready[p->ready_head];
    p->ready_head = (p->ready_head + 1) & (p->ready_cap - 1);
    p->ready_len--;
  }
  /* Emptied: start over at slot 0, so that the ring's pages touched are as
   * many as were ever queued at once, not all of them as the head walks
   * round (2 x queue_depth completions: 80 KB by default, idle memory). */
  if (!p->ready_len)
    p->ready_head = 0;
  p->ready_taken += (uint64_t)n;
  return n;
}

/* After queueing: wake a sleeper, or the poller if nobody else could take it. */
static bool notify_locked(cp_port *p, int n) {
  if (p->waiters) {
    if (n > 1)
      cp__cond_broadcast(&p->cv);
    else
      cp__cond_signal(&p->cv);
    return false;
  }
  return p->polling && atomic_load(&p->in_kernel);
}

bool cp__port_has_ready(cp_port *p) {
  cp__mutex_lock(&p->mu);
  bool ready = p->ready_len != 0;
  cp__mutex_unlock(&p->mu);
  return ready;
}

bool cp__port_queue(cp_port *p, const cp_completion *c, int n) {
  if (n <= 0)
    return false;
  cp__mutex_lock(&p->mu);
  while (ready_reserve(p, (uint32_t)n)) {
    /* Out of memory with a finished op in hand: it must not be lost. */
    cp__mutex_unlock(&p->mu);
    cp__thread_yield();
    cp__mutex_lock(&p->mu);
  }
  for (int i = 0; i < n; i++)
    ready_push(p, &c[i]);
  bool wake = notify_locked(p, n);
  cp__mutex_unlock(&p->mu);
  return wake;
}

void cp__port_emit_many(cp_port *p, const cp_completion *c, int n) {
  if (cp__port_queue(p, c, n))
    p->be->wake(p);
}

void cp__port_emit(cp_port *p, const cp_completion *c) {
  cp__port_emit_many(p, c, 1);
}

int cp_port_post(cp_port *p, void *key, cp_op *op, int64_t result) {
  if (!p)
    return CP_EINVAL;
  cp_completion c = {.op = op, .key = key, .result = result, .buf = NULL, .kind = CP_OP_POST};
  cp__mutex_lock(&p->mu);
  if (atomic_load(&p->closed)) {
    cp__mutex_unlock(&p->mu);
    return CP_ESHUTDOWN;
  }
  if (ready_reserve(p, 1)) {
    cp__mutex_unlock(&p->mu);
    return CP_ENOMEM;
  }
  ready_push(p, &c);
  atomic_fetch_add_explicit(&p->n_started, 1, memory_order_relaxed);
  bool wake = notify_locked(p, 1);
  cp__mutex_unlock(&p->mu);
  if (wake)
    p->be->wake(p);
  return 0;
}

/* ---- waiting --------------------------------------------------------- */

static int remaining_ms(uint64_t deadline, int timeout_ms) {
  if (timeout_ms < 0)
    return -1;
  uint64_t now = cp__now_ns();
  if (now >= deadline)
    return 0;
  uint64_t ms = (deadline - now + 999999) / 1000000;
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* How long the poller may block in the kernel: what is left of the wait, but
 * never more than POLL_MAX_MS at a time. Close wakes the poller through the
 * backend (a NOP or an eventfd write), and that is what ends a wait; the cap
 * is a safety net on top. It once hid a real lost wake-up: on io_uring the
 * poller could reap close's NOP (dropped as internal) just before it slept,
 * and then slept the whole cap (seen under TSan in test_net_start_fail: 1.2 s
 * runs). uring_poll now checks `closed` before it blocks; with a 300 us delay
 * put before that reap, 168 of 300 closes took the full second before the
 * fix and none after. The cap stays as a net for a wake-up lost in a way not
 * yet seen; an idle port pays one system call a second for it. */
#define POLL_MAX_MS 1000
static int poll_ms(uint64_t deadline, int timeout_ms) {
  int ms = remaining_ms(deadline, timeout_ms);
  return ms < 0 || ms > POLL_MAX_MS ? POLL_MAX_MS : ms;
}

int cp_port_wait(cp_port *p, cp_completion *out, int max, int timeout_ms) {
  if (!p || !out || max < 1)
    return CP_EINVAL;
  uint64_t deadline = timeout_ms > 0 ? cp__now_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
  int n = 0;
  cp__mutex_lock(&p->mu);
  if (p->one_waiter) {
    uintptr_t me = cp__thread_token();
    if (!p->waiter) {
      p->waiter = me;
    } else if (p->waiter != me) {
      cp__mutex_unlock(&p->mu);
      return CP_EINVAL;
    }
  }
  if (slot_take_back(p)) {
    p->active--;
    if (p->waiters)
      cp__cond_signal(&p->cv);
  }
  for (;;) {
    if (atomic_load(&p->closed)) {
      if (p->one_waiter && !p->drained && p->be->drain) {
        /* The one thread that may enter the kernel lets go of what is in
         * flight now, so cp_port_destroy may run on any thread. */
        p->drained = true;
        cp__mutex_unlock(&p->mu);
        p->be->drain(p);
        cp__mutex_lock(&p->mu);
      }
      n = CP_PORT_CLOSED;
      break;
    }
    bool may_run = p->active < p->concurrency;
    /* Completions in the ready ring go first, but not forever: a job that
     * re-posts itself must not keep the kernel from being polled (ops not
     * yet submitted, data that arrived). So now and then, or when the
     * backend says ops wait for submission, poll without blocking first. */
    bool poll_first =
        may_run && p->ready_len && !p->polling &&
        (p->ready_streak >= READY_STREAK_MAX || (p->be->has_work && p->be->has_work(p)));
    if (may_run && p->ready_len && !poll_first) {
      p->ready_streak++;
      n = ready_take(p, out, max);
      break;
    }
    if (may_run && !p->polling) {
      p->polling = true;
      p->ready_streak = 0;
      uint64_t mark = p->ready_pushed; /* what is queued now predates the poll */
      cp__mutex_unlock(&p->mu);
      n = p->be->poll(p, out, max, poll_first ? 0 : poll_ms(deadline, timeout_ms));
      cp__mutex_lock(&p->mu);
      p->polling = false;
      /* Completions queued before the poll (still at the head of the ring)
       * are older than what the poll found, and those are older than what
       * its overflow queued behind them: out[] goes in between, so that ops
       * of one kind on one fd still come out in start order. */
      uint32_t older = mark > p->ready_taken ? (uint32_t)(mark - p->ready_taken) : 0;
      bool must_queue = p->active >= p->concurrency;
      if (n > 0 && (older || must_queue)) {
        while (ready_reserve(p, (uint32_t)n)) {
          cp__mutex_unlock(&p->mu);
          cp__thread_yield();
          cp__mutex_lock(&p->mu);
          older = mark > p->ready_taken ? (uint32_t)(mark - p->ready_taken) : 0;
        }
        ready_insert(p, older, out, (uint32_t)n);
        n = 0;
        /* Others took the free slots while we were in the kernel: leave
         * what we found for them and wait our turn like everyone else. */
        if (must_queue || p->active >= p->concurrency)
          continue;
        n = ready_take(p, out, max);
        break;
      }
      if (n >= 0 && must_queue)
        continue;
      if (n >= 0 && n < max)
        n += ready_take(p, out + n, max - n);
      if (n != 0)
        break;
      if (remaining_ms(deadline, timeout_ms) == 0)
        break;
      continue;
    }
    if (timeout_ms == 0)
      break;
    p->waiters++;
    int rc = 0;
    if (timeout_ms < 0)
      cp__cond_wait(&p->cv, &p->mu);
    else
      rc = cp__cond_timedwait(&p->cv, &p->mu, deadline);
    p->waiters--;
    if (rc == CP__TIMEDOUT) {
      if (p->active < p->concurrency && p->ready_len && !atomic_load(&p->closed))
        n = ready_take(p, out, max);
      break;
    }
  }
  if (n > 0) {
    p->active++;
    slot_hold(p);
    atomic_fetch_add_explicit(&p->n_completed, (uint64_t)n, memory_order_relaxed);
  }
  /* Hand the poller role (or leftover ready completions) to a sleeper. */
  if (p->waiters && p->active < p->concurrency && (p->ready_len || !p->polling))
    cp__cond_signal(&p->cv);
  cp__mutex_unlock(&p->mu);
  return n;
}
