/*
 * redis_presence.c - node heartbeats and the cleanup of a dead node's members
 * (apps/server/cluster/presence.c with the room script) against a real
 * redis-server: a node that stops heartbeating is claimed by exactly one
 * sweeper, its members leave every room (leave events on the channels, member
 * lists without them), leaves are idempotent, a sweeper that dies is taken
 * over when its lease ends, and a live node is never claimed; a node past
 * its deadline that is still subscribed to its liveness channel is spared
 * until the grace ends.
 */
#include "common/test.h"

#include "presence.h"
#include "redis_client.h"
#include "redis_fixture.h"
#include "room_keys.h"
#include "room_script.h"

static cl_scripts scripts;
static rc_conn *cmd;
static uint16_t redis_port;

typedef struct ev_wait {
  rc_wait w;
  int64_t offset;
  uint64_t count;
  uint64_t players[8];
  size_t n;
} ev_wait;

static void ev_cb(void *arg, const cl_publish_result *res, const char *err) {
  ev_wait *e = arg;
  if (err)
    fprintf(stderr, "room event: %s\n", err);
  CHECK(res && !err);
  e->offset = res->offset;
  e->count = res->member_count;
  e->n = res->nmembers < 8 ? res->nmembers : 8;
  for (size_t i = 0; i < e->n; i++)
    e->players[i] = res->members[i].player;
  rc_wait_cb(&e->w, NULL, NULL);
}

static int64_t event(ev_wait *e, enum cl_event_op op, const char *node, size_t node_len,
                     uint64_t player, const void *room, size_t room_len) {
  memset(e, 0, sizeof *e);
  rc_wait_init(&e->w);
  cl_event_req q = {.op = op,
                    .player = player,
                    .room = room,
                    .room_len = room_len,
                    .event = op == CL_OP_LEAVE ? "left" : "joined",
                    .event_len = op == CL_OP_LEAVE ? 4 : 6,
                    .member = "m",
                    .member_len = 1,
                    .node = node,
                    .node_len = node_len,
                    .stream_max = 100,
                    .list_max = 8};
  CHECK_EQ(cl_room_event(cmd->r, &scripts, &q, ev_cb, e), 0);
  rc_wait_for(&e->w);
  return e->offset;
}

static void hb_cb(void *arg, const char *err) {
  rc_wait_cb(arg, NULL, err);
}
static void heartbeat(const char *node, size_t len, unsigned ttl_ms) {
  rc_wait w;
  rc_wait_init(&w);
  CHECK_EQ(cl_node_heartbeat(cmd->r, node, len, ttl_ms, hb_cb, &w), 0);
  rc_wait_for(&w);
  CHECK(!w.err[0]);
}

static unsigned grace_ms = 60000; /* cl_nodes_claim_dead's grace */
static size_t n_spared;           /* the last claim's spared nodes */
static char spared_name[16];      /* the first of them, */
static long long spared_over;     /* and how far past its deadline */

/* The nodes claimed now; names copied into out[i] (lengths in lens). */
static size_t claim(char out[][16], size_t *lens, unsigned lease_ms) {
  rc_wait w;
  rc_wait_init(&w);
  CHECK_EQ(cl_nodes_claim_dead(cmd->r, 10, lease_ms, grace_ms, rc_wait_cb, &w), 0);
  rc_wait_for(&w);
  CHECK(w.r && w.r->type == REDIS_REPLY_ARRAY && w.r->elements == 2);
  const redisReply *dead = w.r->element[0], *spared = w.r->element[1];
  CHECK(dead->type == REDIS_REPLY_ARRAY && spared->type == REDIS_REPLY_ARRAY);
  size_t n = dead->elements;
  CHECK(n <= 10);
  for (size_t i = 0; i < n; i++) {
    CHECK(dead->element[i]->type == REDIS_REPLY_STRING && dead->element[i]->len <= 16);
    memcpy(out[i], dead->element[i]->str, dead->element[i]->len);
    lens[i] = dead->element[i]->len;
  }
  CHECK_EQ(spared->elements % 2, 0);
  n_spared = spared->elements / 2;
  if (n_spared) {
    const redisReply *name = spared->element[0], *over = spared->element[1];
    CHECK(name->type == REDIS_REPLY_STRING && name->len < sizeof spared_name);
    CHECK(over->type == REDIS_REPLY_INTEGER && over->integer >= 0);
    memcpy(spared_name, name->str, name->len);
    spared_name[name->len] = 0;
    spared_over = over->integer;
  }
  freeReplyObject(w.r);
  return n;
}

/* A connection subscribed to node's liveness channel, as its subscriber connection is. */
static rc_conn *alive_conn(const char *node, size_t len) {
  rc_conn *c = rc_open(redis_port, CL_REDIS_SUBSCRIBER, NULL, NULL);
  CHECK(c);
  char ch[CL_ALIVE_CHANNEL_MAX];
  size_t n = cl_node_alive_channel(ch, node, len);
  CHECK(n == 12 + len && !memcmp(ch, "cport:alive:", 12) && !memcmp(ch + 12, node, len));
  char err[200];
  redisReply *r =
      rc_cmd_bin(c, 2, (const char *[]){"SUBSCRIBE", ch}, (size_t[]){9, n}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 3);
  freeReplyObject(r);
  return c;
}

/* Wait (polling Redis, no timing asserted) until `node` is claimed. */
static void claim_until(const char *node, size_t len, unsigned lease_ms) {
  for (;;) {
    char names[10][16];
    size_t lens[10];
    size_t n = claim(names, lens, lease_ms);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
      CHECK(lens[i] == len && !memcmp(names[i], node, len)); /* only the dead one */
      found = true;
    }
    if (found)
      return;
    usleep(20000);
  }
}

/* The sweeper's work for a claimed node: every entry of its index leaves. */
static size_t clean(const char *node, size_t len, size_t *published) {
  char key[64], err[200];
  size_t kl = cl_node_key(key, node, len);
  redisReply *r =
      rc_cmd_bin(cmd, 2, (const char *[]){"SMEMBERS", key}, (size_t[]){8, kl}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_ARRAY);
  *published = 0;
  for (size_t i = 0; i < r->elements; i++) {
    uint64_t player;
    char room[CL_ROOM_MAX];
    size_t room_len;
    CHECK(cl_node_entry_decode(r->element[i]->str, r->element[i]->len, &player, room, &room_len));
    ev_wait e;
    if (event(&e, CL_OP_LEAVE, node, len, player, room, room_len) > 0)
      (*published)++;
  }
  size_t n = r->elements;
  freeReplyObject(r);
  return n;
}

static long long exists(const char *key, size_t kl) {
  char err[200];
  redisReply *r =
      rc_cmd_bin(cmd, 2, (const char *[]){"EXISTS", key}, (size_t[]){6, kl}, err, sizeof err);
  CHECK(r && r->type == REDIS_REPLY_INTEGER);
  long long v = r->integer;
  freeReplyObject(r);
  return v;
}

static void load_done(void *arg, const char *err) {
  rc_wait_cb(arg, NULL, err);
}

int main(void) {
  test_begin("redis_presence", 120);
  cl_scripts_init(&scripts);
  static redis_fixture rf; /* static: the atexit stop reads it after main returns */
  redis_fixture_start(&rf, false, NULL);
  redis_port = rf.port;
  cmd = rc_open(rf.port, CL_REDIS_COMMANDS, NULL, NULL);
  CHECK(cmd);
  rc_wait w;
  rc_wait_init(&w);
  CHECK_EQ(cl_scripts_load(cmd->r, &scripts, load_done, &w), 0);
  rc_wait_for(&w);

  /* node "A\0" (a binary name): players 1, 2 in "lobby", 1 in "a\0x";
   * node "B": player 3 in "lobby" */
  static const char A[] = "A\0", B[] = "B";
  ev_wait e;
  CHECK_EQ(event(&e, CL_OP_JOIN, A, 2, 1, "lobby", 5), 1);
  CHECK_EQ(event(&e, CL_OP_JOIN, A, 2, 2, "lobby", 5), 2);
  CHECK_EQ(event(&e, CL_OP_JOIN, B, 1, 3, "lobby", 5), 3);
  CHECK_EQ(event(&e, CL_OP_JOIN, A, 2, 1, "a\0x", 3), 1);
  heartbeat(B, 1, 60000);
  heartbeat(A, 2, 300);
  char names[10][16];
  size_t lens[10];
  CHECK_EQ(claim(names, lens, 5000), 0); /* nobody is dead yet */

  /* A stops heartbeating: claimed once (B never), the lease keeps others off */
  claim_until(A, 2, 5000);
  CHECK_EQ(claim(names, lens, 5000), 0);
  size_t published;
  CHECK_EQ(clean(A, 2, &published), 3);
  CHECK_EQ(published, 3);
  CHECK_EQ(event(&e, CL_OP_JOIN, B, 1, 4, "lobby", 5), 6); /* 3 joins, 2 leaves */
  CHECK_EQ(e.count, 2);
  CHECK(e.n == 2 && e.players[0] == 3 && e.players[1] == 4);
  CHECK_EQ(event(&e, CL_OP_JOIN, B, 1, 5, "a\0x", 3), 3);
  CHECK(e.count == 1 && e.players[0] == 5);
  /* the node's index emptied with its last leave; cleaning again does nothing */
  char key[64];
  size_t kl = cl_node_key(key, A, 2);
  CHECK_EQ(exists(key, kl), 0);
  CHECK_EQ(clean(A, 2, &published), 0);
  /* leaves are idempotent: a second sweeper repeating one publishes nothing */
  CHECK_EQ(event(&e, CL_OP_LEAVE, A, 2, 1, "lobby", 5), -1);
  rc_wait_init(&w);
  CHECK_EQ(cl_node_forget(cmd->r, A, 2, rc_wait_cb, &w), 0);
  rc_wait_for(&w);
  CHECK(w.r);
  freeReplyObject(w.r);
  redisReply *r = rc_cmd_bin(cmd, 3, (const char *[]){"ZSCORE", "cport:nodes", A},
                             (size_t[]){6, 11, 2}, w.err, sizeof w.err);
  CHECK(r && r->type == REDIS_REPLY_NIL);
  freeReplyObject(r);

  /* a sweeper that dies mid-cleanup: its lease ends and the node is claimed again */
  CHECK_EQ(event(&e, CL_OP_JOIN, "C", 1, 9, "lobby", 5), 7);
  heartbeat("C", 1, 100);
  claim_until("C", 1, 200);  /* ...and this sweeper "dies" */
  claim_until("C", 1, 5000); /* taken over */
  CHECK_EQ(clean("C", 1, &published), 1);
  CHECK_EQ(published, 1);
  CHECK_EQ(claim(names, lens, 5000), 0); /* B, alive, was never claimed */
  CHECK_EQ(n_spared, 0);

  /* a node past its deadline with its liveness channel subscribed (alive, its
   * heartbeats late) is spared, and told as such, while within the grace... */
  CHECK_EQ(event(&e, CL_OP_JOIN, "D", 1, 10, "lobby", 5), 9);
  rc_conn *alive = alive_conn("D", 1);
  heartbeat("D", 1, 50);
  for (;;) { /* until D is past its deadline (no timing asserted) */
    CHECK_EQ(claim(names, lens, 5000), 0);
    if (n_spared)
      break;
    usleep(20000);
  }
  CHECK_EQ(n_spared, 1);
  CHECK(!strcmp(spared_name, "D"));
  CHECK_EQ(claim(names, lens, 5000), 0); /* still spared: never claimed */
  CHECK_EQ(n_spared, 1);
  /* ...its heartbeat back: neither spared nor claimed */
  heartbeat("D", 1, 60000);
  CHECK_EQ(claim(names, lens, 5000), 0);
  CHECK_EQ(n_spared, 0);
  /* past the grace (a node hung with its connection open): claimed */
  heartbeat("D", 1, 50);
  grace_ms = 200;
  claim_until("D", 1, 5000);
  CHECK_EQ(clean("D", 1, &published), 1);
  grace_ms = 60000;
  /* its connection gone (a dead process): claimed at its deadline */
  CHECK_EQ(event(&e, CL_OP_JOIN, "D", 1, 11, "lobby", 5), 11);
  heartbeat("D", 1, 50);
  rc_close(alive);
  claim_until("D", 1, 5000);
  CHECK_EQ(n_spared, 0);
  CHECK_EQ(clean("D", 1, &published), 1);
  CHECK_EQ(published, 1);

  /* a dead node behind more spared ones than a page of the claim script (128): found */
  enum { MANY = 130 };
  rc_conn *many = rc_open(redis_port, CL_REDIS_SUBSCRIBER, NULL, NULL);
  CHECK(many);
  char sn[MANY][16];
  for (int i = 0; i < MANY; i++) {
    snprintf(sn[i], sizeof sn[i], "s%03d", i);
    char ch[CL_ALIVE_CHANNEL_MAX], err[200];
    size_t n = cl_node_alive_channel(ch, sn[i], 4);
    redisReply *r =
        rc_cmd_bin(many, 2, (const char *[]){"SUBSCRIBE", ch}, (size_t[]){9, n}, err, sizeof err);
    CHECK(r && r->type == REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    heartbeat(sn[i], 4, 1);
  }
  usleep(20000);
  heartbeat("E", 1, 1); /* past its deadline after all of them: last in the zset */
  claim_until("E", 1, 5000);
  CHECK_EQ(n_spared, MANY);
  rc_close(many);
  /* their connection gone: every one claimed once (10 per claim at most) */
  int claimed = 0;
  while (claimed < MANY) {
    size_t n = claim(names, lens, 60000);
    for (size_t i = 0; i < n; i++)
      CHECK(lens[i] == 4 && names[i][0] == 's');
    claimed += (int)n;
    if (!n)
      usleep(20000); /* Redis has not seen the connection close yet */
  }
  CHECK_EQ(claimed, MANY);
  CHECK_EQ(claim(names, lens, 5000), 0);

  /* index entries that do not decode */
  static const struct {
    const char *s;
    size_t len;
  } bad[] = {{"", 0},     {":61", 3},  {"01:61", 5}, {"1:6", 3},
             {"1:6g", 4}, {"x:61", 4}, {"161", 3},   {"99999999999999999999:61", 23}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t p;
    char room[CL_ROOM_MAX];
    size_t rl;
    CHECK(!cl_node_entry_decode(bad[i].s, bad[i].len, &p, room, &rl));
  }
  uint64_t p;
  char room[CL_ROOM_MAX];
  size_t rl;
  CHECK(cl_node_entry_decode("5:", 2, &p, room, &rl) && p == 5 && rl == 0);
  CHECK(cl_node_entry_decode("7:610078", 8, &p, room, &rl) && p == 7 && rl == 3 &&
        !memcmp(room, "a\0x", 3));
  rc_close(cmd);
  redis_fixture_stop(&rf);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  fprintf(stderr, "ok\n");
  return 0;
}
