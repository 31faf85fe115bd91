/* CP_PORT_ONE_WAITER (cport/port.h), on every backend:
 *  1. flags: an unknown bit is CP_EINVAL, CP_PORT_ONE_WAITER is taken;
 *  2. the first thread that waits is the only waiter: a wait from another
 *     thread returns CP_EINVAL and takes nothing;
 *  3. the main thread starts receives, sends, timers and posts over 32
 *     loopback connections while the waiter sleeps in the kernel, many more
 *     at once than the submission queue holds (queue_depth 8): every start
 *     succeeds, every op completes exactly once, every byte arrives;
 *  4. close from another thread with ops in flight, while the waiter waits
 *     and before its next wait: it returns CP_PORT_CLOSED, and the port is
 *     then destroyed on the main thread, nothing logged as an error;
 *  5. the waiter destroys the port itself with ops in flight.
 * The waiter hands completions to the main thread through a locked queue. */
#include "common/test.h"

#define CONNS 32
#define SENDS 4 /* sends in flight at once per connection */
#define SEND_LEN 1024
#define RECV_LEN 3000 /* bytes each client writes, in RECV_CHUNKS writes */
#define RECV_CHUNKS 3
#define POSTS 500
#define TIMERS 200
#define DEPTH 8
#define IDLE 8                /* idle connections with a receive pending (cases 4, 5) */
#define BIG (16u << 20)       /* a send the peer never reads: stays in flight */
#define FAR_MS (600u * 1000u) /* a timer that never fires during the test */
#define QCAP 4096             /* completions the waiter may hand over before main takes them */

static atomic_int log_errors;

static void on_log(cp_log_level level, const char *msg, void *user) {
  (void)user;
  fprintf(stderr, "  log %s: %s\n", cp_log_level_name(level), msg);
  if (level == CP_LOG_ERROR)
    atomic_fetch_add(&log_errors, 1);
}

static cp_port *one_waiter_port(unsigned depth) {
  cp_port_options o = {
      .flags = CP_PORT_ONE_WAITER, .queue_depth = depth, .buf_count = 64, .buf_size = 256};
  return test_port(&o);
}

/* Markers: the keys of posts and timers (sockets' keys are their conns). */
static char post_key, timer_key, mark_key, pause_key;

/* The waiting thread: waits forever, queues every completion for main, and
 * stops at CP_PORT_CLOSED. After a post keyed pause_key it waits for main's
 * `go` before it waits again. */
struct waiter {
  cp_port *p;
  pthread_t t;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  cp_completion q[QCAP];
  size_t head, len;
  bool paused, go, done;
  int rc; /* what the last wait returned */
};

static void *waiter_main(void *arg) {
  struct waiter *w = arg;
  cp_completion ev[16];
  for (;;) {
    int n = cp_port_wait(w->p, ev, 16, -1);
    pthread_mutex_lock(&w->mu);
    w->rc = n;
    if (n == CP_PORT_CLOSED) {
      w->done = true;
      pthread_cond_broadcast(&w->cv);
      pthread_mutex_unlock(&w->mu);
      return NULL;
    }
    CHECK(n > 0);
    bool pause = false;
    for (int i = 0; i < n; i++) {
      CHECK(w->len < QCAP);
      w->q[(w->head + w->len++) % QCAP] = ev[i];
      pause |= ev[i].key == &pause_key;
    }
    pthread_cond_broadcast(&w->cv);
    if (pause) {
      w->paused = true;
      pthread_cond_broadcast(&w->cv);
      while (!w->go)
        pthread_cond_wait(&w->cv, &w->mu);
      w->paused = w->go = false;
    }
    pthread_mutex_unlock(&w->mu);
  }
}

static void waiter_start(struct waiter *w, cp_port *p) {
  memset(w, 0, sizeof *w);
  w->p = p;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  CHECK_EQ(pthread_create(&w->t, NULL, waiter_main, w), 0);
}

/* The next completion the waiter handed over (the watchdog ends a hang). */
static cp_completion take(struct waiter *w) {
  pthread_mutex_lock(&w->mu);
  while (!w->len) {
    CHECK(!w->done);
    pthread_cond_wait(&w->cv, &w->mu);
  }
  cp_completion c = w->q[w->head];
  w->head = (w->head + 1) % QCAP;
  w->len--;
  pthread_mutex_unlock(&w->mu);
  return c;
}

/* Post a marker and take it: the waiter has waited (it is the port's
 * waiter), and nothing else was handed over before it. */
static void sync_mark(struct waiter *w, int64_t n) {
  CHECK_EQ(cp_port_post(w->p, &mark_key, NULL, n), 0);
  cp_completion c = take(w);
  CHECK(c.key == &mark_key);
  CHECK_EQ(c.kind, CP_OP_POST);
  CHECK_EQ(c.result, n);
  CHECK(c.op == NULL);
}

/* Join the waiter once the port is closed: its last wait returned
 * CP_PORT_CLOSED and it handed over nothing more. */
static void waiter_join(struct waiter *w) {
  CHECK_EQ(pthread_join(w->t, NULL), 0);
  CHECK(w->done);
  CHECK_EQ(w->rc, CP_PORT_CLOSED);
  CHECK_EQ(w->len, 0);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
}

static void check_settled(cp_port *p, uint64_t ops) {
  cp_port_stats st;
  cp_port_get_stats(p, &st);
  CHECK_EQ(st.started, ops);
  CHECK_EQ(st.completed, ops);
}

/* 1. */
static void test_options(void) {
  cp_port *p = NULL;
  cp_port_options o = {.flags = 2u};
  CHECK_EQ(cp_port_create(&p, &o), CP_EINVAL);
  CHECK(p == NULL);
  o.flags = CP_PORT_ONE_WAITER | 2u;
  CHECK_EQ(cp_port_create(&p, &o), CP_EINVAL);
  CHECK(p == NULL);
  o.flags = CP_PORT_ONE_WAITER;
  CHECK_EQ(cp_port_create(&p, &o), 0);
  CHECK(p != NULL);
  cp_port_destroy(p); /* never waited on: nothing reached a kernel */
}

static void *other_wait(void *arg) {
  cp_completion ev[2];
  memset(ev, 0xab, sizeof ev);
  CHECK_EQ(cp_port_wait(arg, ev, 2, -1), CP_EINVAL);
  for (size_t i = 0; i < sizeof ev; i++)
    CHECK_EQ(((unsigned char *)ev)[i], 0xab);
  return NULL;
}

/* 2. */
static void test_rule(void) {
  cp_port *p = one_waiter_port(0);
  struct waiter w;
  waiter_start(&w, p);
  sync_mark(&w, 1); /* W waited first */
  cp_completion mine[4];
  memset(mine, 0xab, sizeof mine);
  CHECK_EQ(cp_port_wait(p, mine, 4, 0), CP_EINVAL);
  CHECK_EQ(cp_port_wait(p, mine, 4, 50), CP_EINVAL);
  CHECK_EQ(cp_port_wait(p, mine, 4, -1), CP_EINVAL); /* at once, not a wait forever */
  for (size_t i = 0; i < sizeof mine; i++)
    CHECK_EQ(((unsigned char *)mine)[i], 0xab); /* took nothing */
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, other_wait, p), 0);
  CHECK_EQ(pthread_join(t, NULL), 0);
  /* Posts made now all go to W, in order. */
  cp_op ops[3];
  for (int i = 0; i < 3; i++)
    CHECK_EQ(cp_port_post(p, &post_key, &ops[i], 10 + i), 0);
  CHECK_EQ(cp_port_wait(p, mine, 4, 0), CP_EINVAL);
  for (int i = 0; i < 3; i++) {
    cp_completion c = take(&w);
    CHECK_EQ(c.kind, CP_OP_POST);
    CHECK(c.key == &post_key);
    CHECK(c.op == &ops[i]);
    CHECK_EQ(c.result, 10 + i);
  }
  sync_mark(&w, 2); /* nothing more came */
  cp_port_close(p);
  waiter_join(&w);
  check_settled(p, 5);
  cp_port_destroy(p);
}

struct conn {
  int cli, srv;
  cp_op rop;
  int rpending;
  size_t nrecv;
  cp_op sop[SENDS];
  int spending[SENDS];
  cp_buf sbuf[SENDS];
  unsigned char out[SENDS][SEND_LEN]; /* what the port sends to the client */
  unsigned char in[RECV_LEN];         /* what the client sends to the port */
};

static void started(int rc, const char *what) {
  if (rc)
    fprintf(stderr, "  %s: %s\n", what, cp_strerror(rc));
  CHECK_EQ(rc, 0);
}

static void start_recv(cp_port *p, struct conn *c) {
  CHECK_EQ(c->rpending, 0);
  c->rpending = 1;
  started(cp_port_recv_pooled(p, c->srv, &c->rop), "cp_port_recv_pooled");
}

/* 3. */
static void test_from_main(void) {
  cp_port *p = one_waiter_port(DEPTH);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  struct conn *conns = calloc(CONNS, sizeof *conns);
  CHECK(conns != NULL);
  for (int i = 0; i < CONNS; i++) {
    struct conn *c = &conns[i];
    test_pair(lfd, &addr, &c->cli, &c->srv);
    CHECK_EQ(cp_port_associate(p, c->srv, c), 0);
    for (int k = 0; k < SENDS; k++) {
      for (int j = 0; j < SEND_LEN; j++)
        c->out[k][j] = (unsigned char)(i * 7 + k * 131 + j * 3 + 1);
      c->sbuf[k] = (cp_buf){.base = (char *)c->out[k], .len = SEND_LEN};
    }
    for (int j = 0; j < RECV_LEN; j++)
      c->in[j] = (unsigned char)(i * 11 + j * 5 + 2);
  }
  struct waiter w;
  waiter_start(&w, p);
  sync_mark(&w, 1); /* W is the waiter, and back in its wait */

  /* The burst, all from main: far more than DEPTH submission entries. */
  static cp_op top[TIMERS];
  static int tpending[TIMERS];
  static int seen[POSTS];
  memset(tpending, 0, sizeof tpending);
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < CONNS; i++) {
    struct conn *c = &conns[i];
    start_recv(p, c);
    for (int k = 0; k < SENDS; k++) {
      c->spending[k] = 1;
      started(cp_port_send(p, c->srv, &c->sop[k], &c->sbuf[k], 1), "cp_port_send");
    }
  }
  for (int i = 0, t = 0; i < POSTS; i++) {
    started(cp_port_post(p, &post_key, NULL, i), "cp_port_post");
    if (i % 5 == 0 && t < TIMERS) { /* 100 timers among the posts */
      tpending[t] = 1;
      started(cp_port_timeout(p, &top[t], &timer_key, 1 + (uint64_t)t % 3), "cp_port_timeout");
      t++;
    }
  }
  for (int t = POSTS / 5; t < TIMERS; t++) {
    tpending[t] = 1;
    started(cp_port_timeout(p, &top[t], &timer_key, 1 + (uint64_t)t % 3), "cp_port_timeout");
  }
  /* The clients' side: their data in, the port's sends out (in order). */
  for (int i = 0; i < CONNS; i++)
    for (int k = 0; k < RECV_CHUNKS; k++)
      test_send_all(conns[i].cli, conns[i].in + k * (RECV_LEN / RECV_CHUNKS),
                    RECV_LEN / RECV_CHUNKS);
  static unsigned char got[SENDS * SEND_LEN];
  for (int i = 0; i < CONNS; i++) {
    test_recv_all(conns[i].cli, got, sizeof got);
    CHECK_EQ(memcmp(got, conns[i].out, sizeof got), 0);
  }

  /* Every completion once; receives started again from main. */
  int posts = 0, timers = 0, sends = 0, recvs_done = 0;
  uint64_t ops = 1 + POSTS + TIMERS + CONNS * SENDS;
  while (posts < POSTS || timers < TIMERS || sends < CONNS * SENDS || recvs_done < CONNS) {
    cp_completion e = take(&w);
    if (e.kind == CP_OP_POST) {
      CHECK(e.key == &post_key);
      CHECK(e.op == NULL);
      CHECK(e.result >= 0 && e.result < POSTS);
      CHECK_EQ(seen[e.result]++, 0);
      posts++;
    } else if (e.kind == CP_OP_TIMEOUT) {
      CHECK(e.key == &timer_key);
      CHECK(e.op >= top && e.op < top + TIMERS);
      CHECK_EQ(e.result, 0);
      CHECK_EQ(tpending[e.op - top], 1);
      tpending[e.op - top] = 0;
      timers++;
    } else if (e.kind == CP_OP_SEND) {
      struct conn *c = e.key;
      CHECK(c >= conns && c < conns + CONNS);
      CHECK(e.op >= c->sop && e.op < c->sop + SENDS);
      CHECK_EQ(e.result, SEND_LEN);
      CHECK_EQ(c->spending[e.op - c->sop], 1);
      c->spending[e.op - c->sop] = 0;
      sends++;
    } else {
      CHECK_EQ(e.kind, CP_OP_RECV_POOLED);
      struct conn *c = e.key;
      CHECK(c >= conns && c < conns + CONNS);
      CHECK(e.op == &c->rop);
      CHECK_EQ(c->rpending, 1);
      c->rpending = 0;
      if (e.result <= 0)
        fprintf(stderr, "  conn %d: pooled receive at %zu: %s\n", (int)(c - conns), c->nrecv,
                e.result ? cp_strerror((int)e.result) : "end of stream");
      CHECK(e.result > 0);
      CHECK(e.buf != NULL);
      CHECK(c->nrecv + (size_t)e.result <= RECV_LEN);
      CHECK_EQ(memcmp(e.buf, c->in + c->nrecv, (size_t)e.result), 0);
      c->nrecv += (size_t)e.result;
      cp_port_buf_release(p, e.buf);
      ops++;
      if (c->nrecv < RECV_LEN)
        start_recv(p, c);
      else
        recvs_done++;
    }
  }
  sync_mark(&w, 2); /* nothing completed twice or late */
  ops++;
  for (int i = 0; i < CONNS; i++)
    CHECK_EQ(conns[i].nrecv, RECV_LEN);
  check_settled(p, ops);
  fprintf(stderr, "  %llu ops from main, queue_depth %d\n", (unsigned long long)ops, DEPTH);

  cp_port_close(p);
  waiter_join(&w);
  for (int i = 0; i < CONNS; i++)
    CHECK_EQ(cp_port_disassociate(p, conns[i].srv), 0);
  cp_port_destroy(p);
  for (int i = 0; i < CONNS; i++) {
    close(conns[i].srv);
    close(conns[i].cli);
  }
  free(conns);
  close(lfd);
}

/* Ops that stay in flight: a pooled receive on each idle connection, a send
 * to a client that never reads, a timer far away. */
struct idle {
  int lfd, cli[IDLE], srv[IDLE];
  cp_op rop[IDLE], sop, top;
  cp_buf big;
};

static void idle_open(struct idle *d) {
  struct sockaddr_in addr;
  d->lfd = test_listener(&addr);
  for (int i = 0; i < IDLE; i++)
    test_pair(d->lfd, &addr, &d->cli[i], &d->srv[i]);
  d->big = (cp_buf){.base = calloc(1, BIG), .len = BIG};
  CHECK(d->big.base != NULL);
}

static void idle_start(cp_port *p, struct idle *d) {
  for (int i = 0; i < IDLE; i++)
    CHECK_EQ(cp_port_associate(p, d->srv[i], &d->srv[i]), 0);
  for (int i = 0; i < IDLE; i++)
    started(cp_port_recv_pooled(p, d->srv[i], &d->rop[i]), "cp_port_recv_pooled");
  started(cp_port_send(p, d->srv[0], &d->sop, &d->big, 1), "cp_port_send");
  started(cp_port_timeout(p, &d->top, &timer_key, FAR_MS), "cp_port_timeout");
}

/* After the port is gone (the kernel has let go of the buffers). */
static void idle_close(struct idle *d) {
  for (int i = 0; i < IDLE; i++) {
    close(d->srv[i]);
    close(d->cli[i]);
  }
  close(d->lfd);
  free(d->big.base);
}

/* 4. pause: close while W is outside its wait (before its next one). */
static void test_close(bool pause) {
  cp_port *p = one_waiter_port(0);
  struct idle d;
  idle_open(&d);
  struct waiter w;
  waiter_start(&w, p);
  sync_mark(&w, 1);
  if (pause) {
    CHECK_EQ(cp_port_post(p, &pause_key, NULL, 0), 0);
    CHECK(take(&w).key == &pause_key);
    pthread_mutex_lock(&w.mu);
    while (!w.paused)
      pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
  }
  idle_start(p, &d);
  if (!pause) {
    sync_mark(&w, 2);  /* W took the starts in; now it sleeps with them */
    test_sleep_ms(20); /* more likely in the kernel (not asserted) */
  }
  cp_port_close(p);
  if (pause) {
    pthread_mutex_lock(&w.mu);
    w.go = true;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
  }
  waiter_join(&w); /* CP_PORT_CLOSED, none of the ops in flight delivered */
  cp_port_destroy(p);
  idle_close(&d);
  CHECK_EQ(atomic_load(&log_errors), 0);
}

/* 5. */
static void *self_destroy(void *arg) {
  struct idle *d = arg;
  cp_port *p = one_waiter_port(0);
  CHECK_EQ(cp_port_post(p, &mark_key, NULL, 5), 0);
  cp_completion e = test_wait_one(p);
  CHECK(e.key == &mark_key);
  CHECK_EQ(e.result, 5);
  idle_start(p, d);
  cp_completion ev[4];
  CHECK_EQ(cp_port_wait(p, ev, 4, 0), 0); /* the starts reach the kernel; nothing done */
  cp_port_destroy(p);
  return NULL;
}

static void test_destroy_on_waiter(void) {
  struct idle d;
  idle_open(&d);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, self_destroy, &d), 0);
  CHECK_EQ(pthread_join(t, NULL), 0);
  idle_close(&d);
  CHECK_EQ(atomic_load(&log_errors), 0);
}

/* 6. Disassociate from main, then close at once, while a pooled receive is
 * pending (on io_uring: an armed multishot) and W sleeps in the kernel: the
 * receive ends cancelled, and the socket really closes - its peer reads EOF.
 * (The kernel looks the fd up when it runs the cancel: a cancel still
 * waiting for the owner's next submit would find the number closed, and the
 * pending receive would hold the socket open.) Twice: the second time the
 * number is reused and a new receive on it gets its own bytes only. */
static void test_disassociate_close(void) {
  cp_port *p = one_waiter_port(0);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr);
  struct waiter w;
  waiter_start(&w, p);
  sync_mark(&w, 1);
  static char key;
  for (int round = 0; round < 2; round++) {
    int cli, srv;
    test_pair(lfd, &addr, &cli, &srv);
    CHECK_EQ(cp_port_associate(p, srv, &key), 0);
    cp_op op;
    CHECK_EQ(cp_port_recv_pooled(p, srv, &op), 0);
    sync_mark(&w, 2 + round); /* W is back in the kernel with the receive armed */
    CHECK_EQ(cp_port_disassociate(p, srv), 0);
    CHECK_EQ(close(srv), 0);
    cp_completion c = take(&w);
    CHECK(c.op == &op);
    CHECK_EQ(c.result, CP_ECANCELED);
    char b[8];
    CHECK_EQ(recv(cli, b, sizeof b, 0), 0); /* EOF: the socket is closed (a hang: the watchdog) */
    /* The number again, a new socket: its bytes, nothing of the old one's. */
    int cli2, srv2;
    test_pair(lfd, &addr, &cli2, &srv2);
    CHECK_EQ(cp_port_associate(p, srv2, &key), 0);
    CHECK_EQ(cp_port_recv_pooled(p, srv2, &op), 0);
    test_send_all(cli2, "fresh", 5);
    c = take(&w);
    CHECK(c.op == &op);
    CHECK_EQ(c.result, 5);
    CHECK_EQ(memcmp(c.buf, "fresh", 5), 0);
    cp_port_buf_release(p, c.buf);
    CHECK_EQ(cp_port_disassociate(p, srv2), 0);
    close(srv2);
    close(cli2);
    close(cli);
  }
  cp_port_close(p);
  waiter_join(&w);
  cp_port_destroy(p);
  close(lfd);
}

int main(void) {
  test_begin("test_one_waiter", 240);
  cp_log_set(on_log, CP_LOG_DEBUG, NULL);
  test_options();
  test_disassociate_close();
  test_rule();
  test_from_main();
  test_close(false);
  test_close(true);
  test_destroy_on_waiter();
  CHECK_EQ(atomic_load(&log_errors), 0);
  cp_log_set(NULL, CP_LOG_ERROR, NULL);
  fprintf(stderr, "ok\n");
  return 0;
}
