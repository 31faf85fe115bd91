/* chat_relay - rooms on job queues: the shared-state pattern of cport (see
 * README, "Shared state").
 *
 * Protocol (framed packets, cport's header {uint16 size; uint16 id}):
 *   client -> server  JOIN  (id 1) body: one byte, the room (0..ROOMS-1)
 *                     CHAT  (id 2) body: the text (bytes)
 *   server -> client  MSG   (id 3) body: uint64 LE sender id, then the text -
 *                                  to everyone in the sender's room but the sender
 *                     COUNT (id 4) body: uint32 LE members - every announce_ms, to
 *                                  everyone in the room
 *
 * The pattern:
 *  - A room's member list is touched only by jobs of the room's own job queue,
 *    so it needs no lock: join, leave, relay and the announcement are jobs.
 *  - A member holds a reference to its session, taken in on_connected and
 *    put by the leave job, on the room's queue, after the member is unlinked:
 *    the room never holds a pointer to a freed session.
 *  - The leave job is a cp_job inside the member (posting it allocates
 *    nothing, so it cannot fail in on_disconnected), and so is the join job;
 *    the list is intrusive (joining allocates nothing either).
 *  - Out of memory: a member that cannot be set up is disconnected at once; a
 *    chat that cannot be copied disconnects its sender (it must not vanish
 *    silently); a member a relay cannot be queued to is disconnected
 *    (cp_session_send's -ENOMEM); an announcement that cannot be made is
 *    skipped, the next one comes anyway.
 *  - The announcement is a repeating cp_timer per room, on the room's queue.
 *
 * Build it as a library (CHAT_RELAY_LIB) to drive it from a test
 * (tests/net/test_net_chat_relay.c).
 */
#define _GNU_SOURCE
#include "example_args.h"

#include <stdlib.h>
#include <string.h>

/* The example's own allocations; a test makes them fail. */
#ifndef RELAY_MALLOC
#define RELAY_MALLOC malloc
#define RELAY_CALLOC calloc
#endif

#define ROOMS 8
#define ID_JOIN 1
#define ID_CHAT 2
#define ID_MSG 3
#define ID_COUNT 4

struct member;

struct room {
  cp_jobq *q;
  cp_timer announce;
  struct member *head; /* the members: touched only by jobs of q */
  uint32_t count;
};

struct member {
  cp_session *s; /* referenced until the leave job */
  struct room *room;
  struct member *prev, *next;
  bool joined; /* in room's list (jobs of room->q only) */
  cp_job join, leave;
};

/* A chat on its way to the room. */
struct relay {
  cp_job job;
  struct member *from; /* alive: its leave job runs after this one (same queue) */
  cp_sendbuf *msg;
};

struct chat_relay {
  cp_service *svc;
  struct room rooms[ROOMS];
};

/* ---- jobs of a room's queue ------------------------------------------- */

static void send_or_drop(struct member *m, cp_sendbuf *b) {
  if (cp_session_send(m->s, b) == -ENOMEM)
    cp_session_disconnect(m->s, false); /* it must not miss a packet and stay */
}

static void do_join(void *arg) {
  struct member *m = arg;
  struct room *r = m->room;
  m->next = r->head;
  if (r->head)
    r->head->prev = m;
  r->head = m;
  r->count++;
  m->joined = true;
}

static void do_leave(void *arg) {
  struct member *m = arg;
  if (m->joined) {
    struct room *r = m->room;
    if (m->prev)
      m->prev->next = m->next;
    else
      r->head = m->next;
    if (m->next)
      m->next->prev = m->prev;
    r->count--;
  }
  cp_session_put(m->s); /* the member's reference: the last one, perhaps */
  free(m);              /* the job lives in m: the engine does not touch it after this */
}

static void do_relay(void *arg) {
  struct relay *rl = arg;
  for (struct member *m = rl->from->room->head; m; m = m->next)
    if (m != rl->from) /* the sender is excluded */
      send_or_drop(m, rl->msg);
  cp_sendbuf_unref(rl->msg);
  free(rl);
}

static void do_announce(void *arg) {
  struct room *r = arg;
  if (!r->head)
    return;
  cp_sendbuf *b = cp_packet_alloc(ID_COUNT, 4);
  if (!b)
    return; /* out of memory: skip this one */
  uint8_t *p = cp_sendbuf_data(b) + CP_PACKET_HEADER;
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(r->count >> (8 * i));
  for (struct member *m = r->head; m; m = m->next)
    send_or_drop(m, b);
  cp_sendbuf_unref(b);
}

/* ---- session callbacks (the session's strand) ------------------------- */

static void on_connected(cp_session *s) {
  struct member *m = RELAY_CALLOC(1, sizeof *m); /* zeroed: its cp_jobs are ready */
  if (!m) {
    cp_session_disconnect(s, false); /* out of memory: no member, no room */
    return;
  }
  m->s = cp_session_get(s);
  cp_session_set_user(s, m);
}

static void on_join(cp_session *s, struct member *m, const cp_packet *pkt) {
  struct chat_relay *cr = cp_service_user(cp_session_service(s));
  if (m->room || pkt->body_len != 1 || pkt->body[0] >= ROOMS) {
    cp_session_disconnect(s, false); /* one room per session, and a valid one */
    return;
  }
  m->room = &cr->rooms[pkt->body[0]];
  /* Its own job: no memory needed, so nothing to fail but a stopped service. */
  if (cp_jobq_post_job(m->room->q, &m->join, do_join, m) != 0)
    m->room = NULL;
}

static void on_chat(cp_session *s, struct member *m, const cp_packet *pkt) {
  if (!m->room)
    return; /* not in a room yet */
  struct relay *rl = RELAY_MALLOC(sizeof *rl);
  cp_sendbuf *b = rl ? cp_packet_alloc(ID_MSG, 8 + pkt->body_len) : NULL;
  if (!b) {
    free(rl);
    cp_session_disconnect(s, false); /* out of memory: its chat must not vanish */
    return;
  }
  uint8_t *p = cp_sendbuf_data(b) + CP_PACKET_HEADER;
  uint64_t id = cp_session_id(s);
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(id >> (8 * i));
  memcpy(p + 8, pkt->body, pkt->body_len);
  *rl = (struct relay){.from = m, .msg = b};
  if (cp_jobq_post_job(m->room->q, &rl->job, do_relay, rl) != 0) {
    cp_sendbuf_unref(b);
    free(rl);
  }
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  struct member *m = cp_session_user(s);
  if (!m)
    return;
  if (pkt->id == ID_JOIN)
    on_join(s, m, pkt);
  else if (pkt->id == ID_CHAT)
    on_chat(s, m, pkt);
  else
    cp_session_disconnect(s, false);
}

static void on_disconnected(cp_session *s, cp_reason why) {
  (void)why;
  struct member *m = cp_session_user(s);
  if (!m)
    return; /* it never got a member */
  if (m->room) {
    /* The release goes through the room's queue, after every job this
     * session posted there. It cannot fail: the member owns the job, and a
     * service runs jobs posted from on_disconnected even while it stops. */
    int rc = cp_jobq_post_job(m->room->q, &m->leave, do_leave, m);
    (void)rc;
    return;
  }
  cp_session_put(m->s); /* no room: nothing shares it */
  free(m);
}

/* ---- start and stop ---------------------------------------------------- */

/* Create and start the relay: 0, or an error with nothing left. */
static int chat_relay_start(struct chat_relay *cr, const struct example_args *a,
                            unsigned announce_ms) {
  *cr = (struct chat_relay){0};
  cp_service_options o = {.kind = CP_SERVICE_SERVER,
                          .host = a->host,
                          .port = a->port,
                          .threads = a->threads,
                          .port_opts = {.backend = a->backend},
                          .user = cr,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_disconnected = on_disconnected}};
  int rc = cp_service_create(&cr->svc, &o);
  for (int i = 0; i < ROOMS && !rc; i++) {
    struct room *r = &cr->rooms[i];
    if (!(r->q = cp_jobq_create(cr->svc)))
      rc = -ENOMEM;
    else
      rc = cp_timer_start(&r->announce, r->q, announce_ms, announce_ms, do_announce, r);
  }
  if (!rc)
    rc = cp_service_start(cr->svc);
  if (rc && cr->svc) {
    for (int i = 0; i < ROOMS; i++)
      cp_jobq_destroy(cr->rooms[i].q); /* its timer goes with it */
    cp_service_destroy(cr->svc);
    cr->svc = NULL;
  }
  return rc;
}

static void chat_relay_stop(struct chat_relay *cr) {
  cp_service_stop(cr->svc, 1000); /* every member's leave job has run by now */
  for (int i = 0; i < ROOMS; i++)
    cp_jobq_destroy(cr->rooms[i].q);
  cp_service_destroy(cr->svc);
}

#ifndef CHAT_RELAY_LIB
int main(int argc, char **argv) {
  struct example_args a;
  example_parse(argc, argv, &a);
  example_catch_stop();
  struct chat_relay cr;
  int rc = chat_relay_start(&cr, &a, 1000);
  if (rc) {
    fprintf(stderr, "chat_relay: %s\n", cp_strerror(rc));
    return 1;
  }
  fprintf(stderr, "chat_relay: %s:%u, %d rooms, backend %s\n", a.host,
          cp_service_listen_port(cr.svc), ROOMS,
          cp_backend_name(cp_port_backend(cp_service_port(cr.svc))));
  example_wait_stop();
  chat_relay_stop(&cr);
  return 0;
}
#endif
