/* probe_send_reset.c - an overlapped WSASend left pending when the peer goes away. The client
 * (4 KiB receive window) closes; then the server sends 520 KB in one WSASend, which cannot all
 * leave: the client's kernel answers the data with RST. Windows: the send completes, with
 * WSAECONNRESET (or whole, if everything fit in the send buffer). Wine 8.0: often the send never
 * completes, although the connection is gone from the kernel (the packet does not come within
 * 3 s; ss shows no socket of it), nor after closesocket. Two rounds; the probe reports each. */
#include "probe.h"

#include <stdbool.h>

int main(void) {
  probe_init();
  static char big[520000];
  for (int round = 0; round < 2; round++) {
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
    Sleep(200);
    OVERLAPPED ov = {0};
    WSABUF wb = {.len = sizeof big, .buf = big};
    int r = WSASend(srv, &wb, 1, NULL, 0, &ov, NULL);
    PROBE_OK(r == 0 || WSAGetLastError() == WSA_IO_PENDING);
    OVERLAPPED *got;
    DWORD bytes, err;
    if (probe_take(iocp, 3000, &got, &bytes, &err)) {
      printf("probe: round %d: WSASend to a closed peer completed: %lu bytes, error %lu\n", round,
             bytes, err);
      closesocket(srv);
    } else {
      printf("probe: round %d: WSASend to a closed peer: no completion within 3 s\n", round);
      closesocket(srv); /* on Windows this ends a send still pending */
      bool done = probe_take(iocp, 3000, &got, &bytes, &err);
      printf("probe: round %d: after closesocket: %s\n", round,
             done ? "completed" : "still no completion");
    }
    closesocket(l);
    CloseHandle(iocp);
  }
  return 0;
}
