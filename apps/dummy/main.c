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
#include "../common/hist.h"
#include "../common/os.h"
#include "../common/wire.h"
#include "../common/wire_decode.h"
#include "chat_text.h"
#include "order.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_ECHO, MODE_PACKET_ECHO, MODE_CHAT };
#define SERVERS_MAX 64
static const char *const mode_names[] = {"echo", "packet-echo", "chat"};

static struct config {
  const char *host;
  unsigned port, clients, size, depth, room_size, threads;
  unsigned duration_ms, connect_timeout_ms;
  double rate, churn;
  enum mode mode;
  cp_backend backend;
  bool json, quiet, pipeline;
  unsigned ping_ms;
  unsigned server_pids[SERVERS_MAX]; /* --server-pid: also measure their CPU (Linux /proc) */
  unsigned n_server_pids;
  struct addr {
    char host[64];
    unsigned port;
  } addr[SERVERS_MAX]; /* --servers (else --host, --port) */
  unsigned n_addr;
  bool spread_rooms; /* --spread rooms: a room's clients all on one server */
} cfg;               /* parse fills it */

#define MSG_HDR 16 /* seq (8) + send time (8), after the packet header if any */

/* A client's connection, as the pacer and the churn see it (changed under
 * the client's lock, read anywhere). */
enum cstate {
  CS_DOWN,      /* no session: connecting (again) */
  CS_CONNECTED, /* chat: logging in and entering the room */
  CS_UP,        /* sending */
  CS_LEAVING,   /* churn: sends nothing more; waits for what it sent to come back */
  CS_FENCING,   /* churn, chat: my last chat came back; waits for a later chat of each member */
  CS_CLOSING,   /* churn: cp_session_disconnect called; on_disconnected will reconnect */
  CS_DEAD       /* disconnected unexpectedly (an error): left alone */
};

/* Chat: what one member knows of one sender of its room from before this connection
 * (member's strand; touched on entering and at the sender's first chat on a connection). The
 * chat expected next on this connection is in client.want, the hot state. */
struct seen {
  uint32_t last;  /* the sender's last chat seen on an earlier connection (0: none) */
  uint32_t floor; /* chats the sender had sent when this connection entered */
};
#define SEQ_MAX (UINT32_MAX - 1) /* the largest sequence number a chat may carry */

struct server;

struct client {
  unsigned idx;
  cp_session *s;
  pthread_spinlock_t lock; /* send side: the pacer and the strand both send; state, s */
  _Atomic int state;       /* enum cstate */
  _Atomic uint64_t sent;   /* messages sent (written under lock, read anywhere) */
  _Atomic uint64_t recvd;  /* echo: messages fully received (chat counts in have) */
  bool ever_up;            /* strand: reached CS_UP once (the start counts those) */
  /* echo receive state (strand only) */
  uint64_t rseq; /* sequence of the message being received */
  uint32_t roff; /* bytes of it received so far */
  uint8_t rhdr[MSG_HDR + 4];
  /* chat */
  uint64_t player_id;  /* under lock */
  unsigned base, nmem; /* my room: its first client, how many clients it has */
  /* Per member of my room (strand only), by index in the room: the sequence number of its
   * chat expected next on this connection, 0 if none came on it yet. The one piece of state
   * a delivery touches per sender: 4 bytes, 16 senders to a cache line. */
  uint32_t *want;
  struct seen *seen;     /* per member of my room: the rest (strand only) */
  struct order order;    /* the one-order check (strand only) */
  bool up_at_end;        /* in its room with every chat delivered when the run ended */
  struct server *srv;    /* the server it connects to */
  _Atomic uint64_t have; /* sum over the members of what this connection accounts
                            for: the last chat seen on this connection if one
                            came, else floor */
  uint64_t leave_seq;    /* churn: my last chat before leaving (set before the state turns
                            CS_LEAVING; read after seeing that state) */
  uint8_t *fence;        /* churn, fencing: members I still wait a chat of (strand) */
  unsigned fence_left;   /* how many (strand) */
  /* presence (strand): the player id of each member of my room I know is in it (by
   * index in the room, 0: not known to be in; a second slot at index + room size,
   * for churn: a client's new connection may enter before its old one has left),
   * how many members the room has, and how many of them I know (the rest were
   * not listed in S_ENTER_ROOM) */
  uint64_t *mpid;
  unsigned mcount, mknown;
  _Atomic unsigned mcount_seen; /* mcount, for the main thread's final check */
  unsigned script;  /* --pipeline: answers of the first write received so far (strand) */
  uint8_t room_len; /* chat: the name of my room, "room-<idx / room size>" (set up once) */
  char room[23];
};

static struct client *clients;

/* A server the clients connect to (--servers: several, each with a client service of its
 * own). */
struct server {
  const struct addr *a;
  cp_service *svc;   /* NULL if no client goes to it */
  unsigned *members; /* its clients: the t-th first connection of svc is members[t] */
  unsigned n;
  _Atomic unsigned next; /* first connections handed out */
  /* churn: its clients waiting for a connection, oldest first (pend_mu), a ring of n */
  unsigned *pend, pend_head, pend_n, pend_inflight;
};
static struct server servers[SERVERS_MAX];
static unsigned n_servers;
static struct hist rtt; /* C_PING -> S_PONG */
static _Atomic uint64_t n_connected, n_entered, n_errors, n_sent;
static _Atomic uint64_t n_joined, n_left, n_pings, n_pongs, n_scripts;
static _Atomic bool sending, measuring, churning;

/* Churn: the servers' pend rings. */
static pthread_mutex_t pend_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t n_churn_out, n_reconnects, n_reconnect_failures, n_churn_skipped;

/* What the receiving threads measure, one shard per thread: each delivery is
 * recorded without a read-modify-write on a line another thread writes too
 * (shared counters and one shared histogram cost the two receiving threads
 * five contended atomics per delivery). Readers merge the shards. A thread
 * past SHARDS_MAX shares the last shard, with atomic adds. */
#define SHARDS_MAX 16
struct shard {
  _Alignas(64) struct hist lat; /* delivery / echo latency, us */
  _Atomic uint64_t msgs, bytes; /* received while measuring */
  bool shared;
};
static struct shard shards[SHARDS_MAX];
static _Atomic unsigned n_shards;
static _Thread_local struct shard *my_shard;

static struct shard *shard(void) {
  if (!my_shard) {
    unsigned i = atomic_fetch_add(&n_shards, 1);
    if (i >= SHARDS_MAX - 1) {
      i = SHARDS_MAX - 1;
      shards[i].shared = true; /* (set before any use by the threads that share it) */
    }
    my_shard = &shards[i];
  }
  return my_shard;
}

/* Add v to a counter of my shard. */
static void shard_add(struct shard *sh, _Atomic uint64_t *c, uint64_t v) {
  if (sh->shared)
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
  else /* mine alone: no locked instruction */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* A delivery (echo: a message back) with this latency, while measuring. */
static void count_delivery(uint64_t latency_us) {
  struct shard *sh = shard();
  if (sh->shared)
    hist_add(&sh->lat, latency_us);
  else
    hist_add_owned(&sh->lat, latency_us);
  shard_add(sh, &sh->msgs, 1);
}

/* Bytes received. */
static void count_bytes(uint64_t n) {
  struct shard *sh = shard();
  shard_add(sh, &sh->bytes, n);
}

/* The shards' sums (msgs, bytes), and their latencies merged into *h if h. */
static void recv_totals(uint64_t *msgs, uint64_t *bytes, struct hist *h) {
  *msgs = *bytes = 0;
  if (h)
    hist_reset(h);
  for (unsigned i = 0; i < SHARDS_MAX; i++) {
    *msgs += atomic_load_explicit(&shards[i].msgs, memory_order_relaxed);
    *bytes += atomic_load_explicit(&shards[i].bytes, memory_order_relaxed);
    if (h)
      hist_merge(h, &shards[i].lat);
  }
}

static uint64_t now_ns(void) {
  return os_now_ns();
}

static void error(const char *fmt, ...) {
  uint64_t n = atomic_fetch_add(&n_errors, 1);
  if (n >= 20)
    return; /* counted, not printed */
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "cport-dummy: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

/* The byte at offset i (past the header) of message seq of client c. */
static inline uint8_t pattern(unsigned c, uint64_t seq, uint32_t i) {
  uint64_t x = (uint64_t)c * 0x9E3779B97F4A7C15ull ^ seq * 0xC2B2AE3D27D4EB4Full ^ (i >> 3);
  x ^= x >> 29;
  return (uint8_t)(x >> ((i & 7) * 8));
}

static void put64(uint8_t *p, uint64_t v) {
  memcpy(p, &v, 8);
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* Chat: the first client of c's room, and how many the room has. */
static unsigned room_base(const struct client *c) {
  return c->idx / cfg.room_size * cfg.room_size;
}
static unsigned room_members(unsigned base) {
  return cfg.clients - base < cfg.room_size ? cfg.clients - base : cfg.room_size;
}

/* Churn: everything c sent has come back; close (lock held). on_disconnected
 * reconnects. */
static void leave_now(struct client *c) {
  atomic_store(&c->state, CS_CLOSING);
  cp_session_disconnect(c->s, false);
}

/* ---- echo modes ------------------------------------------------------ */

static unsigned pre(void) {
  return cfg.mode == MODE_PACKET_ECHO ? CP_PACKET_HEADER : 0;
}

/* Send the next message of c (send lock held by caller). */
static void echo_send(struct client *c) {
  uint64_t seq = c->sent;
  cp_sendbuf *b = cp_sendbuf_alloc(cfg.size);
  if (!b) {
    error("client %u: out of memory", c->idx);
    return;
  }
  uint8_t *p = cp_sendbuf_data(b);
  unsigned h = pre();
  if (h) {
    p[0] = (uint8_t)(cfg.size & 0xff);
    p[1] = (uint8_t)(cfg.size >> 8);
    p[2] = (uint8_t)(seq & 0xff);
    p[3] = (uint8_t)((seq >> 8) & 0xff);
  }
  put64(p + h, seq);
  put64(p + h + 8, now_ns());
  for (uint32_t i = h + MSG_HDR; i < cfg.size; i++)
    p[i] = pattern(c->idx, seq, i);
  cp_sendbuf_set_len(b, cfg.size);
  if (cp_session_send(c->s, b) == 0) {
    c->sent++;
    atomic_fetch_add_explicit(&n_sent, 1, memory_order_relaxed);
  }
  cp_sendbuf_unref(b);
}

/* Bytes of echoed messages, as they arrive (strand). */
static void echo_bytes(struct client *c, const uint8_t *d, size_t n) {
  unsigned h = pre();
  uint32_t fixed = h + MSG_HDR;
  while (n) {
    if (c->roff < fixed) {
      c->rhdr[c->roff++] = *d++;
      n--;
      if (c->roff == fixed) {
        uint64_t seq = get64(c->rhdr + h);
        if (seq != c->rseq)
          error("client %u: expected message %" PRIu64 ", got %" PRIu64 " (lost or reordered)",
                c->idx, c->rseq, seq);
        if (h && (c->rhdr[0] | c->rhdr[1] << 8) != (int)cfg.size)
          error("client %u: message %" PRIu64 " has a bad packet header", c->idx, c->rseq);
      }
    } else {
      if (*d != pattern(c->idx, c->rseq, c->roff)) {
        error("client %u: message %" PRIu64 " byte %u corrupted", c->idx, c->rseq, c->roff);
      }
      c->roff++;
      d++;
      n--;
    }
    if (c->roff == cfg.size) {
      uint64_t t = get64(c->rhdr + h + 8), now = now_ns();
      if (atomic_load_explicit(&measuring, memory_order_relaxed)) {
        count_delivery(now > t ? (now - t) / 1000 : 0);
        count_bytes(cfg.size);
      }
      c->rseq++;
      c->roff = 0;
      pthread_spin_lock(&c->lock);
      c->recvd++;
      int st = atomic_load(&c->state);
      if (cfg.rate == 0 && atomic_load(&sending) && st == CS_UP)
        echo_send(c); /* depth mode: one back, one out */
      else if (st == CS_LEAVING && c->recvd == c->sent)
        leave_now(c); /* churn: the last one is back */
      pthread_spin_unlock(&c->lock);
    }
  }
}

static void on_raw(cp_session *s, const void *data, size_t len) {
  struct client *c = cp_session_user(s);
  if (c)
    echo_bytes(c, data, len);
}

/* ---- chat mode ------------------------------------------------------- */

/* Send the next chat of c (send lock held by caller): "<client>:<seq>:<player id>:" and
 * filler up to --size. */
static void chat_send(struct client *c) {
  char text[1100];
  int n =
      snprintf(text, sizeof text, "%u:%" PRIu64 ":%" PRIu64 ":", c->idx, c->sent + 1, c->player_id);
  for (; n < (int)cfg.size && n < CHAT_TEXT_MAX; n++)
    text[n] = (char)('a' + n % 26);
  text[n] = 0;
  Chat__CChat m = CHAT__CCHAT__INIT;
  m.text = text;
  m.client_time_us = now_ns() / 1000;
  if (wire_send(c->s, CHAT__PACKET_ID__C_CHAT, &m.base) == 0) {
    c->sent++;
    atomic_fetch_add_explicit(&n_sent, 1, memory_order_relaxed);
  }
}

/* S_ENTER_ROOM (strand): note how many chats each member has sent so far -
 * under its send lock, so a chat is either counted or sent after this, and
 * then reaches the room after my enter. Then start sending. */
static void entered(struct client *c) {
  unsigned base = c->base, n = c->nmem;
  uint64_t have = 0;
  for (unsigned j = 0; j < n; j++) {
    struct client *a = &clients[base + j];
    pthread_spin_lock(&a->lock);
    uint64_t sent = a->sent;
    pthread_spin_unlock(&a->lock);
    if (c->want[j]) /* the last one the previous connection saw */
      c->seen[j].last = c->want[j] - 1;
    c->want[j] = 0;
    c->seen[j].floor = (uint32_t)sent;
    have += sent;
  }
  atomic_store(&c->have, have);
  /* before any chat is sent (the run starts once everyone entered), the whole stream is mine */
  order_start(&c->order, !atomic_load(&sending));
  pthread_spin_lock(&c->lock);
  atomic_store(&c->state, CS_UP);
  pthread_spin_unlock(&c->lock);
  if (!c->ever_up) {
    c->ever_up = true;
    atomic_fetch_add(&n_entered, 1);
  } else {
    atomic_fetch_add(&n_reconnects, 1);
  }
}

/* Churn, chat (strand): my last chat before leaving came back. The room has
 * sent me, before it, every chat it handled before it, so what I have of each
 * member is all I get of the chats handled before my last one - but which
 * those are, only the room knows. So wait: a member that has sent more than I
 * have must send me one more chat, handled after my last one; when it comes,
 * the in-order check has covered everything before it. (A member that is
 * leaving too has its last chat still to come, or already here.) */
static void fence_start(struct client *c) {
  unsigned base = c->base, n = c->nmem;
  c->fence_left = 0;
  for (unsigned j = 0; j < n; j++) {
    struct client *a = &clients[base + j];
    pthread_spin_lock(&a->lock);
    uint64_t sent = a->sent; /* a chat of a that reached the room was counted here */
    pthread_spin_unlock(&a->lock);
    c->fence[j] = (c->want[j] ? c->want[j] - 1 : c->seen[j].floor) < sent;
    c->fence_left += c->fence[j];
  }
  pthread_spin_lock(&c->lock);
  if (c->fence_left)
    atomic_store(&c->state, CS_FENCING);
  else
    leave_now(c);
  pthread_spin_unlock(&c->lock);
}

/* Churn, chat (strand): a chat of member j came while fencing. */
static void fence_passed(struct client *c, unsigned j) {
  if (!c->fence[j])
    return;
  c->fence[j] = 0;
  if (--c->fence_left)
    return;
  pthread_spin_lock(&c->lock);
  leave_now(c);
  pthread_spin_unlock(&c->lock);
}

/* The name of the room client c belongs in. */
static int room_name(const struct client *c, char *buf, size_t n) {
  return snprintf(buf, n, "%s", c->room);
}

static bool bytes_eq(ProtobufCBinaryData b, const char *s) {
  size_t n = strlen(s); /* our own string */
  return b.len == n && !memcmp(b.data, s, n);
}

/* Whether p[0..n) is the name of c's room. */
static bool is_my_room(const struct client *c, const uint8_t *p, size_t n) {
  if (n != c->room_len)
    return false;
  for (size_t i = 0; i < n; i++) /* a few bytes, once per delivery: no call */
    if (p[i] != (uint8_t)c->room[i])
      return false;
  return true;
}

/* When a packet arrived, µs (now_ns's clock), for its latency. Reading the
 * clock is a tenth of the dummy's CPU per delivery on this VM (~90 ns each),
 * and every packet of one receive arrived at once: so a packet that starts
 * where the previous one on this thread ended, of the same session, is of the
 * same receive and takes its time (at most 32 in a row, then the clock is
 * read again). A packet of another session, one reassembled across receives
 * (framing copies it elsewhere) or a new receive reads the clock. */
static uint64_t arrival_us(const cp_session *s, const cp_packet *pkt) {
  static _Thread_local struct {
    const cp_session *s;
    const uint8_t *end; /* where the last packet ended */
    uint64_t us;
    unsigned reused;
  } last;
  if (last.s != s || last.end != pkt->data || last.reused >= 32) {
    last.s = s;
    last.us = now_ns() / 1000;
    last.reused = 0;
  } else {
    last.reused++;
  }
  last.end = pkt->data + pkt->size;
  return last.us;
}

/* "dummy-<i>": the client index, or UINT_MAX. */
static unsigned member_client(const uint8_t *name, size_t len) {
  if (len < 7 || len > 16 || memcmp(name, "dummy-", 6))
    return UINT_MAX;
  unsigned v = 0;
  for (size_t k = 6; k < len; k++) {
    if (name[k] < '0' || name[k] > '9')
      return UINT_MAX;
    v = v * 10 + (unsigned)(name[k] - '0');
  }
  return v < cfg.clients ? v : UINT_MAX;
}

/* S_ENTER_ROOM of my room (strand): start the presence count. */
static void presence_start(struct client *c, const Chatw__SEnterRoom *m) {
  unsigned base = room_base(c), n = room_members(base);
  memset(c->mpid, 0, 2 * n * sizeof *c->mpid);
  c->mcount = m->member_count;
  c->mknown = 0;
  atomic_store_explicit(&c->mcount_seen, c->mcount, memory_order_relaxed);
  if (m->member_count < 1 || m->n_members < 1 || m->n_members > CHAT_MEMBERS_LISTED ||
      m->n_members > m->member_count || m->members[0]->player_id != c->player_id) {
    error("client %u: S_ENTER_ROOM lists %zu of %u members, %s first", c->idx, m->n_members,
          m->member_count,
          m->n_members && m->members[0]->player_id == c->player_id ? "me" : "not me");
    return;
  }
  for (size_t k = 0; k < m->n_members; k++) {
    unsigned i = member_client(m->members[k]->name.data, m->members[k]->name.len);
    unsigned slot = i - base;
    if (i != UINT_MAX && i >= base && i < base + n && c->mpid[slot])
      slot += n; /* churn: its old connection, not gone yet */
    if (i == UINT_MAX || i < base || i >= base + n || c->mpid[slot]) {
      error("client %u: S_ENTER_ROOM lists a member that is not of the room, or twice", c->idx);
      return;
    }
    c->mpid[slot] = m->members[k]->player_id;
    c->mknown++;
  }
  atomic_store_explicit(&c->mcount_seen, c->mcount, memory_order_relaxed);
}

static void on_joined(struct client *c, const struct wire_smember_joined *m) {
  unsigned base = room_base(c), n = room_members(base);
  unsigned i = m->has_member ? member_client(m->member.name.data, m->member.name.len) : UINT_MAX;
  atomic_fetch_add_explicit(&n_joined, 1, memory_order_relaxed);
  if (!is_my_room(c, m->room.data, m->room.len) || i == UINT_MAX || i < base || i >= base + n) {
    error("client %u: S_MEMBER_JOINED of another room or player", c->idx);
    return;
  }
  unsigned slot = i - base;
  if (c->mpid[slot] && cfg.churn > 0)
    slot += n; /* its old connection has not left yet */
  if (c->mpid[slot] || i == c->idx) {
    error("client %u: S_MEMBER_JOINED of client %u, in the room already", c->idx, i);
    return;
  }
  if (cfg.churn == 0 && !cfg.pipeline) { /* else it may not have seen its S_LOGIN yet */
    pthread_spin_lock(&clients[i].lock);
    uint64_t pid = clients[i].player_id;
    pthread_spin_unlock(&clients[i].lock);
    if (pid != m->member.player_id)
      error("client %u: S_MEMBER_JOINED of client %u with player id %" PRIu64 ", not %" PRIu64,
            c->idx, i, m->member.player_id, pid);
  }
  c->mpid[slot] = m->member.player_id;
  c->mcount++;
  c->mknown++;
  atomic_store_explicit(&c->mcount_seen, c->mcount, memory_order_relaxed);
}

static void on_left(struct client *c, const struct wire_smember_left *m) {
  unsigned base = room_base(c), n = room_members(base);
  atomic_fetch_add_explicit(&n_left, 1, memory_order_relaxed);
  if (!is_my_room(c, m->room.data, m->room.len) || m->player_id == c->player_id) {
    error("client %u: S_MEMBER_LEFT of another room, or of me", c->idx);
    return;
  }
  for (unsigned j = 0; j < 2 * n; j++)
    if (c->mpid[j] == m->player_id) {
      c->mpid[j] = 0;
      c->mknown--;
      c->mcount--;
      atomic_store_explicit(&c->mcount_seen, c->mcount, memory_order_relaxed);
      return;
    }
  if (c->mcount > c->mknown) /* one of those S_ENTER_ROOM did not list */
    atomic_store_explicit(&c->mcount_seen, --c->mcount, memory_order_relaxed);
  else
    error("client %u: S_MEMBER_LEFT of player %" PRIu64 ", not in the room", c->idx, m->player_id);
}

/* A chat of member j that is not the one expected on this connection (want: 0, or the one
 * expected): the first of j on this connection, or an error. Returns the sequence number
 * that what this connection accounts for of j (have) stood at before it. */
static uint64_t chat_unexpected(struct client *c, unsigned j, uint64_t seq, uint32_t want) {
  uint64_t from = c->base + j;
  if (want) {
    error("client %u: from client %" PRIu64 " expected chat %u, got %" PRIu64
          " (lost, duplicated or reordered)",
          c->idx, from, want, seq);
    return want - 1;
  }
  /* the first on this connection: none seen before, none sent since I entered missed */
  const struct seen *e = &c->seen[j];
  if (seq <= e->last)
    error("client %u: from client %" PRIu64 " got chat %" PRIu64 " again (duplicated)", c->idx,
          from, seq);
  else if (seq > (uint64_t)e->floor + 1)
    error("client %u: from client %" PRIu64 " chats %u to %" PRIu64
          " never came (sent after this connection entered)",
          c->idx, from, e->floor + 1, seq - 1);
  return e->floor;
}

/* S_CHAT m, which arrived at arrival µs. */
static void on_chat(struct client *c, const struct wire_schat *m, uint64_t arrival) {
  uint64_t from, seq, pid;
  const uint8_t *t = m->text.data, *tend = t + m->text.len;
  if (!is_my_room(c, m->room.data, m->room.len)) {
    error("client %u: S_CHAT names room '%.*s', not its room", c->idx,
          (int)(m->room.len < 40 ? m->room.len : 40), (const char *)m->room.data);
    return;
  }
  if (!parse_field(&t, tend, &from) || !parse_field(&t, tend, &seq) ||
      !parse_field(&t, tend, &pid) || from >= cfg.clients || seq == 0 || seq > SEQ_MAX) {
    error("client %u: S_CHAT with an unexpected text", c->idx);
    return;
  }
  unsigned j = (unsigned)(from - c->base); /* from < clients: no wrap past 32 bits */
  if (from < c->base || j >= c->nmem) {
    error("client %u: got a chat of client %" PRIu64 " from another room", c->idx, from);
    return;
  }
  if (pid != m->player_id)
    error("client %u: chat %" PRIu64 " of client %" PRIu64 " carries player id %" PRIu64
          ", its sender is %" PRIu64,
          c->idx, seq, from, m->player_id, pid);
  uint32_t want = c->want[j];
  uint64_t before = seq == want ? seq - 1 : chat_unexpected(c, j, seq, want);
  c->want[j] = (uint32_t)seq + 1;
  order_add(&c->order, order_key(from, seq));
  /* modulo 2^64: have goes down when the first chat is older than the floor */
  /* (the strand is its only writer: no locked add) */
  atomic_store_explicit(&c->have,
                        atomic_load_explicit(&c->have, memory_order_relaxed) + (seq - before),
                        memory_order_relaxed);
  if (atomic_load_explicit(&measuring, memory_order_relaxed)) {
    count_delivery(arrival > m->client_time_us ? arrival - m->client_time_us : 0);
  }
  int st = atomic_load(&c->state);
  if (st == CS_FENCING)
    fence_passed(c, j);
  else if (st == CS_LEAVING && from == c->idx && seq >= c->leave_seq)
    fence_start(c);
}

/* --pipeline: the first write of a connection, and the answers it must get,
 * in this order (a private room "pipe-<i>" first, so nothing else comes in
 * between; then a switch to the client's room). */
#define PIPE_CHATS 3
static const struct {
  uint16_t id;
  bool mine; /* about my room (else pipe-<i>) */
} script[] = {{CHATW__PACKET_ID__S_PONG, 0},       {CHATW__PACKET_ID__S_LOGIN, 0},
              {CHATW__PACKET_ID__S_ENTER_ROOM, 0}, {CHATW__PACKET_ID__S_CHAT, 0},
              {CHATW__PACKET_ID__S_CHAT, 0},       {CHATW__PACKET_ID__S_CHAT, 0},
              {CHATW__PACKET_ID__S_LEAVE_ROOM, 0}, {CHATW__PACKET_ID__S_ENTER_ROOM, 0},
              {CHATW__PACKET_ID__S_LEAVE_ROOM, 0}, {CHATW__PACKET_ID__S_ENTER_ROOM, 1}};
#define SCRIPT_LEN (sizeof script / sizeof script[0])

static void pipeline_send(cp_session *s, struct client *c) {
  char name[40], pipe[40], room[40], text[PIPE_CHATS][24];
  snprintf(name, sizeof name, "dummy-%u", c->idx);
  snprintf(pipe, sizeof pipe, "pipe-%u", c->idx);
  room_name(c, room, sizeof room);
  uint8_t buf[1024];
  size_t n = 0;
  Chat__CPing ping = CHAT__CPING__INIT;
  ping.client_time_us = now_ns() / 1000;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_PING, &ping.base);
  Chat__CLogin login = CHAT__CLOGIN__INIT;
  login.name = name;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_LOGIN, &login.base);
  Chat__CEnterRoom enter = CHAT__CENTER_ROOM__INIT;
  enter.room = pipe;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_ENTER_ROOM, &enter.base);
  for (int k = 0; k < PIPE_CHATS; k++) {
    snprintf(text[k], sizeof text[k], "pipe:%d", k);
    Chat__CChat chat = CHAT__CCHAT__INIT;
    chat.text = text[k];
    n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_CHAT, &chat.base);
  }
  Chat__CLeaveRoom leave = CHAT__CLEAVE_ROOM__INIT;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_LEAVE_ROOM, &leave.base);
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_ENTER_ROOM, &enter.base);
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_LEAVE_ROOM, &leave.base);
  enter.room = room;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_ENTER_ROOM, &enter.base);
  cp_sendbuf *b = cp_sendbuf_copy(buf, n);
  if (!b || cp_session_send(s, b) != 0)
    error("client %u: cannot send its pipelined first write", c->idx);
  cp_sendbuf_unref(b);
}

/* --pipeline: answer c->script of the first write; false if it is not the
 * one expected (an error, reported). The last is the S_ENTER_ROOM of my room,
 * handled as usual by the caller. */
static bool pipeline_check(struct client *c, const cp_packet *pkt) {
  unsigned k = c->script++;
  char pipe[40];
  snprintf(pipe, sizeof pipe, "pipe-%u", c->idx);
  if (pkt->id != script[k].id) {
    error("client %u: pipelined answer %u is packet %u, expected %u (out of order)", c->idx, k,
          pkt->id, script[k].id);
    return false;
  }
  if (script[k].mine)
    return true;
  bool ok = true;
  switch (pkt->id) {
  case CHATW__PACKET_ID__S_PONG: {
    Chatw__SPong *m = chatw__spong__unpack(NULL, pkt->body_len, pkt->body);
    ok = m != NULL;
    chatw__spong__free_unpacked(m, NULL);
    break;
  }
  case CHATW__PACKET_ID__S_LOGIN: {
    Chatw__SLogin *m = chatw__slogin__unpack(NULL, pkt->body_len, pkt->body);
    if ((ok = m != NULL)) {
      pthread_spin_lock(&c->lock);
      c->player_id = m->player_id;
      pthread_spin_unlock(&c->lock);
    }
    chatw__slogin__free_unpacked(m, NULL);
    break;
  }
  case CHATW__PACKET_ID__S_ENTER_ROOM: {
    Chatw__SEnterRoom *m = chatw__senter_room__unpack(NULL, pkt->body_len, pkt->body);
    ok = m && bytes_eq(m->room, pipe) && m->member_count == 1 && m->n_members == 1 &&
         m->members[0]->player_id == c->player_id;
    chatw__senter_room__free_unpacked(m, NULL);
    break;
  }
  case CHATW__PACKET_ID__S_CHAT: {
    Chatw__SChat *m = chatw__schat__unpack(NULL, pkt->body_len, pkt->body);
    char text[24];
    snprintf(text, sizeof text, "pipe:%u", k - 3);
    ok = m && bytes_eq(m->room, pipe) && bytes_eq(m->text, text) && m->player_id == c->player_id;
    chatw__schat__free_unpacked(m, NULL);
    break;
  }
  case CHATW__PACKET_ID__S_LEAVE_ROOM: {
    Chatw__SLeaveRoom *m = chatw__sleave_room__unpack(NULL, pkt->body_len, pkt->body);
    ok = m && bytes_eq(m->room, pipe);
    chatw__sleave_room__free_unpacked(m, NULL);
    break;
  }
  }
  if (!ok)
    error("client %u: pipelined answer %u (packet %u) is not the expected one", c->idx, k, pkt->id);
  if (ok && k == SCRIPT_LEN - 2)
    atomic_fetch_add(&n_scripts, 1);
  return false;
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  struct client *c = cp_session_user(s);
  if (!c)
    return;
  if (cfg.mode == MODE_PACKET_ECHO) {
    echo_bytes(c, pkt->data, pkt->size);
    return;
  }
  count_bytes(pkt->size);
  if (cfg.pipeline && c->script < SCRIPT_LEN && !pipeline_check(c, pkt))
    return;
  switch (pkt->id) {
  case CHAT__PACKET_ID__S_LOGIN: {
    Chat__SLogin *m = chat__slogin__unpack(NULL, pkt->body_len, pkt->body);
    if (!m) {
      error("client %u: S_LOGIN does not decode", c->idx);
      return;
    }
    pthread_spin_lock(&c->lock);
    c->player_id = m->player_id;
    pthread_spin_unlock(&c->lock);
    chat__slogin__free_unpacked(m, NULL);
    char room[40];
    snprintf(room, sizeof room, "room-%u", c->idx / cfg.room_size);
    Chat__CEnterRoom e = CHAT__CENTER_ROOM__INIT;
    e.room = room;
    wire_send(s, CHAT__PACKET_ID__C_ENTER_ROOM, &e.base);
    break;
  }
  case CHAT__PACKET_ID__S_ENTER_ROOM: {
    Chatw__SEnterRoom *m = chatw__senter_room__unpack(NULL, pkt->body_len, pkt->body);
    if (!m || !is_my_room(c, m->room.data, m->room.len)) {
      error("client %u: S_ENTER_ROOM does not decode or is not of its room", c->idx);
      chatw__senter_room__free_unpacked(m, NULL);
      return;
    }
    if (atomic_load(&c->state) == CS_CONNECTED) {
      presence_start(c, m);
      entered(c);
    } else {
      error("client %u: S_ENTER_ROOM it did not ask for", c->idx);
    }
    chatw__senter_room__free_unpacked(m, NULL);
    break;
  }
  case CHAT__PACKET_ID__S_MEMBER_JOINED: {
    struct wire_smember_joined m; /* N^2/2 of them when N players enter: no unpack each */
    bool ok = wire_decode_smember_joined(pkt->body, pkt->body_len, &m);
    if (!ok || atomic_load(&c->state) == CS_CONNECTED)
      error("client %u: S_MEMBER_JOINED %s", c->idx,
            ok ? "before S_ENTER_ROOM" : "does not decode");
    else
      on_joined(c, &m);
    break;
  }
  case CHAT__PACKET_ID__S_MEMBER_LEFT: {
    struct wire_smember_left m;
    bool ok = wire_decode_smember_left(pkt->body, pkt->body_len, &m);
    if (!ok || atomic_load(&c->state) == CS_CONNECTED)
      error("client %u: S_MEMBER_LEFT %s", c->idx, ok ? "before S_ENTER_ROOM" : "does not decode");
    else
      on_left(c, &m);
    break;
  }
  case CHAT__PACKET_ID__S_PONG: {
    Chatw__SPong *m = chatw__spong__unpack(NULL, pkt->body_len, pkt->body);
    if (!m) {
      error("client %u: S_PONG does not decode", c->idx);
      return;
    }
    uint64_t now = now_ns() / 1000;
    hist_add(&rtt, now > m->client_time_us ? now - m->client_time_us : 0);
    atomic_fetch_add_explicit(&n_pongs, 1, memory_order_relaxed);
    chatw__spong__free_unpacked(m, NULL);
    break;
  }
  case CHAT__PACKET_ID__S_CHAT: {
    struct wire_schat m; /* a hand decoder: millions a second, no unpack each */
    if (!wire_decode_schat(pkt->body, pkt->body_len, &m)) {
      error("client %u: S_CHAT does not decode", c->idx);
      return;
    }
    on_chat(c, &m, arrival_us(s, pkt));
    break;
  }
  case CHAT__PACKET_ID__S_ERROR: {
    Chat__SError *m = chat__serror__unpack(NULL, pkt->body_len, pkt->body);
    error("client %u: server says error %d: %s", c->idx, m ? (int)m->code : -1,
          m ? m->text : "(undecodable)");
    if (m)
      chat__serror__free_unpacked(m, NULL);
    break;
  }
  default:
    error("client %u: unexpected packet id %u", c->idx, pkt->id);
  }
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
      error("a connection nobody asked for");
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
      error("a reconnect to %s:%u failed", sv->a->host, sv->a->port);
    } else {
      error("a connect to %s:%u failed", sv->a->host, sv->a->port);
    }
    return;
  }
  if (why != CP_REASON_SHUTDOWN && why != CP_REASON_LOCAL)
    error("client %u: disconnected (%s)", c ? c->idx : 0, cp_reason_name(why));
}

/* ---- pacing ---------------------------------------------------------- */

/* Rate mode: every 5 ms, send what is due (client i starts i/N of a period
 * late, so a second's sends are spread over the second). */
static void pace(uint64_t start, uint64_t now) {
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
static void churn_one(void) {
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
        error("client %u: could not send its last chat before leaving", c->idx);
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
      error("cannot reconnect to %s:%u: %s", sv->a->host, sv->a->port, cp_strerror(rc));
      return;
    }
  }
}

/* Connect for every client that waits for a connection and has none coming. */
static void pump_reconnects(void) {
  if (cfg.churn == 0 || atomic_load(&n_reconnect_failures) >= 100) /* the server is gone */
    return;
  for (unsigned k = 0; k < n_servers; k++)
    if (servers[k].svc)
      pump_server(&servers[k]);
}

/* The connects that failed, on every server. */
static uint64_t connect_failures(void) {
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
static uint64_t outstanding(uint64_t *away) {
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
         "  --json                    final report as one JSON object on stdout\n"
         "  --quiet                   no progress line\n");
}

/* ---- parse ----------------------------------------------------------- */

static const struct option long_opts[] = {
    {"host", 1, 0, 'h'},          {"port", 1, 0, 'p'},
    {"clients", 1, 0, 'c'},       {"mode", 1, 0, 'm'},
    {"size", 1, 0, 's'},          {"depth", 1, 0, 'd'},
    {"rate", 1, 0, 'r'},          {"duration", 1, 0, 'D'},
    {"room-size", 1, 0, 'R'},     {"threads", 1, 0, 't'},
    {"backend", 1, 0, 'b'},       {"connect-timeout", 1, 0, 'T'},
    {"json", 0, 0, 'j'},          {"quiet", 0, 0, 'q'},
    {"churn", 1, 0, 'C'},         {"pipeline", 0, 0, 'P'},
    {"ping-interval", 1, 0, 'I'}, {"server-pid", 1, 0, 'S'},
    {"servers", 1, 0, 'L'},       {"spread", 1, 0, 'Y'},
    {"help", 0, 0, 'H'},          {0, 0, 0, 0}};

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
                       .ping_ms = 1000};
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

enum { TICK_MS = 5 };
/* Chat: pooled receive buffers of 64 KiB, not the port's 4 KiB (about 70 chats): a member
 * that falls behind reads what piled up in its socket in one receive, not 16, and checks it
 * in one batch (the per-sender state of that member stays in cache through it). The port
 * maps the pool and touches a buffer's pages only as data lands in them. */
enum { CHAT_RECV_BUF = 64 << 10 };

/* The server client i connects to: round-robin over the clients (a room spans the servers),
 * or with --spread rooms over the rooms (a room on one server). */
static unsigned server_index(unsigned i) {
  return (cfg.spread_rooms ? i / cfg.room_size : i) % n_servers;
}

/* servers[]: 0, or 1 out of memory (said so). */
static int setup_servers(void) {
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
static int setup_clients(void) {
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
        (!(clients[i].want = calloc(cfg.room_size, sizeof(uint32_t))) ||
         !(clients[i].seen = calloc(cfg.room_size, sizeof(struct seen))) ||
         !(clients[i].mpid = calloc(2 * (size_t)cfg.room_size, sizeof(uint64_t))) ||
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
static int start_services(void) {
  unsigned threads = threads_per_service();
  for (unsigned k = 0; k < n_servers; k++)
    if (servers[k].n && start_service(&servers[k], threads))
      return 1;
  return 0;
}

/* Stop every client service (what is left of a stopped one: nothing). */
static void stop_services(void) {
  for (unsigned k = 0; k < n_servers; k++)
    cp_service_stop(servers[k].svc, 0);
}

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
 * period: client i pings at i/N of it, not all at once. */
static void ping_due(uint64_t start, uint64_t now, uint64_t *pinged) {
  uint64_t due = (now - start) / 1000000ull * cfg.clients / cfg.ping_ms;
  for (; *pinged < due; (*pinged)++) {
    struct client *c = &clients[*pinged % cfg.clients];
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
      error("client %u counts %u members in its room, the room has %u", c->idx, have, n);
      break;
    }
  }
}

/* Let what is in flight come back (and the clients that are leaving come back too), check
 * nothing is missing, stop the service. */
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
    error("%" PRIu64 " %s never arrived", left,
          cfg.mode == MODE_CHAT ? "chat deliveries" : "echoed messages");
  if (away && !stop_now)
    error("%" PRIu64 " clients were still leaving or reconnecting", away);
  if (cfg.mode == MODE_CHAT && cfg.churn == 0 && !left && !stop_now && cfg.rate > 0)
    check_presence();
  if (cfg.mode == MODE_CHAT && !left && !stop_now) /* every chat is in: their tails compare */
    for (unsigned i = 0; i < cfg.clients; i++)
      clients[i].up_at_end = atomic_load(&clients[i].state) == CS_UP;
  atomic_store(&churning, false);
  stop_services();
}

static struct order_result order_total;

/* Chat, once the service stopped: every room's members received its chats in one order. */
static void check_order(void) {
  struct order **m = calloc(cfg.room_size, sizeof *m);
  if (!m) {
    error("out of memory for the order check");
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
      error("room-%u: %" PRIu64 " segments of the chat stream reached its members in different "
            "orders, the first %s chat %" PRIu64 " of client %" PRIu64,
            base / cfg.room_size, r.mismatches,
            r.first_kind == ORDER_TAIL    ? "after"
            : r.first_kind == ORDER_WHOLE ? "(all) before"
                                          : "up to",
            r.first_key & 0xffffffffu, r.first_key >> 32);
    if (r.incomplete)
      error("room-%u: out of memory for the order check", base / cfg.room_size);
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
         ",\"pipelined_scripts\":%" PRIu64 ",\"cpu_us_per_msg\":%.3f,\"server_cpu_us_per_msg\":%.3f"
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
         per_msg_us(r->cpu_s, r->msgs), per_msg_us(r->server_cpu_s, r->msgs), n_servers,
         spread_names[cfg.spread_rooms], rooms_across_servers(), order_total.checkpoints,
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
    free(clients[i].want);
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
