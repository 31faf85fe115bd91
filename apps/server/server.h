/* server.h - the parts of cport-server. */
#ifndef CPORT_SERVER_H
#define CPORT_SERVER_H

#include "../common/printf_attr.h"

#include <cport.h>

#include <stdbool.h>
#include <stdio.h>

/* Chat mode: the session callbacks, and the rooms behind them. */
#define CHAT_DEFAULT_MAX_ROOMS 65536
/* --room-flush-ms: how long a busy room holds its chats to send them together */
#define CHAT_DEFAULT_FLUSH_MS 20
struct chat_limits {
  size_t max_rooms;    /* live rooms at most (0: CHAT_DEFAULT_MAX_ROOMS) */
  size_t max_packet;   /* the service's max_packet: no packet sent is larger (0: 16384) */
  unsigned enter_rate; /* C_ENTER_ROOM per second and session (0: unlimited) */
  unsigned chat_rate;  /* C_CHAT per second and session (0: unlimited) */
  unsigned flush_ms;   /* a busy room's chats go out at most every flush_ms (0: at once) */
};
void chat_init(cp_service *svc, const struct chat_limits *limits); /* before the service starts */
void chat_shutdown(void); /* after cp_service_stop: frees what is left */
void chat_on_connected(cp_session *s);
void chat_on_packet(cp_session *s, const cp_packet *pkt);
void chat_on_disconnected(cp_session *s, cp_reason why);
/* A bad header: the player's earlier requests are answered, then it closes. */
bool chat_on_bad_packet(cp_session *s);
size_t chat_rooms(void); /* live rooms; any thread */
/* Chat buffers sent to rooms since start, of those the ones held by
 * --room-flush-ms (each carries the chats that came together), and the
 * buffers that filled before going out; any thread. */
void chat_buffer_stats(uint64_t *buffers, uint64_t *held, uint64_t *full);
/* --cluster (docs/cluster.md): rooms on the Redis at url ("redis://HOST:PORT"),
 * this node named node (len bytes). After cp_service_start. 0, or an error
 * (said why). */
int chat_cluster_start(const char *url, const char *node, size_t len);
/* SIGTERM in cluster mode: every player leaves (over Redis: the others get
 * S_MEMBER_LEFT) and is disconnected; waits up to ms for the rooms to go. */
void chat_cluster_drain(unsigned ms);
/* After the drain: the heartbeat stops and the node leaves Redis. */
void chat_cluster_stop(void);
/* The cluster's lines of /metrics (nothing without --cluster). */
void chat_cluster_metrics(FILE *f);

/* The log of sessions that ended badly (stderr, at most 20 lines a second;
 * the rest are counted). Any thread. */
void srv_log_session(cp_session *s, const char *peer, const char *fmt, ...) APPS_PRINTF(3, 4);
/* Log a disconnect whose reason is not an ordinary end (bad packet, slow
 * consumer, idle timeout, error). peer: the address noted at connect time,
 * or NULL to ask the socket (which no longer knows once the peer is gone). */
void srv_log_disconnect(cp_session *s, const char *peer, cp_reason why);
/* The library's log callback (cp_log_set): its messages to the same log. */
void srv_log_library(cp_log_level level, const char *msg, void *user);
/* on_disconnected for the echo modes: the log only. */
void srv_on_disconnected(cp_session *s, cp_reason why);

/* Metrics: a tiny HTTP server on the engine (raw mode) answering GET
 * /metrics in the Prometheus text format. */
typedef void (*metrics_fill_fn)(FILE *out);
int metrics_start(const char *host, uint16_t port, cp_backend backend, metrics_fill_fn fill,
                  cp_service **out);

#endif
