/* The library prints nothing unless asked (cport/log.h):
 *  - with no callback, messages the library has (a bad CPORT_BACKEND, a
 *    foreign buffer released) leave stderr empty;
 *  - with one, each arrives once, with its level, filtered by max_level;
 *  - cp_log_set from another thread while 4 threads log: each call gets the
 *    user pointer set with its callback, and once cp_log_set returns the old
 *    callback is never called again. */
#include "common/nettest.h"

struct sink {
  int tag;
  atomic_int n, errors, infos;
  char last[256];
};
static struct sink A = {.tag = 1}, B = {.tag = 2};
static atomic_int wrong_user;
static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER; /* several threads log at once */

static void cb_a(cp_log_level level, const char *msg, void *user) {
  struct sink *s = user;
  if (s != &A)
    atomic_fetch_add(&wrong_user, 1);
  atomic_fetch_add(&s->n, 1);
  if (level == CP_LOG_ERROR)
    atomic_fetch_add(&s->errors, 1);
  if (level == CP_LOG_INFO)
    atomic_fetch_add(&s->infos, 1);
  pthread_mutex_lock(&last_mu);
  snprintf(s->last, sizeof s->last, "%s", msg);
  pthread_mutex_unlock(&last_mu);
}
static void cb_b(cp_log_level level, const char *msg, void *user) {
  (void)level;
  (void)msg;
  if (user != &B)
    atomic_fetch_add(&wrong_user, 1);
  atomic_fetch_add(&B.n, 1);
}

static cp_port *port;
static int foreign;
static atomic_int stop_logging;
static void *logger(void *arg) {
  (void)arg;
  while (!atomic_load(&stop_logging))
    cp_port_buf_release(port, &foreign); /* logs an error each time */
  return NULL;
}

static long file_size(int fd) {
  return (long)lseek(fd, 0, SEEK_END);
}

int main(void) {
  test_begin("test_net_log", 60);
  CHECK_EQ(cp_port_create(&port, NULL), 0);
  char *env = getenv("CPORT_BACKEND");
  char saved[32] = "";
  if (env)
    snprintf(saved, sizeof saved, "%s", env);

    /* nothing on stderr by default */
#ifdef _WIN32
  char path[] = "cport_test_log_XXXXXX"; /* in the build directory: Windows has no /tmp */
#else
  char path[] = "/tmp/cport_test_log_XXXXXX";
#endif
  int tmp = mkstemp(path);
  CHECK(tmp >= 0);
  unlink(path); /* gone at once on POSIX; on Windows once closed */
  fflush(stderr);
  int err = dup(2);
  CHECK(dup2(tmp, 2) >= 0); /* 2 on POSIX, 0 on Windows */
  cp_port_buf_release(port, &foreign);
  setenv("CPORT_BACKEND", "bogus", 1);
  cp_port *p2 = NULL;
  int rc = cp_port_create(&p2, NULL);
  if (saved[0])
    setenv("CPORT_BACKEND", saved, 1);
  else
    unsetenv("CPORT_BACKEND");
  fflush(stderr);
  CHECK(dup2(err, 2) >= 0);
  close(err);
  CHECK(rc < 0);
  CHECK_EQ(file_size(tmp), 0);
  close(tmp);
  unlink(path); /* Windows: now that it is closed (POSIX: gone already) */

  /* with a callback: each message once, at its level, filtered */
  CHECK(strcmp(cp_log_level_name(CP_LOG_WARN), "warn") == 0);
  CHECK(strcmp(cp_log_level_name((cp_log_level)42), "?") == 0);
  cp_log_set(cb_a, CP_LOG_ERROR, &A);
  cp_port_buf_release(port, &foreign);
  CHECK_EQ(atomic_load(&A.n), 1);
  CHECK_EQ(atomic_load(&A.errors), 1);
  CHECK(strstr(A.last, "not a pooled buffer") != NULL);
  CHECK(strchr(A.last, '\n') == NULL);
  setenv("CPORT_BACKEND", "bogus", 1);
  CHECK(cp_port_create(&p2, NULL) < 0);
  CHECK_EQ(atomic_load(&A.n), 2);
  CHECK(strstr(A.last, "CPORT_BACKEND=bogus") != NULL);
  if (saved[0])
    setenv("CPORT_BACKEND", saved, 1);
  else
    unsetenv("CPORT_BACKEND");
  cp_log_set(NULL, CP_LOG_DEBUG, NULL);
  cp_port_buf_release(port, &foreign);
  CHECK_EQ(atomic_load(&A.n), 2);

  /* switching while 4 threads log */
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    CHECK_EQ(pthread_create(&th[i], NULL, logger, NULL), 0);
  int rounds = TEST_SLOW ? 50 : 200;
  for (int r = 0; r < rounds; r++) {
    cp_log_set(cb_a, CP_LOG_DEBUG, &A);
    cp_log_set(cb_b, CP_LOG_DEBUG, &B);
    int a = atomic_load(&A.n);
    for (int k = 0; k < 50; k++)
      cp_port_buf_release(port, &foreign); /* goes to B */
    CHECK_EQ(atomic_load(&A.n), a);        /* A is never called after the switch */
  }
  cp_log_set(NULL, CP_LOG_DEBUG, NULL);
  int b = atomic_load(&B.n);
  test_sleep_ms(20);
  CHECK_EQ(atomic_load(&B.n), b);
  atomic_store(&stop_logging, 1);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  CHECK_EQ(atomic_load(&wrong_user), 0);
  fprintf(stderr, "  %d messages to A, %d to B\n", atomic_load(&A.n), atomic_load(&B.n));
  cp_port_destroy(port);
  fprintf(stderr, "PASS\n");
  return 0;
}
