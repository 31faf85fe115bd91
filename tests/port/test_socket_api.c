/* The portable API around the port: CP_E* codes (each -errno here) and
 * cp_strerror, cp_buf's layout and initializer, and the socket helpers - a
 * listener on a free port, a client connected to it, an accept through the
 * port, bytes both ways with cp_socket_send/recv, and every helper's errors
 * (bad host, address in use, refused, bad arguments). */
#include "common/test.h"

#include <limits.h>
#ifndef _WIN32
#include <sys/uio.h>
#endif

/* Each code: cport's name, its number (Linux's errno, on every platform) and its text (glibc's,
 * on every platform). On POSIX the code is also the C library's -errno, with its strerror. */
#ifdef _WIN32
#define SYS_ERRNO(name) 0
#else
#define SYS_ERRNO(name) name
#endif
#define C(name, num, text)                                                                         \
  { CP_##name, num, text, SYS_ERRNO(name) }

static void test_codes(void) {
  static const struct {
    int cp, num;
    const char *text;
    int e;
  } codes[] = {C(EPERM, 1, "Operation not permitted"),
               C(ENOENT, 2, "No such file or directory"),
               C(EINTR, 4, "Interrupted system call"),
               C(EIO, 5, "Input/output error"),
               C(ENXIO, 6, "No such device or address"),
               C(EBADF, 9, "Bad file descriptor"),
               C(EAGAIN, 11, "Resource temporarily unavailable"),
               C(ENOMEM, 12, "Cannot allocate memory"),
               C(EACCES, 13, "Permission denied"),
               C(EFAULT, 14, "Bad address"),
               C(EBUSY, 16, "Device or resource busy"),
               C(EEXIST, 17, "File exists"),
               C(ENODEV, 19, "No such device"),
               C(EINVAL, 22, "Invalid argument"),
               C(ENFILE, 23, "Too many open files in system"),
               C(EMFILE, 24, "Too many open files"),
               C(ENOSPC, 28, "No space left on device"),
               C(EPIPE, 32, "Broken pipe"),
               C(ERANGE, 34, "Numerical result out of range"),
               C(ENOSYS, 38, "Function not implemented"),
               C(ENOTSOCK, 88, "Socket operation on non-socket"),
               C(EMSGSIZE, 90, "Message too long"),
               C(EPROTONOSUPPORT, 93, "Protocol not supported"),
               C(EOPNOTSUPP, 95, "Operation not supported"),
               C(EAFNOSUPPORT, 97, "Address family not supported by protocol"),
               C(EADDRINUSE, 98, "Address already in use"),
               C(EADDRNOTAVAIL, 99, "Cannot assign requested address"),
               C(ENETDOWN, 100, "Network is down"),
               C(ENETUNREACH, 101, "Network is unreachable"),
               C(ECONNABORTED, 103, "Software caused connection abort"),
               C(ECONNRESET, 104, "Connection reset by peer"),
               C(ENOBUFS, 105, "No buffer space available"),
               C(EISCONN, 106, "Transport endpoint is already connected"),
               C(ENOTCONN, 107, "Transport endpoint is not connected"),
               C(ESHUTDOWN, 108, "Cannot send after transport endpoint shutdown"),
               C(ETIMEDOUT, 110, "Connection timed out"),
               C(ECONNREFUSED, 111, "Connection refused"),
               C(EHOSTUNREACH, 113, "No route to host"),
               C(EALREADY, 114, "Operation already in progress"),
               C(EINPROGRESS, 115, "Operation now in progress"),
               C(ECANCELED, 125, "Operation canceled")};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    CHECK_EQ(codes[i].cp, -codes[i].num); /* Linux's numbers everywhere */
    CHECK(!strcmp(cp_strerror(codes[i].cp), codes[i].text));
    CHECK(cp_strerror(codes[i].cp) == cp_strerror(codes[i].num)); /* static, same text */
#ifndef _WIN32
    CHECK_EQ(codes[i].cp, -codes[i].e); /* as libuv: -errno on POSIX */
    CHECK(!strcmp(cp_strerror(codes[i].cp), strerror(codes[i].e)));
#endif
  }
  CHECK_EQ(CP_PORT_CLOSED, CP_ESHUTDOWN);
  CHECK(!strcmp(cp_strerror(0), "Success"));
#ifdef _WIN32
  CHECK(!strcmp(cp_strerror(-122), "Unknown error")); /* Linux's EDQUOT: not cport's */
#else
  CHECK(!strcmp(cp_strerror(-EDQUOT), strerror(EDQUOT))); /* not ours: the C library's */
#endif
  CHECK(!strcmp(cp_strerror(-100000), "Unknown error"));
  CHECK(!strcmp(cp_strerror(INT_MIN), "Unknown error"));
  CHECK(!strcmp(cp_strerror(INT_MAX), "Unknown error"));
}

static void test_buf(void) {
  char data[10];
  cp_buf b = cp_buf_init(data, sizeof data);
  CHECK(b.base == data);
  CHECK_EQ(b.len, sizeof data);
#ifdef _WIN32
  /* laid out as WSABUF: an array goes to Winsock as it is */
  CHECK_EQ(sizeof(cp_buf), sizeof(WSABUF));
  WSABUF *v = (WSABUF *)(void *)&b;
  CHECK(v->buf == data);
  CHECK_EQ(v->len, sizeof data);
#else
  /* laid out as struct iovec: an array goes to the kernel as it is */
  CHECK_EQ(sizeof(cp_buf), sizeof(struct iovec));
  struct iovec *v = (struct iovec *)(void *)&b;
  CHECK(v->iov_base == data);
  CHECK_EQ(v->iov_len, sizeof data);
#endif
}

static void test_sockaddr(void) {
  struct sockaddr_storage ss;
  socklen_t len;
  CHECK_EQ(cp_sockaddr_make(&ss, &len, "127.0.0.1", 80), 0);
  CHECK_EQ(ss.ss_family, AF_INET);
  CHECK_EQ(len, sizeof(struct sockaddr_in));
  CHECK_EQ(cp_sockaddr_port((struct sockaddr *)&ss), 80);
  CHECK_EQ(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
  CHECK_EQ(cp_sockaddr_make(&ss, &len, "localhost", 81), 0);
  CHECK_EQ(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
  CHECK_EQ(cp_sockaddr_make(&ss, &len, NULL, 82), 0);
  CHECK_EQ(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
  CHECK_EQ(cp_sockaddr_port((struct sockaddr *)&ss), 82);
  CHECK_EQ(cp_sockaddr_make(&ss, &len, "::1", 65535), 0);
  CHECK_EQ(ss.ss_family, AF_INET6);
  CHECK_EQ(len, sizeof(struct sockaddr_in6));
  CHECK_EQ(cp_sockaddr_port((struct sockaddr *)&ss), 65535);
  CHECK_EQ(cp_sockaddr_make(&ss, &len, "example.com", 1), CP_EINVAL); /* no DNS */
  CHECK_EQ(cp_sockaddr_make(&ss, &len, "1.2.3.4.5", 1), CP_EINVAL);
  CHECK_EQ(cp_sockaddr_make(NULL, &len, "1.2.3.4", 1), CP_EINVAL);
  CHECK_EQ(cp_sockaddr_make(&ss, NULL, "1.2.3.4", 1), CP_EINVAL);
  CHECK_EQ(cp_sockaddr_port(NULL), 0);
}

static void test_sockets(void) {
  cp_port *p = test_port(NULL);
  cp_socket_t lsock = CP_INVALID_SOCKET;
  uint16_t port = 0;
  CHECK_EQ(cp_socket_listen(&lsock, "127.0.0.1", 0, 16, &port), 0);
  CHECK(lsock != CP_INVALID_SOCKET);
  CHECK(port != 0);
  CHECK(test_is_nonblocking((int)lsock)); /* nothing waits on it yet */
  CHECK(test_is_cloexec((int)lsock));

  /* the same port again: in use, and nothing created */
  cp_socket_t other = CP_INVALID_SOCKET;
  CHECK_EQ(cp_socket_listen(&other, "127.0.0.1", port, 0, NULL), CP_EADDRINUSE);
  CHECK(other == CP_INVALID_SOCKET);
  CHECK_EQ(cp_socket_listen(&other, "no.such.host", 0, 0, NULL), CP_EINVAL);
  CHECK_EQ(cp_socket_listen(NULL, "127.0.0.1", 0, 0, NULL), CP_EINVAL);

  /* accept through the port, connect with the helper */
  CHECK_EQ(cp_port_associate(p, lsock, NULL), 0);
  cp_op aop;
  CHECK_EQ(cp_port_accept(p, lsock, &aop, NULL, NULL), 0);
  cp_socket_t cli = CP_INVALID_SOCKET;
  CHECK_EQ(cp_socket_connect(&cli, "127.0.0.1", port, 10000), 0);
  CHECK(!test_is_nonblocking((int)cli)); /* left blocking, for simple clients */
  CHECK_EQ(cp_socket_nodelay(cli, 1), 0);
  int v = 0;
  socklen_t vl = sizeof v;
  CHECK_EQ(getsockopt(cli, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
  CHECK(v);
  cp_completion c = test_wait_one(p);
  CHECK(c.op == &aop);
  CHECK(c.result >= 0);
  cp_socket_t srv = (cp_socket_t)c.result;

  CHECK_EQ(cp_socket_send(cli, "hello", 5), 5);
  char buf[16];
  int64_t got = 0;
  while (got < 5) {
    int64_t n = cp_socket_recv(srv, buf + got, sizeof buf - (size_t)got);
    if (n == CP_EAGAIN) { /* the accepted socket is nonblocking */
      test_sleep_ms(1);
      continue;
    }
    CHECK(n > 0);
    got += n;
  }
  CHECK(!memcmp(buf, "hello", 5));
  CHECK_EQ(cp_socket_send(srv, "ok", 2), 2);
  CHECK_EQ(cp_socket_recv(cli, buf, sizeof buf), 2);
  CHECK(!memcmp(buf, "ok", 2));
  CHECK_EQ(cp_socket_recv(cli, NULL, 1), CP_EINVAL);
  CHECK_EQ(cp_socket_send(cli, NULL, 1), CP_EFAULT);
  CHECK_EQ(cp_socket_close(srv), 0);
  CHECK_EQ(cp_socket_recv(cli, buf, sizeof buf), 0); /* peer closed */
  CHECK_EQ(cp_socket_close(cli), 0);
  CHECK_EQ(cp_socket_close(cli), CP_EBADF); /* twice: not open any more */
  CHECK_EQ(cp_socket_close(CP_INVALID_SOCKET), 0);

  /* an unconnected socket connected through the port */
  cp_socket_t s2;
  CHECK_EQ(cp_socket_tcp(&s2, AF_INET), 0);
  CHECK_EQ(cp_socket_tcp(&s2, AF_UNIX), CP_EAFNOSUPPORT);
  CHECK_EQ(cp_socket_tcp(NULL, AF_INET), CP_EINVAL);
  CHECK_EQ(cp_port_associate(p, s2, NULL), 0);
  struct sockaddr_storage ss;
  socklen_t len;
  CHECK_EQ(cp_sockaddr_make(&ss, &len, "127.0.0.1", port), 0);
  cp_op cop;
  CHECK_EQ(cp_port_connect(p, s2, &cop, (struct sockaddr *)&ss, len), 0);
  cp_op aop2;
  CHECK_EQ(cp_port_accept(p, lsock, &aop2, NULL, NULL), 0);
  int seen = 0;
  cp_socket_t acc = CP_INVALID_SOCKET;
  for (int i = 0; i < 2; i++) {
    c = test_wait_one(p);
    CHECK(c.op == &cop || c.op == &aop2);
    CHECK(c.result >= 0);
    if (c.op == &aop2)
      acc = (cp_socket_t)c.result;
    seen |= c.op == &cop ? 1 : 2;
  }
  CHECK_EQ(seen, 3);
  /* connected, nothing to read yet (Windows can tell only then: test.h) */
  CHECK(test_is_nonblocking((int)s2));
  CHECK_EQ(cp_socket_close(acc), 0);
  cp_port_disassociate(p, s2);
  cp_socket_close(s2);

  /* refused: nothing listens (a port held bound, not listening: the listener's own, once
   * closed, may be taken meanwhile by a test running in parallel) */
  cp_port_disassociate(p, lsock);
  CHECK_EQ(cp_socket_close(lsock), 0);
  struct sockaddr_in dead;
  int held = test_unlistened(&dead);
  CHECK_EQ(cp_socket_connect(&cli, "127.0.0.1", ntohs(dead.sin_port), 10000), CP_ECONNREFUSED);
  close(held);
  CHECK_EQ(cp_socket_connect(&cli, "bad host", port, 10000), CP_EINVAL);
  CHECK_EQ(cp_socket_connect(NULL, "127.0.0.1", port, 10000), CP_EINVAL);
  cp_port_destroy(p);
}

int main(void) {
  test_begin("test_socket_api", 60);
  test_codes();
  test_buf();
  test_sockaddr();
  test_sockets();
  return 0;
}
