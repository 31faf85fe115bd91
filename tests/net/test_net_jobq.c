/* Job queues: jobs from 4 threads run one at a time, each exactly once, in
 * each poster's order; jobs posted from a job run after it, in order; timers
 * run once, never before their delay, exclusive with the queue's other jobs;
 * after stop a post fails with CP_ESHUTDOWN, a pending timer never runs, and a
 * queue with jobs left is freed without leaks. */
#include "common/nettest.h"

#define POSTERS 4
#define CHAIN 1000

static unsigned per_thread; /* jobs each poster posts */
static cp_jobq *q;
static atomic_int in_job; /* 1 while a job of q runs */

static void enter(void) {
  CHECK_EQ(atomic_exchange(&in_job, 1), 0);
}
static void leave(void) {
  CHECK_EQ(atomic_exchange(&in_job, 0), 1);
}

/* ---- (a) many posters ------------------------------------------------ */

static int64_t last_seq[POSTERS]; /* only touched by jobs: the queue orders them */
static uint8_t *ran[POSTERS];
static atomic_uint_fast64_t a_count;

static void job_a(void *arg) {
  enter();
  uint64_t v = (uint64_t)(uintptr_t)arg;
  unsigned t = (unsigned)(v >> 32);
  int64_t seq = (int64_t)(v & 0xffffffffu);
  CHECK(t < POSTERS);
  CHECK(seq < (int64_t)per_thread);
  CHECK_EQ(seq, last_seq[t] + 1); /* post order, nothing lost in between */
  last_seq[t] = seq;
  ran[t][seq]++;
  leave();
  atomic_fetch_add(&a_count, 1);
}

static void *poster(void *arg) {
  uint64_t t = (uint64_t)(uintptr_t)arg;
  for (uint64_t i = 0; i < per_thread; i++)
    CHECK_EQ(cp_jobq_post(q, job_a, (void *)(uintptr_t)(t << 32 | i)), 0);
  return NULL;
}

/* ---- (b) jobs posting jobs ------------------------------------------- */

static int chain_log[CHAIN];
static int chain_len;
static atomic_int chain_done;

static void job_chain(void *arg) {
  enter();
  int i = (int)(intptr_t)arg;
  CHECK_EQ(i, chain_len);
  chain_log[chain_len++] = i;
  if (i + 1 < CHAIN)
    CHECK_EQ(cp_jobq_post(q, job_chain, (void *)(intptr_t)(i + 1)), 0);
  else
    atomic_store(&chain_done, 1);
  leave();
}

/* One job posts CHAIN jobs in a loop: none runs inside it (the in-job flag),
 * and they run in the order posted. */
static int fan_next;
static atomic_int fan_done;

static void job_fan_child(void *arg) {
  enter();
  int i = (int)(intptr_t)arg;
  CHECK_EQ(i, fan_next);
  fan_next++;
  if (i == CHAIN - 1)
    atomic_store(&fan_done, 1);
  leave();
}

static void job_fan(void *arg) {
  (void)arg;
  enter();
  for (int i = 0; i < CHAIN; i++)
    CHECK_EQ(cp_jobq_post(q, job_fan_child, (void *)(intptr_t)i), 0);
  CHECK_EQ(fan_next, 0); /* nothing ran yet: the queue is busy with us */
  leave();
}

/* ---- (c) timers ------------------------------------------------------ */

#define TIMERS 5
static const unsigned delays[TIMERS] = {50, 10, 30, 0, 20};
static uint64_t posted_ms[TIMERS], posted_ns[TIMERS];
static uint64_t ran_ms[TIMERS], ran_ns[TIMERS];
static atomic_int timer_runs[TIMERS];
static atomic_int timers_done;
static atomic_uint_fast64_t filler_runs;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void spin_us(unsigned us) {
  uint64_t until = now_ns() + us * 1000u;
  while (now_ns() < until)
    ;
}

static void job_timer(void *arg) {
  enter();
  int i = (int)(intptr_t)arg;
  ran_ms[i] = test_now_ms();
  ran_ns[i] = now_ns();
  atomic_fetch_add(&timer_runs[i], 1);
  spin_us(200); /* long enough for an overlapping job to be caught */
  leave();
  atomic_fetch_add(&timers_done, 1);
}

static void job_filler(void *arg) {
  (void)arg;
  enter();
  spin_us(20);
  leave();
  atomic_fetch_add(&filler_runs, 1);
}

/* ---- (d) stop -------------------------------------------------------- */

static atomic_int late_runs;
static void job_late(void *arg) {
  (void)arg;
  atomic_fetch_add(&late_runs, 1);
}

static atomic_int slow_runs;
static void job_slow(void *arg) {
  (void)arg;
  atomic_fetch_add(&slow_runs, 1);
  test_sleep_ms(1);
}

/* ---- (e) a queue whose run was still queued in the port at stop ------ */

static atomic_int blocker_started, stuck_runs, e_disconnected;
static int dummy_fd;
static cp_service *svc2;

/* Holds the only worker until the port is closed (associate then fails). */
static void job_blocker(void *arg) {
  (void)arg;
  atomic_store(&blocker_started, 1);
  while (cp_port_associate(cp_service_port(svc2), dummy_fd, NULL) == 0)
    test_sleep_ms(1);
}

static void job_stuck(void *arg) {
  (void)arg;
  atomic_fetch_add(&stuck_runs, 1);
}

static void e_on_disconnected(cp_session *s, cp_reason why) {
  (void)s;
  CHECK_EQ(why, CP_REASON_CONNECT_FAILED);
  atomic_fetch_add(&e_disconnected, 1);
}

int main(void) {
  test_begin("test_net_jobq", 120);
  per_thread = TEST_SLOW ? 2000 : 20000;

  cp_service *svc = nt_server_create((cp_service_options){.threads = 4});
  int rc;
  CHECK((q = cp_jobq_create(svc)) != NULL);
  cp_jobq *q2 = cp_jobq_create(svc);
  CHECK(q2 != NULL);
  nt_server_start(svc, NULL);

  /* (a) 4 posters */
  for (int t = 0; t < POSTERS; t++) {
    last_seq[t] = -1;
    CHECK((ran[t] = calloc(per_thread, 1)) != NULL);
  }
  pthread_t th[POSTERS];
  for (int t = 0; t < POSTERS; t++)
    CHECK_EQ(pthread_create(&th[t], NULL, poster, (void *)(uintptr_t)t), 0);
  for (int t = 0; t < POSTERS; t++)
    pthread_join(th[t], NULL);
  uint64_t total = (uint64_t)POSTERS * per_thread;
  uint64_t until = test_now_ms() + 60000;
  while (atomic_load(&a_count) < total && test_now_ms() < until)
    test_sleep_ms(2);
  CHECK_EQ(atomic_load(&a_count), total);
  test_sleep_ms(20);
  CHECK_EQ(atomic_load(&a_count), total); /* and no more */
  for (int t = 0; t < POSTERS; t++) {
    CHECK_EQ(last_seq[t], (int64_t)per_thread - 1);
    for (unsigned i = 0; i < per_thread; i++)
      CHECK_EQ(ran[t][i], 1);
    free(ran[t]);
  }

  /* (b) a chain of jobs, each posting the next; a job posting many */
  CHECK_EQ(cp_jobq_post(q, job_chain, (void *)(intptr_t)0), 0);
  WAIT_UNTIL(atomic_load(&chain_done) >= 1);
  CHECK_EQ(atomic_load(&chain_done), 1);
  CHECK_EQ(chain_len, CHAIN);
  for (int i = 0; i < CHAIN; i++)
    CHECK_EQ(chain_log[i], i);
  CHECK_EQ(cp_jobq_post(q, job_fan, NULL), 0);
  WAIT_UNTIL(atomic_load(&fan_done) >= 1);
  CHECK_EQ(atomic_load(&fan_done), 1);
  test_sleep_ms(10);
  CHECK_EQ(fan_next, CHAIN);

  /* (c) timers, with plain jobs posted on the same queue all the while */
  for (int i = 0; i < TIMERS; i++) {
    posted_ms[i] = test_now_ms();
    posted_ns[i] = now_ns();
    CHECK_EQ(cp_jobq_post_after(q, delays[i], job_timer, (void *)(intptr_t)i), 0);
  }
  uint64_t fillers = 0;
  until = test_now_ms() + 30000;
  while (atomic_load(&timers_done) < TIMERS && test_now_ms() < until) {
    for (int k = 0; k < 20; k++, fillers++)
      CHECK_EQ(cp_jobq_post(q, job_filler, NULL), 0);
    test_sleep_ms(1);
  }
  CHECK_EQ(atomic_load(&timers_done), TIMERS);
  until = test_now_ms() + 30000;
  while (atomic_load(&filler_runs) < fillers && test_now_ms() < until)
    test_sleep_ms(1);
  CHECK_EQ(atomic_load(&filler_runs), fillers);
  test_sleep_ms(100); /* a timer that fires twice would do it by now */
  int early_sub_ms = 0;
  for (int i = 0; i < TIMERS; i++) {
    CHECK_EQ(atomic_load(&timer_runs[i]), 1);
    /* Never before its delay, on the millisecond clock the engine keeps
     * (posted_ms is read before the post, so it is <= the engine's "now"). */
    if (ran_ms[i] - posted_ms[i] < delays[i])
      fprintf(stderr, "timer %d (%u ms) ran after %" PRIu64 " ms\n", i, delays[i],
              ran_ms[i] - posted_ms[i]);
    CHECK(ran_ms[i] - posted_ms[i] >= delays[i]);
    if (ran_ns[i] - posted_ns[i] < (uint64_t)delays[i] * 1000000u)
      early_sub_ms++;
  }
  if (early_sub_ms)
    fprintf(stderr, "  note: %d timer(s) ran less than a millisecond before their delay in ns\n",
            early_sub_ms);

  /* (d) stop: a far timer never runs; q2 is left with jobs queued */
  CHECK_EQ(cp_jobq_post_after(q, 10000, job_late, NULL), 0);
  CHECK_EQ(cp_jobq_post_after(q2, 10000, job_late, NULL), 0);
  int slow = TEST_SLOW ? 2000 : 5000;
  for (int i = 0; i < slow; i++)
    CHECK_EQ(cp_jobq_post(q2, job_slow, NULL), 0);
  WAIT_UNTIL(atomic_load(&slow_runs) >= 1); /* q2 is busy now */
  cp_service_stop(svc, 0);
  int ran_slow = atomic_load(&slow_runs);
  CHECK(ran_slow >= 1);
  CHECK_EQ(cp_jobq_post(q, job_late, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_jobq_post_after(q, 0, job_late, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_jobq_post_after(q, 10, job_late, NULL), CP_ESHUTDOWN);
  if (ran_slow < slow)
    fprintf(stderr, "  stop left %d jobs on q2\n", slow - ran_slow);
  rc = cp_jobq_post(q2, job_late, NULL);
  if (rc != CP_ESHUTDOWN)
    fprintf(stderr, "cp_jobq_post on a queue with jobs left after stop: %d (%s)\n", rc,
            cp_strerror(rc));
  CHECK_EQ(rc, CP_ESHUTDOWN);
  CHECK_EQ(cp_jobq_post_after(q2, 5, job_late, NULL), CP_ESHUTDOWN);
  test_sleep_ms(20);
  CHECK_EQ(atomic_load(&slow_runs), ran_slow); /* nothing runs after stop */
  CHECK_EQ(atomic_load(&late_runs), 0);
  cp_jobq_destroy(q);
  cp_jobq_destroy(q2);
  cp_service_destroy(svc);
  CHECK_EQ(atomic_load(&late_runs), 0);
  CHECK_EQ(atomic_load(&in_job), 0);

  /* (e) One worker, held by a job until the port closes; meanwhile a post to
   * another queue sits in the port. After stop, that queue must refuse posts
   * like any other (CP_ESHUTDOWN). A client service (its one connect fails at
   * once) so that stop waits for no accept the held worker would have to
   * take back. */
  int dead;
  uint16_t dead_port = nt_unlistened_port(&dead);
  dummy_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(dummy_fd >= 0);
  cp_service_options o2 = {.kind = CP_SERVICE_CLIENT,
                           .host = "127.0.0.1",
                           .port = dead_port,
                           .threads = 1,
                           .client_sessions = 1,
                           .callbacks.on_disconnected = e_on_disconnected};
  CHECK_EQ(cp_service_create(&svc2, &o2), 0);
  cp_jobq *qa = cp_jobq_create(svc2), *qb = cp_jobq_create(svc2);
  CHECK(qa && qb);
  CHECK_EQ(cp_service_start(svc2), 0);
  WAIT_UNTIL(atomic_load(&e_disconnected) >= 1);
  CHECK_EQ(atomic_load(&e_disconnected), 1);
  CHECK_EQ(cp_jobq_post(qa, job_blocker, NULL), 0);
  WAIT_UNTIL(atomic_load(&blocker_started) >= 1);
  CHECK_EQ(atomic_load(&blocker_started), 1);
  CHECK_EQ(cp_jobq_post(qb, job_stuck, NULL), 0); /* queued behind the blocker */
  cp_service_stop(svc2, 0);
  CHECK_EQ(atomic_load(&stuck_runs), 0);
  CHECK_EQ(cp_jobq_post(qa, job_stuck, NULL), CP_ESHUTDOWN);
  rc = cp_jobq_post(qb, job_stuck, NULL);
  if (rc != CP_ESHUTDOWN)
    fprintf(stderr, "cp_jobq_post after stop on a queue whose run was pending: %d (%s)\n", rc,
            cp_strerror(rc));
  CHECK_EQ(rc, CP_ESHUTDOWN);
  CHECK_EQ(cp_jobq_post_after(qb, 5, job_stuck, NULL), CP_ESHUTDOWN);
  cp_jobq_destroy(qa);
  cp_jobq_destroy(qb);
  cp_service_destroy(svc2);
  CHECK_EQ(atomic_load(&stuck_runs), 0);
  close(dummy_fd);
  close(dead);
  fprintf(stderr, "  %" PRIu64 " jobs, %d chained, %" PRIu64 " fillers, %d left at stop\n", total,
          CHAIN, fillers, slow - ran_slow);
  return 0;
}
