/*
 * cport/log.h - what the library has to say, and only if asked.
 *
 * cport prints nothing by itself. It has little to say (a backend fallback,
 * a stop that waits for references the application still holds, a misuse it
 * caught), and says it through the callback set here, or not at all.
 */
#ifndef CPORT_LOG_H
#define CPORT_LOG_H

#include "cport/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cp_log_level {
  CP_LOG_ERROR = 0, /* a misuse or failure the library survived (a foreign buffer released) */
  CP_LOG_WARN = 1,  /* something the operator should know (stop waits for references) */
  CP_LOG_INFO = 2,  /* a choice the library made (io_uring unavailable, epoll used) */
  CP_LOG_DEBUG = 3,
} cp_log_level;

/* A log line: msg is one line without a newline, valid only during the
 * call. It may be called from any thread the library runs on (a worker, or
 * the caller of a cport function), from several at once; no cport lock is
 * held, so it may call cport functions, but it should be quick. */
typedef void (*cp_log_fn)(cp_log_level level, const char *msg, void *user);

/*
 * Send the library's messages up to and including max_level to fn (with
 * user); NULL fn: nothing is printed (the default). Any thread, any time: a
 * message being logged concurrently goes to the old callback or the new one,
 * and once cp_log_set returns no new call goes to the old one (a call that
 * already began may still be running). Not from inside the callback (it
 * would wait for itself).
 */
CP_API void cp_log_set(cp_log_fn fn, cp_log_level max_level, void *user);

/* "error", "warn", "info", "debug"; "?" for anything else. Static string. */
CP_API const char *cp_log_level_name(cp_log_level level);

#ifdef __cplusplus
}
#endif

#endif /* CPORT_LOG_H */
