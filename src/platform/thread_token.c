/*
 * thread_token.c - cp__thread_token (platform.h): a number per thread, from one counter, so
 * never reused. A thread id or the address of a thread-local is: a thread that starts after
 * another ended may get the dead one's id or stack.
 */
#include "platform/platform.h"

#include <stdatomic.h>

static _Atomic uintptr_t next_token = 1;

uintptr_t cp__thread_token(void) {
  static _Thread_local uintptr_t token;
  if (!token)
    token = atomic_fetch_add_explicit(&next_token, 1, memory_order_relaxed);
  return token;
}
