/*
 * chat/chat.h - what the files of chat mode share (private to apps/server/chat/).
 * Chat mode is protocol 2 (docs/protocol.md): login, rooms that come and go,
 * chat broadcast to the room, presence, ping, rate limits; with --cluster
 * (docs/cluster.md) the rooms are shared through Redis (apps/server/cluster/).
 *
 * The files: rooms.c (the rooms and members on one node), chats.c (a room's
 * chats, batched and held), chain.c (a player's request chain, the session
 * callbacks), requests.c (the requests), cluster_delivery.c and
 * cluster_requests.c (cluster mode: rooms followed through Redis).
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
#ifndef CPORT_SERVER_CHAT_H
#define CPORT_SERVER_CHAT_H

#include "../server.h"

#include "../../common/wire.h"
#ifdef CPORT_CLUSTER
#include "../cluster/node.h"
#include "../cluster/room_follow.h"
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

static inline ProtobufCBinaryData bin(const struct name *n) {
  return (ProtobufCBinaryData){.len = n->len, .data = (uint8_t *)n->b};
}

static inline bool name_eq(const struct name *a, const uint8_t *b, size_t len) {
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
  /* --room-flush-ms: chats held back after a flush (chats.c), by the chain
   * (room_chat) or, with --cluster, by the room's jobs (send_chat_event,
   * cluster_delivery.c). Under chat_mu (with --cluster only the room's jobs
   * touch it); held != NULL implies the flush timer is pending; one flush
   * sends them (chat__room_flush_held). */
  cp_sendbuf *held;
  /* held's recipients as when it started (cluster: the members that get its
   * events), held_n of them; held_n 0: the members when it is flushed (one
   * node: a membership change flushes first). Touched by the room's jobs. */
  cp_session **held_to;
  size_t held_n, held_cap;
  uint64_t last_flush_ms; /* when the room's chats last went out */
  cp_timer flush;         /* sends held on the room's queue (job_flush) */
  /* The capacity of the room's next chat buffer (chats.c, "sized to the
   * room"), CHAT_BATCH at first. held_timed: held started
   * the flush timer (else it started while the timer was pending from an
   * earlier buffer, one that went out early). As held. */
  uint32_t batch;
  bool held_timed;
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

enum { DONE, SUSPENDED };

struct room_job {
  struct player *p;
  struct room *r;    /* the room the job runs on (a reference for enter) */
  struct room *next; /* leave: then enter this room (a reference), or NULL */
  bool final;        /* leave: the session is over; free the player after */
};

/* a room's chat buffers, sized to the room between these: see chats.c */
#define CHAT_BATCH 4096       /* >= CHAT_LARGEST_SERVER_PACKET */
#define CHAT_BATCH_MAX 65536u /* a power of two times CHAT_BATCH */

/* rooms.c */
/* The live room of this name with a reference taken: create, a member's or
 * entry's (made if there is none and --max-rooms allows), else a job's (a
 * channel message, cluster). NULL: none, no more rooms, or memory. Any thread. */
struct room *chat__room_find(const uint8_t *name, size_t len, bool create);
/* chat__room_find(create): an entry's reference. */
struct room *chat__room_ref(const uint8_t *name, size_t len);
/* Put a member's or entry's reference (see rooms.c's room_put). */
void chat__room_unref(struct room *r);
/* cluster mode: a job's reference of r (a job, or a Redis reply on its way to
 * the room's queue), taken by a holder of a reference; put by the job. */
void chat__job_ref(struct room *r);
void chat__job_unref(struct room *r);
/* cluster mode: fn(r) for each live room, a job's reference of it taken,
 * under the table's lock; fn returns whether it kept the reference. */
void chat__rooms_each(bool (*fn)(struct room *r));
/* S_ERROR with our own text (a C string) to s. Any thread. */
void chat__send_error(cp_session *s, Chatw__ErrorCode code, const char *text);
/* clk now, in microseconds. */
uint64_t chat__now_us(clockid_t clk);
/* Room job: S_ENTER_ROOM of room to s: me first, then others but
 * others[skip], oldest first, as many as fit in max_packet. */
void chat__send_enter(cp_session *s, const struct name *room, uint32_t count,
                      const struct member *me, const struct member *others, size_t n, size_t skip);
/* Room job: room for one more member; false if out of memory. */
bool chat__room_grow(struct room *r);
/* Chain: post the room job fn (a struct room_job); false if out of memory. */
bool chat__post(struct room *r, void (*fn)(void *), struct player *p, struct room *next,
                bool final);
/* An entry that could not be made: its reference put, S_ERROR to p. */
void chat__enter_failed(struct player *p, struct room *r);
/* Room jobs without --cluster (struct room_job): enter; leave, then enter
 * next or, final, free the player. Each resumes the chain. */
void chat__job_enter(void *arg);
void chat__job_leave(void *arg);
/* what chat_init was given (read only after it) */
extern cp_service *chat__service;
extern struct chat_limits chat__limits;

/* chats.c */
/* CLOCK_MONOTONIC now, in milliseconds. */
uint64_t chat__now_ms(void);
/* Room job: the chat buffer b (a reference, put) to the n sessions to,
 * counted for /metrics (held: it was held by --room-flush-ms). */
void chat__room_send_chats(cp_session **to, size_t n, cp_sendbuf *b, bool held);
/* Room job, before anything else the room does: the held chats go out, to
 * the recipients they were held for (one flush for both modes); empty (no
 * members left): the flush timer is cancelled too. */
void chat__room_flush_held(struct room *r, bool empty);
/* Room job (the flush timer's): chat__room_flush_held(arg, false). */
void chat__job_flush(void *arg);
/* Append the S_CHAT m (n bytes, header included) to b if it fits. */
bool chat__chat_append(cp_sendbuf *b, const ProtobufCMessage *m, size_t n);
/* A chat buffer of r filled before it went out: its next ones are larger.
 * Under chat_mu, or (--cluster) the room's jobs, as r->held (chats.c,
 * "sized to the room"). */
void chat__batch_filled(struct room *r);
/* Chain: the S_CHAT m to room r, batched (chats.c); false: out of memory. */
bool chat__room_chat(struct room *r, const ProtobufCMessage *m);

/* chain.c */
/* Free p (its backlog, its session reference; out of the list of players).
 * The runner of its last request. */
void chat__player_free(struct player *p);
/* Run p's backlog until it is empty or a request suspends the chain; the
 * caller runs the chain. */
void chat__chain_resume(struct player *p);
/* every player (the drain, the id waiters), under chat__players_mu */
extern pthread_mutex_t chat__players_mu;
extern struct player *chat__players;

/* requests.c */
/* Chain: one request, or ITEM_DISCONNECT / ITEM_BAD_HEADER: DONE, or
 * SUSPENDED (a room job or a reply resumes the chain). */
int chat__handle(struct player *p, uint32_t id, const uint8_t *body, size_t len);

/* ---- cluster mode (--cluster) ---- */
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
};

/* Event bytes: op (1), player id (8), publish time us (8), then a join: the
 * name; a chat: the client's time (8) and the text; a leave: nothing. */
#define EV_HEAD 17

extern bool chat__clustered; /* --cluster: rooms on Redis */

/* cluster_delivery.c */
/* The room's follower state, freed with the room. */
void chat__cl_room_free(struct room *r);
/* Under the table's lock: the room's channel unsubscribed (it left the table). */
void chat__cl_room_unsubscribe(struct room *r);
/* Room job: the room's follower state, made at first use; NULL: out of memory. */
struct cl_room *chat__cl_of(struct room *r);
/* Room job: member i joined at off: the events after off that the follower
 * already delivered go to it (from the history, or read from the stream). */
void chat__catch_up(struct room *r, size_t i, uint64_t off);
/* Room job: every leave the follower has passed completes. */
void chat__complete_leaves(struct room *r);
/* Room job: one channel message to the room's follower. */
void chat__follow_message(struct room *r, uint64_t off, const char *epoch, size_t elen,
                          const char *ev, size_t len);
/* Subscriber strand (node hook): a message of a room's channel. */
void chat__on_cluster_message(const uint8_t *room, size_t room_len, const char *msg, size_t len);
/* Room job: the room's state in Redis was lost (a new epoch): follow it
 * from its start; the local members join again. */
void chat__room_new_epoch(struct room *r, const char *epoch, size_t elen);
/* Subscriber strand (node hook): every room subscribed again, then read. */
void chat__on_sub_up(void);

/* cluster_requests.c */
/* S_ERROR ERR_UNAVAILABLE to p (what: the request), counted. */
void chat__unavailable(struct player *p, const char *what);
/* Chain: enter r (a reference) over Redis; the chain resumes after
 * S_ENTER_ROOM or the error. */
void chat__cl_join(struct player *p, struct room *r);
/* Room job: member i is no member in Redis any more: it joins again, and is
 * active again from its new join (it had the events before resume). */
void chat__rejoin(struct room *r, size_t i, uint64_t resume);
/* Chain: leave p->room over Redis, then enter next (a reference) or, final,
 * free the player; close: close the session instead of S_LEAVE_ROOM. */
int chat__cl_leave(struct player *p, struct room *next, bool final, bool close);
/* Chain: publish p's chat to its room; false if it was not sent. */
bool chat__cl_chat(struct player *p, const ProtobufCBinaryData *text, uint64_t client_time);
/* A block of player ids came (node hook; any thread): the players waiting
 * for one (chat__id_waiters, under chat__players_mu) log in. */
void chat__on_ids_ready(void);
/* Chain: C_ENTER_ROOM with --cluster (the request's checks done). */
int chat__cl_enter(struct player *p, const uint8_t *name, size_t len);
extern struct player *chat__id_waiters;

#endif

#endif
