/*
 * chat/chain.c - a player's request chain and the session callbacks: every
 * player (players_mu), its backlog of requests, handled one at a time in
 * arrival order (a request that needs a room suspends the chain until the
 * room's job resumes it; chat.h tells why that gives protocol 2's order).
 */
#define _GNU_SOURCE
#include "chat.h"

pthread_mutex_t chat__players_mu = PTHREAD_MUTEX_INITIALIZER;
struct player *chat__players; /* every player (the cluster's drain), under players_mu */

void chat__player_free(struct player *p) {
  struct item *it = p->head;
  while (it) {
    struct item *n = it->next;
    free(it);
    it = n;
  }
  pthread_mutex_lock(&chat__players_mu);
  if (p->all_prev)
    p->all_prev->all_next = p->all_next;
  else
    chat__players = p->all_next;
  if (p->all_next)
    p->all_next->all_prev = p->all_prev;
  pthread_mutex_unlock(&chat__players_mu);
  pthread_mutex_destroy(&p->mu);
  cp_session_put(p->s);
  free(p);
}

/* Run the backlog until it is empty or a request suspends the chain. The
 * caller runs the chain (p->running). */
void chat__chain_resume(struct player *p) {
  for (;;) {
    pthread_mutex_lock(&p->mu);
    struct item *it = p->head;
    if (!it) {
      p->running = false;
      pthread_mutex_unlock(&p->mu);
      return;
    }
    p->head = it->next;
    if (!p->head)
      p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    int rc = chat__handle(p, it->id, it->body, it->len);
    free(it);
    if (rc == SUSPENDED)
      return;
  }
}

/* From the session's strand: handle the request now if the chain is idle,
 * else add it to the backlog. */
static void submit(struct player *p, uint32_t id, const uint8_t *body, size_t len) {
  pthread_mutex_lock(&p->mu);
  if (!p->running) {
    p->running = true;
    pthread_mutex_unlock(&p->mu);
    if (chat__handle(p, id, body, len) == DONE)
      chat__chain_resume(p);
    return;
  }
  struct item *it = malloc(sizeof *it + len);
  if (!it) {
    pthread_mutex_unlock(&p->mu);
    if (id != ITEM_DISCONNECT) {
      srv_log_session(p->s, p->peer, "out of memory for a request; disconnecting");
      cp_session_disconnect(p->s, false);
      return;
    }
    /* The end must not be lost: wait for the chain to go idle. */
    for (;;) {
      pthread_mutex_lock(&p->mu);
      bool idle = !p->running;
      if (idle)
        p->running = true;
      pthread_mutex_unlock(&p->mu);
      if (idle) {
        chat__handle(p, id, NULL, 0);
        return;
      }
      sched_yield();
    }
  }
  it->next = NULL;
  it->id = id;
  it->len = (uint32_t)len;
  if (len)
    memcpy(it->body, body, len);
  if (p->tail)
    p->tail->next = it;
  else
    p->head = it;
  p->tail = it;
  pthread_mutex_unlock(&p->mu);
}

/* ---- session callbacks ------------------------------------------------ */

void chat_on_connected(cp_session *s) {
  struct player *p = calloc(1, sizeof *p);
  if (!p) {
    cp_session_disconnect(s, false);
    return;
  }
  pthread_mutex_init(&p->mu, NULL);
  p->s = cp_session_get(s);
  pthread_mutex_lock(&chat__players_mu);
  p->all_next = chat__players;
  if (chat__players)
    chat__players->all_prev = p;
  chat__players = p;
  pthread_mutex_unlock(&chat__players_mu);
  cp_session_peer(s, p->peer, sizeof p->peer);
  cp_session_set_user(s, p);
}

void chat_on_packet(cp_session *s, const cp_packet *pkt) {
  struct player *p = cp_session_user(s);
  if (p)
    submit(p, pkt->id, pkt->body, pkt->body_len);
}

bool chat_on_bad_packet(cp_session *s) {
  struct player *p = cp_session_user(s);
  if (!p)
    return false;                      /* out of memory at connect: nothing to finish */
  submit(p, ITEM_BAD_HEADER, NULL, 0); /* out of memory: it disconnects at once */
  return true;
}

void chat_on_disconnected(cp_session *s, cp_reason why) {
  struct player *p = cp_session_user(s);
  srv_log_disconnect(s, p ? p->peer : NULL, why);
  if (!p)
    return;
  cp_session_set_user(s, NULL);
  submit(p, ITEM_DISCONNECT, NULL, 0);
}
