/* An application with names of its own that cport once used inside: the
 * engine's internals before they took the reserved prefix cp__ (session_close,
 * registry_add, frame_feed, mem_fns, ...), here with other signatures and
 * other behaviour. Built twice, against libcport.a and against libcport.so:
 * it must link both ways (no duplicate definition), and the engine must keep
 * calling its own functions, never these (an interposed session_close once
 * kept sessions from ending, so that stop hung).
 *
 * It runs a real packet echo over loopback, on the backend CPORT_BACKEND
 * names: clients that each send packets, compare every echoed byte and close;
 * then one client left connected while the service stops. Every session must
 * end exactly once and stop must return. Each function of the application's
 * is called by the application itself, twice; the counts at the end say that
 * nobody else called them. */
#include "common/nettest.h"

/* ---- the application's own functions, with the engine's old names --------------------------- */

enum {
  OWN_BUFPOOL_FREE,
  OWN_BUFPOOL_INDEX,
  OWN_BUFPOOL_INIT,
  OWN_FDTABLE_FREE,
  OWN_FDTABLE_GET,
  OWN_FDTABLE_INIT,
  OWN_FDTABLE_MAKE,
  OWN_FRAME_FEED,
  OWN_FRAME_RESET,
  OWN_JOB_FREE_KEPT,
  OWN_JOBQ_EVERY,
  OWN_JOBQ_ON_RUN,
  OWN_JOBQ_POST_AFTER_OWNED,
  OWN_LISTENER_ON_ACCEPT,
  OWN_LISTENER_START,
  OWN_LISTENER_STOP,
  OWN_MEM_ALLOC,
  OWN_MEM_CALLOC,
  OWN_MEM_FREE,
  OWN_MEM_REALLOC,
  OWN_NET_NOW_MS,
  OWN_NET_WORKER_OF,
  OWN_OP_ADVANCE_SEND,
  OWN_OP_FREE_REST,
  OWN_PORT_EMIT,
  OWN_PORT_EMIT_MANY,
  OWN_PORT_NOW_NS,
  OWN_PORT_QUEUE,
  OWN_REGISTRY_ADD,
  OWN_REGISTRY_FIND,
  OWN_REGISTRY_RELEASE,
  OWN_REGISTRY_REMOVE,
  OWN_REGISTRY_SNAPSHOT,
  OWN_SENDBUF_TRIM,
  OWN_SESSION_CHECK_IDLE,
  OWN_SESSION_CLOSE,
  OWN_SESSION_CONNECT,
  OWN_SESSION_NEW,
  OWN_SESSION_ON_COMPLETION,
  OWN_SESSION_ON_STRAND_POST,
  OWN_SESSION_START,
  OWN_TIMER_ON_FIRE,
  OWN_TIMERS_CLEAR,
  OWN_COUNT
};

static atomic_int own_calls[OWN_COUNT];

/* Each returns a value the caller checks: the application's behaviour, not the engine's. */
#define OWN_FN(name, idx)                                                                          \
  long name(const char *tag, long x);                                                              \
  long name(const char *tag, long x) {                                                             \
    CHECK(tag != NULL && !strcmp(tag, "app"));                                                     \
    atomic_fetch_add(&own_calls[idx], 1);                                                          \
    return x * 3 + idx;                                                                            \
  }

OWN_FN(bufpool_free, OWN_BUFPOOL_FREE)
OWN_FN(bufpool_index, OWN_BUFPOOL_INDEX)
OWN_FN(bufpool_init, OWN_BUFPOOL_INIT)
OWN_FN(fdtable_free, OWN_FDTABLE_FREE)
OWN_FN(fdtable_get, OWN_FDTABLE_GET)
OWN_FN(fdtable_init, OWN_FDTABLE_INIT)
OWN_FN(fdtable_make, OWN_FDTABLE_MAKE)
OWN_FN(frame_feed, OWN_FRAME_FEED)
OWN_FN(frame_reset, OWN_FRAME_RESET)
OWN_FN(job_free_kept, OWN_JOB_FREE_KEPT)
OWN_FN(jobq_every, OWN_JOBQ_EVERY)
OWN_FN(jobq_on_run, OWN_JOBQ_ON_RUN)
OWN_FN(jobq_post_after_owned, OWN_JOBQ_POST_AFTER_OWNED)
OWN_FN(listener_on_accept, OWN_LISTENER_ON_ACCEPT)
OWN_FN(listener_start, OWN_LISTENER_START)
OWN_FN(listener_stop, OWN_LISTENER_STOP)
OWN_FN(mem_alloc, OWN_MEM_ALLOC)
OWN_FN(mem_calloc, OWN_MEM_CALLOC)
OWN_FN(mem_free, OWN_MEM_FREE)
OWN_FN(mem_realloc, OWN_MEM_REALLOC)
OWN_FN(net_now_ms, OWN_NET_NOW_MS)
OWN_FN(net_worker_of, OWN_NET_WORKER_OF)
OWN_FN(op_advance_send, OWN_OP_ADVANCE_SEND)
OWN_FN(op_free_rest, OWN_OP_FREE_REST)
OWN_FN(port_emit, OWN_PORT_EMIT)
OWN_FN(port_emit_many, OWN_PORT_EMIT_MANY)
OWN_FN(port_now_ns, OWN_PORT_NOW_NS)
OWN_FN(port_queue, OWN_PORT_QUEUE)
OWN_FN(registry_add, OWN_REGISTRY_ADD)
OWN_FN(registry_find, OWN_REGISTRY_FIND)
OWN_FN(registry_release, OWN_REGISTRY_RELEASE)
OWN_FN(registry_remove, OWN_REGISTRY_REMOVE)
OWN_FN(registry_snapshot, OWN_REGISTRY_SNAPSHOT)
OWN_FN(sendbuf_trim, OWN_SENDBUF_TRIM)
OWN_FN(session_check_idle, OWN_SESSION_CHECK_IDLE)
OWN_FN(session_close, OWN_SESSION_CLOSE)
OWN_FN(session_connect, OWN_SESSION_CONNECT)
OWN_FN(session_new, OWN_SESSION_NEW)
OWN_FN(session_on_completion, OWN_SESSION_ON_COMPLETION)
OWN_FN(session_on_strand_post, OWN_SESSION_ON_STRAND_POST)
OWN_FN(session_start, OWN_SESSION_START)
OWN_FN(timer_on_fire, OWN_TIMER_ON_FIRE)
OWN_FN(timers_clear, OWN_TIMERS_CLEAR)

static long (*const own_fns[OWN_COUNT])(const char *, long) = {bufpool_free,
                                                               bufpool_index,
                                                               bufpool_init,
                                                               fdtable_free,
                                                               fdtable_get,
                                                               fdtable_init,
                                                               fdtable_make,
                                                               frame_feed,
                                                               frame_reset,
                                                               job_free_kept,
                                                               jobq_every,
                                                               jobq_on_run,
                                                               jobq_post_after_owned,
                                                               listener_on_accept,
                                                               listener_start,
                                                               listener_stop,
                                                               mem_alloc,
                                                               mem_calloc,
                                                               mem_free,
                                                               mem_realloc,
                                                               net_now_ms,
                                                               net_worker_of,
                                                               op_advance_send,
                                                               op_free_rest,
                                                               port_emit,
                                                               port_emit_many,
                                                               port_now_ns,
                                                               port_queue,
                                                               registry_add,
                                                               registry_find,
                                                               registry_release,
                                                               registry_remove,
                                                               registry_snapshot,
                                                               sendbuf_trim,
                                                               session_check_idle,
                                                               session_close,
                                                               session_connect,
                                                               session_new,
                                                               session_on_completion,
                                                               session_on_strand_post,
                                                               session_start,
                                                               timer_on_fire,
                                                               timers_clear};

/* The engine's old global variables, as the application's own data. */
char mem_fns[] = "the application's mem_fns";
const char *backend_uring = "the application's backend_uring";
const char *backend_epoll = "the application's backend_epoll";

/* The application calls each of its functions; every call is checked. */
static void call_own(void) {
  for (int i = 0; i < OWN_COUNT; i++)
    CHECK_EQ(own_fns[i]("app", 7), 7 * 3 + i);
}

/* ---- a packet echo on the engine ---------------------------------------------------------------
 */

#define CLIENTS 8
#define PACKETS 20

static void on_connected(cp_session *s) {
  nt_track_new(s);
}

static void on_packet(cp_session *s, const cp_packet *pkt) {
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  CHECK(b != NULL);
  CHECK_EQ(cp_session_send(s, b), 0);
  cp_sendbuf_unref(b);
}

/* One client: PACKETS packets of growing size, each echo compared byte for byte. */
static void echo_client(const struct sockaddr_in *addr, uint16_t id) {
  int fd = test_connect(addr);
  uint8_t out[4 + PACKETS * 8], in[sizeof out];
  for (uint32_t seq = 0; seq < PACKETS; seq++) {
    size_t n = nt_packet(out, id, seq, seq * 8);
    test_send_all(fd, out, n);
    test_recv_all(fd, in, n);
    CHECK(!memcmp(in, out, n));
  }
  close(fd);
}

int main(void) {
  test_begin("test_link_clash", 120);
  call_own();

  cp_service_options o = {.threads = 2,
                          .callbacks = {.on_connected = on_connected,
                                        .on_packet = on_packet,
                                        .on_disconnected = nt_track_end}};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);

  for (uint16_t c = 0; c < CLIENTS; c++)
    echo_client(&addr, (uint16_t)(c + 1));
  /* Each client closed: each session ends (with session_close interposed, none did). */
  WAIT_UNTIL(nt_disconnects(svc) == CLIENTS);
  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.accepts, CLIENTS);
  CHECK_EQ(st.packets_in, CLIENTS * PACKETS);
  CHECK_EQ(st.packets_out, CLIENTS * PACKETS);
  CHECK_EQ(st.disconnects[CP_REASON_PEER_CLOSED], CLIENTS);

  /* One more, left connected: stop disconnects it and returns. */
  int idle = test_connect(&addr);
  WAIT_UNTIL(nt_stats(svc).accepts == CLIENTS + 1);
  cp_service_stop(svc, 100);
  CHECK_EQ(nt_disconnects(svc), CLIENTS + 1);
  CHECK(nt_read_to_end(idle));
  close(idle);
  nt_check_tracks_once();
  CHECK_EQ(atomic_load(&nt_ntracks), CLIENTS + 1);
  nt_check_port_settled(svc);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);

  /* The application's functions ran exactly when it called them, its data is intact. */
  call_own();
  for (int i = 0; i < OWN_COUNT; i++)
    CHECK_EQ(atomic_load(&own_calls[i]), 2);
  CHECK(!strcmp(mem_fns, "the application's mem_fns"));
  CHECK(!strcmp(backend_uring, "the application's backend_uring"));
  CHECK(!strcmp(backend_epoll, "the application's backend_epoll"));
  fprintf(stderr,
          "test_link_clash: %d sessions echoed %d packets each and ended; %d functions of "
          "the application's own ran only when it called them\n",
          CLIENTS, PACKETS, OWN_COUNT);
  return 0;
}
