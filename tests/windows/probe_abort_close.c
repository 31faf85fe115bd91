/* probe_abort_close.c - what the peer sees when a Winsock socket is closed abortively
 * (SO_LINGER on, 0 s): Windows sends RST only, so the peer's recv fails with WSAECONNRESET.
 * Under Wine the close goes through wineserver, whose sock_destroy calls shutdown(SHUT_RDWR)
 * before closing the Linux socket: a FIN goes out before the RST. The probe closes the client
 * abortively 20 times, the server idle each time, and reports what the server's recv says. */
#include "probe.h"

int main(void) {
  probe_init();
  int zero = 0, reset = 0, other = 0;
  for (int round = 0; round < 20; round++) {
    SOCKET srv, cli;
    probe_pair(&srv, &cli);
    LINGER lg = {.l_onoff = 1, .l_linger = 0};
    PROBE_OK(setsockopt(cli, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof lg) == 0);
    PROBE_OK(closesocket(cli) == 0);
    Sleep(20);
    char b;
    int n = recv(srv, &b, 1, 0);
    int e = n < 0 ? WSAGetLastError() : 0;
    if (n == 0)
      zero++;
    else if (e == WSAECONNRESET)
      reset++;
    else
      other++;
    closesocket(srv);
  }
  printf("probe: abortive close (SO_LINGER 0) seen by the peer's recv, 20 rounds: end of stream "
         "(FIN first) %d, WSAECONNRESET %d, other %d\n",
         zero, reset, other);
  return 0;
}
