/*
 * presence.h - node heartbeats and the cleanup of dead nodes' members
 * (docs/cluster.md, "Presence with node heartbeats").
 *
 *   cport:nodes             zset  node name -> deadline (ms, Redis's clock)
 *   cport:node:<hex name>   set   the node's members "<player id>:<hex room>"
 *                                 (kept by the room script)
 *
 * A live node calls cl_node_heartbeat every second with a ttl of 3 s, and
 * keeps its liveness channel subscribed on its subscriber connection. Any
 * node, every second, calls cl_nodes_claim_dead: it atomically takes nodes
 * whose deadline passed and gives each a lease (the deadline moves to now +
 * lease), so exactly one sweeper cleans a dead node, and another takes it over
 * if that sweeper dies before it is done. The sweeper reads the dead node's
 * set (SMEMBERS), runs the room script's leave for every entry (as the dead
 * node: cl_event_req.node = its name; leaves are idempotent), then
 * cl_node_forget. The scripts are small and run about once a second: they go
 * as EVAL with the body (no SHA to keep).
 */
#ifndef CPORT_CLUSTER_PRESENCE_H
#define CPORT_CLUSTER_PRESENCE_H

#include "redis_conn.h"
#include "room_keys.h"

#include <stdbool.h>
#include <stdint.h>

/* Index key of a node ("cport:node:<hex>") into out (11 + 2 * len bytes); its length. */
size_t cl_node_key(char *out, const void *node, size_t len);

/* ZADD cport:nodes <Redis now + ttl_ms> node. fn(arg, NULL) or fn(arg, err). */
int cl_node_heartbeat(cl_redis *c, const void *node, size_t len, unsigned ttl_ms,
                      void (*fn)(void *arg, const char *err), void *arg);

/* The liveness channel of a node, "cport:alive:<name>" (raw bytes), into out
 * (12 + len bytes); its length. A node's subscriber connection subscribes to
 * it: while that connection is open, Redis counts a subscriber. */
#define CL_ALIVE_CHANNEL_MAX (12 + CL_ROOM_MAX)
size_t cl_node_alive_channel(char *out, const void *node, size_t len);

/* Claim up to max dead nodes for lease_ms. A node past its deadline is dead
 * unless its liveness channel has a subscriber and it is less than grace_ms
 * past its deadline: then it is spared (alive, its heartbeat late - a
 * starved node - or a hung one with its connection open, swept after the
 * grace). fn(arg, r, err): r is the reply, owned by fn (freeReplyObject): an
 * array of two arrays, the claimed node names and the spared ones as pairs
 * (name, ms past its deadline); both possibly empty. */
int cl_nodes_claim_dead(cl_redis *c, unsigned max, unsigned lease_ms, unsigned grace_ms,
                        cl_reply_fn fn, void *arg);

/* A node is cleaned (or stopped with SIGTERM after its own leaves): ZREM it
 * and DEL its index. fn may be NULL. */
int cl_node_forget(cl_redis *c, const void *node, size_t len, cl_reply_fn fn, void *arg);

/* An index entry "<player>:<hex room>": true with the player and the room
 * (out: CL_ROOM_MAX bytes). */
bool cl_node_entry_decode(const char *e, size_t len, uint64_t *player, void *room,
                          size_t *room_len);

#endif
