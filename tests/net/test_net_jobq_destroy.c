/* Destroying a job queue while its service runs: with timers pending (they
 * never fire), with a run still queued in the port, and from inside one of
 * its own jobs. ASan catches any touch of the freed queue. */
#include "common/nettest.h"

static atomic_int timer_runs, self_runs, busy_runs;
static cp_jobq *self_q;

static void timer_job(void *arg) {
  (void)arg;
  atomic_fetch_add(&timer_runs, 1);
}
static void busy_job(void *arg) {
  (void)arg;
  atomic_fetch_add(&busy_runs, 1);
}
static void self_destroy(void *arg) {
  (void)arg;
  CHECK_EQ(cp_jobq_post(self_q, busy_job, NULL), 0); /* queued behind us: dropped */
  atomic_fetch_add(&self_runs, 1);
  cp_jobq_destroy(self_q);
}

int main(void) {
  test_begin("test_net_jobq_destroy", 60);
  cp_service *svc = nt_server((cp_service_options){.threads = 2}, NULL);
  const int rounds = TEST_SLOW ? 50 : 300;
  for (int r = 0; r < rounds; r++) {
    /* timers pending, some soon, one far away */
    cp_jobq *q = cp_jobq_create(svc);
    CHECK(q != NULL);
    CHECK_EQ(cp_jobq_post_after(q, 1, timer_job, NULL), 0);
    CHECK_EQ(cp_jobq_post_after(q, 10000, timer_job, NULL), 0);
    for (int i = 0; i < 20; i++)
      CHECK_EQ(cp_jobq_post(q, busy_job, NULL), 0);
    cp_jobq_destroy(q); /* a run may be queued in the port, or running */

    /* destroyed by its own job */
    self_q = cp_jobq_create(svc);
    CHECK_EQ(cp_jobq_post(self_q, busy_job, NULL), 0);
    CHECK_EQ(cp_jobq_post(self_q, self_destroy, NULL), 0); /* the last touch of self_q here */
    WAIT_UNTIL(atomic_load(&self_runs) == r + 1);
  }
  /* a timer that was due when its queue went may or may not have run; the
   * far one never: wait a little past the near ones and count */
  test_sleep_ms(50);
  int t = atomic_load(&timer_runs);
  CHECK(t <= rounds); /* never the 10 s ones */
  fprintf(stderr,
          "  %d queues destroyed with work pending; %d near timers and %d jobs ran "
          "before their queue went\n",
          2 * rounds, t, atomic_load(&busy_runs));
  cp_service_stop(svc, 0);
  cp_service_destroy(svc);
  return 0;
}
