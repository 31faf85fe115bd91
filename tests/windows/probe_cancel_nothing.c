/* probe_cancel_nothing.c - CancelIoEx with nothing to cancel. Windows: FALSE with
 * ERROR_NOT_FOUND, for CancelIoEx(h, NULL) and for CancelIoEx(h, ov) with an ov that is not
 * pending. Wine 8.0 returns TRUE for CancelIoEx(h, NULL) with nothing pending. */
#include "probe.h"

static void report(const char *what, BOOL ok) {
  DWORD e = ok ? 0 : GetLastError();
  printf("probe: %s with nothing pending: %s", what, ok ? "TRUE" : "FALSE");
  if (!ok)
    printf(" (error %lu%s)", e, e == ERROR_NOT_FOUND ? " ERROR_NOT_FOUND" : "");
  printf("\n");
}

int main(void) {
  probe_init();
  HANDLE iocp = probe_iocp();
  SOCKET srv, cli;
  probe_pair(&srv, &cli);
  probe_assoc(iocp, srv, 1);
  report("CancelIoEx(h, NULL)", CancelIoEx((HANDLE)srv, NULL));
  OVERLAPPED ov = {0};
  report("CancelIoEx(h, ov never started)", CancelIoEx((HANDLE)srv, &ov));

  /* An op that finished: its ov is no longer pending. */
  char buf[4];
  WSABUF wb = {.len = sizeof buf, .buf = buf};
  DWORD flags = 0;
  int r = WSARecv(srv, &wb, 1, NULL, &flags, &ov, NULL);
  PROBE_OK(r == 0 || WSAGetLastError() == WSA_IO_PENDING);
  PROBE_OK(send(cli, "abcd", 4, 0) == 4);
  OVERLAPPED *got;
  DWORD bytes, err;
  PROBE_OK(probe_take(iocp, 2000, &got, &bytes, &err) && got == &ov);
  report("CancelIoEx(h, ov completed)", CancelIoEx((HANDLE)srv, &ov));
  closesocket(srv);
  closesocket(cli);
  CloseHandle(iocp);
  return 0;
}
