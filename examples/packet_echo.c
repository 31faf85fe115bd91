/* packet_echo - sends every framed packet back unchanged, header included. */
#define _GNU_SOURCE
#include "example_args.h"

/* The replies to the packets of one receive share one send buffer and one
 * send (cp_session_send_copy). */
static void on_packet(cp_session *s, const cp_packet *pkt) {
  if (cp_session_send_copy(s, pkt->data, pkt->size) == CP_ENOMEM)
    cp_session_disconnect(s, false);
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
                          .max_packet = 65535,
                          .callbacks = {.on_packet = on_packet}};
  cp_service *svc;
  int rc = cp_service_create(&svc, &o);
  if (!rc)
    rc = cp_service_start(svc);
  if (rc) {
    fprintf(stderr, "packet_echo: %s\n", cp_strerror(rc));
    return 1;
  }
  fprintf(stderr, "packet_echo: %s:%u, backend %s\n", a.host, cp_service_listen_port(svc),
          cp_backend_name(cp_port_backend(cp_service_port(svc))));
  example_wait_stop();
  cp_service_stop(svc, 1000);
  cp_service_stats st;
  cp_service_get_stats(svc, &st);
  fprintf(stderr, "packet_echo: %llu packets in, %llu out, %llu sessions served\n",
          (unsigned long long)st.packets_in, (unsigned long long)st.packets_out,
          (unsigned long long)st.accepts);
  cp_service_destroy(svc);
  return 0;
}
