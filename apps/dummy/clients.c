/*
 * clients.c - cport-dummy's servers (--servers: a client service each) and the clients'
 * connections: connect, reconnect (churn), pacing, and what is still to arrive.
 */
#define _GNU_SOURCE
#include "../common/wire.h"
#include "dummy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Churn: everything c sent has come back; close (lock held). on_disconnected
 * reconnects. */
void leave_now(struct client *c) {
  atomic_store(&c->state, CS_CLOSING);
  cp_session_disconnect(c->s, false);
}

/* ---- sessions -------------------------------------------------------- */

static struct server *server_of(const cp_session *s) {
  return cp_service_user(cp_session_service(s));
}

static void on_connected(cp_session *s) {
  struct server *sv = server_of(s);
  unsigned t = atomic_fetch_add(&sv->next, 1), i = t < sv->n ? sv->members[t] : 0;
  bool again = false;
  if (t >= sv->n) { /* a reconnect: the client of this server that waited longest */
    pthread_mutex_lock(&pend_mu);
    if (sv->pend_inflight)
      sv->pend_inflight--;
    if (sv->pend_n) {
      i = sv->pend[sv->pend_head];
      sv->pend_head = (sv->pend_head + 1) % sv->n;
      sv->pend_n--;
      again = true;
    }
    pthread_mutex_unlock(&pend_mu);
    if (!again) {
      dummy_error("a connection nobody asked for");
      cp_session_disconnect(s, false);
      return;
    }
  }
  struct client *c = &clients[i];
  cp_session_set_user(s, c);
  pthread_spin_lock(&c->lock);
  c->s = cp_session_get(s); /* for the pacer; put back in on_disconnected */
  atomic_store(&c->state, cfg.mode == MODE_CHAT ? CS_CONNECTED : CS_UP);
  if (again && cfg.mode != MODE_CHAT && cfg.rate == 0 && atomic_load(&sending))
    for (unsigned k = 0; k < cfg.depth && c->s; k++)
      echo_send(c);
  pthread_spin_unlock(&c->lock);
  if (!again)
    atomic_fetch_add(&n_connected, 1);
  if (cfg.mode == MODE_CHAT && cfg.pipeline) {
    c->script = 0;
    pipeline_send(s, c);
  } else if (cfg.mode == MODE_CHAT) {
    char name[40];
    snprintf(name, sizeof name, "dummy-%u", i);
    Chat__CLogin m = CHAT__CLOGIN__INIT;
    m.name = name;
    wire_send(s, CHAT__PACKET_ID__C_LOGIN, &m.base);
  } else if (again) {
    atomic_fetch_add(&n_reconnects, 1);
  } else {
    c->ever_up = true;
  }
}

static void on_disconnected(cp_session *s, cp_reason why) {
  struct client *c = cp_session_user(s);
  bool churned = false;
  if (c) {
    pthread_spin_lock(&c->lock);
    cp_session *mine = c->s;
    c->s = NULL;
    churned = atomic_load(&c->state) == CS_CLOSING && why == CP_REASON_LOCAL;
    atomic_store(&c->state, churned ? CS_DOWN : CS_DEAD);
    pthread_spin_unlock(&c->lock);
    if (mine)
      cp_session_put(mine);
  }
  struct server *sv = server_of(s);
  if (churned) { /* queue the reconnect: the main loop connects */
    pthread_mutex_lock(&pend_mu);
    sv->pend[(sv->pend_head + sv->pend_n) % sv->n] = c->idx;
    sv->pend_n++;
    pthread_mutex_unlock(&pend_mu);
    return;
  }
  if (why == CP_REASON_CONNECT_FAILED) {
    if (atomic_load(&churning)) {
      pthread_mutex_lock(&pend_mu);
      if (sv->pend_inflight)
        sv->pend_inflight--;
      pthread_mutex_unlock(&pend_mu);
      atomic_fetch_add(&n_reconnect_failures, 1);
      dummy_error("a reconnect to %s:%u failed", sv->a->host, sv->a->port);
    } else {
      dummy_error("a connect to %s:%u failed", sv->a->host, sv->a->port);
    }
    return;
  }
  if (why != CP_REASON_SHUTDOWN && why != CP_REASON_LOCAL)
    dummy_error("client %u: disconnected (%s)", c ? c->idx : 0, cp_reason_name(why));
}

/* ---- pacing ---------------------------------------------------------- */

/* Rate mode: every 5 ms, send what is due (client i starts i/N of a period
 * late, so a second's sends are spread over the second). */
void pace(uint64_t start, uint64_t now) {
  double period = 1e9 / cfg.rate;
  for (unsigned i = 0; i < cfg.clients; i++) {
    struct client *c = &clients[i];
    double t = (double)(now - start) - period * i / cfg.clients;
    uint64_t due = t < 0 ? 0 : (uint64_t)(t / period) + 1;
    pthread_spin_lock(&c->lock);
    for (int k = 0; c->sent < due && k < 100; k++) {
      if (!c->s || atomic_load(&c->state) != CS_UP)
        break;
      if (cfg.mode == MODE_CHAT)
        chat_send(c);
      else
        echo_send(c);
    }
    pthread_spin_unlock(&c->lock);
  }
}

/* ---- churn (main thread) ----------------------------------------------- */

/* Start the leave of the next client, round-robin, that is up. */
void churn_one(void) {
  static unsigned next;
  for (unsigned k = 0; k < cfg.clients; k++) {
    struct client *c = &clients[next];
    next = (next + 1) % cfg.clients;
    pthread_spin_lock(&c->lock);
    if (atomic_load(&c->state) != CS_UP || !c->s) {
      pthread_spin_unlock(&c->lock);
      continue;
    }
    c->leave_seq = c->sent + 1; /* before the state: the strand reads it after the state */
    atomic_store(&c->state, CS_LEAVING);
    atomic_fetch_add(&n_churn_out, 1);
    if (cfg.mode == MODE_CHAT) {
      chat_send(c); /* my last chat; when it is back, fence_start */
      if (c->sent != c->leave_seq)
        dummy_error("client %u: could not send its last chat before leaving", c->idx);
    } else if (c->recvd == c->sent) {
      leave_now(c);
    }
    pthread_spin_unlock(&c->lock);
    return;
  }
  atomic_fetch_add(&n_churn_skipped, 1); /* nobody was up */
}

/* Connect for the clients of sv that wait for a connection and have none coming. */
static void pump_server(struct server *sv) {
  for (;;) {
    pthread_mutex_lock(&pend_mu);
    bool want = sv->pend_n > sv->pend_inflight;
    if (want)
      sv->pend_inflight++;
    pthread_mutex_unlock(&pend_mu);
    if (!want)
      return;
    int rc = cp_service_connect(sv->svc);
    if (rc) {
      pthread_mutex_lock(&pend_mu);
      sv->pend_inflight--;
      pthread_mutex_unlock(&pend_mu);
      atomic_fetch_add(&n_reconnect_failures, 1);
      dummy_error("cannot reconnect to %s:%u: %s", sv->a->host, sv->a->port, cp_strerror(rc));
      return;
    }
  }
}

/* Connect for every client that waits for a connection and has none coming. */
void pump_reconnects(void) {
  if (cfg.churn == 0 || atomic_load(&n_reconnect_failures) >= 100) /* the server is gone */
    return;
  for (unsigned k = 0; k < n_servers; k++)
    if (servers[k].svc)
      pump_server(&servers[k]);
}

/* The connects that failed, on every server. */
uint64_t connect_failures(void) {
  uint64_t n = 0;
  for (unsigned k = 0; k < n_servers; k++) {
    cp_service_stats st;
    cp_service_get_stats(servers[k].svc, &st);
    n += st.connect_failures;
  }
  return n;
}

/* Messages sent but not yet received back (echo), or deliveries still
 * expected (chat: by connected members, of the chats sent since they
 * entered); *away: clients that are reconnecting or leaving. Clients that
 * were cut off (an error already) are not waited for. */
uint64_t outstanding(uint64_t *away) {
  uint64_t left = 0;
  *away = 0;
  for (unsigned base = 0; base < cfg.clients; base += cfg.room_size) {
    unsigned n = cfg.mode == MODE_CHAT ? room_members(base) : cfg.clients;
    uint64_t want = 0;
    if (cfg.mode == MODE_CHAT)
      for (unsigned j = 0; j < n; j++)
        want += atomic_load(&clients[base + j].sent);
    for (unsigned j = 0; j < n; j++) {
      struct client *c = &clients[base + j];
      int st = atomic_load(&c->state);
      if (st == CS_DEAD)
        continue;
      if (st != CS_UP) {
        (*away)++;
        continue;
      }
      uint64_t got = cfg.mode == MODE_CHAT ? atomic_load(&c->have) : atomic_load(&c->recvd);
      if (cfg.mode != MODE_CHAT)
        want = atomic_load(&c->sent);
      left += want > got ? want - got : 0;
    }
    if (cfg.mode != MODE_CHAT)
      break;
  }
  return left;
}

/* Chat: pooled receive buffers of 64 KiB, not the port's 4 KiB (about 70 chats): a member
 * that falls behind reads what piled up in its socket in one receive, not 16, and checks it
 * in one batch (the per-sender state of that member stays in cache through it). The port
 * maps the pool and touches a buffer's pages only as data lands in them. */
enum { CHAT_RECV_BUF = 64 << 10 };

/* The server client i connects to: round-robin over the clients (a room spans the servers),
 * or with --spread rooms over the rooms (a room on one server). */
unsigned server_index(unsigned i) {
  return (cfg.spread_rooms ? i / cfg.room_size : i) % n_servers;
}

/* servers[]: 0, or 1 out of memory (said so). */
int setup_servers(void) {
  n_servers = cfg.n_addr;
  for (unsigned k = 0; k < n_servers; k++)
    servers[k].a = &cfg.addr[k];
  for (unsigned i = 0; i < cfg.clients; i++)
    servers[server_index(i)].n++;
  for (unsigned k = 0; k < n_servers; k++) {
    struct server *sv = &servers[k];
    unsigned n = sv->n ? sv->n : 1;
    sv->members = calloc(n, sizeof *sv->members);
    sv->pend = cfg.churn > 0 ? calloc(n, sizeof *sv->pend) : NULL;
    if (!sv->members || (cfg.churn > 0 && !sv->pend)) {
      fprintf(stderr, "cport-dummy: out of memory\n");
      return 1;
    }
    sv->n = 0;
  }
  for (unsigned i = 0; i < cfg.clients; i++) {
    struct server *sv = &servers[server_index(i)];
    sv->members[sv->n++] = i;
  }
  return 0;
}

/* clients[]: 0, or 1 out of memory (said so). */
/* Chat: c's place in its room's want table (dummy.h), which its room's first client
 * allocates: a region of G x (room size rounded up to 16) entries per G = --want-group
 * members, line-aligned, member k of a region at offset k, sender j at j * G. */
static int want_table(struct client *c) {
  size_t k = c->idx - c->base, pad = (c->nmem + 15u) / 16 * 16, g = cfg.want_group;
  if (k == 0) {
    size_t bytes = (c->nmem + g - 1) / g * g * pad * sizeof(uint32_t); /* a multiple of 64 */
    if (!(c->want = os_aligned_alloc(64, bytes)))
      return -1;
    memset(c->want, 0, bytes);
    return 0;
  }
  c->want = clients[c->base].want + k / g * g * pad + k % g;
  return 0;
}

unsigned presence_bits;

int setup_clients(void) {
  for (presence_bits = 1; (size_t)1 << presence_bits <= 2 * (size_t)cfg.room_size;)
    presence_bits++;
  clients = calloc(cfg.clients, sizeof *clients);
  if (!clients) {
    fprintf(stderr, "cport-dummy: out of memory\n");
    return 1;
  }
  for (unsigned i = 0; i < cfg.clients; i++) {
    clients[i].srv = &servers[server_index(i)];
    clients[i].idx = i;
    clients[i].room_len =
        (uint8_t)snprintf(clients[i].room, sizeof clients[i].room, "room-%u", i / cfg.room_size);
    pthread_spin_init(&clients[i].lock, PTHREAD_PROCESS_PRIVATE);
    clients[i].base = room_base(&clients[i]);
    clients[i].nmem = room_members(clients[i].base);
    if (cfg.mode == MODE_CHAT &&
        (want_table(&clients[i]) != 0 ||
         !(clients[i].seen = calloc(cfg.room_size, sizeof(struct seen))) ||
         !(clients[i].mpid = calloc(1, presence_bytes())) ||
         (cfg.churn > 0 && !(clients[i].fence = calloc(cfg.room_size, 1))))) {
      fprintf(stderr, "cport-dummy: out of memory\n");
      return 1;
    }
  }
  return 0;
}

/* The worker threads of each client service: --threads over all of them (at least one
 * each). */
static unsigned threads_per_service(void) {
  unsigned used = 0, t = cfg.threads ? cfg.threads : os_cpu_count();
  for (unsigned k = 0; k < n_servers; k++)
    used += servers[k].n > 0;
  return used > 1 ? (t / used ? t / used : 1) : cfg.threads;
}

/* sv's client service, started: 0, or 1 (said why). */
static int start_service(struct server *sv, unsigned threads) {
  cp_service_options o = {
      .kind = CP_SERVICE_CLIENT,
      .host = sv->a->host,
      .port = (uint16_t)sv->a->port,
      .threads = threads,
      .client_sessions = sv->n,
      .user = sv,
      .raw = cfg.mode == MODE_ECHO,
      .max_packet = 65535,
      .send_queue_max = 64u << 20,
      .port_opts = {.backend = cfg.backend, .buf_size = cfg.mode == MODE_CHAT ? CHAT_RECV_BUF : 0},
      .callbacks = {.on_connected = on_connected,
                    .on_raw = on_raw,
                    .on_packet = on_packet,
                    .on_disconnected = on_disconnected}};
  int rc = cp_service_create(&sv->svc, &o);
  if (!rc)
    rc = cp_service_start(sv->svc);
  if (rc) {
    fprintf(stderr, "cport-dummy: cannot start the clients of %s:%u: %s\n", sv->a->host,
            sv->a->port, cp_strerror(rc));
    return 1;
  }
  if (!cfg.quiet)
    fprintf(stderr, "cport-dummy: %u clients, %s mode, to %s:%u, backend %s\n", sv->n,
            mode_names[cfg.mode], sv->a->host, sv->a->port,
            cp_backend_name(cp_port_backend(cp_service_port(sv->svc))));
  return 0;
}

/* Every server's client service, started: 0, or 1 (said why). */
int start_services(void) {
  unsigned threads = threads_per_service();
  for (unsigned k = 0; k < n_servers; k++)
    if (servers[k].n && start_service(&servers[k], threads))
      return 1;
  return 0;
}

/* Stop every client service (what is left of a stopped one: nothing). */
void stop_services(void) {
  for (unsigned k = 0; k < n_servers; k++)
    cp_service_stop(servers[k].svc, 0);
}
