/*
 * redis_follow.c - a node's follower of one room (apps/server/cluster/
 * room_follow.c) against a real redis-server: events delivered in offset
 * order exactly once; a lost pub/sub message and a subscriber killed with
 * CLIENT KILL TYPE pubsub are filled from the stream; a gap older than the
 * capped stream is counted as lost (never papered over); FLUSHALL is a new
 * epoch.
 */
#include "common/test.h"

#include "redis_client.h"
#include "redis_fixture.h"
#include "room_follow.h"
#include "room_keys.h"
#include "room_script.h"

static cl_scripts scripts;
static rc_conn *cmd;
static const char room[] = "r\0f";
#define ROOM_LEN 3

/* ---- messages from the channel, queued for the "room's job queue" (main) ---- */
typedef struct msg {
  char data[64];
  size_t len;
} msg;
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static msg q[2048];
static size_t nq;

static void on_message(void *arg, const char *pat, size_t pat_len, const char *ch, size_t ch_len,
                       const char *data, size_t len) {
  (void)arg, (void)pat, (void)pat_len, (void)ch, (void)ch_len;
  pthread_mutex_lock(&q_lock);
  CHECK(nq < 2048 && len <= 64);
  memcpy(q[nq].data, data, len);
  q[nq++].len = len;
  pthread_mutex_unlock(&q_lock);
}

/* ---- what the follower delivered ---- */
static uint64_t got_off[4096];
static char got_ev[4096][16];
static size_t got_len[4096], ngot;
static void deliver(void *arg, uint64_t off, const char *ev, size_t len) {
  (void)arg;
  CHECK(ngot < 4096 && len <= 16);
  got_off[ngot] = off;
  memcpy(got_ev[ngot], ev, len);
  got_len[ngot++] = len;
}

static uint16_t port;
static cl_follow fol;
static uint64_t reads;

static void subscribe(rc_conn *s) {
  char ch[CL_ROOM_KEY_MAX], err[200];
  size_t n = cl_room_key(ch, CL_KEY_CHANNEL, room, ROOM_LEN);
  redisReply *r =
      rc_cmd_bin(s, 2, (const char *[]){"SUBSCRIBE", ch}, (size_t[]){9, n}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_ARRAY);
  freeReplyObject(r);
}

/* XRANGE, then the follower; again while it asks. */
static void read_range(cl_follow_result res, uint64_t from, uint64_t to) {
  while (res == CL_FOLLOW_READ) {
    char k[CL_ROOM_KEY_MAX], a[32], b[32], err[200];
    size_t n = cl_room_key(k, CL_KEY_STREAM, room, ROOM_LEN);
    int al = snprintf(a, sizeof a, "%llu-0", (unsigned long long)from);
    int bl = to == CL_FOLLOW_END ? snprintf(b, sizeof b, "+")
                                 : snprintf(b, sizeof b, "%llu-0", (unsigned long long)to);
    redisReply *r = rc_cmd_bin(cmd, 4, (const char *[]){"XRANGE", k, a, b},
                               (size_t[]){6, n, (size_t)al, (size_t)bl}, err, sizeof err);
    CHECK(r);
    reads++;
    res = cl_follow_range(&fol, r, from, to, deliver, NULL, &from, &to);
    freeReplyObject(r);
  }
  CHECK(res == CL_FOLLOW_OK);
}

/* Run the queued messages through the follower. skip: drop the k-th (a
 * lost pub/sub message), or SIZE_MAX. Returns how many NEW_EPOCH. */
static int process(rc_conn *s, size_t skip) {
  redisReply *r = rc_cmd(s, "PING", NULL); /* all published so far has arrived */
  CHECK(r);
  freeReplyObject(r);
  int epochs = 0;
  pthread_mutex_lock(&q_lock);
  for (size_t i = 0; i < nq; i++) {
    if (i == skip)
      continue;
    uint64_t off, from, to;
    const char *ep, *ev;
    size_t epl, evl;
    CHECK(cl_message_decode(q[i].data, q[i].len, &off, &ep, &epl, &ev, &evl));
    cl_follow_result res =
        cl_follow_message(&fol, off, ep, epl, ev, evl, deliver, NULL, &from, &to);
    if (res == CL_FOLLOW_NEW_EPOCH)
      epochs++;
    else
      read_range(res, from, to);
  }
  nq = 0;
  pthread_mutex_unlock(&q_lock);
  return epochs;
}

/* ---- publishing ---- */
typedef struct pub_wait {
  rc_wait w;
  int64_t offset;
  char epoch[32];
  size_t epoch_len;
} pub_wait;
static void pub_cb(void *arg, const cl_publish_result *res, const char *err) {
  pub_wait *p = arg;
  CHECK(res && !err);
  p->offset = res->offset;
  memcpy(p->epoch, res->epoch, res->epoch_len);
  p->epoch_len = res->epoch_len;
  rc_wait_cb(&p->w, NULL, NULL);
}
static int64_t publish(enum cl_event_op op, uint64_t player, const char *ev, size_t len,
                       pub_wait *p) {
  rc_wait_init(&p->w);
  cl_event_req rq = {.op = op,
                     .player = player,
                     .room = room,
                     .room_len = ROOM_LEN,
                     .event = ev,
                     .event_len = len,
                     .member = "m",
                     .member_len = 1,
                     .node = "n",
                     .node_len = 1,
                     .stream_max = 100,
                     .list_max = 10};
  CHECK_EQ(cl_room_event(cmd->r, &scripts, &rq, pub_cb, p), 0);
  rc_wait_for(&p->w);
  return p->offset;
}
static uint64_t chats(unsigned n, unsigned first) {
  pub_wait p;
  for (unsigned i = 0; i < n; i++) {
    char ev[16];
    int len = snprintf(ev, sizeof ev, "chat %u", first + i);
    CHECK(publish(CL_OP_CHAT, 1, ev, (size_t)len, &p) > 0);
  }
  return (uint64_t)p.offset;
}

/* Delivered: offsets from..to in order, chat i at offset i + base. */
static void check_delivered(size_t start, uint64_t from, uint64_t to, uint64_t base) {
  CHECK_EQ(ngot - start, to - from + 1);
  for (size_t i = start; i < ngot; i++) {
    uint64_t off = from + (i - start);
    CHECK_EQ(got_off[i], off);
    char ev[16];
    int len = snprintf(ev, sizeof ev, "chat %llu", (unsigned long long)(off - base));
    CHECK(got_len[i] == (size_t)len && !memcmp(got_ev[i], ev, (size_t)len));
  }
}

/* the reply to a publish expected to fail */
typedef struct fail_wait {
  rc_wait w;
  char err[200];
  bool res;
} fail_wait;
static void foreign_cb(void *arg, const cl_publish_result *res, const char *err) {
  fail_wait *fw = arg;
  fw->res = res != NULL;
  snprintf(fw->err, sizeof fw->err, "%s", err ? err : "");
  rc_wait_cb(&fw->w, NULL, NULL);
}

static void load_done(void *arg, const char *err) {
  rc_wait_cb(arg, NULL, err);
}

int main(void) {
  test_begin("redis_follow", 180);
  cl_scripts_init(&scripts);
  static redis_fixture rf; /* static: the atexit stop reads it after main returns */
  redis_fixture_start(&rf, false, NULL);
  port = rf.port;
  cmd = rc_open(port, CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(cmd);
  rc_wait w;
  rc_wait_init(&w);
  CHECK_EQ(cl_scripts_load(cmd->r, &scripts, load_done, &w), 0);
  rc_wait_for(&w);
  CHECK(!w.err[0]);

  rc_conn *s = rc_open(port, CL_REDIS_SUBSCRIBER, on_message, NULL);
  CHECK(s);
  subscribe(s);
  pub_wait p;
  CHECK_EQ(publish(CL_OP_JOIN, 1, "join", 4, &p), 1);
  cl_follow_start(&fol, p.epoch, p.epoch_len, 1, 0); /* follows after its join */
  CHECK_EQ(process(s, SIZE_MAX), 0);                 /* the join itself: a duplicate */
  CHECK_EQ(ngot, 0);

  /* A. 50 chats: delivered in order, no read */
  uint64_t last = chats(50, 1); /* chat i at offset i + 1 */
  CHECK_EQ(process(s, SIZE_MAX), 0);
  check_delivered(0, 2, last, 1);
  CHECK_EQ(reads, 0);

  /* B. a lost pub/sub message (the 10th of 50 dropped): filled from the stream */
  size_t mark = ngot;
  last = chats(50, 51);
  CHECK_EQ(process(s, 9), 0);
  check_delivered(mark, 52, last, 1);
  CHECK_EQ(reads, 1);
  CHECK_EQ(fol.st.gaps, 1);

  /* C. CLIENT KILL TYPE pubsub: 50 chats published while no one listens, then
   *    a new subscription reads them from the stream, then live again */
  redisReply *r = rc_cmd(cmd, "CLIENT", "KILL", "TYPE", "pubsub", NULL);
  CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
  freeReplyObject(r);
  while (atomic_load(&s->state) != 2)
    usleep(1000);
  rc_close(s);
  mark = ngot;
  uint64_t before = last;
  last = chats(50, 101);
  s = rc_open(port, CL_REDIS_SUBSCRIBER, on_message, NULL);
  CHECK(s);
  subscribe(s);
  uint64_t from, to;
  cl_follow_result res = cl_follow_resync(&fol, &from, &to);
  read_range(res, from, to);
  last = chats(50, 151);
  CHECK_EQ(process(s, SIZE_MAX), 0);
  check_delivered(mark, before + 1, last, 1);
  CHECK_EQ(fol.st.gap_lost, 0);
  CHECK_EQ(fol.st.delivered, 200);

  /* D. a gap older than the capped stream: 400 chats while away, MAXLEN ~ 100 */
  r = rc_cmd(cmd, "CLIENT", "KILL", "TYPE", "pubsub", NULL);
  CHECK(r && r->integer == 1);
  freeReplyObject(r);
  while (atomic_load(&s->state) != 2)
    usleep(1000);
  rc_close(s);
  mark = ngot;
  before = last;
  last = chats(400, 201);
  s = rc_open(port, CL_REDIS_SUBSCRIBER, on_message, NULL);
  CHECK(s);
  subscribe(s);
  res = cl_follow_resync(&fol, &from, &to);
  read_range(res, from, to);
  uint64_t lost = fol.st.gap_lost;
  fprintf(stderr, "400 events while away, MAXLEN ~ 100: %llu read back, %llu counted lost\n",
          (unsigned long long)(ngot - mark), (unsigned long long)lost);
  CHECK(lost >= 200 && lost <= 300);
  CHECK_EQ(lost + (ngot - mark), 400);
  check_delivered(mark, before + 1 + lost, last, 1);
  CHECK_EQ(fol.last, last);

  /* E. FLUSHALL: the next message carries a new epoch */
  r = rc_cmd(cmd, "FLUSHALL", NULL);
  CHECK(r);
  freeReplyObject(r);
  CHECK_EQ(publish(CL_OP_CHAT, 1, "gone", 4, &p), -1); /* the member went with the data */
  CHECK_EQ(publish(CL_OP_JOIN, 1, "join", 4, &p), 1);
  CHECK_EQ(process(s, SIZE_MAX), 1);
  CHECK_EQ(fol.st.epoch_changes, 1);
  cl_follow_start(&fol, p.epoch, p.epoch_len, 1, 0); /* re-joined */
  mark = ngot;
  last = chats(5, 0);
  CHECK_EQ(process(s, SIZE_MAX), 0);
  check_delivered(mark, 2, last, 2);

  /* F. bad input in Redis. A stream entry that does not decode (another writer)
   *    at the next offset, the offset moved past it: counted as bad and lost,
   *    delivery goes on. */
  char sk[CL_ROOM_KEY_MAX], mk[CL_ROOM_KEY_MAX], id[32], num[32], err[200];
  size_t skl = cl_room_key(sk, CL_KEY_STREAM, room, ROOM_LEN);
  size_t mkl = cl_room_key(mk, CL_KEY_META, room, ROOM_LEN);
  int idl = snprintf(id, sizeof id, "%llu-0", (unsigned long long)(last + 1));
  r = rc_cmd_bin(cmd, 5, (const char *[]){"XADD", sk, id, "x", "bad"},
                 (size_t[]){4, skl, (size_t)idl, 1, 3}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_STRING);
  freeReplyObject(r);
  int numl = snprintf(num, sizeof num, "%llu", (unsigned long long)(last + 1));
  r = rc_cmd_bin(cmd, 4, (const char *[]){"HSET", mk, "s", num},
                 (size_t[]){4, mkl, 1, (size_t)numl}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_INTEGER);
  freeReplyObject(r);
  uint64_t bad0 = fol.st.bad_entries, lost0 = fol.st.gap_lost;
  mark = ngot;
  uint64_t l2 = chats(1, last - 1 + 2); /* "chat <offset - 1>" at offset last + 2 */
  CHECK_EQ(l2, last + 2);
  CHECK_EQ(process(s, SIZE_MAX), 0);
  CHECK_EQ(fol.st.bad_entries, bad0 + 1);
  CHECK_EQ(fol.st.gap_lost, lost0 + 1);
  check_delivered(mark, l2, l2, 1);
  /* A foreign entry past the room's offset: the script fails with Redis's
   * error before it wrote anything (the offset did not move). */
  idl = snprintf(id, sizeof id, "%llu-0", (unsigned long long)(l2 + 5));
  r = rc_cmd_bin(cmd, 5, (const char *[]){"XADD", sk, id, "d", "foreign"},
                 (size_t[]){4, skl, (size_t)idl, 1, 7}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_STRING);
  freeReplyObject(r);
  fail_wait fw;
  rc_wait_init(&fw.w);
  cl_event_req rq = {.op = CL_OP_CHAT,
                     .player = 1,
                     .room = room,
                     .room_len = ROOM_LEN,
                     .event = "x",
                     .event_len = 1,
                     .node = "n",
                     .node_len = 1,
                     .stream_max = 100,
                     .list_max = 10};
  CHECK_EQ(cl_room_event(cmd->r, &scripts, &rq, foreign_cb, &fw), 0);
  rc_wait_for(&fw.w);
  fprintf(stderr, "a foreign stream entry: '%s'\n", fw.err);
  CHECK(!fw.res && strstr(fw.err, "equal or smaller"));
  r = rc_cmd_bin(cmd, 3, (const char *[]){"HGET", mk, "s"}, (size_t[]){4, mkl, 1}, err, sizeof err);
  numl = snprintf(num, sizeof num, "%llu", (unsigned long long)l2);
  CHECK(r && r->type == REDIS_REPLY_STRING && r->len == (size_t)numl &&
        !memcmp(r->str, num, r->len));
  freeReplyObject(r);

  fprintf(stderr, "delivered %llu, duplicates %llu, gaps %llu, lost %llu, epochs %llu\n",
          (unsigned long long)fol.st.delivered, (unsigned long long)fol.st.duplicates,
          (unsigned long long)fol.st.gaps, (unsigned long long)fol.st.gap_lost,
          (unsigned long long)fol.st.epoch_changes);
  cl_follow_free(&fol);
  rc_close(s);
  rc_close(cmd);
  redis_fixture_stop(&rf);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  fprintf(stderr, "ok\n");
  return 0;
}
