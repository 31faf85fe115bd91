/* The interleaving behind test_net_graceful_linger's rare failure on io_uring
 * ("session #3: on_disconnected ran 0 times"), made deterministic: a test
 * waits for stats.disconnects to reach N and then checks that N callbacks
 * ran. The count used to be taken when the close began, so a callback could
 * still be on its way on another worker. Here on_disconnected blocks until
 * the test lets it go: while it is held, disconnects must still be 0 and
 * sessions still 1; once it returns, the gauge goes down, then the count
 * moves (a reader that saw the count sees the gauge without the session). */
#include "common/nettest.h"

static atomic_int entered, release, returned;

static void on_disc(cp_session *s, cp_reason why) {
  (void)s;
  CHECK_EQ(why, CP_REASON_PEER_CLOSED);
  atomic_store(&entered, 1);
  while (!atomic_load(&release))
    test_sleep_ms(1);
  atomic_store(&returned, 1);
}

int main(void) {
  test_begin("test_net_disconnect_count", 60);
  cp_service_options o = {.threads = 2, .callbacks.on_disconnected = on_disc};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  for (int r = 0; r < 3; r++) {
    atomic_store(&entered, 0);
    atomic_store(&release, 0);
    atomic_store(&returned, 0);
    int fd = test_connect(&addr);
    WAIT_UNTIL(nt_stats(svc).sessions == 1);
    close(fd);
    WAIT_UNTIL(atomic_load(&entered));
    test_sleep_ms(20); /* room for a wrong count to show */
    CHECK_EQ(nt_disconnects(svc), (uint64_t)r);
    CHECK_EQ(nt_stats(svc).sessions, 1); /* the gauge goes down after the callback */
    atomic_store(&release, 1);
    WAIT_UNTIL(nt_disconnects(svc) == (uint64_t)r + 1);
    CHECK_EQ(atomic_load(&returned), 1); /* seen through the count: the callback is done */
    /* and the gauge went down before the count moved (it used to go down
     * after it: this read 1 once under TSan on epoll) */
    CHECK_EQ(nt_stats(svc).sessions, 0);
    cp_service_stats st = nt_stats(svc); /* one snapshot: never in both */
    CHECK_EQ(st.sessions + st.disconnects[CP_REASON_PEER_CLOSED], (uint64_t)r + 1);
  }
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  cp_service_destroy(svc);
  fprintf(stderr, "PASS\n");
  return 0;
}
