/*
 * chat/chats.c - a room's chats: S_CHAT packets batched into buffers sent to
 * the room's members at once, open (a chat job waiting in the room's queue)
 * or held (--room-flush-ms, the room's flush timer), and the flush that
 * sends the held ones before anything else the room does.
 */
#define _GNU_SOURCE
#include "chat.h"

/* Chats are batched: a room's S_CHAT packets go out in buffers (sized to
 * the room, below), each sent to the room's members at once. A member then
 * takes one buffer (one send-queue entry, one lock of its send queue, one
 * segment on the wire) for every chat in it instead of one per chat: under
 * load that is most of the server's cost per delivery (docs/performance.md).
 *
 * A buffer goes out in one of two ways:
 * - open: a chat that finds no buffer starts one and posts a job (job_chat)
 *   at once; later chats are appended to it while that job waits in the
 *   queue. Nothing waits to fill it: the job sends what it holds when its
 *   turn comes.
 * - held (--room-flush-ms W > 0): a chat that comes within W ms of the
 *   room's last send, with no job of it waiting, starts a held buffer and
 *   starts the room's flush timer instead; chats until it fires are appended,
 *   and job_flush sends them W ms after the first. So a busy room sends at
 *   most about 1000/W buffers a second to each member, however many chats it
 *   gets, and a chat waits at most W ms more; a quiet room's chat goes out
 *   at once.
 *
 * Order is kept: a room's jobs run in post order, a buffer's packets are in
 * the order the chats were handled, and a chat only joins a buffer that goes
 * out before any buffer or membership change handled after it. For the open
 * buffer: its job was posted before the chat and has not run, so it runs
 * before any job posted after the chat (an enter or leave of another player
 * included), which is as if the chat had arrived before those: chats of
 * different players have no order between them, and a player's own enter and
 * leave suspend its chain, so its chat is never handled before the job of its
 * own enter or after the job of its own leave. For the held buffer: it only
 * starts while no chat job waits (no open buffer), no chat job is posted while
 * it exists (a chat that does not fit posts the held buffer first), and every
 * other job of the room (an entry, a leave, a close after a bad header) sends
 * it first (room_flush_held), so its chats reach exactly the members they
 * would have reached had they gone at once, and before anything that job
 * sends (S_MEMBER_JOINED, S_LEAVE_ROOM) or the end of a member's session.
 *
 * Sized to the room: a room's buffers start at CHAT_BATCH bytes. One that
 * fills before it goes out makes the next ones twice as large, up to
 * CHAT_BATCH_MAX. They halve again, down to CHAT_BATCH, for each buffer
 * that goes out at most a quarter full when the flush timer it started
 * fires (without --room-flush-ms: when its job runs). (Buffers that went out
 * early - full, or sent first by an entry or a leave - say nothing about the
 * room's rate.) Only held buffers (and, without --room-flush-ms, open ones)
 * take that size: a chat after W ms without a send goes at once in one of
 * CHAT_BATCH, so sparse chats cannot each pin the largest. A full buffer
 * goes out at once, so without this a room whose chats fill a buffer within
 * W ms would be paced by the buffer's size, not by W: at 2,500 players a
 * 4 KiB buffer filled in about 18 ms, and the server spent twice the CPU
 * per delivery (docs/performance.md). A quiet room keeps CHAT_BATCH; a busy
 * one holds at most CHAT_BATCH_MAX. */
struct chat_job {
  struct room *r;
  cp_sendbuf *b; /* a reference, dropped by the job */
};

uint64_t chat__now_ms(void) {
  return chat__now_us(CLOCK_MONOTONIC) / 1000u;
}

/* /metrics: chat buffers sent to rooms, of those the held ones, and the
 * buffers that filled before going out */
static _Atomic uint64_t chat_buffers, chat_held, chat_full;

void chat_buffer_stats(uint64_t *buffers, uint64_t *held, uint64_t *full) {
  *buffers = atomic_load_explicit(&chat_buffers, memory_order_relaxed);
  *held = atomic_load_explicit(&chat_held, memory_order_relaxed);
  *full = atomic_load_explicit(&chat_full, memory_order_relaxed);
}

/* Room job: the chat buffer b (a reference, put) to the n sessions to. */
void chat__room_send_chats(cp_session **to, size_t n, cp_sendbuf *b, bool held) {
  atomic_fetch_add_explicit(&chat_buffers, 1, memory_order_relaxed);
  if (held)
    atomic_fetch_add_explicit(&chat_held, 1, memory_order_relaxed);
  cp_session_send_many(to, n, b);
  cp_sendbuf_unref(b);
}

void chat__batch_filled(struct room *r) {
  atomic_fetch_add_explicit(&chat_full, 1, memory_order_relaxed);
  if (r->batch < CHAT_BATCH_MAX)
    r->batch *= 2;
}

/* b, a chat buffer of r, goes out in its usual way (see the top): at most a
 * quarter full, the next ones are half as large (as r->held). */
static void batch_sent(struct room *r, const cp_sendbuf *b) {
  if (r->batch > CHAT_BATCH && cp_sendbuf_len(b) <= r->batch / 4)
    r->batch /= 2;
  assert(r->batch >= CHAT_BATCH && r->batch <= CHAT_BATCH_MAX);
}

static void job_chat(void *arg) {
  struct chat_job *j = arg;
  struct room *r = j->r;
  pthread_mutex_lock(&r->chat_mu);
  if (r->open == j->b) {
    r->open = NULL; /* closed: its length is final from here on */
    if (!chat__limits.flush_ms)
      batch_sent(r, j->b); /* (else the flush timer's buffers say how busy the room is) */
  }
  r->last_flush_ms = chat__now_ms();
  pthread_mutex_unlock(&r->chat_mu);
  chat__room_send_chats(r->sessions, r->n, j->b, false);
  free(j);
}

/* Room job, before anything else the room does (see above; with --cluster,
 * cluster_delivery.c): send the held chats to the members they were held
 * for - r->held_to if it names them (cluster), else the members. With empty
 * (the room has no members left), the flush timer is cancelled too, so that
 * nothing of the room is pending when it goes: from the room's own queue,
 * that also means job_flush is not running. */
static void flush_held(struct room *r, bool empty, bool by_timer) {
  pthread_mutex_lock(&r->chat_mu);
  cp_sendbuf *b = r->held;
  r->held = NULL;
  if (b) {
    r->last_flush_ms = chat__now_ms();
    if (by_timer && r->held_timed)
      batch_sent(r, b); /* held for all of W ms: it tells the room's rate */
  }
  pthread_mutex_unlock(&r->chat_mu);
  if (b && r->held_n) {
    /* its recipients are members still: none goes before this (leave_complete) */
    assert(r->held_n <= r->n);
    chat__room_send_chats(r->held_to, r->held_n, b, true);
    r->held_n = 0;
  } else if (b) {
    assert(!chat__clustered); /* a cluster room's held buffer always has its recipients */
    chat__room_send_chats(r->sessions, r->n, b, true);
  }
  if (empty)
    (void)cp_timer_cancel(&r->flush); /* -ENOENT: it was not pending */
}

void chat__room_flush_held(struct room *r, bool empty) {
  flush_held(r, empty, false);
}

/* Room job (the flush timer's): send the held chats. */
void chat__job_flush(void *arg) {
  flush_held(arg, false, true);
}

/* chat_mu held: post a job that sends b (a reference, the job's) to room r
 * and make b the open buffer; false (b unreferenced) if that failed. */
static bool chat_post(struct room *r, cp_sendbuf *b) {
  struct chat_job *j = malloc(sizeof *j);
  if (j) {
    j->r = r;
    j->b = b;
    /* posted under chat_mu: buffers are posted in the order they are opened */
    if (cp_jobq_post(r->q, job_chat, j) == 0) {
      r->open = b;
      return true;
    }
    free(j);
  }
  cp_sendbuf_unref(b);
  return false;
}

/* chat_mu held: append the packet m (n bytes) to b if it fits. */
bool chat__chat_append(cp_sendbuf *b, const ProtobufCMessage *m, size_t n) {
  size_t len = cp_sendbuf_len(b);
  if (len + n > cp_sendbuf_cap(b))
    return false;
  wire_put_packet(cp_sendbuf_data(b) + len, CHATW__PACKET_ID__S_CHAT, m);
  cp_sendbuf_set_len(b, len + n);
  return true;
}

/* Chain: send the S_CHAT m to room r (see above). false: out of memory. */
bool chat__room_chat(struct room *r, const ProtobufCMessage *m) {
  size_t n = CP_PACKET_HEADER + protobuf_c_message_get_packed_size(m);
  bool ok = true;
  pthread_mutex_lock(&r->chat_mu);
  assert(!(r->open && r->held)); /* see above: never both */
  if (r->open || r->held) {
    if (chat__chat_append(r->open ? r->open : r->held, m, n))
      goto out;
    chat__batch_filled(r);
  }
  if (r->held) { /* full: it goes first, at once (no chat job while one is held) */
    cp_sendbuf *h = r->held;
    r->held = NULL;
    if (!chat_post(r, h)) {
      ok = false;
      goto out;
    }
  }
  unsigned w = chat__limits.flush_ms;
  /* W ms without a send: it goes at once, in a buffer of the smallest size
   * (only held ones take the room's: a client's sparse chats must not each
   * pin the largest) */
  bool quiet = w && !r->open && chat__now_ms() - r->last_flush_ms >= w;
  size_t cap = quiet ? CHAT_BATCH : r->batch;
  cp_sendbuf *b = cp_sendbuf_alloc(n > cap ? n : cap);
  if (!b) {
    ok = false;
    goto out;
  }
  cp_sendbuf_set_len(b, wire_put_packet(cp_sendbuf_data(b), CHATW__PACKET_ID__S_CHAT, m));
  int rc;
  if (w && !r->open && !quiet &&
      ((rc = cp_timer_start(&r->flush, r->q, w, 0, chat__job_flush, r)) == 0 || rc == CP_EBUSY)) {
    r->held = b; /* CP_EBUSY: still pending from a held buffer that filled up */
    r->held_timed = rc == 0;
    goto out;
  }
  ok = chat_post(r, b);
out:
  pthread_mutex_unlock(&r->chat_mu);
  return ok;
}
