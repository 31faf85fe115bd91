/*
 * cport-dummy - the DummyClient: many players against a server, every reply
 * verified, latency measured.
 *
 *   cport-dummy [--host 127.0.0.1] [--port 7777] [--clients 100]
 *               [--mode echo|packet-echo|chat] [--size BYTES] [--depth N | --rate PER_SEC]
 *               [--duration SECONDS] [--room-size N] [--churn PER_SEC] [--threads N]
 *               [--backend auto|uring|epoll] [--connect-timeout SECONDS] [--json] [--quiet]
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
 * Exit status: 0 if everything verified, 1 on any error, 2 on bad flags.
 */
#define _GNU_SOURCE
#include "../common/hist.h"
#include "../common/wire.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_ECHO, MODE_PACKET_ECHO, MODE_CHAT };
static const char *const mode_names[] = {"echo", "packet-echo", "chat"};

static struct {
  const char *host;
  unsigned port, clients, size, depth, duration, room_size, threads, connect_timeout;
  double rate, churn;
  enum mode mode;
  cp_backend backend;
  bool json, quiet;
} cfg = {"127.0.0.1", 7777, 100, 64, 1, 10, 100, 0, 10, 0, 0, MODE_CHAT, CP_BACKEND_AUTO, 0, 0};

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

/* Chat: what one member has seen of one sender of its room (member's strand). */
struct seen {
  uint32_t last;  /* the sender's last chat seen, on any connection */
  uint32_t floor; /* chats the sender had sent when this connection entered; SEEN once
                     a chat of the sender came on this connection */
};
#define SEEN UINT32_MAX

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
  uint64_t player_id;    /* under lock */
  struct seen *seen;     /* per member of my room (strand only) */
  _Atomic uint64_t have; /* sum over the members of what this connection accounts
                            for: last if SEEN, else floor */
  uint64_t leave_seq;    /* churn: my last chat before leaving (set before the state turns
                            CS_LEAVING; read after seeing that state) */
  uint8_t *fence;        /* churn, fencing: members I still wait a chat of (strand) */
  unsigned fence_left;   /* how many (strand) */
};

static struct client *clients;
static cp_service *svc;
static struct hist lat;
static _Atomic uint64_t n_connected, n_entered, n_errors, n_recv_msgs, n_recv_bytes, n_sent;
static _Atomic bool sending, measuring, churning;
static _Atomic unsigned next_idx;

/* Churn: clients waiting for a connection, oldest first (pend_mu). */
static pthread_mutex_t pend_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned *pend, pend_head, pend_n, pend_inflight;
static _Atomic uint64_t n_churn_out, n_reconnects, n_reconnect_failures, n_churn_skipped;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
        hist_add(&lat, now > t ? (now - t) / 1000 : 0);
        atomic_fetch_add_explicit(&n_recv_msgs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&n_recv_bytes, cfg.size, memory_order_relaxed);
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

/* "<digits>:" at *p: the number, and *p past the colon; false if not there. */
static bool parse_field(const char **p, uint64_t *out) {
  const char *q = *p;
  uint64_t v = 0;
  if (*q < '0' || *q > '9')
    return false;
  for (; *q >= '0' && *q <= '9'; q++) {
    if (v > (UINT64_MAX - 9) / 10)
      return false;
    v = v * 10 + (uint64_t)(*q - '0');
  }
  if (*q != ':')
    return false;
  *p = q + 1;
  *out = v;
  return true;
}

/* A message decoded into thread-local scratch memory instead of the heap:
 * one chat is decoded per delivery, millions a second, so no malloc/free
 * for each. Anything larger than the scratch space goes to the heap. */
static _Thread_local struct {
  size_t used;
  _Alignas(16) unsigned char mem[8192];
} scratch;

static void *scratch_alloc(void *ctx, size_t n) {
  (void)ctx;
  n = (n + 15) & ~(size_t)15;
  if (n <= sizeof scratch.mem - scratch.used) {
    void *p = scratch.mem + scratch.used;
    scratch.used += n;
    return p;
  }
  return malloc(n);
}

static void scratch_free(void *ctx, void *p) {
  (void)ctx;
  if ((unsigned char *)p < scratch.mem || (unsigned char *)p >= scratch.mem + sizeof scratch.mem)
    free(p);
}

static ProtobufCAllocator scratch_allocator = {scratch_alloc, scratch_free, NULL};

/* S_ENTER_ROOM (strand): note how many chats each member has sent so far -
 * under its send lock, so a chat is either counted or sent after this, and
 * then reaches the room after my enter. Then start sending. */
static void entered(struct client *c) {
  unsigned base = room_base(c), n = room_members(base);
  uint64_t have = 0;
  for (unsigned j = 0; j < n; j++) {
    struct client *a = &clients[base + j];
    pthread_spin_lock(&a->lock);
    uint64_t sent = a->sent;
    pthread_spin_unlock(&a->lock);
    c->seen[j].floor = (uint32_t)sent;
    have += sent;
  }
  atomic_store(&c->have, have);
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
  unsigned base = room_base(c), n = room_members(base);
  c->fence_left = 0;
  for (unsigned j = 0; j < n; j++) {
    struct client *a = &clients[base + j];
    pthread_spin_lock(&a->lock);
    uint64_t sent = a->sent; /* a chat of a that reached the room was counted here */
    pthread_spin_unlock(&a->lock);
    const struct seen *e = &c->seen[j];
    c->fence[j] = (e->floor == SEEN ? e->last : e->floor) < sent;
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

static void on_chat(struct client *c, const Chat__SChat *m) {
  uint64_t from, seq, pid;
  const char *t = m->text;
  if (!parse_field(&t, &from) || !parse_field(&t, &seq) || !parse_field(&t, &pid) ||
      from >= cfg.clients || seq == 0 || seq >= SEEN) {
    error("client %u: S_CHAT with an unexpected text", c->idx);
    return;
  }
  if (from / cfg.room_size != c->idx / cfg.room_size) {
    error("client %u: got a chat of client %" PRIu64 " from another room", c->idx, from);
    return;
  }
  if (pid != m->player_id)
    error("client %u: chat %" PRIu64 " of client %" PRIu64 " carries player id %" PRIu64
          ", its sender is %" PRIu64,
          c->idx, seq, from, m->player_id, pid);
  struct seen *e = &c->seen[from % cfg.room_size];
  uint64_t before;
  if (e->floor == SEEN) { /* on this connection, the next one */
    before = e->last;
    if (seq != (uint64_t)e->last + 1)
      error("client %u: from client %" PRIu64 " expected chat %u, got %" PRIu64
            " (lost, duplicated or reordered)",
            c->idx, from, e->last + 1, seq);
  } else { /* the first on this connection: none seen before, none sent since I entered missed */
    before = e->floor;
    if (seq <= e->last)
      error("client %u: from client %" PRIu64 " got chat %" PRIu64 " again (duplicated)", c->idx,
            from, seq);
    else if (seq > (uint64_t)e->floor + 1)
      error("client %u: from client %" PRIu64 " chats %u to %" PRIu64
            " never came (sent after this connection entered)",
            c->idx, from, e->floor + 1, seq - 1);
    e->floor = SEEN;
  }
  e->last = (uint32_t)seq;
  /* modulo 2^64: have goes down when the first chat is older than the floor */
  atomic_fetch_add_explicit(&c->have, seq - before, memory_order_relaxed);
  uint64_t now = now_ns() / 1000;
  if (atomic_load_explicit(&measuring, memory_order_relaxed)) {
    hist_add(&lat, now > m->client_time_us ? now - m->client_time_us : 0);
    atomic_fetch_add_explicit(&n_recv_msgs, 1, memory_order_relaxed);
  }
  int st = atomic_load(&c->state);
  if (st == CS_FENCING)
    fence_passed(c, (unsigned)(from % cfg.room_size));
  else if (st == CS_LEAVING && from == c->idx && seq >= c->leave_seq)
    fence_start(c);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  struct client *c = cp_session_user(s);
  if (!c)
    return;
  if (cfg.mode == MODE_PACKET_ECHO) {
    echo_bytes(c, pkt->data, pkt->size);
    return;
  }
  atomic_fetch_add_explicit(&n_recv_bytes, pkt->size, memory_order_relaxed);
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
    Chat__SEnterRoom *m = chat__senter_room__unpack(NULL, pkt->body_len, pkt->body);
    if (!m) {
      error("client %u: S_ENTER_ROOM does not decode", c->idx);
      return;
    }
    chat__senter_room__free_unpacked(m, NULL);
    if (atomic_load(&c->state) == CS_CONNECTED)
      entered(c);
    else
      error("client %u: S_ENTER_ROOM it did not ask for", c->idx);
    break;
  }
  case CHAT__PACKET_ID__S_CHAT: {
    scratch.used = 0;
    Chat__SChat *m = chat__schat__unpack(&scratch_allocator, pkt->body_len, pkt->body);
    if (!m) {
      error("client %u: S_CHAT does not decode", c->idx);
      return;
    }
    on_chat(c, m);
    chat__schat__free_unpacked(m, &scratch_allocator);
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

static void on_connected(cp_session *s) {
  unsigned i = atomic_fetch_add(&next_idx, 1);
  bool again = false;
  if (i >= cfg.clients) { /* a reconnect: the client that waited longest */
    pthread_mutex_lock(&pend_mu);
    if (pend_inflight)
      pend_inflight--;
    if (pend_n) {
      i = pend[pend_head];
      pend_head = (pend_head + 1) % cfg.clients;
      pend_n--;
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
  if (cfg.mode == MODE_CHAT) {
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
  if (churned) { /* queue the reconnect: the main loop connects */
    pthread_mutex_lock(&pend_mu);
    pend[(pend_head + pend_n) % cfg.clients] = c->idx;
    pend_n++;
    pthread_mutex_unlock(&pend_mu);
    return;
  }
  if (why == CP_REASON_CONNECT_FAILED) {
    if (atomic_load(&churning)) {
      pthread_mutex_lock(&pend_mu);
      if (pend_inflight)
        pend_inflight--;
      pthread_mutex_unlock(&pend_mu);
      atomic_fetch_add(&n_reconnect_failures, 1);
      error("a reconnect to %s:%u failed", cfg.host, cfg.port);
    } else {
      error("a connect to %s:%u failed", cfg.host, cfg.port);
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

/* Connect for the clients that wait for a connection and have none coming. */
static void pump_reconnects(void) {
  if (!pend || atomic_load(&n_reconnect_failures) >= 100) /* the server is gone: stop trying */
    return;
  for (;;) {
    pthread_mutex_lock(&pend_mu);
    bool want = pend_n > pend_inflight;
    if (want)
      pend_inflight++;
    pthread_mutex_unlock(&pend_mu);
    if (!want)
      return;
    int rc = cp_service_connect(svc);
    if (rc) {
      pthread_mutex_lock(&pend_mu);
      pend_inflight--;
      pthread_mutex_unlock(&pend_mu);
      atomic_fetch_add(&n_reconnect_failures, 1);
      error("cannot reconnect: %s", cp_strerror(rc));
      return;
    }
  }
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
  fprintf(f, "usage: cport-dummy [options]\n"
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
             "  --json                    final report as one JSON object on stdout\n"
             "  --quiet                   no progress line\n");
}

static unsigned num(const char *flag, const char *v, unsigned min, unsigned max) {
  char *end;
  errno = 0;
  unsigned long x = strtoul(v, &end, 10);
  if (errno || end == v || *end || v[0] == '-' || x < min || x > max) {
    fprintf(stderr, "cport-dummy: bad value for --%s: '%s' (%u..%u)\n", flag, v, min, max);
    exit(2);
  }
  return (unsigned)x;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"host", 1, 0, 'h'},
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
                                       {"help", 0, 0, 'H'},
                                       {0, 0, 0, 0}};
  bool rate_set = false, size_set = false;
  int ch;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (ch) {
    case 'h':
      cfg.host = optarg;
      break;
    case 'p':
      cfg.port = num("port", optarg, 1, 65535);
      break;
    case 'c':
      cfg.clients = num("clients", optarg, 1, 1000000);
      break;
    case 'm':
      if (!strcmp(optarg, "echo"))
        cfg.mode = MODE_ECHO;
      else if (!strcmp(optarg, "packet-echo"))
        cfg.mode = MODE_PACKET_ECHO;
      else if (!strcmp(optarg, "chat"))
        cfg.mode = MODE_CHAT;
      else {
        fprintf(stderr, "cport-dummy: bad --mode '%s' (echo, packet-echo, chat)\n", optarg);
        return 2;
      }
      break;
    case 's':
      cfg.size = num("size", optarg, 1, 65535);
      size_set = true;
      break;
    case 'd':
      cfg.depth = num("depth", optarg, 1, 100000);
      break;
    case 'r': {
      char *end;
      cfg.rate = strtod(optarg, &end);
      if (*end || !(cfg.rate > 0) || cfg.rate > 1e6) {
        fprintf(stderr, "cport-dummy: bad --rate '%s'\n", optarg);
        return 2;
      }
      rate_set = true;
      break;
    }
    case 'D':
      cfg.duration = num("duration", optarg, 1, 86400);
      break;
    case 'R':
      cfg.room_size = num("room-size", optarg, 1, 1000000);
      break;
    case 't':
      cfg.threads = num("threads", optarg, 1, 256);
      break;
    case 'b':
      if (cp_backend_from_name(optarg, &cfg.backend) != 0) {
        fprintf(stderr, "cport-dummy: bad --backend '%s'\n", optarg);
        return 2;
      }
      break;
    case 'C': {
      char *end;
      cfg.churn = strtod(optarg, &end);
      if (end == optarg || *end || !(cfg.churn >= 0) || cfg.churn > 1e6) {
        fprintf(stderr, "cport-dummy: bad --churn '%s'\n", optarg);
        return 2;
      }
      break;
    }
    case 'T':
      cfg.connect_timeout = num("connect-timeout", optarg, 1, 3600);
      break;
    case 'j':
      cfg.json = true;
      break;
    case 'q':
      cfg.quiet = true;
      break;
    case 'H':
      usage(stdout);
      return 0;
    default:
      fprintf(stderr, "cport-dummy: unknown or incomplete option '%s'\n", argv[optind - 1]);
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "cport-dummy: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (cfg.mode == MODE_CHAT) {
    if (!rate_set)
      cfg.rate = 1;
    if (!size_set)
      cfg.size = 16;
    if (cfg.room_size > cfg.clients)
      cfg.room_size = cfg.clients;
  } else if (cfg.size < pre() + MSG_HDR) {
    fprintf(stderr, "cport-dummy: --size must be at least %u in %s mode\n", pre() + MSG_HDR,
            mode_names[cfg.mode]);
    return 2;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  clients = calloc(cfg.clients, sizeof *clients);
  if (cfg.churn > 0)
    pend = calloc(cfg.clients, sizeof *pend);
  if (!clients || (cfg.churn > 0 && !pend)) {
    fprintf(stderr, "cport-dummy: out of memory\n");
    return 1;
  }
  for (unsigned i = 0; i < cfg.clients; i++) {
    clients[i].idx = i;
    pthread_spin_init(&clients[i].lock, PTHREAD_PROCESS_PRIVATE);
    if (cfg.mode == MODE_CHAT &&
        (!(clients[i].seen = calloc(cfg.room_size, sizeof(struct seen))) ||
         (cfg.churn > 0 && !(clients[i].fence = calloc(cfg.room_size, 1))))) {
      fprintf(stderr, "cport-dummy: out of memory\n");
      return 1;
    }
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  cp_service_options o = {.kind = CP_SERVICE_CLIENT,
                          .host = cfg.host,
                          .port = (uint16_t)cfg.port,
                          .threads = cfg.threads,
                          .client_sessions = cfg.clients,
                          .raw = cfg.mode == MODE_ECHO,
                          .max_packet = 65535,
                          .send_queue_max = 64u << 20,
                          .port_opts = {.backend = cfg.backend},
                          .callbacks = {.on_connected = on_connected,
                                        .on_raw = on_raw,
                                        .on_packet = on_packet,
                                        .on_disconnected = on_disconnected}};
  int rc = cp_service_create(&svc, &o);
  if (!rc)
    rc = cp_service_start(svc);
  if (rc) {
    fprintf(stderr, "cport-dummy: cannot start: %s\n", cp_strerror(rc));
    return 1;
  }
  bool tty = isatty(STDERR_FILENO) && !cfg.quiet;
  if (!cfg.quiet)
    fprintf(stderr, "cport-dummy: %u clients, %s mode, to %s:%u, backend %s\n", cfg.clients,
            mode_names[cfg.mode], cfg.host, cfg.port,
            cp_backend_name(cp_port_backend(cp_service_port(svc))));

  /* Connect everyone (and, in chat, log in and enter the rooms). */
  uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)cfg.connect_timeout * 1000000000ull;
  bool stop_now = false;
  struct timespec tick = {0, 5000000};
  for (;;) {
    uint64_t ready = cfg.mode == MODE_CHAT ? atomic_load(&n_entered) : atomic_load(&n_connected);
    if (ready >= cfg.clients)
      break;
    cp_service_stats st;
    cp_service_get_stats(svc, &st);
    if (st.connect_failures || atomic_load(&n_errors) || now_ns() > deadline) {
      fprintf(stderr,
              "cport-dummy: only %" PRIu64 " of %u clients %s (%" PRIu64 " connect failures)\n",
              ready, cfg.clients, cfg.mode == MODE_CHAT ? "entered their rooms" : "connected",
              st.connect_failures);
      atomic_fetch_add(&n_errors, 1);
      stop_now = true;
      break;
    }
    if (sigtimedwait(&sigs, NULL, &tick) > 0) {
      stop_now = true;
      break;
    }
  }
  /* Run. */
  uint64_t start = now_ns(), last_print = start, last_msgs = 0;
  uint64_t end = start + (uint64_t)cfg.duration * 1000000000ull;
  uint64_t churned = 0;
  atomic_store(&churning, true); /* every first connect is done: a failed one now is a reconnect */
  atomic_store(&measuring, true);
  atomic_store(&sending, true);
  if (!stop_now && cfg.rate == 0)
    for (unsigned i = 0; i < cfg.clients; i++) {
      pthread_spin_lock(&clients[i].lock);
      for (unsigned k = 0; k < cfg.depth && clients[i].s && atomic_load(&clients[i].state) == CS_UP;
           k++)
        echo_send(&clients[i]);
      pthread_spin_unlock(&clients[i].lock);
    }
  while (!stop_now) {
    uint64_t now = now_ns();
    if (now >= end)
      break;
    if (cfg.rate > 0)
      pace(start, now);
    if (cfg.churn > 0) {
      for (uint64_t due = (uint64_t)((double)(now - start) / 1e9 * cfg.churn); churned < due;
           churned++)
        churn_one();
      pump_reconnects();
    }
    if (now - last_print >= 1000000000ull && !cfg.quiet) {
      uint64_t m = atomic_load(&n_recv_msgs);
      double secs = (double)(now - last_print) / 1e9;
      fprintf(stderr,
              "%sconnected %" PRIu64 "  reconnects %" PRIu64
              "  msgs/s %.0f  p99 %.2f ms  errors %" PRIu64 "%s",
              tty ? "\r" : "", atomic_load(&n_connected), atomic_load(&n_reconnects),
              (double)(m - last_msgs) / secs, (double)hist_quantile(&lat, 0.99) / 1000.0,
              atomic_load(&n_errors), tty ? "" : "\n");
      last_msgs = m;
      last_print = now;
    }
    if (sigtimedwait(&sigs, NULL, &tick) > 0) {
      stop_now = true; /* interrupted: report what we have, wait for nothing */
      break;
    }
  }
  uint64_t stop_t = now_ns();
  atomic_store(&sending, false);
  double secs = (double)(stop_t - start) / 1e9;
  uint64_t msgs = atomic_load(&n_recv_msgs), bytes = atomic_load(&n_recv_bytes);
  /* Let what is in flight come back (and the clients that are leaving come
   * back too), then check nothing is missing. */
  uint64_t wait_until = now_ns() + 10000000000ull, left = 0, away = 0;
  while (!stop_now && ((left = outstanding(&away)) || away) && now_ns() < wait_until) {
    pump_reconnects();
    nanosleep(&tick, NULL);
  }
  atomic_store(&measuring, false);
  if (tty)
    fprintf(stderr, "\n");
  if (left && !stop_now)
    error("%" PRIu64 " %s never arrived", left,
          cfg.mode == MODE_CHAT ? "chat deliveries" : "echoed messages");
  if (away && !stop_now)
    error("%" PRIu64 " clients were still leaving or reconnecting", away);
  atomic_store(&churning, false);
  cp_service_stop(svc, 0);
  uint64_t errors = atomic_load(&n_errors);
  cp_service_stats st;
  cp_service_get_stats(svc, &st);
  double p50 = (double)hist_quantile(&lat, 0.50) / 1000.0, p90 = hist_quantile(&lat, 0.90) / 1e3,
         p99 = (double)hist_quantile(&lat, 0.99) / 1e3, p999 = hist_quantile(&lat, 0.999) / 1e3,
         mx = (double)atomic_load(&lat.max) / 1e3;
  if (cfg.json) {
    printf("{\"mode\":\"%s\",\"clients\":%u,\"connected\":%" PRIu64 ",\"size\":%u,\"depth\":%u,"
           "\"rate\":%g,\"room_size\":%u,\"duration_s\":%.3f,\"sent\":%" PRIu64
           ",\"messages\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"bytes_per_s\":%.1f,"
           "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
           "\"churn_per_s\":%g,\"churn_disconnects\":%" PRIu64 ",\"reconnects\":%" PRIu64
           ",\"reconnect_failures\":%" PRIu64 ",\"connect_failures\":%" PRIu64
           ",\"errors\":%" PRIu64 "}\n",
           mode_names[cfg.mode], cfg.clients, atomic_load(&n_connected), cfg.size,
           cfg.rate > 0 ? 0 : cfg.depth, cfg.rate, cfg.mode == MODE_CHAT ? cfg.room_size : 0, secs,
           atomic_load(&n_sent), msgs, (double)msgs / secs, (double)bytes / secs, p50, p90, p99,
           p999, mx, cfg.churn, atomic_load(&n_churn_out), atomic_load(&n_reconnects),
           atomic_load(&n_reconnect_failures), st.connect_failures, errors);
  } else {
    printf("cport-dummy: %s mode, %u clients (%" PRIu64 " connected), %.1f s\n",
           mode_names[cfg.mode], cfg.clients, atomic_load(&n_connected), secs);
    printf("  messages   %" PRIu64 " received (%" PRIu64 " sent), %.0f msgs/s, %.2f MB/s\n", msgs,
           atomic_load(&n_sent), (double)msgs / secs, (double)bytes / secs / 1e6);
    printf("  latency    p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n", p50,
           p90, p99, p999, mx);
    if (cfg.churn > 0)
      printf("  churn      %" PRIu64 " disconnects, %" PRIu64 " reconnects, %" PRIu64
             " failed (%g a second%s)\n",
             atomic_load(&n_churn_out), atomic_load(&n_reconnects),
             atomic_load(&n_reconnect_failures), cfg.churn,
             atomic_load(&n_churn_skipped) ? ", some skipped: nobody was up" : "");
    printf("  verified   %s\n", errors ? "NO" : "every byte, in order, nothing lost or duplicated");
    printf("  errors     %" PRIu64 "\n", errors);
  }
  for (unsigned i = 0; i < cfg.clients; i++) {
    free(clients[i].seen);
    free(clients[i].fence);
    pthread_spin_destroy(&clients[i].lock);
  }
  cp_service_destroy(svc);
  free(clients);
  free(pend);
  return errors ? 1 : 0;
}
