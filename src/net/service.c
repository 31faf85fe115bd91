/*
 * service.c - a service: options, the worker pool, start and stop, counters.
 *
 * Workers loop on cp_port_wait and hand each completion to its owner by the
 * tag next to the op: the listener, a session, a job queue or the timer.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_ACCEPTS 64
#define DEFAULT_BACKLOG 4096
#define DEFAULT_MAX_PACKET 16384
#define DEFAULT_SENDQ (4u << 20)
#define DEFAULT_BAD_PACKET_GRACE_MS 5000u
#define DEFAULT_CONNECT_TIMEOUT_MS 5000u

const char *cp_reason_name(cp_reason r) {
  static const char *const names[CP_REASON_COUNT] = {
      "peer_closed",  "reset",    "local",          "bad_packet", "slow_consumer",
      "idle_timeout", "shutdown", "connect_failed", "error"};
  return (unsigned)r < CP_REASON_COUNT ? names[r] : "unknown";
}

/* The modules' state and svc itself, once the port is gone (create's failure and destroy). */
static void service_free(cp_service *svc) {
  cp__timers_destroy(svc);
  cp__jobs_destroy(svc);
  cp__registry_destroy(&svc->reg);
  cp__registry_destroy(&svc->out_reg);
  cp__sessions_destroy(svc);
  cp__mutex_destroy(&svc->accept_mu);
  cp__cond_destroy(&svc->gate_cv);
  cp__mutex_destroy(&svc->gate_mu);
  cp__listener_fini(svc);
  mem_free(svc->ctr_mem);
  mem_free(svc);
}

/* The counter blocks (struct cp__ctr): one per worker, then the shared one,
 * each on a cache line of its own. false if out of memory. */
static bool ctr_init(cp_service *svc) {
  size_t line = sizeof(struct cp__ctr), n = (size_t)svc->o.threads + 1;
  svc->ctr_mem = mem_calloc(1, n * line + line - 1);
  if (!svc->ctr_mem)
    return false;
  uintptr_t at = ((uintptr_t)svc->ctr_mem + line - 1) & ~(uintptr_t)(line - 1);
  svc->ctr = (struct cp__ctr *)at;
  for (size_t i = 0; i < n; i++)
    svc->ctr[i].svc = svc;
  svc->ctr_shared = &svc->ctr[n - 1];
  return true;
}

/* Counter `which` summed over the blocks. */
static uint64_t ctr_sum(const cp_service *svc, unsigned which, memory_order order) {
  uint64_t sum = 0;
  for (unsigned i = 0; i <= svc->o.threads; i++)
    sum += atomic_load_explicit(&svc->ctr[i].v[which], order);
  return sum;
}

void cp__ctr_flush(cp_service *svc, const struct cp__ctr *priv) {
  for (unsigned i = 0; i < CTR_COUNT; i++) {
    uint64_t v = atomic_load_explicit(&priv->v[i], memory_order_relaxed);
    if (v) /* release: CTR_Q_OUT's (struct cp__ctr); later than the run's is safe */
      atomic_fetch_add_explicit(&svc->ctr_shared->v[i], v, memory_order_release);
  }
}

uint64_t cp__ctr_queued(const cp_service *svc) {
  /* out first, with acquire: every byte seen leaving is seen going in (struct cp__ctr) */
  uint64_t out = ctr_sum(svc, CTR_Q_OUT, memory_order_acquire);
  uint64_t in = ctr_sum(svc, CTR_Q_IN, memory_order_relaxed);
  assert(in >= out);
  return in - out;
}

int cp_service_create(cp_service **out, const cp_service_options *opts) {
  if (!out || !opts)
    return CP_EINVAL;
  *out = NULL;
  if (opts->kind != CP_SERVICE_SERVER && opts->kind != CP_SERVICE_CLIENT)
    return CP_EINVAL;
  if (opts->max_packet && opts->max_packet < CP_PACKET_HEADER)
    return CP_EINVAL;
  cp_service *svc = mem_calloc(1, sizeof *svc);
  if (!svc)
    return CP_ENOMEM;
  svc->o = *opts;
  cp_service_options *o = &svc->o;
  if (!o->host)
    o->host = "127.0.0.1";
  if (!o->threads)
    o->threads = cp__cpu_count();
  if (!o->accepts)
    o->accepts = DEFAULT_ACCEPTS;
  if (!o->backlog)
    o->backlog = DEFAULT_BACKLOG;
  if (!o->client_sessions)
    o->client_sessions = 1;
  if (!o->max_packet)
    o->max_packet = DEFAULT_MAX_PACKET;
  if (!o->send_queue_max)
    o->send_queue_max = DEFAULT_SENDQ;
  if (!o->bad_packet_grace_ms)
    o->bad_packet_grace_ms = DEFAULT_BAD_PACKET_GRACE_MS;
  svc->conf = (struct cp__sconf){.svc = svc,
                                 .cb = o->callbacks,
                                 .send_queue_max = o->send_queue_max,
                                 .idle_timeout_ms = o->idle_timeout_ms,
                                 .max_packet = o->max_packet,
                                 .raw = o->raw};
  int rc = cp_sockaddr_make(&svc->addr, &svc->addrlen, o->host, o->port);
  if (rc) {
    mem_free(svc);
    return rc;
  }
  o->host = NULL; /* not kept: the caller's string may go */
  if (!ctr_init(svc)) {
    mem_free(svc);
    return CP_ENOMEM;
  }
  if (!o->port_opts.concurrency)
    o->port_opts.concurrency = o->threads;
  /* One worker is the port's only waiter (the service never waits on it
   * elsewhere): on io_uring that is a SINGLE_ISSUER + DEFER_TASKRUN ring. */
  if (o->threads == 1)
    o->port_opts.flags |= CP_PORT_ONE_WAITER;
  rc = cp_port_create(&svc->port, &o->port_opts);
  if (rc) {
    mem_free(svc->ctr_mem);
    mem_free(svc);
    return rc;
  }
  cp__mutex_init(&svc->gate_mu);
  cp__cond_init(&svc->gate_cv);
  cp__listener_init(svc);
  cp__registry_init(&svc->reg, offsetof(cp_session, reg_idx), &cp__session_reg_ops);
  cp__registry_init(&svc->out_reg, offsetof(cp_session, reg_idx), &cp__session_reg_ops);
  cp__sessions_init(svc);
  cp__mutex_init(&svc->accept_mu);
  cp__timers_init(svc);
  cp__jobs_init(svc);
  svc->epoch_ms = cp__net_now_ms();
  svc->sysq = cp_jobq_create(svc);
  if (!svc->sysq) {
    cp_port_destroy(svc->port);
    service_free(svc);
    return CP_ENOMEM;
  }
  *out = svc;
  return 0;
}

_Thread_local cp_service *cp__net_worker_of;
_Thread_local struct cp__ctr *cp__net_ctr;

enum { GATE_WAIT = 0, GATE_GO, GATE_ABORT };

static void gate_set(cp_service *svc, int state) {
  cp__mutex_lock(&svc->gate_mu);
  svc->gate = state;
  cp__cond_broadcast(&svc->gate_cv);
  cp__mutex_unlock(&svc->gate_mu);
}

/* arg: the worker's counter block (its own; it names the service). */
static void worker(void *arg) {
  struct cp__ctr *ctr = arg;
  cp_service *svc = ctr->svc;
  cp__net_worker_of = svc;
  cp__net_ctr = ctr;
  cp__mutex_lock(&svc->gate_mu);
  while (svc->gate == GATE_WAIT)
    cp__cond_wait(&svc->gate_cv, &svc->gate_mu);
  bool go = svc->gate == GATE_GO;
  cp__mutex_unlock(&svc->gate_mu);
  if (!go)
    return; /* the start failed: this worker never touched the port */
  cp_completion ev[64];
  for (;;) {
    int n = cp_port_wait(svc->port, ev, 64, -1);
    if (n < 0)
      return; /* closed */
    for (int i = 0; i < n; i++) {
      /* The next completion's session and data, fetched while this one runs: the data's
       * page was written by the kernel a batch ago (io_uring's buffer ring goes round
       * the whole pool), and the handler's first read of it waited for the page walk
       * and the line (docs/performance.md, Round 12). */
      if (i + 1 < n) {
        __builtin_prefetch(ev[i + 1].key);
        if (ev[i + 1].buf)
          __builtin_prefetch(ev[i + 1].buf);
      }
      switch (ev[i].kind) {
      case CP_OP_ACCEPT:
        cp__listener_on_accept(svc, &ev[i]);
        break;
      case CP_OP_POST:
        if (ev[i].result == NET_POST_STRAND)
          cp__session_on_strand_post(ev[i].key);
        else
          cp__jobq_on_run(ev[i].key);
        break;
      case CP_OP_TIMEOUT:
        cp__timer_on_fire(svc, &ev[i]);
        break;
      default: /* connect, recv, send: the fd's key is its session */
        cp__session_on_completion(ev[i].key, &ev[i]);
        break;
      }
    }
    cp__jobs_run_overflow(svc); /* queues whose run the port had no room for */
  }
}

static void idle_scan(void *arg) {
  cp_service *svc = arg;
  if (atomic_load(&svc->stopping))
    return;
  size_t n;
  void **v = cp__registry_snapshot(&svc->reg, &n);
  uint64_t now = cp__net_now_ms();
  for (size_t i = 0; i < n; i++) {
    cp_session *s = v[i];
    if (atomic_load(&s->connected))
      cp__session_check_idle(s, now);
  }
  cp__registry_release(&svc->reg, v, n);
}

/* ---- client sessions ------------------------------------------------- */

/* A client session, not connected yet: NULL and *err if it cannot be made. */
static cp_session *client_new(cp_service *svc, int *err) {
  cp_socket_t fd;
  int rc = cp_socket_tcp(&fd, svc->addr.ss_family);
  if (rc) {
    *err = rc;
    return NULL;
  }
  cp_session *s = cp__session_new(svc, fd, NULL);
  if (!s) {
    cp_socket_close(fd);
    *err = CP_ENOMEM;
  }
  return s;
}

/* Connect it and drop the creator's reference. 0, or CP_ESHUTDOWN; a connect
 * that failed at once is reported by on_disconnected. */
static int client_connect(cp_service *svc, cp_session *s) {
  int rc = cp__session_connect(s, (struct sockaddr *)&svc->addr, svc->addrlen);
  cp_session_put(s);
  return rc == CP_ESHUTDOWN ? rc : 0;
}

int cp_service_connect(cp_service *svc) {
  if (!svc || svc->o.kind != CP_SERVICE_CLIENT || !atomic_load(&svc->started))
    return CP_EINVAL;
  if (atomic_load(&svc->stopping))
    return CP_ESHUTDOWN;
  int err = 0;
  cp_session *s = client_new(svc, &err);
  return s ? client_connect(svc, s) : err;
}

/* ---- outbound sessions ----------------------------------------------- */

/* The session's own dispatch, from o (zeros are defaults; net.h). */
static struct cp__sconf outbound_conf(const cp_service *svc, const cp_connect_options *o) {
  return (struct cp__sconf){.cb = o->callbacks,
                            .send_queue_max =
                                o->send_queue_max ? o->send_queue_max : svc->conf.send_queue_max,
                            .idle_timeout_ms = o->idle_timeout_ms,
                            .max_packet = o->max_packet ? o->max_packet : DEFAULT_MAX_PACKET,
                            .raw = o->raw};
}

int cp_service_connect_to(cp_service *svc, const cp_connect_options *o, cp_session **out) {
  if (out)
    *out = NULL;
  if (!svc || !o || !o->host || !o->port || !atomic_load(&svc->started))
    return CP_EINVAL;
  if (o->max_packet && o->max_packet < CP_PACKET_HEADER)
    return CP_EINVAL;
  if (atomic_load(&svc->stopping))
    return CP_ESHUTDOWN;
  struct sockaddr_storage addr;
  socklen_t addrlen;
  int rc = cp_sockaddr_make(&addr, &addrlen, o->host, o->port);
  if (rc)
    return rc;
  cp_socket_t fd;
  if ((rc = cp_socket_tcp(&fd, addr.ss_family)))
    return rc;
  struct cp__sconf cf = outbound_conf(svc, o);
  cp_session *s = cp__session_new(svc, fd, &cf);
  if (!s) {
    cp_socket_close(fd);
    return CP_ENOMEM;
  }
  cp_socket_nodelay(fd, 1);
  s->user = o->user; /* before anything can run a callback of it */
  container_of(s, struct cp__outbound, s)->connect_timeout_ms =
      o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
  cp_session *mine = out ? cp_session_get(s) : NULL;
  rc = cp__session_connect(s, (struct sockaddr *)&addr, addrlen); /* the port copies it */
  cp_session_put(s);
  if (rc == CP_ESHUTDOWN) { /* never started: no callback comes */
    cp_session_put(mine);
    return rc;
  }
  if (out)
    *out = mine;
  return 0; /* any other failure is reported by on_disconnected (CONNECT_FAILED) */
}

/* Sleep on the platform layer (a condition nobody signals). */
static void sleep_ms(unsigned ms) {
  cp__mutex m;
  cp__cond c;
  cp__mutex_init(&m);
  cp__cond_init(&c);
  uint64_t until = cp__now_ns() + (uint64_t)ms * 1000000u;
  cp__mutex_lock(&m);
  while (cp__cond_timedwait(&c, &m, until) != CP__TIMEDOUT)
    ;
  cp__mutex_unlock(&m);
  cp__cond_destroy(&c);
  cp__mutex_destroy(&m);
}

int cp_service_stop_accepting(cp_service *svc) {
  if (!svc || svc->o.kind != CP_SERVICE_SERVER || !atomic_load(&svc->started) ||
      cp__net_worker_of == svc)
    return CP_EINVAL;
  cp__mutex_lock(&svc->accept_mu);
  bool again = svc->accept_stopped;
  svc->accept_stopped = true;
  if (!again) {
    cp__listener_stop(svc); /* cancels the accepts; none starts after this */
    while (cp__listener_pending(svc))
      sleep_ms(1);
    cp__listener_close(svc); /* new connections are refused from here on */
  }
  cp__mutex_unlock(&svc->accept_mu);
  return again ? CP_EALREADY : 0;
}

/* ---- start: all or nothing ------------------------------------------- */

/* Everything start made before a step failed, to be undone. */
struct start_undo {
  bool listener, idle_timer;
  cp_session **clients;
  unsigned nclients;
};

/* The workers started so far wait at the gate: let them end, and join. */
static void workers_undo(cp_service *svc) {
  gate_set(svc, GATE_ABORT);
  for (unsigned i = 0; i < svc->nworkers; i++)
    cp__thread_join(&svc->workers[i]);
  svc->nworkers = 0;
  gate_set(svc, GATE_WAIT); /* as before: a later start makes new ones */
}

static void start_undo(cp_service *svc, struct start_undo *u) {
  workers_undo(svc);
  if (u->idle_timer)
    cp_timer_cancel(&svc->idle_timer);
  for (unsigned i = 0; i < u->nclients; i++)
    cp_session_put(u->clients[i]); /* never connected: freed at once */
  if (u->listener)
    cp__listener_close(svc);
  mem_free(u->clients);
  mem_free(svc->workers);
  svc->workers = NULL;
}

/* The steps that can fail, none yet visible outside: the listening socket
 * (bound, not accepting), the client sessions (made, not connecting), the
 * idle timer, the workers. */
static int start_prepare(cp_service *svc, struct start_undo *u) {
  svc->workers = mem_calloc(svc->o.threads, sizeof *svc->workers);
  if (!svc->workers)
    return CP_ENOMEM;
  int rc;
  if (svc->o.kind == CP_SERVICE_SERVER) {
    if ((rc = cp__listener_open(svc)))
      return rc;
    u->listener = true;
  } else {
    u->clients = mem_calloc(svc->o.client_sessions, sizeof *u->clients);
    if (!u->clients)
      return CP_ENOMEM;
    for (; u->nclients < svc->o.client_sessions; u->nclients++)
      if (!(u->clients[u->nclients] = client_new(svc, &rc)))
        return rc;
  }
  if (svc->o.idle_timeout_ms) {
    unsigned period = svc->o.idle_timeout_ms / 4;
    period = period < 10 ? 10 : period > 1000 ? 1000 : period;
    if ((rc = cp_timer_start(&svc->idle_timer, svc->sysq, period, period, idle_scan, svc)))
      return rc;
    u->idle_timer = true;
  }
  for (unsigned i = 0; i < svc->o.threads; i++) {
    if ((rc = cp__thread_create(&svc->workers[i], worker, &svc->ctr[i])))
      return rc;
    svc->nworkers++;
  }
  return 0;
}

int cp_service_start(cp_service *svc) {
  if (!svc)
    return CP_EINVAL;
  if (atomic_load(&svc->stopping))
    return CP_ESHUTDOWN;
  if (atomic_exchange(&svc->started, true))
    return CP_EALREADY;
  struct start_undo u = {0};
  int rc = start_prepare(svc, &u);
  if (!rc && svc->o.kind == CP_SERVICE_SERVER)
    rc = cp__listener_arm(svc); /* posts nothing if it fails */
  if (rc) {
    start_undo(svc, &u);
    atomic_store(&svc->started, false);
    return rc;
  }
  /* Visible from here on: timers fire, connects report their outcome by
   * callbacks. */
  gate_set(svc, GATE_GO);
  cp__timers_run(svc);
  for (unsigned i = 0; i < u.nclients; i++)
    client_connect(svc, u.clients[i]);
  mem_free(u.clients);
  return 0;
}

/* ---- stop and destroy ------------------------------------------------ */

/* Disconnect every session of r (after this no new one registers). */
static void close_all(struct cp__registry *r) {
  cp__registry_close(r);
  size_t n;
  void **v = cp__registry_snapshot(r, &n);
  for (size_t i = 0; i < n; i++)
    cp__session_close(v[i], CP_REASON_SHUTDOWN);
  cp__registry_release(r, v, n);
}

/* Wait until done(svc), saying every 5 s what it waits for. */
static void wait_for(cp_service *svc, bool (*done)(cp_service *), const char *what) {
  uint64_t warn = cp__net_now_ms() + 5000;
  while (!done(svc)) {
    sleep_ms(1);
    if (cp__net_now_ms() > warn) {
      cp__log(CP_LOG_WARN, "cport: stop is waiting for %s (%llu sessions still referenced)", what,
              (unsigned long long)atomic_load(&svc->sessions_alive));
      warn = cp__net_now_ms() + 5000;
    }
  }
}

/* Every inbound session has ended (its on_disconnected returned). */
static bool inbound_gone(cp_service *svc) {
  return cp__registry_count(&svc->reg) == 0;
}
/* Every session gone (every reference put), every accept back. */
static bool all_gone(cp_service *svc) {
  return !atomic_load(&svc->sessions_alive) && !cp__listener_pending(svc);
}

void cp_service_stop(cp_service *svc, unsigned drain_ms) {
  if (!svc || atomic_exchange(&svc->stopping, true))
    return;
  if (!atomic_load(&svc->started)) {
    atomic_store(&svc->stopped, true); /* timers refuse to start from now on */
    cp__registry_close(&svc->reg);
    cp__registry_close(&svc->out_reg);
    return;
  }
  cp__listener_stop(svc);
  /* Let queued sends go out, up to drain_ms. */
  uint64_t until = cp__net_now_ms() + drain_ms;
  while (cp__ctr_queued(svc) && cp__net_now_ms() < until)
    sleep_ms(2);
  /* The players first; the outbound links (a database, Redis) stay up
   * until every inbound on_disconnected has returned, so those may still
   * use them. New outbound connects are refused already (stopping). */
  close_all(&svc->reg);
  wait_for(svc, inbound_gone, "the inbound sessions to end");
  close_all(&svc->out_reg);
  /* Every session gone, every accept back. The application must have put
   * its own references; say so if it takes long. */
  wait_for(svc, all_gone, "every session to be released");
  /* Timers stop; wait for the armed one to come back. */
  atomic_store(&svc->stopped, true);
  cp__timers_stop(svc);
  cp_port_close(svc->port);
  for (unsigned i = 0; i < svc->nworkers; i++)
    cp__thread_join(&svc->workers[i]);
}

void cp_service_destroy(cp_service *svc) {
  if (!svc)
    return;
  cp_service_stop(svc, 0);
  cp__listener_close(svc);
  cp_port_destroy(svc->port);
  mem_free(svc->workers);
  cp_jobq_destroy(svc->sysq);
  service_free(svc);
}

/* ---- counters, accessors, broadcast ---------------------------------- */

void cp_service_get_stats(const cp_service *svc, cp_service_stats *o) {
  if (!o)
    return;
  *o = (cp_service_stats){0};
  if (!svc)
    return;
  const struct cp__stats *st = &svc->st;
#define LD(x) atomic_load_explicit((_Atomic uint64_t *)&st->x, memory_order_relaxed)
  /* disconnects first (acquire): a session is counted there only after it
   * left the sessions gauge (session.c, finish_close), so a snapshot never
   * holds a session in both */
  for (int i = 0; i < CP_REASON_COUNT; i++)
    o->disconnects[i] =
        atomic_load_explicit((_Atomic uint64_t *)&st->disc[i], memory_order_acquire);
  o->sessions = LD(sessions);
  o->accepts = LD(accepts);
  o->refused = LD(refused);
  o->connects = LD(connects);
  o->connect_failures = LD(connect_failures);
  o->accept_errors = LD(accept_errors);
  o->bytes_in = ctr_sum(svc, CTR_BYTES_IN, memory_order_relaxed);
  o->bytes_out = ctr_sum(svc, CTR_BYTES_OUT, memory_order_relaxed);
  o->packets_in = ctr_sum(svc, CTR_PACKETS_IN, memory_order_relaxed);
  o->packets_out = ctr_sum(svc, CTR_PACKETS_OUT, memory_order_relaxed);
  o->sends = ctr_sum(svc, CTR_SENDS, memory_order_relaxed);
  o->send_queue_bytes = cp__ctr_queued(svc);
  o->outbound = LD(outbound);
  o->outbound_failures = LD(outbound_failures);
#undef LD
}

cp_port *cp_service_port(const cp_service *svc) {
  return svc ? svc->port : NULL;
}
uint16_t cp_service_listen_port(const cp_service *svc) {
  return svc ? cp__listener_port(svc) : 0;
}
void *cp_service_user(const cp_service *svc) {
  return svc ? svc->o.user : NULL;
}

size_t cp_service_broadcast(cp_service *svc, cp_sendbuf *buf) {
  if (!svc || !buf)
    return 0;
  size_t n;
  void **v = cp__registry_snapshot(&svc->reg, &n);
  size_t ok = cp_session_send_many((cp_session *const *)v, n, buf); /* one call: see there */
  cp__registry_release(&svc->reg, v, n);
  return ok;
}
