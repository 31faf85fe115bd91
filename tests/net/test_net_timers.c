/* Caller-owned jobs and cancellable, repeating timers (net.h):
 *  (a) cp_job from 4 threads: each runs exactly once, in each poster's order;
 *      a pending job is CP_EBUSY; fn may free its job (ASan sees any touch after);
 *  (b) posting a cp_job never fails for memory: with every allocation failing
 *      and a port whose ready queue is full, 64 queues' jobs posted from a job
 *      all return 0 and all run (the overflow path);
 *  (c) timers: a one-shot runs once and never early; CP_EBUSY while pending; a
 *      repeating one runs until fn cancels it (0), then never again; cancel of
 *      a pending one-shot returns 0 and it never runs; of one that ran, CP_ENOENT;
 *  (d) exactly once under races: 2,000 one-shot timers cancelled from another
 *      thread while they fire: for each, ran + (cancel returned 0) == 1;
 *  (e) stop: pending timers never run, cancel then reports them cancelled;
 *      after stop, start and post_job return CP_ESHUTDOWN. */
#include "common/nettest.h"

#include "cport/alloc.h"

/* ---- (a) ------------------------------------------------------------- */
#define POSTERS 4
static unsigned per_thread;
static cp_jobq *q, *q2;
static cp_job *jobs[POSTERS];
static int64_t last_seq[POSTERS];
static atomic_int a_runs, in_job;

static void job_a(void *arg) {
  CHECK_EQ(atomic_exchange(&in_job, 1), 0);
  uint64_t v = (uint64_t)(uintptr_t)arg;
  unsigned t = (unsigned)(v >> 32);
  int64_t seq = (int64_t)(v & 0xffffffffu);
  CHECK_EQ(seq, last_seq[t] + 1);
  last_seq[t] = seq;
  CHECK_EQ(atomic_exchange(&in_job, 0), 1);
  atomic_fetch_add(&a_runs, 1);
}

static void *poster(void *arg) {
  uint64_t t = (uint64_t)(uintptr_t)arg;
  for (uint64_t i = 0; i < per_thread; i++)
    CHECK_EQ(cp_jobq_post_job(q, &jobs[t][i], job_a, (void *)(uintptr_t)(t << 32 | i)), 0);
  return NULL;
}

static atomic_int gate, gate_in;
static void job_gate(void *arg) {
  (void)arg;
  atomic_store(&gate_in, 1);
  while (!atomic_load(&gate))
    test_sleep_ms(1);
}

struct owned {
  cp_job job;
  int value;
};
static atomic_int freed_runs;
static void job_free_self(void *arg) {
  struct owned *o = arg;
  CHECK_EQ(o->value, 42);
  free(o); /* the engine must not touch o->job after this */
  atomic_fetch_add(&freed_runs, 1);
}

/* ---- (b) ------------------------------------------------------------- */
static atomic_int fail_all;
static atomic_long injected;
static void *f_malloc(size_t n) {
  if (atomic_load(&fail_all)) {
    atomic_fetch_add(&injected, 1);
    return NULL;
  }
  return malloc(n);
}
static void *f_realloc(void *p, size_t n) {
  if (atomic_load(&fail_all)) {
    atomic_fetch_add(&injected, 1);
    return NULL;
  }
  return realloc(p, n);
}
static void *f_calloc(size_t c, size_t n) {
  if (atomic_load(&fail_all)) {
    atomic_fetch_add(&injected, 1);
    return NULL;
  }
  return calloc(c, n);
}

#define OOMQ 64
static cp_jobq *oomq[OOMQ];
static cp_job oomjobs[OOMQ];
static atomic_int oom_runs[OOMQ], oom_posted;

static void job_oom_target(void *arg) {
  atomic_fetch_add(&oom_runs[(intptr_t)arg], 1);
}
static void job_oom_poster(void *arg) {
  (void)arg;
  atomic_store(&fail_all, 1);
  for (intptr_t i = 0; i < OOMQ; i++)
    CHECK_EQ(cp_jobq_post_job(oomq[i], &oomjobs[i], job_oom_target, (void *)i), 0);
  CHECK_EQ(cp_jobq_post(oomq[0], job_oom_target, NULL), CP_ENOMEM); /* the allocating one fails */
  atomic_store(&fail_all, 0);
  atomic_store(&oom_posted, 1);
}

/* ---- (c) ------------------------------------------------------------- */
static cp_timer t_once, t_rep, t_far;
static atomic_int once_runs, rep_runs, far_runs;
static uint64_t once_posted, once_ran;

static void job_once(void *arg) {
  (void)arg;
  once_ran = test_now_ms();
  atomic_fetch_add(&once_runs, 1);
}
static void job_rep(void *arg) {
  (void)arg;
  if (atomic_fetch_add(&rep_runs, 1) + 1 == 3)
    CHECK_EQ(cp_timer_cancel(&t_rep), 0); /* from its own fn: no run after this */
}
static void job_far(void *arg) {
  (void)arg;
  atomic_fetch_add(&far_runs, 1);
}
static atomic_int flushed;
static void job_flush(void *arg) {
  (void)arg;
  atomic_fetch_add(&flushed, 1);
}
/* Wait until every job and timer due within ms has run on qq. */
static void flush(cp_jobq *qq, unsigned ms) {
  int f = atomic_load(&flushed);
  CHECK_EQ(cp_jobq_post_after(qq, ms, job_flush, NULL), 0);
  WAIT_UNTIL(atomic_load(&flushed) > f);
}

/* ---- (d) ------------------------------------------------------------- */
#define RACE 2000
static cp_timer race[RACE];
static atomic_int race_ran[RACE];
static void job_race(void *arg) {
  atomic_fetch_add(&race_ran[(intptr_t)arg], 1);
}

int main(void) {
  test_begin("test_net_timers", 120);
  CHECK_EQ(cp_replace_allocator(f_malloc, f_realloc, f_calloc, free), 0);
  per_thread = TEST_SLOW ? 2000 : 20000;
  cp_service *svc = nt_server_create((cp_service_options){.threads = 2});
  CHECK((q = cp_jobq_create(svc)) != NULL);
  CHECK((q2 = cp_jobq_create(svc)) != NULL);
  nt_server_start(svc, NULL);

  /* (a) */
  for (int t = 0; t < POSTERS; t++) {
    CHECK((jobs[t] = calloc(per_thread, sizeof(cp_job))) != NULL);
    last_seq[t] = -1;
  }
  pthread_t th[POSTERS];
  for (int t = 0; t < POSTERS; t++)
    CHECK_EQ(pthread_create(&th[t], NULL, poster, (void *)(uintptr_t)t), 0);
  for (int t = 0; t < POSTERS; t++)
    pthread_join(th[t], NULL);
  WAIT_UNTIL(atomic_load(&a_runs) == (int)(POSTERS * per_thread));
  flush(q, 1);
  CHECK_EQ(atomic_load(&a_runs), (int)(POSTERS * per_thread));
  for (int t = 0; t < POSTERS; t++)
    CHECK_EQ(last_seq[t], (int64_t)per_thread - 1);
  /* a pending job is busy; after it ran it may be posted again */
  static cp_job gj, j1;
  CHECK_EQ(cp_jobq_post_job(q, &gj, job_gate, NULL), 0);
  WAIT_UNTIL(atomic_load(&gate_in));
  CHECK_EQ(cp_jobq_post_job(q, &j1, job_a, (void *)(uintptr_t)per_thread), 0);
  CHECK_EQ(cp_jobq_post_job(q, &j1, job_a, (void *)(uintptr_t)per_thread), CP_EBUSY);
  CHECK_EQ(cp_jobq_post_job(q, NULL, job_a, NULL), CP_EINVAL);
  CHECK_EQ(cp_jobq_post_job(NULL, &j1, job_a, NULL), CP_EINVAL);
  CHECK_EQ(cp_jobq_post_job(q, &j1, NULL, NULL), CP_EINVAL);
  atomic_store(&gate, 1);
  WAIT_UNTIL(atomic_load(&a_runs) == (int)(POSTERS * per_thread) + 1);
  flush(q, 1);
  CHECK_EQ(atomic_load(&a_runs), (int)(POSTERS * per_thread) + 1);
  for (int i = 0; i < 100; i++) {
    struct owned *o = calloc(1, sizeof *o);
    CHECK(o != NULL);
    o->value = 42;
    CHECK_EQ(cp_jobq_post_job(i % 2 ? q : q2, &o->job, job_free_self, o), 0);
  }
  WAIT_UNTIL(atomic_load(&freed_runs) == 100);
  for (int t = 0; t < POSTERS; t++)
    free(jobs[t]);

  /* (c) */
  once_posted = test_now_ms();
  CHECK_EQ(cp_timer_start(&t_once, q, 20, 0, job_once, NULL), 0);
  CHECK_EQ(cp_timer_start(&t_once, q, 20, 0, job_once, NULL), CP_EBUSY);
  CHECK_EQ(cp_timer_start(&t_rep, q2, 5, 5, job_rep, NULL), 0);
  CHECK_EQ(cp_timer_start(&t_far, q, 100000, 0, job_far, NULL), 0);
  CHECK_EQ(cp_timer_start(NULL, q, 1, 0, job_far, NULL), CP_EINVAL);
  CHECK_EQ(cp_timer_start(&t_far, NULL, 1, 0, job_far, NULL), CP_EINVAL);
  CHECK_EQ(cp_timer_cancel(NULL), CP_EINVAL);
  WAIT_UNTIL(atomic_load(&once_runs) == 1 && atomic_load(&rep_runs) == 3);
  flush(q, 30);
  flush(q2, 30);
  CHECK_EQ(atomic_load(&once_runs), 1);
  CHECK(once_ran - once_posted >= 20);
  CHECK_EQ(atomic_load(&rep_runs), 3);
  CHECK_EQ(cp_timer_cancel(&t_once), CP_ENOENT); /* it ran */
  CHECK_EQ(cp_timer_cancel(&t_rep), CP_ENOENT);  /* cancelled already */
  CHECK_EQ(cp_timer_cancel(&t_far), 0);
  CHECK_EQ(cp_timer_cancel(&t_far), CP_ENOENT);
  /* idle again: it can be started once more, and it runs once */
  CHECK_EQ(cp_timer_start(&t_once, q, 1, 0, job_once, NULL), 0);
  WAIT_UNTIL(atomic_load(&once_runs) == 2);
  static cp_timer never;
  CHECK_EQ(cp_timer_cancel(&never), CP_ENOENT);

  /* (d) */
  for (intptr_t i = 0; i < RACE; i++)
    CHECK_EQ(
        cp_timer_start(&race[i], i % 2 ? q : q2, 1 + (uint64_t)(i % 3), 0, job_race, (void *)i), 0);
  int cancelled[RACE];
  for (int i = 0; i < RACE; i++) {
    if (i % 200 == 199)
      test_sleep_ms(1); /* spread over the time they fall due */
    int rc = cp_timer_cancel(&race[i]);
    CHECK(rc == 0 || rc == CP_ENOENT);
    cancelled[i] = rc == 0;
  }
  flush(q, 20);
  flush(q2, 20);
  int nc = 0;
  for (int i = 0; i < RACE; i++) {
    if (atomic_load(&race_ran[i]) + cancelled[i] != 1)
      fprintf(stderr, "timer %d: ran %d, cancelled %d\n", i, atomic_load(&race_ran[i]),
              cancelled[i]);
    CHECK_EQ(atomic_load(&race_ran[i]) + cancelled[i], 1);
    nc += cancelled[i];
  }
  fprintf(stderr, "  race: %d of %d cancelled, %d ran\n", nc, RACE, RACE - nc);

  /* (e) */
  CHECK_EQ(cp_timer_start(&t_far, q, 100000, 0, job_far, NULL), 0);
  CHECK_EQ(cp_timer_start(&t_rep, q2, 100000, 1, job_rep, NULL), 0);
  cp_service_stop(svc, 0);
  static cp_timer late;
  static cp_job latej;
  CHECK_EQ(cp_timer_start(&late, q, 1, 0, job_far, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_jobq_post_job(q, &latej, job_far, NULL), CP_ESHUTDOWN);
  CHECK_EQ(cp_jobq_post_job(q, &latej, job_far, NULL), CP_ESHUTDOWN); /* not left busy */
  CHECK_EQ(cp_timer_cancel(&t_far), 0);
  cp_jobq_destroy(q);
  cp_jobq_destroy(q2);
  CHECK_EQ(cp_timer_cancel(&t_rep), CP_ENOENT); /* dropped with its queue */
  cp_service_destroy(svc);
  CHECK_EQ(atomic_load(&far_runs), 0);

  /* (b) one worker, a ready queue of 2 (queue_depth 1): posts from a job
   * find the port full with no memory to grow it */
  cp_service *s2 = nt_server_create((cp_service_options){.threads = 1, .port_opts.queue_depth = 1});
  for (int i = 0; i < OOMQ; i++)
    CHECK((oomq[i] = cp_jobq_create(s2)) != NULL);
  nt_server_start(s2, NULL);
  static cp_job pj;
  CHECK_EQ(cp_jobq_post_job(oomq[0], &pj, job_oom_poster, NULL), 0);
  WAIT_UNTIL(atomic_load(&oom_posted));
  for (int i = 0; i < OOMQ; i++)
    WAIT_UNTIL(atomic_load(&oom_runs[i]) == 1);
  fprintf(stderr, "  out of memory: %ld allocations failed, %d jobs ran\n", atomic_load(&injected),
          OOMQ);
  CHECK(atomic_load(&injected) > 0);
  cp_service_stop(s2, 0);
  for (int i = 0; i < OOMQ; i++) {
    CHECK_EQ(atomic_load(&oom_runs[i]), 1);
    cp_jobq_destroy(oomq[i]);
  }
  cp_service_destroy(s2);
  fprintf(stderr, "PASS\n");
  return 0;
}
