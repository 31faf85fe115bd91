/*
 * stop.c - cport/stop.h: one sticky stop request per process, set by a signal, a console event
 * (stop_request.h) or cp_stop_request, and a wait for it that sleeps on the platform's waker.
 */
#include "cport/stop.h"

#include "cport/error.h"
#include "platform/platform.h"
#include "platform/stop_request.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>

_Static_assert((int)CP_STOP_INTERRUPT == (int)CP__STOP_INTERRUPT, "kinds agree");
_Static_assert((int)CP_STOP_TERMINATE == (int)CP__STOP_TERMINATE, "kinds agree");

static atomic_int requested; /* 0, or the first kind asked for */
static cp__once_t waker_once = CP__ONCE_INIT;
static int waker_rc;

static void waker_init(void) {
  waker_rc = cp__stop_waker_init();
}

int cp_stop_request(int kind) {
  if (kind != CP_STOP_INTERRUPT && kind != CP_STOP_TERMINATE)
    return CP_EINVAL;
  int none = 0;
  atomic_compare_exchange_strong(&requested, &none, kind);
  cp__stop_wake();
  return 0;
}

int cp_stop_requested(void) {
  return atomic_load(&requested);
}

/* Runs in a signal handler or on the console's thread: only atomics and the waker. */
static void on_platform_stop(int kind) {
  (void)cp_stop_request(kind);
}

int cp_stop_install(void) {
  cp__once(&waker_once, waker_init);
  if (waker_rc)
    return waker_rc;
  return cp__on_stop_request(on_platform_stop);
}

int cp_stop_wait(int timeout_ms) {
  cp__once(&waker_once, waker_init);
  uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : cp__now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    int kind = atomic_load(&requested);
    if (kind)
      return kind;
    if (waker_rc)
      return waker_rc;
    uint64_t now = cp__now_ns();
    if (now >= deadline)
      return 0;
    uint64_t left_ms = (deadline - now + 999999u) / 1000000u;
    cp__stop_sleep(left_ms > INT_MAX ? INT_MAX : (int)left_ms);
  }
}
