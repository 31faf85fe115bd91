/*
 * dummy.h - the parts of cport-dummy (main.c: flags, the run, the report; clients.c: the
 * servers and the clients' connections, pacing and churn; echo.c, chat.c: the modes and
 * their checks; stats.c: what the receiving threads measure; order.c: the one-order check
 * of a room's chats; chat_text.h: the numbers in a chat text; pid_index.h: a member's
 * presence table indexed by player id). The program's behaviour is described at the top of
 * main.c.
 */
#ifndef CPORT_APPS_DUMMY_H
#define CPORT_APPS_DUMMY_H

#include "../common/hist.h"
#include "../common/os.h"
#include "../common/printf_attr.h"
#include "order.h"

#include <cport.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mode { MODE_ECHO, MODE_PACKET_ECHO, MODE_CHAT };
#define SERVERS_MAX 64
extern const char *const mode_names[3];

struct config {
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
  /* --want-group: the members that share the cache lines of their entries in the want table
   * (1, 2, 4, 8 or 16). A room's flush brings the same few senders' chats to every member in
   * turn, so a line shared by more members could take fewer misses per delivery; but a member
   * that lags receives many senders' chats at once, on a line each when 16 share, and the
   * two receiving threads write lines they share. 1 (a row per member) measured best here
   * (docs/performance.md, chat, round 6); the others stay to be measured on a quiet machine. */
  unsigned want_group;
};
extern struct config cfg; /* parse fills it */

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
  /* Per member j of my room (strand only): the sequence number of its chat expected next on
   * this connection, 0 if none came on it yet - at want[j * G] (want_of). The one
   * piece of state a delivery touches per sender, in one table per room (setup_clients; the
   * room's first client owns it) tiled by G = --want-group members: a cache line holds 16
   * entries, G consecutive members x 16 / G consecutive senders. */
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
   * not listed in S_ENTER_ROOM). The same allocation goes on with an index of mpid by
   * player id (presence_index), so that an S_MEMBER_LEFT finds its member at once. */
  uint64_t *mpid;
  unsigned mcount, mknown;
  _Atomic unsigned mcount_seen; /* mcount, for the main thread's final check */
  unsigned script;  /* --pipeline: answers of the first write received so far (strand) */
  uint8_t room_len; /* chat: the name of my room, "room-<idx / room size>" (set up once) */
  char room[23];
};

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

/* The main loop's tick. */
enum { TICK_MS = 5 };

extern struct client *clients;

extern struct server servers[SERVERS_MAX];
extern unsigned n_servers;
extern struct hist rtt; /* C_PING -> S_PONG */
extern _Atomic uint64_t n_connected, n_entered, n_errors, n_sent;
extern _Atomic uint64_t n_joined, n_left, n_pings, n_pongs, n_scripts;
extern _Atomic bool sending, measuring, churning;

/* Churn: the servers' pend rings. */
extern pthread_mutex_t pend_mu;
extern _Atomic uint64_t n_churn_out, n_reconnects, n_reconnect_failures, n_churn_skipped;

static inline uint64_t now_ns(void) {
  return os_now_ns();
}

/* Chat: where c keeps the sequence number it expects next of member j (struct client.want). */
static inline uint32_t *want_of(const struct client *c, unsigned j) {
  return &c->want[(size_t)j * cfg.want_group];
}

/* Chat: the first client of c's room, and how many the room has. */
static inline unsigned room_base(const struct client *c) {
  return c->idx / cfg.room_size * cfg.room_size;
}
static inline unsigned room_members(unsigned base) {
  return cfg.clients - base < cfg.room_size ? cfg.clients - base : cfg.room_size;
}

/* Chat, presence: the index of c->mpid by player id (pid_index.h), just after the 2 x
 * room-size player ids in mpid's allocation - 2^presence_bits entries (setup_clients: more
 * than the 2 x --room-size slots of mpid). */
extern unsigned presence_bits;
static inline size_t presence_bytes(void) {
  return 2 * (size_t)cfg.room_size * sizeof(uint64_t) +
         ((size_t)1 << presence_bits) * sizeof(uint32_t);
}
static inline uint32_t *presence_index(const struct client *c) {
  return (uint32_t *)(c->mpid + 2 * (size_t)cfg.room_size);
}

/* stats.c: what the receiving threads measure (a shard per thread), and the error count */
void count_delivery(uint64_t latency_us);
void count_bytes(uint64_t n);
void recv_totals(uint64_t *msgs, uint64_t *bytes, struct hist *h);
/* An error: counted (the run then fails), the first 20 printed. Any thread. */
void dummy_error(const char *fmt, ...) APPS_PRINTF(1, 2);

/* echo.c: the echo and packet-echo modes */
void echo_send(struct client *c);
void echo_bytes(struct client *c, const uint8_t *d, size_t n);
void on_raw(cp_session *s, const void *data, size_t len);

/* chat.c: the chat mode - sending, and every check on what arrives */
void chat_send(struct client *c);
void pipeline_send(cp_session *s, struct client *c);
void on_packet(cp_session *s, const cp_packet *pkt);

/* clients.c: the servers, the clients' connections, pacing and churn */
void leave_now(struct client *c);
void pace(uint64_t start, uint64_t now);
void churn_one(void);
void pump_reconnects(void);
uint64_t connect_failures(void);
uint64_t outstanding(uint64_t *away);
unsigned server_index(unsigned i);
int setup_servers(void);
int setup_clients(void);
int start_services(void);
void stop_services(void);

#endif
