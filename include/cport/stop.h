/*
 * cport/stop.h - a portable "please stop" for a server's main thread.
 *
 * A server runs until the user or the system asks it to stop, then drains. The request comes as
 * SIGINT or SIGTERM on POSIX and as a console control event on Windows (Ctrl+C, Ctrl+Break, the
 * console window closing, logoff, shutdown). These calls hide the difference:
 *
 *   cp_stop_install();                  // once, at start
 *   while (cp_stop_wait(1000) == 0)     // a tick a second until asked to stop
 *     print_stats();
 *   drain_and_exit();
 *
 * On POSIX cp_stop_install blocks SIGINT and SIGTERM in the calling thread - and so in every
 * thread it starts afterwards: call it before starting threads - and takes them on a thread of
 * its own (sigwait), so no worker is interrupted; a thread started before that does not block
 * them runs a handler that only sets a flag and writes a byte to a pipe. On Windows the console
 * handler sets the flag and wakes the waiter; after a console close, logoff or shutdown it does not
 * return (Windows would end the process at once), so the program finishes its drain and the process
 * ends when main returns - within Windows' grace period (about 5 s for a close).
 *
 * The request is one per process and sticky: once asked, every cp_stop_wait returns it at once.
 */
#ifndef CPORT_STOP_H
#define CPORT_STOP_H

#include "cport/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What asked to stop (cp_stop_wait's and cp_stop_requested's positive answers). */
enum cp_stop_kind {
  CP_STOP_INTERRUPT = 1, /* SIGINT; Ctrl+C, Ctrl+Break */
  CP_STOP_TERMINATE = 2, /* SIGTERM; console close, logoff, shutdown */
};

/*
 * Catch the platform's stop requests from now on: SIGINT and SIGTERM (POSIX), Ctrl+C, Ctrl+Break
 * and close/logoff/shutdown (Windows, SetConsoleCtrlHandler). Replaces the signals' previous
 * handlers. Call it from main before starting threads (see above); again after fork in a child
 * that wants them. Any number of times. 0 or a negative CP_E* code.
 */
CP_API int cp_stop_install(void);

/*
 * Wait up to timeout_ms milliseconds (negative: without limit) for a stop request. The kind
 * (CP_STOP_INTERRUPT or CP_STOP_TERMINATE) as soon as one was made - at once if it was before -
 * or 0 when the time ran out. Meant for one waiting thread (main); others may call
 * cp_stop_requested. Works without cp_stop_install too (then only cp_stop_request wakes it).
 */
CP_API int cp_stop_wait(int timeout_ms);

/* The kind asked for so far, or 0. Any thread; never blocks. */
CP_API int cp_stop_requested(void);

/*
 * Ask to stop from inside the program (an admin command, a test), exactly as a signal or a
 * console event would: the first request's kind is kept, later ones are ignored. Any thread;
 * async-signal-safe. 0, or CP_EINVAL for a kind that is neither of the two.
 */
CP_API int cp_stop_request(int kind);

#ifdef __cplusplus
}
#endif

#endif /* CPORT_STOP_H */
