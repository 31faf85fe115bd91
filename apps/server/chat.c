/*
 * chat.c - chat mode: login, rooms, chat broadcast to the room.
 *
 * A player's own state (name, id, room) lives in its session and is touched
 * only by that session's callbacks, which never overlap. A room's member list
 * lives on the room's job queue: entering, leaving and chatting are jobs, so
 * they run one at a time, in order, without a lock. A chat line is encoded
 * once by the sender's worker, and the room job sends that one buffer to every
 * member (the sender included).
 *
 * Bad input: a body that does not decode, or an unknown packet id, gets an
 * S_ERROR, a line in the log and a graceful disconnect; a packet that makes
 * no sense in the player's state (chat before login, ...) gets an S_ERROR
 * only. Nothing a client sends can affect another player.
 */
#define _GNU_SOURCE
#include "server.h"

#include "../common/wire.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROOMS 4096

struct room {
  char name[CHAT_ROOM_MAX + 1];
  cp_jobq *q;
  /* Members, touched only by the room's jobs. */
  cp_session **sessions; /* each holds a reference */
  uint64_t *ids;
  char (*names)[CHAT_NAME_MAX + 1];
  size_t n, cap;
};

struct player {
  char peer[64]; /* its address, noted at connect: the socket forgets it once the peer is gone */
  uint64_t id;   /* 0 until logged in */
  char name[CHAT_NAME_MAX + 1];
  struct room *room;
};

static cp_service *service;
static pthread_mutex_t rooms_mu = PTHREAD_MUTEX_INITIALIZER;
static struct room *rooms[MAX_ROOMS];
static size_t nrooms;
static _Atomic uint64_t next_player_id = 1;

void chat_init(cp_service *svc) {
  service = svc;
}

size_t chat_rooms(void) {
  pthread_mutex_lock(&rooms_mu);
  size_t n = nrooms;
  pthread_mutex_unlock(&rooms_mu);
  return n;
}

void chat_shutdown(void) {
  pthread_mutex_lock(&rooms_mu);
  for (size_t i = 0; i < nrooms; i++) {
    struct room *r = rooms[i];
    for (size_t j = 0; j < r->n; j++)
      cp_session_put(r->sessions[j]);
    cp_jobq_destroy(r->q);
    free(r->sessions);
    free(r->ids);
    free(r->names);
    free(r);
  }
  nrooms = 0;
  pthread_mutex_unlock(&rooms_mu);
}

static struct room *room_get(const char *name) {
  struct room *r = NULL;
  pthread_mutex_lock(&rooms_mu);
  for (size_t i = 0; i < nrooms && !r; i++)
    if (!strcmp(rooms[i]->name, name))
      r = rooms[i];
  if (!r && nrooms < MAX_ROOMS && (r = calloc(1, sizeof *r))) {
    strcpy(r->name, name);
    if (!(r->q = cp_jobq_create(service))) {
      free(r);
      r = NULL;
    } else {
      rooms[nrooms++] = r;
    }
  }
  pthread_mutex_unlock(&rooms_mu);
  return r;
}

static void send_error(cp_session *s, Chat__ErrorCode code, const char *text) {
  Chat__SError m = CHAT__SERROR__INIT;
  m.code = code;
  m.text = (char *)text;
  wire_send(s, CHAT__PACKET_ID__S_ERROR, &m.base);
}

/* ---- room jobs -------------------------------------------------------- */

struct enter_job {
  struct room *r;
  cp_session *s; /* a reference, handed to the member list (dropped if again) */
  uint64_t id;
  char name[CHAT_NAME_MAX + 1];
  bool again; /* a member already: only answer with the member list */
};

struct leave_job {
  struct room *r;
  cp_session *s; /* a reference, dropped by the job */
};

struct chat_job {
  struct room *r;
  cp_sendbuf *b; /* a reference, dropped by the job */
};

static bool room_reserve(struct room *r) {
  if (r->n < r->cap)
    return true;
  size_t cap = r->cap ? r->cap * 2 : 16;
  cp_session **s = realloc(r->sessions, cap * sizeof *s);
  if (s)
    r->sessions = s;
  uint64_t *ids = realloc(r->ids, cap * sizeof *ids);
  if (ids)
    r->ids = ids;
  char(*names)[CHAT_NAME_MAX + 1] = realloc(r->names, cap * sizeof *names);
  if (names)
    r->names = names;
  if (!s || !ids || !names)
    return false;
  r->cap = cap;
  return true;
}

static void job_enter(void *arg) {
  struct enter_job *j = arg;
  struct room *r = j->r;
  if (!cp_session_connected(j->s) || (!j->again && !room_reserve(r))) {
    if (cp_session_connected(j->s))
      send_error(j->s, CHAT__ERROR_CODE__ERR_ROOM_FULL, "the room cannot take more members");
    cp_session_put(j->s);
    free(j);
    return;
  }
  if (!j->again) {
    r->sessions[r->n] = j->s; /* the job's reference goes to the list */
    r->ids[r->n] = j->id;
    memcpy(r->names[r->n], j->name, sizeof j->name);
    r->n++;
  }
  Chat__SEnterRoom m = CHAT__SENTER_ROOM__INIT;
  m.room = r->name;
  m.member_count = (uint32_t)r->n;
  size_t listed = r->n < CHAT_MEMBERS_LISTED ? r->n : CHAT_MEMBERS_LISTED;
  Chat__Member *mem = calloc(listed ? listed : 1, sizeof *mem);
  Chat__Member **ptrs = calloc(listed ? listed : 1, sizeof *ptrs);
  if (mem && ptrs) {
    for (size_t i = 0; i < listed; i++) {
      chat__member__init(&mem[i]);
      mem[i].player_id = r->ids[i];
      mem[i].name = r->names[i];
      ptrs[i] = &mem[i];
    }
    m.n_members = listed;
    m.members = ptrs;
  }
  wire_send(j->s, CHAT__PACKET_ID__S_ENTER_ROOM, &m.base);
  free(mem);
  free(ptrs);
  if (j->again)
    cp_session_put(j->s);
  free(j);
}

static void job_leave(void *arg) {
  struct leave_job *j = arg;
  struct room *r = j->r;
  for (size_t i = 0; i < r->n; i++) {
    if (r->sessions[i] != j->s)
      continue;
    cp_session_put(r->sessions[i]); /* the member list's reference */
    r->n--;
    r->sessions[i] = r->sessions[r->n];
    r->ids[i] = r->ids[r->n];
    memcpy(r->names[i], r->names[r->n], sizeof r->names[i]);
    break;
  }
  cp_session_put(j->s);
  free(j);
}

static void job_chat(void *arg) {
  struct chat_job *j = arg;
  cp_session_send_many(j->r->sessions, j->r->n, j->b);
  cp_sendbuf_unref(j->b);
  free(j);
}

/* Post a leave of s from its room; false if out of memory. */
static bool leave_room(cp_session *s, struct player *p) {
  struct leave_job *j = malloc(sizeof *j);
  if (!j)
    return false;
  j->r = p->room;
  j->s = cp_session_get(s);
  if (cp_jobq_post(p->room->q, job_leave, j) != 0) {
    cp_session_put(s);
    free(j);
    return false;
  }
  p->room = NULL;
  return true;
}

/* ---- packets from one player (its strand) --------------------------- */

/* proto3 strings are UTF-8, and a conformant decoder refuses a body with any
 * other string; protobuf-c does not check. So a body with a string that is
 * not UTF-8 does not decode here either: else it would be relayed to other
 * players (names, chat), whose decoders would then refuse our packets. */
static bool utf8_ok(const char *str) {
  const unsigned char *p = (const unsigned char *)str;
  while (*p) {
    unsigned c = *p++, more, min;
    if (c < 0x80)
      continue;
    if (c >= 0xC2 && c <= 0xDF)
      more = 1, min = 0x80, c &= 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
      more = 2, min = 0x800, c &= 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
      more = 3, min = 0x10000, c &= 0x07;
    else
      return false;
    for (; more; more--, p++) {
      if ((*p & 0xC0) != 0x80)
        return false;
      c = c << 6 | (*p & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
      return false;
  }
  return true;
}

static bool name_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  return n >= 1 && n <= max;
}

static void on_login(cp_session *s, struct player *p, const cp_packet *pkt) {
  Chat__CLogin *m = chat__clogin__unpack(NULL, pkt->body_len, pkt->body);
  if (m && !utf8_ok(m->name)) {
    chat__clogin__free_unpacked(m, NULL);
    m = NULL;
  }
  if (!m) {
    send_error(s, CHAT__ERROR_CODE__ERR_BAD_MESSAGE, "C_LOGIN does not decode");
    srv_log_session(s, p->peer, "C_LOGIN body of %zu bytes does not decode; disconnecting",
                    pkt->body_len);
    cp_session_disconnect(s, true);
    return;
  }
  if (p->id) {
    send_error(s, CHAT__ERROR_CODE__ERR_ALREADY_LOGGED_IN, "already logged in");
  } else if (!name_ok(m->name, CHAT_NAME_MAX)) {
    send_error(s, CHAT__ERROR_CODE__ERR_BAD_NAME, "a name is 1 to 32 bytes");
  } else {
    p->id = atomic_fetch_add(&next_player_id, 1);
    strcpy(p->name, m->name);
    Chat__SLogin r = CHAT__SLOGIN__INIT;
    r.player_id = p->id;
    wire_send(s, CHAT__PACKET_ID__S_LOGIN, &r.base);
  }
  chat__clogin__free_unpacked(m, NULL);
}

static void on_enter(cp_session *s, struct player *p, const cp_packet *pkt) {
  Chat__CEnterRoom *m = chat__center_room__unpack(NULL, pkt->body_len, pkt->body);
  if (m && !utf8_ok(m->room)) {
    chat__center_room__free_unpacked(m, NULL);
    m = NULL;
  }
  if (!m) {
    send_error(s, CHAT__ERROR_CODE__ERR_BAD_MESSAGE, "C_ENTER_ROOM does not decode");
    srv_log_session(s, p->peer, "C_ENTER_ROOM body of %zu bytes does not decode; disconnecting",
                    pkt->body_len);
    cp_session_disconnect(s, true);
    return;
  }
  struct room *r = NULL;
  if (!p->id) {
    send_error(s, CHAT__ERROR_CODE__ERR_NOT_LOGGED_IN, "log in first");
  } else if (!name_ok(m->room, CHAT_ROOM_MAX)) {
    send_error(s, CHAT__ERROR_CODE__ERR_BAD_ROOM, "a room name is 1 to 32 bytes");
  } else if (!(r = room_get(m->room))) {
    send_error(s, CHAT__ERROR_CODE__ERR_ROOM_FULL, "no more rooms");
  } else {
    /* The room it is in already: answer with the member list again. */
    bool again = r == p->room;
    struct enter_job *j = malloc(sizeof *j);
    if (j && (again || !p->room || leave_room(s, p))) {
      j->r = r;
      j->s = cp_session_get(s);
      j->id = p->id;
      j->again = again;
      memcpy(j->name, p->name, sizeof j->name);
      if (cp_jobq_post(r->q, job_enter, j) == 0) {
        p->room = r;
        j = NULL;
      } else {
        cp_session_put(s);
      }
    }
    if (j) {
      free(j);
      send_error(s, CHAT__ERROR_CODE__ERR_ROOM_FULL, "out of memory");
    }
  }
  chat__center_room__free_unpacked(m, NULL);
}

static void on_chat(cp_session *s, struct player *p, const cp_packet *pkt) {
  Chat__CChat *m = chat__cchat__unpack(NULL, pkt->body_len, pkt->body);
  if (m && !utf8_ok(m->text)) {
    chat__cchat__free_unpacked(m, NULL);
    m = NULL;
  }
  if (!m) {
    send_error(s, CHAT__ERROR_CODE__ERR_BAD_MESSAGE, "C_CHAT does not decode");
    srv_log_session(s, p->peer, "C_CHAT body of %zu bytes does not decode; disconnecting",
                    pkt->body_len);
    cp_session_disconnect(s, true);
    return;
  }
  if (!p->room) {
    send_error(s, p->id ? CHAT__ERROR_CODE__ERR_NOT_IN_ROOM : CHAT__ERROR_CODE__ERR_NOT_LOGGED_IN,
               "enter a room first");
  } else if (strlen(m->text) > CHAT_TEXT_MAX) {
    send_error(s, CHAT__ERROR_CODE__ERR_TOO_LONG, "chat text is at most 1000 bytes");
  } else {
    Chat__SChat out = CHAT__SCHAT__INIT;
    out.player_id = p->id;
    out.text = m->text;
    out.client_time_us = m->client_time_us;
    struct chat_job *j = malloc(sizeof *j);
    if (j && (j->b = wire_packet(CHAT__PACKET_ID__S_CHAT, &out.base))) {
      j->r = p->room;
      if (cp_jobq_post(p->room->q, job_chat, j) == 0)
        j = NULL;
      else
        cp_sendbuf_unref(j->b);
    }
    if (j) {
      /* Out of memory: the chat cannot reach the room. Say so and end the
       * session rather than let the player think it was heard. */
      free(j);
      srv_log_session(s, p->peer, "out of memory for a chat; disconnecting");
      cp_session_disconnect(s, false);
    }
  }
  chat__cchat__free_unpacked(m, NULL);
}

static void on_leave(cp_session *s, struct player *p, const cp_packet *pkt) {
  Chat__CLeaveRoom *m = chat__cleave_room__unpack(NULL, pkt->body_len, pkt->body);
  if (!m) {
    send_error(s, CHAT__ERROR_CODE__ERR_BAD_MESSAGE, "C_LEAVE_ROOM does not decode");
    srv_log_session(s, p->peer, "C_LEAVE_ROOM body of %zu bytes does not decode; disconnecting",
                    pkt->body_len);
    cp_session_disconnect(s, true);
    return;
  }
  chat__cleave_room__free_unpacked(m, NULL);
  if (!p->room) {
    send_error(s, p->id ? CHAT__ERROR_CODE__ERR_NOT_IN_ROOM : CHAT__ERROR_CODE__ERR_NOT_LOGGED_IN,
               "not in a room");
    return;
  }
  Chat__SLeaveRoom r = CHAT__SLEAVE_ROOM__INIT;
  r.room = p->room->name;
  if (leave_room(s, p))
    wire_send(s, CHAT__PACKET_ID__S_LEAVE_ROOM, &r.base);
}

void chat_on_connected(cp_session *s) {
  struct player *p = calloc(1, sizeof *p);
  if (!p) {
    cp_session_disconnect(s, false);
    return;
  }
  cp_session_peer(s, p->peer, sizeof p->peer);
  cp_session_set_user(s, p);
}

void chat_on_packet(cp_session *s, const cp_packet *pkt) {
  struct player *p = cp_session_user(s);
  if (!p)
    return;
  switch (pkt->id) {
  case CHAT__PACKET_ID__C_LOGIN:
    on_login(s, p, pkt);
    break;
  case CHAT__PACKET_ID__C_ENTER_ROOM:
    on_enter(s, p, pkt);
    break;
  case CHAT__PACKET_ID__C_CHAT:
    on_chat(s, p, pkt);
    break;
  case CHAT__PACKET_ID__C_LEAVE_ROOM:
    on_leave(s, p, pkt);
    break;
  default:
    send_error(s, CHAT__ERROR_CODE__ERR_UNKNOWN_ID, "unknown packet id");
    srv_log_session(s, p->peer, "unknown packet id %u; disconnecting", pkt->id);
    cp_session_disconnect(s, true);
    break;
  }
}

void chat_on_disconnected(cp_session *s, cp_reason why) {
  struct player *p = cp_session_user(s);
  srv_log_disconnect(s, p ? p->peer : NULL, why);
  if (!p)
    return;
  if (p->room)
    leave_room(s, p); /* if this fails (no memory) the room keeps a stale member
                         until it is sent to and fails: harmless, and freed at exit */
  cp_session_set_user(s, NULL);
  free(p);
}
