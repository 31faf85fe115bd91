/* probe_send_reset.c - overlapped ops left pending when the peer resets the connection.
 *
 * Send rounds: the client (4 KiB receive window) closes; then the server sends 520 KB in one
 * WSASend, which cannot all leave: the client's kernel answers the data with RST. Receive rounds:
 * a zero-byte WSARecv is pending when the client resets (SO_LINGER 0, close).
 *
 * Windows: the op completes with WSAECONNRESET (or whole, if everything fit). Wine 8.0: often it
 * never completes. Why (server/sock.c of Wine 8.0): when the socket's poll reports POLLERR or
 * POLLHUP and no hangup was seen, wineserver marks the socket "aborted" and never polls it
 * again (sock_get_poll_events returns -1), but it wakes a pending op only on POLLIN/POLLOUT
 * with the op waiting, or on POLLERR when the socket was shut down: a receive whose poll
 * consumed the error with its MSG_PEEK, or a send being retried at that moment, stays pending
 * forever - closesocket does not end it either. What the probe shows for a stuck op: that
 * CancelIoEx on it ends it (one packet, STATUS_CANCELLED = 995), and what WSAPoll and SO_ERROR
 * say about its socket (the evidence the IOCP backend's reset scan looks for). */
#include "probe.h"

#include <stdbool.h>

/* An op that did not complete: even rounds cancel it at once; odd rounds first ask WSAPoll and
 * SO_ERROR about its socket (what the backend's reset scan asks), then cancel it if it is still
 * pending. Exactly one packet either way. */
static void stuck_report(const char *what, int round, HANDLE iocp, SOCKET s, OVERLAPPED *ov) {
  OVERLAPPED *got;
  DWORD bytes, err;
  printf("probe: %s round %d: no completion within 2 s\n", what, round);
  if (round % 2) {
    WSAPOLLFD pf = {.fd = s, .events = 0};
    int pr = WSAPoll(&pf, 1, 0);
    int soerr = 0, len = sizeof soerr;
    getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&soerr, &len);
    printf("probe: %s round %d: WSAPoll %d, revents%s%s; SO_ERROR %d\n", what, round, pr,
           pf.revents & POLLHUP ? " POLLHUP" : "", pf.revents & POLLERR ? " POLLERR" : "", soerr);
    if (probe_take(iocp, 500, &got, &bytes, &err) && got == ov) {
      printf("probe: %s round %d: then completed (error %lu)\n", what, round, err);
      PROBE_OK(!probe_take(iocp, 200, &got, &bytes, &err)); /* exactly one */
      return;
    }
  }
  BOOL c = CancelIoEx((HANDLE)s, ov);
  bool done = probe_take(iocp, 2000, &got, &bytes, &err) && got == ov;
  printf("probe: %s round %d: CancelIoEx %s: %s (error %lu)\n", what, round, c ? "TRUE" : "FALSE",
         done ? "one completion" : "still no completion", err);
  if (done)
    PROBE_OK(!probe_take(iocp, 200, &got, &bytes, &err)); /* exactly one */
}

int main(void) {
  probe_init();
  static char big[520000];
  for (int round = 0; round < 4; round++) {
    HANDLE iocp = probe_iocp();
    struct sockaddr_in a;
    SOCKET l = probe_listen(&a);
    SOCKET cli = probe_socket();
    int rb = 4096;
    PROBE_OK(setsockopt(cli, SOL_SOCKET, SO_RCVBUF, (const char *)&rb, sizeof rb) == 0);
    PROBE_OK(connect(cli, (struct sockaddr *)&a, sizeof a) == 0);
    SOCKET srv = accept(l, NULL, NULL);
    PROBE_OK(srv != INVALID_SOCKET);
    probe_assoc(iocp, srv, 1);
    closesocket(cli);
    Sleep(100);
    OVERLAPPED ov = {0};
    WSABUF wb = {.len = sizeof big, .buf = big};
    int r = WSASend(srv, &wb, 1, NULL, 0, &ov, NULL);
    PROBE_OK(r == 0 || WSAGetLastError() == WSA_IO_PENDING);
    OVERLAPPED *got;
    DWORD bytes, err;
    if (probe_take(iocp, 2000, &got, &bytes, &err))
      printf("probe: send round %d: WSASend to a closed peer completed: %lu bytes, error %lu\n",
             round, bytes, err);
    else
      stuck_report("send", round, iocp, srv, &ov);
    closesocket(srv);
    closesocket(l);
    CloseHandle(iocp);
  }
  for (int round = 0; round < 4; round++) {
    HANDLE iocp = probe_iocp();
    SOCKET srv, cli;
    probe_pair(&srv, &cli);
    probe_assoc(iocp, srv, 1);
    OVERLAPPED ov = {0};
    static char dummy;
    WSABUF wb = {.len = 0, .buf = &dummy};
    DWORD flags = 0;
    int r = WSARecv(srv, &wb, 1, NULL, &flags, &ov, NULL);
    PROBE_OK(r == 0 || WSAGetLastError() == WSA_IO_PENDING);
    Sleep(50);
    LINGER lg = {.l_onoff = 1, .l_linger = 0};
    PROBE_OK(setsockopt(cli, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof lg) == 0);
    closesocket(cli); /* RST */
    OVERLAPPED *got;
    DWORD bytes, err;
    if (probe_take(iocp, 2000, &got, &bytes, &err))
      printf("probe: recv round %d: zero-byte WSARecv at a reset completed: %lu bytes, error "
             "%lu\n",
             round, bytes, err);
    else
      stuck_report("recv", round, iocp, srv, &ov);
    closesocket(srv);
    CloseHandle(iocp);
  }
  return 0;
}
