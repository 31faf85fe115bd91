/*
 * socket_win32.c - the socket helpers of cport/socket.h on Winsock (the POSIX half is
 * socket_posix.c), and what the Windows port shares: Winsock start-up and the error map.
 * Every helper starts Winsock itself, so a program never calls WSAStartup.
 */
#ifdef _WIN32
#include "port/socket_internal.h"
#include "port/win32_internal.h"

#include "platform/platform.h"

#include <limits.h>
#include <mswsock.h>
#include <stdbool.h>
#include <string.h>

/* ---- Winsock start-up and errors ------------------------------------------------------ */

static cp__once_t wsa_once = CP__ONCE_INIT;
static int wsa_rc = CP_ENOSYS;

static void wsa_start(void) {
  WSADATA wd;
  int rc = WSAStartup(MAKEWORD(2, 2), &wd);
  wsa_rc = rc ? cp__error_from_win((DWORD)rc) : 0;
}

int cp__winsock_start(void) {
  cp__once(&wsa_once, wsa_start);
  return wsa_rc;
}

int cp__error_from_win(DWORD e) {
  switch (e) {
  case 0:
    return 0;
  case WSAECONNRESET:
  case WSAENETRESET:
  case ERROR_NETNAME_DELETED:
    return CP_ECONNRESET;
  case WSAECONNABORTED:
  case ERROR_CONNECTION_ABORTED:
  case ERROR_REQUEST_ABORTED:
    return CP_ECONNABORTED;
  case WSAECONNREFUSED:
  case ERROR_CONNECTION_REFUSED:
    return CP_ECONNREFUSED;
  case WSAENOTCONN:
  case ERROR_GRACEFUL_DISCONNECT:
    return CP_ENOTCONN;
  case WSAESHUTDOWN:
  case ERROR_BROKEN_PIPE:
    return CP_EPIPE;
  case ERROR_OPERATION_ABORTED: /* == WSA_OPERATION_ABORTED */
  case WSAEINTR:
    return CP_ECANCELED;
  case WSAETIMEDOUT:
  case ERROR_SEM_TIMEOUT:
    return CP_ETIMEDOUT;
  case WSAEHOSTUNREACH:
  case WSAEHOSTDOWN:
  case ERROR_HOST_UNREACHABLE:
    return CP_EHOSTUNREACH;
  case WSAENETUNREACH:
  case ERROR_NETWORK_UNREACHABLE:
    return CP_ENETUNREACH;
  case WSAENETDOWN:
    return CP_ENETDOWN;
  case WSAEADDRINUSE:
  case ERROR_ADDRESS_ALREADY_ASSOCIATED:
    return CP_EADDRINUSE;
  case WSAEADDRNOTAVAIL:
    return CP_EADDRNOTAVAIL;
  case WSAEACCES:
  case ERROR_ACCESS_DENIED:
    return CP_EACCES;
  case WSAENOTSOCK:
    return CP_ENOTSOCK;
  case WSAEBADF:
  case ERROR_INVALID_HANDLE:
    return CP_EBADF;
  case WSAEINVAL:
  case ERROR_INVALID_PARAMETER:
    return CP_EINVAL;
  case WSAEFAULT:
    return CP_EFAULT;
  case WSAEMFILE:
  case ERROR_TOO_MANY_OPEN_FILES:
    return CP_EMFILE;
  case WSAENOBUFS:
    return CP_ENOBUFS;
  case ERROR_NOT_ENOUGH_MEMORY:
  case ERROR_NO_SYSTEM_RESOURCES:
  case ERROR_OUTOFMEMORY:
    return CP_ENOMEM;
  case WSAEWOULDBLOCK:
    return CP_EAGAIN;
  case WSAEINPROGRESS:
    return CP_EINPROGRESS;
  case WSAEISCONN:
    return CP_EISCONN;
  case WSAEALREADY:
    return CP_EALREADY;
  case WSAEMSGSIZE:
    return CP_EMSGSIZE;
  case WSAEAFNOSUPPORT:
  case WSAEPFNOSUPPORT:
    return CP_EAFNOSUPPORT;
  case WSAEPROTONOSUPPORT:
    return CP_EPROTONOSUPPORT;
  case WSAEOPNOTSUPP:
    return CP_EOPNOTSUPP;
  case WSANOTINITIALISED:
  case WSASYSNOTREADY:
    return CP_ENOSYS;
  default:
    return CP_EIO;
  }
}

static int last_error(void) {
  return cp__error_from_win((DWORD)WSAGetLastError());
}

/* ---- sockets ------------------------------------------------------------------------- */

static int set_nonblock(SOCKET s, bool on) {
  u_long v = on;
  return ioctlsocket(s, FIONBIO, &v) ? last_error() : 0;
}

/* An overlapped-capable, non-inheritable TCP socket (nonblocking unless told otherwise). */
static int new_socket(int family, cp_socket_t *out) {
  if (family != AF_INET && family != AF_INET6)
    return CP_EAFNOSUPPORT;
  int rc = cp__winsock_start();
  if (rc)
    return rc;
  SOCKET s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                        WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET)
    return last_error();
  rc = set_nonblock(s, true);
  if (rc) {
    closesocket(s);
    return rc;
  }
  *out = s;
  return 0;
}

int cp_socket_tcp(cp_socket_t *out, int family) {
  if (!out)
    return CP_EINVAL;
  cp_socket_t s;
  int rc = new_socket(family, &s);
  if (rc)
    return rc;
  /* ConnectEx needs a bound socket: the any-address of the family, any port. */
  struct sockaddr_storage any = {.ss_family = (ADDRESS_FAMILY)family};
  int len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (bind(s, (struct sockaddr *)&any, len)) {
    rc = last_error();
    closesocket(s);
    return rc;
  }
  *out = s;
  return 0;
}

int cp__socket_listen_addr(cp_socket_t *out, const struct sockaddr *addr, socklen_t len,
                           int backlog, uint16_t *bound_port) {
  if (!out || !addr)
    return CP_EINVAL;
  cp_socket_t s = CP_INVALID_SOCKET;
  int rc = new_socket(addr->sa_family, &s);
  if (rc)
    return rc;
  /* Windows' SO_REUSEADDR lets another socket steal a bound port; SO_EXCLUSIVEADDRUSE is what
   * POSIX's bind semantics are, and TIME_WAIT does not block a rebind on Windows anyway. */
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof one);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (bind(s, addr, len) || listen(s, backlog > 0 ? backlog : SOMAXCONN) ||
      getsockname(s, (struct sockaddr *)&ss, &sl)) {
    rc = last_error();
    closesocket(s);
    return rc;
  }
  if (bound_port)
    *bound_port = cp_sockaddr_port((struct sockaddr *)&ss);
  *out = s;
  return 0;
}

int cp__socket_shutdown(cp_socket_t sock, int how) {
  if (how != CP_SHUT_WR && how != CP_SHUT_RDWR && how != CP__SHUT_RD)
    return CP_EINVAL;
  int h = how == CP_SHUT_WR ? SD_SEND : how == CP_SHUT_RDWR ? SD_BOTH : SD_RECEIVE;
  return shutdown(sock, h) ? last_error() : 0;
}

int cp__socket_abortive(cp_socket_t sock) {
  struct linger l = {.l_onoff = 1, .l_linger = 0}; /* closesocket: a hard close, a reset */
  return setsockopt(sock, SOL_SOCKET, SO_LINGER, (const char *)&l, (int)sizeof l) ? last_error()
                                                                                  : 0;
}

int cp_socket_connect(cp_socket_t *out, const char *host, uint16_t port, int timeout_ms) {
  if (!out)
    return CP_EINVAL;
  struct sockaddr_storage ss;
  socklen_t len;
  int rc = cp_sockaddr_make(&ss, &len, host, port);
  cp_socket_t s = CP_INVALID_SOCKET;
  if (!rc)
    rc = new_socket(ss.ss_family, &s);
  if (rc)
    return rc;
  if (connect(s, (struct sockaddr *)&ss, len)) {
    if (WSAGetLastError() != WSAEWOULDBLOCK) {
      rc = last_error();
      goto fail;
    }
    WSAPOLLFD pfd = {.fd = s, .events = POLLWRNORM};
    int r = WSAPoll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
    if (r < 0) {
      rc = last_error();
      goto fail;
    }
    if (r == 0) {
      rc = CP_ETIMEDOUT;
      goto fail;
    }
    int err = 0, el = sizeof err;
    if (getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&err, &el))
      err = WSAGetLastError();
    if (!err && (pfd.revents & (POLLERR | POLLHUP)))
      err = WSAECONNREFUSED;
    if (err) {
      rc = cp__error_from_win((DWORD)err);
      goto fail;
    }
  }
  rc = set_nonblock(s, false);
  if (rc)
    goto fail;
  *out = s;
  return 0;
fail:
  closesocket(s);
  return rc;
}

int64_t cp_socket_send(cp_socket_t sock, const void *data, size_t len) {
  if (!data && len)
    return CP_EFAULT;
  const char *p = data;
  size_t left = len;
  while (left) {
    int chunk = left > INT_MAX ? INT_MAX : (int)left;
    int n = send(sock, p, chunk, 0); /* Windows has no SIGPIPE */
    if (n == SOCKET_ERROR && WSAGetLastError() == WSAEWOULDBLOCK) {
      WSAPOLLFD pfd = {.fd = sock, .events = POLLWRNORM};
      WSAPoll(&pfd, 1, -1);
      continue;
    }
    if (n == SOCKET_ERROR)
      return last_error();
    p += n;
    left -= (size_t)n;
  }
  return (int64_t)len;
}

int64_t cp_socket_recv(cp_socket_t sock, void *data, size_t len) {
  if (!data || !len)
    return CP_EINVAL;
  int n = recv(sock, data, len > INT_MAX ? INT_MAX : (int)len, 0);
  return n == SOCKET_ERROR ? last_error() : n;
}

int cp_socket_nodelay(cp_socket_t sock, int on) {
  int v = on != 0;
  return setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, (const char *)&v, sizeof v) ? last_error() : 0;
}

int cp__socket_prepare(cp_socket_t sock) {
  if (sock == INVALID_SOCKET)
    return CP_EBADF;
  int rc = cp__winsock_start();
  if (rc)
    return rc;
  int type = 0, tlen = sizeof type;
  if (getsockopt(sock, SOL_SOCKET, SO_TYPE, (char *)&type, &tlen)) {
    /* Winsock says WSAENOTSOCK for anything it does not know: an open handle that is not a
     * socket is CP_ENOTSOCK, a number that is no handle at all CP_EBADF. */
    DWORD fl;
    return GetHandleInformation((HANDLE)sock, &fl) ? CP_ENOTSOCK : CP_EBADF;
  }
  return set_nonblock(sock, true);
}

int cp_socket_close(cp_socket_t sock) {
  if (sock == CP_INVALID_SOCKET)
    return 0;
  return closesocket(sock) ? (WSAGetLastError() == WSAENOTSOCK ? CP_EBADF : last_error()) : 0;
}

#endif /* _WIN32 */
