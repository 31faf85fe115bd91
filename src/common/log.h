/*
 * log.h - the library's one way to say something (cport/log.h): formatted
 * here, handed to the application's callback, printed nowhere else.
 */
#ifndef CPORT_COMMON_LOG_H
#define CPORT_COMMON_LOG_H

#include "cport/log.h"

#include <stdbool.h>

/* Would a message at this level go anywhere? (Cheap: one atomic load.) */
bool cp__log_enabled(cp_log_level level);

/* Log one line (printf format, no newline). Does nothing unless enabled. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void cp__log(cp_log_level level, const char *fmt, ...);

#endif /* CPORT_COMMON_LOG_H */
