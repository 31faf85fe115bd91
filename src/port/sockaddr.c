/*
 * sockaddr.c - socket addresses, the same code on POSIX and Winsock (the calls it makes,
 * inet_pton, inet_ntop and getpeername, have one signature on both): cp_sockaddr_make,
 * cp_sockaddr_port, cp_socket_listen (by name, on cp__socket_listen_addr) and the engine's
 * cp__socket_peer.
 */
#ifdef _WIN32
#include "port/win32_internal.h"
#else
#include <arpa/inet.h>
#include <errno.h>
#endif
#include "port/socket_internal.h"

#include <string.h>

/* The error of the socket call that just failed. */
static int socket_error(void) {
#ifdef _WIN32
  return cp__error_from_win((DWORD)WSAGetLastError());
#else
  return -errno;
#endif
}

int cp_sockaddr_make(struct sockaddr_storage *addr, socklen_t *len, const char *host,
                     uint16_t port) {
  if (!addr || !len)
    return CP_EINVAL;
#ifdef _WIN32
  int rc = cp__winsock_start(); /* inet_pton needs it */
  if (rc)
    return rc;
#endif
  memset(addr, 0, sizeof *addr);
  if (!host || !*host || !strcmp(host, "localhost")) {
    struct sockaddr_in *a = (struct sockaddr_in *)addr;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(host && *host ? INADDR_LOOPBACK : INADDR_ANY);
    *len = sizeof *a;
    return 0;
  }
  struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    *len = sizeof *a4;
    return 0;
  }
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    *len = sizeof *a6;
    return 0;
  }
  memset(addr, 0, sizeof *addr);
  return CP_EINVAL;
}

uint16_t cp_sockaddr_port(const struct sockaddr *addr) {
  if (!addr)
    return 0;
  if (addr->sa_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)(const void *)addr)->sin_port);
  if (addr->sa_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)(const void *)addr)->sin6_port);
  return 0;
}

int cp_socket_listen(cp_socket_t *out, const char *host, uint16_t port, int backlog,
                     uint16_t *bound_port) {
  if (!out)
    return CP_EINVAL;
  struct sockaddr_storage ss;
  socklen_t len;
  int rc = cp_sockaddr_make(&ss, &len, host, port);
  if (rc)
    return rc;
  return cp__socket_listen_addr(out, (struct sockaddr *)&ss, len, backlog, bound_port);
}

int cp__socket_peer(cp_socket_t sock, char *host, size_t hostlen, uint16_t *port) {
  if (!host || hostlen < INET6_ADDRSTRLEN || !port)
    return CP_EINVAL;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getpeername(sock, (struct sockaddr *)&ss, &sl))
    return socket_error();
  const void *a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                           : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
  if ((ss.ss_family != AF_INET && ss.ss_family != AF_INET6) ||
      !inet_ntop(ss.ss_family, a, host, (socklen_t)hostlen))
    return CP_EAFNOSUPPORT;
  *port = cp_sockaddr_port((struct sockaddr *)&ss);
  return 0;
}
