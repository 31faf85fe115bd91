/*
 * win32.c - the Win32 half of the platform layer (Windows 8 / mingw-w64 or MSVC): threads
 * through _beginthreadex, SRWLOCK mutexes, CONDITION_VARIABLE, INIT_ONCE, fiber-local storage
 * for keys (FlsAlloc runs the destructor at thread exit, as pthread keys do), the
 * QueryPerformanceCounter clock, and stop requests (stop_request.h) through
 * SetConsoleCtrlHandler.
 */
#ifdef _WIN32
#include "platform/platform.h"
#include "platform/stop_request.h"

#include "cport/error.h"

#include "common/mem.h"

#include <assert.h>
#include <errno.h>
#include <process.h>
#include <string.h>

/* ---- threads --------------------------------------------------------- */

struct start {
  cp__thread_fn fn;
  void *arg;
};

static unsigned __stdcall trampoline(void *p) {
  struct start s = *(struct start *)p;
  mem_free(p);
  s.fn(s.arg);
  return 0;
}

int cp__thread_create(cp__thread *t, cp__thread_fn fn, void *arg) {
  struct start *s = mem_alloc(sizeof *s);
  if (!s)
    return CP_ENOMEM;
  s->fn = fn;
  s->arg = arg;
  /* _beginthreadex (not CreateThread): the C runtime's per-thread state is set up. */
  uintptr_t h = _beginthreadex(NULL, 0, trampoline, s, 0, NULL);
  if (!h) {
    mem_free(s);
    return errno == EAGAIN ? CP_EAGAIN : CP_ENOMEM;
  }
  t->handle = (HANDLE)h;
  return 0;
}

void cp__thread_join(cp__thread *t) {
  DWORD rc = WaitForSingleObject(t->handle, INFINITE);
  (void)rc;
  assert(rc == WAIT_OBJECT_0);
  CloseHandle(t->handle);
  t->handle = NULL;
}

void cp__thread_yield(void) {
  if (!SwitchToThread())
    Sleep(0);
}

unsigned cp__cpu_count(void) {
  DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
  return n > 0 ? (unsigned)n : 1;
}

/* ---- mutex: an SRWLOCK taken exclusively (needs no destroy) ---------- */

int cp__mutex_init(cp__mutex *m) {
  InitializeSRWLock(m);
  return 0;
}
void cp__mutex_destroy(cp__mutex *m) {
  (void)m;
}

/* ---- condition variable ---------------------------------------------- */

int cp__cond_init(cp__cond *c) {
  InitializeConditionVariable(c);
  return 0;
}
void cp__cond_destroy(cp__cond *c) {
  (void)c;
}
void cp__cond_signal(cp__cond *c) {
  WakeConditionVariable(c);
}
void cp__cond_broadcast(cp__cond *c) {
  WakeAllConditionVariable(c);
}
void cp__cond_wait(cp__cond *c, cp__mutex *m) {
  BOOL ok = SleepConditionVariableSRW(c, m, INFINITE, 0);
  (void)ok;
  assert(ok);
}
int cp__cond_timedwait(cp__cond *c, cp__mutex *m, uint64_t deadline_ns) {
  uint64_t now = cp__now_ns();
  if (now >= deadline_ns)
    return CP__TIMEDOUT;
  /* Round up, so that a wake-up at the timeout finds the deadline passed. */
  uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
  DWORD wait = ms >= INFINITE ? INFINITE - 1 : (DWORD)ms;
  if (SleepConditionVariableSRW(c, m, wait, 0))
    return 0;
  assert(GetLastError() == ERROR_TIMEOUT);
  return cp__now_ns() >= deadline_ns ? CP__TIMEDOUT : 0;
}

/* ---- once and keys --------------------------------------------------- */

static BOOL CALLBACK once_thunk(PINIT_ONCE once, PVOID fn, PVOID *ctx) {
  (void)once;
  (void)ctx;
  void (*f)(void);
  memcpy(&f, &fn, sizeof f);
  f();
  return TRUE;
}

void cp__once(cp__once_t *once, void (*fn)(void)) {
  PVOID p;
  memcpy(&p, &fn, sizeof p);
  BOOL ok = InitOnceExecuteOnce(once, once_thunk, p, NULL);
  (void)ok;
  assert(ok);
}

/* A key's destructor runs in an FLS callback at thread exit, but not while the process exits:
 * ExitProcess has killed every other thread by then, maybe inside a lock the destructor takes
 * (the send-buffer pool's: it would wait forever), and what it would free goes with the process.
 * ntdll's RtlDllShutdownInProgress tells (Windows and Wine: true from the start of the process's
 * shutdown, before it runs the exiting thread's FLS callbacks). A callback gets the value only,
 * so each destructor has a callback of its own, from a fixed few. */
#define KEY_DTORS 4
static void (*key_dtors[KEY_DTORS])(void *);
static LONG key_ndtors;
typedef BOOLEAN(NTAPI *shutdown_fn)(void);
static shutdown_fn process_exiting; /* NULL if ntdll has none: destructors always run */

static void key_run(int i, void *value) {
  if (process_exiting && process_exiting())
    return;
  key_dtors[i](value);
}
static VOID WINAPI key_cb0(PVOID v) {
  key_run(0, v);
}
static VOID WINAPI key_cb1(PVOID v) {
  key_run(1, v);
}
static VOID WINAPI key_cb2(PVOID v) {
  key_run(2, v);
}
static VOID WINAPI key_cb3(PVOID v) {
  key_run(3, v);
}
static const PFLS_CALLBACK_FUNCTION key_cbs[KEY_DTORS] = {key_cb0, key_cb1, key_cb2, key_cb3};

int cp__key_create(cp__key *k, void (*dtor)(void *)) {
  PFLS_CALLBACK_FUNCTION cb = NULL;
  if (dtor) {
    LONG i = InterlockedIncrement(&key_ndtors) - 1;
    if (i >= KEY_DTORS) {
      InterlockedDecrement(&key_ndtors);
      return CP_EAGAIN;
    }
    HMODULE nt = GetModuleHandleW(L"ntdll.dll");
    FARPROC f = nt ? GetProcAddress(nt, "RtlDllShutdownInProgress") : NULL;
    shutdown_fn q = NULL;
    _Static_assert(sizeof q == sizeof f, "function pointers");
    if (f)
      memcpy(&q, &f, sizeof q);
    process_exiting = q; /* the same value from every caller; published by FlsAlloc below */
    key_dtors[i] = dtor;
    cb = key_cbs[i];
  }
  DWORD idx = FlsAlloc(cb);
  if (idx == FLS_OUT_OF_INDEXES)
    return CP_EAGAIN;
  *k = idx;
  return 0;
}
void cp__key_set(cp__key k, void *value) {
  BOOL ok = FlsSetValue(k, value);
  (void)ok;
  assert(ok);
}

/* ---- spin lock ------------------------------------------------------- */

void cp__spin_wait(cp__spin *s) {
  for (unsigned i = 0; atomic_load_explicit(&s->locked, memory_order_relaxed); i++) {
    if (i >= 64) {
      cp__thread_yield();
      i = 0;
    } else {
      YieldProcessor();
    }
  }
}

/* ---- clock ----------------------------------------------------------- */

static LARGE_INTEGER qpc_freq;

static BOOL CALLBACK qpc_init(PINIT_ONCE once, PVOID arg, PVOID *ctx) {
  (void)once;
  (void)arg;
  (void)ctx;
  QueryPerformanceFrequency(&qpc_freq); /* never fails on XP and later */
  return TRUE;
}

uint64_t cp__now_ns(void) {
  static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
  InitOnceExecuteOnce(&once, qpc_init, NULL, NULL);
  LARGE_INTEGER c;
  QueryPerformanceCounter(&c);
  uint64_t f = (uint64_t)qpc_freq.QuadPart, t = (uint64_t)c.QuadPart;
  /* Split to avoid overflow: whole seconds, then the remainder. */
  return t / f * 1000000000ull + t % f * 1000000000ull / f;
}

/* ---- stop requests -------------------------------------------------- */

static void (*volatile stop_fn)(int kind);

static BOOL WINAPI on_console_event(DWORD ev) {
  void (*fn)(int) = stop_fn;
  if (!fn)
    return FALSE; /* the default: end the process */
  switch (ev) {
  case CTRL_C_EVENT:
  case CTRL_BREAK_EVENT:
    fn(CP__STOP_INTERRUPT);
    return TRUE;
  case CTRL_CLOSE_EVENT:
  case CTRL_LOGOFF_EVENT:
  case CTRL_SHUTDOWN_EVENT:
    fn(CP__STOP_TERMINATE);
    /* Windows ends the process as soon as this returns: let main finish the drain and exit
     * (ExitProcess ends this thread too), within the system's grace period. */
    Sleep(INFINITE);
    return TRUE;
  }
  return FALSE;
}

int cp__on_stop_request(void (*fn)(int kind)) {
  if (!fn)
    return CP_EINVAL;
  stop_fn = fn;
  static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
  BOOL pending;
  if (!InitOnceBeginInitialize(&once, 0, &pending, NULL))
    return CP_EIO;
  if (pending) {
    BOOL ok = SetConsoleCtrlHandler(on_console_event, TRUE);
    InitOnceComplete(&once, ok ? 0 : INIT_ONCE_INIT_FAILED, NULL);
    if (!ok)
      return CP_EIO;
  }
  return 0;
}

#endif /* _WIN32 */
