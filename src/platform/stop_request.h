/*
 * stop_request.h - "please stop" from the user or the system, the same on every platform:
 * SIGINT and SIGTERM on POSIX (stop_posix.c); Ctrl+C, Ctrl+Break, the console window closing,
 * logoff and shutdown on Windows (SetConsoleCtrlHandler, win32.c). A server that drains on
 * SIGTERM drains on a console close the same way, with no #ifdef of its own.
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

#endif
