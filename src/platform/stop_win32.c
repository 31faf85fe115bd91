/*
 * stop_win32.c - the waker of cp_stop_wait on Windows: an auto-reset event that the console
 * handler (win32.c) or cp_stop_request sets and the waiter waits on. The POSIX half is
 * stop_posix.c.
 */
#ifdef _WIN32
#include "platform/stop_request.h"

#include "cport/error.h"

#include <stdatomic.h>
#include <stdint.h>
#include <windows.h>

static atomic_uintptr_t wake_event; /* HANDLE, 0 until created */

int cp__stop_waker_init(void) {
  HANDLE ev = CreateEventW(NULL, FALSE, FALSE, NULL);
  if (!ev)
    return CP_ENOMEM;
  atomic_store(&wake_event, (uintptr_t)ev);
  return 0;
}

void cp__stop_wake(void) {
  HANDLE ev = (HANDLE)atomic_load(&wake_event);
  if (ev)
    SetEvent(ev);
}

void cp__stop_sleep(int timeout_ms) {
  HANDLE ev = (HANDLE)atomic_load(&wake_event);
  if (ev)
    WaitForSingleObject(ev, timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
}

#endif /* _WIN32 */
