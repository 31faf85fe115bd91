/*
 * tests/windows/shim/common/test.h - tests/common/test.h for the Windows build, so that the
 * port suite's programs (tests/port) compile unchanged with mingw-w64 and run under Wine
 * (cmake/windows.cmake puts this directory before tests/). Same helpers, same contract, on
 * Winsock and Win32. A stop-gap until tests/common/test.h itself is portable:
 *  - the tests hold sockets in an int (a SOCKET fits while handle values are small, as they
 *    are under Wine and in practice on Windows); close() on one is closesocket();
 *  - they compare results with -EXXX: the errno names that mingw numbers differently from
 *    Linux are given Linux's numbers here, so that -ECANCELED == CP_ECANCELED as on Linux.
 * Tests that need what Windows has not (fork, fcntl flags, pipes, rlimits) are not built.
 */
#ifndef CPORT_TEST_H
#define CPORT_TEST_H

#include <winsock2.h>
#include <ws2tcpip.h>

#include <cport.h>

#include <errno.h>
#include <inttypes.h>
#include <io.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <windows.h>

/* Linux's numbers for the errno names mingw numbers otherwise (cport/error.h's CP_E*). */
#undef ECANCELED
#define ECANCELED 125
#undef ESHUTDOWN
#define ESHUTDOWN 108
#undef ECONNRESET
#define ECONNRESET 104
#undef ENOTCONN
#define ENOTCONN 107
#undef ECONNREFUSED
#define ECONNREFUSED 111
#undef ECONNABORTED
#define ECONNABORTED 103
#undef ETIMEDOUT
#define ETIMEDOUT 110
#undef EALREADY
#define EALREADY 114
#undef EADDRINUSE
#define EADDRINUSE 98
#undef ENOTSOCK
#define ENOTSOCK 88
#undef EISCONN
#define EISCONN 106
#undef EINPROGRESS
#define EINPROGRESS 115
#undef ENOBUFS
#define ENOBUFS 105
#undef EOPNOTSUPP
#define EOPNOTSUPP 95
#undef EAFNOSUPPORT
#define EAFNOSUPPORT 97
#undef EHOSTUNREACH
#define EHOSTUNREACH 113
#undef ENETUNREACH
#define ENETUNREACH 101
#define MSG_NOSIGNAL 0
#ifndef IOV_MAX
#define IOV_MAX CP_BUF_MAX
#endif
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#define close(fd) closesocket((SOCKET)(fd))
/* Winsock's option values are char pointers. */
#define setsockopt(s, l, o, v, n) setsockopt((SOCKET)(s), l, o, (const char *)(v), n)
#define getsockopt(s, l, o, v, n) getsockopt((SOCKET)(s), l, o, (char *)(v), n)

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

#define CHECK_EQ(a, b)                                                                             \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__, __LINE__, #a,  \
              a_, #b, b_);                                                                         \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

#define TEST_SANITIZED 0

static DWORD WINAPI test_watchdog(void *arg) {
  Sleep((DWORD)(uintptr_t)arg * 1000u);
  static const char msg[] = "test: watchdog: the test hung\n";
  fwrite(msg, 1, sizeof msg - 1, stderr);
  fflush(stderr);
  ExitProcess(1);
}

static inline void test_begin(const char *name, unsigned seconds) {
  HANDLE t = CreateThread(NULL, 0, test_watchdog, (void *)(uintptr_t)seconds, 0, NULL);
  if (t)
    CloseHandle(t);
  WSADATA wd;
  WSAStartup(MAKEWORD(2, 2), &wd); /* the test's own plain sockets */
  const char *b = getenv("CPORT_BACKEND");
  fprintf(stderr, "%s (CPORT_BACKEND=%s)\n", name, b ? b : "unset");
}

static inline uint64_t test_now_ms(void) {
  return (uint64_t)GetTickCount64();
}

static inline void test_sleep_ms(unsigned ms) {
  Sleep(ms);
}

static inline void test_raise_nofile(void) {}

static inline unsigned long test_nofile(void) {
  return 1ul << 24; /* no per-process socket limit to speak of */
}

static inline void test_set_nonblock(int fd, bool on) {
  u_long v = on;
  CHECK(ioctlsocket((SOCKET)fd, FIONBIO, &v) == 0);
}

static inline SOCKET test_socket(void) {
  SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                        WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  CHECK(s != INVALID_SOCKET);
  return s;
}

/* A loopback listener on a free port (nonblocking). */
static inline int test_listener(struct sockaddr_in *addr) {
  SOCKET fd = test_socket();
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(fd, SOMAXCONN) == 0);
  int len = sizeof a;
  CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
  test_set_nonblock((int)fd, true);
  if (addr)
    *addr = a;
  return (int)fd;
}

/* A blocking client connected to addr (30 s send/receive timeouts), its receive buffer set to
 * rcvbuf bytes if not 0. */
static inline int test_connect_rcvbuf(const struct sockaddr_in *addr, int rcvbuf) {
  SOCKET fd = test_socket();
  if (rcvbuf)
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, (const char *)&rcvbuf, sizeof rcvbuf) == 0);
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
    fprintf(stderr, "connect: WSA error %d\n", WSAGetLastError());
    exit(1);
  }
  DWORD tmo = 30000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, (const char *)&tmo, sizeof tmo);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, (const char *)&tmo, sizeof tmo);
  return (int)fd;
}

static inline int test_connect(const struct sockaddr_in *addr) {
  return test_connect_rcvbuf(addr, 0);
}

/* A connected pair over loopback: *client blocking, *server nonblocking. */
static inline void test_pair(int lfd, const struct sockaddr_in *addr, int *client, int *server) {
  *client = test_connect(addr);
  SOCKET s;
  for (;;) {
    s = accept((SOCKET)lfd, NULL, NULL);
    if (s != INVALID_SOCKET || WSAGetLastError() != WSAEWOULDBLOCK)
      break;
    test_sleep_ms(1);
  }
  CHECK(s != INVALID_SOCKET);
  test_set_nonblock((int)s, true);
  *server = (int)s;
}

static inline void test_send_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    int n = send((SOCKET)fd, p, len > INT_MAX ? INT_MAX : (int)len, 0);
    CHECK(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

static inline void test_recv_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len) {
    int n = recv((SOCKET)fd, p, len > INT_MAX ? INT_MAX : (int)len, 0);
    CHECK(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

/* Close with RST instead of FIN. */
static inline void test_reset(int fd) {
  struct linger l = {.l_onoff = 1, .l_linger = 0};
  setsockopt((SOCKET)fd, SOL_SOCKET, SO_LINGER, (const char *)&l, sizeof l);
  closesocket((SOCKET)fd);
}

/* Wait for exactly one completion (or fail after 30 s). */
static inline cp_completion test_wait_one(cp_port *p) {
  cp_completion c;
  int n = cp_port_wait(p, &c, 1, 30000);
  CHECK_EQ(n, 1);
  return c;
}

static inline cp_port *test_port(const cp_port_options *o) {
  cp_port *p = NULL;
  int rc = cp_port_create(&p, o);
  if (rc)
    fprintf(stderr, "cp_port_create: %s\n", cp_strerror(rc));
  CHECK_EQ(rc, 0);
  fprintf(stderr, "  backend: %s\n", cp_backend_name(cp_port_backend(p)));
  return p;
}

#endif /* CPORT_TEST_H */
