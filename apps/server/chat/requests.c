/*
 * chat/requests.c - protocol 2's requests, run by the player's chain: login,
 * enter (and switch), chat, leave, ping, a bad header, the session's end;
 * rate limits; bad bodies answered with S_ERROR and a graceful close. With
 * --cluster, the requests that need a room go to cluster_requests.c.
 */
#define _GNU_SOURCE
#include "chat.h"

static _Atomic uint64_t next_player_id = 1;

/* ---- requests (run by the chain) ------------------------------------- */

static bool bucket_take(struct bucket *b, unsigned rate) {
  if (!rate)
    return true;
  uint64_t now = chat__now_us(CLOCK_MONOTONIC);
  if (!b->last_us) {
    b->tokens = rate;
  } else {
    b->tokens += (double)(now - b->last_us) * rate / 1e6;
    if (b->tokens > rate)
      b->tokens = rate; /* a burst of one second's worth */
  }
  b->last_us = now;
  if (b->tokens < 1)
    return false;
  b->tokens -= 1;
  return true;
}

/* The body did not decode: S_ERROR, and close after it. */
static int bad_message(struct player *p, const char *what, size_t len) {
  char text[64];
  snprintf(text, sizeof text, "%s does not decode", what);
  chat__send_error(p->s, CHATW__ERROR_CODE__ERR_BAD_MESSAGE, text);
  srv_log_session(p->s, p->peer, "%s body of %zu bytes does not decode; disconnecting", what, len);
  cp_session_disconnect(p->s, true);
  p->closed = true;
  return DONE;
}

static int on_login(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CLogin *m = chatw__clogin__unpack(NULL, len, body);
  if (!m || !wire_utf8_ok(m->name.data, m->name.len)) {
    chatw__clogin__free_unpacked(m, NULL);
    return bad_message(p, "C_LOGIN", len);
  }
  if (p->id) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_ALREADY_LOGGED_IN, "already logged in");
  } else if (m->name.len < 1 || m->name.len > CHAT_NAME_MAX) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_BAD_NAME, "a name is 1 to 32 bytes");
  } else {
    p->name.len = (uint8_t)m->name.len;
    memcpy(p->name.b, m->name.data, m->name.len);
#ifdef CPORT_CLUSTER
    if (chat__clustered && !node_take_id(&p->id) && !node_commands_available()) {
      chatw__clogin__free_unpacked(m, NULL);
      chat__unavailable(p, "no player ids yet"); /* never reached Redis: no id block */
      p->name.len = 0;
      return DONE;
    }
    if (chat__clustered && !p->id) { /* a block is on its way: on_ids_ready */
      chatw__clogin__free_unpacked(m, NULL);
      pthread_mutex_lock(&chat__players_mu);
      p->id_wait = chat__id_waiters;
      chat__id_waiters = p;
      pthread_mutex_unlock(&chat__players_mu);
      chat__on_ids_ready(); /* it may have come meanwhile */
      return SUSPENDED;
    }
    if (!chat__clustered)
#endif
      p->id = atomic_fetch_add(&next_player_id, 1);
    Chatw__SLogin r = CHATW__SLOGIN__INIT;
    r.player_id = p->id;
    wire_send(p->s, CHATW__PACKET_ID__S_LOGIN, &r.base);
  }
  chatw__clogin__free_unpacked(m, NULL);
  return DONE;
}

static int on_enter(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CEnterRoom *m = chatw__center_room__unpack(NULL, len, body);
  if (!m || !wire_utf8_ok(m->room.data, m->room.len)) {
    chatw__center_room__free_unpacked(m, NULL);
    return bad_message(p, "C_ENTER_ROOM", len);
  }
  int rc = DONE;
  struct room *r;
  if (!p->id) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_LOGGED_IN, "log in first");
  } else if (m->room.len < 1 || m->room.len > CHAT_ROOM_MAX) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_BAD_ROOM, "a room name is 1 to 32 bytes");
  } else if (!bucket_take(&p->enter_bucket, chat__limits.enter_rate)) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_RATE_LIMITED, "too many room entries");
#ifdef CPORT_CLUSTER
  } else if (chat__clustered) {
    rc = chat__cl_enter(p, m->room.data, m->room.len);
#endif
  } else if (!(r = chat__room_ref(m->room.data, m->room.len))) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "no more rooms");
  } else if (p->room && p->room != r) { /* a switch: leave first, then enter */
    if (chat__post(p->room, chat__job_leave, p, r, false))
      rc = SUSPENDED;
    else
      chat__enter_failed(p, r);
  } else {
    if (chat__post(r, chat__job_enter, p, NULL, false))
      rc = SUSPENDED;
    else
      chat__enter_failed(p, r);
  }
  chatw__center_room__free_unpacked(m, NULL);
  return rc;
}

static int on_chat(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CChat *m = chatw__cchat__unpack(NULL, len, body);
  if (!m || !wire_utf8_ok(m->text.data, m->text.len)) {
    chatw__cchat__free_unpacked(m, NULL);
    return bad_message(p, "C_CHAT", len);
  }
  if (!p->id) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_LOGGED_IN, "log in first");
  } else if (!p->room) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_IN_ROOM, "enter a room first");
  } else if (m->text.len > CHAT_TEXT_MAX) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_TOO_LONG, "chat text is at most 1000 bytes");
  } else if (!bucket_take(&p->chat_bucket, chat__limits.chat_rate)) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_RATE_LIMITED, "too many chats");
#ifdef CPORT_CLUSTER
  } else if (chat__clustered) {
    if (!node_commands_available() || !chat__cl_chat(p, &m->text, m->client_time_us))
      chat__unavailable(p, "chatting");
#endif
  } else {
    Chatw__SChat out = CHATW__SCHAT__INIT;
    out.player_id = p->id;
    out.text = m->text;
    out.client_time_us = m->client_time_us;
    out.room = bin(&p->room->name);
    if (!chat__room_chat(p->room, &out.base)) {
      /* Out of memory: the chat cannot reach the room. Say so and end the
       * session rather than let the player think it was heard. */
      srv_log_session(p->s, p->peer, "out of memory for a chat; disconnecting");
      cp_session_disconnect(p->s, false);
      p->closed = true;
    }
  }
  chatw__cchat__free_unpacked(m, NULL);
  return DONE;
}

static int on_leave(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CLeaveRoom *m = chatw__cleave_room__unpack(NULL, len, body);
  if (!m)
    return bad_message(p, "C_LEAVE_ROOM", len);
  chatw__cleave_room__free_unpacked(m, NULL);
  if (!p->id) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_LOGGED_IN, "log in first");
  } else if (!p->room) {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_NOT_IN_ROOM, "not in a room");
#ifdef CPORT_CLUSTER
  } else if (chat__clustered) {
    if (node_commands_available())
      return chat__cl_leave(p, NULL, false, false);
    chat__unavailable(p, "leaving");
#endif
  } else if (chat__post(p->room, chat__job_leave, p, NULL, false)) {
    return SUSPENDED;
  } else {
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_ROOM_FULL, "out of memory");
  }
  return DONE;
}

static int on_ping(struct player *p, const uint8_t *body, size_t len) {
  Chatw__CPing *m = chatw__cping__unpack(NULL, len, body);
  if (!m)
    return bad_message(p, "C_PING", len);
  Chatw__SPong r = CHATW__SPONG__INIT;
  r.client_time_us = m->client_time_us;
  r.server_time_us = chat__now_us(CLOCK_REALTIME);
  chatw__cping__free_unpacked(m, NULL);
  wire_send(p->s, CHATW__PACKET_ID__S_PONG, &r.base);
  return DONE;
}

static void job_close(void *arg) {
  struct room_job *j = arg;
  chat__room_flush_held(j->r, false); /* its own chats among them: they go out first */
  /* the player is alive: its final leave job is behind this one in the queue */
  cp_session_disconnect(j->p->s, true);
  free(j);
}

/* Every request before the bad header was answered: close (gracefully, so
 * the answers go out first; the engine reports it as bad_packet). */
static int on_bad_header(struct player *p) {
  p->closed = true;
#ifdef CPORT_CLUSTER
  /* its chats come back through Redis: close once its leave's offset is reached */
  if (p->room && chat__clustered && node_commands_available())
    return chat__cl_leave(p, NULL, false, true);
#endif
  if (p->room && chat__post(p->room, job_close, p, NULL, false))
    return DONE; /* after the room's jobs of the player's earlier chats */
  cp_session_disconnect(p->s, true);
  return DONE;
}

/* The session is over: leave the room (the job frees the player), or free
 * the player now. */
static int on_end(struct player *p) {
  p->closed = true;
#ifdef CPORT_CLUSTER
  if (p->room && chat__clustered)
    return chat__cl_leave(p, NULL, true, false);
#endif
  if (p->room) {
    if (chat__post(p->room, chat__job_leave, p, NULL, true))
      return SUSPENDED;
    /* Out of memory: the room keeps a stale member, and the player stays
     * (it is in the list); it is sent to and fails, harmlessly. */
    return SUSPENDED;
  }
  chat__player_free(p);
  return SUSPENDED; /* nothing may touch p any more */
}

int chat__handle(struct player *p, uint32_t id, const uint8_t *body, size_t len) {
  if (id == ITEM_DISCONNECT)
    return on_end(p);
  if (p->closed)
    return DONE; /* after an error that closes: nothing more is answered */
  switch (id) {
  case ITEM_BAD_HEADER:
    return on_bad_header(p);
  case CHATW__PACKET_ID__C_LOGIN:
    return on_login(p, body, len);
  case CHATW__PACKET_ID__C_ENTER_ROOM:
    return on_enter(p, body, len);
  case CHATW__PACKET_ID__C_CHAT:
    return on_chat(p, body, len);
  case CHATW__PACKET_ID__C_LEAVE_ROOM:
    return on_leave(p, body, len);
  case CHATW__PACKET_ID__C_PING:
    return on_ping(p, body, len);
  default:
    chat__send_error(p->s, CHATW__ERROR_CODE__ERR_UNKNOWN_ID, "unknown packet id");
    srv_log_session(p->s, p->peer, "unknown packet id %u; disconnecting", id);
    cp_session_disconnect(p->s, true);
    p->closed = true;
    return DONE;
  }
}
