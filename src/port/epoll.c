/*
 * epoll.c - the epoll backend: a proactor built on readiness.
 *
 * Each associated fd is registered once, edge-triggered, for input and
 * output. An fd keeps two FIFO queues of started ops: the read side (accept,
 * recv, pooled recv) and the write side (connect, send, disconnect). Only the
 * head of a queue is ever tried, so ops of one kind complete in start order.
 *
 * An op is tried at once when it is started and reaches the head of its queue
 * (the data may already be there: no epoll round trip then); only when the
 * syscall says EAGAIN does it wait for the next edge. On an edge the poller
 * tries queue heads until one would block again; that is what keeps
 * edge-triggered mode correct. All tries and queue changes of an fd happen
 * under the fd's spinlock, so a start racing an edge cannot lose either.
 *
 * Pooled receives take a buffer only when the recv is about to be tried, and
 * put it back if the recv finds nothing; an empty pool parks the fd (the
 * starved list) until cp_port_buf_release() brings a buffer back.
 *
 * Timers live in a binary heap; the poller sleeps no longer than the earliest.
 * An eventfd in the epoll set is the wake-up line for the poller.
 */
#define _GNU_SOURCE
#include "port/port_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define EV_WAKE_TAG UINT64_MAX

struct ep {
  int epfd, evfd;
  struct epoll_event *events;
  int nevents;
  cp__lock lock;       /* free buffers, starved list, timer heap */
  uint32_t *free_bufs; /* stack of free buffer indices */
  uint32_t nfree;
  int starved_head, starved_tail; /* fds whose queue head is a pooled recv without a buffer */
  _Atomic bool feed_pending;      /* a buffer is free while someone starves: feed_starved() */
  struct cp__heap timers;         /* timer ops by deadline (op->u.timer.node) */
};

static inline struct ep *E(cp_port *p) {
  return p->be_data;
}

/* ---- setup ---------------------------------------------------------- */

static int epoll_probe(void) {
  return 0;
}

static int epoll_init(cp_port *p) {
  struct ep *ep = mem_calloc(1, sizeof *ep);
  if (!ep)
    return CP_ENOMEM;
  ep->epfd = epoll_create1(EPOLL_CLOEXEC);
  ep->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ep->nevents = (int)p->queue_depth;
  ep->events = mem_calloc((size_t)ep->nevents, sizeof *ep->events);
  ep->free_bufs = mem_alloc(p->bufs.count * sizeof *ep->free_bufs);
  /* Room for 64 timers from the start: a user with a few (the engine has
   * one) never meets an allocation failure arming one. */
  int rc = cp__heap_init(&ep->timers, 64);
  if (ep->epfd < 0 || ep->evfd < 0) {
    rc = -errno;
  } else if (rc || !ep->events || !ep->free_bufs) {
    rc = CP_ENOMEM;
  } else {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_WAKE_TAG};
    if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->evfd, &ev) < 0)
      rc = -errno;
  }
  if (rc) {
    if (ep->epfd >= 0)
      close(ep->epfd);
    if (ep->evfd >= 0)
      close(ep->evfd);
    mem_free(ep->events);
    mem_free(ep->free_bufs);
    cp__heap_free(&ep->timers);
    mem_free(ep);
    return rc;
  }
  /* Hand out low indices first, so a lightly used pool touches few pages. */
  for (uint32_t i = 0; i < p->bufs.count; i++)
    ep->free_bufs[i] = p->bufs.count - 1 - i;
  ep->nfree = p->bufs.count;
  ep->starved_head = ep->starved_tail = -1;
  cp__lock_init(&ep->lock);
  p->be_data = ep;
  return 0;
}

static void epoll_destroy(cp_port *p) {
  struct ep *ep = E(p);
  /* Nothing is with the kernel: queued ops just stop existing. Free what
   * partial sends copied. */
  for (unsigned ci = 0; ci < FDT_CHUNKS; ci++) {
    struct fdent *c = atomic_load(&p->fds.chunks[ci]);
    if (!c)
      continue;
    for (unsigned j = 0; j < FDT_CHUNK; j++) {
      for (struct op *o; (o = opq_pop(&c[j].q));)
        cp__op_free_rest(o);
    }
  }
  close(ep->epfd);
  close(ep->evfd);
  mem_free(ep->events);
  mem_free(ep->free_bufs);
  cp__heap_free(&ep->timers);
  mem_free(ep);
  p->be_data = NULL;
}

static int epoll_associate(cp_port *p, int fd, struct fdent *e) {
  (void)e;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                           .data.u64 = (uint64_t)fd};
  if (epoll_ctl(E(p)->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
    return 0;
  if (errno == EEXIST && epoll_ctl(E(p)->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
    return 0;
  return errno == EPERM ? CP_ENOTSOCK : -errno; /* EPERM: not pollable */
}

static void epoll_wake(cp_port *p) {
  uint64_t one = 1;
  ssize_t r = write(E(p)->evfd, &one, sizeof one);
  (void)r; /* EAGAIN: the counter is already non-zero, the poller will wake */
  cp__count_syscall(p);
}

/* ---- buffers -------------------------------------------------------- */

static long buf_get(cp_port *p) {
  struct ep *ep = E(p);
  long idx = -1;
  cp__lock_acquire(&ep->lock);
  if (ep->nfree)
    idx = ep->free_bufs[--ep->nfree];
  cp__lock_release(&ep->lock);
  return idx;
}

/* Return a buffer (ep lock held). If a receive is starving for one, note it:
 * the caller feeds it once it holds no fd lock (feeding takes that fd's lock,
 * and two fd locks are never held at once). */
static void buf_put_locked(cp_port *p, uint32_t idx) {
  struct ep *ep = E(p);
  if (ep->nfree < p->bufs.count)
    ep->free_bufs[ep->nfree++] = idx;
  if (ep->starved_head >= 0)
    atomic_store(&ep->feed_pending, true);
}

static void buf_put(cp_port *p, uint32_t idx) {
  cp__lock_acquire(&E(p)->lock);
  buf_put_locked(p, idx);
  cp__lock_release(&E(p)->lock);
}

static inline void feed_starved(cp_port *p);
static int start_timer(cp_port *p, struct op *o);

/* ---- trying ops (fd lock held) -------------------------------------- */

enum try_result { TRY_DONE, TRY_AGAIN, TRY_STARVED };

static int64_t neg_errno(void) {
  return -(int64_t)errno;
}

/* Each try_* makes one attempt at its op's syscall (again on EINTR) and says
 * whether the op is done (*res set), must wait for the next edge, or (pooled
 * receive) for a buffer. fd lock held. */

static enum try_result try_accept(cp_port *p, struct op *o, int64_t *res) {
  for (;;) {
    int fd = accept4(o->fd, o->u.accept.addr, o->u.accept.addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    cp__count_syscall(p);
    if (fd >= 0) {
      *res = fd;
      return TRY_DONE;
    }
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    if (errno == EAGAIN)
      return TRY_AGAIN;
    *res = neg_errno();
    return TRY_DONE;
  }
}

static enum try_result try_connect(cp_port *p, struct op *o, int64_t *res) {
  if (!o->done) {
    o->done = 1; /* connect() issued */
    cp__count_syscall(p);
    if (connect(o->fd, (const struct sockaddr *)&o->u.connect.addr, o->u.connect.addrlen) == 0) {
      *res = 0;
      return TRY_DONE;
    }
    if (errno == EINPROGRESS || errno == EINTR)
      return TRY_AGAIN;
    *res = neg_errno();
    return TRY_DONE;
  }
  int err = 0;
  socklen_t len = sizeof err;
  cp__count_syscall(p);
  if (getsockopt(o->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err) {
    *res = -err;
    return TRY_DONE;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  cp__count_syscall(p);
  if (getpeername(o->fd, (struct sockaddr *)&ss, &sl) == 0) {
    *res = 0;
    return TRY_DONE;
  }
  return TRY_AGAIN; /* still in progress */
}

static enum try_result try_recv(cp_port *p, struct op *o, int64_t *res) {
  for (;;) {
    const struct iovec *v = o->u.msg.msg_iov;
    ssize_t n = o->u.msg.msg_iovlen == 1 ? recv(o->fd, v->iov_base, v->iov_len, 0)
                                         : recvmsg(o->fd, &o->u.msg, 0);
    cp__count_syscall(p);
    if (n >= 0) {
      *res = n;
      return TRY_DONE;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN)
      return TRY_AGAIN;
    *res = neg_errno();
    return TRY_DONE;
  }
}

static enum try_result try_recv_pooled(cp_port *p, struct op *o, int64_t *res, void **buf) {
  for (;;) {
    long idx = buf_get(p);
    if (idx < 0)
      return TRY_STARVED;
    void *b = bufpool_addr(&p->bufs, (uint32_t)idx);
    ssize_t n = recv(o->fd, b, p->bufs.size, 0);
    cp__count_syscall(p);
    if (n > 0) {
      *res = n;
      *buf = b;
      return TRY_DONE;
    }
    int err = errno;
    buf_put(p, (uint32_t)idx);
    if (n == 0) {
      *res = 0;
      return TRY_DONE;
    }
    if (err == EINTR)
      continue;
    if (err == EAGAIN)
      return TRY_AGAIN;
    *res = -(int64_t)err;
    return TRY_DONE;
  }
}

static enum try_result try_send(cp_port *p, struct op *o, int64_t *res) {
  for (;;) {
    /* one buffer (the common case): send(), without sendmsg's header copy and iovec import */
    const struct iovec *v = o->u.msg.msg_iov;
    ssize_t n = o->u.msg.msg_iovlen == 1 ? send(o->fd, v->iov_base, v->iov_len, MSG_NOSIGNAL)
                                         : sendmsg(o->fd, &o->u.msg, MSG_NOSIGNAL);
    cp__count_syscall(p);
    if (n > 0) {
      int r = cp__op_advance_send(o, (size_t)n);
      if (r == 1) {
        *res = o->done;
        return TRY_DONE;
      }
      if (r < 0) {
        *res = r;
        return TRY_DONE;
      }
      continue; /* short: try the rest, usually EAGAIN */
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return TRY_AGAIN;
    *res = n == 0 ? CP_EPIPE : neg_errno();
    return TRY_DONE;
  }
}

static enum try_result try_op(cp_port *p, struct fdent *e, struct op *o, int64_t *res, void **buf) {
  assert(cp__spin_held(&e->lock));
  assert(o->state == OPS_QUEUED);
  (void)e;
  *buf = NULL;
  switch (o->kind) {
  case CP_OP_ACCEPT:
    return try_accept(p, o, res);
  case CP_OP_CONNECT:
    return try_connect(p, o, res);
  case CP_OP_RECV:
    return try_recv(p, o, res);
  case CP_OP_RECV_POOLED:
    return try_recv_pooled(p, o, res, buf);
  case CP_OP_SEND:
    return try_send(p, o, res);
  case CP_OP_DISCONNECT:
    cp__count_syscall(p);
    *res = shutdown(o->fd, o->how) == 0 ? 0 : neg_errno();
    return TRY_DONE;
  }
  assert(!"an op of no kind in an fd queue");
  *res = CP_EINVAL;
  return TRY_DONE;
}

/* An fd's link in the starved list (ep lock held), in its entry's three
 * backend bytes: 0 not listed; else listed, and STARVED_END (the last) or the
 * next listed fd + 1. */
#define STARVED_END 0xffffffu
static uint32_t starved_link(const struct fdent *e) {
  return (uint32_t)e->starved[0] | (uint32_t)e->starved[1] << 8 | (uint32_t)e->starved[2] << 16;
}
static void starved_set(struct fdent *e, uint32_t v) {
  assert(v <= STARVED_END);
  e->starved[0] = (uint8_t)v;
  e->starved[1] = (uint8_t)(v >> 8);
  e->starved[2] = (uint8_t)(v >> 16);
}

/* Park o (the head of its fd's read queue; fd lock held) until a buffer is
 * released. The list links fds, not ops, so a cancelled op leaves nothing
 * dangling: a listed fd whose head is no longer starved is just skipped. */
static void starve(cp_port *p, struct op *o, struct fdent *e) {
  struct ep *ep = E(p);
  assert(cp__spin_held(&e->lock) && opq_side_head(&e->q, true, &(struct op *){NULL}) == o);
  atomic_fetch_add_explicit(&p->n_buf_waits, 1, memory_order_relaxed);
  o->state = OPS_STARVED;
  cp__lock_acquire(&ep->lock);
  if (!starved_link(e)) {
    starved_set(e, STARVED_END);
    if (ep->starved_tail >= 0)
      starved_set(cp__fdtable_get(&p->fds, ep->starved_tail), (uint32_t)o->fd + 1);
    else
      ep->starved_head = o->fd;
    ep->starved_tail = o->fd;
  }
  /* A buffer may have come back between our failed take and now. */
  if (ep->nfree)
    atomic_store(&ep->feed_pending, true);
  cp__lock_release(&ep->lock);
}

/* Try the head of one side of e's queue until it would block. fd lock held. */
static void run_queue(cp_port *p, struct sink *s, struct fdent *e, bool rd) {
  assert(cp__spin_held(&e->lock));
  struct op *o, *prev;
  while ((o = opq_side_head(&e->q, rd, &prev))) {
    if (o->state == OPS_STARVED)
      return; /* waits for a buffer; buf_release re-runs this queue */
    int64_t res;
    void *buf;
    enum try_result r = try_op(p, e, o, &res, &buf);
    if (r == TRY_AGAIN)
      return;
    if (r == TRY_STARVED) {
      starve(p, o, e);
      return;
    }
    opq_unlink(&e->q, prev, o); /* the queue did not change: the fd lock is held */
    cp__sink_put(p, s, o, res, buf);
  }
}

static int epoll_start(cp_port *p, struct op *o, struct fdent *e) {
  struct sink s;
  cp__sink_init(&s, NULL, 0);
  if (o->kind == CP_OP_TIMEOUT)
    return start_timer(p, o);
  bool rd = op_is_read(o->kind);
  cp__spin_lock(&e->lock);
  if (atomic_load(&p->closed)) {
    cp__spin_unlock(&e->lock);
    return CP_ESHUTDOWN;
  }
  o->state = OPS_QUEUED;
  struct op *prev;
  bool first = !opq_side_head(&e->q, rd, &prev); /* o is its side's head once queued */
  opq_push(&e->q, o);
  if (first)
    run_queue(p, &s, e, rd);
  cp__spin_unlock(&e->lock);
  cp__sink_flush(p, &s);
  feed_starved(p);
  return 0;
}

/* ---- timers --------------------------------------------------------- */

static struct op *timer_op(struct cp__heap_node *n) {
  return (struct op *)(void *)((char *)n - offsetof(struct op, u.timer.node));
}

static int start_timer(cp_port *p, struct op *o) {
  struct ep *ep = E(p);
  cp__lock_acquire(&ep->lock);
  int rc = cp__heap_push(&ep->timers, &o->u.timer.node);
  if (rc) {
    cp__lock_release(&ep->lock);
    return rc;
  }
  o->state = OPS_TIMER;
  bool earliest = cp__heap_min(&ep->timers) == &o->u.timer.node;
  cp__lock_release(&ep->lock);
  /* A poller asleep may be sleeping past this new deadline. */
  if (earliest && atomic_load(&p->in_kernel))
    epoll_wake(p);
  return 0;
}

static void expire_timers(cp_port *p, struct sink *s) {
  struct ep *ep = E(p);
  uint64_t now = cp__now_ns();
  cp__lock_acquire(&ep->lock);
  struct cp__heap_node *n;
  while ((n = cp__heap_min(&ep->timers)) && n->key <= now) {
    cp__heap_pop(&ep->timers);
    cp__sink_put(p, s, timer_op(n), 0, NULL);
  }
  cp__lock_release(&ep->lock);
}

static int next_timer_ms(cp_port *p, int timeout_ms) {
  struct ep *ep = E(p);
  cp__lock_acquire(&ep->lock);
  struct cp__heap_node *first = cp__heap_min(&ep->timers);
  if (first) {
    uint64_t now = cp__now_ns(), d = first->key;
    uint64_t ms = d <= now ? 0 : (d - now + 999999) / 1000000;
    if (timeout_ms < 0 || ms < (uint64_t)timeout_ms)
      timeout_ms = (int)ms;
  }
  cp__lock_release(&ep->lock);
  return timeout_ms;
}

/* ---- the poller ----------------------------------------------------- */

static int epoll_poll(cp_port *p, cp_completion *out, int max, int timeout_ms) {
  struct ep *ep = E(p);
  struct sink s;
  cp__sink_init(&s, out, max);
  /* in_kernel goes up before the timer heap is read: a timer added after the
   * read then sees it and wakes us (epoll_start). */
  atomic_store(&p->in_kernel, true);
  int t = next_timer_ms(p, timeout_ms);
  if (t != 0 && cp__port_has_ready(p))
    t = 0; /* posted before in_kernel went up: it woke nobody */
  int n = epoll_wait(ep->epfd, ep->events, ep->nevents, t);
  atomic_store(&p->in_kernel, false);
  cp__count_syscall(p);
  for (int i = 0; i < n; i++) {
    struct epoll_event *ev = &ep->events[i];
    if (ev->data.u64 == EV_WAKE_TAG) {
      uint64_t v;
      ssize_t r = read(ep->evfd, &v, sizeof v);
      (void)r;
      cp__count_syscall(p);
      continue;
    }
    struct fdent *e = cp__fdtable_get(&p->fds, (int)ev->data.u64);
    if (!e)
      continue;
    cp__spin_lock(&e->lock);
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
      run_queue(p, &s, e, true);
    if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
      run_queue(p, &s, e, false);
    cp__spin_unlock(&e->lock);
  }
  expire_timers(p, &s);
  cp__sink_flush(p, &s);
  feed_starved(p);
  return s.n;
}

/* ---- cancel and buffers --------------------------------------------- */

static int epoll_cancel_fd(cp_port *p, int fd, struct fdent *e, bool forget) {
  struct sink s;
  cp__sink_init(&s, NULL, 0);
  cp__spin_lock(&e->lock);
  for (struct op *o; (o = opq_side_pop(&e->q, true));)
    cp__sink_put(p, &s, o, CP_ECANCELED, NULL);
  cp__sink_drain(p, &s, &e->q, CP_ECANCELED); /* the write side: all that is left */
  if (forget)
    epoll_ctl(E(p)->epfd, EPOLL_CTL_DEL, fd, NULL);
  cp__spin_unlock(&e->lock);
  cp__sink_flush(p, &s);
  feed_starved(p);
  return 0;
}

static int epoll_cancel_op(cp_port *p, struct op *o) {
  struct ep *ep = E(p);
  struct sink s;
  cp__sink_init(&s, NULL, 0);
  int rc = CP_ENOENT;
  if (o->fd < 0) {
    cp__lock_acquire(&ep->lock);
    if (o->state == OPS_TIMER && cp__heap_remove(&ep->timers, &o->u.timer.node)) {
      cp__sink_put(p, &s, o, CP_ECANCELED, NULL);
      rc = 0;
    }
    cp__lock_release(&ep->lock);
    cp__sink_flush(p, &s);
    return rc;
  }
  struct fdent *e = cp__fdtable_get(&p->fds, o->fd);
  if (!e)
    return CP_ENOENT;
  cp__spin_lock(&e->lock);
  bool rd = op_is_read(o->kind);
  struct op *prev;
  bool was_head = opq_side_head(&e->q, rd, &prev) == o;
  if (opq_remove(&e->q, o)) {
    cp__sink_put(p, &s, o, CP_ECANCELED, NULL);
    /* A new head may be ready already; no edge will say so. */
    if (was_head)
      run_queue(p, &s, e, rd);
    rc = 0;
  }
  cp__spin_unlock(&e->lock);
  cp__sink_flush(p, &s);
  feed_starved(p);
  return rc;
}

/* Give free buffers to parked receives, first parked first served, until
 * one or the other runs out. Called with no lock held. */
__attribute__((noinline)) static void feed_starved_now(cp_port *p) {
  struct ep *ep = E(p);
  while (atomic_load_explicit(&ep->feed_pending, memory_order_relaxed) &&
         atomic_exchange(&ep->feed_pending, false)) {
    for (;;) {
      cp__lock_acquire(&ep->lock);
      int fd = ep->nfree ? ep->starved_head : -1;
      struct fdent *e = fd >= 0 ? cp__fdtable_get(&p->fds, fd) : NULL;
      if (e) {
        uint32_t next = starved_link(e);
        assert(next != 0);
        ep->starved_head = next == STARVED_END ? -1 : (int)next - 1;
        if (ep->starved_head < 0)
          ep->starved_tail = -1;
        starved_set(e, 0);
      }
      cp__lock_release(&ep->lock);
      if (!e)
        break;
      /* Only the fd is taken from the list: an op that was cancelled
       * meanwhile is simply not there (its fd's head is not starved). */
      struct sink s;
      cp__sink_init(&s, NULL, 0);
      cp__spin_lock(&e->lock);
      struct op *prev;
      struct op *head = opq_side_head(&e->q, true, &prev);
      if (head && head->state == OPS_STARVED) {
        head->state = OPS_QUEUED;
        run_queue(p, &s, e, true);
      }
      cp__spin_unlock(&e->lock);
      cp__sink_flush(p, &s);
    }
  }
}

/* Inline, as it runs after every op start and buffer release: the usual
 * answer is "nobody starves", one load (read before the exchange, which
 * would write the shared line each time). */
static inline void feed_starved(cp_port *p) {
  if (atomic_load_explicit(&E(p)->feed_pending, memory_order_relaxed))
    feed_starved_now(p);
}

static void epoll_buf_release(cp_port *p, uint32_t idx) {
  struct ep *ep = E(p);
  cp__lock_acquire(&ep->lock);
  buf_put_locked(p, idx);
  cp__lock_release(&ep->lock);
  feed_starved(p);
}

const struct backend cp__backend_epoll = {
    .name = "epoll",
    .probe = epoll_probe,
    .init = epoll_init,
    .destroy = epoll_destroy,
    .associate = epoll_associate,
    .cancel_fd = epoll_cancel_fd,
    .cancel_op = epoll_cancel_op,
    .start = epoll_start,
    .poll = epoll_poll,
    .wake = epoll_wake,
    .buf_release = epoll_buf_release,
};
