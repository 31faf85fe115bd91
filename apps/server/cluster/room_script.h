/*
 * room_script.h - the room-ordering script and the player-id script, run
 * with EVALSHA over a cl_redis connection (docs/cluster.md).
 *
 * One EVALSHA per room event (join, leave, chat) atomically: creates the
 * room's epoch if its state is gone, takes the room's next offset, updates
 * the membership (a zset scored by join offset: oldest-first lists) and the
 * node's index of its members, appends the event to the room's capped stream
 * (XADD MAXLEN ~, id "<offset>-0") and PUBLISHes "<offset>:<epoch>:<event>"
 * on the room's channel. A join returns the member list as of its offset.
 *
 * NOSCRIPT (the script cache was flushed under a live connection) is handled
 * by re-sending the same call as EVAL with the script's body (counted: see
 * cl_script_noscript_retries).
 */
#ifndef CPORT_CLUSTER_ROOM_SCRIPT_H
#define CPORT_CLUSTER_ROOM_SCRIPT_H

#include "redis_conn.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* The scripts' SHA1s once loaded. Shared by a node's connections. */
typedef struct cl_scripts {
  pthread_mutex_t lock;
  char room_sha[41], ids_sha[41]; /* "" until loaded */
} cl_scripts;

void cl_scripts_init(cl_scripts *s);
/* SCRIPT LOAD both scripts on c; done(arg, NULL) once both SHAs are known,
 * or done(arg, err) with Redis's error (or the connection's). 0 or the
 * command's error. Call it first on every new command connection: EVALSHA
 * calls made before it completes fall back to EVAL. */
int cl_scripts_load(cl_redis *c, cl_scripts *s, void (*done)(void *arg, const char *err),
                    void *arg);

enum cl_event_op { CL_OP_JOIN = 'j', CL_OP_LEAVE = 'l', CL_OP_CHAT = 'c' };

/* One room event. Every byte string is length-delimited. */
typedef struct cl_event_req {
  enum cl_event_op op;
  uint64_t player;
  const void *room;
  size_t room_len;   /* <= CL_ROOM_MAX */
  const void *event; /* the node's encoding of the event (stored and published as is) */
  size_t event_len;
  const void *member; /* join: the member's data (name...), returned in member lists */
  size_t member_len;
  const void *node; /* the node's name: its index of members (kill -9 cleanup) */
  size_t node_len;
  unsigned stream_max; /* XADD MAXLEN ~ this (>= 1) */
  unsigned list_max;   /* join: at most this many members listed, oldest first */
  unsigned idle_ttl_s; /* a room left empty expires after this; 0: never */
} cl_event_req;

typedef struct cl_member {
  uint64_t player;
  uint64_t joined; /* the offset of its join */
  const char *data;
  size_t len;
} cl_member;

typedef struct cl_publish_result {
  int64_t offset; /* the event's offset; -1: nothing published (a join of a member - its
                     member list as of now comes with it -, a leave or chat of a
                     non-member - e.g. after the room's state was lost) */
  const char *epoch;
  size_t epoch_len;
  uint64_t member_count; /* join: members now, the new one included */
  size_t nmembers;       /* join: listed in members[], oldest first */
  const cl_member *members;
} cl_publish_result;

/* res (and what it points to) is valid only during the call; res is NULL
 * and err set on an error (Redis's, the connection's, or a malformed reply). */
typedef void (*cl_publish_fn)(void *arg, const cl_publish_result *res, const char *err);

/* Run the room script for req. 0, -EINVAL (bad req), -ENOMEM, or the
 * command's error (then fn is not called). Any thread. */
int cl_room_event(cl_redis *c, cl_scripts *s, const cl_event_req *req, cl_publish_fn fn, void *arg);

/* Reserve `block` player ids: fn(arg, first, NULL) with ids first ..
 * first + block - 1 reserved for the caller alone. The counter never goes
 * below Redis's clock in microseconds, so ids stay unique across a Redis
 * restart that lost the counter (docs/cluster.md: while Redis's clock does
 * not go back and the cluster takes fewer than 10^6 ids a second on
 * average). fn(arg, 0, err) on an error. */
int cl_ids_reserve(cl_redis *c, cl_scripts *s, unsigned block,
                   void (*fn)(void *arg, uint64_t first, const char *err), void *arg);

/* A channel message "<offset>:<epoch>:<event>": true with the parts (pointing
 * into msg), false if it does not decode (offset: 1-19 decimal digits without
 * a leading zero, not 0; epoch: 1-31 digits). */
bool cl_message_decode(const char *msg, size_t len, uint64_t *offset, const char **epoch,
                       size_t *epoch_len, const char **event, size_t *event_len);

/* An entry of an XRANGE reply of a room stream: true with its offset and
 * event bytes (pointing into the reply); false for a bad id or shape. */
bool cl_stream_entry_decode(const redisReply *entry, uint64_t *offset, const char **event,
                            size_t *event_len);

/* EVALSHA calls re-sent as EVAL after NOSCRIPT, since the start. */
uint64_t cl_script_noscript_retries(void);

/* The scripts' text (for docs and tests). */
extern const char cl_room_script_text[];
extern const char cl_ids_script_text[];

#endif
