/* Several sends in flight on one stream socket, started by several threads
 * at once while other threads take the completions (port.h: "the bytes of
 * each reach the wire whole and in the order the sends were started").
 * Each send is a message: a header (thread, sequence number, length) and a
 * payload derived from them, up to 128 KiB, so most go out in many pieces.
 * Phase 1: starts are serialised by a lock that also records the start
 * order; the receiver checks that the messages arrive exactly in that order,
 * each whole and intact. Phase 2: no lock, starters race; the receiver
 * checks each message is whole and intact and each thread's messages arrive
 * in its own order. Every send completes once with its full length. */
#include "common/test.h"

#define THREADS 4
#define WORKERS 2
#define PER_THREAD (TEST_SANITIZED ? 40 : 150)
#define MAX_PAYLOAD (128 * 1024)

struct msg {
  cp_op op;
  cp_buf buf;
  unsigned char *data;
  size_t len;
};

static cp_port *port;
static int srv, cli;
static struct msg msgs[THREADS][PER_THREAD];
static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static bool serialised;
static uint32_t start_log[THREADS * PER_THREAD]; /* tid << 16 | seq */
static atomic_uint start_len;
static atomic_uint completed;
static pthread_barrier_t go;

static size_t payload_len(unsigned tid, unsigned seq) {
  return 1 + ((size_t)(tid * 7919u + seq * 104729u) % MAX_PAYLOAD);
}

static unsigned char pattern(unsigned tid, unsigned seq, size_t i) {
  return (unsigned char)(tid * 31 + seq * 7 + i * 13 + (i >> 9));
}

static void build(unsigned tid, unsigned seq) {
  struct msg *m = &msgs[tid][seq];
  size_t n = payload_len(tid, seq);
  m->len = 9 + n;
  m->data = malloc(m->len);
  m->data[0] = (unsigned char)tid;
  uint32_t s = seq, l = (uint32_t)n;
  memcpy(m->data + 1, &s, 4);
  memcpy(m->data + 5, &l, 4);
  for (size_t i = 0; i < n; i++)
    m->data[9 + i] = pattern(tid, seq, i);
  m->buf = cp_buf_init(m->data, m->len);
}

static void *starter(void *arg) {
  unsigned tid = (unsigned)(uintptr_t)arg;
  pthread_barrier_wait(&go);
  for (unsigned seq = 0; seq < PER_THREAD; seq++) {
    struct msg *m = &msgs[tid][seq];
    if (serialised)
      pthread_mutex_lock(&start_mu);
    unsigned at = atomic_fetch_add(&start_len, 1);
    start_log[at] = tid << 16 | seq; /* phase 1 only reads it */
    CHECK_EQ(cp_port_send(port, srv, &m->op, &m->buf, 1), 0);
    if (serialised)
      pthread_mutex_unlock(&start_mu);
  }
  return NULL;
}

static void *worker(void *arg) {
  (void)arg;
  cp_completion ev[16];
  for (;;) {
    int n = cp_port_wait(port, ev, 16, -1);
    if (n == CP_PORT_CLOSED)
      return NULL;
    CHECK(n > 0);
    for (int i = 0; i < n; i++) {
      struct msg *m = (struct msg *)(void *)ev[i].op;
      CHECK_EQ(ev[i].kind, CP_OP_SEND);
      CHECK_EQ(ev[i].result, m->len);
      atomic_fetch_add(&completed, 1);
    }
  }
}

static void *receiver(void *arg) {
  (void)arg;
  unsigned next_seq[THREADS] = {0};
  unsigned char *payload = malloc(MAX_PAYLOAD);
  for (unsigned k = 0; k < THREADS * PER_THREAD; k++) {
    unsigned char h[9];
    test_recv_all(cli, h, sizeof h);
    uint32_t seq, len;
    memcpy(&seq, h + 1, 4);
    memcpy(&len, h + 5, 4);
    unsigned tid = h[0];
    CHECK(tid < THREADS);
    CHECK(seq < PER_THREAD);
    CHECK_EQ(len, payload_len(tid, seq)); /* a header where one belongs: nothing interleaved */
    CHECK_EQ(seq, next_seq[tid]);         /* each thread's sends in its order */
    next_seq[tid]++;
    if (serialised) {
      while (atomic_load(&start_len) <= k)
        ;                                      /* its start is logged before it is started */
      CHECK_EQ(start_log[k], tid << 16 | seq); /* exactly the start order */
    }
    test_recv_all(cli, payload, len);
    for (size_t i = 0; i < len; i++)
      if (payload[i] != pattern(tid, seq, i)) {
        fprintf(stderr, "message %u/%u: byte %zu differs\n", tid, seq, i);
        exit(1);
      }
  }
  free(payload);
  return NULL;
}

static void phase(bool serial) {
  serialised = serial;
  atomic_store(&start_len, 0);
  atomic_store(&completed, 0);
  for (unsigned t = 0; t < THREADS; t++)
    for (unsigned s = 0; s < PER_THREAD; s++)
      build(t, s);
  pthread_barrier_init(&go, NULL, THREADS);
  pthread_t w[WORKERS], st[THREADS], rx;
  for (int i = 0; i < WORKERS; i++)
    pthread_create(&w[i], NULL, worker, NULL);
  pthread_create(&rx, NULL, receiver, NULL);
  for (unsigned t = 0; t < THREADS; t++)
    pthread_create(&st[t], NULL, starter, (void *)(uintptr_t)t);
  for (unsigned t = 0; t < THREADS; t++)
    pthread_join(st[t], NULL);
  pthread_join(rx, NULL);
  while (atomic_load(&completed) < THREADS * PER_THREAD)
    test_sleep_ms(1);
  cp_port_close(port);
  for (int i = 0; i < WORKERS; i++)
    pthread_join(w[i], NULL);
  CHECK_EQ(atomic_load(&completed), THREADS * PER_THREAD);
  pthread_barrier_destroy(&go);
  for (unsigned t = 0; t < THREADS; t++)
    for (unsigned s = 0; s < PER_THREAD; s++)
      free(msgs[t][s].data);
}

int main(void) {
  test_begin("test_send_concurrent", 240);
  for (int round = 0; round < 2; round++) {
    port = test_port(NULL);
    struct sockaddr_in addr;
    int lfd = test_listener(&addr);
    test_pair(lfd, &addr, &cli, &srv);
    /* the default buffers: a 128 KiB message goes out in pieces (a smaller
     * SO_SNDBUF makes loopback TCP wait for delayed window updates) */
    CHECK_EQ(cp_socket_nodelay(srv, 1), 0); /* no Nagle wait on each tail */
    CHECK_EQ(cp_port_associate(port, srv, NULL), 0);
    phase(round == 0);
    cp_port_destroy(port);
    close(cli);
    close(srv);
    close(lfd);
  }
  return 0;
}
