/*
 * room_follow.h - how a node follows one room's events: in offset order,
 * each exactly once, gaps filled from the room's stream, a changed epoch
 * reported (docs/cluster.md, "Offsets, gaps and epochs").
 *
 * Pure logic, no I/O: the caller feeds channel messages (cl_follow_message)
 * and XRANGE replies (cl_follow_range), and reads the stream when told to.
 * Not thread-safe: one room is followed on one serial executor (a job queue).
 */
#ifndef CPORT_CLUSTER_ROOM_FOLLOW_H
#define CPORT_CLUSTER_ROOM_FOLLOW_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deliver one event (offset order, once). The bytes live only during the call. */
typedef void (*cl_deliver_fn)(void *arg, uint64_t offset, const char *event, size_t len);

/* "+" as the end of a range: read to the end of the stream. */
#define CL_FOLLOW_END UINT64_MAX

typedef struct cl_follow_stats {
  uint64_t delivered;
  uint64_t duplicates;    /* offsets at or below the last delivered: dropped */
  uint64_t gaps;          /* ranges read from the stream */
  uint64_t gap_lost;      /* events gone: older than the capped stream */
  uint64_t epoch_changes; /* the room's state was lost in Redis */
  uint64_t bad_entries;   /* stream entries that do not decode */
  uint64_t held_dropped;  /* messages not held (the hold was full): read again later */
} cl_follow_stats;

typedef struct cl_follow {
  char epoch[32];
  size_t epoch_len;
  uint64_t last;        /* the last offset delivered (or the join's) */
  bool reading;         /* a range read is outstanding */
  struct cl_held *held; /* messages past a gap, by offset */
  size_t nheld, held_max;
  cl_follow_stats st;
} cl_follow;

typedef enum cl_follow_result {
  CL_FOLLOW_OK = 0,        /* nothing to do */
  CL_FOLLOW_READ = 1,      /* read the stream's offsets *from .. *to (XRANGE), then
                              cl_follow_range */
  CL_FOLLOW_NEW_EPOCH = 2, /* the room's epoch changed: its state in Redis is gone.
                              Counted; the caller re-joins its members and
                              cl_follow_start()s again */
  CL_FOLLOW_ERROR = -1     /* a malformed reply or out of memory: counted; read again */
} cl_follow_result;

/* Start following at `last` (a join's offset: events after it are new) in
 * epoch. held_max: messages held past a gap (0: 4096). */
void cl_follow_start(cl_follow *f, const char *epoch, size_t epoch_len, uint64_t last,
                     size_t held_max);
void cl_follow_free(cl_follow *f);

/* A message from the room's channel (decoded with cl_message_decode). */
cl_follow_result cl_follow_message(cl_follow *f, uint64_t offset, const char *epoch,
                                   size_t epoch_len, const char *event, size_t len,
                                   cl_deliver_fn deliver, void *arg, uint64_t *from, uint64_t *to);

/* The subscription was (re)established: whatever was published meanwhile is
 * read from the stream. Returns CL_FOLLOW_READ with [last + 1, END]. */
cl_follow_result cl_follow_resync(cl_follow *f, uint64_t *from, uint64_t *to);

/* The reply of XRANGE <stream> <from>-0 <to>-0 (or +) for a READ. Delivers
 * what follows the last offset, detects (and counts) events older than the
 * stream, then delivers held messages; may ask for another READ. */
cl_follow_result cl_follow_range(cl_follow *f, const redisReply *r, uint64_t from, uint64_t to,
                                 cl_deliver_fn deliver, void *arg, uint64_t *nfrom, uint64_t *nto);

#endif
