/* probe_cancel_op.c - CancelIoEx per op and per handle, with every completion counted: two
 * WSARecv pending on one socket; cancelling the first completes it once with
 * ERROR_OPERATION_ABORTED and leaves the second pending (it then takes the data); a second
 * cancel of the same op finds nothing; CancelIoEx(h, NULL) ends everything left, once each.
 * Also the order in which two pending receives take data, and a cancel racing a completion. */
#include "probe.h"

static int drain(HANDLE iocp, OVERLAPPED *want, int *count, DWORD *err_out, DWORD *bytes_out) {
  OVERLAPPED *got;
  DWORD bytes, err;
  int n = 0;
  while (probe_take(iocp, 300, &got, &bytes, &err)) {
    n++;
    if (got == want) {
      (*count)++;
      *err_out = err;
      *bytes_out = bytes;
    }
  }
  return n;
}

int main(void) {
  probe_init();
  HANDLE iocp = probe_iocp();
  SOCKET srv, cli;
  probe_pair(&srv, &cli);
  probe_assoc(iocp, srv, 1);
  char b1[8], b2[8];
  WSABUF w1 = {.len = sizeof b1, .buf = b1}, w2 = {.len = sizeof b2, .buf = b2};
  DWORD fl = 0;
  OVERLAPPED o1 = {0}, o2 = {0};
  PROBE_OK(WSARecv(srv, &w1, 1, NULL, &fl, &o1, NULL) != 0 && WSAGetLastError() == WSA_IO_PENDING);
  PROBE_OK(WSARecv(srv, &w2, 1, NULL, &fl, &o2, NULL) != 0 && WSAGetLastError() == WSA_IO_PENDING);
  BOOL ok = CancelIoEx((HANDLE)srv, &o1);
  printf("probe: CancelIoEx(h, op1) with op1 pending: %s\n", ok ? "TRUE" : "FALSE");
  ok = CancelIoEx((HANDLE)srv, &o1);
  printf("probe: CancelIoEx(h, op1) again: %s (error %lu)\n", ok ? "TRUE" : "FALSE",
         ok ? 0 : GetLastError());
  int c1 = 0, c2 = 0;
  DWORD e1 = 0, e2 = 0, by1 = 0, by2 = 0;
  drain(iocp, &o1, &c1, &e1, &by1);
  printf("probe: op1 completions: %d, error %lu (ERROR_OPERATION_ABORTED=%ld)\n", c1, e1,
         ERROR_OPERATION_ABORTED);
  PROBE_OK(send(cli, "data", 4, 0) == 4);
  drain(iocp, &o2, &c2, &e2, &by2);
  printf("probe: op2 after data: %d completion(s), %lu bytes, error %lu\n", c2, by2, e2);

  /* Two pending receives, then data in two sends: which takes what. */
  OVERLAPPED o3 = {0}, o4 = {0};
  PROBE_OK(WSARecv(srv, &w1, 1, NULL, &fl, &o3, NULL) != 0 && WSAGetLastError() == WSA_IO_PENDING);
  PROBE_OK(WSARecv(srv, &w2, 1, NULL, &fl, &o4, NULL) != 0 && WSAGetLastError() == WSA_IO_PENDING);
  PROBE_OK(send(cli, "AAAA", 4, 0) == 4);
  Sleep(50);
  PROBE_OK(send(cli, "BBBB", 4, 0) == 4);
  OVERLAPPED *got;
  DWORD bytes, err;
  PROBE_OK(probe_take(iocp, 1000, &got, &bytes, &err));
  OVERLAPPED *first = got;
  PROBE_OK(probe_take(iocp, 1000, &got, &bytes, &err));
  printf("probe: two pending receives: the first started completes %s, with '%.4s'\n",
         first == &o3 ? "first" : "SECOND", b1);

  /* CancelIoEx(h, NULL) with three pending. */
  OVERLAPPED o[3] = {{0}};
  char bb[3][4];
  for (int i = 0; i < 3; i++) {
    WSABUF w = {.len = 4, .buf = bb[i]};
    PROBE_OK(WSARecv(srv, &w, 1, NULL, &fl, &o[i], NULL) != 0 &&
             WSAGetLastError() == WSA_IO_PENDING);
  }
  ok = CancelIoEx((HANDLE)srv, NULL);
  int cnt[3] = {0}, total = 0;
  while (probe_take(iocp, 300, &got, &bytes, &err)) {
    total++;
    for (int i = 0; i < 3; i++)
      if (got == &o[i] && err == ERROR_OPERATION_ABORTED)
        cnt[i]++;
  }
  printf("probe: CancelIoEx(h, NULL) with 3 pending: %s; completions %d, aborted each: %d %d %d\n",
         ok ? "TRUE" : "FALSE", total, cnt[0], cnt[1], cnt[2]);

  /* Cancel after the op completed but before its packet was taken. */
  OVERLAPPED o5 = {0};
  PROBE_OK(WSARecv(srv, &w1, 1, NULL, &fl, &o5, NULL) != 0 && WSAGetLastError() == WSA_IO_PENDING);
  PROBE_OK(send(cli, "CCCC", 4, 0) == 4);
  Sleep(100);
  ok = CancelIoEx((HANDLE)srv, &o5);
  int c5 = 0;
  DWORD e5 = 0, by5 = 0;
  drain(iocp, &o5, &c5, &e5, &by5);
  printf("probe: cancel after completion, before the packet is taken: %s (error %lu); op "
         "completions %d with %lu bytes\n",
         ok ? "TRUE" : "FALSE", ok ? 0 : GetLastError(), c5, by5);

  /* closesocket with a receive pending. */
  OVERLAPPED o6 = {0};
  PROBE_OK(WSARecv(srv, &w1, 1, NULL, &fl, &o6, NULL) != 0 && WSAGetLastError() == WSA_IO_PENDING);
  closesocket(srv);
  int c6 = 0;
  DWORD e6 = 0, by6 = 0;
  drain(iocp, &o6, &c6, &e6, &by6);
  printf("probe: closesocket with a receive pending: %d completion(s), error %lu\n", c6, e6);
  closesocket(cli);
  CloseHandle(iocp);
  return 0;
}
