/*
 * test_net_strand_refs - one strand run handles many send completions, and
 * the session's references stay exact (issue 13 item 2, "one reference per
 * completion": the cut a fuzz_chat input broke, reverted, then mended).
 *
 * A completion's op reference goes to the run that handles it: the run's
 * bank (SF_BANK, session.c), which hands it to the next op the run starts or
 * puts it when the run lets go. A send started outside the strand (here the
 * application's cp_session_send_copy; in cport-server a room's flush job or
 * another session's broadcast) cannot reach the bank and takes a reference
 * of its own. If it completes while the run that handled the send before it
 * is still going - the send side idle again, the receive already in flight,
 * nothing to start - that run handles it too and banks one more. The bank
 * has room for two (a receive's and a send's), so a third must be put at
 * once. The code that broke banked it: an assert in debug builds, and in
 * release builds the 2-bit bank wrapped at the fourth and lost references,
 * so the session was never freed.
 *
 * The test makes one run handle SENDS send completions, in order, with no
 * race left to chance. Each send is one large buffer (its own allocation;
 * the queue holds its only reference), and this program's allocator
 * (cp_replace_allocator) holds the run inside the free of that buffer - in
 * release_sent, after the send side went idle, before the run lets the
 * strand go. While it is held, the test starts the next send and waits until
 * that send's completion is left in the strand word (ST_SEND) for the held
 * run; then it lets the run go on, and the run handles it.
 *
 * Checked: inside each hold (on the strand's thread, so the strand-only bank
 * may be read) the bank holds min(k, 2) references after the k-th completion
 * and the session exactly 3 more (the registry's, the test's, the receive in
 * flight); the client gets every byte; after the client closes, the session
 * ends once (peer_closed) and is freed (every reference put), every send
 * buffer is freed, and every op the port started completed.
 */
#include "common/nettest.h"

#include "net/net_internal.h" /* ST_SEND, SF_BANK, refs: the strand's state */

#define SENDS 6     /* one run handles them all: past the 2-bit bank's wrap at 4 */
#define BIG 33333   /* above the send buffers' large threshold: a malloc each */
#define SLACK 64    /* the buffer's header and rounding */
#define BASE_REFS 3 /* during a hold: the registry's, the test's, the receive's */

static cp_session *_Atomic sess;
static atomic_int disconnected, reason;

/* The allocator: the big send buffers are marked as they are allocated, and
 * the free of each holds its thread until the test lets it go on. */
static void *_Atomic marked[SENDS];
static atomic_int holds;                                  /* holds begun */
static atomic_int go;                                     /* holds the test let go */
static atomic_int bank_at[SENDS + 1], refs_at[SENDS + 1]; /* seen in hold k */

static void *t_malloc(size_t n) {
  void *p = malloc(n);
  if (p && n >= BIG && n < BIG + SLACK) {
    for (int i = 0; i < SENDS; i++) {
      void *none = NULL;
      if (atomic_compare_exchange_strong(&marked[i], &none, p))
        break;
    }
  }
  return p;
}

static void *t_realloc(void *p, size_t n) {
  return realloc(p, n);
}

static void *t_calloc(size_t k, size_t n) {
  return calloc(k, n);
}

static void t_free(void *p) {
  bool hold = false;
  for (int i = 0; p && i < SENDS && !hold; i++) {
    void *want = p;
    hold = atomic_compare_exchange_strong(&marked[i], &want, NULL);
  }
  if (hold) {
    /* release_sent, on the thread that runs the session's strand: the
     * strand-only flags may be read here */
    cp_session *s = atomic_load(&sess);
    int k = atomic_fetch_add(&holds, 1) + 1;
    atomic_store(&bank_at[k], (s->flags & SF_BANK) / SF_BANK_ONE);
    atomic_store(&refs_at[k], (int)atomic_load(&s->refs));
    while (atomic_load(&go) < k)
      test_nap();
  }
  free(p);
}

static void on_connected(cp_session *s) {
  atomic_store(&sess, cp_session_get(s)); /* the test's reference */
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  (void)s;
  (void)pkt;
  CHECK(0); /* the client sends nothing */
}

static void on_disconnected(cp_session *s, cp_reason why) {
  (void)s;
  atomic_store(&reason, (int)why);
  atomic_fetch_add(&disconnected, 1);
}

int main(void) {
  /* before any other cport call */
  CHECK_EQ(cp_replace_allocator(t_malloc, t_realloc, t_calloc, t_free), 0);
  test_begin("test_net_strand_refs", 240);
  struct sockaddr_in addr;
  /* two workers: one held in the run, the other takes the completions */
  cp_service *svc =
      nt_server((cp_service_options){.threads = 2,
                                     .callbacks = {.on_connected = on_connected,
                                                   .on_packet = on_packet,
                                                   .on_disconnected = on_disconnected}},
                &addr);
  int c = test_connect(&addr);
  WAIT_UNTIL(atomic_load(&sess) != NULL);
  cp_session *s = atomic_load(&sess);
  /* sess is set inside on_connected, while the accept's run still holds the
   * strand and references of its own: a send made now could complete into that
   * run (two references more at the first hold, seen once under ASan in a
   * loaded make test). Start from a quiet session. */
  WAIT_UNTIL(atomic_load(&s->strand) == 0 && atomic_load(&s->refs) == BASE_REFS);

  static uint8_t out[BIG], in[BIG];
  for (int i = 0; i < SENDS; i++) {
    memset(out, 'a' + i, sizeof out);
    CHECK_EQ(cp_session_send_copy(s, out, sizeof out),
             0); /* started here: a reference of its own */
    if (i > 0) {
      /* the run holding the strand (held in the free of send i - 1's
       * buffer) has send i's completion waiting for it */
      WAIT_UNTIL(atomic_load(&s->strand) & ST_SEND);
      atomic_fetch_add(&go, 1);
    }
    /* the run handled send i and is held in the free of its buffer */
    WAIT_UNTIL(atomic_load(&holds) == i + 1);
    test_recv_all(c, in, sizeof in);
    CHECK(memcmp(in, out, sizeof in) == 0);
  }
  atomic_fetch_add(&go, 1);                 /* the last hold: the run ends */
  WAIT_UNTIL(atomic_load(&s->strand) == 0); /* it let go (nothing else is pending) */

  for (int k = 1; k <= SENDS; k++)
    fprintf(stderr, "  hold %d: bank %d, refs %d\n", k, atomic_load(&bank_at[k]),
            atomic_load(&refs_at[k]));
  for (int k = 1; k <= SENDS; k++) {
    int bank = k < 2 ? k : 2;
    CHECK_EQ(atomic_load(&bank_at[k]), bank);
    CHECK_EQ(atomic_load(&refs_at[k]), BASE_REFS + bank);
  }

  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.sends, SENDS);
  CHECK_EQ(st.bytes_out, (uint64_t)SENDS * BIG);

  /* the end: every reference put, so the session is freed */
  close(c);
  WAIT_UNTIL(atomic_load(&disconnected) == 1);
  CHECK_EQ(atomic_load(&reason), CP_REASON_PEER_CLOSED);
  cp_session_put(s);
  WAIT_UNTIL(atomic_load(&svc->sessions_alive) == 0);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  cp_service_destroy(svc);
  CHECK_EQ(atomic_load(&disconnected), 1);
  fprintf(stderr, "test_net_strand_refs: ok\n");
  return 0;
}
