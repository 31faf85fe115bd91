/* A client service that reconnects: the server drops each session after its
 * first packet; the client's on_disconnected calls cp_service_connect, ten
 * times over. Then cp_service_connect is refused once the service stops,
 * and on a server service. */
#include "common/nettest.h"

#define RECONNECTS 10

static cp_service *cli;
static atomic_int connected, disconnected, connect_rc_bad;

static void srv_on_packet(cp_session *s, const cp_packet *pkt) {
  (void)pkt;
  cp_session_disconnect(s, false);
}

static void cli_on_connected(cp_session *s) {
  atomic_fetch_add(&connected, 1);
  cp_sendbuf *b = cp_packet_alloc(1, 8);
  memset(cp_sendbuf_data(b) + 4, 7, 8);
  CHECK_EQ(cp_session_send(s, b), 0);
  cp_sendbuf_unref(b);
}

static void cli_on_disconnected(cp_session *s, cp_reason why) {
  (void)s;
  CHECK(why == CP_REASON_PEER_CLOSED || why == CP_REASON_RESET);
  if (atomic_fetch_add(&disconnected, 1) + 1 < RECONNECTS + 1 &&
      cp_service_connect(cli) != 0) /* reconnect from the callback */
    atomic_fetch_add(&connect_rc_bad, 1);
}

int main(void) {
  test_begin("test_net_reconnect", 60);
  struct sockaddr_in addr;
  cp_service *srv =
      nt_server((cp_service_options){.threads = 2, .callbacks.on_packet = srv_on_packet}, &addr);
  CHECK_EQ(cp_service_connect(srv), CP_EINVAL); /* a server has nothing to connect to */
  cp_service_options co = {
      .kind = CP_SERVICE_CLIENT,
      .host = "127.0.0.1",
      .port = ntohs(addr.sin_port),
      .threads = 2,
      .client_sessions = 1,
      .callbacks = {.on_connected = cli_on_connected, .on_disconnected = cli_on_disconnected}};
  CHECK_EQ(cp_service_create(&cli, &co), 0);
  CHECK_EQ(cp_service_connect(cli), CP_EINVAL); /* not started */
  CHECK_EQ(cp_service_start(cli), 0);
  WAIT_UNTIL(atomic_load(&disconnected) == RECONNECTS + 1);
  CHECK_EQ(atomic_load(&connected), RECONNECTS + 1);
  CHECK_EQ(atomic_load(&connect_rc_bad), 0);
  cp_service_stats cs = nt_stats(cli);
  CHECK_EQ(cs.connects, RECONNECTS + 1);
  CHECK_EQ(cs.connect_failures, 0);
  WAIT_UNTIL(nt_stats(srv).disconnects[CP_REASON_LOCAL] == RECONNECTS + 1);
  CHECK_EQ(nt_stats(srv).accepts, RECONNECTS + 1);
  cp_service_stop(cli, 0);
  CHECK_EQ(cp_service_connect(cli), CP_ESHUTDOWN);
  fprintf(stderr, "  %d connections, each reconnected from on_disconnected\n", RECONNECTS + 1);
  cp_service_destroy(cli);
  cp_service_destroy(srv);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
