/*
 * log.c - the log callback (cport/log.h).
 *
 * The callback, its user pointer and level live together in one of two
 * slots; cp_log_set fills the slot not in use and publishes it with one
 * atomic store, so a reader never pairs one callback with another's user
 * pointer. A reader marks the slot it uses (a count per slot), and
 * cp_log_set waits until the slot it is about to refill has no reader - so
 * once it returns, nothing calls the callback it replaced, except a call
 * already under way when it was published.
 */
#include "common/log.h"

#include "platform/platform.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

struct slot {
  cp_log_fn fn;
  void *user;
  int max;
  atomic_int readers;
};

static struct slot slots[2];
static _Atomic int current = 0;                /* index of the published slot */
static atomic_int max_level = -1;              /* of the published slot; -1: off */
static atomic_flag setting = ATOMIC_FLAG_INIT; /* one cp_log_set at a time */

bool cp__log_enabled(cp_log_level level) {
  return (int)level <= atomic_load_explicit(&max_level, memory_order_relaxed);
}

void cp_log_set(cp_log_fn fn, cp_log_level max, void *user) {
  while (atomic_flag_test_and_set_explicit(&setting, memory_order_acquire))
    cp__thread_yield();
  int next = 1 - atomic_load(&current);
  struct slot *s = &slots[next];
  while (atomic_load(&s->readers)) /* a reader of the slot before last */
    cp__thread_yield();
  s->fn = fn;
  s->user = user;
  s->max = fn ? (int)max : -1;
  atomic_store(&current, next);
  atomic_store(&max_level, s->max);
  /* The old slot's readers took it before the switch: wait for them. */
  struct slot *old = &slots[1 - next];
  while (atomic_load(&old->readers))
    cp__thread_yield();
  atomic_flag_clear_explicit(&setting, memory_order_release);
}

const char *cp_log_level_name(cp_log_level level) {
  switch (level) {
  case CP_LOG_ERROR:
    return "error";
  case CP_LOG_WARN:
    return "warn";
  case CP_LOG_INFO:
    return "info";
  case CP_LOG_DEBUG:
    return "debug";
  }
  return "?";
}

void cp__log(cp_log_level level, const char *fmt, ...) {
  if (!cp__log_enabled(level))
    return;
  struct slot *s;
  for (;;) {
    int i = atomic_load(&current);
    s = &slots[i];
    atomic_fetch_add(&s->readers, 1);
    if (atomic_load(&current) == i)
      break;
    atomic_fetch_sub(&s->readers, 1); /* switched meanwhile: take the new one */
  }
  if (s->fn && (int)level <= s->max) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->fn(level, msg, s->user);
  }
  atomic_fetch_sub(&s->readers, 1);
}
