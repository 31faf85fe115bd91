/*
 * presence.h - node heartbeats and the cleanup of dead nodes' members
 * (docs/cluster.md, "Presence with node heartbeats").
 *
 *   cport:nodes             zset  node name -> deadline (ms, Redis's clock)
 *   cport:node:<hex name>   set   the node's members "<player id>:<hex room>"
 *                                 (kept by the room script)
 *
 * A live node calls cl_node_heartbeat every second with a ttl of 3 s. Any
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

#include <stdbool.h>
#include <stdint.h>

/* Index key of a node ("cport:node:<hex>") into out (11 + 2 * len bytes); its length. */
size_t cl_node_key(char *out, const void *node, size_t len);

/* ZADD cport:nodes <Redis now + ttl_ms> node. fn(arg, NULL) or fn(arg, err). */
int cl_node_heartbeat(cl_redis *c, const void *node, size_t len, unsigned ttl_ms,
                      void (*fn)(void *arg, const char *err), void *arg);

/* Claim up to max dead nodes for lease_ms. fn(arg, r, err): r is the reply, an
 * array of node names (possibly empty), owned by fn (freeReplyObject). */
int cl_nodes_claim_dead(cl_redis *c, unsigned max, unsigned lease_ms, cl_reply_fn fn, void *arg);

/* A node is cleaned (or stopped with SIGTERM after its own leaves): ZREM it
 * and DEL its index. fn may be NULL. */
int cl_node_forget(cl_redis *c, const void *node, size_t len, cl_reply_fn fn, void *arg);

/* An index entry "<player>:<hex room>": true with the player and the room
 * (out: CL_ROOM_MAX bytes). */
bool cl_node_entry_decode(const char *e, size_t len, uint64_t *player, void *room,
                          size_t *room_len);

#endif
