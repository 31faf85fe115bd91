/*
 * cport/socket.h - sockets and buffers as the platform has them, and the few
 * socket calls a cport program needs, so that it makes no system socket call
 * of its own.
 *
 * cp_socket_t is the platform's socket: an int descriptor on Linux, a SOCKET
 * on Windows. cp_buf is laid out like the platform's scatter/gather element
 * (struct iovec on Linux: base, then len; WSABUF on Windows: ULONG len, then
 * CHAR *base), as libuv's uv_buf_t is, so an array of them goes to the kernel
 * as it is. Build one with cp_buf_init() and the code is the same on both.
 *
 * This header includes the platform's socket header (sys/socket.h and
 * netinet/in.h, or winsock2.h and ws2tcpip.h): struct sockaddr, struct
 * sockaddr_storage and socklen_t come from there.
 */
#ifndef CPORT_SOCKET_H
#define CPORT_SOCKET_H

#include "cport/error.h"
#include "cport/export.h"

#include <stddef.h>
#include <stdint.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
typedef SOCKET cp_socket_t;
#define CP_INVALID_SOCKET INVALID_SOCKET
typedef struct cp_buf {
  unsigned long len; /* ULONG, as WSABUF */
  char *base;
} cp_buf;
#else
#include <netinet/in.h>
#include <sys/socket.h>
typedef int cp_socket_t;
#define CP_INVALID_SOCKET (-1)
typedef struct cp_buf {
  char *base; /* as struct iovec: iov_base, iov_len */
  size_t len;
} cp_buf;
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* A cp_buf for len bytes at base (on Windows len must fit in 32 bits). */
static inline cp_buf cp_buf_init(void *base, size_t len) {
  cp_buf b;
  b.base = (char *)base;
  b.len = (unsigned long)len;
  return b;
}

/* The largest cp_buf array one send or receive takes (IOV_MAX on Linux). */
#define CP_BUF_MAX 1024

/* How cp_port_disconnect() shuts a connection down (SHUT_WR / SD_SEND,
 * SHUT_RDWR / SD_BOTH: the same numbers on both). */
#define CP_SHUT_WR 1
#define CP_SHUT_RDWR 2

/*
 * Fill *addr with the numeric address host (IPv4 "127.0.0.1" or IPv6 "::1";
 * NULL or "" means the IPv4 any-address, "localhost" 127.0.0.1) and port,
 * and *len with its length. Names are not resolved (no DNS: nothing here
 * blocks). Returns 0 or CP_EINVAL. Any thread.
 */
CP_API int cp_sockaddr_make(struct sockaddr_storage *addr, socklen_t *len, const char *host,
                            uint16_t port);

/* The port of an IPv4 or IPv6 address, 0 for any other family. */
CP_API uint16_t cp_sockaddr_port(const struct sockaddr *addr);

/*
 * A TCP socket listening on host:port (host as for cp_sockaddr_make; port 0
 * picks a free one), with SO_REUSEADDR, nonblocking and close-on-exec
 * (non-inheritable), backlog <= 0 meaning the system's maximum. On success
 * stores it in *out and, if bound_port is not NULL, the port it is bound to
 * in *bound_port, and returns 0; otherwise returns CP_EINVAL (bad host),
 * CP_EADDRINUSE, CP_EACCES, CP_EMFILE, ... and creates nothing. The caller
 * owns the socket (cp_socket_close). Any thread.
 */
CP_API int cp_socket_listen(cp_socket_t *out, const char *host, uint16_t port, int backlog,
                            uint16_t *bound_port);

/*
 * An unconnected TCP socket of family (AF_INET or AF_INET6), nonblocking and
 * close-on-exec, ready for cp_port_associate() and cp_port_connect() (on
 * Windows it is bound to the any-address first, as ConnectEx needs). 0 or a
 * negative code; *out set only on success. The caller owns the socket.
 */
CP_API int cp_socket_tcp(cp_socket_t *out, int family);

/*
 * A TCP socket connected to host:port (numeric, as cp_sockaddr_make),
 * waiting at most timeout_ms (< 0: the system's own timeout) for the
 * connection. The socket is left blocking, for simple clients and tests
 * that read and write it with cp_socket_send/cp_socket_recv; associating it
 * with a port makes it nonblocking. 0 or CP_ECONNREFUSED, CP_ETIMEDOUT,
 * CP_EINVAL, ... The caller owns the socket.
 */
CP_API int cp_socket_connect(cp_socket_t *out, const char *host, uint16_t port, int timeout_ms);

/*
 * Blocking send and receive on a socket that is not associated with a port
 * (simple clients, tests). cp_socket_send sends all len bytes (retrying short
 * sends and interruptions) and returns len or a negative code; it never
 * raises SIGPIPE. cp_socket_recv returns the bytes received (>= 1), 0 when
 * the peer closed, or a negative code (CP_EAGAIN on a nonblocking socket
 * with nothing there).
 */
CP_API int64_t cp_socket_send(cp_socket_t sock, const void *data, size_t len);
CP_API int64_t cp_socket_recv(cp_socket_t sock, void *data, size_t len);

/* Turn Nagle's algorithm off (on != 0) or on. 0 or a negative code. */
CP_API int cp_socket_nodelay(cp_socket_t sock, int on);

/* Close a socket (close / closesocket). CP_INVALID_SOCKET is a no-op.
 * Returns 0 or a negative code (CP_EBADF for a socket that is not open). */
CP_API int cp_socket_close(cp_socket_t sock);

#ifdef __cplusplus
}
#endif

#endif /* CPORT_SOCKET_H */
