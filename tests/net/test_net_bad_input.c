/* Bad input for every function of cport/net.h: NULL, bad options, calls in
 * the wrong state (before start, after stop, twice), a session held past
 * stop. Each gets the documented error (or nothing happens); none crashes or
 * hangs (the watchdog). */
#include "common/nettest.h"

static atomic_int job_runs;
static void job(void *arg) {
  (void)arg;
  atomic_fetch_add(&job_runs, 1);
}

static cp_session *_Atomic held;
static atomic_int ended;
static void on_connected(cp_session *s) {
  atomic_store(&held, cp_session_get(s)); /* kept past its end on purpose */
}
static void on_disconnected(cp_session *s, cp_reason why) {
  (void)why;
  CHECK(s == atomic_load(&held));
  atomic_store(&ended, 1);
}

int main(void) {
  test_begin("test_net_bad_input", 60);
  /* ---- NULL everywhere ---- */
  cp_service *svc = (cp_service *)1;
  cp_service_options o = {0};
  CHECK_EQ(cp_service_create(NULL, &o), CP_EINVAL);
  CHECK_EQ(cp_service_create(&svc, NULL), CP_EINVAL);
  CHECK_EQ(cp_service_start(NULL), CP_EINVAL);
  cp_service_stop(NULL, 0);
  cp_service_destroy(NULL);
  CHECK_EQ(cp_service_connect(NULL), CP_EINVAL);
  cp_service_stats st;
  memset(&st, 0xff, sizeof st);
  cp_service_get_stats(NULL, &st);
  CHECK_EQ(st.accepts, 0);
  CHECK(cp_service_port(NULL) == NULL);
  CHECK_EQ(cp_service_listen_port(NULL), 0);
  CHECK(cp_service_user(NULL) == NULL);
  CHECK_EQ(cp_service_broadcast(NULL, NULL), 0);
  CHECK(cp_session_get(NULL) == NULL);
  cp_session_put(NULL);
  CHECK_EQ(cp_session_send(NULL, NULL), CP_EINVAL);
  CHECK_EQ(cp_session_send_queued(NULL), 0);
  CHECK_EQ(cp_session_send_many(NULL, 3, NULL), 0);
  cp_session_disconnect(NULL, true);
  cp_session_disconnect(NULL, false);
  CHECK_EQ(cp_session_id(NULL), 0);
  CHECK(cp_session_service(NULL) == NULL);
  cp_session_set_user(NULL, &o);
  CHECK(cp_session_user(NULL) == NULL);
  CHECK(!cp_session_connected(NULL));
  char pb[64];
  CHECK(strcmp(cp_session_peer(NULL, pb, sizeof pb), "?:0") == 0);
  CHECK(cp_session_peer(NULL, NULL, 0) == NULL);
  CHECK(cp_sendbuf_data(NULL) == NULL);
  CHECK_EQ(cp_sendbuf_len(NULL), 0);
  CHECK_EQ(cp_sendbuf_cap(NULL), 0);
  cp_sendbuf_set_len(NULL, 3);
  CHECK(cp_sendbuf_ref(NULL) == NULL);
  cp_sendbuf_unref(NULL);
  CHECK(cp_sendbuf_copy(NULL, 4) == NULL);
  cp_sendbuf *empty = cp_sendbuf_copy(NULL, 0);
  CHECK(empty != NULL && cp_sendbuf_len(empty) == 0);
  CHECK(cp_packet_alloc(1, 70000) == NULL);
  CHECK(cp_sendbuf_alloc((size_t)UINT32_MAX) == NULL);
  CHECK(cp_jobq_create(NULL) == NULL);
  CHECK_EQ(cp_jobq_post(NULL, job, NULL), CP_EINVAL);
  CHECK_EQ(cp_jobq_post_after(NULL, 5, job, NULL), CP_EINVAL);
  cp_job j = {0};
  CHECK_EQ(cp_jobq_post_job(NULL, &j, job, NULL), CP_EINVAL);
  cp_jobq_destroy(NULL);
  cp_timer t = {0};
  CHECK_EQ(cp_timer_start(NULL, NULL, 1, 0, job, NULL), CP_EINVAL);
  CHECK_EQ(cp_timer_cancel(NULL), CP_EINVAL);
  CHECK_EQ(cp_timer_cancel(&t), CP_ENOENT); /* never started */
  CHECK(strcmp(cp_reason_name((cp_reason)99), "unknown") == 0);

  /* ---- bad options ---- */
  cp_service_options bad = {.kind = (cp_service_kind)7};
  CHECK_EQ(cp_service_create(&svc, &bad), CP_EINVAL);
  CHECK(svc == NULL);
  bad = (cp_service_options){.max_packet = 3};
  CHECK_EQ(cp_service_create(&svc, &bad), CP_EINVAL);
  bad = (cp_service_options){.host = "not an address"};
  CHECK_EQ(cp_service_create(&svc, &bad), CP_EINVAL);

  /* ---- the wrong state ---- */
  cp_service_options so = {
      .threads = 2,
      .callbacks = {.on_connected = on_connected, .on_disconnected = on_disconnected}};
  svc = nt_server_create(so);
  CHECK_EQ(cp_service_connect(svc), CP_EINVAL); /* a server */
  CHECK_EQ(cp_service_listen_port(svc), 0);     /* not started */
  cp_jobq *q = cp_jobq_create(svc);
  CHECK(q != NULL);
  struct sockaddr_in addr;
  nt_server_start(svc, &addr);
  CHECK_EQ(cp_service_start(svc), CP_EALREADY);
  CHECK_EQ(cp_jobq_post_job(q, &j, job, NULL), 0);
  int fd = test_connect(&addr);
  WAIT_UNTIL(held != NULL);
  WAIT_UNTIL(atomic_load(&job_runs) == 1);
  cp_session *h = atomic_load(&held);
  CHECK_EQ(cp_session_send(h, empty), CP_EINVAL); /* an empty buffer */
  CHECK_EQ(cp_session_send(h, NULL), CP_EINVAL);
  cp_session_disconnect(h, true);
  cp_session_disconnect(h, true); /* twice: nothing more */
  WAIT_UNTIL(atomic_load(&ended));
  /* ended, still referenced: calls are answered, nothing happens */
  cp_sendbuf *b = cp_sendbuf_copy("x", 1);
  CHECK_EQ(cp_session_send(h, b), CP_ENOTCONN);
  CHECK(!cp_session_connected(h));
  cp_session_disconnect(h, false);
  cp_session *v[2] = {h, NULL};
  CHECK_EQ(cp_session_send_many(v, 2, b), 0);
  CHECK_EQ(cp_service_broadcast(svc, b), 0);
  CHECK(cp_session_service(h) == svc);
  cp_session_put(h);
  close(fd);
  cp_service_stop(svc, 0);
  cp_service_stop(svc, 0); /* idempotent */
  /* after stop */
  CHECK_EQ(cp_service_start(svc), CP_ESHUTDOWN);
  CHECK_EQ(cp_jobq_post(q, job, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_jobq_post_job(q, &j, job, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_jobq_post_after(q, 1, job, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_timer_start(&t, q, 1, 1, job, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_service_broadcast(svc, b), 0);
  cp_service_get_stats(svc, &st);
  CHECK_EQ(st.sessions, 0);
  cp_jobq_destroy(q);
  cp_service_destroy(svc);
  CHECK_EQ(atomic_load(&job_runs), 1);

  /* a client service: connect before start, after stop; stop before start */
  cp_service_options co = {.kind = CP_SERVICE_CLIENT, .host = "127.0.0.1", .port = 9, .threads = 1};
  CHECK_EQ(cp_service_create(&svc, &co), 0);
  CHECK_EQ(cp_service_connect(svc), CP_EINVAL); /* not started */
  cp_service_stop(svc, 0);                      /* never started: marked stopped */
  CHECK_EQ(cp_service_start(svc), CP_ESHUTDOWN);
  CHECK_EQ(cp_service_connect(svc), CP_EINVAL);
  q = cp_jobq_create(svc);
  CHECK_EQ(cp_jobq_post(q, job, NULL), CP_ESHUTDOWN);
  cp_jobq_destroy(q);
  cp_service_destroy(svc);

  cp_sendbuf_unref(b);
  cp_sendbuf_unref(empty);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  fprintf(stderr, "PASS\n");
  return 0;
}
