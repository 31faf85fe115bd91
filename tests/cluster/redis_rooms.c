/*
 * redis_rooms.c - the room-ordering script (apps/server/cluster/
 * room_script.c) against a real redis-server: consecutive offsets under
 * concurrent publishers, one order on the channel, the capped stream, gap
 * recovery with XRANGE (and a gap older than the stream detected), member
 * lists as of the join's offset, binary room names kept apart, epoch changes
 * after FLUSHALL and after a restart without persistence (none with
 * appendonly yes + appendfsync always), NOSCRIPT, player ids that never
 * repeat, and channel messages that do not decode.
 */
#include "common/test.h"

#include "redis_client.h"
#include "redis_fixture.h"
#include "room_keys.h"
#include "room_script.h"

static cl_scripts scripts;

/* ---- a room event, synchronously ---- */
typedef struct ev_result {
  int64_t offset;
  char epoch[32];
  size_t epoch_len;
  uint64_t count;
  size_t n;
  struct {
    uint64_t player, joined;
    char data[16];
    size_t len;
  } m[8];
  char err[200];
  rc_wait w;
} ev_result;

static void ev_cb(void *arg, const cl_publish_result *res, const char *err) {
  ev_result *e = arg;
  if (res) {
    e->offset = res->offset;
    CHECK(res->epoch_len < sizeof e->epoch);
    memcpy(e->epoch, res->epoch, res->epoch_len);
    e->epoch_len = res->epoch_len;
    e->count = res->member_count;
    e->n = res->nmembers;
    for (size_t i = 0; i < res->nmembers && i < 8; i++) {
      e->m[i].player = res->members[i].player;
      e->m[i].joined = res->members[i].joined;
      CHECK(res->members[i].len <= 16);
      memcpy(e->m[i].data, res->members[i].data, res->members[i].len);
      e->m[i].len = res->members[i].len;
    }
  }
  snprintf(e->err, sizeof e->err, "%s", err ? err : "");
  rc_wait_cb(&e->w, NULL, NULL);
}

static void ev(ev_result *e, rc_conn *c, enum cl_event_op op, const char *room, size_t room_len,
               uint64_t player, const char *event, size_t event_len, const char *member,
               size_t member_len) {
  memset(e, 0, sizeof *e);
  rc_wait_init(&e->w);
  cl_event_req q = {.op = op,
                    .player = player,
                    .room = room,
                    .room_len = room_len,
                    .event = event,
                    .event_len = event_len,
                    .member = member,
                    .member_len = member_len,
                    .node = "node\0A",
                    .node_len = 6,
                    .stream_max = 100,
                    .list_max = 8,
                    .idle_ttl_s = 0};
  CHECK_EQ(cl_room_event(c->r, &scripts, &q, ev_cb, e), 0);
  rc_wait_for(&e->w);
  if (e->err[0])
    fprintf(stderr, "room event: %s\n", e->err);
  CHECK(!e->err[0]);
}

#define EV(e, c, op, room, player, event)                                                          \
  ev(e, c, op, room, sizeof room - 1, player, event, sizeof event - 1, NULL, 0)

/* ---- the channel subscriber: every message, decoded ---- */
#define MAXMSG 4096
static pthread_mutex_t msg_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t nmsg, nbad;
static uint64_t msg_off[MAXMSG];
static char msg_epoch[MAXMSG][32];
static char msg_event[MAXMSG][24];
static size_t msg_event_len[MAXMSG];
static char msg_room[MAXMSG][8];
static size_t msg_room_len[MAXMSG];

static void on_message(void *arg, const char *pat, size_t pat_len, const char *ch, size_t ch_len,
                       const char *data, size_t len) {
  (void)arg, (void)pat, (void)pat_len;
  uint64_t off;
  const char *ep, *evt;
  size_t ep_len, evt_len;
  char room[CL_ROOM_MAX];
  size_t room_len;
  pthread_mutex_lock(&msg_lock);
  if (!cl_message_decode(data, len, &off, &ep, &ep_len, &evt, &evt_len) || ep_len >= 32 ||
      evt_len > 24 || !cl_room_from_channel(ch, ch_len, room, &room_len) || room_len > 8 ||
      nmsg >= MAXMSG) {
    nbad++;
  } else {
    msg_off[nmsg] = off;
    memcpy(msg_epoch[nmsg], ep, ep_len);
    msg_epoch[nmsg][ep_len] = 0;
    memcpy(msg_event[nmsg], evt, evt_len);
    msg_event_len[nmsg] = evt_len;
    memcpy(msg_room[nmsg], room, room_len);
    msg_room_len[nmsg] = room_len;
    nmsg++;
  }
  pthread_mutex_unlock(&msg_lock);
}

static void subscribe(rc_conn *s, const char *room, size_t room_len) {
  char ch[CL_ROOM_KEY_MAX];
  size_t n = cl_room_key(ch, CL_KEY_CHANNEL, room, room_len);
  char err[200];
  redisReply *r =
      rc_cmd_bin(s, 2, (const char *[]){"SUBSCRIBE", ch}, (size_t[]){9, n}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_ARRAY);
  freeReplyObject(r);
}

/* Every message published before now has reached the subscriber. */
static void sub_sync(rc_conn *s) {
  redisReply *r = rc_cmd(s, "PING", NULL);
  CHECK(r);
  freeReplyObject(r);
}

static void msgs_reset(void) {
  pthread_mutex_lock(&msg_lock);
  nmsg = nbad = 0;
  pthread_mutex_unlock(&msg_lock);
}

/* ---- concurrent publishers ---- */
#define PUBS 4
static unsigned chats;
static pthread_barrier_t go;

typedef struct publisher {
  rc_conn *c;
  uint64_t player;
  pthread_t th;
  _Atomic unsigned done;
  uint64_t *offs; /* by chat number, in reply order */
  char epoch[32];
  _Atomic int bad;
} publisher;

typedef struct pub_ctx {
  publisher *p;
  unsigned i;
} pub_ctx;

static void pub_cb(void *arg, const cl_publish_result *res, const char *err) {
  pub_ctx *x = arg;
  publisher *p = x->p;
  if (!res || err || res->offset < 1 || atomic_load(&p->done) != x->i ||
      res->epoch_len != strlen(p->epoch) || memcmp(res->epoch, p->epoch, res->epoch_len))
    atomic_fetch_add(&p->bad, 1);
  else
    p->offs[x->i] = (uint64_t)res->offset;
  atomic_fetch_add(&p->done, 1);
  free(x);
}

static void *publish_thread(void *arg) {
  publisher *p = arg;
  pthread_barrier_wait(&go);
  for (unsigned i = 0; i < chats; i++) {
    char event[24];
    int n = snprintf(event, sizeof event, "p%llu\n%u", (unsigned long long)p->player, i);
    pub_ctx *x = malloc(sizeof *x);
    CHECK(x);
    *x = (pub_ctx){p, i};
    cl_event_req q = {.op = CL_OP_CHAT,
                      .player = p->player,
                      .room = "lobby",
                      .room_len = 5,
                      .event = event,
                      .event_len = (size_t)n,
                      .node = "n",
                      .node_len = 1,
                      .stream_max = 100,
                      .list_max = 8};
    CHECK_EQ(cl_room_event(p->c->r, &scripts, &q, pub_cb, x), 0);
  }
  return NULL;
}

/* ---- ids ---- */
typedef struct id_wait {
  uint64_t first;
  char err[200];
  rc_wait w;
} id_wait;
static void id_cb(void *arg, uint64_t first, const char *err) {
  id_wait *x = arg;
  x->first = first;
  snprintf(x->err, sizeof x->err, "%s", err ? err : "");
  rc_wait_cb(&x->w, NULL, NULL);
}
static uint64_t ids(rc_conn *c, unsigned block) {
  id_wait x;
  rc_wait_init(&x.w);
  CHECK_EQ(cl_ids_reserve(c->r, &scripts, block, id_cb, &x), 0);
  rc_wait_for(&x.w);
  CHECK(!x.err[0] && x.first > 0);
  return x.first;
}

static void load_done(void *arg, const char *err) {
  rc_wait *w = arg;
  if (err)
    fprintf(stderr, "SCRIPT LOAD: %s\n", err);
  rc_wait_cb(w, NULL, err);
}
static void load_scripts(rc_conn *c) {
  rc_wait w;
  rc_wait_init(&w);
  CHECK_EQ(cl_scripts_load(c->r, &scripts, load_done, &w), 0);
  rc_wait_for(&w);
  CHECK(!w.err[0]);
  CHECK(strlen(scripts.room_sha) == 40 && strlen(scripts.ids_sha) == 40);
}

static long long xlen(rc_conn *c, const char *room, size_t room_len) {
  char k[CL_ROOM_KEY_MAX], err[200];
  size_t n = cl_room_key(k, CL_KEY_STREAM, room, room_len);
  redisReply *r = rc_cmd_bin(c, 2, (const char *[]){"XLEN", k}, (size_t[]){4, n}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_INTEGER);
  long long v = r->integer;
  freeReplyObject(r);
  return v;
}

/* XRANGE of offsets [from, to] of a room stream. */
static redisReply *xrange(rc_conn *c, const char *room, size_t room_len, uint64_t from,
                          uint64_t to) {
  char k[CL_ROOM_KEY_MAX], a[32], b[32], err[200];
  size_t n = cl_room_key(k, CL_KEY_STREAM, room, room_len);
  int al = snprintf(a, sizeof a, "%llu-0", (unsigned long long)from);
  int bl = snprintf(b, sizeof b, "%llu-0", (unsigned long long)to);
  redisReply *r = rc_cmd_bin(c, 4, (const char *[]){"XRANGE", k, a, b},
                             (size_t[]){6, n, (size_t)al, (size_t)bl}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_ARRAY);
  return r;
}

int main(void) {
  test_begin("redis_rooms", 240);
  chats = TEST_SANITIZED ? 100 : 250;
  cl_scripts_init(&scripts);
  static redis_fixture rf; /* static: the atexit stop reads it after main returns */
  redis_fixture_start(&rf, false, NULL);
  rc_conn *c = rc_open(rf.port, CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(c);
  rc_conn *s = rc_open(rf.port, CL_REDIS_SUBSCRIBER, on_message, NULL);
  CHECK(s);
  load_scripts(c);
  subscribe(s, "lobby", 5);

  /* 1. concurrent publishers: consecutive offsets, one order on the channel */
  publisher pubs[PUBS];
  ev_result e;
  for (int i = 0; i < PUBS; i++) {
    memset(&pubs[i], 0, sizeof pubs[i]);
    pubs[i].c = rc_open(rf.port, CL_REDIS_COMMANDS, NULL, NULL);
    CHECK(pubs[i].c);
    pubs[i].player = 100 + (uint64_t)i;
    pubs[i].offs = calloc(chats, sizeof(uint64_t));
    char name[8] = {'p', 0, (char)('0' + i)};
    ev(&e, c, CL_OP_JOIN, "lobby", 5, pubs[i].player, "join", 4, name, 3);
    CHECK_EQ(e.offset, i + 1);
    CHECK_EQ(e.count, i + 1);
    snprintf(pubs[i].epoch, sizeof pubs[i].epoch, "%.*s", (int)e.epoch_len, e.epoch);
  }
  /* the join lists the members as of its offset, oldest first */
  CHECK_EQ(e.n, PUBS);
  for (int i = 0; i < PUBS; i++) {
    char name[3] = {'p', 0, (char)('0' + i)};
    CHECK_EQ(e.m[i].player, 100 + i);
    CHECK_EQ(e.m[i].joined, i + 1);
    CHECK(e.m[i].len == 3 && !memcmp(e.m[i].data, name, 3));
  }
  CHECK_EQ(pthread_barrier_init(&go, NULL, PUBS), 0);
  for (int i = 0; i < PUBS; i++)
    CHECK_EQ(pthread_create(&pubs[i].th, NULL, publish_thread, &pubs[i]), 0);
  for (int i = 0; i < PUBS; i++) {
    pthread_join(pubs[i].th, NULL);
    while (atomic_load(&pubs[i].done) != chats)
      usleep(1000);
    CHECK_EQ(atomic_load(&pubs[i].bad), 0);
  }
  uint64_t total = PUBS + (uint64_t)PUBS * chats;
  uint8_t *seen = calloc(total + 1, 1);
  unsigned interleaved = 0;
  for (int i = 0; i < PUBS; i++)
    for (unsigned j = 0; j < chats; j++) {
      uint64_t o = pubs[i].offs[j];
      CHECK(o > PUBS && o <= total && !seen[o]); /* each offset once */
      seen[o] = 1;
      if (j)
        CHECK(o > pubs[i].offs[j - 1]); /* a connection's events in its order */
      if (j && o != pubs[i].offs[j - 1] + 1)
        interleaved++;
    }
  sub_sync(s);
  pthread_mutex_lock(&msg_lock);
  CHECK_EQ(nbad, 0);
  CHECK_EQ(nmsg, total);
  for (size_t i = 0; i < nmsg; i++) {
    CHECK_EQ(msg_off[i], i + 1); /* the channel carries them in offset order */
    CHECK(!strcmp(msg_epoch[i], pubs[0].epoch));
    CHECK(msg_room_len[i] == 5 && !memcmp(msg_room[i], "lobby", 5));
  }
  for (int i = 0; i < PUBS; i++)
    for (unsigned j = 0; j < chats; j++) {
      char event[24];
      int n = snprintf(event, sizeof event, "p%llu\n%u", (unsigned long long)pubs[i].player, j);
      size_t k = pubs[i].offs[j] - 1;
      CHECK(msg_event_len[k] == (size_t)n && !memcmp(msg_event[k], event, (size_t)n));
    }
  pthread_mutex_unlock(&msg_lock);
  free(seen);
  fprintf(stderr, "%u publishers x %u chats: offsets 1..%llu once each, %u interleavings\n", PUBS,
          chats, (unsigned long long)total, interleaved);

  /* 2. the stream is capped: MAXLEN ~ 100 keeps at least 100, and at most 100 + a
   *    radix node (stream-node-max-entries, 100 by default) */
  long long len = xlen(c, "lobby", 5);
  fprintf(stderr, "stream length after %llu events with MAXLEN ~ 100: %lld\n",
          (unsigned long long)total, len);
  CHECK(len >= 100 && len <= 200);

  /* 3. gap recovery: the last 50 offsets read back from the stream, same bytes */
  redisReply *r = xrange(c, "lobby", 5, total - 49, total);
  CHECK_EQ(r->elements, 50);
  for (size_t i = 0; i < r->elements; i++) {
    uint64_t off;
    const char *evt;
    size_t evt_len;
    CHECK(cl_stream_entry_decode(r->element[i], &off, &evt, &evt_len));
    CHECK_EQ(off, total - 49 + i);
    CHECK(evt_len == msg_event_len[off - 1] && !memcmp(evt, msg_event[off - 1], evt_len));
  }
  freeReplyObject(r);
  /* a gap older than the stream: the first entry it still holds is past the
   * gap's start - detected, never papered over */
  r = xrange(c, "lobby", 5, 1, total);
  CHECK((uint64_t)r->elements == (uint64_t)len);
  uint64_t first;
  const char *evt;
  size_t evt_len;
  CHECK(cl_stream_entry_decode(r->element[0], &first, &evt, &evt_len));
  CHECK(first > 1);
  freeReplyObject(r);

  /* 4. membership: leave and join again; member lists as of the offset */
  uint64_t o0 = total;
  EV(&e, c, CL_OP_LEAVE, "lobby", 101, "left");
  CHECK_EQ(e.offset, o0 + 1);
  EV(&e, c, CL_OP_LEAVE, "lobby", 101, "left"); /* not a member any more: nothing */
  CHECK_EQ(e.offset, -1);
  EV(&e, c, CL_OP_CHAT, "lobby", 101, "ghost"); /* a non-member's chat: nothing */
  CHECK_EQ(e.offset, -1);
  ev(&e, c, CL_OP_JOIN, "lobby", 5, 101, "again", 5, "back", 4);
  CHECK_EQ(e.offset, o0 + 2);
  CHECK_EQ(e.count, PUBS);
  CHECK_EQ(e.n, PUBS);
  CHECK(e.m[0].player == 100 && e.m[1].player == 102 && e.m[2].player == 103);
  CHECK(e.m[3].player == 101 && e.m[3].joined == o0 + 2 && e.m[3].len == 4);
  ev(&e, c, CL_OP_JOIN, "lobby", 5, 101, "twice", 5, "back", 4); /* a member: nothing */
  CHECK_EQ(e.offset, -1);

  /* 5. binary room names: "a\0x", "a\0y", "a" and "a\0" are four rooms */
  sub_sync(s); /* the lobby's last events are in before the count starts again */
  msgs_reset();
  subscribe(s, "a\0x", 3);
  subscribe(s, "a\0y", 3);
  const char *names[4] = {"a\0x", "a\0y", "a", "a\0"};
  size_t lens[4] = {3, 3, 1, 2};
  for (int i = 0; i < 4; i++) {
    ev(&e, c, CL_OP_JOIN, names[i], lens[i], 7, "j", 1, "m", 1);
    CHECK_EQ(e.offset, 1);
    CHECK_EQ(e.count, 1);
  }
  ev(&e, c, CL_OP_CHAT, "a\0x", 3, 7, "only x", 6, NULL, 0);
  CHECK_EQ(e.offset, 2);
  ev(&e, c, CL_OP_JOIN, "a\0y", 3, 8, "j", 1, "n", 1);
  CHECK_EQ(e.offset, 2);
  CHECK_EQ(e.count, 2);
  CHECK_EQ(xlen(c, "a\0x", 3), 2);
  CHECK_EQ(xlen(c, "a", 1), 1);
  sub_sync(s);
  pthread_mutex_lock(&msg_lock);
  CHECK_EQ(nbad, 0);
  CHECK_EQ(nmsg, 4); /* "a\0x" 1, 2 and "a\0y" 1, 2, each on its own channel */
  int xs = 0, ys = 0;
  for (size_t i = 0; i < nmsg; i++) {
    CHECK(msg_room_len[i] == 3);
    if (!memcmp(msg_room[i], "a\0x", 3))
      CHECK_EQ(msg_off[i], ++xs);
    else
      CHECK(!memcmp(msg_room[i], "a\0y", 3) && msg_off[i] == (uint64_t)++ys);
  }
  CHECK(xs == 2 && ys == 2);
  pthread_mutex_unlock(&msg_lock);

  /* 6. NOSCRIPT: the script cache flushed under a live connection */
  r = rc_cmd(c, "SCRIPT", "FLUSH", NULL);
  CHECK(r && r->type == REDIS_REPLY_STATUS);
  freeReplyObject(r);
  uint64_t retries = cl_script_noscript_retries();
  EV(&e, c, CL_OP_CHAT, "a", 7, "after flush");
  CHECK_EQ(e.offset, 2);
  CHECK_EQ(cl_script_noscript_retries(), retries + 1);
  load_scripts(c);

  /* 7. player ids: blocks never overlap, also after the data is lost */
  uint64_t id1 = ids(c, 1000), id2 = ids(c, 1000);
  CHECK(id2 >= id1 + 1000);
  usleep(20000); /* the documented condition: fewer than 10^6 ids a second */

  /* 8. FLUSHALL: a new epoch; the offsets start again; a member's chat is refused */
  char epoch1[32];
  EV(&e, c, CL_OP_CHAT, "a", 7, "before");
  snprintf(epoch1, sizeof epoch1, "%.*s", (int)e.epoch_len, e.epoch);
  r = rc_cmd(c, "FLUSHALL", NULL);
  CHECK(r);
  freeReplyObject(r);
  EV(&e, c, CL_OP_CHAT, "a", 7, "lost"); /* the membership went with the data */
  CHECK_EQ(e.offset, -1);
  CHECK(e.epoch_len != strlen(epoch1) || memcmp(e.epoch, epoch1, e.epoch_len));
  char epoch2[32];
  snprintf(epoch2, sizeof epoch2, "%.*s", (int)e.epoch_len, e.epoch);
  EV(&e, c, CL_OP_JOIN, "a", 7, "rejoin");
  CHECK_EQ(e.offset, 1);
  CHECK(e.epoch_len == strlen(epoch2) && !memcmp(e.epoch, epoch2, e.epoch_len));
  uint64_t id3 = ids(c, 1000);
  CHECK(id3 >= id2 + 1000);
  fprintf(stderr, "epochs: %s -> %s after FLUSHALL; ids %llu, %llu, then %llu\n", epoch1, epoch2,
          (unsigned long long)id1, (unsigned long long)id2, (unsigned long long)id3);

  /* 9. a restart without persistence: the connections are lost, a new epoch */
  for (int i = 0; i < PUBS; i++) {
    rc_close(pubs[i].c);
    free(pubs[i].offs);
  }
  usleep(20000);
  redis_fixture_restart(&rf, false);
  while (atomic_load(&c->state) != 2 || atomic_load(&s->state) != 2)
    usleep(1000);
  rc_close(c);
  rc_close(s);
  c = rc_open(rf.port, CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(c);
  load_scripts(c);
  EV(&e, c, CL_OP_JOIN, "a", 7, "after restart");
  CHECK_EQ(e.offset, 1);
  CHECK(e.epoch_len != strlen(epoch2) || memcmp(e.epoch, epoch2, e.epoch_len));
  uint64_t id4 = ids(c, 1000);
  CHECK(id4 >= id3 + 1000);
  rc_close(c);
  redis_fixture_stop(&rf);

  /* 10. with appendonly yes + appendfsync always a restart keeps the epoch and
   *     the offsets go on */
  redis_fixture_start(&rf, true, NULL);
  c = rc_open(rf.port, CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(c);
  load_scripts(c);
  EV(&e, c, CL_OP_JOIN, "p", 1, "j");
  EV(&e, c, CL_OP_CHAT, "p", 1, "c");
  CHECK_EQ(e.offset, 2);
  char epoch3[32];
  snprintf(epoch3, sizeof epoch3, "%.*s", (int)e.epoch_len, e.epoch);
  uint64_t id5 = ids(c, 1000);
  redis_fixture_restart(&rf, false);
  while (atomic_load(&c->state) != 2)
    usleep(1000);
  rc_close(c);
  c = rc_open(rf.port, CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(c);
  EV(&e, c, CL_OP_CHAT, "p", 1, "c2"); /* EVAL: the new connection loaded nothing yet */
  CHECK_EQ(e.offset, 3);
  CHECK(e.epoch_len == strlen(epoch3) && !memcmp(e.epoch, epoch3, e.epoch_len));
  CHECK(ids(c, 1000) >= id5 + 1000);
  r = xrange(c, "p", 1, 1, 3);
  CHECK_EQ(r->elements, 3);
  freeReplyObject(r);
  rc_close(c);
  redis_fixture_stop(&rf);

  /* 11. channel messages that do not decode */
  static const struct {
    const char *m;
    size_t len;
  } bad[] = {{"", 0},       {"1", 1},      {"1:", 2},      {"1:2", 3},
             {"0:2:x", 5},  {"01:2:x", 6}, {"a:2:x", 5},   {"1::x", 4},
             {"1:2a:x", 6}, {"-1:2:x", 6}, {"1\0:2:x", 6}, {"12345678901234567890:2:x", 24}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t off;
    const char *ep;
    size_t epl;
    CHECK(!cl_message_decode(bad[i].m, bad[i].len, &off, &ep, &epl, &evt, &evt_len));
  }
  uint64_t off;
  const char *ep;
  size_t epl;
  CHECK(cl_message_decode("7:99:a:\0b", 9, &off, &ep, &epl, &evt, &evt_len));
  CHECK(off == 7 && epl == 2 && !memcmp(ep, "99", 2) && evt_len == 4 && !memcmp(evt, "a:\0b", 4));
  CHECK(cl_message_decode("7:99:", 5, &off, &ep, &epl, &evt, &evt_len) && evt_len == 0);
  char room[CL_ROOM_MAX];
  size_t room_len;
  CHECK(!cl_room_from_channel("cport:{r6}:ch", 13, room, &room_len));
  CHECK(!cl_room_from_channel("cport:{r6g}:ch", 14, room, &room_len));
  CHECK(!cl_room_from_channel("cport:{r61}:s", 13, room, &room_len));
  CHECK(cl_room_from_channel("cport:{r}:ch", 12, room, &room_len) && room_len == 0);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  fprintf(stderr, "ok\n");
  return 0;
}
