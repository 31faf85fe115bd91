/* probe_disconnectex_skip.c - does DisconnectEx complete on a socket whose successful ops skip
 * the completion port (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)? On Windows it does (a packet, or
 * TRUE at once); Wine 8.0 returns WSA_IO_PENDING and never completes it. Without skip mode it
 * completes on both. */
#include "probe.h"

static void run(int skip) {
  HANDLE iocp = probe_iocp();
  SOCKET srv, cli;
  probe_pair(&srv, &cli);
  probe_assoc(iocp, srv, 1);
  if (skip)
    PROBE_OK(SetFileCompletionNotificationModes((HANDLE)srv, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS));
  OVERLAPPED ov = {0};
  BOOL ok = probe_disconnectex(srv, &ov, 0, 0);
  int werr = ok ? 0 : WSAGetLastError();
  const char *mode = skip ? "skip-on-success" : "plain";
  if (ok) {
    printf("probe: DisconnectEx (%s): returned TRUE at once\n", mode);
  } else if (werr != WSA_IO_PENDING) {
    printf("probe: DisconnectEx (%s): failed at once, WSA error %d\n", mode, werr);
  } else {
    OVERLAPPED *got;
    DWORD bytes, err;
    int n = probe_take(iocp, 2000, &got, &bytes, &err);
    if (n && got == &ov)
      printf("probe: DisconnectEx (%s): pending, then completed (error %lu)\n", mode, err);
    else
      printf("probe: DisconnectEx (%s): pending, and NO completion within 2 s (Wine 8.0's bug)\n",
             mode);
    /* Whatever it did, the peer sees the FIN? */
    char c;
    DWORD tmo = 1000;
    setsockopt(cli, SOL_SOCKET, SO_RCVTIMEO, (const char *)&tmo, sizeof tmo);
    int r = recv(cli, &c, 1, 0);
    printf("probe: DisconnectEx (%s): the peer's recv returns %d%s\n", mode, r,
           r == 0 ? " (FIN arrived)" : "");
  }
  closesocket(srv);
  closesocket(cli);
  CloseHandle(iocp);
}

int main(void) {
  probe_init();
  run(0);
  run(1);
  return 0;
}
