/* probe_acceptex.c - AcceptEx with no receive data, SO_UPDATE_ACCEPT_CONTEXT, and
 * GetAcceptExSockaddrs: the completion, the peer address it yields (compared with the
 * client's own address), and what getpeername says before and after the context update. */
#include "probe.h"

int main(void) {
  probe_init();
  HANDLE iocp = probe_iocp();
  struct sockaddr_in la;
  SOCKET l = probe_listen(&la);
  probe_assoc(iocp, l, 7);
  SOCKET as = probe_socket();
  char addrbuf[2 * (sizeof(struct sockaddr_storage) + 16)];
  OVERLAPPED ov = {0};
  DWORD got_bytes = 0;
  BOOL ok = probe_acceptex(l, as, addrbuf, 0, sizeof(struct sockaddr_storage) + 16,
                           sizeof(struct sockaddr_storage) + 16, &got_bytes, &ov);
  printf("probe: AcceptEx with no client yet: %s\n",
         ok ? "TRUE at once" : (WSAGetLastError() == WSA_IO_PENDING ? "pending" : "error"));

  SOCKET c = probe_socket();
  PROBE_OK(connect(c, (struct sockaddr *)&la, sizeof la) == 0);
  struct sockaddr_in ca;
  int calen = sizeof ca;
  PROBE_OK(getsockname(c, (struct sockaddr *)&ca, &calen) == 0);

  OVERLAPPED *got;
  DWORD bytes, err;
  int n = probe_take(iocp, 2000, &got, &bytes, &err);
  printf("probe: AcceptEx completion: %s (bytes %lu, error %lu)\n", n && got == &ov ? "yes" : "NO",
         bytes, err);

  struct sockaddr_in pa;
  int palen = sizeof pa;
  int r = getpeername(as, (struct sockaddr *)&pa, &palen);
  printf("probe: getpeername before SO_UPDATE_ACCEPT_CONTEXT: %s\n",
         r == 0 ? "works" : "fails (WSAENOTCONN expected on Windows)");
  r = setsockopt(as, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&l, sizeof l);
  printf("probe: SO_UPDATE_ACCEPT_CONTEXT: %s\n", r == 0 ? "0" : "error");
  palen = sizeof pa;
  r = getpeername(as, (struct sockaddr *)&pa, &palen);
  printf("probe: getpeername after it: %s, peer %s\n", r == 0 ? "works" : "fails",
         r == 0 && pa.sin_port == ca.sin_port ? "= the client's address" : "differs");

  struct sockaddr *lp, *rp;
  int llen, rlen;
  probe_getacceptexsockaddrs(addrbuf, 0, sizeof(struct sockaddr_storage) + 16,
                             sizeof(struct sockaddr_storage) + 16, &lp, &llen, &rp, &rlen);
  struct sockaddr_in *rin = (struct sockaddr_in *)rp;
  printf("probe: GetAcceptExSockaddrs: remote length %d, remote %s\n", rlen,
         rlen == (int)sizeof ca && rin->sin_port == ca.sin_port &&
                 rin->sin_addr.s_addr == ca.sin_addr.s_addr
             ? "= the client's address"
             : "DIFFERS");

  /* Data flows on the accepted socket. */
  PROBE_OK(send(c, "hi", 2, 0) == 2);
  char b[2];
  printf("probe: recv on the accepted socket: %d bytes\n", recv(as, b, 2, 0));

  /* An AcceptEx pending when the listener is closed. */
  SOCKET as2 = probe_socket();
  OVERLAPPED ov2 = {0};
  ok = probe_acceptex(l, as2, addrbuf, 0, sizeof(struct sockaddr_storage) + 16,
                      sizeof(struct sockaddr_storage) + 16, &got_bytes, &ov2);
  PROBE_OK(!ok && WSAGetLastError() == WSA_IO_PENDING);
  closesocket(l);
  n = probe_take(iocp, 2000, &got, &bytes, &err);
  printf("probe: AcceptEx pending when the listener closes: %s (error %lu)\n",
         n && got == &ov2 ? "completes" : "NO completion", err);
  closesocket(as);
  closesocket(as2);
  closesocket(c);
  CloseHandle(iocp);
  return 0;
}
