/*
 * redis_fixture.h - a real redis-server for a test. Header-only.
 *
 * redis_fixture_start() runs Debian's redis-server on a free 127.0.0.1 port
 * with a temporary directory of its own (mkdtemp under $TMPDIR or /tmp), no
 * persistence unless asked (aof: appendonly yes, appendfsync always), and
 * returns once it answers PING (a NOAUTH error counts: it answers). It is
 * always stopped: by redis_fixture_stop(), at exit (atexit: a CHECK that
 * fails exits), and - when the test dies any other way (a crash, the
 * watchdog's _exit, kill -9) - by the kernel: SIGKILL when its parent dies
 * (PR_SET_PDEATHSIG, set by setpriv --pdeathsig KILL before it execs
 * redis-server; it is started with posix_spawn). Only the temporary directory outlives
 * such a death. Returns 77 (skip) from the test if redis-server is missing.
 */
#ifndef CPORT_TEST_REDIS_FIXTURE_H
#define CPORT_TEST_REDIS_FIXTURE_H

#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct redis_fixture {
  pid_t pid; /* 0: not running */
  uint16_t port;
  bool aof;
  char pass[64]; /* requirepass, or "" */
  char dir[256];
} redis_fixture;

#define REDIS_FIXTURE_MAX 8
static redis_fixture *redis_fixtures[REDIS_FIXTURE_MAX];

static inline const char *redis_fixture_binary(void) {
  const char *b = getenv("CPORT_REDIS_SERVER");
  return b && *b ? b : "/usr/bin/redis-server";
}

static inline uint16_t redis_fixture_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

static inline void redis_fixture_sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* Stop it: SIGTERM (with aof: it fsyncs and exits), SIGKILL after 10 s. */
static inline void redis_fixture_halt(redis_fixture *f, int sig) {
  if (!f->pid)
    return;
  kill(f->pid, sig);
  for (int i = 0; i < 1000; i++) {
    if (waitpid(f->pid, NULL, WNOHANG) == f->pid) {
      f->pid = 0;
      return;
    }
    redis_fixture_sleep_ms(10);
  }
  kill(f->pid, SIGKILL);
  waitpid(f->pid, NULL, 0);
  f->pid = 0;
}

static inline int redis_fixture_rm(const char *p, const struct stat *st, int flag,
                                   struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  remove(p);
  return 0;
}

static inline void redis_fixture_stop(redis_fixture *f) {
  redis_fixture_halt(f, SIGTERM);
  if (f->dir[0])
    nftw(f->dir, redis_fixture_rm, 16, FTW_DEPTH | FTW_PHYS);
  f->dir[0] = 0;
  for (int i = 0; i < REDIS_FIXTURE_MAX; i++)
    if (redis_fixtures[i] == f)
      redis_fixtures[i] = NULL;
}

static inline void redis_fixture_atexit(void) {
  for (int i = 0; i < REDIS_FIXTURE_MAX; i++)
    if (redis_fixtures[i])
      redis_fixture_stop(redis_fixtures[i]);
}

/* Does it answer PING (+PONG, or -NOAUTH with a password set)? */
static inline bool redis_fixture_answers(uint16_t port) {
  struct timeval tv = {1, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
  bool ok = false;
  /* A read timeout too: if our server failed to bind, another process may
   * hold the port and never answer a PING (seen once: a 120 s hang). */
  if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK) {
    redisReply *r = redisCommand(c, "PING");
    ok = r && (r->type == REDIS_REPLY_STATUS ||
               (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOAUTH", 6)));
    if (r)
      freeReplyObject(r);
  }
  if (c)
    redisFree(c);
  return ok;
}

/* Run redis-server on f->port (f->dir exists). 0, or -1 if it exited. */
static inline int redis_fixture_spawn(redis_fixture *f) {
  char port[8], log[300];
  snprintf(port, sizeof port, "%u", f->port);
  snprintf(log, sizeof log, "%s/redis.log", f->dir);
  const char *argv[32];
  int n = 0;
  argv[n++] = redis_fixture_binary();
  argv[n++] = "--port", argv[n++] = port;
  argv[n++] = "--bind", argv[n++] = "127.0.0.1";
  argv[n++] = "--dir", argv[n++] = f->dir;
  argv[n++] = "--logfile", argv[n++] = log;
  argv[n++] = "--daemonize", argv[n++] = "no";
  argv[n++] = "--save", argv[n++] = "";
  argv[n++] = "--appendonly", argv[n++] = f->aof ? "yes" : "no";
  argv[n++] = "--appendfsync", argv[n++] = "always";
  if (f->pass[0])
    argv[n++] = "--requirepass", argv[n++] = f->pass;
  argv[n] = NULL;
  /* posix_spawn, not fork: a fork while other threads (a sanitizer's runtime
   * included) hold locks can leave the child stuck before its exec. The
   * kernel's SIGKILL-on-parent-death is set by setpriv(1) right before it
   * execs redis-server (it survives the exec); without setpriv, fork. */
  static const char setpriv[] = "/usr/bin/setpriv";
  pid_t pid;
  if (access(setpriv, X_OK) == 0) {
    const char *sv[40];
    int m = 0;
    sv[m++] = setpriv, sv[m++] = "--pdeathsig", sv[m++] = "KILL", sv[m++] = "--";
    for (int i = 0; i <= n; i++)
      sv[m++] = argv[i];
    extern char **environ;
    if (posix_spawn(&pid, setpriv, NULL, NULL, (char *const *)sv, environ) != 0)
      return -1;
  } else {
    pid_t parent = getpid();
    pid = fork();
    if (pid < 0)
      return -1;
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) /* the parent died before prctl */
        _exit(1);
      execv(argv[0], (char *const *)argv);
      _exit(127);
    }
  }
  f->pid = pid;
  for (int i = 0; i < 1000; i++) { /* up to 10 s on a loaded machine */
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      f->pid = 0;
      return -1; /* exited: the port was taken meanwhile, or a bad option */
    }
    if (redis_fixture_answers(f->port))
      return 0;
    redis_fixture_sleep_ms(10);
  }
  redis_fixture_halt(f, SIGKILL);
  return -1;
}

/* Start on a free port. aof: appendonly yes + appendfsync always. pass: a
 * requirepass, or NULL. 0; exits 77 without redis-server, 1 if it fails.
 * f must be static (or allocated): the atexit stop reads it after main. */
static inline int redis_fixture_start(redis_fixture *f, bool aof, const char *pass) {
  static bool registered;
  if (access(redis_fixture_binary(), X_OK) != 0) {
    fprintf(stderr, "redis fixture: %s not found (scripts/setup installs it): skipped\n",
            redis_fixture_binary());
    exit(77);
  }
  memset(f, 0, sizeof *f);
  f->aof = aof;
  snprintf(f->pass, sizeof f->pass, "%s", pass ? pass : "");
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%s/cport-redis-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir)) {
    perror("redis fixture: mkdtemp");
    exit(1);
  }
  for (int i = 0; i < REDIS_FIXTURE_MAX; i++)
    if (!redis_fixtures[i]) {
      redis_fixtures[i] = f;
      break;
    }
  if (!registered) {
    atexit(redis_fixture_atexit);
    registered = true;
  }
  for (int attempt = 0; attempt < 5; attempt++) {
    f->port = redis_fixture_free_port();
    if (f->port && redis_fixture_spawn(f) == 0)
      return 0;
  }
  fprintf(stderr, "redis fixture: redis-server did not start (see %s/redis.log)\n", f->dir);
  exit(1);
}

/* Restart on the same port and directory: SIGTERM (kill9: SIGKILL), then
 * start again. Without aof the data is gone; with it, it is back. */
static inline void redis_fixture_restart(redis_fixture *f, bool kill9) {
  redis_fixture_halt(f, kill9 ? SIGKILL : SIGTERM);
  for (int attempt = 0; attempt < 50; attempt++) {
    if (redis_fixture_spawn(f) == 0)
      return;
    redis_fixture_sleep_ms(100); /* the old socket may linger a moment */
  }
  fprintf(stderr, "redis fixture: redis-server did not restart on port %u\n", f->port);
  exit(1);
}

#endif
