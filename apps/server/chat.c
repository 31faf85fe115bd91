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
#ifdef CPORT_CLUSTER
#include "cluster/node.h"
#include "cluster/room_follow.h"
#endif

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
  /* cluster mode: */
  uint64_t joined;   /* the offset of its join: it gets the room's events after it */
  uint64_t left;     /* its leave's offset once known (0: not leaving) */
  uint64_t resume;   /* re-joining (joined UINT64_MAX): it has had the events before this one */
  bool answered;     /* leaving: the leave's reply came (next and final are known) */
  struct player *p;  /* the player (its chain resumes when the leave completes) */
  struct room *next; /* leaving: then enter this room (a reference), or NULL */
  bool final;        /* leaving: the session is over */
  bool close;        /* leaving: after a bad header: close the session, no S_LEAVE_ROOM */
};

struct room {
  struct room *next; /* hash chain, under rooms_mu */
  uint64_t hash;
  size_t refs;    /* members and entries on their way, under rooms_mu */
  size_t jobrefs; /* cluster: jobs of the room in flight, under rooms_mu */
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
  /* --room-flush-ms: chats held back after a flush (see room_chat). Under
   * chat_mu; held != NULL implies the flush timer is pending. */
  cp_sendbuf *held;
  uint64_t last_flush_ms; /* when the room's chats last went out */
  cp_timer flush;         /* sends held on the room's queue (job_flush) */
#ifdef CPORT_CLUSTER
  struct cl_room *cl; /* cluster mode: the room's follower (its jobs' own) */
#endif
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
  bool closed;                        /* answered its last: drop what follows */
  uint64_t id;                        /* 0 until logged in */
  struct player *all_prev, *all_next; /* every player, under players_mu */
  struct player *id_wait;             /* cluster: waiting for a player id, under players_mu */
  struct name name;
  struct room *room;
  struct bucket enter_bucket, chat_bucket;
  _Atomic bool leaving; /* cluster: a leave of the chain's is on its way */
};

static cp_service *service;
static struct chat_limits limits;
static pthread_mutex_t rooms_mu = PTHREAD_MUTEX_INITIALIZER;
static struct room **table; /* hash buckets, under rooms_mu */
static size_t table_cap, nrooms;
static _Atomic uint64_t next_player_id = 1;
static pthread_mutex_t players_mu = PTHREAD_MUTEX_INITIALIZER;
static struct player *players; /* every player (the cluster's drain), under players_mu */

#ifdef CPORT_CLUSTER
static bool clustered; /* --cluster: rooms on Redis */
static void cl_room_free(struct room *r);
static void cl_room_unsubscribe(struct room *r);
static void cl_flush_held(struct room *r);
#endif

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
  assert(!r->held); /* sent by the last member's leave (room_flush_held) */
  cp_jobq_destroy(r->q);
#ifdef CPORT_CLUSTER
  cl_room_free(r);
#endif
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
#ifdef CPORT_CLUSTER
  if (clustered)
    node_shutdown();
#endif
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

/* The live room of this name with a reference taken, created (if create) if
 * there is none and fewer than max_rooms are live. NULL: none, no more rooms
 * (or memory). */
static struct room *room_find(const uint8_t *name, size_t len, bool create) {
  uint64_t h = hash_bytes(name, len);
  struct room *r = NULL;
  pthread_mutex_lock(&rooms_mu);
  if (table_cap)
    for (r = table[h & (table_cap - 1)]; r && !(r->hash == h && name_eq(&r->name, name, len));
         r = r->next)
      ;
  if (r && create) {
    r->refs++;
  } else if (r) {
    r->jobrefs++; /* cluster: a job's, for a channel message */
  } else if (create && nrooms < limits.max_rooms && table_grow() && (r = calloc(1, sizeof *r))) {
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

static struct room *room_ref(const uint8_t *name, size_t len) {
  return room_find(name, len, true);
}

/* Put a reference (job: a job's, cluster mode). The last of the members' and
 * entries' takes the room out of the table (it no longer counts against
 * --max-rooms, and a new one of its name can be made); the last of all
 * deletes it (see the header comment: no job of it is pending then; from one
 * of its own jobs is fine). */
static void room_put(struct room *r, bool job) {
  pthread_mutex_lock(&rooms_mu);
  assert(job ? r->jobrefs > 0 : r->refs > 0);
  bool detach = job ? false : --r->refs == 0;
  if (job)
    r->jobrefs--;
  bool last = r->refs == 0 && r->jobrefs == 0;
  if (detach) {
    struct room **pp = &table[r->hash & (table_cap - 1)];
    while (*pp != r)
      pp = &(*pp)->next;
    *pp = r->next;
    nrooms--;
#ifdef CPORT_CLUSTER
    /* under rooms_mu: a room of this name made after it SUBSCRIBEs after this */
    if (clustered)
      cl_room_unsubscribe(r);
#endif
  }
  pthread_mutex_unlock(&rooms_mu);
  if (last) {
    assert(r->n == 0);
    room_free(r);
  }
}

static void room_unref(struct room *r) {
  room_put(r, false);
}

#ifdef CPORT_CLUSTER
static void job_unref(struct room *r) {
  room_put(r, true);
}
#endif

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

/* S_ENTER_ROOM of room to s: `me` first, then others[0..n) but others[skip]
 * oldest first, as many as fit in max_packet (and CHAT_MEMBERS_LISTED). */
static void send_enter(cp_session *s, const struct name *room, uint32_t count,
                       const struct member *me, const struct member *others, size_t n,
                       size_t skip) {
  Chatw__SEnterRoom m = CHATW__SENTER_ROOM__INIT;
  m.room = bin(room);
  m.member_count = count;
  size_t size = CP_PACKET_HEADER + 2 + room->len + 1 + wire_varint_len(m.member_count);
  size_t want = n + 1 < CHAT_MEMBERS_LISTED ? n + 1 : CHAT_MEMBERS_LISTED;
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
  for (size_t k = 0; k <= n && listed < want; k++) {
    if (k > 0 && k - 1 == skip)
      continue;
    const struct member *x = k == 0 ? me : &others[k - 1]; /* it, then everyone else in order */
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
  wire_send(s, CHATW__PACKET_ID__S_ENTER_ROOM, &m.base);
  if (heap) {
    free(mem);
    free(ptrs);
  }
}

/* Room job: S_ENTER_ROOM to member i. */
static void send_member_list(struct room *r, size_t i) {
  send_enter(r->sessions[i], &r->name, (uint32_t)r->n, &r->members[i], r->members, r->n, i);
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
  pthread_mutex_lock(&players_mu);
  if (p->all_prev)
    p->all_prev->all_next = p->all_next;
  else
    players = p->all_next;
  if (p->all_next)
    p->all_next->all_prev = p->all_prev;
  pthread_mutex_unlock(&players_mu);
  pthread_mutex_destroy(&p->mu);
  cp_session_put(p->s);
  free(p);
}

static void job_enter(void *arg);
static void room_flush_held(struct room *r, bool empty);

/* Room job: room for one more member; false if out of memory. */
static bool room_grow(struct room *r) {
  if (r->n < r->cap)
    return true;
  size_t cap = r->cap ? r->cap * 2 : 8;
  cp_session **s = realloc(r->sessions, cap * sizeof *s);
  if (s)
    r->sessions = s;
  struct member *m = s ? realloc(r->members, cap * sizeof *m) : NULL;
  if (m)
    r->members = m;
  if (!s || !m)
    return false;
  r->cap = cap;
  return true;
}

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
  room_flush_held(r, false); /* the chats held so far are not the new member's */
  if (p->room == r) {        /* already a member: the list again (the extra reference goes) */
    for (size_t i = 0; i < r->n; i++)
      if (r->sessions[i] == p->s)
        send_member_list(r, i);
    room_unref(r);
    chain_resume(p);
    return;
  }
  if (!room_grow(r)) {
    enter_failed(p, r);
    chain_resume(p);
    return;
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
  room_flush_held(r, r->n == 1); /* its chats and everyone's before it leaves */
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
 * CHAT_BATCH bytes, each sent to the room's members at once. A member then
 * takes one buffer (one send-queue entry, one lock of its send queue, one
 * segment on the wire) for every chat in it instead of one per chat: under
 * load that is most of the server's cost per delivery (docs/performance.md).
 *
 * A buffer goes out in one of two ways:
 * - open: a chat that finds no buffer starts one and posts a job (job_chat)
 *   at once; later chats are appended to it while that job waits in the
 *   queue. Nothing waits to fill it: the job sends what it holds when its
 *   turn comes.
 * - held (--room-flush-ms W > 0): a chat that comes within W ms of the
 *   room's last send, with no job of it waiting, starts a held buffer and
 *   starts the room's flush timer instead; chats until it fires are appended,
 *   and job_flush sends them W ms after the first. So a busy room sends at
 *   most about 1000/W buffers a second to each member, however many chats it
 *   gets, and a chat waits at most W ms more; a quiet room's chat goes out
 *   at once.
 *
 * Order is kept: a room's jobs run in post order, a buffer's packets are in
 * the order the chats were handled, and a chat only joins a buffer that goes
 * out before any buffer or membership change handled after it. For the open
 * buffer: its job was posted before the chat and has not run, so it runs
 * before any job posted after the chat (an enter or leave of another player
 * included), which is as if the chat had arrived before those: chats of
 * different players have no order between them, and a player's own enter and
 * leave suspend its chain, so its chat is never handled before the job of its
 * own enter or after the job of its own leave. For the held buffer: it only
 * starts while no chat job waits (no open buffer), no chat job is posted while
 * it exists (a chat that does not fit posts the held buffer first), and every
 * other job of the room (an entry, a leave, a close after a bad header) sends
 * it first (room_flush_held), so its chats reach exactly the members they
 * would have reached had they gone at once, and before anything that job
 * sends (S_MEMBER_JOINED, S_LEAVE_ROOM) or the end of a member's session. */
#define CHAT_BATCH 4096 /* >= CHAT_LARGEST_SERVER_PACKET */

struct chat_job {
  struct room *r;
  cp_sendbuf *b; /* a reference, dropped by the job */
};

static uint64_t now_ms(void) {
  return now_us(CLOCK_MONOTONIC) / 1000u;
}

/* /metrics: chat buffers sent to rooms, and of those the held ones */
static _Atomic uint64_t chat_buffers, chat_held;

void chat_buffer_stats(uint64_t *buffers, uint64_t *held) {
  *buffers = atomic_load_explicit(&chat_buffers, memory_order_relaxed);
  *held = atomic_load_explicit(&chat_held, memory_order_relaxed);
}

/* Room job: the chat buffer b (a reference, put) to the n sessions to. */
static void room_send_chats(cp_session **to, size_t n, cp_sendbuf *b, bool held) {
  atomic_fetch_add_explicit(&chat_buffers, 1, memory_order_relaxed);
  if (held)
    atomic_fetch_add_explicit(&chat_held, 1, memory_order_relaxed);
  cp_session_send_many(to, n, b);
  cp_sendbuf_unref(b);
}

static void job_chat(void *arg) {
  struct chat_job *j = arg;
  struct room *r = j->r;
  pthread_mutex_lock(&r->chat_mu);
  if (r->open == j->b)
    r->open = NULL; /* closed: its length is final from here on */
  r->last_flush_ms = now_ms();
  pthread_mutex_unlock(&r->chat_mu);
  room_send_chats(r->sessions, r->n, j->b, false);
  free(j);
}

/* Room job, before anything else the room does (see above): send the held
 * chats to the members they were held for. With empty (the room has no
 * members left), the flush timer is cancelled too, so that nothing of the
 * room is pending when it goes: from the room's own queue, that also means
 * job_flush is not running. */
static void room_flush_held(struct room *r, bool empty) {
#ifdef CPORT_CLUSTER
  if (clustered)
    cl_flush_held(r); /* the cluster's held chats (the flush timer's job too) */
#endif
  pthread_mutex_lock(&r->chat_mu);
  cp_sendbuf *b = r->held;
  r->held = NULL;
  if (b)
    r->last_flush_ms = now_ms();
  pthread_mutex_unlock(&r->chat_mu);
  if (b)
    room_send_chats(r->sessions, r->n, b, true);
  if (empty)
    (void)cp_timer_cancel(&r->flush); /* -ENOENT: it was not pending */
}

/* Room job (the flush timer's): send the held chats. */
static void job_flush(void *arg) {
  room_flush_held(arg, false);
}

/* chat_mu held: post a job that sends b (a reference, the job's) to room r
 * and make b the open buffer; false (b unreferenced) if that failed. */
static bool chat_post(struct room *r, cp_sendbuf *b) {
  struct chat_job *j = malloc(sizeof *j);
  if (j) {
    j->r = r;
    j->b = b;
    /* posted under chat_mu: buffers are posted in the order they are opened */
    if (cp_jobq_post(r->q, job_chat, j) == 0) {
      r->open = b;
      return true;
    }
    free(j);
  }
  cp_sendbuf_unref(b);
  return false;
}

/* chat_mu held: append the packet m (n bytes) to b if it fits. */
static bool chat_append(cp_sendbuf *b, const ProtobufCMessage *m, size_t n) {
  size_t len = cp_sendbuf_len(b);
  if (len + n > cp_sendbuf_cap(b))
    return false;
  wire_put_packet(cp_sendbuf_data(b) + len, CHATW__PACKET_ID__S_CHAT, m);
  cp_sendbuf_set_len(b, len + n);
  return true;
}

/* Chain: send the S_CHAT m to room r (see above). false: out of memory. */
static bool room_chat(struct room *r, const ProtobufCMessage *m) {
  size_t n = CP_PACKET_HEADER + protobuf_c_message_get_packed_size(m);
  bool ok = true;
  pthread_mutex_lock(&r->chat_mu);
  assert(!(r->open && r->held)); /* see above: never both */
  if ((r->open && chat_append(r->open, m, n)) || (r->held && chat_append(r->held, m, n)))
    goto out;
  if (r->held) { /* full: it goes first, at once (no chat job while one is held) */
    cp_sendbuf *h = r->held;
    r->held = NULL;
    if (!chat_post(r, h)) {
      ok = false;
      goto out;
    }
  }
  cp_sendbuf *b = cp_sendbuf_alloc(n > CHAT_BATCH ? n : CHAT_BATCH);
  if (!b) {
    ok = false;
    goto out;
  }
  cp_sendbuf_set_len(b, wire_put_packet(cp_sendbuf_data(b), CHATW__PACKET_ID__S_CHAT, m));
  unsigned w = limits.flush_ms;
  int rc;
  if (w && !r->open && now_ms() - r->last_flush_ms < w &&
      ((rc = cp_timer_start(&r->flush, r->q, w, 0, job_flush, r)) == 0 || rc == CP_EBUSY)) {
    r->held = b; /* CP_EBUSY: still pending from a held buffer that filled up */
    goto out;
  }
  ok = chat_post(r, b);
out:
  pthread_mutex_unlock(&r->chat_mu);
  return ok;
}

/* ---- cluster mode (--cluster): rooms on Redis ----------------------------
 *
 * docs/cluster.md. A room's entries, leaves and chats are events published
 * by the room script (node_room_event, one command connection: FIFO); each
 * gets the room's next offset. The node follows the rooms it has members in
 * (subscribed to their channels) with one cl_follow per room, run by the
 * room's jobs: a room's events reach its local members in offset order,
 * exactly once, from the jobs only.
 *
 * A member is active from its join's offset J: it gets the events after J
 * (S_ENTER_ROOM lists the members as of J). The script's reply (command
 * connection) and the published events (subscriber connection) race: when
 * the reply comes after the follower passed J, the events (J, last] are
 * replayed to it from the room's recent history (CL_HIST events). A leave
 * with offset L completes when the follower reaches L: the member gets every
 * event before L (its own earlier chats included), then S_LEAVE_ROOM. The
 * chain stays suspended from the request to its answer, as with room jobs.
 *
 * Chat events are batched like the chats above (--room-flush-ms W): a chat
 * event to the room that comes within W ms of the room's last chat send is
 * held, with its recipients (the members that get it) as they are then, and
 * the room's flush timer started; the next chat events with exactly those
 * recipients are appended; one with others, the flush timer (job_flush), and
 * anything else the room sends or does (any other event, a replay to one
 * member, every other job, a member's leave completing) send it first
 * (cl_flush_held). So each chat reaches exactly the members it would have at
 * once, in offset order, before anything after it; a member's session in the
 * snapshot is sent to before the member goes (its player with it).
 *
 * Every job posted to a room holds a reference of the room (put last).
 */
#ifdef CPORT_CLUSTER

#define CL_HIST 4096
#define CL_PRE_MAX 4096
#define CL_STREAM_MAX NODE_STREAM_MAX
#define CL_IDLE_TTL_S NODE_IDLE_TTL_S
#define LEFT_NOW 1 /* a leave to complete at once (no offset 1 is a leave: a join comes first) */

struct cl_msg { /* a channel message before the follower started */
  struct cl_msg *next;
  uint64_t off;
  size_t elen, len;
  char epoch[32];
  char ev[];
};

struct cl_hist {
  uint64_t off;
  size_t len;
  char *ev;
};

struct cl_room {
  bool started;
  cl_follow f;
  struct cl_msg *pre, *pre_tail;
  size_t npre;
  struct cl_hist hist[CL_HIST]; /* the last events delivered, by off % CL_HIST */
  unsigned epochs;              /* room_new_epoch calls (an epoch check older than one is moot) */
  cp_session **to;              /* scratch: the recipients of one event */
  size_t to_cap;
  /* --room-flush-ms: chat events held for the recipients they had (see
   * send_event). held != NULL implies the room's flush timer is pending. */
  cp_sendbuf *held;
  cp_session **held_to; /* held's recipients, as when it started */
  size_t held_n, held_cap;
  uint64_t last_flush_ms; /* when the room's chats last went out */
};

static void rejoin(struct room *r, size_t i, uint64_t resume);

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Event bytes: op (1), player id (8), publish time us (8), then a join: the
 * name; a chat: the client's time (8) and the text; a leave: nothing. */
#define EV_HEAD 17
static size_t ev_head(uint8_t *out, char op, uint64_t player) {
  out[0] = (uint8_t)op;
  put64(out + 1, player);
  put64(out + 9, now_us(CLOCK_REALTIME));
  return EV_HEAD;
}

static void cl_room_free(struct room *r) {
  struct cl_room *c = r->cl;
  if (!c)
    return;
  cl_follow_free(&c->f);
  while (c->pre) {
    struct cl_msg *m = c->pre;
    c->pre = m->next;
    free(m);
  }
  for (size_t i = 0; i < CL_HIST; i++)
    free(c->hist[i].ev);
  free(c->to);
  if (c->held) /* stranded by a stop (a room that empties sends it first) */
    cp_sendbuf_unref(c->held);
  free(c->held_to);
  free(c);
  r->cl = NULL;
}

static void cl_room_unsubscribe(struct room *r) {
  node_subscribe(r->name.b, r->name.len, false, NULL, NULL);
}

static struct cl_room *cl_of(struct room *r) {
  if (!r->cl)
    r->cl = calloc(1, sizeof *r->cl);
  return r->cl;
}

static void unavailable(struct player *p, const char *what) {
  atomic_fetch_add(&node_stats.unavailable, 1);
  char text[96];
  snprintf(text, sizeof text, "the cluster is unavailable (%s)", what);
  send_error(p->s, CHATW__ERROR_CODE__ERR_UNAVAILABLE, text);
}

/* Whether member x gets the event at off. */
static bool member_gets(const struct member *x, uint64_t off) {
  return x->joined < off && (!x->left || off < x->left);
}

/* The S_CHAT of a chat event (len >= EV_HEAD) in *m; false if it does not decode. */
static bool chat_message(struct room *r, const uint8_t *ev, size_t len, Chatw__SChat *m) {
  if (len < EV_HEAD + 8 || len - EV_HEAD - 8 > CHAT_TEXT_MAX)
    return false;
  chatw__schat__init(m);
  m->player_id = get64(ev + 1);
  m->client_time_us = get64(ev + EV_HEAD);
  m->text = (ProtobufCBinaryData){.len = len - EV_HEAD - 8, .data = (uint8_t *)ev + EV_HEAD + 8};
  m->room = bin(&r->name);
  return true;
}

/* The packet of an event, or NULL (a bad event: counted). */
static cp_sendbuf *event_packet(struct room *r, const uint8_t *ev, size_t len) {
  if (len < EV_HEAD)
    return NULL;
  uint64_t id = get64(ev + 1);
  switch (ev[0]) {
  case CL_OP_CHAT: {
    Chatw__SChat m;
    return chat_message(r, ev, len, &m) ? wire_packet(CHATW__PACKET_ID__S_CHAT, &m.base) : NULL;
  }
  case CL_OP_JOIN: {
    if (len - EV_HEAD > CHAT_NAME_MAX)
      return NULL;
    Chatw__Member me = CHATW__MEMBER__INIT;
    me.player_id = id;
    me.name = (ProtobufCBinaryData){.len = len - EV_HEAD, .data = (uint8_t *)ev + EV_HEAD};
    Chatw__SMemberJoined m = CHATW__SMEMBER_JOINED__INIT;
    m.room = bin(&r->name);
    m.member = &me;
    return wire_packet(CHATW__PACKET_ID__S_MEMBER_JOINED, &m.base);
  }
  case CL_OP_LEAVE: {
    Chatw__SMemberLeft m = CHATW__SMEMBER_LEFT__INIT;
    m.room = bin(&r->name);
    m.player_id = id;
    return wire_packet(CHATW__PACKET_ID__S_MEMBER_LEFT, &m.base);
  }
  default:
    return NULL;
  }
}

static void bad_event(uint64_t off) {
  atomic_fetch_add(&node_stats.bad_messages, 1);
  fprintf(stderr, "cport-server: cluster: room event at offset %" PRIu64 " does not decode\n", off);
}

/* Room job, before anything else the room sends or any member goes: the
 * held chat events to the recipients they were held for (see send_event). */
static void cl_flush_held(struct room *r) {
  struct cl_room *c = r->cl;
  if (!c || !c->held)
    return;
  /* its recipients are members still: none goes before this (leave_complete) */
  assert(c->held_n > 0 && c->held_n <= r->n);
  cp_sendbuf *b = c->held;
  c->held = NULL;
  c->last_flush_ms = now_ms();
  room_send_chats(c->held_to, c->held_n, b, true);
}

/* Room job: the chat event at off to the n sessions c->to, batched as the
 * room's chats are without a cluster (room_chat): appended to the held buffer
 * if that has exactly these recipients (and room); else the held one goes
 * first, and this one starts a new held buffer and the room's flush timer if
 * it comes within --room-flush-ms of the room's last chat send, or goes at
 * once. */
static void send_chat_event(struct room *r, uint64_t off, const uint8_t *ev, size_t len, size_t n) {
  struct cl_room *c = r->cl;
  Chatw__SChat m;
  if (!chat_message(r, ev, len, &m)) {
    bad_event(off);
    return;
  }
  size_t sz = CP_PACKET_HEADER + protobuf_c_message_get_packed_size(&m.base);
  if (c->held && c->held_n == n && !memcmp(c->held_to, c->to, n * sizeof *c->to) &&
      chat_append(c->held, &m.base, sz))
    return;
  cl_flush_held(r);
  uint64_t now = now_ms();
  unsigned w = limits.flush_ms;
  bool hold = w && now - c->last_flush_ms < w;
  if (hold && c->held_cap < n) {
    cp_session **t = realloc(c->held_to, n * sizeof *t);
    if (t) {
      c->held_to = t;
      c->held_cap = n;
    }
    hold = t != NULL; /* out of memory: at once */
  }
  cp_sendbuf *b = cp_sendbuf_alloc(hold && sz < CHAT_BATCH ? CHAT_BATCH : sz);
  if (!b)
    return; /* out of memory: see room_send */
  cp_sendbuf_set_len(b, wire_put_packet(cp_sendbuf_data(b), CHATW__PACKET_ID__S_CHAT, &m.base));
  int rc;
  if (hold && ((rc = cp_timer_start(&r->flush, r->q, w, 0, job_flush, r)) == 0 || rc == CP_EBUSY)) {
    memcpy(c->held_to, c->to, n * sizeof *c->to); /* CP_EBUSY: pending from an earlier one */
    c->held_n = n;
    c->held = b;
    return;
  }
  c->last_flush_ms = now;
  room_send_chats(c->to, n, b, false);
}

/* Room job: event off to the members that get it (only: one member, or
 * SIZE_MAX). A chat to all is batched (send_chat_event); anything else sends
 * the held chats first. */
static void send_event(struct room *r, uint64_t off, const char *ev, size_t len, size_t only) {
  struct cl_room *c = r->cl;
  bool chat = only == SIZE_MAX && len >= EV_HEAD && ev[0] == CL_OP_CHAT;
  if (!chat)
    cl_flush_held(r);
  if (c->to_cap < r->n) {
    cp_session **t = realloc(c->to, r->n * sizeof *t);
    if (!t)
      return; /* out of memory: see room_send */
    c->to = t;
    c->to_cap = r->n;
  }
  /* a leave is not told to the member it names (its answer is S_LEAVE_ROOM), nor a join (a
   * member re-joined after a lost state gets the events from before its join: not its own) */
  uint64_t skip = len >= EV_HEAD && (ev[0] == CL_OP_LEAVE || ev[0] == CL_OP_JOIN)
                      ? get64((const uint8_t *)ev + 1)
                      : 0;
  size_t n = 0;
  for (size_t k = 0; k < r->n; k++)
    if ((only == SIZE_MAX || only == k) && member_gets(&r->members[k], off) &&
        r->members[k].id != skip)
      c->to[n++] = r->sessions[k];
  if (!n)
    return;
  if (chat) {
    send_chat_event(r, off, (const uint8_t *)ev, len, n);
    return;
  }
  cp_sendbuf *b = event_packet(r, (const uint8_t *)ev, len);
  if (!b) {
    bad_event(off);
    return;
  }
  cp_session_send_many(c->to, n, b);
  cp_sendbuf_unref(b);
}

/* cl_deliver_fn: one event of the room, in offset order, once. */
static void deliver(void *arg, uint64_t off, const char *ev, size_t len) {
  struct room *r = arg;
  struct cl_room *c = r->cl;
  struct cl_hist *h = &c->hist[off % CL_HIST];
  char *copy = realloc(h->ev, len ? len : 1);
  if (copy) {
    memcpy(copy, ev, len);
    *h = (struct cl_hist){.off = off, .len = len, .ev = copy};
  }
  atomic_fetch_add(&node_stats.deliveries, 1);
  if (len >= EV_HEAD && ev[0] == CL_OP_LEAVE) { /* a local member's own leave, before its reply */
    uint64_t id = get64((const uint8_t *)ev + 1);
    for (size_t k = 0; k < r->n; k++) {
      struct member *x = &r->members[k];
      if (x->id != id || x->left || x->joined == UINT64_MAX)
        continue;
      if (atomic_load(&x->p->leaving)) {
        x->left = off; /* nothing after its leave reaches it */
      } else {         /* not its leave: this node was taken for dead and swept */
        fprintf(stderr,
                "cport-server: cluster: player %" PRIu64 " was removed from a room by "
                "another node (this node's heartbeat lapsed): it joins again\n",
                id);
        rejoin(r, k, off); /* it had every event before its removal */
      }
    }
  }
  if (len >= EV_HEAD) {
    uint64_t pub = get64((const uint8_t *)ev + 9), now = now_us(CLOCK_REALTIME);
    node_note_lag(now > pub ? now - pub : 0);
  }
  send_event(r, off, ev, len, SIZE_MAX);
}

/* Room job: member i has seen the events (joined, last]: those not seen yet
 * go to it from the history. */
static void replay(struct room *r, size_t i) {
  struct cl_room *c = r->cl;
  uint64_t from = r->members[i].joined + 1;
  for (uint64_t off = from; off <= c->f.last; off++) {
    struct cl_hist *h = &c->hist[off % CL_HIST];
    if (h->off != off || !h->ev) {
      atomic_fetch_add(&node_stats.gap_lost, 1);
      fprintf(stderr,
              "cport-server: cluster: a member joined at offset %" PRIu64 " but event %" PRIu64
              " is no longer in the room's history: not replayed\n",
              r->members[i].joined, off);
      continue;
    }
    send_event(r, off, h->ev, h->len, i);
  }
}

static void complete_leaves(struct room *r);

/* Whether the history holds every event from..to. */
static bool hist_covers(const struct cl_room *c, uint64_t from, uint64_t to) {
  if (to >= from && to - from >= CL_HIST)
    return false;
  for (uint64_t off = from; off <= to; off++)
    if (c->hist[off % CL_HIST].off != off || !c->hist[off % CL_HIST].ev)
      return false;
  return true;
}

struct catch_ctx {
  struct room *r; /* a reference */
  uint64_t player, from;
  unsigned gen; /* the room's epochs when asked */
  redisReply *reply;
};

/* Room job: the stream's events after a member's join, read because the
 * history no longer held them all: to that member alone, in order, then the
 * history's for the rest; it is active from there. */
static void job_caught_up(void *arg) {
  struct catch_ctx *x = arg;
  struct room *r = x->r;
  cl_flush_held(r);
  struct cl_room *c = r->cl;
  const redisReply *e = x->reply;
  for (size_t i = 0; c && i < r->n; i++) {
    struct member *m = &r->members[i];
    if (m->id != x->player || m->joined != UINT64_MAX || m->left || x->gen != c->epochs)
      continue; /* (after an epoch change its re-join's catch-up is another) */
    m->joined = x->from - 1;
    for (size_t k = 0; e && e->type == REDIS_REPLY_ARRAY && k < e->elements; k++) {
      uint64_t off;
      const char *ev;
      size_t len;
      if (!cl_stream_entry_decode(e->element[k], &off, &ev, &len) || off <= m->joined ||
          off > c->f.last)
        continue;
      if (off > m->joined + 1) { /* older than the capped stream */
        atomic_fetch_add(&node_stats.gap_lost, off - m->joined - 1);
        fprintf(stderr,
                "cport-server: cluster: events %" PRIu64 "..%" PRIu64
                " a member needed are no longer in the room's stream\n",
                m->joined + 1, off - 1);
      }
      send_event(r, off, ev, len, i);
      m->joined = off;
    }
    if (!hist_covers(c, m->joined + 1, c->f.last)) { /* the stream said no more: skip */
      atomic_fetch_add(&node_stats.gap_lost, 1);
      m->joined = c->f.last;
    }
    replay(r, i); /* what came since the read */
    m->joined = c->f.last;
  }
  if (x->reply)
    freeReplyObject(x->reply);
  free(x);
  complete_leaves(r);
  job_unref(r);
}

static void catch_reply(void *arg, redisReply *reply, const char *err) {
  struct catch_ctx *x = arg;
  if (!reply)
    fprintf(stderr, "cport-server: cluster: reading a room's stream for a new member: %s\n", err);
  x->reply = reply;
  if (cp_jobq_post(x->r->q, job_caught_up, x) != 0) {
    if (reply)
      freeReplyObject(reply);
    job_unref(x->r);
    free(x);
  }
}

/* Room job: member i joined at off: the events after off that the follower
 * already delivered go to it - from the history, or, if the history no
 * longer holds them all, from the stream (it is inactive until then). */
static void catch_up(struct room *r, size_t i, uint64_t off) {
  struct cl_room *c = r->cl;
  struct member *m = &r->members[i];
  m->joined = off;
  if (c->f.last <= off)
    return;
  if (hist_covers(c, off + 1, c->f.last)) {
    replay(r, i);
    return;
  }
  struct catch_ctx *x = calloc(1, sizeof *x);
  if (!x) {
    replay(r, i); /* what the history has (the rest counted lost) */
    return;
  }
  *x = (struct catch_ctx){.r = r, .player = m->id, .from = off + 1, .gen = c->epochs};
  m->joined = UINT64_MAX;
  pthread_mutex_lock(&rooms_mu);
  r->jobrefs++;
  pthread_mutex_unlock(&rooms_mu);
  if (node_xrange(r->name.b, r->name.len, off + 1, CL_FOLLOW_END, catch_reply, x) != 0) {
    job_unref(r);
    free(x);
    m->joined = off;
    replay(r, i);
  }
}

static void cl_join(struct player *p, struct room *r);

/* Room job: member i's leave is complete: S_LEAVE_ROOM, then its chain. */
static void leave_complete(struct room *r, size_t i) {
  cl_flush_held(r); /* its session may be among the recipients, and goes */
  struct member x = r->members[i];
  struct player *p = x.p;
  memmove(r->sessions + i, r->sessions + i + 1, (r->n - i - 1) * sizeof *r->sessions);
  memmove(r->members + i, r->members + i + 1, (r->n - i - 1) * sizeof *r->members);
  r->n--;
  if (!r->n) /* nothing held (just sent): nothing of the room pending when it goes */
    (void)cp_timer_cancel(&r->flush); /* CP_ENOENT: it was not pending */
  p->room = NULL;
  atomic_store(&p->leaving, false);
  /* The membership's reference first (the job's own keeps r): once a client
   * has S_LEAVE_ROOM of a room it emptied, it no longer counts (--max-rooms). */
  room_unref(r);
  if (x.close) {
    cp_session_disconnect(p->s, true); /* every earlier answer is queued */
  } else if (!x.final) {
    Chatw__SLeaveRoom m = CHATW__SLEAVE_ROOM__INIT;
    m.room = bin(&r->name);
    wire_send(p->s, CHATW__PACKET_ID__S_LEAVE_ROOM, &m.base);
  }
  if (x.final)
    player_free(p);
  else if (x.next)
    cl_join(p, x.next);
  else
    chain_resume(p);
}

static void complete_leaves(struct room *r) {
  for (size_t i = 0; i < r->n;) {
    const struct member *x = &r->members[i];
    if (x->answered && x->left &&
        (x->left == LEFT_NOW || !r->cl->started || x->left <= r->cl->f.last))
      leave_complete(r, i);
    else
      i++;
  }
}

static void follow_result(struct room *r, cl_follow_result res, uint64_t from, uint64_t to);

struct range_ctx {   /* a Redis reply on its way to a room job */
  struct room *r;    /* a reference */
  uint64_t from, to; /* XRANGE's */
  unsigned gen;      /* the room's epochs when asked: a reply from before an epoch change is moot */
  redisReply *reply;
};

/* Redis's reply to the room's job fn (which frees x and puts the reference). */
static void post_reply(struct range_ctx *x, redisReply *reply, cp_job_fn fn) {
  x->reply = reply;
  if (cp_jobq_post(x->r->q, fn, x) != 0) { /* stopping: the room goes with the service */
    if (reply)
      freeReplyObject(reply);
    job_unref(x->r);
    free(x);
  }
}

static void job_range(void *arg) {
  struct range_ctx *x = arg;
  struct room *r = x->r;
  cl_flush_held(r);
  struct cl_room *c = r->cl;
  uint64_t lost = c->f.st.gap_lost, nf = 0, nt = 0;
  cl_follow_result res = CL_FOLLOW_OK;
  if (x->gen == c->epochs) /* else the follower was started again since: not its read */
    res = cl_follow_range(&c->f, x->reply, x->from, x->to, deliver, r, &nf, &nt);
  if (c->f.st.gap_lost > lost) {
    atomic_fetch_add(&node_stats.gap_lost, c->f.st.gap_lost - lost);
    fprintf(stderr,
            "cport-server: cluster: %" PRIu64 " events of a room are older than its stream "
            "(read from offset %" PRIu64 "): lost to this node\n",
            c->f.st.gap_lost - lost, x->from);
  }
  if (x->reply)
    freeReplyObject(x->reply);
  free(x);
  follow_result(r, res, nf, nt);
  job_unref(r);
}

static void range_reply(void *arg, redisReply *reply, const char *err) {
  struct range_ctx *x = arg;
  if (!reply) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    fprintf(stderr, "cport-server: cluster: reading a room's stream: %s\n", err);
  }
  post_reply(x, reply, job_range);
}

static void room_new_epoch(struct room *r, const char *epoch, size_t elen);

/* Room job: act on what the follower asked for; complete the leaves it allows. */
static void follow_result(struct room *r, cl_follow_result res, uint64_t from, uint64_t to) {
  if (res == CL_FOLLOW_READ) {
    struct range_ctx *x = malloc(sizeof *x);
    if (x) {
      *x = (struct range_ctx){.r = r, .from = from, .to = to, .gen = r->cl->epochs};
      pthread_mutex_lock(&rooms_mu);
      r->jobrefs++;
      pthread_mutex_unlock(&rooms_mu);
      if (node_xrange(r->name.b, r->name.len, from, to, range_reply, x) != 0) {
        free(x);
        job_unref(r);
        uint64_t a, b;
        cl_follow_range(&r->cl->f, NULL, 0, 0, NULL, NULL, &a, &b); /* read again later */
      }
    }
  }
  complete_leaves(r);
}

/* Room job: one channel message to the follower. */
static void follow_message(struct room *r, uint64_t off, const char *epoch, size_t elen,
                           const char *ev, size_t len) {
  struct cl_room *c = r->cl;
  uint64_t from = 0, to = 0;
  if (!c->f.epoch_len) /* the state was gone: the first event of the new epoch names it */
    cl_follow_start(&c->f, epoch, elen, 0, 0);
  if (elen < c->f.epoch_len || (elen == c->f.epoch_len && memcmp(epoch, c->f.epoch, elen) < 0))
    return; /* an older epoch's message, late (epochs are Redis's clock): dropped */
  cl_follow_result res =
      cl_follow_message(&c->f, off, epoch, elen, ev, len, deliver, r, &from, &to);
  if (res == CL_FOLLOW_NEW_EPOCH) {
    room_new_epoch(r, epoch, elen);
    res = cl_follow_message(&c->f, off, epoch, elen, ev, len, deliver, r, &from, &to);
  }
  follow_result(r, res, from, to);
}

static void job_message(void *arg) {
  struct cl_msg *m = arg;
  struct room *r = (struct room *)m->next;
  m->next = NULL;
  struct cl_room *c = cl_of(r);
  if (!c) {
    free(m);
  } else if (!c->started) {
    if (c->npre < CL_PRE_MAX) { /* past that: read from the stream once started */
      if (c->pre_tail)
        c->pre_tail->next = m;
      else
        c->pre = m;
      c->pre_tail = m;
      c->npre++;
    } else {
      free(m);
    }
  } else {
    follow_message(r, m->off, m->epoch, m->elen, m->ev, m->len);
    free(m);
  }
  job_unref(r);
}

/* Subscriber strand: a message of a room's channel, in arrival order. */
static void on_cluster_message(const uint8_t *room, size_t room_len, const char *msg, size_t len) {
  uint64_t off;
  const char *epoch, *ev;
  size_t elen, evlen;
  if (room_len < 1 || room_len > CHAT_ROOM_MAX ||
      !cl_message_decode(msg, len, &off, &epoch, &elen, &ev, &evlen) || elen > 31) {
    atomic_fetch_add(&node_stats.bad_messages, 1);
    fprintf(stderr,
            "cport-server: cluster: a room channel message of %zu bytes does not decode: "
            "ignored (a gap the next message shows is read from the stream)\n",
            len);
    return;
  }
  struct room *r = room_find(room, room_len, false);
  if (!r)
    return; /* not followed (any more) */
  struct cl_msg *m = malloc(sizeof *m + evlen);
  if (!m) {
    job_unref(r); /* nothing posted */
    return;       /* a gap: read from the stream when the next message comes */
  }
  m->next = (struct cl_msg *)r; /* the room, until the job runs */
  m->off = off;
  m->elen = elen;
  memcpy(m->epoch, epoch, elen);
  m->len = evlen;
  memcpy(m->ev, ev, evlen);
  if (cp_jobq_post(r->q, job_message, m) != 0) {
    free(m);
    job_unref(r);
  }
}

/* ---- joins ---- */

struct join_ctx {
  struct player *p;
  struct room *r; /* the entry's reference */
  bool rejoin;    /* a member re-joined after an epoch change (no answer) */
  unsigned gen;   /* rejoin: the room's epochs when asked (a later change re-joins again) */
  bool again;     /* C_ENTER_ROOM of the room it is in: the list again */
  uint64_t player;
  int64_t off;
  uint32_t count;
  char epoch[32];
  size_t elen;
  size_t n;
  struct member list[]; /* as of the join's offset, oldest first */
};

static void job_joined(void *arg) {
  struct join_ctx *j = arg;
  struct room *r = j->r;
  cl_flush_held(r);
  struct player *p = j->p;
  struct cl_room *c = cl_of(r);
  if (j->rejoin) { /* after an epoch change: active again from its new join */
    if (c && !c->f.epoch_len)
      cl_follow_start(&c->f, j->epoch, j->elen, 0, 0);
    for (size_t i = 0; c && j->gen == c->epochs && i < r->n; i++)
      if (r->members[i].id == j->player && r->members[i].joined == UINT64_MAX) {
        /* (offset -1: a member there already, joined again twice: the same) */
        catch_up(r, i, r->members[i].resume);
      }
    free(j);
    job_unref(r);
    return;
  }
  if (j->again) { /* the list again (a member here; in Redis too, unless swept: joined now) */
    for (size_t i = 0; c && i < r->n; i++) {
      if (r->sessions[i] != p->s)
        continue;
      if (j->off >= 0)
        r->members[i].joined = (uint64_t)j->off;
      size_t skip = SIZE_MAX;
      for (size_t k = 0; k < j->n; k++)
        if (j->list[k].id == p->id)
          skip = k;
      send_enter(p->s, &r->name, j->count, &r->members[i], j->list, j->n, skip);
    }
    free(j);
    room_unref(r); /* the entry's: the membership keeps its own */
    chain_resume(p);
    return;
  }
  bool grown = room_grow(r);
  if (!c || !grown) {
    /* Out of memory: in Redis it is a member; leave there again. */
    free(j);
    enter_failed(p, r);
    chain_resume(p);
    return;
  }
  if (!c->started || c->f.epoch_len != j->elen || memcmp(c->f.epoch, j->epoch, j->elen)) {
    if (c->started && c->f.epoch_len)
      room_new_epoch(r, j->epoch, j->elen);
    else if (c->started)
      cl_follow_start(&c->f, j->epoch, j->elen, 0, 0); /* the new epoch, named */
    else
      cl_follow_start(&c->f, j->epoch, j->elen, (uint64_t)j->off, 0);
    c->started = true;
    struct cl_msg *m = c->pre;
    c->pre = c->pre_tail = NULL;
    c->npre = 0;
    while (m) { /* what came before: those up to the join are duplicates */
      struct cl_msg *next = m->next;
      follow_message(r, m->off, m->epoch, m->elen, m->ev, m->len);
      free(m);
      m = next;
    }
  }
  size_t i = r->n++;
  r->sessions[i] = p->s;
  r->members[i] = (struct member){.id = p->id, .name = p->name, .joined = (uint64_t)j->off, .p = p};
  p->room = r; /* the entry's reference is the membership's now */
  size_t skip = SIZE_MAX;
  for (size_t k = 0; k < j->n; k++)
    if (j->list[k].id == p->id)
      skip = k;
  send_enter(p->s, &r->name, j->count, &r->members[i], j->list, j->n, skip);
  catch_up(r, i, (uint64_t)j->off);
  free(j);
  chain_resume(p);
}

static void join_reply(void *arg, const cl_publish_result *res, const char *err) {
  struct join_ctx *j = arg;
  if (!res || (res->offset < 0 && !j->rejoin && !j->again)) {
    if (!res) {
      atomic_fetch_add(&node_stats.redis_errors, 1);
      fprintf(stderr, "cport-server: cluster: a join failed: %s\n", err);
    }
    if (j->rejoin) { /* counted; it stays inactive until it enters again */
      job_unref(j->r);
      free(j);
      return;
    }
    struct player *p = j->p;
    room_unref(j->r); /* nothing of it was posted */
    free(j);
    if (res)
      send_error(p->s, CHATW__ERROR_CODE__ERR_UNAVAILABLE, "already in the room elsewhere");
    else
      unavailable(p, "joining");
    chain_resume(p);
    return;
  }
  size_t n = res->nmembers;
  struct join_ctx *k = realloc(j, sizeof *j + n * sizeof *j->list);
  if (!k) {
    n = 0;
    k = j;
  }
  k->off = res->offset;
  k->count = (uint32_t)res->member_count;
  k->elen = res->epoch_len < sizeof k->epoch ? res->epoch_len : sizeof k->epoch;
  memcpy(k->epoch, res->epoch, k->elen);
  k->n = 0;
  for (size_t i = 0; i < n; i++) {
    const cl_member *x = &res->members[i];
    if (x->len < 1 || x->len > CHAT_NAME_MAX)
      continue; /* not a name of ours */
    struct member *m = &k->list[k->n++];
    *m = (struct member){.id = x->player, .joined = x->joined};
    m->name.len = (uint8_t)x->len;
    memcpy(m->name.b, x->data, x->len);
  }
  if (cp_jobq_post(k->r->q, job_joined, k) != 0) {
    if (!k->rejoin)
      unavailable(k->p, "stopping");
    if (k->rejoin)
      job_unref(k->r);
    else
      room_unref(k->r);
    if (!k->rejoin)
      chain_resume(k->p);
    free(k);
  }
}

static int join_send(struct join_ctx *j, uint64_t id, const struct name *name) {
  uint8_t ev[EV_HEAD + CHAT_NAME_MAX];
  size_t n = ev_head(ev, CL_OP_JOIN, id);
  memcpy(ev + n, name->b, name->len);
  cl_event_req q = {.op = CL_OP_JOIN,
                    .player = id,
                    .room = j->r->name.b,
                    .room_len = j->r->name.len,
                    .event = ev,
                    .event_len = n + name->len,
                    .member = name->b,
                    .member_len = name->len,
                    .stream_max = CL_STREAM_MAX,
                    .list_max = CHAT_MEMBERS_LISTED + 1,
                    .idle_ttl_s = CL_IDLE_TTL_S};
  return node_room_event(&q, join_reply, j);
}

static void subscribed(void *arg, redisReply *reply, const char *err) {
  struct join_ctx *j = arg;
  if (reply)
    freeReplyObject(reply);
  if (!reply || join_send(j, j->p->id, &j->p->name) != 0) {
    if (!reply)
      fprintf(stderr, "cport-server: cluster: SUBSCRIBE failed: %s\n", err);
    struct player *p = j->p;
    room_unref(j->r);
    free(j);
    unavailable(p, "joining");
    chain_resume(p);
  }
}

/* Chain: enter r (a reference): subscribe, then the join script; the chain
 * resumes after S_ENTER_ROOM (or the error). */
static void cl_join(struct player *p, struct room *r) {
  struct join_ctx *j = calloc(1, sizeof *j);
  if (!j) {
    enter_failed(p, r);
    chain_resume(p);
    return;
  }
  j->p = p;
  j->r = r;
  if (node_subscribe(r->name.b, r->name.len, true, subscribed, j) != 0) {
    room_unref(r);
    free(j);
    unavailable(p, "joining");
    chain_resume(p);
  }
}

/* Room job: the room's history in Redis is gone (a new epoch): follow the new
 * one from its start; the local members are members no longer, so each joins
 * again (inactive until its new join's offset: clients see nothing of it). */
static void room_new_epoch(struct room *r, const char *epoch, size_t elen) {
  struct cl_room *c = r->cl;
  c->epochs++;
  atomic_fetch_add(&node_stats.epoch_changes, 1);
  fprintf(stderr,
          "cport-server: cluster: room epoch changed from %.*s to %.*s: its state in Redis was "
          "lost; events published in the old epoch and not delivered are lost; %zu members "
          "join again\n",
          (int)c->f.epoch_len, c->f.epoch, (int)elen, epoch, r->n);
  cl_follow_start(&c->f, epoch, elen, 0, 0);
  for (size_t i = 0; i < CL_HIST; i++)
    c->hist[i].off = 0;
  for (size_t i = 0; i < r->n; i++) {
    struct member *x = &r->members[i];
    if (x->left ||
        atomic_load(&x->p->leaving)) { /* its leave is done as far as Redis is concerned */
      x->left = LEFT_NOW;
      continue;
    }
    rejoin(r, i, 0); /* a member all along: it gets the new epoch's events from its start */
  }
}

/* Room job: member i is a member no longer in Redis (a lost state, or this
 * node was taken for dead and swept): it joins again. It had the events
 * before offset `resume` (of the epoch followed now); once its join is
 * done it gets those after it - the ones published before its join too (it
 * never left, for its client) - and is active again. */
static void rejoin(struct room *r, size_t i, uint64_t resume) {
  struct member *x = &r->members[i];
  x->joined = UINT64_MAX;
  x->resume = resume;
  struct join_ctx *j = calloc(1, sizeof *j);
  if (!j)
    return;
  j->r = r;
  j->rejoin = true;
  j->gen = r->cl->epochs;
  j->player = x->id;
  pthread_mutex_lock(&rooms_mu);
  r->jobrefs++;
  pthread_mutex_unlock(&rooms_mu);
  if (join_send(j, x->id, &x->name) != 0) {
    job_unref(r);
    free(j);
  }
}

/* ---- leaves ---- */

struct leave_ctx {
  struct player *p;
  struct room *r, *next;
  bool final, close;
  int64_t off;
};

static void job_left(void *arg) {
  struct leave_ctx *l = arg;
  struct room *r = l->r;
  cl_flush_held(r);
  pthread_mutex_lock(&rooms_mu);
  r->jobrefs++; /* the job's own: leave_complete puts the membership's */
  pthread_mutex_unlock(&rooms_mu);
  for (size_t i = 0; i < r->n; i++) {
    struct member *x = &r->members[i];
    if (x->p != l->p)
      continue;
    if (!x->left || l->off <= 0) /* (the event may have come first: deliver) */
      x->left = l->off > 0 ? (uint64_t)l->off : LEFT_NOW;
    x->answered = true;
    x->next = l->next;
    x->final = l->final;
    x->close = l->close;
    break;
  }
  free(l);
  complete_leaves(r);
  job_unref(r);
}

static void leave_reply(void *arg, const cl_publish_result *res, const char *err) {
  struct leave_ctx *l = arg;
  if (!res) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    fprintf(stderr, "cport-server: cluster: a leave failed: %s\n", err);
    if (!l->final) {
      struct player *p = l->p;
      atomic_store(&p->leaving, false);
      if (l->next)
        room_unref(l->next);
      free(l);
      unavailable(p, "leaving");
      chain_resume(p);
      return;
    }
    l->off = 0; /* the session is over: leave locally, and in Redis once it is back */
    node_leave_later(l->p->id, l->r->name.b, l->r->name.len);
  } else {
    l->off = res->offset; /* -1: not a member there any more (swept, or a new epoch) */
  }
  /* The room's membership reference keeps it alive until the job completes it. */
  if (cp_jobq_post(l->r->q, job_left, l) != 0)
    free(l); /* stopping: the service ends every session */
}

/* Chain: leave p->room over Redis; then enter next (a reference) or, final,
 * free the player. The chain resumes after S_LEAVE_ROOM (or the error). */
static int cl_leave(struct player *p, struct room *next, bool final, bool close) {
  struct leave_ctx *l = malloc(sizeof *l);
  if (!l) {
    if (next)
      room_unref(next);
    send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "out of memory");
    return DONE;
  }
  *l = (struct leave_ctx){.p = p, .r = p->room, .next = next, .final = final, .close = close};
  atomic_store(&p->leaving, true);
  uint8_t ev[EV_HEAD];
  cl_event_req q = {.op = CL_OP_LEAVE,
                    .player = p->id,
                    .room = p->room->name.b,
                    .room_len = p->room->name.len,
                    .event = ev,
                    .event_len = ev_head(ev, CL_OP_LEAVE, p->id),
                    .stream_max = CL_STREAM_MAX,
                    .idle_ttl_s = CL_IDLE_TTL_S};
  if (node_room_event(&q, leave_reply, l) != 0) {
    if (final) {
      l->off = 0; /* leave locally, and in Redis once it is back */
      node_leave_later(p->id, p->room->name.b, p->room->name.len);
      if (cp_jobq_post(l->r->q, job_left, l) != 0)
        free(l);
      return SUSPENDED;
    }
    free(l);
    atomic_store(&p->leaving, false);
    if (next)
      room_unref(next);
    unavailable(p, "leaving");
    return DONE;
  }
  return SUSPENDED;
}

/* ---- chats ---- */

static void chat_reply(void *arg, const cl_publish_result *res, const char *err) {
  (void)arg;
  if (!res) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    fprintf(stderr, "cport-server: cluster: a chat was not published: %s\n", err);
  } else if (res->offset < 0) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    fprintf(stderr, "cport-server: cluster: a chat was refused: its sender is no member of the "
                    "room in Redis (lost state)\n");
  }
}

static bool cl_chat(struct player *p, const ProtobufCBinaryData *text, uint64_t client_time) {
  uint8_t ev[EV_HEAD + 8 + CHAT_TEXT_MAX];
  size_t n = ev_head(ev, CL_OP_CHAT, p->id);
  put64(ev + n, client_time);
  if (text->len) /* an empty text may have no data */
    memcpy(ev + n + 8, text->data, text->len);
  cl_event_req q = {.op = CL_OP_CHAT,
                    .player = p->id,
                    .room = p->room->name.b,
                    .room_len = p->room->name.len,
                    .event = ev,
                    .event_len = n + 8 + text->len,
                    .stream_max = CL_STREAM_MAX,
                    .idle_ttl_s = CL_IDLE_TTL_S};
  return node_room_event(&q, chat_reply, NULL) == 0;
}

/* ---- ids, reconnects, drain ---- */

static struct player *id_waiters; /* under players_mu */

static void on_ids_ready(void) {
  for (;;) {
    pthread_mutex_lock(&players_mu);
    struct player *p = id_waiters;
    uint64_t id = 0;
    if (p && node_take_id(&id))
      id_waiters = p->id_wait;
    else
      p = NULL;
    pthread_mutex_unlock(&players_mu);
    if (!p)
      return;
    p->id = id;
    Chatw__SLogin r = CHATW__SLOGIN__INIT;
    r.player_id = p->id;
    wire_send(p->s, CHATW__PACKET_ID__S_LOGIN, &r.base);
    chain_resume(p);
  }
}

/* Room job: the room's epoch in Redis, read after a reconnect or a refused chat. */
static void job_epoch(void *arg) {
  struct range_ctx *x = arg;
  struct room *r = x->r;
  cl_flush_held(r);
  struct cl_room *c = r->cl;
  const redisReply *e = x->reply;
  if (c && c->started && e && x->gen == c->epochs &&
      (e->type == REDIS_REPLY_NIL || e->type == REDIS_REPLY_STRING)) {
    const char *ep = e->type == REDIS_REPLY_STRING ? e->str : "";
    size_t elen = e->type == REDIS_REPLY_STRING ? e->len : 0;
    if (elen < sizeof c->f.epoch && (elen != c->f.epoch_len || memcmp(ep, c->f.epoch, elen)))
      room_new_epoch(r, ep, elen); /* nil: gone; the members' joins make the new one */
  }
  if (x->reply)
    freeReplyObject(x->reply);
  free(x);
  complete_leaves(r);
  job_unref(r);
}

static void epoch_reply(void *arg, redisReply *reply, const char *err) {
  (void)err;
  post_reply(arg, reply, job_epoch);
}

/* Ask for the room's epoch (any thread; the caller holds a reference). */
static void check_epoch(struct room *r) {
  struct range_ctx *x = calloc(1, sizeof *x);
  if (!x)
    return;
  x->r = r;
  x->gen = r->cl->epochs;
  pthread_mutex_lock(&rooms_mu);
  r->jobrefs++;
  pthread_mutex_unlock(&rooms_mu);
  if (node_room_epoch(r->name.b, r->name.len, epoch_reply, x) != 0) {
    job_unref(r);
    free(x);
  }
}

static void job_resync(void *arg) {
  struct room *r = arg;
  cl_flush_held(r);
  struct cl_room *c = cl_of(r);
  if (c && c->started) {
    check_epoch(r); /* first: a lost state is seen before the stream is read */
    uint64_t from, to;
    cl_follow_result res = cl_follow_resync(&c->f, &from, &to);
    follow_result(r, res, from, to);
  }
  job_unref(r);
}

static void resubscribed(void *arg, redisReply *reply, const char *err) {
  (void)err;
  struct room *r = arg;
  if (reply)
    freeReplyObject(reply);
  if (cp_jobq_post(r->q, job_resync, r) != 0)
    job_unref(r);
}

/* Subscriber strand: the connection is back: every followed room is
 * subscribed again, then read from the stream from its last offset. */
static void on_sub_up(void) {
  pthread_mutex_lock(&rooms_mu);
  for (size_t i = 0; i < table_cap; i++)
    for (struct room *r = table[i]; r; r = r->next) {
      r->jobrefs++;
      if (node_subscribe(r->name.b, r->name.len, true, resubscribed, r) != 0)
        r->jobrefs--; /* not the last: the table's rooms are referenced */
    }
  pthread_mutex_unlock(&rooms_mu);
}

/* Chain: C_ENTER_ROOM in cluster mode (the request's checks done). */
static int cl_enter(struct player *p, const uint8_t *name, size_t len) {
  struct room *r;
  if (!node_available()) {
    unavailable(p, "entering");
  } else if (!(r = room_ref(name, len))) {
    send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "no more rooms");
  } else if (p->room == r) { /* already a member: S_ENTER_ROOM again, the list as of now */
    struct join_ctx *j = calloc(1, sizeof *j);
    if (j) {
      *j = (struct join_ctx){.p = p, .r = r, .again = true};
      if (join_send(j, p->id, &p->name) == 0)
        return SUSPENDED;
      free(j);
    }
    room_unref(r);
    unavailable(p, "entering");
  } else if (p->room) { /* a switch: leave first, then enter */
    return cl_leave(p, r, false, false);
  } else {
    cl_join(p, r);
    return SUSPENDED;
  }
  return DONE;
}

void chat_cluster_drain(unsigned ms) {
  pthread_mutex_lock(&players_mu);
  size_t n = 0;
  for (struct player *p = players; p; p = p->all_next)
    n++;
  cp_session **s = calloc(n ? n : 1, sizeof *s);
  n = 0;
  for (struct player *p = players; s && p; p = p->all_next)
    s[n++] = cp_session_get(p->s);
  pthread_mutex_unlock(&players_mu);
  for (size_t i = 0; i < n; i++) {
    cp_session_disconnect(s[i], false);
    cp_session_put(s[i]);
  }
  free(s);
  for (unsigned t = 0; chat_rooms() && t < ms; t += 10)
    usleep(10000);
}

void chat_cluster_stop(void) {
  node_stop_timers();
  node_forget(1000);
}

void chat_cluster_metrics(FILE *f) {
  if (clustered)
    node_metrics(f);
}

int chat_cluster_start(const char *url, const char *node, size_t len) {
  clustered = true;
  node_hooks h = {.message = on_cluster_message, .sub_up = on_sub_up, .ids_ready = on_ids_ready};
  return node_start(service, url, node, len, &h);
}

#else
void chat_cluster_drain(unsigned ms) {
  (void)ms;
}
void chat_cluster_metrics(FILE *f) {
  (void)f;
}
void chat_cluster_stop(void) {}
int chat_cluster_start(const char *url, const char *node, size_t len) {
  (void)url, (void)node, (void)len;
  fprintf(stderr, "cport-server: built without hiredis: no --cluster\n");
  return -1;
}
#endif

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
    p->name.len = (uint8_t)m->name.len;
    memcpy(p->name.b, m->name.data, m->name.len);
#ifdef CPORT_CLUSTER
    if (clustered && !node_take_id(&p->id) && !node_commands_available()) {
      chatw__clogin__free_unpacked(m, NULL);
      unavailable(p, "no player ids yet"); /* never reached Redis: no id block */
      p->name.len = 0;
      return DONE;
    }
    if (clustered && !p->id) { /* a block is on its way: on_ids_ready */
      chatw__clogin__free_unpacked(m, NULL);
      pthread_mutex_lock(&players_mu);
      p->id_wait = id_waiters;
      id_waiters = p;
      pthread_mutex_unlock(&players_mu);
      on_ids_ready(); /* it may have come meanwhile */
      return SUSPENDED;
    }
    if (!clustered)
#endif
      p->id = atomic_fetch_add(&next_player_id, 1);
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
#ifdef CPORT_CLUSTER
  } else if (clustered) {
    rc = cl_enter(p, m->room.data, m->room.len);
#endif
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
#ifdef CPORT_CLUSTER
  } else if (clustered) {
    if (!node_commands_available() || !cl_chat(p, &m->text, m->client_time_us))
      unavailable(p, "chatting");
#endif
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
#ifdef CPORT_CLUSTER
  } else if (clustered) {
    if (node_commands_available())
      return cl_leave(p, NULL, false, false);
    unavailable(p, "leaving");
#endif
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
  room_flush_held(j->r, false); /* its own chats among them: they go out first */
  /* the player is alive: its final leave job is behind this one in the queue */
  cp_session_disconnect(j->p->s, true);
  free(j);
}

/* Every request before the bad header was answered: close (gracefully, so
 * the answers go out first; the engine reports it as bad_packet). */
static int on_bad_header(struct player *p) {
  p->closed = true;
#ifdef CPORT_CLUSTER
  /* its chats come back through Redis: close once its leave's offset is reached */
  if (p->room && clustered && node_commands_available())
    return cl_leave(p, NULL, false, true);
#endif
  if (p->room && post(p->room, job_close, p, NULL, false))
    return DONE; /* after the room's jobs of the player's earlier chats */
  cp_session_disconnect(p->s, true);
  return DONE;
}

/* The session is over: leave the room (the job frees the player), or free
 * the player now. */
static int on_end(struct player *p) {
  p->closed = true;
#ifdef CPORT_CLUSTER
  if (p->room && clustered)
    return cl_leave(p, NULL, true, false);
#endif
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
  pthread_mutex_lock(&players_mu);
  p->all_next = players;
  if (players)
    players->all_prev = p;
  players = p;
  pthread_mutex_unlock(&players_mu);
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
