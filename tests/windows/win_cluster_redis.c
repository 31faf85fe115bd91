/*
 * win_cluster_redis.c PORT - the cluster's Redis layer on Windows (issue 14 item 4b), under
 * Wine against a LINUX redis-server on 127.0.0.1:PORT (started by win_cluster_redis.sh): a
 * SERVER service opens an outbound raw session to it (cp_service_connect_to), and
 * apps/server/cluster/redis_conn.c runs over it with the hiredis that scripts/win-deps
 * cross-built (its reader and command formatter). Checked: binary-safe keys ("a\0x" and "a\0y"
 * stay distinct), 200 pipelined INCRs answered in order, an error reply, and the session's own
 * callbacks (the service's are never called). Exit 0 on success.
 */
#include "common/nettest.h"

#include "redis_conn.h"

#include <hiredis/hiredis.h>

struct link {
  cl_redis *c;
  atomic_int connected, disconnected, feed_bad;
};

static atomic_int svc_cb_calls; /* the service's callbacks: must stay 0 */
static void svc_connected(cp_session *s) {
  (void)s;
  atomic_fetch_add(&svc_cb_calls, 1);
}

static void on_connected(cp_session *s) {
  struct link *l = cp_session_user(s);
  CHECK(l != NULL); /* set before the connect */
  l->c = cl_redis_create(CL_REDIS_COMMANDS, cl_redis_session_write, s, NULL, NULL);
  CHECK(l->c != NULL);
  atomic_store(&l->connected, 1);
}
static void on_raw(cp_session *s, const void *data, size_t len) {
  struct link *l = cp_session_user(s);
  if (cl_redis_feed(l->c, data, len) != 0)
    atomic_fetch_add(&l->feed_bad, 1);
}
static void on_disconnected(cp_session *s, cp_reason why) {
  struct link *l = cp_session_user(s);
  if (l->c)
    cl_redis_fail_all(l->c, cp_reason_name(why));
  atomic_store(&l->disconnected, 1);
}

/* Replies, checked on the worker that feeds them. */
static atomic_int replies, bad;
static atomic_llong last_incr;
/* A reply of the type arg names (REDIS_REPLY_STATUS, _ERROR). */
static void expect_type(void *arg, redisReply *r, const char *err) {
  if (!r || err || r->type != (int)(intptr_t)arg)
    atomic_fetch_add(&bad, 1);
  if (r)
    freeReplyObject(r);
  atomic_fetch_add(&replies, 1);
}
static void expect_string(void *arg, redisReply *r, const char *err) {
  const char *want = arg;
  if (!r || err || r->type != REDIS_REPLY_STRING || r->len != strlen(want) ||
      memcmp(r->str, want, r->len) != 0)
    atomic_fetch_add(&bad, 1);
  if (r)
    freeReplyObject(r);
  atomic_fetch_add(&replies, 1);
}
static void expect_incr(void *arg, redisReply *r, const char *err) {
  long long want = (long long)(intptr_t)arg;
  if (!r || err || r->type != REDIS_REPLY_INTEGER || r->integer != want ||
      atomic_load(&last_incr) != want - 1)
    atomic_fetch_add(&bad, 1);
  atomic_store(&last_incr, want);
  if (r)
    freeReplyObject(r);
  atomic_fetch_add(&replies, 1);
}
static void cmd(cl_redis *c, int argc, const char **argv, const size_t *len, cl_reply_fn fn,
                void *arg) {
  CHECK_EQ(cl_redis_command(c, argc, argv, len, fn, arg), 0);
}

int main(int argc, char **argv) {
  test_begin("win_cluster_redis", 120);
  CHECK(argc == 2);
  uint16_t port = (uint16_t)atoi(argv[1]);
  CHECK(port != 0);
  cp_service *svc = NULL;
  CHECK_EQ(cp_service_create(&svc, &(cp_service_options){.kind = CP_SERVICE_SERVER,
                                                         .host = "127.0.0.1",
                                                         .threads = 2,
                                                         .callbacks.on_connected = svc_connected}),
           0);
  CHECK_EQ(cp_service_start(svc), 0);
  static struct link l;
  cp_connect_options o = {.host = "127.0.0.1",
                          .port = port,
                          .raw = true,
                          .callbacks = {.on_connected = on_connected,
                                        .on_raw = on_raw,
                                        .on_disconnected = on_disconnected},
                          .user = &l};
  cp_session *s = NULL;
  CHECK_EQ(cp_service_connect_to(svc, &o, &s), 0);
  WAIT_UNTIL(atomic_load(&l.connected) || atomic_load(&l.disconnected));
  CHECK_EQ(atomic_load(&l.connected), 1);

  int want = 0;
  static const char kx[] = {'a', 0, 'x'}, ky[] = {'a', 0, 'y'};
  const char *set_x[] = {"SET", kx, "vx"}, *set_y[] = {"SET", ky, "vy"};
  size_t set_len[] = {3, 3, 2};
  cmd(l.c, 3, set_x, set_len, expect_type, (void *)(intptr_t)REDIS_REPLY_STATUS);
  cmd(l.c, 3, set_y, set_len, expect_type, (void *)(intptr_t)REDIS_REPLY_STATUS);
  const char *get_x[] = {"GET", kx}, *get_y[] = {"GET", ky};
  size_t get_len[] = {3, 3};
  cmd(l.c, 2, get_x, get_len, expect_string, "vx");
  cmd(l.c, 2, get_y, get_len, expect_string, "vy");
  want += 4;
  const char *del[] = {"DEL", "win:counter"};
  size_t del_len[] = {3, 11};
  cmd(l.c, 2, del, del_len, NULL, NULL);
  want += 0; /* no callback */
  for (int i = 1; i <= 200; i++) {
    const char *incr[] = {"INCR", "win:counter"};
    size_t incr_len[] = {4, 11};
    cmd(l.c, 2, incr, incr_len, expect_incr, (void *)(intptr_t)i);
  }
  want += 200;
  const char *nope[] = {"NO-SUCH-COMMAND"};
  size_t nope_len[] = {15};
  cmd(l.c, 1, nope, nope_len, expect_type, (void *)(intptr_t)REDIS_REPLY_ERROR);
  want += 1;
  WAIT_UNTIL(atomic_load(&replies) == want || atomic_load(&l.disconnected));
  CHECK_EQ(atomic_load(&replies), want);
  CHECK_EQ(atomic_load(&bad), 0);
  CHECK_EQ(atomic_load(&l.feed_bad), 0);
  CHECK_EQ(atomic_load(&last_incr), 200);
  cp_service_stats st;
  cp_service_get_stats(svc, &st);
  CHECK_EQ(st.outbound, 1);
  CHECK_EQ(st.sessions, 0);
  const char *cleanup[] = {"DEL", kx, ky, "win:counter"};
  size_t cleanup_len[] = {3, 3, 3, 11};
  cmd(l.c, 4, cleanup, cleanup_len, NULL, NULL);
  cp_session_put(s);
  cp_service_stop(svc, 1000);
  CHECK_EQ(atomic_load(&l.disconnected), 1);
  CHECK_EQ(atomic_load(&svc_cb_calls), 0);
  cl_redis_destroy(l.c);
  cp_service_destroy(svc);
  fprintf(stderr, "ok: %d replies over an outbound session from Windows\n", want);
  return 0;
}
