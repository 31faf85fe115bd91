/*
 * chat.c - cport-dummy's chat mode: what a client sends, and every check on what it
 * receives (main.c describes them).
 */
#define _GNU_SOURCE
#include "../common/wire.h"
#include "../common/wire_decode.h"
#include "chat_text.h"
#include "dummy.h"
#include "pid_index.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- chat mode ------------------------------------------------------- */

/* Send the next chat of c (send lock held by caller): "<client>:<seq>:<player id>:" and
 * filler up to --size. */
void chat_send(struct client *c) {
  char text[1100];
  int n =
      snprintf(text, sizeof text, "%u:%" PRIu64 ":%" PRIu64 ":", c->idx, c->sent + 1, c->player_id);
  for (; n < (int)cfg.size && n < CHAT_TEXT_MAX; n++)
    text[n] = (char)('a' + n % 26);
  text[n] = 0;
  Chat__CChat m = CHAT__CCHAT__INIT;
  m.text = text;
  m.client_time_us = now_ns() / 1000;
  if (wire_send(c->s, CHAT__PACKET_ID__C_CHAT, &m.base) == 0) {
    c->sent++;
    atomic_fetch_add_explicit(&n_sent, 1, memory_order_relaxed);
  }
}

/* S_ENTER_ROOM (strand): note how many chats each member has sent so far -
 * under its send lock, so a chat is either counted or sent after this, and
 * then reaches the room after my enter. Then start sending. */
static void entered(struct client *c) {
  unsigned base = c->base, n = c->nmem;
  uint64_t have = 0;
  for (unsigned j = 0; j < n; j++) {
    struct client *a = &clients[base + j];
    pthread_spin_lock(&a->lock);
    uint64_t sent = a->sent;
    pthread_spin_unlock(&a->lock);
    uint32_t *w = want_of(c, j);
    if (*w) /* the last one the previous connection saw */
      c->seen[j].last = *w - 1;
    *w = 0;
    c->seen[j].floor = (uint32_t)sent;
    have += sent;
  }
  atomic_store(&c->have, have);
  /* no chat of the room sent yet: the whole stream is mine (not !sending: a churn reconnect
   * that enters once sending stopped missed the chats of the run) */
  order_start(&c->order, have);
  pthread_spin_lock(&c->lock);
  atomic_store(&c->state, CS_UP);
  pthread_spin_unlock(&c->lock);
  if (!c->ever_up) {
    c->ever_up = true;
    atomic_fetch_add(&n_entered, 1);
  } else {
    atomic_fetch_add(&n_reconnects, 1);
  }
}

/* Churn, chat (strand): my last chat before leaving came back. The room has
 * sent me, before it, every chat it handled before it, so what I have of each
 * member is all I get of the chats handled before my last one - but which
 * those are, only the room knows. So wait: a member that has sent more than I
 * have must send me one more chat, handled after my last one; when it comes,
 * the in-order check has covered everything before it. (A member that is
 * leaving too has its last chat still to come, or already here.) */
static void fence_start(struct client *c) {
  unsigned base = c->base, n = c->nmem;
  c->fence_left = 0;
  for (unsigned j = 0; j < n; j++) {
    struct client *a = &clients[base + j];
    pthread_spin_lock(&a->lock);
    uint64_t sent = a->sent; /* a chat of a that reached the room was counted here */
    pthread_spin_unlock(&a->lock);
    uint32_t w = *want_of(c, j);
    c->fence[j] = (w ? w - 1 : c->seen[j].floor) < sent;
    c->fence_left += c->fence[j];
  }
  pthread_spin_lock(&c->lock);
  if (c->fence_left)
    atomic_store(&c->state, CS_FENCING);
  else
    leave_now(c);
  pthread_spin_unlock(&c->lock);
}

/* Churn, chat (strand): a chat of member j came while fencing. */
static void fence_passed(struct client *c, unsigned j) {
  if (!c->fence[j])
    return;
  c->fence[j] = 0;
  if (--c->fence_left)
    return;
  pthread_spin_lock(&c->lock);
  leave_now(c);
  pthread_spin_unlock(&c->lock);
}

/* The name of the room client c belongs in. */
static int room_name(const struct client *c, char *buf, size_t n) {
  return snprintf(buf, n, "%s", c->room);
}

static bool bytes_eq(ProtobufCBinaryData b, const char *s) {
  size_t n = strlen(s); /* our own string */
  return b.len == n && !memcmp(b.data, s, n);
}

/* Whether p[0..n) is the name of c's room; lo: where the packet starts (readable from there
 * on). Once per delivery: a name of 1 to 8 bytes with 8 bytes of the packet ending where it
 * ends (S_CHAT: the room comes last) is compared as one word, anything else byte by byte. */
static inline bool is_my_room(const struct client *c, const uint8_t *p, size_t n,
                              const uint8_t *lo) {
  if (n != c->room_len)
    return false;
  if (n >= 1 && n <= 8 && p + n - lo >= 8) {
    uint64_t got, mine; /* little-endian: the first byte lowest */
    memcpy(&got, p + n - 8, 8);
    memcpy(&mine, c->room, 8); /* (room[] holds 23 bytes) */
    got >>= (8 - n) * 8;
    if (n < 8)
      mine &= (1ull << (n * 8)) - 1;
    return got == mine;
  }
  for (size_t i = 0; i < n; i++) /* a few bytes: no call */
    if (p[i] != (uint8_t)c->room[i])
      return false;
  return true;
}

/* When a packet arrived, µs (now_ns's clock), for its latency. Reading the
 * clock is a tenth of the dummy's CPU per delivery on this VM (~90 ns each),
 * and every packet of one receive arrived at once: so a packet that starts
 * where the previous one on this thread ended, of the same session, is of the
 * same receive and takes its time (at most 32 in a row, then the clock is
 * read again). A packet of another session, one reassembled across receives
 * (framing copies it elsewhere) or a new receive reads the clock. */
static uint64_t arrival_us(const cp_session *s, const cp_packet *pkt) {
  static _Thread_local struct {
    const cp_session *s;
    const uint8_t *end; /* where the last packet ended */
    uint64_t us;
    unsigned reused;
  } last;
  if (last.s != s || last.end != pkt->data || last.reused >= 32) {
    last.s = s;
    last.us = now_ns() / 1000;
    last.reused = 0;
  } else {
    last.reused++;
  }
  last.end = pkt->data + pkt->size;
  return last.us;
}

/* "dummy-<i>": the client index, or UINT_MAX. */
static unsigned member_client(const uint8_t *name, size_t len) {
  if (len < 7 || len > 16 || memcmp(name, "dummy-", 6))
    return UINT_MAX;
  unsigned v = 0;
  for (size_t k = 6; k < len; k++) {
    if (name[k] < '0' || name[k] > '9')
      return UINT_MAX;
    v = v * 10 + (unsigned)(name[k] - '0');
  }
  return v < cfg.clients ? v : UINT_MAX;
}

/* The presence index (dummy.h, pid_index.h; strand only): index c->mpid[slot], a player id
 * not 0. */
static void pidx_add(struct client *c, unsigned slot) {
  assert(c->mpid[slot] != 0 && slot < 2 * c->nmem);
  pid_index_add(presence_index(c), presence_bits, c->mpid, slot);
}

/* The slot of c->mpid holding player id pid, taken out of the index (the caller clears it);
 * UINT_MAX if none does. */
static unsigned pidx_take(struct client *c, uint64_t pid) {
  return pid_index_take(presence_index(c), presence_bits, c->mpid, pid);
}

/* S_ENTER_ROOM of my room (strand): start the presence count. */
static void presence_start(struct client *c, const Chatw__SEnterRoom *m) {
  unsigned base = room_base(c), n = room_members(base);
  memset(c->mpid, 0, presence_bytes()); /* and the index */
  c->mcount = m->member_count;
  c->mknown = 0;
  atomic_store_explicit(&c->mcount_seen, c->mcount, memory_order_relaxed);
  if (m->member_count < 1 || m->n_members < 1 || m->n_members > CHAT_MEMBERS_LISTED ||
      m->n_members > m->member_count || m->members[0]->player_id != c->player_id) {
    dummy_error("client %u: S_ENTER_ROOM lists %zu of %u members, %s first", c->idx, m->n_members,
                m->member_count,
                m->n_members && m->members[0]->player_id == c->player_id ? "me" : "not me");
    return;
  }
  for (size_t k = 0; k < m->n_members; k++) {
    unsigned i = member_client(m->members[k]->name.data, m->members[k]->name.len);
    unsigned slot = i - base;
    if (i != UINT_MAX && i >= base && i < base + n && c->mpid[slot])
      slot += n; /* churn: its old connection, not gone yet */
    if (i == UINT_MAX || i < base || i >= base + n || c->mpid[slot]) {
      dummy_error("client %u: S_ENTER_ROOM lists a member that is not of the room, or twice",
                  c->idx);
      return;
    }
    if ((c->mpid[slot] = m->members[k]->player_id))
      pidx_add(c, slot);
    c->mknown++;
  }
  atomic_store_explicit(&c->mcount_seen, c->mcount, memory_order_relaxed);
}

/* lo: where the packet starts (is_my_room). */
static void on_joined(struct client *c, const struct wire_smember_joined *m, const uint8_t *lo) {
  unsigned base = room_base(c), n = room_members(base);
  unsigned i = m->has_member ? member_client(m->member.name.data, m->member.name.len) : UINT_MAX;
  atomic_fetch_add_explicit(&n_joined, 1, memory_order_relaxed);
  if (!is_my_room(c, m->room.data, m->room.len, lo) || i == UINT_MAX || i < base || i >= base + n) {
    dummy_error("client %u: S_MEMBER_JOINED of another room or player", c->idx);
    return;
  }
  unsigned slot = i - base;
  if (c->mpid[slot] && cfg.churn > 0)
    slot += n; /* its old connection has not left yet */
  if (c->mpid[slot] || i == c->idx) {
    dummy_error("client %u: S_MEMBER_JOINED of client %u, in the room already", c->idx, i);
    return;
  }
  if (cfg.churn == 0 && !cfg.pipeline) { /* else it may not have seen its S_LOGIN yet */
    pthread_spin_lock(&clients[i].lock);
    uint64_t pid = clients[i].player_id;
    pthread_spin_unlock(&clients[i].lock);
    if (pid != m->member.player_id)
      dummy_error("client %u: S_MEMBER_JOINED of client %u with player id %" PRIu64
                  ", not %" PRIu64,
                  c->idx, i, m->member.player_id, pid);
  }
  if ((c->mpid[slot] = m->member.player_id))
    pidx_add(c, slot);
  c->mcount++;
  c->mknown++;
  atomic_store_explicit(&c->mcount_seen, c->mcount, memory_order_relaxed);
}

static void on_left(struct client *c, const struct wire_smember_left *m, const uint8_t *lo) {
  atomic_fetch_add_explicit(&n_left, 1, memory_order_relaxed);
  if (!is_my_room(c, m->room.data, m->room.len, lo) || m->player_id == c->player_id) {
    dummy_error("client %u: S_MEMBER_LEFT of another room, or of me", c->idx);
    return;
  }
  unsigned slot = pidx_take(c, m->player_id); /* not a scan of the room: N^2 of these */
  if (slot != UINT_MAX) {
    c->mpid[slot] = 0;
    c->mknown--;
    c->mcount--;
    atomic_store_explicit(&c->mcount_seen, c->mcount, memory_order_relaxed);
    return;
  }
  if (c->mcount > c->mknown) /* one of those S_ENTER_ROOM did not list */
    atomic_store_explicit(&c->mcount_seen, --c->mcount, memory_order_relaxed);
  else
    dummy_error("client %u: S_MEMBER_LEFT of player %" PRIu64 ", not in the room", c->idx,
                m->player_id);
}

/* A chat of member j that is not the one expected on this connection (want: 0, or the one
 * expected): the first of j on this connection, or an error. Returns the sequence number
 * that what this connection accounts for of j (have) stood at before it. */
static uint64_t chat_unexpected(struct client *c, unsigned j, uint64_t seq, uint32_t want) {
  uint64_t from = c->base + j;
  if (want) {
    dummy_error("client %u: from client %" PRIu64 " expected chat %u, got %" PRIu64
                " (lost, duplicated or reordered)",
                c->idx, from, want, seq);
    return want - 1;
  }
  /* the first on this connection: none seen before, none sent since I entered missed */
  const struct seen *e = &c->seen[j];
  if (seq <= e->last)
    dummy_error("client %u: from client %" PRIu64 " got chat %" PRIu64 " again (duplicated)",
                c->idx, from, seq);
  else if (seq > (uint64_t)e->floor + 1)
    dummy_error("client %u: from client %" PRIu64 " chats %u to %" PRIu64
                " never came (sent after this connection entered)",
                c->idx, from, e->floor + 1, seq - 1);
  return e->floor;
}

/* S_CHAT m, which arrived at arrival µs; lo: where the packet starts (is_my_room). */
static void on_chat(struct client *c, const struct wire_schat *m, uint64_t arrival,
                    const uint8_t *lo) {
  uint64_t from, seq, pid;
  const uint8_t *t = m->text.data, *tend = t + m->text.len;
  if (!is_my_room(c, m->room.data, m->room.len, lo)) {
    dummy_error("client %u: S_CHAT names room '%.*s', not its room", c->idx,
                (int)(m->room.len < 40 ? m->room.len : 40), (const char *)m->room.data);
    return;
  }
  if (!parse_field(&t, tend, &from) || !parse_field(&t, tend, &seq) ||
      !parse_field(&t, tend, &pid) || from >= cfg.clients || seq == 0 || seq > SEQ_MAX) {
    dummy_error("client %u: S_CHAT with an unexpected text", c->idx);
    return;
  }
  unsigned j = (unsigned)(from - c->base); /* from < clients: no wrap past 32 bits */
  if (from < c->base || j >= c->nmem) {
    dummy_error("client %u: got a chat of client %" PRIu64 " from another room", c->idx, from);
    return;
  }
  if (pid != m->player_id)
    dummy_error("client %u: chat %" PRIu64 " of client %" PRIu64 " carries player id %" PRIu64
                ", its sender is %" PRIu64,
                c->idx, seq, from, m->player_id, pid);
  uint32_t *w = want_of(c, j), want = *w;
  uint64_t before = seq == want ? seq - 1 : chat_unexpected(c, j, seq, want);
  *w = (uint32_t)seq + 1;
  order_add(&c->order, order_key(from, seq));
  /* modulo 2^64: have goes down when the first chat is older than the floor */
  /* (the strand is its only writer: no locked add) */
  atomic_store_explicit(&c->have,
                        atomic_load_explicit(&c->have, memory_order_relaxed) + (seq - before),
                        memory_order_relaxed);
  if (atomic_load_explicit(&measuring, memory_order_relaxed)) {
    count_delivery(arrival > m->client_time_us ? arrival - m->client_time_us : 0);
  }
  int st = atomic_load(&c->state);
  if (st == CS_FENCING)
    fence_passed(c, j);
  else if (st == CS_LEAVING && from == c->idx && seq >= c->leave_seq)
    fence_start(c);
}

/* --pipeline: the first write of a connection, and the answers it must get,
 * in this order (a private room "pipe-<i>" first, so nothing else comes in
 * between; then a switch to the client's room). */
#define PIPE_CHATS 3
static const struct {
  uint16_t id;
  bool mine; /* about my room (else pipe-<i>) */
} script[] = {{CHATW__PACKET_ID__S_PONG, 0},       {CHATW__PACKET_ID__S_LOGIN, 0},
              {CHATW__PACKET_ID__S_ENTER_ROOM, 0}, {CHATW__PACKET_ID__S_CHAT, 0},
              {CHATW__PACKET_ID__S_CHAT, 0},       {CHATW__PACKET_ID__S_CHAT, 0},
              {CHATW__PACKET_ID__S_LEAVE_ROOM, 0}, {CHATW__PACKET_ID__S_ENTER_ROOM, 0},
              {CHATW__PACKET_ID__S_LEAVE_ROOM, 0}, {CHATW__PACKET_ID__S_ENTER_ROOM, 1}};
#define SCRIPT_LEN (sizeof script / sizeof script[0])

void pipeline_send(cp_session *s, struct client *c) {
  char name[40], pipe[40], room[40], text[PIPE_CHATS][24];
  snprintf(name, sizeof name, "dummy-%u", c->idx);
  snprintf(pipe, sizeof pipe, "pipe-%u", c->idx);
  room_name(c, room, sizeof room);
  uint8_t buf[1024];
  size_t n = 0;
  Chat__CPing ping = CHAT__CPING__INIT;
  ping.client_time_us = now_ns() / 1000;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_PING, &ping.base);
  Chat__CLogin login = CHAT__CLOGIN__INIT;
  login.name = name;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_LOGIN, &login.base);
  Chat__CEnterRoom enter = CHAT__CENTER_ROOM__INIT;
  enter.room = pipe;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_ENTER_ROOM, &enter.base);
  for (int k = 0; k < PIPE_CHATS; k++) {
    snprintf(text[k], sizeof text[k], "pipe:%d", k);
    Chat__CChat chat = CHAT__CCHAT__INIT;
    chat.text = text[k];
    n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_CHAT, &chat.base);
  }
  Chat__CLeaveRoom leave = CHAT__CLEAVE_ROOM__INIT;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_LEAVE_ROOM, &leave.base);
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_ENTER_ROOM, &enter.base);
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_LEAVE_ROOM, &leave.base);
  enter.room = room;
  n += wire_put_packet(buf + n, CHAT__PACKET_ID__C_ENTER_ROOM, &enter.base);
  cp_sendbuf *b = cp_sendbuf_copy(buf, n);
  if (!b || cp_session_send(s, b) != 0)
    dummy_error("client %u: cannot send its pipelined first write", c->idx);
  cp_sendbuf_unref(b);
}

/* --pipeline: answer c->script of the first write; false if it is not the
 * one expected (an error, reported). The last is the S_ENTER_ROOM of my room,
 * handled as usual by the caller. */
static bool pipeline_check(struct client *c, const cp_packet *pkt) {
  unsigned k = c->script++;
  char pipe[40];
  snprintf(pipe, sizeof pipe, "pipe-%u", c->idx);
  if (pkt->id != script[k].id) {
    dummy_error("client %u: pipelined answer %u is packet %u, expected %u (out of order)", c->idx,
                k, pkt->id, script[k].id);
    return false;
  }
  if (script[k].mine)
    return true;
  bool ok = true;
  switch (pkt->id) {
  case CHATW__PACKET_ID__S_PONG: {
    Chatw__SPong *m = chatw__spong__unpack(NULL, pkt->body_len, pkt->body);
    ok = m != NULL;
    chatw__spong__free_unpacked(m, NULL);
    break;
  }
  case CHATW__PACKET_ID__S_LOGIN: {
    Chatw__SLogin *m = chatw__slogin__unpack(NULL, pkt->body_len, pkt->body);
    if ((ok = m != NULL)) {
      pthread_spin_lock(&c->lock);
      c->player_id = m->player_id;
      pthread_spin_unlock(&c->lock);
    }
    chatw__slogin__free_unpacked(m, NULL);
    break;
  }
  case CHATW__PACKET_ID__S_ENTER_ROOM: {
    Chatw__SEnterRoom *m = chatw__senter_room__unpack(NULL, pkt->body_len, pkt->body);
    ok = m && bytes_eq(m->room, pipe) && m->member_count == 1 && m->n_members == 1 &&
         m->members[0]->player_id == c->player_id;
    chatw__senter_room__free_unpacked(m, NULL);
    break;
  }
  case CHATW__PACKET_ID__S_CHAT: {
    Chatw__SChat *m = chatw__schat__unpack(NULL, pkt->body_len, pkt->body);
    char text[24];
    snprintf(text, sizeof text, "pipe:%u", k - 3);
    ok = m && bytes_eq(m->room, pipe) && bytes_eq(m->text, text) && m->player_id == c->player_id;
    chatw__schat__free_unpacked(m, NULL);
    break;
  }
  case CHATW__PACKET_ID__S_LEAVE_ROOM: {
    Chatw__SLeaveRoom *m = chatw__sleave_room__unpack(NULL, pkt->body_len, pkt->body);
    ok = m && bytes_eq(m->room, pipe);
    chatw__sleave_room__free_unpacked(m, NULL);
    break;
  }
  }
  if (!ok)
    dummy_error("client %u: pipelined answer %u (packet %u) is not the expected one", c->idx, k,
                pkt->id);
  if (ok && k == SCRIPT_LEN - 2)
    atomic_fetch_add(&n_scripts, 1);
  return false;
}

void on_packet(cp_session *s, const cp_packet *pkt) {
  struct client *c = cp_session_user(s);
  if (!c)
    return;
  if (cfg.mode == MODE_PACKET_ECHO) {
    echo_bytes(c, pkt->data, pkt->size);
    return;
  }
  count_bytes(pkt->size);
  if (cfg.pipeline && c->script < SCRIPT_LEN && !pipeline_check(c, pkt))
    return;
  switch (pkt->id) {
  case CHAT__PACKET_ID__S_LOGIN: {
    Chat__SLogin *m = chat__slogin__unpack(NULL, pkt->body_len, pkt->body);
    if (!m) {
      dummy_error("client %u: S_LOGIN does not decode", c->idx);
      return;
    }
    pthread_spin_lock(&c->lock);
    c->player_id = m->player_id;
    pthread_spin_unlock(&c->lock);
    chat__slogin__free_unpacked(m, NULL);
    char room[40];
    snprintf(room, sizeof room, "room-%u", c->idx / cfg.room_size);
    Chat__CEnterRoom e = CHAT__CENTER_ROOM__INIT;
    e.room = room;
    wire_send(s, CHAT__PACKET_ID__C_ENTER_ROOM, &e.base);
    break;
  }
  case CHAT__PACKET_ID__S_ENTER_ROOM: {
    Chatw__SEnterRoom *m = chatw__senter_room__unpack(NULL, pkt->body_len, pkt->body);
    if (!m || !is_my_room(c, m->room.data, m->room.len, m->room.data)) {
      dummy_error("client %u: S_ENTER_ROOM does not decode or is not of its room", c->idx);
      chatw__senter_room__free_unpacked(m, NULL);
      return;
    }
    if (atomic_load(&c->state) == CS_CONNECTED) {
      presence_start(c, m);
      entered(c);
    } else {
      dummy_error("client %u: S_ENTER_ROOM it did not ask for", c->idx);
    }
    chatw__senter_room__free_unpacked(m, NULL);
    break;
  }
  case CHAT__PACKET_ID__S_MEMBER_JOINED: {
    struct wire_smember_joined m; /* N^2/2 of them when N players enter: no unpack each */
    bool ok = wire_decode_smember_joined(pkt->body, pkt->body_len, &m);
    if (!ok || atomic_load(&c->state) == CS_CONNECTED)
      dummy_error("client %u: S_MEMBER_JOINED %s", c->idx,
                  ok ? "before S_ENTER_ROOM" : "does not decode");
    else
      on_joined(c, &m, pkt->body);
    break;
  }
  case CHAT__PACKET_ID__S_MEMBER_LEFT: {
    struct wire_smember_left m;
    bool ok = wire_decode_smember_left(pkt->body, pkt->body_len, &m);
    if (!ok || atomic_load(&c->state) == CS_CONNECTED)
      dummy_error("client %u: S_MEMBER_LEFT %s", c->idx,
                  ok ? "before S_ENTER_ROOM" : "does not decode");
    else
      on_left(c, &m, pkt->body);
    break;
  }
  case CHAT__PACKET_ID__S_PONG: {
    Chatw__SPong *m = chatw__spong__unpack(NULL, pkt->body_len, pkt->body);
    if (!m) {
      dummy_error("client %u: S_PONG does not decode", c->idx);
      return;
    }
    uint64_t now = now_ns() / 1000;
    hist_add(&rtt, now > m->client_time_us ? now - m->client_time_us : 0);
    atomic_fetch_add_explicit(&n_pongs, 1, memory_order_relaxed);
    chatw__spong__free_unpacked(m, NULL);
    break;
  }
  case CHAT__PACKET_ID__S_CHAT: {
    struct wire_schat m; /* a hand decoder: millions a second, no unpack each */
    if (!wire_decode_schat(pkt->body, pkt->body_len, &m)) {
      dummy_error("client %u: S_CHAT does not decode", c->idx);
      return;
    }
    on_chat(c, &m, arrival_us(s, pkt), pkt->body);
    break;
  }
  case CHAT__PACKET_ID__S_ERROR: {
    Chat__SError *m = chat__serror__unpack(NULL, pkt->body_len, pkt->body);
    dummy_error("client %u: server says error %d: %s", c->idx, m ? (int)m->code : -1,
                m ? m->text : "(undecodable)");
    if (m)
      chat__serror__free_unpacked(m, NULL);
    break;
  }
  default:
    dummy_error("client %u: unexpected packet id %u", c->idx, pkt->id);
  }
}
