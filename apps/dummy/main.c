/*
 * cport-dummy - the DummyClient: many players against a server, every reply
 * verified, latency measured.
 *
 *   cport-dummy [--host 127.0.0.1] [--port 7777] [--clients 100]
 *               [--mode echo|packet-echo|chat] [--size BYTES] [--depth N | --rate PER_SEC]
 *               [--duration SECONDS] [--room-size N] [--churn PER_SEC] [--threads N]
 *               [--backend auto|uring|epoll] [--connect-timeout SECONDS] [--json] [--quiet]
 *               [--servers HOST:PORT[,HOST:PORT...] [--spread clients|rooms]]
 *
 * echo / packet-echo: each client keeps --depth messages in flight (or sends
 * --rate a second). A message carries its sequence number, its send time and
 * bytes derived from (client, sequence): whatever comes back is compared byte
 * for byte, in order - loss, corruption, duplication and reordering all show.
 *
 * chat (the seeds' workload): every client logs in, enters room
 * "room-<i / room-size>", and once everyone is in, chats --rate times a second
 * (default 1). Every member must receive every chat of its room exactly once,
 * in each sender's order; latency is from the sender's send to each delivery.
 *
 * --churn N: connection churn. N times a second (round-robin over the
 * clients) a client stops sending, waits until what it sent is back,
 * disconnects, connects again (cp_service_connect), and - in chat - logs in
 * again (a new player id), re-enters its room and carries on; its sequence
 * numbers continue across connections. Nothing is forgiven:
 *  - echo: the stream is quiet when it closes, so every message is still
 *    echoed exactly once, in order.
 *  - chat: a room runs its jobs one at a time, so a connection gets exactly
 *    the chats the room handles after its enter and before its leave, in
 *    room order. Chats missed while away are not counted, and nothing else
 *    is excused:
 *    enter: when S_ENTER_ROOM comes (the enter has run), the member notes how
 *      many chats each member has sent, under that sender's send lock; a
 *      chat sent later reaches the room after the enter, so the first chat
 *      of each sender on this connection may be at most the next one, and
 *      may not be one seen before. (A chat in flight across the enter may
 *      come or not: only the room knows which side of the enter it was.)
 *    in between: each sender's chats come one after the other, no gap.
 *    leave: the member sends a last chat. When it is back, the room has sent
 *      it every chat handled before it - but which those are only the room
 *      knows, so the member waits, before it disconnects, for one more chat
 *      of every member that has sent more than it has (handled after its
 *      last one); the no-gap check then covers everything before.
 *    end: every connected member has every chat sent after its last enter.
 *    Each chat also names its sender's current player id, and the server's
 *    stamp must match it.
 * A failed reconnect is an error. The report counts churn disconnects,
 * reconnects and failed reconnects.
 *
 * One order (chat): all members of a room must receive its chats in the same order, not
 * only each sender's in order - a room's chats are handled one at a time (on one server, by
 * the room; across cluster nodes, by the room's offsets): see order.h.
 *
 * --servers (issue 14): the clients go round-robin to several servers - cluster nodes that
 * share the rooms - and everything above is verified across them. --spread rooms puts each
 * room's clients on one server instead (servers that share nothing).
 *
 * Exit status: 0 if everything verified, 1 on any error, 2 on bad flags.
 */
#define _GNU_SOURCE
#include "../common/cli.h"
#include "../common/wire.h"
#include "dummy.h"

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const mode_names[3] = {"echo", "packet-echo", "chat"};
struct config cfg;
struct client *clients;

struct server servers[SERVERS_MAX];
unsigned n_servers;
struct hist rtt; /* C_PING -> S_PONG */
_Atomic uint64_t n_connected, n_entered, n_errors, n_sent;
_Atomic uint64_t n_joined, n_left, n_pings, n_pongs, n_scripts;
_Atomic bool sending, measuring, churning;

/* Churn: the servers' pend rings. */
pthread_mutex_t pend_mu = PTHREAD_MUTEX_INITIALIZER;
_Atomic uint64_t n_churn_out, n_reconnects, n_reconnect_failures, n_churn_skipped;

/* ---- main ------------------------------------------------------------ */

static void usage(FILE *f) {
  fprintf(
      f, "usage: cport-dummy [options]\n"
         "  --host ADDR --port N      the server (default 127.0.0.1:7777)\n"
         "  --clients N               connections (default 100)\n"
         "  --mode MODE               echo | packet-echo | chat (default chat)\n"
         "  --size BYTES              message size (echo: >= 16, packet-echo: >= 20;\n"
         "                            chat: chat text length) (default 64)\n"
         "  --depth N                 echo: messages in flight per client (default 1)\n"
         "  --rate N                  messages per second per client (chat default 1)\n"
         "  --duration SECONDS        how long to send (default 10)\n"
         "  --room-size N             chat: clients per room (default 100)\n"
         "  --churn N                 clients a second that disconnect, reconnect and\n"
         "                            carry on, verified throughout (default 0)\n"
         "  --threads N               worker threads (default: CPU count)\n"
         "  --backend B               auto | uring | epoll\n"
         "  --connect-timeout SECONDS (default 10)\n"
         "  --pipeline                chat: each connection's first write pipelines C_PING,\n"
         "                            C_LOGIN, enter/chat/leave/enter/leave of a room of its\n"
         "                            own and a switch to its room; every answer checked in order\n"
         "  --ping-interval MS        chat: each client sends C_PING this often; 0 = never\n"
         "                            (default 1000); RTT percentiles in the report\n"
         "  --server-pid PID[,PID...] also report those processes' CPU per delivery over the\n"
         "                            measured window, summed (from /proc; bench/run-chat)\n"
         "  --servers H:P[,H:P...]    several servers (cluster nodes), instead of --host and\n"
         "                            --port: the clients are spread over them round-robin,\n"
         "                            each server's through a client service of its own\n"
         "                            (--threads shared out), and every room is verified\n"
         "                            across them: each member gets each chat once, and all\n"
         "                            members of a room get its chats in one order\n"
         "  --spread clients|rooms    with --servers: round-robin over the clients (default:\n"
         "                            rooms span the servers) or over the rooms (each room on\n"
         "                            one server: for servers that share nothing)\n"
         "  --want-group N            chat: members whose state of a sender shares a cache\n"
         "                            line, 1 2 4 8 or 16 (default 1; a measuring knob, see\n"
         "                            docs/performance.md)\n"
         "  --json                    final report as one JSON object on stdout\n"
         "  --quiet                   no progress line\n");
}

/* ---- parse ----------------------------------------------------------- */

static const struct option long_opts[] = {{"host", 1, 0, 'h'},
                                          {"port", 1, 0, 'p'},
                                          {"clients", 1, 0, 'c'},
                                          {"mode", 1, 0, 'm'},
                                          {"size", 1, 0, 's'},
                                          {"depth", 1, 0, 'd'},
                                          {"rate", 1, 0, 'r'},
                                          {"duration", 1, 0, 'D'},
                                          {"room-size", 1, 0, 'R'},
                                          {"threads", 1, 0, 't'},
                                          {"backend", 1, 0, 'b'},
                                          {"connect-timeout", 1, 0, 'T'},
                                          {"json", 0, 0, 'j'},
                                          {"quiet", 0, 0, 'q'},
                                          {"churn", 1, 0, 'C'},
                                          {"pipeline", 0, 0, 'P'},
                                          {"ping-interval", 1, 0, 'I'},
                                          {"server-pid", 1, 0, 'S'},
                                          {"servers", 1, 0, 'L'},
                                          {"spread", 1, 0, 'Y'},
                                          {"want-group", 1, 0, 'W'},
                                          {"help", 0, 0, 'H'},
                                          {0, 0, 0, 0}};

static enum cli_status bad(const char *flag, const char *v, const char *detail) {
  return cli_bad_value("cport-dummy", flag, v, detail);
}

static enum cli_status bad_range(const char *flag, const char *v, unsigned min, unsigned max) {
  char detail[48];
  snprintf(detail, sizeof detail, " (%u..%u)", min, max);
  return bad(flag, v, detail);
}

static enum cli_status num(const char *flag, const char *v, unsigned min, unsigned max,
                           unsigned *out) {
  return cli_unsigned(v, min, max, out) ? CLI_RUN : bad_range(flag, v, min, max);
}

/* A count of unit_ms-millisecond units in [min, max], into *out_ms. */
static enum cli_status duration(const char *flag, const char *v, unsigned unit_ms, unsigned min,
                                unsigned max, unsigned *out_ms) {
  return cli_duration_ms(v, unit_ms, min, max, out_ms) ? CLI_RUN : bad_range(flag, v, min, max);
}

static const char *const spread_names[] = {"clients", "rooms"};

/* "HOST:PORT[,HOST:PORT...]" (an IPv6 host in brackets: [::1]:7777) into o->addr. */
static enum cli_status parse_servers(const char *v, struct config *o) {
  o->n_addr = 0;
  for (const char *p = v;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    const char *colon = NULL; /* the last one: an IPv6 host has colons too */
    for (size_t k = 0; k < len; k++)
      if (p[k] == ':')
        colon = p + k;
    char port[8];
    size_t hlen = colon ? (size_t)(colon - p) : 0, plen = colon ? len - hlen - 1 : 0;
    const char *host = p;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
      host++;
      hlen -= 2;
    }
    if (o->n_addr == SERVERS_MAX)
      return bad("servers", v, " (at most 64 servers)");
    if (!hlen || hlen >= sizeof o->addr[0].host || !plen || plen >= sizeof port)
      return bad("servers", v, " (HOST:PORT[,HOST:PORT...])");
    memcpy(port, colon + 1, plen);
    port[plen] = 0;
    struct addr *a = &o->addr[o->n_addr++];
    memcpy(a->host, host, hlen);
    a->host[hlen] = 0;
    if (!cli_unsigned(port, 1, 65535, &a->port))
      return bad("servers", v, " (a port is 1..65535)");
    if (!comma)
      return CLI_RUN;
    p = comma + 1;
  }
}

/* "PID[,PID...]" into o->server_pids. */
static enum cli_status parse_pids(const char *v, struct config *o) {
  o->n_server_pids = 0;
  for (const char *p = v;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char pid[16];
    if (!len || len >= sizeof pid || o->n_server_pids == SERVERS_MAX)
      return bad("server-pid", v, " (PID[,PID...], at most 64)");
    memcpy(pid, p, len);
    pid[len] = 0;
    if (!cli_unsigned(pid, 1, INT_MAX, &o->server_pids[o->n_server_pids++]))
      return bad("server-pid", v, " (PID[,PID...])");
    if (!comma)
      return CLI_RUN;
    p = comma + 1;
  }
}

/* The flags whose default depends on the mode, if given. */
struct given {
  bool rate, size;
};

/* One option ch with its argument v into o. */
static enum cli_status parse_option(int ch, const char *v, struct config *o, struct given *g) {
  int m;
  switch (ch) {
  case 'h':
    o->host = v;
    return CLI_RUN;
  case 'p':
    return num("port", v, 1, 65535, &o->port);
  case 'c':
    return num("clients", v, 1, 1000000, &o->clients);
  case 'm':
    if (!cli_choice(v, mode_names, 3, &m))
      return bad("mode", v, " (echo, packet-echo, chat)");
    o->mode = (enum mode)m;
    return CLI_RUN;
  case 's':
    g->size = true;
    return num("size", v, 1, 65535, &o->size);
  case 'd':
    return num("depth", v, 1, 100000, &o->depth);
  case 'r':
    g->rate = true;
    return cli_real(v, 0, false, 1e6, &o->rate) ? CLI_RUN
                                                : bad("rate", v, " (above 0, at most 1000000)");
  case 'D':
    return duration("duration", v, 1000, 1, 86400, &o->duration_ms);
  case 'R':
    return num("room-size", v, 1, 1000000, &o->room_size);
  case 't':
    return num("threads", v, 1, 256, &o->threads);
  case 'b':
    return cli_backend(v, &o->backend) ? CLI_RUN : bad("backend", v, " (auto, uring, epoll)");
  case 'C':
    return cli_real(v, 0, true, 1e6, &o->churn) ? CLI_RUN : bad("churn", v, " (0..1000000)");
  case 'T':
    return duration("connect-timeout", v, 1000, 1, 3600, &o->connect_timeout_ms);
  case 'I':
    return duration("ping-interval", v, 1, 0, 3600000, &o->ping_ms);
  case 'S':
    return parse_pids(v, o);
  case 'L':
    return parse_servers(v, o);
  case 'Y':
    if (!cli_choice(v, spread_names, 2, &m))
      return bad("spread", v, " (clients, rooms)");
    o->spread_rooms = m == 1;
    return CLI_RUN;
  case 'W':
    if (!cli_unsigned(v, 1, 16, &o->want_group) || (o->want_group & (o->want_group - 1)))
      return bad("want-group", v, " (1, 2, 4, 8 or 16)");
    return CLI_RUN;
  case 'j':
    o->json = true;
    return CLI_RUN;
  case 'P':
    o->pipeline = true;
    return CLI_RUN;
  case 'q':
    o->quiet = true;
    return CLI_RUN;
  case 'H':
    return CLI_HELP;
  default:
    fprintf(stderr, "cport-dummy: unknown or incomplete option '%s'\n", v);
    usage(stderr);
    return CLI_USAGE;
  }
}

/* argv into o: no side effect but the error messages. */
static enum cli_status parse(int argc, char **argv, struct config *o) {
  *o = (struct config){.host = "127.0.0.1",
                       .port = 7777,
                       .clients = 100,
                       .size = 64,
                       .depth = 1,
                       .duration_ms = 10000,
                       .room_size = 100,
                       .connect_timeout_ms = 10000,
                       .mode = MODE_CHAT,
                       .backend = CP_BACKEND_AUTO,
                       .ping_ms = 1000,
                       .want_group = 1};
  struct given g = {0};
  int ch;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
    /* an unknown option is reported by its argv word */
    enum cli_status st =
        parse_option(ch, ch == '?' || ch == ':' ? argv[optind - 1] : optarg, o, &g);
    if (st != CLI_RUN)
      return st;
  }
  if (optind < argc) {
    fprintf(stderr, "cport-dummy: unexpected argument '%s'\n", argv[optind]);
    return CLI_USAGE;
  }
  if (!o->n_addr) { /* --host and --port */
    if (strlen(o->host) >= sizeof o->addr[0].host)
      return bad("host", o->host, " (too long)");
    snprintf(o->addr[0].host, sizeof o->addr[0].host, "%s", o->host);
    o->addr[0].port = o->port;
    o->n_addr = 1;
  }
  unsigned least = (o->mode == MODE_PACKET_ECHO ? CP_PACKET_HEADER : 0) + MSG_HDR;
  if (o->mode == MODE_CHAT) {
    if (!g.rate)
      o->rate = 1;
    if (!g.size)
      o->size = 16;
    if (o->room_size > o->clients)
      o->room_size = o->clients;
  } else if (o->size < least) {
    fprintf(stderr, "cport-dummy: --size must be at least %u in %s mode\n", least,
            mode_names[o->mode]);
    return CLI_USAGE;
  }
  return CLI_RUN;
}

/* ---- run ------------------------------------------------------------- */

/* Connect everyone (and, in chat, log in and enter the rooms). true: stop now (a failure, said
 * so, or a signal). */
static bool connect_all(void) {
  uint64_t deadline = now_ns() + (uint64_t)cfg.connect_timeout_ms * 1000000ull;
  for (;;) {
    uint64_t ready = cfg.mode == MODE_CHAT ? atomic_load(&n_entered) : atomic_load(&n_connected);
    if (ready >= cfg.clients)
      return false;
    uint64_t failures = connect_failures();
    if (failures || atomic_load(&n_errors) || now_ns() > deadline) {
      fprintf(stderr,
              "cport-dummy: only %" PRIu64 " of %u clients %s (%" PRIu64 " connect failures)\n",
              ready, cfg.clients, cfg.mode == MODE_CHAT ? "entered their rooms" : "connected",
              failures);
      atomic_fetch_add(&n_errors, 1);
      return true;
    }
    if (cp_stop_wait(TICK_MS) != 0)
      return true;
  }
}

/* Depth mode: put --depth messages in flight on every client. */
static void prime_depth(void) {
  for (unsigned i = 0; i < cfg.clients; i++) {
    pthread_spin_lock(&clients[i].lock);
    for (unsigned k = 0; k < cfg.depth && clients[i].s && atomic_load(&clients[i].state) == CS_UP;
         k++)
      echo_send(&clients[i]);
    pthread_spin_unlock(&clients[i].lock);
  }
}

/* Chat: send the pings due by now; *pinged: pings due so far, over all clients. Spread over the
 * period: client i pings at i/N of it, not all at once - half a period after its chats (at the
 * default --rate 1 and --ping-interval 1000), so that the ping does not wait for the chat's send to
 * be completed by a busy worker of this process (a session has one send in flight): the RTT
 * measures the server, not the dummy's own queue. */
static void ping_due(uint64_t start, uint64_t now, uint64_t *pinged) {
  uint64_t due = (now - start) / 1000000ull * cfg.clients / cfg.ping_ms;
  for (; *pinged < due; (*pinged)++) {
    struct client *c = &clients[(*pinged + cfg.clients / 2) % cfg.clients];
    pthread_spin_lock(&c->lock);
    if (c->s && atomic_load(&c->state) == CS_UP) {
      Chat__CPing m = CHAT__CPING__INIT;
      m.client_time_us = now_ns() / 1000;
      if (wire_send(c->s, CHAT__PACKET_ID__C_PING, &m.base) == 0)
        atomic_fetch_add_explicit(&n_pings, 1, memory_order_relaxed);
    }
    pthread_spin_unlock(&c->lock);
  }
}

/* The progress line, once a second. */
struct progress {
  uint64_t last_print, last_msgs;
  bool tty;
};

static void progress(struct progress *p, uint64_t now) {
  if (now - p->last_print < 1000000000ull || cfg.quiet)
    return;
  uint64_t m, bytes;
  static struct hist lat; /* (the main thread's) */
  recv_totals(&m, &bytes, &lat);
  double secs = (double)(now - p->last_print) / 1e9;
  fprintf(stderr,
          "%sconnected %" PRIu64 "  reconnects %" PRIu64
          "  msgs/s %.0f  p99 %.2f ms  errors %" PRIu64 "%s",
          p->tty ? "\r" : "", atomic_load(&n_connected), atomic_load(&n_reconnects),
          (double)(m - p->last_msgs) / secs, (double)hist_quantile(&lat, 0.99) / 1000.0,
          atomic_load(&n_errors), p->tty ? "" : "\n");
  p->last_msgs = m;
  p->last_print = now;
}

/* Send for --duration from start (unless stop_now). true: stopped by a signal (or stop_now). */
static bool load(bool tty, bool stop_now, uint64_t start) {
  uint64_t end = start + (uint64_t)cfg.duration_ms * 1000000ull;
  uint64_t churned = 0, pinged = 0;
  struct progress pr = {.last_print = start, .last_msgs = 0, .tty = tty};
  atomic_store(&churning, true); /* every first connect is done: a failed one now is a reconnect */
  atomic_store(&measuring, true);
  atomic_store(&sending, true);
  if (!stop_now && cfg.rate == 0)
    prime_depth();
  while (!stop_now) {
    uint64_t now = now_ns();
    if (now >= end)
      break;
    if (cfg.rate > 0)
      pace(start, now);
    if (cfg.mode == MODE_CHAT && cfg.ping_ms)
      ping_due(start, now, &pinged);
    if (cfg.churn > 0) {
      for (uint64_t due = (uint64_t)((double)(now - start) / 1e9 * cfg.churn); churned < due;
           churned++)
        churn_one();
      pump_reconnects();
    }
    progress(&pr, now);
    if (cp_stop_wait(TICK_MS) != 0)
      stop_now = true; /* interrupted: report what we have, wait for nothing */
  }
  return stop_now;
}

/* Presence: with no churn everyone stayed, and every member has heard of every other (a
 * member's S_MEMBER_JOINED went out before its chats, and those have all arrived). */
static void check_presence(void) {
  for (unsigned i = 0; i < cfg.clients; i++) {
    struct client *c = &clients[i];
    unsigned n = room_members(room_base(c)), have = atomic_load(&c->mcount_seen);
    if (atomic_load(&c->state) == CS_UP && have != n) {
      dummy_error("client %u counts %u members in its room, the room has %u", c->idx, have, n);
      break;
    }
  }
}

/* Let what is in flight come back (and the clients that are leaving come back too), check
 * nothing is missing (the caller then stops the services). */
static void settle(bool stop_now, bool tty) {
  uint64_t wait_until = now_ns() + 10000000000ull, left = 0, away = 0;
  while (!stop_now && ((left = outstanding(&away)) || away) && now_ns() < wait_until) {
    pump_reconnects();
    os_sleep_ms(TICK_MS);
  }
  atomic_store(&measuring, false);
  if (tty)
    fprintf(stderr, "\n");
  if (left && !stop_now)
    dummy_error("%" PRIu64 " %s never arrived", left,
                cfg.mode == MODE_CHAT ? "chat deliveries" : "echoed messages");
  if (away && !stop_now)
    dummy_error("%" PRIu64 " clients were still leaving or reconnecting", away);
  if (cfg.mode == MODE_CHAT && cfg.churn == 0 && !left && !stop_now && cfg.rate > 0)
    check_presence();
  if (cfg.mode == MODE_CHAT && !left && !stop_now) /* every chat is in: their tails compare */
    for (unsigned i = 0; i < cfg.clients; i++)
      clients[i].up_at_end = atomic_load(&clients[i].state) == CS_UP;
  atomic_store(&churning, false);
}

static struct order_result order_total;

/* Chat, once the service stopped: every room's members received its chats in one order. */
static void check_order(void) {
  struct order **m = calloc(cfg.room_size, sizeof *m);
  if (!m) {
    dummy_error("out of memory for the order check");
    return;
  }
  for (unsigned base = 0; base < cfg.clients; base += cfg.room_size) {
    unsigned n = room_members(base);
    for (unsigned j = 0; j < n; j++) {
      if (clients[base + j].up_at_end)
        order_end(&clients[base + j].order);
      m[j] = &clients[base + j].order;
    }
    struct order_result r = order_verify((struct order *const *)m, n);
    if (r.mismatches)
      dummy_error("room-%u: %" PRIu64
                  " segments of the chat stream reached its members in different "
                  "orders, the first %s chat %" PRIu64 " of client %" PRIu64,
                  base / cfg.room_size, r.mismatches,
                  r.first_kind == ORDER_TAIL    ? "after"
                  : r.first_kind == ORDER_WHOLE ? "(all) before"
                                                : "up to",
                  r.first_key & 0xffffffffu, r.first_key >> 32);
    if (r.incomplete)
      dummy_error("room-%u: out of memory for the order check", base / cfg.room_size);
    order_total.checkpoints += r.checkpoints;
    order_total.records += r.records;
    order_total.chats += r.chats;
    order_total.mismatches += r.mismatches;
  }
  free(m);
}

/* What the sending phase measured. */
struct result {
  double secs;
  uint64_t msgs, bytes;
  double cpu_s, server_cpu_s; /* CPU time over the window (user + system); server: < 0 unknown */
  double teardown_s; /* stopping the services, once settled (chat: with what S_MEMBER_LEFT come) */
};

/* The CPU time of the --server-pid processes, summed; -1 if none or one is unreadable. */
static double servers_cpu_seconds(void) {
  double sum = cfg.n_server_pids ? 0 : -1;
  for (unsigned k = 0; k < cfg.n_server_pids && sum >= 0; k++) {
    double t = os_pid_cpu_seconds(cfg.server_pids[k]);
    sum = t >= 0 ? sum + t : -1;
  }
  return sum;
}

/* Connect, send, settle: 0, or 1 if the clients could not be set up (said why). */
static int run(struct result *r) {
  os_raise_fd_limit();
  if (setup_servers() || setup_clients() || cp_stop_install())
    return 1;
  if (start_services())
    return 1;
  bool tty = isatty(STDERR_FILENO) && !cfg.quiet;
  bool stop_now = connect_all();
  uint64_t start = now_ns();
  double cpu0 = os_cpu_seconds(), scpu0 = servers_cpu_seconds();
  stop_now = load(tty, stop_now, start);
  uint64_t stop_t = now_ns();
  double scpu1 = servers_cpu_seconds();
  r->cpu_s = os_cpu_seconds() - cpu0;
  r->server_cpu_s = scpu0 >= 0 && scpu1 >= 0 ? scpu1 - scpu0 : -1;
  atomic_store(&sending, false);
  r->secs = (double)(stop_t - start) / 1e9;
  recv_totals(&r->msgs, &r->bytes, NULL);
  settle(stop_now, tty);
  uint64_t teardown_t = now_ns();
  stop_services();
  r->teardown_s = (double)(now_ns() - teardown_t) / 1e9;
  if (cfg.mode == MODE_CHAT)
    check_order();
  return 0;
}

/* ---- report ---------------------------------------------------------- */

struct quantiles {
  double p50, p90, p99, p999, mx; /* chat delivery / echo latency, ms */
  double r50, r99, rmax;          /* ping RTT, ms */
};

/* CPU µs per message received in the window; -1 if unknown or none came. */
static double per_msg_us(double cpu_s, uint64_t msgs) {
  return cpu_s >= 0 && msgs ? cpu_s * 1e6 / (double)msgs : -1;
}

/* Chat: the rooms whose members are on two servers or more. */
static unsigned rooms_across_servers(void) {
  unsigned n = 0;
  for (unsigned base = 0; cfg.mode == MODE_CHAT && base < cfg.clients; base += cfg.room_size)
    for (unsigned j = 1; j < room_members(base); j++)
      if (server_index(base + j) != server_index(base)) {
        n++;
        break;
      }
  return n;
}

static void report_json(const struct result *r, const struct quantiles *q,
                        uint64_t connect_failures, uint64_t errors) {
  printf("{\"mode\":\"%s\",\"clients\":%u,\"connected\":%" PRIu64 ",\"size\":%u,\"depth\":%u,"
         "\"rate\":%g,\"room_size\":%u,\"duration_s\":%.3f,\"sent\":%" PRIu64
         ",\"messages\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"bytes_per_s\":%.1f,"
         "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
         "\"churn_per_s\":%g,\"churn_disconnects\":%" PRIu64 ",\"reconnects\":%" PRIu64
         ",\"reconnect_failures\":%" PRIu64 ",\"connect_failures\":%" PRIu64 ",\"pings\":%" PRIu64
         ",\"pongs\":%" PRIu64 ",\"ping_p50_ms\":%.3f,\"ping_p99_ms\":%.3f,"
         "\"ping_max_ms\":%.3f,\"member_joined\":%" PRIu64 ",\"member_left\":%" PRIu64
         ",\"pipelined_scripts\":%" PRIu64
         ",\"cpu_us_per_msg\":%.3f,\"server_cpu_us_per_msg\":%.3f,\"teardown_s\":%.3f"
         ",\"servers\":%u,\"spread\":\"%s\",\"rooms_across_servers\":%u"
         ",\"order_checkpoints\":%" PRIu64 ",\"order_records\":%" PRIu64 ",\"order_chats\":%" PRIu64
         ",\"order_mismatches\":%" PRIu64 ",\"errors\":%" PRIu64 "}\n",
         mode_names[cfg.mode], cfg.clients, atomic_load(&n_connected), cfg.size,
         cfg.rate > 0 ? 0 : cfg.depth, cfg.rate, cfg.mode == MODE_CHAT ? cfg.room_size : 0, r->secs,
         atomic_load(&n_sent), r->msgs, (double)r->msgs / r->secs, (double)r->bytes / r->secs,
         q->p50, q->p90, q->p99, q->p999, q->mx, cfg.churn, atomic_load(&n_churn_out),
         atomic_load(&n_reconnects), atomic_load(&n_reconnect_failures), connect_failures,
         atomic_load(&n_pings), atomic_load(&n_pongs), q->r50, q->r99, q->rmax,
         atomic_load(&n_joined), atomic_load(&n_left), atomic_load(&n_scripts),
         per_msg_us(r->cpu_s, r->msgs), per_msg_us(r->server_cpu_s, r->msgs), r->teardown_s,
         n_servers, spread_names[cfg.spread_rooms], rooms_across_servers(), order_total.checkpoints,
         order_total.records, order_total.chats, order_total.mismatches, errors);
}

static void report_text(const struct result *r, const struct quantiles *q, uint64_t errors) {
  printf("cport-dummy: %s mode, %u clients (%" PRIu64 " connected), %.1f s\n", mode_names[cfg.mode],
         cfg.clients, atomic_load(&n_connected), r->secs);
  printf("  messages   %" PRIu64 " received (%" PRIu64 " sent), %.0f msgs/s, %.2f MB/s\n", r->msgs,
         atomic_load(&n_sent), (double)r->msgs / r->secs, (double)r->bytes / r->secs / 1e6);
  printf("  latency    p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n", q->p50,
         q->p90, q->p99, q->p999, q->mx);
  if (cfg.churn > 0)
    printf("  churn      %" PRIu64 " disconnects, %" PRIu64 " reconnects, %" PRIu64
           " failed (%g a second%s)\n",
           atomic_load(&n_churn_out), atomic_load(&n_reconnects),
           atomic_load(&n_reconnect_failures), cfg.churn,
           atomic_load(&n_churn_skipped) ? ", some skipped: nobody was up" : "");
  if (cfg.mode == MODE_CHAT) {
    printf("  ping RTT   p50 %.3f ms  p99 %.3f ms  max %.3f ms (%" PRIu64 " pings, %" PRIu64
           " pongs)\n",
           q->r50, q->r99, q->rmax, atomic_load(&n_pings), atomic_load(&n_pongs));
    printf("  presence   %" PRIu64 " S_MEMBER_JOINED, %" PRIu64 " S_MEMBER_LEFT, counted against"
           " the rooms' members\n",
           atomic_load(&n_joined), atomic_load(&n_left));
    if (n_servers > 1)
      printf("  servers    %u, clients spread over them by %s: %u of %u rooms span two or more\n",
             n_servers, cfg.spread_rooms ? "room" : "client", rooms_across_servers(),
             (cfg.clients + cfg.room_size - 1) / cfg.room_size);
    printf("  one order  %" PRIu64 " segments of the rooms' chat streams compared across their"
           " members (%" PRIu64 " records, %" PRIu64 " deliveries), %" PRIu64 " differ\n",
           order_total.checkpoints, order_total.records, order_total.chats, order_total.mismatches);
    if (cfg.pipeline)
      printf("  pipelined  %" PRIu64 " first writes answered in request order\n",
             atomic_load(&n_scripts));
  }
  printf("  teardown   %.3f s (stopping the services, after the run)\n", r->teardown_s);
  printf("  verified   %s\n", errors ? "NO" : "every byte, in order, nothing lost or duplicated");
  printf("  errors     %" PRIu64 "\n", errors);
}

/* The final report (the service stopped); the exit status. */
static int report(const struct result *r) {
  uint64_t errors = atomic_load(&n_errors);
  static struct hist lat; /* every thread's, merged */
  uint64_t msgs, bytes;
  recv_totals(&msgs, &bytes, &lat);
  struct quantiles q = {.p50 = (double)hist_quantile(&lat, 0.50) / 1000.0,
                        .p90 = hist_quantile(&lat, 0.90) / 1e3,
                        .p99 = (double)hist_quantile(&lat, 0.99) / 1e3,
                        .p999 = hist_quantile(&lat, 0.999) / 1e3,
                        .mx = (double)atomic_load(&lat.max) / 1e3,
                        .r50 = (double)hist_quantile(&rtt, 0.50) / 1000.0,
                        .r99 = (double)hist_quantile(&rtt, 0.99) / 1000.0,
                        .rmax = (double)atomic_load(&rtt.max) / 1e3};
  if (cfg.json)
    report_json(r, &q, connect_failures(), errors);
  else
    report_text(r, &q, errors);
  return errors ? 1 : 0;
}

static void cleanup(void) {
  for (unsigned i = 0; i < cfg.clients; i++) {
    if (i == clients[i].base) /* the room's table (dummy.h) */
      os_aligned_free(clients[i].want);
    free(clients[i].seen);
    order_free(&clients[i].order);
    free(clients[i].fence);
    free(clients[i].mpid);
    pthread_spin_destroy(&clients[i].lock);
  }
  for (unsigned k = 0; k < n_servers; k++) {
    cp_service_destroy(servers[k].svc);
    free(servers[k].members);
    free(servers[k].pend);
  }
  free(clients);
}

int main(int argc, char **argv) {
  enum cli_status st = parse(argc, argv, &cfg);
  if (st == CLI_HELP)
    usage(stdout);
  if (st != CLI_RUN)
    return st;
  struct result r;
  if (run(&r))
    return 1;
  int rc = report(&r);
  cleanup();
  return rc;
}
