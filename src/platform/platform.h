/*
 * platform.h - the platform layer: threads, locks, condition variables,
 * once, thread-specific keys, one monotonic clock, and the CPU count.
 *
 * Everything above src/platform (src/common, src/port, src/net) uses these
 * instead of pthreads or Win32, so the only #ifdef for the operating system
 * is the one below that picks the types and inlines the locks' fast paths.
 * The POSIX half is posix.c; the Win32 half (win32.c) defines the same
 * functions on SRWLOCK, CONDITION_VARIABLE, INIT_ONCE, FlsAlloc and
 * _beginthreadex.
 *
 * Atomics are C11 <stdatomic.h> on both (gcc and mingw-w64 gcc ship it).
 *
 * Conventions: functions that can fail return 0 or a negative CP_E* code
 * (equal to -errno on POSIX). Lock, unlock, signal and the like cannot fail
 * on valid objects; a failure there is a bug and aborts in debug builds.
 */
#ifndef CPORT_PLATFORM_H
#define CPORT_PLATFORM_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

typedef struct cp__thread {
  HANDLE handle;
} cp__thread;
typedef SRWLOCK cp__mutex;
typedef CONDITION_VARIABLE cp__cond;
typedef INIT_ONCE cp__once_t;
#define CP__ONCE_INIT INIT_ONCE_STATIC_INIT
typedef DWORD cp__key; /* an FLS index */
static inline void cp__mutex_lock(cp__mutex *m) {
  AcquireSRWLockExclusive(m);
}
static inline void cp__mutex_unlock(cp__mutex *m) {
  ReleaseSRWLockExclusive(m);
}
typedef SRWLOCK cp__lock; /* already a few instructions uncontended */
static inline void cp__lock_init(cp__lock *l) {
  InitializeSRWLock(l);
}
static inline void cp__lock_acquire(cp__lock *l) {
  AcquireSRWLockExclusive(l);
}
static inline void cp__lock_release(cp__lock *l) {
  ReleaseSRWLockExclusive(l);
}

#else /* POSIX */
#include <pthread.h>

typedef struct cp__thread {
  pthread_t handle;
} cp__thread;
typedef pthread_mutex_t cp__mutex;
typedef pthread_cond_t cp__cond; /* waits measure time on CLOCK_MONOTONIC */
typedef pthread_once_t cp__once_t;
#define CP__ONCE_INIT PTHREAD_ONCE_INIT
typedef pthread_key_t cp__key;
static inline void cp__mutex_lock(cp__mutex *m) {
  int rc = pthread_mutex_lock(m);
  assert(rc == 0); /* a failure on a valid mutex is a bug */
  (void)rc;
}
static inline void cp__mutex_unlock(cp__mutex *m) {
  int rc = pthread_mutex_unlock(m);
  assert(rc == 0);
  (void)rc;
}
/* 0 free, 1 held, 2 held and maybe waited for (a futex; see cp__lock below) */
typedef struct cp__lock {
  _Atomic uint32_t v;
} cp__lock;
static inline void cp__lock_init(cp__lock *l) {
  atomic_init(&l->v, 0);
}
void cp__lock_wait(cp__lock *l); /* posix.c: the contended paths */
void cp__lock_wake(cp__lock *l);
static inline void cp__lock_acquire(cp__lock *l) {
  uint32_t free_ = 0;
  if (!atomic_compare_exchange_strong_explicit(&l->v, &free_, 1, memory_order_acquire,
                                               memory_order_relaxed))
    cp__lock_wait(l);
}
static inline void cp__lock_release(cp__lock *l) {
  uint32_t was = atomic_exchange_explicit(&l->v, 0, memory_order_release);
  assert(was != 0); /* it was held */
  if (was == 2)
    cp__lock_wake(l);
}
#endif

/* ---- threads --------------------------------------------------------- */

typedef void (*cp__thread_fn)(void *arg);

/* Start fn(arg) on a new thread. 0, or a negative code and no thread. */
int cp__thread_create(cp__thread *t, cp__thread_fn fn, void *arg);
/* Wait for the thread to end and release it. Once per created thread. */
void cp__thread_join(cp__thread *t);
/* Let another thread run (sched_yield / SwitchToThread). */
void cp__thread_yield(void);
/* A number unique to the calling thread (never 0), never given to another
 * thread, even after this one ends (thread_token.c). */
uintptr_t cp__thread_token(void);
/* Online CPUs, at least 1. */
unsigned cp__cpu_count(void);

/* ---- mutex (not recursive) ------------------------------------------- */

int cp__mutex_init(cp__mutex *m);
void cp__mutex_destroy(cp__mutex *m);
/* cp__mutex_lock(m), cp__mutex_unlock(m): inline, in the block above that
 * picks the types - taken a few times per message on the hot paths, where a
 * call into the platform file (and on to libc) cost more than the lock. */

/* ---- lock (not recursive, no condition variable) ---------------------- */

/* cp__lock: a mutex for the hot paths that never wait on a condition (the
 * io_uring and epoll backends' locks). On Linux a futex word, taken and
 * released inline in one atomic each when uncontended, where glibc's
 * pthread_mutex_lock/unlock took about 55 instructions a pair; a waiter
 * sleeps in the kernel, as with a mutex (safe to hold across a system call).
 * On Windows an SRWLOCK. No destroy.
 *   cp__lock_init(l), cp__lock_acquire(l), cp__lock_release(l): in the block above. */

/* ---- condition variable ---------------------------------------------- */

int cp__cond_init(cp__cond *c);
void cp__cond_destroy(cp__cond *c);
void cp__cond_signal(cp__cond *c);
void cp__cond_broadcast(cp__cond *c);
/* Wait with m held (it is held again on return). Spurious wake-ups happen. */
void cp__cond_wait(cp__cond *c, cp__mutex *m);
/* Wait until the monotonic clock (cp__now_ns) reaches deadline_ns. 0 when
 * woken (or spuriously), CP__TIMEDOUT once the deadline has passed. */
int cp__cond_timedwait(cp__cond *c, cp__mutex *m, uint64_t deadline_ns);
#define CP__TIMEDOUT 1

/* ---- once and thread-specific keys ----------------------------------- */

/* Run fn exactly once for *once; every caller returns after it ran. */
void cp__once(cp__once_t *once, void (*fn)(void));

/* A per-thread slot; dtor (may be NULL) runs with the value at thread exit
 * for a thread whose value is not NULL. 0 or a negative code. */
int cp__key_create(cp__key *k, void (*dtor)(void *));
void cp__key_set(cp__key k, void *value);

/* ---- spin lock ------------------------------------------------------- */

/* For short critical sections on hot paths (a few instructions, no system
 * call inside). One byte of state plus padding; zero-initialised = unlocked. */
typedef struct cp__spin {
  atomic_bool locked;
} cp__spin;

/* Spin, yielding now and then, until the lock looks free. */
void cp__spin_wait(cp__spin *s);

static inline void cp__spin_init(cp__spin *s) {
  atomic_init(&s->locked, false);
}
static inline bool cp__spin_trylock(cp__spin *s) {
  return !atomic_load_explicit(&s->locked, memory_order_relaxed) &&
         !atomic_exchange_explicit(&s->locked, true, memory_order_acquire);
}
static inline void cp__spin_lock(cp__spin *s) {
  while (!cp__spin_trylock(s))
    cp__spin_wait(s);
}
static inline void cp__spin_unlock(cp__spin *s) {
  atomic_store_explicit(&s->locked, false, memory_order_release);
}
/* For asserts: is it held (by anyone)? */
static inline bool cp__spin_held(cp__spin *s) {
  return atomic_load_explicit(&s->locked, memory_order_relaxed);
}

/* ---- clock ----------------------------------------------------------- */

/* The one clock of cport: monotonic nanoseconds since an arbitrary start
 * (CLOCK_MONOTONIC / QueryPerformanceCounter). Every deadline in the
 * library is measured on it. */
uint64_t cp__now_ns(void);

#endif /* CPORT_PLATFORM_H */
