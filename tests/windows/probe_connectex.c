/* probe_connectex.c - ConnectEx on a bound socket: success with SO_UPDATE_CONNECT_CONTEXT and
 * getpeername; the error a refused connect completes with; and ConnectEx on an unbound
 * socket. */
#include "probe.h"

int main(void) {
  probe_init();
  HANDLE iocp = probe_iocp();
  struct sockaddr_in la;
  SOCKET l = probe_listen(&la);

  SOCKET c = probe_socket();
  probe_assoc(iocp, c, 1);
  struct sockaddr_in any = {.sin_family = AF_INET};
  OVERLAPPED ov = {0};
  BOOL ok = probe_connectex(c, (struct sockaddr *)&la, sizeof la, NULL, 0, NULL, &ov);
  printf("probe: ConnectEx on an unbound socket: %s (WSA %d)\n", ok ? "TRUE" : "FALSE",
         ok ? 0 : WSAGetLastError());
  PROBE_OK(bind(c, (struct sockaddr *)&any, sizeof any) == 0);
  ok = probe_connectex(c, (struct sockaddr *)&la, sizeof la, NULL, 0, NULL, &ov);
  printf("probe: ConnectEx bound: %s\n",
         ok ? "TRUE at once" : (WSAGetLastError() == WSA_IO_PENDING ? "pending" : "error"));
  OVERLAPPED *got;
  DWORD bytes, err;
  int n = probe_take(iocp, 2000, &got, &bytes, &err);
  printf("probe: ConnectEx completion: %s (error %lu)\n", n && got == &ov ? "yes" : "NO", err);
  struct sockaddr_in pa;
  int palen = sizeof pa;
  int r = getpeername(c, (struct sockaddr *)&pa, &palen);
  printf("probe: getpeername before SO_UPDATE_CONNECT_CONTEXT: %s\n", r == 0 ? "works" : "fails");
  r = setsockopt(c, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0);
  printf("probe: SO_UPDATE_CONNECT_CONTEXT: %d\n", r);
  palen = sizeof pa;
  r = getpeername(c, (struct sockaddr *)&pa, &palen);
  printf("probe: getpeername after: %s\n",
         r == 0 && pa.sin_port == la.sin_port ? "= listener" : "?");
  r = shutdown(c, SD_SEND);
  printf("probe: shutdown(SD_SEND) after ConnectEx: %d\n", r);

  /* Refused: connect to a port nobody listens on (the listener closed). */
  closesocket(l);
  SOCKET d = probe_socket();
  probe_assoc(iocp, d, 2);
  PROBE_OK(bind(d, (struct sockaddr *)&any, sizeof any) == 0);
  OVERLAPPED ov2 = {0};
  ok = probe_connectex(d, (struct sockaddr *)&la, sizeof la, NULL, 0, NULL, &ov2);
  int werr = ok ? 0 : WSAGetLastError();
  if (!ok && werr != WSA_IO_PENDING) {
    printf("probe: ConnectEx refused: fails at once, WSA %d\n", werr);
  } else {
    n = probe_take(iocp, 5000, &got, &bytes, &err);
    DWORD fl = 0, tr = 0;
    BOOL r2 = WSAGetOverlappedResult(d, &ov2, &tr, FALSE, &fl);
    printf("probe: ConnectEx refused: completion %s, GetLastError %lu "
           "(ERROR_CONNECTION_REFUSED=%ld), WSAGetOverlappedResult %d WSA %d\n",
           n && got == &ov2 ? "yes" : "NO", err, ERROR_CONNECTION_REFUSED, r2,
           r2 ? 0 : WSAGetLastError());
  }
  closesocket(c);
  closesocket(d);
  CloseHandle(iocp);
  return 0;
}
