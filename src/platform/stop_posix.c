/*
 * stop_posix.c - stop requests on POSIX: SIGINT and SIGTERM, and the waker of cp_stop_wait (a
 * nonblocking pipe: a handler writes a byte, the waiter polls). The Windows half is win32.c and
 * stop_win32.c.
 *
 * The signals are blocked in the thread that asks for them (and so in every thread it starts
 * later: a program asks first, then starts its service) and taken by a thread of our own in
 * sigwait, so they never interrupt a worker; a thread started earlier that does not block them
 * runs the handler instead. After fork the child starts its own sigwait thread on its next call.
 */
#ifndef _WIN32
#define _GNU_SOURCE
#include "platform/stop_request.h"

#include "cport/error.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <unistd.h>

static void (*_Atomic stop_fn)(int kind); /* read in a signal handler: lock-free */

static void on_signal(int sig) {
  void (*fn)(int) = atomic_load(&stop_fn);
  if (fn)
    fn(sig == SIGINT ? CP__STOP_INTERRUPT : CP__STOP_TERMINATE);
}

static void stop_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
}

/* The sigwait thread: each SIGINT or SIGTERM sent to the process, for as long as it lives. */
static void *sigwait_thread(void *arg) {
  (void)arg;
  sigset_t set;
  stop_signals(&set);
  for (;;) {
    int sig;
    if (sigwait(&set, &sig) == 0)
      on_signal(sig);
  }
  return NULL;
}

static pthread_mutex_t sigwait_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t sigwait_pid; /* the process whose sigwait thread runs (0: none yet) */

int cp__on_stop_request(void (*fn)(int kind)) {
  if (!fn)
    return CP_EINVAL;
  atomic_store(&stop_fn, fn);
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
    return -errno;
  sigset_t set;
  stop_signals(&set);
  int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
  if (rc)
    return -rc;
  pthread_mutex_lock(&sigwait_mu);
  if (sigwait_pid != getpid()) {
    pthread_t t;
    rc = pthread_create(&t, NULL, sigwait_thread, NULL);
    if (rc == 0) {
      pthread_detach(t);
      sigwait_pid = getpid();
    }
  }
  pthread_mutex_unlock(&sigwait_mu);
  return -rc;
}

/* ---- the waker: a pipe ------------------------------------------------ */

static atomic_int wake_rd = -1, wake_wr = -1;

int cp__stop_waker_init(void) {
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC))
    return -errno;
  atomic_store(&wake_rd, p[0]);
  atomic_store(&wake_wr, p[1]);
  return 0;
}

void cp__stop_wake(void) {
  int fd = atomic_load(&wake_wr);
  if (fd < 0)
    return;
  int saved = errno;            /* a signal handler must leave errno as it found it */
  ssize_t n = write(fd, "", 1); /* a full pipe is awake already */
  (void)n;
  errno = saved;
}

void cp__stop_sleep(int timeout_ms) {
  int fd = atomic_load(&wake_rd);
  if (fd < 0)
    return;
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  if (poll(&pfd, 1, timeout_ms) > 0) {
    char sink[64];
    while (read(fd, sink, sizeof sink) > 0) {
    }
  }
}

#endif /* !_WIN32 */
