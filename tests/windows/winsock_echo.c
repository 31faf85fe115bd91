/* winsock_echo.c - a plain blocking Winsock round trip over loopback (127.0.0.1, a free port):
 * proves ws2_32 under Wine before anything overlapped is tried. */
#include <winsock2.h>
#include <ws2tcpip.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  WSADATA wd;
  if (WSAStartup(MAKEWORD(2, 2), &wd) != 0)
    return 1;
  SOCKET l = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int alen = sizeof a;
  if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4) ||
      getsockname(l, (struct sockaddr *)&a, &alen))
    return 2;
  SOCKET c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  if (connect(c, (struct sockaddr *)&a, sizeof a))
    return 3;
  SOCKET s = accept(l, NULL, NULL);
  if (s == INVALID_SOCKET)
    return 4;
  const char msg[] = "ping over winsock";
  char buf[64] = {0};
  if (send(c, msg, (int)sizeof msg, 0) != (int)sizeof msg)
    return 5;
  int n = recv(s, buf, sizeof buf, 0);
  if (n != (int)sizeof msg || memcmp(buf, msg, sizeof msg))
    return 6;
  printf("winsock %d.%d: port %u, echoed %d bytes: %s\n", LOBYTE(wd.wVersion), HIBYTE(wd.wVersion),
         ntohs(a.sin_port), n, buf);
  closesocket(s);
  closesocket(c);
  closesocket(l);
  WSACleanup();
  return 0;
}
