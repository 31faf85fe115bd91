/*
 * redis_client.h - tests: a cl_redis connection over a cport client session
 * (a raw client service of its own: one worker, one session), with
 * synchronous helpers. Header-only.
 */
#ifndef CPORT_TEST_REDIS_CLIENT_H
#define CPORT_TEST_REDIS_CLIENT_H

#include "common/test.h"

#include "redis_conn.h"
#include <stdarg.h>

typedef struct rc_conn {
  cp_service *svc;
  cp_session *s;
  cl_redis *r;
  cl_redis_mode mode;
  cl_message_fn on_message;
  void *msg_arg;
  _Atomic int state; /* 0 connecting, 1 connected, 2 over */
  _Atomic int reason;
  _Atomic int proto_errors;
} rc_conn;

static inline void rc_on_connected(cp_session *s) {
  rc_conn *c = cp_service_user(cp_session_service(s));
  c->r = cl_redis_create(c->mode, cl_redis_session_write, s, c->on_message, c->msg_arg);
  CHECK(c->r);
  c->s = cp_session_get(s);
  atomic_store(&c->state, 1);
}

static inline void rc_on_raw(cp_session *s, const void *data, size_t len) {
  rc_conn *c = cp_service_user(cp_session_service(s));
  if (cl_redis_feed(c->r, data, len) < 0) {
    atomic_fetch_add(&c->proto_errors, 1);
    cp_session_disconnect(s, false);
  }
}

static inline void rc_on_disconnected(cp_session *s, cp_reason why) {
  rc_conn *c = cp_service_user(cp_session_service(s));
  if (c->r) {
    char buf[64];
    snprintf(buf, sizeof buf, "connection lost (%s)", cp_reason_name(why));
    cl_redis_fail_all(c->r, buf);
  }
  atomic_store(&c->reason, (int)why);
  atomic_store(&c->state, 2);
  if (c->s == s) {
    c->s = NULL;
    cp_session_put(s);
  }
}

/* Connect; returns the connection (state 1), or NULL if the connect failed. */
static inline rc_conn *rc_open(uint16_t port, cl_redis_mode mode, cl_message_fn on_message,
                               void *arg) {
  rc_conn *c = calloc(1, sizeof *c);
  CHECK(c);
  c->mode = mode;
  c->on_message = on_message;
  c->msg_arg = arg;
  cp_service_options o = {.kind = CP_SERVICE_CLIENT,
                          .host = "127.0.0.1",
                          .port = port,
                          .threads = 1,
                          .client_sessions = 1,
                          .raw = true,
                          .send_queue_max = 64u << 20,
                          .callbacks = {.on_connected = rc_on_connected,
                                        .on_raw = rc_on_raw,
                                        .on_disconnected = rc_on_disconnected},
                          .user = c};
  CHECK_EQ(cp_service_create(&c->svc, &o), 0);
  CHECK_EQ(cp_service_start(c->svc), 0);
  while (atomic_load(&c->state) == 0)
    usleep(1000);
  if (atomic_load(&c->state) != 1) {
    cp_service_destroy(c->svc);
    free(c);
    return NULL;
  }
  return c;
}

static inline void rc_close(rc_conn *c) {
  if (!c)
    return;
  cp_service_stop(c->svc, 0);
  cl_redis_destroy(c->r);
  cp_service_destroy(c->svc);
  free(c);
}

/* ---- synchronous commands ---- */

typedef struct rc_wait {
  pthread_mutex_t m;
  pthread_cond_t cv;
  bool done;
  redisReply *r;
  char err[200];
} rc_wait;

static inline void rc_wait_init(rc_wait *w) {
  pthread_mutex_init(&w->m, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->done = false;
  w->r = NULL;
  w->err[0] = 0;
}

static inline void rc_wait_cb(void *arg, redisReply *r, const char *err) {
  rc_wait *w = arg;
  pthread_mutex_lock(&w->m);
  w->r = r;
  snprintf(w->err, sizeof w->err, "%s", err ? err : "");
  w->done = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->m);
}

static inline void rc_wait_for(rc_wait *w) {
  pthread_mutex_lock(&w->m);
  while (!w->done)
    pthread_cond_wait(&w->cv, &w->m);
  pthread_mutex_unlock(&w->m);
}

/* Binary-safe command; the reply (NULL if none: then err is filled). */
static inline redisReply *rc_cmd_bin(rc_conn *c, int argc, const char **argv, const size_t *len,
                                     char *err, size_t errlen) {
  rc_wait w;
  rc_wait_init(&w);
  int rc = cl_redis_command(c->r, argc, argv, len, rc_wait_cb, &w);
  if (rc) {
    snprintf(err, errlen, "command not sent: %s", strerror(-rc));
    return NULL;
  }
  rc_wait_for(&w);
  if (err)
    snprintf(err, errlen, "%s", w.err);
  return w.r;
}

/* C-string arguments (test literals only), NULL-terminated. */
static inline redisReply *rc_cmd(rc_conn *c, const char *a0, ...) {
  const char *argv[32];
  size_t len[32];
  int n = 0;
  va_list ap;
  va_start(ap, a0);
  for (const char *a = a0; a && n < 32; a = va_arg(ap, const char *)) {
    argv[n] = a;
    len[n++] = strlen(a);
  }
  va_end(ap);
  char err[200];
  redisReply *r = rc_cmd_bin(c, n, argv, len, err, sizeof err);
  if (!r)
    fprintf(stderr, "rc_cmd %s: %s\n", a0, err);
  return r;
}

#endif
