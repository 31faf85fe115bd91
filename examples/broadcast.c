/* broadcast - a chat server in its simplest form: every framed packet a
 * client sends goes to every connected client, the sender included. The
 * packet is copied once into a shared send buffer, however many receive it. */
#define _GNU_SOURCE
#include "example_args.h"

static void on_packet(cp_session *s, const cp_packet *pkt) {
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  if (!b)
    return;
  cp_service_broadcast(cp_session_service(s), b);
  cp_sendbuf_unref(b);
}

static void on_connected(cp_session *s) {
  char peer[64];
  fprintf(stderr, "broadcast: #%llu joined from %s\n", (unsigned long long)cp_session_id(s),
          cp_session_peer(s, peer, sizeof peer));
}

static void on_disconnected(cp_session *s, cp_reason why) {
  fprintf(stderr, "broadcast: #%llu left (%s)\n", (unsigned long long)cp_session_id(s),
          cp_reason_name(why));
}

int main(int argc, char **argv) {
  struct example_args a;
  example_parse(argc, argv, &a);
  example_catch_stop();
  cp_service_options o = {.kind = CP_SERVICE_SERVER,
                          .host = a.host,
                          .port = a.port,
                          .threads = a.threads,
                          .port_opts = {.backend = a.backend},
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_disconnected = on_disconnected}};
  cp_service *svc;
  int rc = cp_service_create(&svc, &o);
  if (!rc)
    rc = cp_service_start(svc);
  if (rc) {
    fprintf(stderr, "broadcast: %s\n", cp_strerror(rc));
    return 1;
  }
  fprintf(stderr, "broadcast: %s:%u, backend %s\n", a.host, cp_service_listen_port(svc),
          cp_backend_name(cp_port_backend(cp_service_port(svc))));
  example_wait_stop();
  cp_service_destroy(svc); /* stops: drains, disconnects everyone, joins */
  return 0;
}
