/*
 * posix.c - the POSIX half of the platform layer (pthreads, CLOCK_MONOTONIC;
 * cp__lock's slow path is a Linux futex, the one system the POSIX half runs on).
 */
#ifndef _WIN32
#define _GNU_SOURCE
#include "platform/platform.h"

#include "common/mem.h"

#include <assert.h>
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A failure of lock/unlock/signal on a valid object is a bug. */
#define CHECK(call)                                                                                \
  do {                                                                                             \
    int rc_ = (call);                                                                              \
    (void)rc_;                                                                                     \
    assert(rc_ == 0);                                                                              \
  } while (0)

/* ---- threads --------------------------------------------------------- */

struct start {
  cp__thread_fn fn;
  void *arg;
};

static void *trampoline(void *p) {
  struct start s = *(struct start *)p;
  mem_free(p);
  s.fn(s.arg);
  return NULL;
}

int cp__thread_create(cp__thread *t, cp__thread_fn fn, void *arg) {
  struct start *s = mem_alloc(sizeof *s);
  if (!s)
    return -ENOMEM;
  s->fn = fn;
  s->arg = arg;
  int rc = pthread_create(&t->handle, NULL, trampoline, s);
  if (rc) {
    mem_free(s);
    return -rc;
  }
  return 0;
}

void cp__thread_join(cp__thread *t) {
  CHECK(pthread_join(t->handle, NULL));
}

void cp__thread_yield(void) {
  sched_yield();
}

unsigned cp__cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1;
}

/* ---- mutex ----------------------------------------------------------- */

int cp__mutex_init(cp__mutex *m) {
  return -pthread_mutex_init(m, NULL);
}
void cp__mutex_destroy(cp__mutex *m) {
  CHECK(pthread_mutex_destroy(m));
}

/* ---- lock ----------------------------------------------------------- */

/* The contended half of cp__lock (platform.h): mark the word 2 ("held, maybe
 * waited for") and sleep while it stays so; the release that finds 2 wakes
 * one sleeper, which takes the lock again as 2 (others may still wait). */
/* A spinning CPU's hint that it waits (the sibling hyperthread runs on). */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

void cp__lock_wait(cp__lock *l) {
  for (unsigned i = 0; i < 64; i++) { /* short holds: a few tries before sleeping */
    uint32_t free_ = 0;
    if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_weak_explicit(&l->v, &free_, 1, memory_order_acquire,
                                              memory_order_relaxed))
      return;
    cpu_relax();
  }
  while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
    syscall(SYS_futex, &l->v, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}
void cp__lock_wake(cp__lock *l) {
  syscall(SYS_futex, &l->v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- condition variable ---------------------------------------------- */

int cp__cond_init(cp__cond *c) {
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc)
    return -rc;
  rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (!rc)
    rc = pthread_cond_init(c, &ca);
  pthread_condattr_destroy(&ca);
  return -rc;
}
void cp__cond_destroy(cp__cond *c) {
  CHECK(pthread_cond_destroy(c));
}
void cp__cond_signal(cp__cond *c) {
  CHECK(pthread_cond_signal(c));
}
void cp__cond_broadcast(cp__cond *c) {
  CHECK(pthread_cond_broadcast(c));
}
void cp__cond_wait(cp__cond *c, cp__mutex *m) {
  CHECK(pthread_cond_wait(c, m));
}
int cp__cond_timedwait(cp__cond *c, cp__mutex *m, uint64_t deadline_ns) {
  struct timespec abs = {.tv_sec = (time_t)(deadline_ns / 1000000000ull),
                         .tv_nsec = (long)(deadline_ns % 1000000000ull)};
  int rc = pthread_cond_timedwait(c, m, &abs);
  assert(rc == 0 || rc == ETIMEDOUT);
  return rc == ETIMEDOUT ? CP__TIMEDOUT : 0;
}

/* ---- once and keys --------------------------------------------------- */

void cp__once(cp__once_t *once, void (*fn)(void)) {
  CHECK(pthread_once(once, fn));
}

int cp__key_create(cp__key *k, void (*dtor)(void *)) {
  return -pthread_key_create(k, dtor);
}
void cp__key_set(cp__key k, void *value) {
  CHECK(pthread_setspecific(k, value));
}

/* ---- spin lock ------------------------------------------------------- */

void cp__spin_wait(cp__spin *s) {
  /* Spin on a plain load (no cache-line ping-pong), then let the holder
   * run: on a machine with fewer cores than threads it may be preempted. */
  for (unsigned i = 0; atomic_load_explicit(&s->locked, memory_order_relaxed); i++) {
    if (i >= 64) {
      sched_yield();
      i = 0;
    } else {
      cpu_relax();
    }
  }
}

/* ---- clock ----------------------------------------------------------- */

uint64_t cp__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif /* !_WIN32 */
