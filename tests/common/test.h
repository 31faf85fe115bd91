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

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

static void test_watchdog_fired(int sig) {
  (void)sig;
  static const char msg[] = "test: watchdog: the test hung\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(1);
}

/* Start the watchdog and say which test runs. */
static inline void test_begin(const char *name, unsigned seconds) {
  signal(SIGALRM, test_watchdog_fired);
  signal(SIGPIPE, SIG_IGN); /* the test's own plain sockets */
  alarm(seconds);
  const char *b = getenv("CPORT_BACKEND");
  fprintf(stderr, "%s (CPORT_BACKEND=%s)\n", name, b ? b : "unset");
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
static inline int test_connect_rcvbuf(const struct sockaddr_in *addr, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  if (rcvbuf) /* before connect: it sets the window the peer sees */
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0);
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) {
      fprintf(stderr, "connect: %s\n", strerror(errno));
      exit(1);
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int r;
    while ((r = poll(&pfd, 1, 30000)) < 0 && errno == EINTR)
      ;
    CHECK_EQ(r, 1);
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      fprintf(stderr, "connect: %s\n", strerror(err));
      exit(1);
    }
  }
  test_set_nonblock(fd, false);
  struct timeval tv = {.tv_sec = 30};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
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
