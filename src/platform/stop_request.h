/*
 * stop_request.h - "please stop" from the user or the system, the same on every platform:
 * SIGINT and SIGTERM on POSIX (stop_posix.c); Ctrl+C, Ctrl+Break, the console window closing,
 * logoff and shutdown on Windows (SetConsoleCtrlHandler, win32.c). A server that drains on
 * SIGTERM drains on a console close the same way, with no #ifdef of its own. The public face is
 * include/cport/stop.h (stop.c); the waker below is how its wait sleeps (stop_posix.c: a pipe,
 * stop_win32.c: an event).
 */
#ifndef CPORT_PLATFORM_STOP_REQUEST_H
#define CPORT_PLATFORM_STOP_REQUEST_H

/* What asked. */
enum cp__stop_kind {
  CP__STOP_INTERRUPT = 1, /* SIGINT / Ctrl+C, Ctrl+Break */
  CP__STOP_TERMINATE = 2, /* SIGTERM / console close, logoff, shutdown */
};

/*
 * From now on call fn(kind) when a stop is asked for. fn runs in a signal handler (POSIX) or
 * on a thread the system creates (Windows): it may only do async-signal-safe things - set an
 * atomic flag, write to a pipe, cp_port_post. After a console close, logoff or shutdown
 * Windows ends the process once the handler returns (or after about 5 s), so there the handler
 * does not return: the process ends when main does. One fn per process; a later call replaces
 * it. 0, or a negative code.
 */
int cp__on_stop_request(void (*fn)(int kind));

/*
 * The waker of cp_stop_wait: one per process, created once (cp__stop_waker_init: 0 or a
 * negative code), never destroyed (a signal may come at any time). cp__stop_wake is
 * async-signal-safe and does nothing before the waker exists; cp__stop_sleep returns after a
 * wake (one made since the last sleep returned included) or after timeout_ms, whichever is
 * first, or early for no reason: the caller checks its flag and clock again.
 */
int cp__stop_waker_init(void);
void cp__stop_wake(void);
void cp__stop_sleep(int timeout_ms);

#endif
