/* win_emfile.c - tests/net/test_net_emfile's intent on Windows (net.test_net_emfile.iocp):
 * accept recovers from running out of sockets.
 *
 * Linux lowers RLIMIT_NOFILE so that only a few sessions fit; Windows has no descriptor limit a
 * test could lower, so the IOCP backend's test hook (cp__iocp_accept_fault, win32_internal.h)
 * stands for it: while 5 sessions are open, creating the socket an accept needs fails with
 * WSAEMFILE, as WSASocketW would with no sockets left. 40 clients each send one distinct byte
 * and close once it came back. Proves: every client served (accepts 40, each byte echoed, 40
 * PEER_CLOSED, nothing else); accept errors happened and are exactly the hook's failures (each
 * came back as the accept's completion, CP_EMFILE, and the acceptor went on after its back-off,
 * none was lost); no busy loop: the failures stay under what the back-off allows (16 acceptors,
 * one retry each per 50 ms back-off: a bound that a slower machine only makes looser). */
#include "common/nettest.h"
#include "port/win32_internal.h"

#define CLIENTS 40
#define ROOM 5         /* sessions open at once before accepts fail */
#define ACCEPTS 16     /* accepts kept posted */
#define BACKOFF_MS 50u /* src/net/listener.c's back-off after EMFILE */

static atomic_int live;     /* sessions open */
static atomic_int failures; /* the hook's WSAEMFILE answers */

static int fault(void) {
  if (atomic_load(&live) < ROOM)
    return 0;
  atomic_fetch_add(&failures, 1);
  return WSAEMFILE;
}

static void on_connected(cp_session *s) {
  (void)s;
  atomic_fetch_add(&live, 1);
}
static void on_disconnected(cp_session *s, cp_reason why) {
  (void)s;
  (void)why;
  atomic_fetch_sub(&live, 1);
}
static void raw_echo(cp_session *s, const void *data, size_t len) {
  int rc = cp_session_send_copy(s, data, len);
  CHECK(rc == 0 || rc == CP_ENOTCONN); /* CP_ENOTCONN: the client is gone already */
}

int main(void) {
  test_begin("test_net_emfile (Windows: accept's socket creation fails while 5 sessions are open)",
             120);
  cp__iocp_accept_fault = fault;
  struct sockaddr_in addr;
  cp_service *svc =
      nt_server((cp_service_options){.threads = 2,
                                     .accepts = ACCEPTS,
                                     .raw = true,
                                     .callbacks = {.on_raw = raw_echo,
                                                   .on_connected = on_connected,
                                                   .on_disconnected = on_disconnected}},
                &addr);
  uint64_t t0 = test_now_ms();
  struct pollfd pfd[CLIENTS];
  bool done[CLIENTS] = {0};
  for (int i = 0; i < CLIENTS; i++) {
    pfd[i].fd = test_connect(&addr); /* the kernel's backlog completes the handshake */
    pfd[i].events = POLLIN;
    uint8_t b = (uint8_t)('A' + i);
    test_send_all(pfd[i].fd, &b, 1);
  }
  for (int left = CLIENTS; left;) {
    int r = poll(pfd, CLIENTS, 1000);
    CHECK(r >= 0);
    for (int i = 0; r > 0 && i < CLIENTS; i++) {
      if (done[i] || !pfd[i].revents)
        continue;
      uint8_t b;
      CHECK_EQ(recv(pfd[i].fd, &b, 1, 0), 1);
      CHECK_EQ(b, (uint8_t)('A' + i));
      close(pfd[i].fd);
      pfd[i].fd = -1; /* poll ignores it now */
      done[i] = true;
      left--;
    }
  }
  cp_service_stats st;
  WAIT_UNTIL((st = nt_stats(svc)).disconnects[CP_REASON_PEER_CLOSED] == CLIENTS && !st.sessions);
  uint64_t elapsed = test_now_ms() - t0;
  int failed = atomic_load(&failures);
  WAIT_UNTIL((st = nt_stats(svc)).accept_errors ==
             (uint64_t)failed); /* the last one's completion */
  fprintf(stderr, "  accepts %llu, accept_errors %llu (hook failures %d) in %llu ms\n",
          (unsigned long long)st.accepts, (unsigned long long)st.accept_errors, failed,
          (unsigned long long)elapsed);
  CHECK_EQ(st.accepts, CLIENTS);
  CHECK(st.accept_errors > 0); /* exhaustion happened, and was recovered from */
  CHECK_EQ(st.accept_errors, (uint64_t)failed);
  CHECK(st.accept_errors <= ACCEPTS * (elapsed / BACKOFF_MS + 2)); /* backed off, no spinning */
  CHECK(!st.refused && st.bytes_in == CLIENTS && st.packets_in == CLIENTS);
  CHECK_EQ(nt_disconnects(svc), CLIENTS); /* all of them PEER_CLOSED (above), no other reason */
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  cp_service_destroy(svc);
  cp__iocp_accept_fault = NULL;
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
