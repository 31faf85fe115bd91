/*
 * socket_posix.c - the socket helpers of cport/socket.h on POSIX sockets.
 * (The Windows half, on Winsock, is socket_win32.c; addresses are sockaddr.c.)
 */
#ifndef _WIN32
#define _GNU_SOURCE
#include "port/socket_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int new_socket(int family, cp_socket_t *out) {
  if (family != AF_INET && family != AF_INET6)
    return CP_EAFNOSUPPORT;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  *out = fd;
  return 0;
}

int cp_socket_tcp(cp_socket_t *out, int family) {
  if (!out)
    return CP_EINVAL;
  return new_socket(family, out);
}

int cp__socket_listen_addr(cp_socket_t *out, const struct sockaddr *addr, socklen_t len,
                           int backlog, uint16_t *bound_port) {
  if (!out || !addr)
    return CP_EINVAL;
  cp_socket_t fd = CP_INVALID_SOCKET;
  int rc = new_socket(addr->sa_family, &fd);
  if (rc)
    return rc;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (bind(fd, addr, len) < 0 || listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  if (bound_port)
    *bound_port = cp_sockaddr_port((struct sockaddr *)&ss);
  *out = fd;
  return 0;
}

int cp__socket_shutdown(cp_socket_t sock, int how) {
  if (how != CP_SHUT_WR && how != CP_SHUT_RDWR && how != CP__SHUT_RD)
    return CP_EINVAL;
  int h = how == CP_SHUT_WR ? SHUT_WR : how == CP_SHUT_RDWR ? SHUT_RDWR : SHUT_RD;
  return shutdown(sock, h) == 0 ? 0 : -errno;
}

int cp__socket_abortive(cp_socket_t sock) {
  struct linger l = {.l_onoff = 1, .l_linger = 0};
  return setsockopt(sock, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0 ? 0 : -errno;
}

static int set_nonblock(int fd, bool on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
    return -errno;
  return 0;
}

int cp_socket_connect(cp_socket_t *out, const char *host, uint16_t port, int timeout_ms) {
  if (!out)
    return CP_EINVAL;
  struct sockaddr_storage ss;
  socklen_t len;
  int rc = cp_sockaddr_make(&ss, &len, host, port);
  cp_socket_t fd = CP_INVALID_SOCKET;
  if (!rc)
    rc = new_socket(ss.ss_family, &fd);
  if (rc)
    return rc;
  /* Nonblocking connect and poll: the wait is bounded and immune to EINTR
   * (a connect() interrupted by a signal cannot simply be retried). */
  if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) {
      rc = -errno;
      goto fail;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int r;
    while ((r = poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms)) < 0 && errno == EINTR)
      ;
    if (r < 0) {
      rc = -errno;
      goto fail;
    }
    if (r == 0) {
      rc = CP_ETIMEDOUT;
      goto fail;
    }
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
      err = errno;
    if (err) {
      rc = -err;
      goto fail;
    }
  }
  rc = set_nonblock(fd, false);
  if (rc)
    goto fail;
  *out = fd;
  return 0;
fail:
  close(fd);
  return rc;
}

int64_t cp_socket_send(cp_socket_t sock, const void *data, size_t len) {
  if (!data && len)
    return CP_EFAULT;
  const char *p = data;
  size_t left = len;
  while (left) {
    ssize_t n = send(sock, p, left, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = sock, .events = POLLOUT};
      poll(&pfd, 1, -1);
      continue;
    }
    if (n < 0)
      return -errno;
    p += n;
    left -= (size_t)n;
  }
  return (int64_t)len;
}

int64_t cp_socket_recv(cp_socket_t sock, void *data, size_t len) {
  if (!data || !len)
    return CP_EINVAL;
  for (;;) {
    ssize_t n = recv(sock, data, len, 0);
    if (n >= 0)
      return n;
    if (errno != EINTR)
      return -errno;
  }
}

int cp_socket_nodelay(cp_socket_t sock, int on) {
  int v = on != 0;
  return setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) == 0 ? 0 : -errno;
}

/* Internal (port_internal.h): cp_port_associate's check and mode. */
int cp__socket_prepare(cp_socket_t sock);
int cp__socket_prepare(cp_socket_t sock) {
  if (sock < 0)
    return CP_EBADF;
  int type;
  socklen_t len = sizeof type;
  if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
    return errno == ENOTSOCK ? CP_ENOTSOCK : CP_EBADF;
  int fl = fcntl(sock, F_GETFL);
  if (fl < 0)
    return CP_EBADF;
  if (!(fl & O_NONBLOCK) && fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0)
    return -errno;
  return 0;
}

int cp_socket_close(cp_socket_t sock) {
  if (sock == CP_INVALID_SOCKET)
    return 0;
  /* Linux releases the descriptor even when close reports EINTR: never
   * retry (the number may already belong to someone else). */
  if (close(sock) == 0 || errno == EINTR)
    return 0;
  return -errno;
}

#endif /* !_WIN32 */
