/*
 * chat/cluster_requests.c - cluster mode (--cluster): the chain's requests
 * over Redis (joins, re-joins, leaves, chats published by the room script of
 * cluster/node.h), player ids from the node's blocks, the drain on SIGTERM,
 * and chat_cluster_* (stubs without hiredis).
 */
#define _GNU_SOURCE
#include "chat.h"

#ifdef CPORT_CLUSTER

bool chat__clustered; /* --cluster: rooms on Redis */

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static size_t ev_head(uint8_t *out, char op, uint64_t player) {
  out[0] = (uint8_t)op;
  put64(out + 1, player);
  put64(out + 9, chat__now_us(CLOCK_REALTIME));
  return EV_HEAD;
}

void chat__unavailable(struct player *p, const char *what) {
  atomic_fetch_add(&node_stats.unavailable, 1);
  char text[96];
  snprintf(text, sizeof text, "the cluster is unavailable (%s)", what);
  chat__send_error(p->s, CHATW__ERROR_CODE__ERR_UNAVAILABLE, text);
}

/* ---- joins ---- */

struct join_ctx {
  struct player *p;
  struct room *r; /* the entry's reference */
  bool rejoin;    /* a member re-joined after an epoch change (no answer) */
  unsigned gen;   /* rejoin: the room's epochs when asked (a later change re-joins again) */
  bool again;     /* C_ENTER_ROOM of the room it is in: the list again */
  uint64_t player;
  int64_t off;
  uint32_t count;
  char epoch[32];
  size_t elen;
  size_t n;
  struct member list[]; /* as of the join's offset, oldest first */
};

static void job_joined(void *arg) {
  struct join_ctx *j = arg;
  struct room *r = j->r;
  chat__room_flush_held(r, false);
  struct player *p = j->p;
  struct cl_room *c = chat__cl_of(r);
  if (j->rejoin) { /* after an epoch change: active again from its new join */
    if (c && !c->f.epoch_len)
      cl_follow_start(&c->f, j->epoch, j->elen, 0, 0);
    for (size_t i = 0; c && j->gen == c->epochs && i < r->n; i++)
      if (r->members[i].id == j->player && r->members[i].joined == UINT64_MAX) {
        /* (offset -1: a member there already, joined again twice: the same) */
        chat__catch_up(r, i, r->members[i].resume);
      }
    free(j);
    chat__job_unref(r);
    return;
  }
  if (j->again) { /* the list again (a member here; in Redis too, unless swept: joined now) */
    for (size_t i = 0; c && i < r->n; i++) {
      if (r->sessions[i] != p->s)
        continue;
      if (j->off >= 0)
        r->members[i].joined = (uint64_t)j->off;
      size_t skip = SIZE_MAX;
      for (size_t k = 0; k < j->n; k++)
        if (j->list[k].id == p->id)
          skip = k;
      chat__send_enter(p->s, &r->name, j->count, &r->members[i], j->list, j->n, skip);
    }
    free(j);
    chat__room_unref(r); /* the entry's: the membership keeps its own */
    chat__chain_resume(p);
    return;
  }
  bool grown = chat__room_grow(r);
  if (!c || !grown) {
    /* Out of memory: in Redis it is a member; leave there again. */
    free(j);
    chat__enter_failed(p, r);
    chat__chain_resume(p);
    return;
  }
  if (!c->started || c->f.epoch_len != j->elen || memcmp(c->f.epoch, j->epoch, j->elen)) {
    if (c->started && c->f.epoch_len)
      chat__room_new_epoch(r, j->epoch, j->elen);
    else if (c->started)
      cl_follow_start(&c->f, j->epoch, j->elen, 0, 0); /* the new epoch, named */
    else
      cl_follow_start(&c->f, j->epoch, j->elen, (uint64_t)j->off, 0);
    c->started = true;
    struct cl_msg *m = c->pre;
    c->pre = c->pre_tail = NULL;
    c->npre = 0;
    while (m) { /* what came before: those up to the join are duplicates */
      struct cl_msg *next = m->next;
      chat__follow_message(r, m->off, m->epoch, m->elen, m->ev, m->len);
      free(m);
      m = next;
    }
  }
  size_t i = r->n++;
  r->sessions[i] = p->s;
  r->members[i] = (struct member){.id = p->id, .name = p->name, .joined = (uint64_t)j->off, .p = p};
  p->room = r; /* the entry's reference is the membership's now */
  size_t skip = SIZE_MAX;
  for (size_t k = 0; k < j->n; k++)
    if (j->list[k].id == p->id)
      skip = k;
  chat__send_enter(p->s, &r->name, j->count, &r->members[i], j->list, j->n, skip);
  chat__catch_up(r, i, (uint64_t)j->off);
  free(j);
  chat__chain_resume(p);
}

static void join_reply(void *arg, const cl_publish_result *res, const char *err) {
  struct join_ctx *j = arg;
  if (!res || (res->offset < 0 && !j->rejoin && !j->again)) {
    if (!res) {
      atomic_fetch_add(&node_stats.redis_errors, 1);
      fprintf(stderr, "cport-server: cluster: a join failed: %s\n", err);
    }
    if (j->rejoin) { /* counted; it stays inactive until it enters again */
      chat__job_unref(j->r);
      free(j);
      return;
    }
    struct player *p = j->p;
    chat__room_unref(j->r); /* nothing of it was posted */
    free(j);
    if (res)
      chat__send_error(p->s, CHATW__ERROR_CODE__ERR_UNAVAILABLE, "already in the room elsewhere");
    else
      chat__unavailable(p, "joining");
    chat__chain_resume(p);
    return;
  }
  size_t n = res->nmembers;
  struct join_ctx *k = realloc(j, sizeof *j + n * sizeof *j->list);
  if (!k) {
    n = 0;
    k = j;
  }
  k->off = res->offset;
  k->count = (uint32_t)res->member_count;
  k->elen = res->epoch_len < sizeof k->epoch ? res->epoch_len : sizeof k->epoch;
  memcpy(k->epoch, res->epoch, k->elen);
  k->n = 0;
  for (size_t i = 0; i < n; i++) {
    const cl_member *x = &res->members[i];
    if (x->len < 1 || x->len > CHAT_NAME_MAX)
      continue; /* not a name of ours */
    struct member *m = &k->list[k->n++];
    *m = (struct member){.id = x->player, .joined = x->joined};
    m->name.len = (uint8_t)x->len;
    memcpy(m->name.b, x->data, x->len);
  }
  if (cp_jobq_post(k->r->q, job_joined, k) != 0) {
    if (!k->rejoin)
      chat__unavailable(k->p, "stopping");
    if (k->rejoin)
      chat__job_unref(k->r);
    else
      chat__room_unref(k->r);
    if (!k->rejoin)
      chat__chain_resume(k->p);
    free(k);
  }
}

static int join_send(struct join_ctx *j, uint64_t id, const struct name *name) {
  uint8_t ev[EV_HEAD + CHAT_NAME_MAX];
  size_t n = ev_head(ev, CL_OP_JOIN, id);
  memcpy(ev + n, name->b, name->len);
  cl_event_req q = {.op = CL_OP_JOIN,
                    .player = id,
                    .room = j->r->name.b,
                    .room_len = j->r->name.len,
                    .event = ev,
                    .event_len = n + name->len,
                    .member = name->b,
                    .member_len = name->len,
                    .stream_max = CL_STREAM_MAX,
                    .list_max = CHAT_MEMBERS_LISTED + 1,
                    .idle_ttl_s = CL_IDLE_TTL_S};
  return node_room_event(&q, join_reply, j);
}

static void subscribed(void *arg, redisReply *reply, const char *err) {
  struct join_ctx *j = arg;
  bool refused = reply && reply->type == REDIS_REPLY_ERROR; /* e.g. an ACL without the channel */
  if (refused) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    fprintf(stderr, "cport-server: cluster: SUBSCRIBE refused: %.*s\n",
            (int)(reply->len < 200 ? reply->len : 200), reply->str);
  }
  if (reply)
    freeReplyObject(reply);
  if (!reply || refused || join_send(j, j->p->id, &j->p->name) != 0) {
    if (!reply)
      fprintf(stderr, "cport-server: cluster: SUBSCRIBE failed: %s\n", err);
    struct player *p = j->p;
    chat__room_unref(j->r);
    free(j);
    chat__unavailable(p, "joining");
    chat__chain_resume(p);
  }
}

/* Chain: enter r (a reference): subscribe, then the join script; the chain
 * resumes after S_ENTER_ROOM (or the error). */
void chat__cl_join(struct player *p, struct room *r) {
  struct join_ctx *j = calloc(1, sizeof *j);
  if (!j) {
    chat__enter_failed(p, r);
    chat__chain_resume(p);
    return;
  }
  j->p = p;
  j->r = r;
  if (node_subscribe(r->name.b, r->name.len, true, subscribed, j) != 0) {
    chat__room_unref(r);
    free(j);
    chat__unavailable(p, "joining");
    chat__chain_resume(p);
  }
}

/* Room job: member i is a member no longer in Redis (a lost state, or this
 * node was taken for dead and swept): it joins again. It had the events
 * before offset `resume` (of the epoch followed now); once its join is
 * done it gets those after it - the ones published before its join too (it
 * never left, for its client) - and is active again. */
void chat__rejoin(struct room *r, size_t i, uint64_t resume) {
  struct member *x = &r->members[i];
  x->joined = UINT64_MAX;
  x->resume = resume;
  struct join_ctx *j = calloc(1, sizeof *j);
  if (!j)
    return;
  j->r = r;
  j->rejoin = true;
  j->gen = r->cl->epochs;
  j->player = x->id;
  chat__job_ref(r);
  if (join_send(j, x->id, &x->name) != 0) {
    chat__job_unref(r);
    free(j);
  }
}

/* ---- leaves ---- */

struct leave_ctx {
  struct player *p;
  struct room *r, *next;
  bool final, close;
  int64_t off;
};

static void job_left(void *arg) {
  struct leave_ctx *l = arg;
  struct room *r = l->r;
  chat__room_flush_held(r, false);
  chat__job_ref(r); /* the job's own: leave_complete puts the membership's */
  for (size_t i = 0; i < r->n; i++) {
    struct member *x = &r->members[i];
    if (x->p != l->p)
      continue;
    if (!x->left || l->off <= 0) /* (the event may have come first: deliver) */
      x->left = l->off > 0 ? (uint64_t)l->off : LEFT_NOW;
    x->answered = true;
    x->next = l->next;
    x->final = l->final;
    x->close = l->close;
    break;
  }
  free(l);
  chat__complete_leaves(r);
  chat__job_unref(r);
}

static void leave_reply(void *arg, const cl_publish_result *res, const char *err) {
  struct leave_ctx *l = arg;
  if (!res) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    fprintf(stderr, "cport-server: cluster: a leave failed: %s\n", err);
    if (!l->final) {
      struct player *p = l->p;
      atomic_store(&p->leaving, false);
      if (l->next)
        chat__room_unref(l->next);
      free(l);
      chat__unavailable(p, "leaving");
      chat__chain_resume(p);
      return;
    }
    l->off = 0; /* the session is over: leave locally, and in Redis once it is back */
    node_leave_later(l->p->id, l->r->name.b, l->r->name.len);
  } else {
    l->off = res->offset; /* -1: not a member there any more (swept, or a new epoch) */
  }
  /* The room's membership reference keeps it alive until the job completes it. */
  if (cp_jobq_post(l->r->q, job_left, l) != 0)
    free(l); /* stopping: the service ends every session */
}

/* Chain: leave p->room over Redis; then enter next (a reference) or, final,
 * free the player. The chain resumes after S_LEAVE_ROOM (or the error). */
int chat__cl_leave(struct player *p, struct room *next, bool final, bool close) {
  struct leave_ctx *l = malloc(sizeof *l);
  if (!l) {
    if (next)
      chat__room_unref(next);
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "out of memory");
    return DONE;
  }
  *l = (struct leave_ctx){.p = p, .r = p->room, .next = next, .final = final, .close = close};
  atomic_store(&p->leaving, true);
  uint8_t ev[EV_HEAD];
  cl_event_req q = {.op = CL_OP_LEAVE,
                    .player = p->id,
                    .room = p->room->name.b,
                    .room_len = p->room->name.len,
                    .event = ev,
                    .event_len = ev_head(ev, CL_OP_LEAVE, p->id),
                    .stream_max = CL_STREAM_MAX,
                    .idle_ttl_s = CL_IDLE_TTL_S};
  if (node_room_event(&q, leave_reply, l) != 0) {
    if (final) {
      l->off = 0; /* leave locally, and in Redis once it is back */
      node_leave_later(p->id, p->room->name.b, p->room->name.len);
      if (cp_jobq_post(l->r->q, job_left, l) != 0)
        free(l);
      return SUSPENDED;
    }
    free(l);
    atomic_store(&p->leaving, false);
    if (next)
      chat__room_unref(next);
    chat__unavailable(p, "leaving");
    return DONE;
  }
  return SUSPENDED;
}

/* ---- chats ---- */

static void chat_reply(void *arg, const cl_publish_result *res, const char *err) {
  (void)arg;
  if (!res) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    fprintf(stderr, "cport-server: cluster: a chat was not published: %s\n", err);
  } else if (res->offset < 0) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    fprintf(stderr, "cport-server: cluster: a chat was refused: its sender is no member of the "
                    "room in Redis (lost state)\n");
  }
}

bool chat__cl_chat(struct player *p, const ProtobufCBinaryData *text, uint64_t client_time) {
  uint8_t ev[EV_HEAD + 8 + CHAT_TEXT_MAX];
  size_t n = ev_head(ev, CL_OP_CHAT, p->id);
  put64(ev + n, client_time);
  if (text->len) /* an empty text may have no data */
    memcpy(ev + n + 8, text->data, text->len);
  cl_event_req q = {.op = CL_OP_CHAT,
                    .player = p->id,
                    .room = p->room->name.b,
                    .room_len = p->room->name.len,
                    .event = ev,
                    .event_len = n + 8 + text->len,
                    .stream_max = CL_STREAM_MAX,
                    .idle_ttl_s = CL_IDLE_TTL_S};
  return node_room_event(&q, chat_reply, NULL) == 0;
}

/* ---- ids, reconnects, drain ---- */

struct player *chat__id_waiters; /* under players_mu */

void chat__on_ids_ready(void) {
  for (;;) {
    pthread_mutex_lock(&chat__players_mu);
    struct player *p = chat__id_waiters;
    uint64_t id = 0;
    if (p && node_take_id(&id))
      chat__id_waiters = p->id_wait;
    else
      p = NULL;
    pthread_mutex_unlock(&chat__players_mu);
    if (!p)
      return;
    p->id = id;
    Chatw__SLogin r = CHATW__SLOGIN__INIT;
    r.player_id = p->id;
    wire_send(p->s, CHATW__PACKET_ID__S_LOGIN, &r.base);
    chat__chain_resume(p);
  }
}

/* Chain: C_ENTER_ROOM in cluster mode (the request's checks done). */
int chat__cl_enter(struct player *p, const uint8_t *name, size_t len) {
  struct room *r;
  if (!node_available()) {
    chat__unavailable(p, "entering");
  } else if (!(r = chat__room_ref(name, len))) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "no more rooms");
  } else if (p->room == r) { /* already a member: S_ENTER_ROOM again, the list as of now */
    struct join_ctx *j = calloc(1, sizeof *j);
    if (j) {
      *j = (struct join_ctx){.p = p, .r = r, .again = true};
      if (join_send(j, p->id, &p->name) == 0)
        return SUSPENDED;
      free(j);
    }
    chat__room_unref(r);
    chat__unavailable(p, "entering");
  } else if (p->room) { /* a switch: leave first, then enter */
    return chat__cl_leave(p, r, false, false);
  } else {
    chat__cl_join(p, r);
    return SUSPENDED;
  }
  return DONE;
}

void chat_cluster_drain(unsigned ms) {
  pthread_mutex_lock(&chat__players_mu);
  size_t n = 0;
  for (struct player *p = chat__players; p; p = p->all_next)
    n++;
  cp_session **s = calloc(n ? n : 1, sizeof *s);
  n = 0;
  for (struct player *p = chat__players; s && p; p = p->all_next)
    s[n++] = cp_session_get(p->s);
  pthread_mutex_unlock(&chat__players_mu);
  for (size_t i = 0; i < n; i++) {
    cp_session_disconnect(s[i], false);
    cp_session_put(s[i]);
  }
  free(s);
  for (unsigned t = 0; chat_rooms() && t < ms; t += 10)
    usleep(10000);
}

void chat_cluster_stop(void) {
  node_stop_timers();
  node_forget(1000);
}

void chat_cluster_metrics(FILE *f) {
  if (chat__clustered)
    node_metrics(f);
}

int chat_cluster_start(const char *url, const char *node, size_t len) {
  chat__clustered = true;
  node_hooks h = {.message = chat__on_cluster_message,
                  .sub_up = chat__on_sub_up,
                  .ids_ready = chat__on_ids_ready};
  return node_start(chat__service, url, node, len, &h);
}

#else
void chat_cluster_drain(unsigned ms) {
  (void)ms;
}
void chat_cluster_metrics(FILE *f) {
  (void)f;
}
void chat_cluster_stop(void) {}
int chat_cluster_start(const char *url, const char *node, size_t len) {
  (void)url, (void)node, (void)len;
  fprintf(stderr, "cport-server: built without hiredis: no --cluster\n");
  return -1;
}
#endif
