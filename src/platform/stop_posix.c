/*
 * stop_posix.c - stop requests on POSIX: SIGINT and SIGTERM (the Windows half is in win32.c).
 */
#ifndef _WIN32
#define _GNU_SOURCE
#include "platform/stop_request.h"

#include "cport/error.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>

static void (*volatile stop_fn)(int kind);

static void on_signal(int sig) {
  void (*fn)(int) = stop_fn;
  if (fn)
    fn(sig == SIGINT ? CP__STOP_INTERRUPT : CP__STOP_TERMINATE);
}

int cp__on_stop_request(void (*fn)(int kind)) {
  if (!fn)
    return CP_EINVAL;
  stop_fn = fn;
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
    return -errno;
  return 0;
}

#endif /* !_WIN32 */
