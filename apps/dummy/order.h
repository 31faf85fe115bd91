/*
 * order.h - cport-dummy's check that every member of a room receives the room's chats in ONE
 * order (issue 14: also when the members are spread over several cluster nodes).
 *
 * Per member connection: a running, order-sensitive hash of the chats (sender, sequence) it
 * receives. The room's chat stream is cut into segments at marker chats - about one chat in
 * ORDER_MARK_EVERY, chosen by a hash of (sender, sequence), so every member agrees on which
 * chats are markers. When a marker comes, the member records the segment that it ends (its
 * hash and length) if it saw the whole segment: the previous marker came on the same
 * connection, or the connection entered the room before any chat was sent (the head of the
 * stream). At the end, a member still in its room with every chat delivered also records the
 * tail after its last marker (or its whole window, if no marker came). Members joining and
 * leaving at different times (churn) thus share the segments they each saw whole, and
 * order_verify() requires every member that recorded a segment to have recorded the same
 * hash and length for it. Per delivery: two multiplies and a compare; a record per
 * ORDER_MARK_EVERY deliveries.
 *
 * A struct order is written by its member's strand only; order_verify runs once every
 * strand is done.
 */
#ifndef CPORT_APPS_DUMMY_ORDER_H
#define CPORT_APPS_DUMMY_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ORDER_MARK_EVERY 64
#define ORDER_SEED 0xcbf29ce484222325ull

enum order_kind {
  ORDER_SEGMENT, /* from the marker before `key` (excluded) to `key` */
  ORDER_HEAD,    /* from the room's first chat to `key` */
  ORDER_TAIL,    /* after `key` to the room's last chat */
  ORDER_WHOLE    /* every chat of the room (no marker came; key 0) */
};

struct order_rec {
  uint64_t key;  /* the marker: sender << 32 | sequence */
  uint64_t hash; /* of the segment's chats, in the order received */
  uint32_t count;
  uint8_t kind; /* enum order_kind */
};

struct order {
  uint64_t hash;   /* of the segment in progress */
  uint32_t count;  /* its chats */
  bool complete;   /* a marker came on this connection: the segment started right after it */
  bool head;       /* no marker yet, and the connection entered before any chat was sent */
  uint64_t marker; /* the last marker, if complete */
  struct order_rec *recs;
  size_t n, cap;
  bool oom; /* a record could not be stored (the check is then incomplete: an error) */
};

/* The key of chat seq of sender (a client index). */
static inline uint64_t order_key(uint64_t sender, uint64_t seq) {
  return sender << 32 | seq;
}

/* Whether the chat of this key is a marker: one in ORDER_MARK_EVERY, spread evenly. */
static inline bool order_is_marker(uint64_t key) {
  uint64_t m = key * 0xD6E8FEB86659FD93ull;
  m = (m ^ m >> 32) * 0x9E3779B97F4A7C15ull;
  return m >> 58 == 0; /* the top 6 bits: 64 */
}

void order_mark(struct order *o, uint64_t key);

/* A chat received (the member's strand). */
static inline void order_add(struct order *o, uint64_t key) {
  uint64_t h = (o->hash ^ key) * 0x9E3779B97F4A7C15ull;
  o->hash = h ^ h >> 29;
  o->count++;
  if (order_is_marker(key))
    order_mark(o, key);
}

/* A new connection entered the room; sent: the room's chats sent before its enter (counted
 * under each sender's send lock once S_ENTER_ROOM came, so every later chat reaches the room
 * after the enter). Only 0 makes the connection the head of the stream - not "the run has not
 * started": a churn reconnect that enters after the run (while the dummy settles) missed the
 * head too. Drops the segment in progress (a member that left saw it only in part). */
void order_start(struct order *o, uint64_t sent);

/* The run is over and this member has every chat it was due: record the tail. */
void order_end(struct order *o);

void order_free(struct order *o);

struct order_result {
  uint64_t checkpoints; /* segments recorded by two members or more, compared */
  uint64_t records;     /* records in those */
  uint64_t chats;       /* chat deliveries those records cover */
  uint64_t mismatches;  /* segments members disagree on */
  uint64_t first_key;   /* the first of them: its marker, */
  int first_kind;       /* and kind */
  bool incomplete;      /* a member could not store a record */
};

/* Compare the records of one room's members (n of them). Any thread, once no strand runs. */
struct order_result order_verify(struct order *const *members, size_t n);

#endif
