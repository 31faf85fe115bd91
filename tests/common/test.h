/*
 * test.h - what every cport test program shares. Header-only.
 *
 * A test is one program: main() returns 0 (pass), exits 1 (fail) through
 * CHECK, or 77 (skip). It runs under a watchdog so a hang fails instead of
 * blocking CI. The build runs each test twice, with CPORT_BACKEND=uring and
 * =epoll; tests create ports with the backend left to the environment.
 * Assertions are about behaviour (counts, bytes, results), never about time.
 */
#ifndef CPORT_TEST_H
#define CPORT_TEST_H

#define _GNU_SOURCE
#include <cport.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <io.h>
#include <limits.h>
#include <windows.h>
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

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

/* Sanitizers slow everything down; loads are scaled down under them. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define TEST_SANITIZED 1
#endif
#endif
#ifndef TEST_SANITIZED
#define TEST_SANITIZED 0
#endif
/* Slow: under a sanitizer, or under Wine (every socket call a wineserver round trip); engine
 * tests scale their load down (never their assertions) when it is set. */
#if TEST_SANITIZED || defined(_WIN32)
#define TEST_SLOW 1
#else
#define TEST_SLOW 0
#endif

#ifdef _WIN32
/*
 * Windows (mingw-w64, run under Wine): the tests keep their POSIX socket calls on plain sockets
 * (held in an int: a SOCKET fits while handle values are small, as they are under Wine and in
 * practice on Windows). The calls below are Winsock's with POSIX's conventions: -1 and errno
 * (EAGAIN, ECONNRESET, EINPROGRESS, ...) on failure, MSG_DONTWAIT, SOCK_NONBLOCK, SHUT_WR,
 * close() on a socket. cport's own results are compared with CP_E* on both platforms.
 */
#define MSG_NOSIGNAL 0
#define MSG_DONTWAIT 0x40000000 /* test_win_recv: poll first, EAGAIN if nothing is there */
#define SOCK_NONBLOCK 0x40000000
#define SOCK_CLOEXEC 0x20000000
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#ifndef IOV_MAX
#define IOV_MAX CP_BUF_MAX
#endif

static inline int test_win_fail(int connecting) {
  int e = WSAGetLastError();
  switch (e) {
  case WSAEWOULDBLOCK:
    errno = connecting ? EINPROGRESS : EAGAIN;
    break;
  case WSAETIMEDOUT:
    errno = connecting ? ETIMEDOUT : EAGAIN; /* SO_RCVTIMEO ran out: EAGAIN on Linux */
    break;
  case WSAECONNRESET:
  case WSAECONNABORTED:
    errno = ECONNRESET;
    break;
  case WSAECONNREFUSED:
    errno = ECONNREFUSED;
    break;
  case WSAEINTR:
    errno = EINTR;
    break;
  case WSAENOTCONN:
    errno = ENOTCONN;
    break;
  case WSAESHUTDOWN:
    errno = EPIPE;
    break;
  case WSAEINVAL:
    errno = EINVAL;
    break;
  case WSAENOTSOCK:
    errno = EBADF;
    break;
  default:
    errno = EIO;
  }
  return -1;
}

static inline int test_win_socket(int family, int type, int proto) {
  SOCKET s = WSASocketW(family, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), proto, NULL, 0,
                        WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
  if (s == INVALID_SOCKET)
    return test_win_fail(0);
  u_long on = 1;
  if (type & SOCK_NONBLOCK)
    ioctlsocket(s, FIONBIO, &on);
  return (int)s;
}

static inline int test_win_connect(int fd, const struct sockaddr *a, int len) {
  return connect((SOCKET)fd, a, len) ? test_win_fail(1) : 0;
}

static inline int test_win_accept4(int fd, struct sockaddr *a, int *len, int flags) {
  SOCKET s = accept((SOCKET)fd, a, len);
  if (s == INVALID_SOCKET)
    return test_win_fail(0);
  u_long on = (flags & SOCK_NONBLOCK) != 0;
  ioctlsocket(s, FIONBIO, &on);
  return (int)s;
}

static inline int test_win_recv(int fd, void *buf, size_t len, int flags) {
  if (flags & MSG_DONTWAIT) {
    WSAPOLLFD p = {.fd = (SOCKET)fd, .events = POLLRDNORM};
    if (WSAPoll(&p, 1, 0) == 0) {
      errno = EAGAIN;
      return -1;
    }
  }
  int n = recv((SOCKET)fd, buf, len > INT_MAX ? INT_MAX : (int)len, flags & ~MSG_DONTWAIT);
  return n == SOCKET_ERROR ? test_win_fail(0) : n;
}

static inline int test_win_send(int fd, const void *buf, size_t len, int flags) {
  int n = send((SOCKET)fd, buf, len > INT_MAX ? INT_MAX : (int)len, flags);
  return n == SOCKET_ERROR ? test_win_fail(0) : n;
}

/* poll(): entries with a negative fd are left out (POSIX ignores them; Wine's WSAPoll fails). */
static inline int test_win_poll(struct pollfd *p, unsigned long n, int ms) {
  WSAPOLLFD *q = calloc(n ? n : 1, sizeof *q);
  CHECK(q != NULL);
  unsigned long k = 0;
  for (unsigned long i = 0; i < n; i++) {
    p[i].revents = 0;
    if ((int)p[i].fd >= 0)
      q[k++] = p[i];
  }
  int r = k ? WSAPoll(q, k, ms) : (Sleep(ms < 0 ? INFINITE : (DWORD)ms), 0);
  for (unsigned long i = 0, j = 0; r > 0 && i < n; i++)
    if ((int)p[i].fd >= 0)
      p[i].revents = q[j++].revents;
  free(q);
  return r == SOCKET_ERROR ? test_win_fail(0) : r;
}

#define socket(f, t, p) test_win_socket(f, t, p)
#define connect(s, a, l) test_win_connect(s, a, (int)(l))
#define accept4(s, a, l, f) test_win_accept4(s, a, l, f)
#define recv(s, b, n, f) test_win_recv(s, b, n, f)
#define send(s, b, n, f) test_win_send(s, b, n, f)
#define poll(p, n, ms) test_win_poll(p, n, ms)
static inline int test_win_close(int fd) {
  if (closesocket((SOCKET)fd) == 0)
    return 0;
  return WSAGetLastError() == WSAENOTSOCK ? _close(fd) : test_win_fail(0); /* a C runtime fd */
}

#define close(fd) test_win_close(fd)
#define shutdown(s, h) (shutdown((SOCKET)(s), h) ? test_win_fail(0) : 0)
#define bind(s, a, l) bind((SOCKET)(s), a, l)
#define listen(s, n) listen((SOCKET)(s), n)
#define getsockname(s, a, l) getsockname((SOCKET)(s), a, l)
#define getpeername(s, a, l) getpeername((SOCKET)(s), a, l)
/* Winsock's option values are char pointers. */
#define setsockopt(s, l, o, v, n) setsockopt((SOCKET)(s), l, o, (const char *)(v), n)
#define getsockopt(s, l, o, v, n) getsockopt((SOCKET)(s), l, o, (char *)(v), n)

static DWORD WINAPI test_watchdog(void *arg) {
  Sleep((DWORD)(uintptr_t)arg * 1000u);
  static const char msg[] = "test: watchdog: the test hung\n";
  DWORD w;
  WriteFile(GetStdHandle(STD_ERROR_HANDLE), msg, sizeof msg - 1, &w, NULL);
  TerminateProcess(GetCurrentProcess(), 1); /* not ExitProcess: a hung thread may hold a lock */
  return 0;
}

static inline void test_watchdog_start(unsigned seconds) {
  HANDLE t = CreateThread(NULL, 0, test_watchdog, (void *)(uintptr_t)seconds, 0, NULL);
  if (t)
    CloseHandle(t);
  WSADATA wd;
  WSAStartup(MAKEWORD(2, 2), &wd); /* the test's own plain sockets */
}

static inline uint64_t test_now_ms(void) {
  return (uint64_t)GetTickCount64();
}

static inline void test_sleep_ms(unsigned ms) {
  Sleep(ms);
}

/* Let other threads run a little (a poll loop's pause). */
static inline void test_nap(void) {
  Sleep(0);
}

static inline void test_raise_nofile(void) {}

#define setenv(name, value, overwrite) _putenv_s(name, value)
#define unsetenv(name) _putenv_s(name, "")

/* Bytes received and not yet read (FIONREAD). */
static inline int test_unread(int fd) {
  u_long n = 0;
  CHECK(ioctlsocket((SOCKET)fd, FIONREAD, &n) == 0);
  return (int)n;
}

static inline unsigned long test_nofile(void) {
  return 1ul << 24; /* no per-process socket limit to speak of */
}

static inline void test_set_nonblock(int fd, bool on) {
  u_long v = on;
  CHECK(ioctlsocket((SOCKET)fd, FIONBIO, &v) == 0);
}

/* Is fd an open socket? */
static inline bool test_is_open(int fd) {
  int type = 0, len = sizeof type;
  return getsockopt((SOCKET)fd, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0;
}

/* Is it kept from child processes (close-on-exec: not inheritable)? */
static inline bool test_is_cloexec(int fd) {
  DWORD fl = 0;
  CHECK(GetHandleInformation((HANDLE)(uintptr_t)fd, &fl));
  return !(fl & HANDLE_FLAG_INHERIT);
}

/* Is this socket listening? */
static inline bool test_win_listening(int fd) {
  BOOL listening = FALSE;
  int len = sizeof listening;
  return getsockopt((SOCKET)fd, SOL_SOCKET, SO_ACCEPTCONN, (char *)&listening, &len) == 0 &&
         listening;
}

/* Is this socket nonblocking? Windows cannot say, so it is tried: a listener with no connection
 * waiting fails accept() with WSAEWOULDBLOCK at once (a blocking one would hang: the watchdog
 * fails the test); a connected socket with nothing to read gets a receive with a 1 ms timeout:
 * WSAEWOULDBLOCK at once, or WSAETIMEDOUT (blocking). */
static inline bool test_is_nonblocking(int fd) {
  if (test_win_listening(fd)) {
    SOCKET a = accept((SOCKET)fd, NULL, NULL);
    CHECK(a == INVALID_SOCKET); /* the caller made sure nothing waits */
    CHECK_EQ(WSAGetLastError(), WSAEWOULDBLOCK);
    return true;
  }
  DWORD t = 1, none = 0;
  char c;
  CHECK(setsockopt((SOCKET)fd, SOL_SOCKET, SO_RCVTIMEO, (const char *)&t, sizeof t) == 0);
  int n = recv((SOCKET)fd, &c, 1, MSG_PEEK);
  int e = WSAGetLastError();
  setsockopt((SOCKET)fd, SOL_SOCKET, SO_RCVTIMEO, (const char *)&none, sizeof none);
  CHECK(n == SOCKET_ERROR && (e == WSAEWOULDBLOCK || e == WSAETIMEDOUT));
  return e == WSAEWOULDBLOCK;
}

/* Can test_is_nonblocking() tell a blocking socket of this kind without hanging? (Not a
 * listener on Windows: a blocking accept() would wait for a connection.) */
static inline bool test_can_tell_blocking(int fd) {
  return !test_win_listening(fd);
}

/* Something open that is not a socket: an anonymous pipe (its two ends as numbers). */
static inline void test_pipe(int fds[2]) {
  HANDLE r, w;
  CHECK(CreatePipe(&r, &w, NULL, 0));
  fds[0] = (int)(intptr_t)r;
  fds[1] = (int)(intptr_t)w;
}

static inline void test_pipe_close(int fds[2]) {
  CHECK(CloseHandle((HANDLE)(intptr_t)fds[0]));
  CHECK(CloseHandle((HANDLE)(intptr_t)fds[1]));
}

/* The pipe is as it was: still a pipe, and a byte written to it is read back (a blocking read
 * that a bound or changed handle would fail). */
static inline void test_pipe_untouched(int fds[2]) {
  HANDLE r = (HANDLE)(intptr_t)fds[0], w = (HANDLE)(intptr_t)fds[1];
  CHECK_EQ(GetFileType(r), FILE_TYPE_PIPE);
  DWORD n = 0;
  char c = 'x', got = 0;
  CHECK(WriteFile(w, &c, 1, &n, NULL) && n == 1);
  CHECK(ReadFile(r, &got, 1, &n, NULL) && n == 1 && got == 'x');
}

/* Receive (and send) timeouts of a blocking socket, in ms. */
static inline void test_set_timeouts(int fd, unsigned ms) {
  DWORD t = ms;
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t) == 0);
  CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, sizeof t) == 0);
}

#else /* POSIX */

static void test_watchdog_fired(int sig) {
  (void)sig;
  static const char msg[] = "test: watchdog: the test hung\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(1);
}

static inline void test_watchdog_start(unsigned seconds) {
  signal(SIGALRM, test_watchdog_fired);
  signal(SIGPIPE, SIG_IGN); /* the test's own plain sockets */
  alarm(seconds);
}

static inline uint64_t test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void test_sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) && errno == EINTR)
    ;
}

/* Let other threads run a little (a poll loop's pause). */
static inline void test_nap(void) {
  struct timespec ts = {.tv_nsec = 200000};
  nanosleep(&ts, NULL);
}

/* Bytes received and not yet read (FIONREAD). */
static inline int test_unread(int fd) {
  int n = 0;
  CHECK(ioctl(fd, FIONREAD, &n) == 0);
  return n;
}

static inline void test_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static inline unsigned long test_nofile(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  return (unsigned long)rl.rlim_cur;
}

static inline void test_set_nonblock(int fd, bool on) {
  int fl = fcntl(fd, F_GETFL);
  CHECK(fl >= 0);
  CHECK(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) == 0);
}

/* Is fd open? */
static inline bool test_is_open(int fd) {
  return fcntl(fd, F_GETFD) >= 0;
}

/* Is it close-on-exec? */
static inline bool test_is_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFD);
  CHECK(fl >= 0);
  return (fl & FD_CLOEXEC) != 0;
}

/* Is this socket nonblocking? (On Windows: a listener with nothing waiting, or a connected
 * socket with nothing to read.) */
static inline bool test_is_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  CHECK(fl >= 0);
  return (fl & O_NONBLOCK) != 0;
}

/* Can test_is_nonblocking() tell a blocking socket of this kind? (Always on POSIX.) */
static inline bool test_can_tell_blocking(int fd) {
  (void)fd;
  return true;
}

/* Something open that is not a socket: a pipe. */
static inline void test_pipe(int fds[2]) {
  CHECK_EQ(pipe(fds), 0);
}

static inline void test_pipe_close(int fds[2]) {
  CHECK_EQ(close(fds[0]), 0);
  CHECK_EQ(close(fds[1]), 0);
}

/* The pipe is as it was: its read end still blocking. */
static inline void test_pipe_untouched(int fds[2]) {
  int fl = fcntl(fds[0], F_GETFL);
  CHECK(fl >= 0);
  CHECK(!(fl & O_NONBLOCK));
}

/* Receive (and send) timeouts of a blocking socket, in ms. */
static inline void test_set_timeouts(int fd, unsigned ms) {
  struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0);
}
#endif

/* The number of a socket that was open and is closed now (close() is closesocket() on
 * Windows, above). */
static inline int test_dead_socket(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(s >= 0);
  CHECK_EQ(close(s), 0);
  return s;
}

/* Start the watchdog and say which test runs. */
static inline void test_begin(const char *name, unsigned seconds) {
  setvbuf(stderr, NULL, _IONBF, 0); /* what a test said shows even if it hangs (Windows' C
                                       runtime buffers a redirected stderr) */
  /* Under Wine, tell scripts/wine-run that the program reached main: a run that fails without
   * this file was never started by Wine, and wine-run starts it once more. */
  const char *mark = getenv("CPORT_TEST_STARTED_MARK");
  if (mark) {
    FILE *f = fopen(mark, "w");
    if (f)
      fclose(f);
  }
  test_watchdog_start(seconds);
  const char *b = getenv("CPORT_BACKEND");
  fprintf(stderr, "%s (CPORT_BACKEND=%s)\n", name, b ? b : "unset");
}

/* A loopback address where nothing listens, and stays so: a socket bound to it, not
 * listening, returned (close it after). A connect there is refused. (A listener's port, once
 * closed, may be taken by any other process's listener meanwhile: ctest runs tests in
 * parallel.) */
static inline int test_unlistened(struct sockaddr_in *addr) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(s >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK_EQ(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  CHECK_EQ(getsockname(s, (struct sockaddr *)&a, &len), 0);
  *addr = a;
  return s;
}

/* A loopback listener on a free port (nonblocking). */
static inline int test_listener(struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(fd, 4096) == 0);
  socklen_t len = sizeof a;
  CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
  if (addr)
    *addr = a;
  return fd;
}

/* A blocking client connected to addr (with send/recv timeouts), its receive
 * buffer set to rcvbuf bytes if not 0 (a small window). The connect
 * is made nonblocking and waited for with poll(): on the uring backend the
 * kernel delivers completion work to a thread that started ops like a
 * signal, so that thread's blocking calls may return EINTR, and connect()
 * cannot simply be retried. */
/* Connect the nonblocking fd to addr and wait for the outcome: 0, or the
 * connect's errno (ECONNREFUSED, ...). */
static inline int test_connect_wait(int fd, const struct sockaddr_in *addr) {
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0)
    return 0;
  if (errno != EINPROGRESS && errno != EINTR)
    return errno;
  struct pollfd pfd = {.fd = fd, .events = POLLOUT};
  int r;
  while ((r = poll(&pfd, 1, 30000)) < 0 && errno == EINTR)
    ;
  CHECK_EQ(r, 1);
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

static inline int test_connect_rcvbuf(const struct sockaddr_in *addr, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  if (rcvbuf) /* before connect: it sets the window the peer sees */
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0);
  int err = test_connect_wait(fd, addr);
  if (err) {
    fprintf(stderr, "connect: %s\n", strerror(err));
    exit(1);
  }
  test_set_nonblock(fd, false);
  test_set_timeouts(fd, 30000);
  return fd;
}

static inline int test_connect(const struct sockaddr_in *addr) {
  return test_connect_rcvbuf(addr, 0);
}

/* A connected pair over loopback: *client blocking, *server nonblocking. */
static inline void test_pair(int lfd, const struct sockaddr_in *addr, int *client, int *server) {
  *client = test_connect(addr);
  int s;
  for (;;) {
    s = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s >= 0 || errno != EAGAIN)
      break;
    test_sleep_ms(1);
  }
  CHECK(s >= 0);
  *server = s;
}

static inline void test_send_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    CHECK(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

static inline void test_recv_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len) {
    ssize_t n = recv(fd, p, len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    CHECK(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

/* Close with RST instead of FIN. */
static inline void test_reset(int fd) {
  struct linger l = {.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
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
