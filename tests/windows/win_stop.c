/*
 * win_stop.c - the Win32 half's stop requests: prints "ready", then waits (at most 20 s) for
 * the function given to cp__on_stop_request to be called, and exits 0 with the kind it got.
 * Driven by stop_request.sh, which sends SIGINT to the Wine process: Wine turns it into the
 * console's Ctrl+C event, as a user's Ctrl+C in a Windows console would be.
 */
#include "platform/platform.h"
#include "platform/stop_request.h"

#include <stdio.h>
#include <windows.h>

static volatile LONG got, calls;

static void on_stop(int kind) {
  InterlockedExchange(&got, kind);
  InterlockedIncrement(&calls);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (cp__on_stop_request(NULL) == 0)
    return 2; /* NULL must be refused */
  if (cp__on_stop_request(on_stop) != 0)
    return 3;
  printf("ready\n");
  uint64_t t0 = cp__now_ns();
  while (!got && cp__now_ns() - t0 < 20000000000ull)
    Sleep(10);
  Sleep(100); /* a second call would show here */
  printf("stop kind %ld, %ld call(s)\n", got, calls);
  return got == CP__STOP_INTERRUPT && calls == 1 ? 0 : 1;
}
