/*
 * chat/cluster_delivery.c - cluster mode (--cluster): a followed room's
 * events reach its local members in offset order, exactly once, from the
 * room's jobs (the follower of cluster/room_follow.h, gaps read from the
 * stream, replays and catch-ups for late joins, epoch changes, the resync
 * after the subscriber reconnects).
 */
#define _GNU_SOURCE
#include "chat.h"

/* ---- cluster mode (--cluster): rooms on Redis ----------------------------
 *
 * docs/cluster.md. A room's entries, leaves and chats are events published
 * by the room script (node_room_event, one command connection: FIFO); each
 * gets the room's next offset. The node follows the rooms it has members in
 * (subscribed to their channels) with one cl_follow per room, run by the
 * room's jobs: a room's events reach its local members in offset order,
 * exactly once, from the jobs only.
 *
 * A member is active from its join's offset J: it gets the events after J
 * (S_ENTER_ROOM lists the members as of J). The script's reply (command
 * connection) and the published events (subscriber connection) race: when
 * the reply comes after the follower passed J, the events (J, last] are
 * replayed to it from the room's recent history (CL_HIST events). A leave
 * with offset L completes when the follower reaches L: the member gets every
 * event before L (its own earlier chats included), then S_LEAVE_ROOM. The
 * chain stays suspended from the request to its answer, as with room jobs.
 *
 * Chat events are batched like the chats above (--room-flush-ms W): a chat
 * event to the room that comes within W ms of the room's last chat send is
 * held, with its recipients (the members that get it) as they are then, and
 * the room's flush timer started; the next chat events with exactly those
 * recipients are appended; one with others, the flush timer (job_flush), and
 * anything else the room sends or does (any other event, a replay to one
 * member, every other job, a member's leave completing) send it first
 * (chat__room_flush_held: the one flush, chats.c; the held chats and their
 * recipients are the room's fields, struct room). So each chat reaches
 * exactly the members it would have at once, in offset order, before
 * anything after it; a member's session in the snapshot is sent to before
 * the member goes (its player with it).
 *
 * Every job posted to a room holds a reference of the room (put last).
 */
#ifdef CPORT_CLUSTER

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

void chat__cl_room_free(struct room *r) {
  struct cl_room *c = r->cl;
  if (!c)
    return;
  cl_follow_free(&c->f);
  while (c->pre) {
    struct cl_msg *m = c->pre;
    c->pre = m->next;
    free(m);
  }
  for (size_t i = 0; i < CL_HIST; i++)
    free(c->hist[i].ev);
  free(c->to);
  free(c);
  r->cl = NULL;
}

void chat__cl_room_unsubscribe(struct room *r) {
  node_subscribe(r->name.b, r->name.len, false, NULL, NULL);
}

struct cl_room *chat__cl_of(struct room *r) {
  if (!r->cl)
    r->cl = calloc(1, sizeof *r->cl);
  return r->cl;
}

/* Whether member x gets the event at off. */
static bool member_gets(const struct member *x, uint64_t off) {
  return x->joined < off && (!x->left || off < x->left);
}

/* The S_CHAT of a chat event (len >= EV_HEAD) in *m; false if it does not decode. */
static bool chat_message(struct room *r, const uint8_t *ev, size_t len, Chatw__SChat *m) {
  if (len < EV_HEAD + 8 || len - EV_HEAD - 8 > CHAT_TEXT_MAX)
    return false;
  chatw__schat__init(m);
  m->player_id = get64(ev + 1);
  m->client_time_us = get64(ev + EV_HEAD);
  m->text = (ProtobufCBinaryData){.len = len - EV_HEAD - 8, .data = (uint8_t *)ev + EV_HEAD + 8};
  m->room = bin(&r->name);
  return true;
}

/* The packet of an event, or NULL (a bad event: counted). */
static cp_sendbuf *event_packet(struct room *r, const uint8_t *ev, size_t len) {
  if (len < EV_HEAD)
    return NULL;
  uint64_t id = get64(ev + 1);
  switch (ev[0]) {
  case CL_OP_CHAT: {
    Chatw__SChat m;
    return chat_message(r, ev, len, &m) ? wire_packet(CHATW__PACKET_ID__S_CHAT, &m.base) : NULL;
  }
  case CL_OP_JOIN: {
    if (len - EV_HEAD > CHAT_NAME_MAX)
      return NULL;
    Chatw__Member me = CHATW__MEMBER__INIT;
    me.player_id = id;
    me.name = (ProtobufCBinaryData){.len = len - EV_HEAD, .data = (uint8_t *)ev + EV_HEAD};
    Chatw__SMemberJoined m = CHATW__SMEMBER_JOINED__INIT;
    m.room = bin(&r->name);
    m.member = &me;
    return wire_packet(CHATW__PACKET_ID__S_MEMBER_JOINED, &m.base);
  }
  case CL_OP_LEAVE: {
    Chatw__SMemberLeft m = CHATW__SMEMBER_LEFT__INIT;
    m.room = bin(&r->name);
    m.player_id = id;
    return wire_packet(CHATW__PACKET_ID__S_MEMBER_LEFT, &m.base);
  }
  default:
    return NULL;
  }
}

static void bad_event(uint64_t off) {
  atomic_fetch_add(&node_stats.bad_messages, 1);
  fprintf(stderr, "cport-server: cluster: room event at offset %" PRIu64 " does not decode\n", off);
}

/* Room job: the chat event at off to the n sessions c->to, batched as the
 * room's chats are without a cluster (room_chat): appended to the held buffer
 * if that has exactly these recipients (and room); else the held one goes
 * first, and this one starts a new held buffer and the room's flush timer if
 * it comes within --room-flush-ms of the room's last chat send, or goes at
 * once. */
static void send_chat_event(struct room *r, uint64_t off, const uint8_t *ev, size_t len, size_t n) {
  struct cl_room *c = r->cl;
  Chatw__SChat m;
  if (!chat_message(r, ev, len, &m)) {
    bad_event(off);
    return;
  }
  size_t sz = CP_PACKET_HEADER + protobuf_c_message_get_packed_size(&m.base);
  if (r->held && r->held_n == n && !memcmp(r->held_to, c->to, n * sizeof *c->to)) {
    if (chat__chat_append(r->held, &m.base, sz))
      return;
    chat__batch_filled(r);
  }
  chat__room_flush_held(r, false);
  uint64_t now = chat__now_ms();
  unsigned w = chat__limits.flush_ms;
  bool hold = w && now - r->last_flush_ms < w;
  if (hold && r->held_cap < n) {
    cp_session **t = realloc(r->held_to, n * sizeof *t);
    if (t) {
      r->held_to = t;
      r->held_cap = n;
    }
    hold = t != NULL; /* out of memory: at once */
  }
  cp_sendbuf *b = cp_sendbuf_alloc(hold && sz < r->batch ? r->batch : sz);
  if (!b)
    return; /* out of memory: see room_send */
  cp_sendbuf_set_len(b, wire_put_packet(cp_sendbuf_data(b), CHATW__PACKET_ID__S_CHAT, &m.base));
  int rc;
  if (hold &&
      ((rc = cp_timer_start(&r->flush, r->q, w, 0, chat__job_flush, r)) == 0 || rc == CP_EBUSY)) {
    memcpy(r->held_to, c->to, n * sizeof *c->to); /* CP_EBUSY: pending from an earlier one */
    r->held_n = n;
    r->held = b;
    r->held_timed = rc == 0;
    return;
  }
  r->last_flush_ms = now;
  chat__room_send_chats(c->to, n, b, false);
}

/* Room job: event off to the members that get it (only: one member, or
 * SIZE_MAX). A chat to all is batched (send_chat_event); anything else sends
 * the held chats first. */
static void send_event(struct room *r, uint64_t off, const char *ev, size_t len, size_t only) {
  struct cl_room *c = r->cl;
  bool chat = only == SIZE_MAX && len >= EV_HEAD && ev[0] == CL_OP_CHAT;
  if (!chat)
    chat__room_flush_held(r, false);
  if (c->to_cap < r->n) {
    cp_session **t = realloc(c->to, r->n * sizeof *t);
    if (!t)
      return; /* out of memory: see room_send */
    c->to = t;
    c->to_cap = r->n;
  }
  /* a leave is not told to the member it names (its answer is S_LEAVE_ROOM), nor a join (a
   * member re-joined after a lost state gets the events from before its join: not its own) */
  uint64_t skip = len >= EV_HEAD && (ev[0] == CL_OP_LEAVE || ev[0] == CL_OP_JOIN)
                      ? get64((const uint8_t *)ev + 1)
                      : 0;
  size_t n = 0;
  for (size_t k = 0; k < r->n; k++)
    if ((only == SIZE_MAX || only == k) && member_gets(&r->members[k], off) &&
        r->members[k].id != skip)
      c->to[n++] = r->sessions[k];
  if (!n)
    return;
  if (chat) {
    send_chat_event(r, off, (const uint8_t *)ev, len, n);
    return;
  }
  cp_sendbuf *b = event_packet(r, (const uint8_t *)ev, len);
  if (!b) {
    bad_event(off);
    return;
  }
  cp_session_send_many(c->to, n, b);
  cp_sendbuf_unref(b);
}

/* cl_deliver_fn: one event of the room, in offset order, once. */
static void deliver(void *arg, uint64_t off, const char *ev, size_t len) {
  struct room *r = arg;
  struct cl_room *c = r->cl;
  struct cl_hist *h = &c->hist[off % CL_HIST];
  char *copy = realloc(h->ev, len ? len : 1);
  if (copy) {
    memcpy(copy, ev, len);
    *h = (struct cl_hist){.off = off, .len = len, .ev = copy};
  }
  atomic_fetch_add(&node_stats.deliveries, 1);
  if (len >= EV_HEAD && ev[0] == CL_OP_LEAVE) { /* a local member's own leave, before its reply */
    uint64_t id = get64((const uint8_t *)ev + 1);
    for (size_t k = 0; k < r->n; k++) {
      struct member *x = &r->members[k];
      if (x->id != id || x->left || x->joined == UINT64_MAX)
        continue;
      if (atomic_load(&x->p->leaving)) {
        x->left = off; /* nothing after its leave reaches it */
      } else {         /* not its leave: this node was taken for dead and swept */
        fprintf(stderr,
                "cport-server: cluster: player %" PRIu64 " was removed from a room by "
                "another node (this node's heartbeat lapsed): it joins again\n",
                id);
        chat__rejoin(r, k, off); /* it had every event before its removal */
      }
    }
  }
  if (len >= EV_HEAD) {
    uint64_t pub = get64((const uint8_t *)ev + 9), now = chat__now_us(CLOCK_REALTIME);
    node_note_lag(now > pub ? now - pub : 0);
  }
  send_event(r, off, ev, len, SIZE_MAX);
}

/* Room job: member i has seen the events (joined, last]: those not seen yet
 * go to it from the history. */
static void replay(struct room *r, size_t i) {
  struct cl_room *c = r->cl;
  uint64_t from = r->members[i].joined + 1;
  for (uint64_t off = from; off <= c->f.last; off++) {
    struct cl_hist *h = &c->hist[off % CL_HIST];
    if (h->off != off || !h->ev) {
      atomic_fetch_add(&node_stats.gap_lost, 1);
      fprintf(stderr,
              "cport-server: cluster: a member joined at offset %" PRIu64 " but event %" PRIu64
              " is no longer in the room's history: not replayed\n",
              r->members[i].joined, off);
      continue;
    }
    send_event(r, off, h->ev, h->len, i);
  }
}

/* Whether the history holds every event from..to. */
static bool hist_covers(const struct cl_room *c, uint64_t from, uint64_t to) {
  if (to >= from && to - from >= CL_HIST)
    return false;
  for (uint64_t off = from; off <= to; off++)
    if (c->hist[off % CL_HIST].off != off || !c->hist[off % CL_HIST].ev)
      return false;
  return true;
}

struct catch_ctx {
  struct room *r; /* a reference */
  uint64_t player, from;
  unsigned gen; /* the room's epochs when asked */
  redisReply *reply;
};

/* Room job: the stream's events after a member's join, read because the
 * history no longer held them all: to that member alone, in order, then the
 * history's for the rest; it is active from there. */
static void job_caught_up(void *arg) {
  struct catch_ctx *x = arg;
  struct room *r = x->r;
  chat__room_flush_held(r, false);
  struct cl_room *c = r->cl;
  const redisReply *e = x->reply;
  for (size_t i = 0; c && i < r->n; i++) {
    struct member *m = &r->members[i];
    if (m->id != x->player || m->joined != UINT64_MAX || m->left || x->gen != c->epochs)
      continue; /* (after an epoch change its re-join's catch-up is another) */
    m->joined = x->from - 1;
    for (size_t k = 0; e && e->type == REDIS_REPLY_ARRAY && k < e->elements; k++) {
      uint64_t off;
      const char *ev;
      size_t len;
      if (!cl_stream_entry_decode(e->element[k], &off, &ev, &len) || off <= m->joined ||
          off > c->f.last)
        continue;
      if (off > m->joined + 1) { /* older than the capped stream */
        atomic_fetch_add(&node_stats.gap_lost, off - m->joined - 1);
        fprintf(stderr,
                "cport-server: cluster: events %" PRIu64 "..%" PRIu64
                " a member needed are no longer in the room's stream\n",
                m->joined + 1, off - 1);
      }
      send_event(r, off, ev, len, i);
      m->joined = off;
    }
    if (!hist_covers(c, m->joined + 1, c->f.last)) { /* the stream said no more: skip */
      atomic_fetch_add(&node_stats.gap_lost, 1);
      m->joined = c->f.last;
    }
    replay(r, i); /* what came since the read */
    m->joined = c->f.last;
  }
  if (x->reply)
    freeReplyObject(x->reply);
  free(x);
  chat__complete_leaves(r);
  chat__job_unref(r);
}

static void catch_reply(void *arg, redisReply *reply, const char *err) {
  struct catch_ctx *x = arg;
  if (!reply)
    fprintf(stderr, "cport-server: cluster: reading a room's stream for a new member: %s\n", err);
  x->reply = reply;
  if (cp_jobq_post(x->r->q, job_caught_up, x) != 0) {
    if (reply)
      freeReplyObject(reply);
    chat__job_unref(x->r);
    free(x);
  }
}

/* Room job: member i joined at off: the events after off that the follower
 * already delivered go to it - from the history, or, if the history no
 * longer holds them all, from the stream (it is inactive until then). */
void chat__catch_up(struct room *r, size_t i, uint64_t off) {
  struct cl_room *c = r->cl;
  struct member *m = &r->members[i];
  m->joined = off;
  if (c->f.last <= off)
    return;
  if (hist_covers(c, off + 1, c->f.last)) {
    replay(r, i);
    return;
  }
  struct catch_ctx *x = calloc(1, sizeof *x);
  if (!x) {
    replay(r, i); /* what the history has (the rest counted lost) */
    return;
  }
  *x = (struct catch_ctx){.r = r, .player = m->id, .from = off + 1, .gen = c->epochs};
  m->joined = UINT64_MAX;
  chat__job_ref(r);
  if (node_xrange(r->name.b, r->name.len, off + 1, CL_FOLLOW_END, catch_reply, x) != 0) {
    chat__job_unref(r);
    free(x);
    m->joined = off;
    replay(r, i);
  }
}

/* Room job: member i's leave is complete: S_LEAVE_ROOM, then its chain. */
static void leave_complete(struct room *r, size_t i) {
  chat__room_flush_held(r, false); /* its session may be among the recipients, and goes */
  struct member x = r->members[i];
  struct player *p = x.p;
  memmove(r->sessions + i, r->sessions + i + 1, (r->n - i - 1) * sizeof *r->sessions);
  memmove(r->members + i, r->members + i + 1, (r->n - i - 1) * sizeof *r->members);
  r->n--;
  if (!r->n) /* nothing held (just sent): nothing of the room pending when it goes */
    (void)cp_timer_cancel(&r->flush); /* CP_ENOENT: it was not pending */
  p->room = NULL;
  atomic_store(&p->leaving, false);
  /* The membership's reference first (the job's own keeps r): once a client
   * has S_LEAVE_ROOM of a room it emptied, it no longer counts (--max-rooms). */
  chat__room_unref(r);
  if (x.close) {
    cp_session_disconnect(p->s, true); /* every earlier answer is queued */
  } else if (!x.final) {
    Chatw__SLeaveRoom m = CHATW__SLEAVE_ROOM__INIT;
    m.room = bin(&r->name);
    wire_send(p->s, CHATW__PACKET_ID__S_LEAVE_ROOM, &m.base);
  }
  if (x.final)
    chat__player_free(p);
  else if (x.next)
    chat__cl_join(p, x.next);
  else
    chat__chain_resume(p);
}

void chat__complete_leaves(struct room *r) {
  for (size_t i = 0; i < r->n;) {
    const struct member *x = &r->members[i];
    if (x->answered && x->left &&
        (x->left == LEFT_NOW || !r->cl->started || x->left <= r->cl->f.last))
      leave_complete(r, i);
    else
      i++;
  }
}

static void follow_result(struct room *r, cl_follow_result res, uint64_t from, uint64_t to);

struct range_ctx {   /* a Redis reply on its way to a room job */
  struct room *r;    /* a reference */
  uint64_t from, to; /* XRANGE's */
  unsigned gen;      /* the room's epochs when asked: a reply from before an epoch change is moot */
  redisReply *reply;
};

/* Redis's reply to the room's job fn (which frees x and puts the reference). */
static void post_reply(struct range_ctx *x, redisReply *reply, cp_job_fn fn) {
  x->reply = reply;
  if (cp_jobq_post(x->r->q, fn, x) != 0) { /* stopping: the room goes with the service */
    if (reply)
      freeReplyObject(reply);
    chat__job_unref(x->r);
    free(x);
  }
}

static void job_range(void *arg) {
  struct range_ctx *x = arg;
  struct room *r = x->r;
  chat__room_flush_held(r, false);
  struct cl_room *c = r->cl;
  uint64_t lost = c->f.st.gap_lost, nf = 0, nt = 0;
  cl_follow_result res = CL_FOLLOW_OK;
  if (x->gen == c->epochs) /* else the follower was started again since: not its read */
    res = cl_follow_range(&c->f, x->reply, x->from, x->to, deliver, r, &nf, &nt);
  if (c->f.st.gap_lost > lost) {
    atomic_fetch_add(&node_stats.gap_lost, c->f.st.gap_lost - lost);
    fprintf(stderr,
            "cport-server: cluster: %" PRIu64 " events of a room are older than its stream "
            "(read from offset %" PRIu64 "): lost to this node\n",
            c->f.st.gap_lost - lost, x->from);
  }
  if (x->reply)
    freeReplyObject(x->reply);
  free(x);
  follow_result(r, res, nf, nt);
  chat__job_unref(r);
}

static void range_reply(void *arg, redisReply *reply, const char *err) {
  struct range_ctx *x = arg;
  if (!reply) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    fprintf(stderr, "cport-server: cluster: reading a room's stream: %s\n", err);
  }
  post_reply(x, reply, job_range);
}

/* Room job: act on what the follower asked for; complete the leaves it allows. */
static void follow_result(struct room *r, cl_follow_result res, uint64_t from, uint64_t to) {
  if (res == CL_FOLLOW_READ) {
    struct range_ctx *x = malloc(sizeof *x);
    if (x) {
      *x = (struct range_ctx){.r = r, .from = from, .to = to, .gen = r->cl->epochs};
      chat__job_ref(r);
      if (node_xrange(r->name.b, r->name.len, from, to, range_reply, x) != 0) {
        free(x);
        chat__job_unref(r);
        uint64_t a, b;
        cl_follow_range(&r->cl->f, NULL, 0, 0, NULL, NULL, &a, &b); /* read again later */
      }
    }
  }
  chat__complete_leaves(r);
}

/* Room job: one channel message to the follower. */
void chat__follow_message(struct room *r, uint64_t off, const char *epoch, size_t elen,
                          const char *ev, size_t len) {
  struct cl_room *c = r->cl;
  uint64_t from = 0, to = 0;
  if (!c->f.epoch_len) /* the state was gone: the first event of the new epoch names it */
    cl_follow_start(&c->f, epoch, elen, 0, 0);
  if (elen < c->f.epoch_len || (elen == c->f.epoch_len && memcmp(epoch, c->f.epoch, elen) < 0))
    return; /* an older epoch's message, late (epochs are Redis's clock): dropped */
  cl_follow_result res =
      cl_follow_message(&c->f, off, epoch, elen, ev, len, deliver, r, &from, &to);
  if (res == CL_FOLLOW_NEW_EPOCH) {
    chat__room_new_epoch(r, epoch, elen);
    res = cl_follow_message(&c->f, off, epoch, elen, ev, len, deliver, r, &from, &to);
  }
  follow_result(r, res, from, to);
}

static void job_message(void *arg) {
  struct cl_msg *m = arg;
  struct room *r = (struct room *)m->next;
  m->next = NULL;
  struct cl_room *c = chat__cl_of(r);
  if (!c) {
    free(m);
  } else if (!c->started) {
    if (c->npre < CL_PRE_MAX) { /* past that: read from the stream once started */
      if (c->pre_tail)
        c->pre_tail->next = m;
      else
        c->pre = m;
      c->pre_tail = m;
      c->npre++;
    } else {
      free(m);
    }
  } else {
    chat__follow_message(r, m->off, m->epoch, m->elen, m->ev, m->len);
    free(m);
  }
  chat__job_unref(r);
}

/* Subscriber strand: a message of a room's channel, in arrival order. */
void chat__on_cluster_message(const uint8_t *room, size_t room_len, const char *msg, size_t len) {
  uint64_t off;
  const char *epoch, *ev;
  size_t elen, evlen;
  if (room_len < 1 || room_len > CHAT_ROOM_MAX ||
      !cl_message_decode(msg, len, &off, &epoch, &elen, &ev, &evlen) || elen > 31) {
    atomic_fetch_add(&node_stats.bad_messages, 1);
    fprintf(stderr,
            "cport-server: cluster: a room channel message of %zu bytes does not decode: "
            "ignored (a gap the next message shows is read from the stream)\n",
            len);
    return;
  }
  struct room *r = chat__room_find(room, room_len, false);
  if (!r)
    return; /* not followed (any more) */
  struct cl_msg *m = malloc(sizeof *m + evlen);
  if (!m) {
    chat__job_unref(r); /* nothing posted */
    return;             /* a gap: read from the stream when the next message comes */
  }
  m->next = (struct cl_msg *)r; /* the room, until the job runs */
  m->off = off;
  m->elen = elen;
  memcpy(m->epoch, epoch, elen);
  m->len = evlen;
  memcpy(m->ev, ev, evlen);
  if (cp_jobq_post(r->q, job_message, m) != 0) {
    free(m);
    chat__job_unref(r);
  }
}

/* Room job: the room's history in Redis is gone (a new epoch): follow the new
 * one from its start; the local members are members no longer, so each joins
 * again (inactive until its new join's offset: clients see nothing of it). */
void chat__room_new_epoch(struct room *r, const char *epoch, size_t elen) {
  struct cl_room *c = r->cl;
  c->epochs++;
  atomic_fetch_add(&node_stats.epoch_changes, 1);
  fprintf(stderr,
          "cport-server: cluster: room epoch changed from %.*s to %.*s: its state in Redis was "
          "lost; events published in the old epoch and not delivered are lost; %zu members "
          "join again\n",
          (int)c->f.epoch_len, c->f.epoch, (int)elen, epoch, r->n);
  cl_follow_start(&c->f, epoch, elen, 0, 0);
  for (size_t i = 0; i < CL_HIST; i++)
    c->hist[i].off = 0;
  for (size_t i = 0; i < r->n; i++) {
    struct member *x = &r->members[i];
    if (x->left ||
        atomic_load(&x->p->leaving)) { /* its leave is done as far as Redis is concerned */
      x->left = LEFT_NOW;
      continue;
    }
    chat__rejoin(r, i, 0); /* a member all along: it gets the new epoch's events from its start */
  }
}

/* Room job: the room's epoch in Redis, read after a reconnect or a refused chat. */
static void job_epoch(void *arg) {
  struct range_ctx *x = arg;
  struct room *r = x->r;
  chat__room_flush_held(r, false);
  struct cl_room *c = r->cl;
  const redisReply *e = x->reply;
  if (c && c->started && e && x->gen == c->epochs &&
      (e->type == REDIS_REPLY_NIL || e->type == REDIS_REPLY_STRING)) {
    const char *ep = e->type == REDIS_REPLY_STRING ? e->str : "";
    size_t elen = e->type == REDIS_REPLY_STRING ? e->len : 0;
    if (elen < sizeof c->f.epoch && (elen != c->f.epoch_len || memcmp(ep, c->f.epoch, elen)))
      chat__room_new_epoch(r, ep, elen); /* nil: gone; the members' joins make the new one */
  }
  if (x->reply)
    freeReplyObject(x->reply);
  free(x);
  chat__complete_leaves(r);
  chat__job_unref(r);
}

static void epoch_reply(void *arg, redisReply *reply, const char *err) {
  (void)err;
  post_reply(arg, reply, job_epoch);
}

/* Ask for the room's epoch (any thread; the caller holds a reference). */
static void check_epoch(struct room *r) {
  struct range_ctx *x = calloc(1, sizeof *x);
  if (!x)
    return;
  x->r = r;
  x->gen = r->cl->epochs;
  chat__job_ref(r);
  if (node_room_epoch(r->name.b, r->name.len, epoch_reply, x) != 0) {
    chat__job_unref(r);
    free(x);
  }
}

static void job_resync(void *arg) {
  struct room *r = arg;
  chat__room_flush_held(r, false);
  struct cl_room *c = chat__cl_of(r);
  if (c && c->started) {
    check_epoch(r); /* first: a lost state is seen before the stream is read */
    uint64_t from, to;
    cl_follow_result res = cl_follow_resync(&c->f, &from, &to);
    follow_result(r, res, from, to);
  }
  chat__job_unref(r);
}

static void resubscribed(void *arg, redisReply *reply, const char *err) {
  (void)err;
  struct room *r = arg;
  if (reply)
    freeReplyObject(reply);
  if (cp_jobq_post(r->q, job_resync, r) != 0)
    chat__job_unref(r);
}

/* Subscriber strand: the connection is back: every followed room is
 * subscribed again, then read from the stream from its last offset. */
static bool resubscribe(struct room *r) {
  return node_subscribe(r->name.b, r->name.len, true, resubscribed, r) == 0;
}

void chat__on_sub_up(void) {
  chat__rooms_each(resubscribe);
}

#endif
