/*
 * node.h - a cport-server node's two Redis connections (docs/cluster.md):
 * the command connection (room scripts, XRANGE, heartbeats, player ids) and
 * the subscriber connection (the rooms' channels). Both are outbound sessions
 * on the game service (cp_service_connect_to), reconnected with back-off
 * (100 ms doubling to 5 s). A 1 s timer on the node's job queue sends the
 * heartbeat and sweeps dead nodes (their members leave every room).
 *
 * One node per process (file-level state). Every function is any-thread
 * unless it says otherwise. Callbacks run on the connections' strands.
 */
#ifndef CPORT_CLUSTER_NODE_H
#define CPORT_CLUSTER_NODE_H

#include "room_script.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Every room event: the stream keeps at least this many (XADD MAXLEN ~), and
 * a room left empty expires after this many seconds. */
#define NODE_STREAM_MAX 10000u
#define NODE_IDLE_TTL_S 3600u

/* What chat mode is told by the node. */
typedef struct node_hooks {
  /* A message on a room's channel (subscriber strand, in arrival order). */
  void (*message)(const uint8_t *room, size_t room_len, const char *msg, size_t len);
  /* Both connections are up again after one was lost: re-subscribe the
   * rooms, read what was missed, check the rooms' epochs. */
  void (*sub_up)(void);
  /* Player ids are available again (after node_take_id said none). */
  void (*ids_ready)(void);
} node_hooks;

/* url: "redis://[[USER]:PASSWORD@]HOST:PORT" or
 * "redis-sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME"
 * (cli_redis_url_parse; the password, if the URL has none, from
 * $CPORT_CLUSTER_PASSWORD; a sentinel's own from $CPORT_SENTINEL_PASSWORD).
 * HOST (each sentinel's) is resolved here, once (getaddrinfo: this call may
 * wait on DNS; the connections never do). With Sentinel every (re)connect of
 * either connection asks the sentinels for the master first, and refuses a
 * server whose ROLE is not master. name/len: the node's name. Opens both connections
 * (the outcome is logged; each begins with AUTH). 0, or CP_EINVAL for a bad
 * url or a HOST that does not resolve (said why on stderr, the password as
 * ***). After cp_service_start; from the main thread. */
int node_start(cp_service *svc, const char *url, const char *name, size_t len,
               const node_hooks *hooks);
/* Both connections are up (scripts loaded, subscriber connected). */
bool node_available(void);
/* The command connection is up (enough to chat and leave: the subscriber
 * reads what it missed from the streams once it is back). */
bool node_commands_available(void);
/* Wait up to ms for node_available(). */
bool node_wait_available(unsigned ms);
/* The node's name (for cl_event_req.node). */
const char *node_name(size_t *len);

/* Run the room script (req->node is filled in). 0 or an error (fn not called). */
int node_room_event(cl_event_req *req, cl_publish_fn fn, void *arg);
/* (UN)SUBSCRIBE the room's channel. fn may be NULL. */
int node_subscribe(const void *room, size_t len, bool subscribe, cl_reply_fn fn, void *arg);
/* XRANGE of the room's stream, offsets from..to (CL_FOLLOW_END: to the end). */
int node_xrange(const void *room, size_t len, uint64_t from, uint64_t to, cl_reply_fn fn,
                void *arg);
/* HGET the room's epoch (a string, or nil: the room's state is gone). */
int node_room_epoch(const void *room, size_t len, cl_reply_fn fn, void *arg);
/* A leave that could not reach Redis (the player's session ended while the
 * command connection was down, or the leave's reply was lost with it): it is
 * re-sent, as this node, once the command connection is up again, so the
 * other nodes see the member leave (S_MEMBER_LEFT). Leaves are idempotent:
 * one that did run, or a member removed meanwhile (a sweep, a lost state),
 * publishes nothing. False if out of memory (logged). */
bool node_leave_later(uint64_t player, const void *room, size_t len);
/* A player id from the node's block; false if none right now (hooks->ids_ready
 * follows once a block arrives). */
bool node_take_id(uint64_t *id);

/* SIGTERM: the heartbeat stops, nothing reconnects any more; once the members left, node_forget
 * removes the node (waits up to ms for Redis's answer). From the main thread. */
void node_stop_timers(void);
void node_forget(unsigned ms);
/* After cp_service_stop: frees everything. */
void node_shutdown(void);

/* Counters for /metrics. */
typedef struct node_counters {
  _Atomic uint64_t publishes;               /* room events this node published */
  _Atomic uint64_t deliveries;              /* room events delivered from the cluster */
  _Atomic uint64_t gap_reads;               /* ranges read from a stream (gaps, resyncs) */
  _Atomic uint64_t gap_lost;                /* events older than the capped stream */
  _Atomic uint64_t epoch_changes;           /* a room's state was lost in Redis */
  _Atomic uint64_t bad_messages;            /* channel messages or entries that do not decode */
  _Atomic uint64_t reconnects;              /* Redis connections re-established */
  _Atomic uint64_t unavailable;             /* requests answered ERR_UNAVAILABLE */
  _Atomic uint64_t redis_errors;            /* error replies and failed commands */
  _Atomic uint64_t swept_nodes;             /* dead nodes this node cleaned */
  _Atomic uint64_t swept_members;           /* their members it removed */
  _Atomic uint64_t spared_nodes;            /* late nodes not claimed: still connected */
  _Atomic uint64_t heartbeats_slow;         /* own heartbeats over HEARTBEAT_SLOW_MS */
  _Atomic uint64_t leaves_resent;           /* leaves re-sent after an outage (node_leave_later) */
  _Atomic uint64_t leaves_resent_published; /* of those, the ones that removed a member */
  _Atomic uint64_t auth_failures;           /* handshakes refused (AUTH, or NOAUTH) */
  _Atomic uint64_t sentinel_lookups;        /* masters' addresses a sentinel gave */
  _Atomic uint64_t sentinel_failures; /* sentinels that did not answer one (down, unknown name) */
  _Atomic uint64_t master_changes;    /* a sentinel named another master than the last one */
  _Atomic uint64_t not_master;        /* connections refused: ROLE was not master */
  _Atomic uint64_t readonly;      /* READONLY replies (a demoted master): Sentinel asked again */
  _Atomic uint64_t lag_count;     /* publish-to-delivery lag: deliveries measured */
  _Atomic uint64_t lag_sum_us;    /* and their sum */
  _Atomic uint64_t lag_bucket[8]; /* <= 1, 2, 5, 10, 50, 100, 500 ms, +Inf */
} node_counters;
extern node_counters node_stats;
/* One delivery's publish-to-delivery lag (microseconds). */
void node_note_lag(uint64_t lag_us);
/* The cluster's lines of /metrics. */
void node_metrics(FILE *f);

#endif
