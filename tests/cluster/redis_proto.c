/*
 * redis_proto.c - the cluster's Redis protocol layer (apps/server/cluster/
 * redis_conn.c) over cport client sessions, against a real redis-server:
 * binary-safe commands, pipelined replies in FIFO order, error replies,
 * subscriber mode, a wrong password, a non-Redis service, a lost connection.
 */
#include "common/test.h"

#include "redis_client.h"
#include "redis_fixture.h"

/* ---- pipelining: 1000 INCRs, replies in order ---- */
static _Atomic long long incr_seen;
static _Atomic int incr_bad;
static void incr_cb(void *arg, redisReply *r, const char *err) {
  long long want = (long long)(intptr_t)arg;
  if (!r || err || r->type != REDIS_REPLY_INTEGER || r->integer != want ||
      atomic_load(&incr_seen) != want - 1)
    atomic_fetch_add(&incr_bad, 1);
  atomic_store(&incr_seen, want);
  if (r)
    freeReplyObject(r);
}

/* ---- subscriber ---- */
#define NMSG 50
static pthread_mutex_t msg_lock = PTHREAD_MUTEX_INITIALIZER;
static int nmsg;
static char msg_chan[NMSG][16];
static size_t msg_chan_len[NMSG];
static char msg_data[NMSG][16];
static size_t msg_len[NMSG];
static void on_message(void *arg, const char *pat, size_t pat_len, const char *ch, size_t ch_len,
                       const char *data, size_t len) {
  (void)arg, (void)pat, (void)pat_len;
  pthread_mutex_lock(&msg_lock);
  if (nmsg < NMSG && ch_len <= 16 && len <= 16) {
    memcpy(msg_chan[nmsg], ch, ch_len);
    msg_chan_len[nmsg] = ch_len;
    memcpy(msg_data[nmsg], data, len);
    msg_len[nmsg] = len;
  }
  nmsg++;
  pthread_mutex_unlock(&msg_lock);
}

/* ---- a service that is not Redis ---- */
static void *not_redis(void *arg) {
  int lfd = *(int *)arg;
  int fd = accept(lfd, NULL, NULL);
  if (fd >= 0) {
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf); /* the PING */
    (void)n;
    static const char banner[] = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
    n = write(fd, banner, sizeof banner - 1);
    (void)n;
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
  }
  return NULL;
}

/* ---- a write that ends the connection inline (nested on_disconnected) ---- */
static cl_redis *inline_c;
static int inline_writes, inline_failed;
static int inline_write(void *io, const void *data, size_t len) {
  (void)io, (void)data, (void)len;
  if (++inline_writes == 1)
    return 0;
  cl_redis_fail_all(inline_c, "connection lost (slow_consumer)");
  return -ENOBUFS;
}
static void inline_cb(void *arg, redisReply *r, const char *err) {
  (void)arg;
  CHECK(!r && !strcmp(err, "connection lost (slow_consumer)"));
  inline_failed++;
}

int main(void) {
  test_begin("redis_proto", 120);
  /* no deadlock, and each pending callback told once */
  inline_c = cl_redis_create(CL_REDIS_COMMANDS, inline_write, NULL, NULL, NULL);
  CHECK(inline_c);
  const char *ping[1] = {"PING"};
  size_t pingl[1] = {4};
  CHECK_EQ(cl_redis_command(inline_c, 1, ping, pingl, inline_cb, NULL), 0);
  CHECK_EQ(cl_redis_command(inline_c, 1, ping, pingl, inline_cb, NULL), 0);
  CHECK_EQ(inline_failed, 2);
  CHECK_EQ(cl_redis_pending(inline_c), 0);
  CHECK_EQ(cl_redis_command(inline_c, 1, ping, pingl, inline_cb, NULL), -ENOTCONN);
  cl_redis_destroy(inline_c);

  static redis_fixture rf; /* static: the atexit stop reads it after main returns */
  redis_fixture_start(&rf, false, NULL);
  rc_conn *c = rc_open(rf.port, CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(c);

  fprintf(stderr, "step: start and PING\n");
  /* PING */
  redisReply *r = rc_cmd(c, "PING", NULL);
  CHECK(r && r->type == REDIS_REPLY_STATUS && r->len == 4 && !memcmp(r->str, "PONG", 4));
  freeReplyObject(r);

  /* binary-safe keys and values: "k\0a" and "k\0b" are different keys */
  const char *set[3] = {"SET", "k\0a", "v\0\r\n\0w"};
  size_t setl[3] = {3, 3, 7};
  char err[200];
  r = rc_cmd_bin(c, 3, set, setl, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_STATUS);
  freeReplyObject(r);
  const char *get[2] = {"GET", "k\0b"};
  size_t getl[2] = {3, 3};
  r = rc_cmd_bin(c, 2, get, getl, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_NIL);
  freeReplyObject(r);
  get[1] = "k\0a";
  r = rc_cmd_bin(c, 2, get, getl, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_STRING && r->len == 7 && !memcmp(r->str, "v\0\r\n\0w", 7));
  freeReplyObject(r);

  fprintf(stderr, "step: pipelining\n");
  /* 1000 pipelined commands: replies in order, each to its own callback */
  const char *incr[2] = {"INCR", "counter"};
  size_t incrl[2] = {4, 7};
  for (long long i = 1; i <= 1000; i++)
    CHECK_EQ(cl_redis_command(c->r, 2, incr, incrl, incr_cb, (void *)(intptr_t)i), 0);
  while (atomic_load(&incr_seen) != 1000)
    usleep(1000);
  CHECK_EQ(atomic_load(&incr_bad), 0);
  CHECK_EQ(cl_redis_pending(c->r), 0);

  /* an error reply is a reply: the connection goes on */
  get[0] = "INCR";
  getl[0] = 4;
  r = rc_cmd_bin(c, 2, get, getl, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "ERR value is not an integer", 27));
  freeReplyObject(r);
  r = rc_cmd(c, "PING", NULL);
  CHECK(r && r->type == REDIS_REPLY_STATUS);
  freeReplyObject(r);

  fprintf(stderr, "step: subscriber mode\n");
  /* modes: a command connection runs no SUBSCRIBE; a subscriber nothing else */
  const char *sub[3] = {"SUBSCRIBE", "ch\0one", "ch\0two"};
  size_t subl[3] = {9, 6, 6};
  CHECK_EQ(cl_redis_command(c->r, 3, sub, subl, NULL, NULL), -EINVAL);
  rc_conn *s = rc_open(rf.port, CL_REDIS_SUBSCRIBER, on_message, NULL);
  CHECK(s);
  CHECK_EQ(cl_redis_command(s->r, 3, set, setl, NULL, NULL), -EINVAL);
  CHECK_EQ(cl_redis_command(s->r, 1, sub, subl, NULL, NULL), -EINVAL); /* name the channels */
  r = rc_cmd_bin(s, 3, sub, subl, err, sizeof err); /* one callback, with the last confirmation */
  CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_INTEGER && r->element[2]->integer == 2);
  CHECK(r->element[1]->len == 6 && !memcmp(r->element[1]->str, "ch\0two", 6));
  freeReplyObject(r);
  r = rc_cmd(s, "PING", NULL); /* subscribed: ["pong", ""] */
  CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
  freeReplyObject(r);
  for (int i = 0; i < 10; i++) {
    char m[8] = {'m', 0, (char)('0' + i), '\n'};
    const char *pub[3] = {"PUBLISH", i % 2 ? "ch\0two" : "ch\0one", m};
    size_t publ[3] = {7, 6, 4};
    r = rc_cmd_bin(c, 3, pub, publ, err, sizeof err);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
  }
  r = rc_cmd(s, "PING", NULL); /* every message before it was handed over */
  CHECK(r);
  freeReplyObject(r);
  pthread_mutex_lock(&msg_lock);
  CHECK_EQ(nmsg, 10);
  for (int i = 0; i < 10; i++) {
    char m[4] = {'m', 0, (char)('0' + i), '\n'};
    CHECK(msg_len[i] == 4 && !memcmp(msg_data[i], m, 4));
    CHECK(msg_chan_len[i] == 6 && !memcmp(msg_chan[i], i % 2 ? "ch\0two" : "ch\0one", 6));
  }
  pthread_mutex_unlock(&msg_lock);
  sub[0] = "UNSUBSCRIBE";
  subl[0] = 11;
  r = rc_cmd_bin(s, 3, sub, subl, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_ARRAY && r->element[2]->integer == 0);
  freeReplyObject(r);
  rc_close(s);

  fprintf(stderr, "step: lost connection\n");
  /* a connection lost with a command pending: its callback says so */
  r = rc_cmd(c, "CLIENT", "SETNAME", "victim", NULL);
  CHECK(r);
  freeReplyObject(r);
  rc_conn *k = rc_open(rf.port, CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(k);
  rc_wait w;
  rc_wait_init(&w);
  const char *bl[3] = {"BLPOP", "nothing", "0"};
  size_t bll[3] = {5, 7, 1};
  CHECK_EQ(cl_redis_command(c->r, 3, bl, bll, rc_wait_cb, &w), 0);
  while (true) { /* wait until the BLPOP blocks, then kill its connection */
    r = rc_cmd(k, "CLIENT", "KILL", "USER", "default", "SKIPME", "yes", NULL);
    CHECK(r && r->type == REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    if (n >= 1)
      break;
  }
  rc_wait_for(&w);
  CHECK(!w.r && !strncmp(w.err, "connection lost", 15));
  fprintf(stderr, "lost connection: '%s'\n", w.err);
  CHECK_EQ(cl_redis_command(c->r, 3, bl, bll, NULL, NULL), -ENOTCONN);
  rc_close(c);
  rc_close(k);
  redis_fixture_stop(&rf);

  fprintf(stderr, "step: wrong password\n");
  /* a wrong password: a clear error reply, and commands refused until AUTH */
  redis_fixture_start(&rf, false, "right-secret");
  c = rc_open(rf.port, CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(c);
  r = rc_cmd(c, "PING", NULL);
  CHECK(r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOAUTH", 6));
  fprintf(stderr, "no password: '%s'\n", r->str);
  freeReplyObject(r);
  r = rc_cmd(c, "AUTH", "wrong-secret", NULL);
  CHECK(r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "WRONGPASS", 9));
  fprintf(stderr, "wrong password: '%s'\n", r->str);
  freeReplyObject(r);
  r = rc_cmd(c, "AUTH", "right-secret", NULL);
  CHECK(r && r->type == REDIS_REPLY_STATUS);
  freeReplyObject(r);
  r = rc_cmd(c, "PING", NULL);
  CHECK(r && r->type == REDIS_REPLY_STATUS);
  freeReplyObject(r);
  rc_close(c);
  redis_fixture_stop(&rf);

  fprintf(stderr, "step: not redis\n");
  /* a service that is not Redis: a protocol error, every pending command told */
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 1) == 0);
  CHECK(getsockname(lfd, (struct sockaddr *)&a, &al) == 0);
  pthread_t th;
  CHECK_EQ(pthread_create(&th, NULL, not_redis, &lfd), 0);
  c = rc_open(ntohs(a.sin_port), CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(c);
  r = rc_cmd_bin(c, 1, (const char *[]){"PING"}, (size_t[]){4}, err, sizeof err);
  CHECK(!r);
  fprintf(stderr, "not redis: '%s'\n", err);
  CHECK(!strncmp(err, "redis protocol error: Protocol error", 36));
  while (atomic_load(&c->state) != 2)
    usleep(1000);
  CHECK_EQ(atomic_load(&c->proto_errors), 1);
  CHECK_EQ(cl_redis_command(c->r, 1, (const char *[]){"PING"}, (size_t[]){4}, NULL, NULL),
           -ENOTCONN);
  rc_close(c);
  pthread_join(th, NULL);
  close(lfd);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  fprintf(stderr, "ok\n");
  return 0;
}
