/* probe_zero_recv.c - a zero-byte WSARecv (the idle read that holds no buffer): it stays
 * pending while the socket is idle, completes with 0 bytes once data arrives (the data stays in
 * the socket for the next read), and also completes with 0 bytes at the peer's FIN - so 0 from it
 * means "readable", never "closed"; the real read says which. Also: skip-on-success mode. */
#include "probe.h"

int main(void) {
  probe_init();
  HANDLE iocp = probe_iocp();
  SOCKET srv, cli;
  probe_pair(&srv, &cli);
  probe_assoc(iocp, srv, 1);
  char dummy;
  WSABUF wb = {.len = 0, .buf = &dummy};
  DWORD flags = 0;
  OVERLAPPED ov = {0};
  int r = WSARecv(srv, &wb, 1, NULL, &flags, &ov, NULL);
  printf("probe: zero-byte WSARecv on an idle socket: %s\n",
         r == 0 ? "completes at once"
                : (WSAGetLastError() == WSA_IO_PENDING ? "pending" : "error"));
  OVERLAPPED *got;
  DWORD bytes, err;
  int n = probe_take(iocp, 200, &got, &bytes, &err);
  printf("probe: ... before data: %s\n", n ? "a completion (unexpected)" : "no completion");
  PROBE_OK(send(cli, "hello", 5, 0) == 5);
  n = probe_take(iocp, 2000, &got, &bytes, &err);
  printf("probe: ... after 5 bytes arrive: %s, %lu bytes, error %lu\n",
         n && got == &ov ? "completes" : "NO completion", bytes, err);
  u_long nb = 1;
  ioctlsocket(srv, FIONBIO, &nb);
  char buf[16];
  printf("probe: nonblocking recv after it: %d bytes\n", recv(srv, buf, sizeof buf, 0));
  int rr = recv(srv, buf, sizeof buf, 0);
  printf("probe: again: %d (WSA %d, WSAEWOULDBLOCK=%d)\n", rr, rr < 0 ? WSAGetLastError() : 0,
         WSAEWOULDBLOCK);

  /* At FIN. */
  ov = (OVERLAPPED){0};
  r = WSARecv(srv, &wb, 1, NULL, &flags, &ov, NULL);
  PROBE_OK(r == 0 || WSAGetLastError() == WSA_IO_PENDING);
  shutdown(cli, SD_SEND);
  n = probe_take(iocp, 2000, &got, &bytes, &err);
  printf("probe: zero-byte WSARecv at the peer's FIN: %s, %lu bytes\n",
         n && got == &ov ? "completes" : "NO completion", bytes);
  printf("probe: recv after it: %d (0 = closed)\n", recv(srv, buf, sizeof buf, 0));

  /* Skip-on-success: a WSARecv that finds data completes at once and queues no packet. */
  SOCKET s2, c2;
  probe_pair(&s2, &c2);
  probe_assoc(iocp, s2, 2);
  PROBE_OK(SetFileCompletionNotificationModes((HANDLE)s2, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS));
  PROBE_OK(send(c2, "xyz", 3, 0) == 3);
  Sleep(100);
  WSABUF wb2 = {.len = sizeof buf, .buf = buf};
  DWORD got_now = 0;
  ov = (OVERLAPPED){0};
  r = WSARecv(s2, &wb2, 1, &got_now, &flags, &ov, NULL);
  printf("probe: skip-on-success WSARecv with data waiting: %s (%lu bytes)\n",
         r == 0 ? "returns 0 at once" : "pending", got_now);
  n = probe_take(iocp, 300, &got, &bytes, &err);
  printf("probe: ... and a packet on the port: %s\n", n ? "yes (not skipped)" : "none (skipped)");
  closesocket(srv);
  closesocket(cli);
  closesocket(s2);
  closesocket(c2);
  CloseHandle(iocp);
  return 0;
}
