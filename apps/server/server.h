/* server.h - the parts of cport-server. */
#ifndef CPORT_SERVER_H
#define CPORT_SERVER_H

#include <cport.h>

#include <stdbool.h>
#include <stdio.h>

/* Chat mode: the session callbacks, and the rooms behind them. */
void chat_init(cp_service *svc);
void chat_shutdown(void); /* after cp_service_stop: frees the rooms */
void chat_on_connected(cp_session *s);
void chat_on_packet(cp_session *s, const cp_packet *pkt);
void chat_on_disconnected(cp_session *s, cp_reason why);
size_t chat_rooms(void);

/* Metrics: a tiny HTTP server on the engine (raw mode) answering GET
 * /metrics in the Prometheus text format. */
typedef void (*metrics_fill_fn)(FILE *out);
int metrics_start(const char *host, uint16_t port, cp_backend backend, metrics_fill_fn fill,
                  cp_service **out);

#endif
