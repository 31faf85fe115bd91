/*
 * chat.c - chat mode (protocol 2, docs/protocol.md): login, rooms that come
 * and go, chat broadcast to the room, presence, ping, rate limits.
 *
 * Threads and order. Three kinds of state, each with one owner:
 *
 *  - A room's member list lives on the room's job queue (cp_jobq): entering,
 *    leaving and chatting are jobs of the room, run one at a time in post
 *    order, without a lock. Everything a room sends (S_ENTER_ROOM,
 *    S_LEAVE_ROOM, S_CHAT, S_MEMBER_JOINED, S_MEMBER_LEFT) is sent from its
 *    jobs.
 *  - A player's state (id, name, room, rate buckets) belongs to the player's
 *    *chain*: its requests are handled one at a time, in the order they
 *    arrived. A request that needs a room (enter, leave, switch) posts a job
 *    to the room and suspends the chain; the job does the room's part, sends
 *    the answer and resumes the chain itself (on the room's thread), so the
 *    next request is handled only after the answer of the previous one was
 *    queued. Requests that arrive meanwhile (on the session's strand) wait in
 *    the player's backlog, a list under a small mutex (p->mu, held only to
 *    push or pop). A chat does not suspend: it goes out with the room's next
 *    chat job, behind the chain's earlier jobs there (room_chat), and the
 *    chain goes on.
 *  - The table of live rooms is under rooms_mu, with a reference count per
 *    room (every member, and every entry on its way, holds one). The last
 *    reference deletes the room; it is always put by a job of the room (or
 *    before anything was posted to it), and every job posted to a room is
 *    posted by a holder of a reference before it puts it, so no job of a
 *    deleted room is ever pending.
 *
 * Why this gives protocol 2's order: cp_session_send queues in call order.
 * The chain handles requests in order and never has two in flight, so the
 * answers (direct ones sent by the chain, room ones sent by the room's job
 * before it resumes the chain) are queued in request order. A session is in
 * a room's member list exactly from the job that sends its S_ENTER_ROOM to
 * the job that sends its S_LEAVE_ROOM, and only the room's jobs send the
 * room's traffic, to that list: so a room's traffic reaches a session only
 * between the two. A switch is a leave job on the old room that posts the
 * enter job on the new one: S_LEAVE_ROOM(old) is queued before
 * S_ENTER_ROOM(new).
 *
 * No lock is held while sending: a send can run another session's handlers
 * on this thread (the engine's strands), which may push to their own
 * backlog or post jobs, but never wait for anything we hold.
 *
 * Bad input: a body that does not decode (strings that are not UTF-8
 * included), or an unknown packet id, gets an S_ERROR, a line in the log and
 * a graceful disconnect; a packet that makes no sense in the player's state
 * (chat before login, ...) or over a rate limit gets an S_ERROR only. A bad
 * header (the engine's on_bad_packet) is a last item of the chain: the
 * engine reads no more and keeps the session for sending; when the chain
 * reaches the item, every earlier request was answered (its room answers
 * included), and the chain disconnects gracefully - from a job of its room
 * if it is in one, so that the room's S_CHAT of its own earlier chats, in
 * that queue ahead of the job, go out first. The session ends as bad_packet.
 */
#define _GNU_SOURCE
#include "server.h"

#include "../common/wire.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- byte strings --------------------------------------------------- */

struct name {
  uint8_t len;
  uint8_t b[CHAT_NAME_MAX]; /* CHAT_NAME_MAX == CHAT_ROOM_MAX */
};

static ProtobufCBinaryData bin(const struct name *n) {
  return (ProtobufCBinaryData){.len = n->len, .data = (uint8_t *)n->b};
}

static bool name_eq(const struct name *a, const uint8_t *b, size_t len) {
  return a->len == len && !memcmp(a->b, b, len);
}

/* ---- state -------------------------------------------------------------- */

struct member {
  uint64_t id;
  struct name name;
};

struct room {
  struct room *next; /* hash chain, under rooms_mu */
  uint64_t hash;
  size_t refs; /* under rooms_mu */
  struct name name;
  cp_jobq *q;
  /* Members, oldest first; touched only by the room's jobs. */
  cp_session **sessions; /* the players' sessions (each player holds a reference) */
  struct member *members;
  size_t n, cap;
  /* Chats on their way to the room: the S_CHAT packets of the last chat job
   * posted, appended while that job waits in the queue (see room_chat). */
  pthread_mutex_t chat_mu;
  cp_sendbuf *open; /* under chat_mu; NULL once its job took it */
};

/* A request waiting for the chain, the end of the session, or a bad header
 * after the requests before it. */
#define ITEM_DISCONNECT 0xFFFFFFFFu
#define ITEM_BAD_HEADER 0xFFFFFFFEu
struct item {
  struct item *next;
  uint32_t id;
  uint32_t len;
  uint8_t body[];
};

struct bucket {
  double tokens;
  uint64_t last_us;
};

struct player {
  cp_session *s; /* a reference, put when the player is freed */
  char peer[64]; /* its address, noted at connect: the socket forgets it once the peer is gone */
  pthread_mutex_t mu;
  struct item *head, *tail; /* the backlog, under mu */
  bool running;             /* the chain is being run (under mu) */
  /* The chain's own (one runner at a time; handed over with mu): */
  bool closed; /* answered its last: drop what follows */
  uint64_t id; /* 0 until logged in */
  struct name name;
  struct room *room;
  struct bucket enter_bucket, chat_bucket;
};

static cp_service *service;
static struct chat_limits limits;
static pthread_mutex_t rooms_mu = PTHREAD_MUTEX_INITIALIZER;
static struct room **table; /* hash buckets, under rooms_mu */
static size_t table_cap, nrooms;
static _Atomic uint64_t next_player_id = 1;

void chat_init(cp_service *svc, const struct chat_limits *l) {
  service = svc;
  limits = *l;
  if (!limits.max_rooms)
    limits.max_rooms = CHAT_DEFAULT_MAX_ROOMS;
  if (!limits.max_packet)
    limits.max_packet = 16384;
}

size_t chat_rooms(void) {
  pthread_mutex_lock(&rooms_mu);
  size_t n = nrooms;
  pthread_mutex_unlock(&rooms_mu);
  return n;
}

static void room_free(struct room *r) {
  cp_jobq_destroy(r->q);
  pthread_mutex_destroy(&r->chat_mu);
  free(r->sessions);
  free(r->members);
  free(r);
}

void chat_shutdown(void) {
  /* After cp_service_stop every player has left (their leave jobs ran before
   * their sessions could go), so every room is gone already; free whatever
   * out of memory may have stranded. */
  pthread_mutex_lock(&rooms_mu);
  for (size_t i = 0; i < table_cap; i++) {
    while (table[i]) {
      struct room *r = table[i];
      table[i] = r->next;
      room_free(r);
    }
  }
  free(table);
  table = NULL;
  table_cap = nrooms = 0;
  pthread_mutex_unlock(&rooms_mu);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/* rooms_mu held: grow the table to keep chains short; false if out of memory. */
static bool table_grow(void) {
  if (nrooms < table_cap)
    return true;
  size_t cap = table_cap ? table_cap * 2 : 64;
  struct room **t = calloc(cap, sizeof *t);
  if (!t)
    return table_cap != 0; /* longer chains, still correct */
  for (size_t i = 0; i < table_cap; i++) {
    while (table[i]) {
      struct room *r = table[i];
      table[i] = r->next;
      r->next = t[r->hash & (cap - 1)];
      t[r->hash & (cap - 1)] = r;
    }
  }
  free(table);
  table = t;
  table_cap = cap;
  return true;
}

/* The live room of this name with a reference taken, created if there is
 * none and fewer than max_rooms are live. NULL: no more rooms (or memory). */
static struct room *room_ref(const uint8_t *name, size_t len) {
  uint64_t h = hash_bytes(name, len);
  struct room *r = NULL;
  pthread_mutex_lock(&rooms_mu);
  if (table_cap)
    for (r = table[h & (table_cap - 1)]; r && !(r->hash == h && name_eq(&r->name, name, len));
         r = r->next)
      ;
  if (r) {
    r->refs++;
  } else if (nrooms < limits.max_rooms && table_grow() && (r = calloc(1, sizeof *r))) {
    if (!(r->q = cp_jobq_create(service))) {
      free(r);
      r = NULL;
    } else {
      pthread_mutex_init(&r->chat_mu, NULL);
      r->hash = h;
      r->refs = 1;
      r->name.len = (uint8_t)len;
      memcpy(r->name.b, name, len);
      r->next = table[h & (table_cap - 1)];
      table[h & (table_cap - 1)] = r;
      nrooms++;
    }
  }
  pthread_mutex_unlock(&rooms_mu);
  return r;
}

/* Put a reference; the last deletes the room (see the header comment: no job
 * of it is pending then; from one of its own jobs is fine). */
static void room_unref(struct room *r) {
  pthread_mutex_lock(&rooms_mu);
  assert(r->refs > 0);
  bool last = --r->refs == 0;
  if (last) {
    struct room **pp = &table[r->hash & (table_cap - 1)];
    while (*pp != r)
      pp = &(*pp)->next;
    *pp = r->next;
    nrooms--;
  }
  pthread_mutex_unlock(&rooms_mu);
  if (last) {
    assert(r->n == 0);
    room_free(r);
  }
}

/* ---- sending ------------------------------------------------------------ */

static void send_error(cp_session *s, Chatw__ErrorCode code, const char *text) {
  Chatw__SError m = CHATW__SERROR__INIT;
  m.code = code;
  m.text = (ProtobufCBinaryData){.len = strlen(text), .data = (uint8_t *)text}; /* our own text */
  wire_send(s, CHATW__PACKET_ID__S_ERROR, &m.base);
}

static uint64_t now_us(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Room job: S_ENTER_ROOM to member i: it first, then the others oldest
 * first, as many as fit in max_packet (and CHAT_MEMBERS_LISTED). */
static void send_member_list(struct room *r, size_t i) {
  Chatw__SEnterRoom m = CHATW__SENTER_ROOM__INIT;
  m.room = bin(&r->name);
  m.member_count = (uint32_t)r->n;
  size_t size = CP_PACKET_HEADER + 2 + r->name.len + 1 + wire_varint_len(m.member_count);
  size_t want = r->n < CHAT_MEMBERS_LISTED ? r->n : CHAT_MEMBERS_LISTED;
  Chatw__Member one, *one_ptr;
  Chatw__Member *mem = malloc(want * sizeof *mem);
  Chatw__Member **ptrs = malloc(want * sizeof *ptrs);
  bool heap = mem && ptrs;
  if (!heap) { /* out of memory: list it alone */
    free(mem);
    free(ptrs);
    want = 1;
    mem = &one;
    ptrs = &one_ptr;
  }
  size_t listed = 0;
  for (size_t k = 0; k <= r->n && listed < want; k++) {
    size_t j = k == 0 ? i : k - 1; /* it, then everyone else in order */
    if ((k > 0 && j == i) || j >= r->n)
      continue;
    const struct member *x = &r->members[j];
    size_t msz = 1 + wire_varint_len(x->id) + 2 + x->name.len;
    size_t fsz = 1 + wire_varint_len(msz) + msz;
    if (size + fsz > limits.max_packet)
      break; /* the first always fits: max_packet >= CHAT_LARGEST_SERVER_PACKET */
    size += fsz;
    chatw__member__init(&mem[listed]);
    mem[listed].player_id = x->id;
    mem[listed].name = bin(&x->name);
    ptrs[listed] = &mem[listed];
    listed++;
  }
  m.n_members = listed;
  m.members = ptrs;
  assert(protobuf_c_message_get_packed_size(&m.base) + CP_PACKET_HEADER == size);
  wire_send(r->sessions[i], CHATW__PACKET_ID__S_ENTER_ROOM, &m.base);
  if (heap) {
    free(mem);
    free(ptrs);
  }
}

/* Room job: send m to members [from, to). */
static void room_send(struct room *r, size_t from, size_t to, uint16_t id,
                      const ProtobufCMessage *m) {
  if (from >= to)
    return;
  cp_sendbuf *b = wire_packet(id, m);
  if (!b) {
    /* Out of memory: a member must not silently miss presence; end them. */
    for (size_t k = from; k < to; k++)
      cp_session_disconnect(r->sessions[k], false);
    return;
  }
  cp_session_send_many(r->sessions + from, to - from, b);
  cp_sendbuf_unref(b);
}

/* ---- the chain ---------------------------------------------------------- */

static void chain_resume(struct player *p);

enum { DONE, SUSPENDED };

struct room_job {
  struct player *p;
  struct room *r;    /* the room the job runs on (a reference for enter) */
  struct room *next; /* leave: then enter this room (a reference), or NULL */
  bool final;        /* leave: the session is over; free the player after */
};

static void player_free(struct player *p) {
  struct item *it = p->head;
  while (it) {
    struct item *n = it->next;
    free(it);
    it = n;
  }
  pthread_mutex_destroy(&p->mu);
  cp_session_put(p->s);
  free(p);
}

static void job_enter(void *arg);

/* Post a room job; false if that failed (out of memory). */
static bool post(struct room *r, void (*fn)(void *), struct player *p, struct room *next,
                 bool final) {
  struct room_job *j = malloc(sizeof *j);
  if (!j)
    return false;
  *j = (struct room_job){.p = p, .r = r, .next = next, .final = final};
  if (cp_jobq_post(r->q, fn, j) != 0) {
    free(j);
    return false;
  }
  return true;
}

static void enter_failed(struct player *p, struct room *r) {
  room_unref(r);
  send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "out of memory");
}

static void job_enter(void *arg) {
  struct room_job *j = arg;
  struct player *p = j->p;
  struct room *r = j->r;
  free(j);
  if (p->room == r) { /* already a member: the list again (the extra reference goes) */
    for (size_t i = 0; i < r->n; i++)
      if (r->sessions[i] == p->s)
        send_member_list(r, i);
    room_unref(r);
    chain_resume(p);
    return;
  }
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    cp_session **s = realloc(r->sessions, cap * sizeof *s);
    if (s)
      r->sessions = s;
    struct member *m = s ? realloc(r->members, cap * sizeof *m) : NULL;
    if (m)
      r->members = m;
    if (!s || !m) {
      enter_failed(p, r);
      chain_resume(p);
      return;
    }
    r->cap = cap;
  }
  r->sessions[r->n] = p->s;
  r->members[r->n] = (struct member){.id = p->id, .name = p->name};
  r->n++;
  p->room = r; /* the entry's reference is the membership's now */
  send_member_list(r, r->n - 1);
  Chatw__Member me = CHATW__MEMBER__INIT;
  me.player_id = p->id;
  me.name = bin(&p->name);
  Chatw__SMemberJoined joined = CHATW__SMEMBER_JOINED__INIT;
  joined.room = bin(&r->name);
  joined.member = &me;
  room_send(r, 0, r->n - 1, CHATW__PACKET_ID__S_MEMBER_JOINED, &joined.base);
  chain_resume(p);
}

static void job_leave(void *arg) {
  struct room_job *j = arg;
  struct player *p = j->p;
  struct room *r = j->r, *next = j->next;
  bool final = j->final;
  free(j);
  assert(p->room == r);
  size_t i = 0;
  while (i < r->n && r->sessions[i] != p->s)
    i++;
  assert(i < r->n);
  if (i < r->n) {
    memmove(r->sessions + i, r->sessions + i + 1, (r->n - i - 1) * sizeof *r->sessions);
    memmove(r->members + i, r->members + i + 1, (r->n - i - 1) * sizeof *r->members);
    r->n--;
  }
  p->room = NULL;
  cp_sendbuf *answer = NULL; /* S_LEAVE_ROOM, sent once the room may be gone */
  if (!final) {
    Chatw__SLeaveRoom m = CHATW__SLEAVE_ROOM__INIT;
    m.room = bin(&r->name);
    answer = wire_packet(CHATW__PACKET_ID__S_LEAVE_ROOM, &m.base);
  }
  Chatw__SMemberLeft left = CHATW__SMEMBER_LEFT__INIT;
  left.room = bin(&r->name);
  left.player_id = p->id;
  room_send(r, 0, r->n, CHATW__PACKET_ID__S_MEMBER_LEFT, &left.base);
  if (!r->n) { /* empty: give its slots back now (a room stays only while referenced) */
    free(r->sessions);
    free(r->members);
    r->sessions = NULL;
    r->members = NULL;
    r->cap = 0;
  }
  /* The membership's reference; may delete the room (and this queue). Before
   * the answer: once a client has S_LEAVE_ROOM of a room it emptied, the room
   * no longer counts against --max-rooms. */
  room_unref(r);
  if (answer) {
    cp_session_send(p->s, answer);
    cp_sendbuf_unref(answer);
  }
  if (final) {
    player_free(p);
    return;
  }
  if (next) {
    if (!post(next, job_enter, p, NULL, false))
      enter_failed(p, next);
    else
      return; /* job_enter resumes the chain */
  }
  chain_resume(p);
}

/* Chats are batched: a room's S_CHAT packets go out in buffers of up to
 * CHAT_BATCH bytes, each sent to the room's members by one job. A chat is
 * appended to the buffer of the last chat job posted to the room while that
 * job still waits in the queue; else it starts a buffer and posts a job. A
 * member then takes one buffer (one send-queue entry, one lock of its send
 * queue) for every chat that arrived while the room was busy, instead of one
 * per chat: under load that is most of the server's cost per delivery
 * (docs/performance.md). Nothing waits to fill a buffer: a job sends what
 * its buffer holds when its turn comes.
 *
 * Order is kept: a room's jobs run in post order, the buffer's packets are
 * in the order the chats were handled, and a chat only joins the buffer of a
 * job posted before it and not yet run. That job runs before any job posted
 * after it (an enter or leave of another player included), which is as if
 * the chat had arrived before those: chats of different players have no
 * order between them, and a player's own enter and leave suspend its chain,
 * so its chat is never handled before the job of its own enter or after the
 * job of its own leave. */
#define CHAT_BATCH 4096 /* >= CHAT_LARGEST_SERVER_PACKET */

struct chat_job {
  struct room *r;
  cp_sendbuf *b; /* a reference, dropped by the job */
};

static void job_chat(void *arg) {
  struct chat_job *j = arg;
  struct room *r = j->r;
  pthread_mutex_lock(&r->chat_mu);
  if (r->open == j->b)
    r->open = NULL; /* closed: its length is final from here on */
  pthread_mutex_unlock(&r->chat_mu);
  cp_session_send_many(r->sessions, r->n, j->b);
  cp_sendbuf_unref(j->b);
  free(j);
}

/* Chain: send the S_CHAT m to room r (see above). false: out of memory. */
static bool room_chat(struct room *r, const ProtobufCMessage *m) {
  size_t n = CP_PACKET_HEADER + protobuf_c_message_get_packed_size(m);
  pthread_mutex_lock(&r->chat_mu);
  cp_sendbuf *b = r->open;
  if (b && cp_sendbuf_len(b) + n <= cp_sendbuf_cap(b)) {
    size_t len = cp_sendbuf_len(b);
    wire_put_packet(cp_sendbuf_data(b) + len, CHATW__PACKET_ID__S_CHAT, m);
    cp_sendbuf_set_len(b, len + n);
    pthread_mutex_unlock(&r->chat_mu);
    return true;
  }
  struct chat_job *j = malloc(sizeof *j);
  b = j ? cp_sendbuf_alloc(n > CHAT_BATCH ? n : CHAT_BATCH) : NULL;
  bool ok = false;
  if (b) {
    cp_sendbuf_set_len(b, wire_put_packet(cp_sendbuf_data(b), CHATW__PACKET_ID__S_CHAT, m));
    j->r = r;
    j->b = b;
    /* posted under chat_mu: buffers are posted in the order they are opened */
    if ((ok = cp_jobq_post(r->q, job_chat, j) == 0))
      r->open = b;
    else
      cp_sendbuf_unref(b);
  }
  pthread_mutex_unlock(&r->chat_mu);
  if (!ok)
    free(j);
  return ok;
}

/* ---- requests (run by the chain) ------------------------------------- */

static bool bucket_take(struct bucket *b, unsigned rate) {
  if (!rate)
    return true;
  uint64_t now = now_us(CLOCK_MONOTONIC);
  if (!b->last_us) {
    b->tokens = rate;
  } else {
    b->tokens += (double)(now - b->last_us) * rate / 1e6;
    if (b->tokens > rate)
      b->tokens = rate; /* a burst of one second's worth */
  }
  b->last_us = now;
  if (b->tokens < 1)
    return false;
  b->tokens -= 1;
  return true;
}

/* The body did not decode: S_ERROR, and close after it. */
static int bad_message(struct player *p, const char *what, size_t len) {
  char text[64];
  snprintf(text, sizeof text, "%s does not decode", what);
  send_error(p->s, CHATW__ERROR_CODE__ERR_BAD_MESSAGE, text);
  srv_log_session(p->s, p->peer, "%s body of %zu bytes does not decode; disconnecting", what, len);
  cp_session_disconnect(p->s, true);
  p->closed = true;
  return DONE;
}

static int on_login(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CLogin *m = chatw__clogin__unpack(NULL, len, body);
  if (!m || !wire_utf8_ok(m->name.data, m->name.len)) {
    chatw__clogin__free_unpacked(m, NULL);
    return bad_message(p, "C_LOGIN", len);
  }
  if (p->id) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_ALREADY_LOGGED_IN, "already logged in");
  } else if (m->name.len < 1 || m->name.len > CHAT_NAME_MAX) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_BAD_NAME, "a name is 1 to 32 bytes");
  } else {
    p->id = atomic_fetch_add(&next_player_id, 1);
    p->name.len = (uint8_t)m->name.len;
    memcpy(p->name.b, m->name.data, m->name.len);
    Chatw__SLogin r = CHATW__SLOGIN__INIT;
    r.player_id = p->id;
    wire_send(p->s, CHATW__PACKET_ID__S_LOGIN, &r.base);
  }
  chatw__clogin__free_unpacked(m, NULL);
  return DONE;
}

static int on_enter(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CEnterRoom *m = chatw__center_room__unpack(NULL, len, body);
  if (!m || !wire_utf8_ok(m->room.data, m->room.len)) {
    chatw__center_room__free_unpacked(m, NULL);
    return bad_message(p, "C_ENTER_ROOM", len);
  }
  int rc = DONE;
  struct room *r;
  if (!p->id) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_LOGGED_IN, "log in first");
  } else if (m->room.len < 1 || m->room.len > CHAT_ROOM_MAX) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_BAD_ROOM, "a room name is 1 to 32 bytes");
  } else if (!bucket_take(&p->enter_bucket, limits.enter_rate)) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_RATE_LIMITED, "too many room entries");
  } else if (!(r = room_ref(m->room.data, m->room.len))) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "no more rooms");
  } else if (p->room && p->room != r) { /* a switch: leave first, then enter */
    if (post(p->room, job_leave, p, r, false))
      rc = SUSPENDED;
    else
      enter_failed(p, r);
  } else {
    if (post(r, job_enter, p, NULL, false))
      rc = SUSPENDED;
    else
      enter_failed(p, r);
  }
  chatw__center_room__free_unpacked(m, NULL);
  return rc;
}

static int on_chat(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CChat *m = chatw__cchat__unpack(NULL, len, body);
  if (!m || !wire_utf8_ok(m->text.data, m->text.len)) {
    chatw__cchat__free_unpacked(m, NULL);
    return bad_message(p, "C_CHAT", len);
  }
  if (!p->id) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_LOGGED_IN, "log in first");
  } else if (!p->room) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_IN_ROOM, "enter a room first");
  } else if (m->text.len > CHAT_TEXT_MAX) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_TOO_LONG, "chat text is at most 1000 bytes");
  } else if (!bucket_take(&p->chat_bucket, limits.chat_rate)) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_RATE_LIMITED, "too many chats");
  } else {
    Chatw__SChat out = CHATW__SCHAT__INIT;
    out.player_id = p->id;
    out.text = m->text;
    out.client_time_us = m->client_time_us;
    out.room = bin(&p->room->name);
    if (!room_chat(p->room, &out.base)) {
      /* Out of memory: the chat cannot reach the room. Say so and end the
       * session rather than let the player think it was heard. */
      srv_log_session(p->s, p->peer, "out of memory for a chat; disconnecting");
      cp_session_disconnect(p->s, false);
      p->closed = true;
    }
  }
  chatw__cchat__free_unpacked(m, NULL);
  return DONE;
}

static int on_leave(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CLeaveRoom *m = chatw__cleave_room__unpack(NULL, len, body);
  if (!m)
    return bad_message(p, "C_LEAVE_ROOM", len);
  chatw__cleave_room__free_unpacked(m, NULL);
  if (!p->id) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_LOGGED_IN, "log in first");
  } else if (!p->room) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_IN_ROOM, "not in a room");
  } else if (post(p->room, job_leave, p, NULL, false)) {
    return SUSPENDED;
  } else {
    send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "out of memory");
  }
  return DONE;
}

static int on_ping(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CPing *m = chatw__cping__unpack(NULL, len, body);
  if (!m)
    return bad_message(p, "C_PING", len);
  Chatw__SPong r = CHATW__SPONG__INIT;
  r.client_time_us = m->client_time_us;
  r.server_time_us = now_us(CLOCK_REALTIME);
  chatw__cping__free_unpacked(m, NULL);
  wire_send(p->s, CHATW__PACKET_ID__S_PONG, &r.base);
  return DONE;
}

static void job_close(void *arg) {
  struct room_job *j = arg;
  /* the player is alive: its final leave job is behind this one in the queue */
  cp_session_disconnect(j->p->s, true);
  free(j);
}

/* Every request before the bad header was answered: close (gracefully, so
 * the answers go out first; the engine reports it as bad_packet). */
static int on_bad_header(struct player *p) {
  p->closed = true;
  if (p->room && post(p->room, job_close, p, NULL, false))
    return DONE; /* after the room's jobs of the player's earlier chats */
  cp_session_disconnect(p->s, true);
  return DONE;
}

/* The session is over: leave the room (the job frees the player), or free
 * the player now. */
static int on_end(struct player *p) {
  p->closed = true;
  if (p->room) {
    if (post(p->room, job_leave, p, NULL, true))
      return SUSPENDED;
    /* Out of memory: the room keeps a stale member, and the player stays
     * (it is in the list); it is sent to and fails, harmlessly. */
    return SUSPENDED;
  }
  player_free(p);
  return SUSPENDED; /* nothing may touch p any more */
}

static int handle(struct player *p, uint32_t id, const uint8_t *body, size_t len) {
  if (id == ITEM_DISCONNECT)
    return on_end(p);
  if (p->closed)
    return DONE; /* after an error that closes: nothing more is answered */
  switch (id) {
  case ITEM_BAD_HEADER:
    return on_bad_header(p);
  case CHATW__PACKET_ID__C_LOGIN:
    return on_login(p, body, len);
  case CHATW__PACKET_ID__C_ENTER_ROOM:
    return on_enter(p, body, len);
  case CHATW__PACKET_ID__C_CHAT:
    return on_chat(p, body, len);
  case CHATW__PACKET_ID__C_LEAVE_ROOM:
    return on_leave(p, body, len);
  case CHATW__PACKET_ID__C_PING:
    return on_ping(p, body, len);
  default:
    send_error(p->s, CHATW__ERROR_CODE__ERR_UNKNOWN_ID, "unknown packet id");
    srv_log_session(p->s, p->peer, "unknown packet id %u; disconnecting", id);
    cp_session_disconnect(p->s, true);
    p->closed = true;
    return DONE;
  }
}

/* Run the backlog until it is empty or a request suspends the chain. The
 * caller runs the chain (p->running). */
static void chain_resume(struct player *p) {
  for (;;) {
    pthread_mutex_lock(&p->mu);
    struct item *it = p->head;
    if (!it) {
      p->running = false;
      pthread_mutex_unlock(&p->mu);
      return;
    }
    p->head = it->next;
    if (!p->head)
      p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    int rc = handle(p, it->id, it->body, it->len);
    free(it);
    if (rc == SUSPENDED)
      return;
  }
}

/* From the session's strand: handle the request now if the chain is idle,
 * else add it to the backlog. */
static void submit(struct player *p, uint32_t id, const uint8_t *body, size_t len) {
  pthread_mutex_lock(&p->mu);
  if (!p->running) {
    p->running = true;
    pthread_mutex_unlock(&p->mu);
    if (handle(p, id, body, len) == DONE)
      chain_resume(p);
    return;
  }
  struct item *it = malloc(sizeof *it + len);
  if (!it) {
    pthread_mutex_unlock(&p->mu);
    if (id != ITEM_DISCONNECT) {
      srv_log_session(p->s, p->peer, "out of memory for a request; disconnecting");
      cp_session_disconnect(p->s, false);
      return;
    }
    /* The end must not be lost: wait for the chain to go idle. */
    for (;;) {
      pthread_mutex_lock(&p->mu);
      bool idle = !p->running;
      if (idle)
        p->running = true;
      pthread_mutex_unlock(&p->mu);
      if (idle) {
        handle(p, id, NULL, 0);
        return;
      }
      sched_yield();
    }
  }
  it->next = NULL;
  it->id = id;
  it->len = (uint32_t)len;
  if (len)
    memcpy(it->body, body, len);
  if (p->tail)
    p->tail->next = it;
  else
    p->head = it;
  p->tail = it;
  pthread_mutex_unlock(&p->mu);
}

/* ---- session callbacks ------------------------------------------------ */

void chat_on_connected(cp_session *s) {
  struct player *p = calloc(1, sizeof *p);
  if (!p) {
    cp_session_disconnect(s, false);
    return;
  }
  pthread_mutex_init(&p->mu, NULL);
  p->s = cp_session_get(s);
  cp_session_peer(s, p->peer, sizeof p->peer);
  cp_session_set_user(s, p);
}

void chat_on_packet(cp_session *s, const cp_packet *pkt) {
  struct player *p = cp_session_user(s);
  if (p)
    submit(p, pkt->id, pkt->body, pkt->body_len);
}

bool chat_on_bad_packet(cp_session *s) {
  struct player *p = cp_session_user(s);
  if (!p)
    return false;                      /* out of memory at connect: nothing to finish */
  submit(p, ITEM_BAD_HEADER, NULL, 0); /* out of memory: it disconnects at once */
  return true;
}

void chat_on_disconnected(cp_session *s, cp_reason why) {
  struct player *p = cp_session_user(s);
  srv_log_disconnect(s, p ? p->peer : NULL, why);
  if (!p)
    return;
  cp_session_set_user(s, NULL);
  submit(p, ITEM_DISCONNECT, NULL, 0);
}
