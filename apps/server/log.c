/*
 * log.c - the server's log of sessions that ended badly, rate limited: a
 * flood of hostile clients must not turn into a flood of log lines (or a
 * full disk). At most LOG_PER_SEC lines a second; what is left out is
 * counted, and the count is said before the next line that is logged in a
 * later second.
 */
#define _GNU_SOURCE
#include "server.h"

#include <pthread.h>
#include <stdarg.h>
#include <time.h>

#define LOG_PER_SEC 20

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static time_t log_sec;
static unsigned log_n;
static unsigned long log_dropped;

void srv_log_session(cp_session *s, const char *peer, const char *fmt, ...) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  pthread_mutex_lock(&log_mu);
  if (ts.tv_sec != log_sec) {
    if (log_dropped)
      fprintf(stderr, "cport-server: %lu more session log lines left out\n", log_dropped);
    log_sec = ts.tv_sec;
    log_n = 0;
    log_dropped = 0;
  }
  if (log_n >= LOG_PER_SEC) {
    log_dropped++;
    pthread_mutex_unlock(&log_mu);
    return;
  }
  log_n++;
  char pbuf[64], msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "cport-server: session %llu (%s): %s\n", (unsigned long long)cp_session_id(s),
          peer ? peer : cp_session_peer(s, pbuf, sizeof pbuf), msg);
  pthread_mutex_unlock(&log_mu);
}

/* The library's messages (cport/log.h) go to the same log. */
void srv_log_library(cp_log_level level, const char *msg, void *user) {
  (void)user;
  pthread_mutex_lock(&log_mu);
  fprintf(stderr, "cport-server: %s: %s\n", cp_log_level_name(level), msg);
  pthread_mutex_unlock(&log_mu);
}

void srv_log_disconnect(cp_session *s, const char *peer, cp_reason why) {
  switch (why) {
  case CP_REASON_BAD_PACKET:
  case CP_REASON_SLOW_CONSUMER:
  case CP_REASON_IDLE_TIMEOUT:
  case CP_REASON_ERROR:
    srv_log_session(s, peer, "disconnected: %s", cp_reason_name(why));
    break;
  default: /* the ordinary ends: the peer left, or we closed it (and said why) */
    break;
  }
}

void srv_on_disconnected(cp_session *s, cp_reason why) {
  srv_log_disconnect(s, NULL, why);
}
