/*
 * os.h - the few operating-system services the programs need that cport does not offer (a
 * library user would not need them from a network library): a monotonic clock, the process's
 * CPU time, the CPU count, raising the descriptor limit, a sleep, getaddrinfo's header.
 * Header-only; the one #ifdef _WIN32 of apps/ is here. Stop requests are cport's own
 * (cport/stop.h).
 */
#ifndef CPORT_APPS_OS_H
#define CPORT_APPS_OS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <malloc.h> /* _aligned_malloc */
#include <windows.h>
#else
#include "proc_cpu.h"

#include <errno.h>
#include <netdb.h> /* getaddrinfo (Windows: ws2tcpip.h, through cport.h) */
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#endif

/* Monotonic nanoseconds since an arbitrary start. Any thread. */
static inline uint64_t os_now_ns(void) {
#ifdef _WIN32
  static LARGE_INTEGER freq; /* the same value whichever thread sets it first */
  LARGE_INTEGER c;
  if (!freq.QuadPart)
    QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&c);
  uint64_t f = (uint64_t)freq.QuadPart, t = (uint64_t)c.QuadPart;
  return t / f * 1000000000ull + t % f * 1000000000ull / f;
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
#endif
}

/* CPU time the process used so far (user + system, every thread), in seconds. */
static inline double os_cpu_seconds(void) {
#ifdef _WIN32
  FILETIME created, exited, kernel, user; /* 100 ns units */
  if (!GetProcessTimes(GetCurrentProcess(), &created, &exited, &kernel, &user))
    return 0;
  uint64_t k = ((uint64_t)kernel.dwHighDateTime << 32) | kernel.dwLowDateTime;
  uint64_t u = ((uint64_t)user.dwHighDateTime << 32) | user.dwLowDateTime;
  return (double)(k + u) / 1e7;
#else
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru))
    return 0;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
#endif
}

/* The CPU time (user + system) another process used so far, in seconds; < 0 if it cannot be
 * read (no such process, or no right to). Any thread. */
static inline double os_pid_cpu_seconds(long pid) {
#ifdef _WIN32
  HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
  if (!h)
    return -1;
  FILETIME created, exited, kernel, user; /* 100 ns units */
  BOOL ok = GetProcessTimes(h, &created, &exited, &kernel, &user);
  CloseHandle(h);
  if (!ok)
    return -1;
  uint64_t k = ((uint64_t)kernel.dwHighDateTime << 32) | kernel.dwLowDateTime;
  uint64_t u = ((uint64_t)user.dwHighDateTime << 32) | user.dwLowDateTime;
  return (double)(k + u) / 1e7;
#else
  long long t = proc_cpu_ticks(pid);
  return t < 0 ? -1 : (double)t / (double)sysconf(_SC_CLK_TCK);
#endif
}

/* Online CPUs, at least 1. */
static inline unsigned os_cpu_count(void) {
#ifdef _WIN32
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwNumberOfProcessors ? (unsigned)si.dwNumberOfProcessors : 1;
#else
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1;
#endif
}

/* Many connections: use every descriptor we may (the soft limit up to the hard one). Windows
 * has no per-process socket limit to raise. */
static inline void os_raise_fd_limit(void) {
#ifndef _WIN32
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
#endif
}

/* Sleep about ms milliseconds. */
static inline void os_sleep_ms(unsigned ms) {
#ifdef _WIN32
  Sleep(ms);
#else
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
#endif
}

/* size bytes aligned to align (a power of two; size a multiple of it), or NULL. Freed with
 * os_aligned_free only (Windows' C runtime has no aligned_alloc: _aligned_malloc, whose
 * blocks free() must not see). */
static inline void *os_aligned_alloc(size_t align, size_t size) {
#ifdef _WIN32
  return _aligned_malloc(size, align);
#else
  return aligned_alloc(align, size);
#endif
}

static inline void os_aligned_free(void *p) {
#ifdef _WIN32
  _aligned_free(p);
#else
  free(p);
#endif
}

/* A FILE whose output is collected in memory (open_memstream; a temporary file on Windows,
 * which has no memory stream). os_memfile_close closes it and hands out what was written in
 * *buf (malloc'd, the caller frees it; NUL-terminated) and *len: 0, or -1 and *buf NULL. */
static inline FILE *os_memfile_open(char **buf, size_t *len) {
#ifdef _WIN32
  *buf = NULL;
  *len = 0;
  return tmpfile();
#else
  return open_memstream(buf, len);
#endif
}

static inline int os_memfile_close(FILE *f, char **buf, size_t *len) {
#ifdef _WIN32
  long n = fflush(f) == 0 ? ftell(f) : -1;
  char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (b) {
    rewind(f);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
      free(b);
      b = NULL;
    } else {
      b[n] = 0;
    }
  }
  fclose(f);
  *buf = b;
  *len = b ? (size_t)n : 0;
  return b ? 0 : -1;
#else
  if (fclose(f) != 0) {
    free(*buf);
    *buf = NULL;
    *len = 0;
    return -1;
  }
  return 0;
#endif
}

#endif /* CPORT_APPS_OS_H */
