/*
 * chat/rooms.c - the rooms and their members on one node: the table of live
 * rooms (rooms_mu, a reference count per room, --max-rooms), what a room's
 * jobs send (S_ENTER_ROOM's member list, presence), and the jobs that enter
 * and leave a room without --cluster. The order these give is told in
 * chat.h.
 */
#define _GNU_SOURCE
#include "chat.h"

cp_service *chat__service;
struct chat_limits chat__limits;
static pthread_mutex_t rooms_mu = PTHREAD_MUTEX_INITIALIZER;
static struct room **table; /* hash buckets, under rooms_mu */
static size_t table_cap;
static size_t nrooms;

void chat_init(cp_service *svc, const struct chat_limits *l) {
  chat__service = svc;
  chat__limits = *l;
  if (!chat__limits.max_rooms)
    chat__limits.max_rooms = CHAT_DEFAULT_MAX_ROOMS;
  if (!chat__limits.max_packet)
    chat__limits.max_packet = 16384;
}

size_t chat_rooms(void) {
  pthread_mutex_lock(&rooms_mu);
  size_t n = nrooms;
  pthread_mutex_unlock(&rooms_mu);
  return n;
}

static void room_free(struct room *r) {
#ifdef CPORT_CLUSTER
  assert(!r->held || chat__clustered); /* cluster: stranded by a stop */
#else
  assert(!r->held); /* sent by the last member's leave (room_flush_held) */
#endif
  if (r->held) /* stranded by a stop (a room that empties sends it first) */
    cp_sendbuf_unref(r->held);
  free(r->held_to);
  cp_jobq_destroy(r->q);
#ifdef CPORT_CLUSTER
  chat__cl_room_free(r);
#endif
  pthread_mutex_destroy(&r->chat_mu);
  free(r->sessions);
  free(r->members);
  free(r);
}

void chat_shutdown(void) {
  /* After cp_service_stop every player has left (their leave jobs ran before
   * their sessions could go), so every room is gone already; free whatever
   * out of memory may have stranded. */
  pthread_mutex_lock(&rooms_mu);
  for (size_t i = 0; i < table_cap; i++) {
    while (table[i]) {
      struct room *r = table[i];
      table[i] = r->next;
      room_free(r);
    }
  }
  free(table);
  table = NULL;
  table_cap = nrooms = 0;
  pthread_mutex_unlock(&rooms_mu);
#ifdef CPORT_CLUSTER
  if (chat__clustered)
    node_shutdown();
#endif
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/* rooms_mu held: grow the table to keep chains short; false if out of memory. */
static bool table_grow(void) {
  if (nrooms < table_cap)
    return true;
  size_t cap = table_cap ? table_cap * 2 : 64;
  struct room **t = calloc(cap, sizeof *t);
  if (!t)
    return table_cap != 0; /* longer chains, still correct */
  for (size_t i = 0; i < table_cap; i++) {
    while (table[i]) {
      struct room *r = table[i];
      table[i] = r->next;
      r->next = t[r->hash & (cap - 1)];
      t[r->hash & (cap - 1)] = r;
    }
  }
  free(table);
  table = t;
  table_cap = cap;
  return true;
}

/* The live room of this name with a reference taken, created (if create) if
 * there is none and fewer than max_rooms are live. NULL: none, no more rooms
 * (or memory). */
struct room *chat__room_find(const uint8_t *name, size_t len, bool create) {
  uint64_t h = hash_bytes(name, len);
  struct room *r = NULL;
  pthread_mutex_lock(&rooms_mu);
  if (table_cap)
    for (r = table[h & (table_cap - 1)]; r && !(r->hash == h && name_eq(&r->name, name, len));
         r = r->next)
      ;
  if (r && create) {
    r->refs++;
  } else if (r) {
    r->jobrefs++; /* cluster: a job's, for a channel message */
  } else if (create && nrooms < chat__limits.max_rooms && table_grow() &&
             (r = calloc(1, sizeof *r))) {
    if (!(r->q = cp_jobq_create(chat__service))) {
      free(r);
      r = NULL;
    } else {
      pthread_mutex_init(&r->chat_mu, NULL);
      r->batch = CHAT_BATCH;
      r->hash = h;
      r->refs = 1;
      r->name.len = (uint8_t)len;
      memcpy(r->name.b, name, len);
      r->next = table[h & (table_cap - 1)];
      table[h & (table_cap - 1)] = r;
      nrooms++;
    }
  }
  pthread_mutex_unlock(&rooms_mu);
  return r;
}

struct room *chat__room_ref(const uint8_t *name, size_t len) {
  return chat__room_find(name, len, true);
}

/* Put a reference (job: a job's, cluster mode). The last of the members' and
 * entries' takes the room out of the table (it no longer counts against
 * --max-rooms, and a new one of its name can be made); the last of all
 * deletes it (see the header comment: no job of it is pending then; from one
 * of its own jobs is fine). */
static void room_put(struct room *r, bool job) {
  pthread_mutex_lock(&rooms_mu);
  assert(job ? r->jobrefs > 0 : r->refs > 0);
  bool detach = job ? false : --r->refs == 0;
  if (job)
    r->jobrefs--;
  bool last = r->refs == 0 && r->jobrefs == 0;
  if (detach) {
    struct room **pp = &table[r->hash & (table_cap - 1)];
    while (*pp != r)
      pp = &(*pp)->next;
    *pp = r->next;
    nrooms--;
#ifdef CPORT_CLUSTER
    /* under rooms_mu: a room of this name made after it SUBSCRIBEs after this */
    if (chat__clustered)
      chat__cl_room_unsubscribe(r);
#endif
  }
  pthread_mutex_unlock(&rooms_mu);
  if (last) {
    assert(r->n == 0);
    room_free(r);
  }
}

void chat__room_unref(struct room *r) {
  room_put(r, false);
}

#ifdef CPORT_CLUSTER
void chat__job_ref(struct room *r) {
  pthread_mutex_lock(&rooms_mu);
  r->jobrefs++;
  pthread_mutex_unlock(&rooms_mu);
}

void chat__job_unref(struct room *r) {
  room_put(r, true);
}

void chat__rooms_each(bool (*fn)(struct room *r)) {
  pthread_mutex_lock(&rooms_mu);
  for (size_t i = 0; i < table_cap; i++)
    for (struct room *r = table[i]; r; r = r->next) {
      r->jobrefs++;
      if (!fn(r))
        r->jobrefs--; /* not the last: the table's rooms are referenced */
    }
  pthread_mutex_unlock(&rooms_mu);
}
#endif

/* ---- sending ------------------------------------------------------------ */

void chat__send_error(cp_session *s, Chatw__ErrorCode code, const char *text) {
  Chatw__SError m = CHATW__SERROR__INIT;
  m.code = code;
  m.text = (ProtobufCBinaryData){.len = strlen(text), .data = (uint8_t *)text}; /* our own text */
  wire_send(s, CHATW__PACKET_ID__S_ERROR, &m.base);
}

uint64_t chat__now_us(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* S_ENTER_ROOM of room to s: `me` first, then others[0..n) but others[skip]
 * oldest first, as many as fit in max_packet (and CHAT_MEMBERS_LISTED). */
void chat__send_enter(cp_session *s, const struct name *room, uint32_t count,
                      const struct member *me, const struct member *others, size_t n, size_t skip) {
  Chatw__SEnterRoom m = CHATW__SENTER_ROOM__INIT;
  m.room = bin(room);
  m.member_count = count;
  size_t size = CP_PACKET_HEADER + 2 + room->len + 1 + wire_varint_len(m.member_count);
  size_t want = n + 1 < CHAT_MEMBERS_LISTED ? n + 1 : CHAT_MEMBERS_LISTED;
  Chatw__Member one, *one_ptr;
  Chatw__Member *mem = malloc(want * sizeof *mem);
  Chatw__Member **ptrs = malloc(want * sizeof *ptrs);
  bool heap = mem && ptrs;
  if (!heap) { /* out of memory: list it alone */
    free(mem);
    free(ptrs);
    want = 1;
    mem = &one;
    ptrs = &one_ptr;
  }
  size_t listed = 0;
  for (size_t k = 0; k <= n && listed < want; k++) {
    if (k > 0 && k - 1 == skip)
      continue;
    const struct member *x = k == 0 ? me : &others[k - 1]; /* it, then everyone else in order */
    size_t msz = 1 + wire_varint_len(x->id) + 2 + x->name.len;
    size_t fsz = 1 + wire_varint_len(msz) + msz;
    if (size + fsz > chat__limits.max_packet)
      break; /* the first always fits: max_packet >= CHAT_LARGEST_SERVER_PACKET */
    size += fsz;
    chatw__member__init(&mem[listed]);
    mem[listed].player_id = x->id;
    mem[listed].name = bin(&x->name);
    ptrs[listed] = &mem[listed];
    listed++;
  }
  m.n_members = listed;
  m.members = ptrs;
  assert(protobuf_c_message_get_packed_size(&m.base) + CP_PACKET_HEADER == size);
  wire_send(s, CHATW__PACKET_ID__S_ENTER_ROOM, &m.base);
  if (heap) {
    free(mem);
    free(ptrs);
  }
}

/* Room job: S_ENTER_ROOM to member i. */
static void send_member_list(struct room *r, size_t i) {
  chat__send_enter(r->sessions[i], &r->name, (uint32_t)r->n, &r->members[i], r->members, r->n, i);
}

/* Room job: send m to members [from, to). */
static void room_send(struct room *r, size_t from, size_t to, uint16_t id,
                      const ProtobufCMessage *m) {
  if (from >= to)
    return;
  cp_sendbuf *b = wire_packet(id, m);
  if (!b) {
    /* Out of memory: a member must not silently miss presence; end them. */
    for (size_t k = from; k < to; k++)
      cp_session_disconnect(r->sessions[k], false);
    return;
  }
  cp_session_send_many(r->sessions + from, to - from, b);
  cp_sendbuf_unref(b);
}

/* Room job: room for one more member; false if out of memory. */
bool chat__room_grow(struct room *r) {
  if (r->n < r->cap)
    return true;
  size_t cap = r->cap ? r->cap * 2 : 8;
  cp_session **s = realloc(r->sessions, cap * sizeof *s);
  if (s)
    r->sessions = s;
  struct member *m = s ? realloc(r->members, cap * sizeof *m) : NULL;
  if (m)
    r->members = m;
  if (!s || !m)
    return false;
  r->cap = cap;
  return true;
}

/* Post a room job; false if that failed (out of memory). */
bool chat__post(struct room *r, void (*fn)(void *), struct player *p, struct room *next,
                bool final) {
  struct room_job *j = malloc(sizeof *j);
  if (!j)
    return false;
  *j = (struct room_job){.p = p, .r = r, .next = next, .final = final};
  if (cp_jobq_post(r->q, fn, j) != 0) {
    free(j);
    return false;
  }
  return true;
}

void chat__enter_failed(struct player *p, struct room *r) {
  chat__room_unref(r);
  chat__send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "out of memory");
}

void chat__job_enter(void *arg) {
  struct room_job *j = arg;
  struct player *p = j->p;
  struct room *r = j->r;
  free(j);
  chat__room_flush_held(r, false); /* the chats held so far are not the new member's */
  if (p->room == r) {              /* already a member: the list again (the extra reference goes) */
    for (size_t i = 0; i < r->n; i++)
      if (r->sessions[i] == p->s)
        send_member_list(r, i);
    chat__room_unref(r);
    chat__chain_resume(p);
    return;
  }
  if (!chat__room_grow(r)) {
    chat__enter_failed(p, r);
    chat__chain_resume(p);
    return;
  }
  r->sessions[r->n] = p->s;
  r->members[r->n] = (struct member){.id = p->id, .name = p->name};
  r->n++;
  p->room = r; /* the entry's reference is the membership's now */
  send_member_list(r, r->n - 1);
  Chatw__Member me = CHATW__MEMBER__INIT;
  me.player_id = p->id;
  me.name = bin(&p->name);
  Chatw__SMemberJoined joined = CHATW__SMEMBER_JOINED__INIT;
  joined.room = bin(&r->name);
  joined.member = &me;
  room_send(r, 0, r->n - 1, CHATW__PACKET_ID__S_MEMBER_JOINED, &joined.base);
  chat__chain_resume(p);
}

void chat__job_leave(void *arg) {
  struct room_job *j = arg;
  struct player *p = j->p;
  struct room *r = j->r, *next = j->next;
  bool final = j->final;
  free(j);
  assert(p->room == r);
  size_t i = 0;
  while (i < r->n && r->sessions[i] != p->s)
    i++;
  assert(i < r->n);
  chat__room_flush_held(r, r->n == 1); /* its chats and everyone's before it leaves */
  if (i < r->n) {
    memmove(r->sessions + i, r->sessions + i + 1, (r->n - i - 1) * sizeof *r->sessions);
    memmove(r->members + i, r->members + i + 1, (r->n - i - 1) * sizeof *r->members);
    r->n--;
  }
  p->room = NULL;
  cp_sendbuf *answer = NULL; /* S_LEAVE_ROOM, sent once the room may be gone */
  if (!final) {
    Chatw__SLeaveRoom m = CHATW__SLEAVE_ROOM__INIT;
    m.room = bin(&r->name);
    answer = wire_packet(CHATW__PACKET_ID__S_LEAVE_ROOM, &m.base);
  }
  Chatw__SMemberLeft left = CHATW__SMEMBER_LEFT__INIT;
  left.room = bin(&r->name);
  left.player_id = p->id;
  room_send(r, 0, r->n, CHATW__PACKET_ID__S_MEMBER_LEFT, &left.base);
  if (!r->n) { /* empty: give its slots back now (a room stays only while referenced) */
    free(r->sessions);
    free(r->members);
    r->sessions = NULL;
    r->members = NULL;
    r->cap = 0;
  }
  /* The membership's reference; may delete the room (and this queue). Before
   * the answer: once a client has S_LEAVE_ROOM of a room it emptied, the room
   * no longer counts against --max-rooms. */
  chat__room_unref(r);
  if (answer) {
    cp_session_send(p->s, answer);
    cp_sendbuf_unref(answer);
  }
  if (final) {
    chat__player_free(p);
    return;
  }
  if (next) {
    if (!chat__post(next, chat__job_enter, p, NULL, false))
      chat__enter_failed(p, next);
    else
      return; /* job_enter resumes the chain */
  }
  chat__chain_resume(p);
}
