/*
 * jobq.c - job queues (serial executors).
 *
 * A job queue is a FIFO plus a "scheduled" flag. Posting to an idle queue
 * posts one completion (CP_OP_POST) to the port; the worker that takes it runs
 * the queue's jobs, a batch at a time, and re-posts itself if more are left
 * so one busy queue cannot hog a worker. There is never more than one such
 * completion per queue, so jobs of one queue never run at the same time, and
 * they run in the order they were posted, whichever thread posted them.
 *
 * A job is a list node: the caller's (cp_job, cp_timer) or the engine's
 * (cp_jobq_post allocates one). Once a worker takes a job to run it never
 * touches the node again after calling fn, so fn may free or re-post it.
 *
 * Out of memory: a post that finds the port with no room for the queue's run
 * does not fail. On a worker, the queue goes on the service's overflow list
 * and the worker runs it after its current batch (before it waits again);
 * on another thread, the post waits for room, as the port does for a
 * finished op. So a caller-owned job, once posted, always runs.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <assert.h>
#include <stdlib.h>

#define BATCH 64

struct cp_jobq {
  cp_op op; /* the posted completion; its key is the queue */
  cp_service *svc;
  cp__mutex mu;
  struct job *head, *tail;
  cp_jobq *overflow_next; /* in the service's overflow list (struct cp__jobs) */
  bool scheduled;         /* its run is in the port, on the overflow list, or running */
  bool dying;             /* destroyed while scheduled: the run frees it */
};

cp_service *cp__jobq_service(const cp_jobq *q) {
  return q->svc;
}

void cp__jobs_init(cp_service *svc) {
  cp__mutex_init(&svc->jobs.mu);
  svc->jobs.overflow = NULL;
  atomic_init(&svc->jobs.any, false);
}

void cp__jobs_destroy(cp_service *svc) {
  cp__mutex_destroy(&svc->jobs.mu);
}

cp_jobq *cp_jobq_create(cp_service *svc) {
  if (!svc)
    return NULL;
  cp_jobq *q = mem_calloc(1, sizeof *q);
  if (!q)
    return NULL;
  q->svc = svc;
  cp__mutex_init(&q->mu);
  return q;
}

void cp__job_drop(struct job *j) {
  atomic_store_explicit(&j->queued, 0, memory_order_relaxed);
  if (j->kind != JOB_ALLOC)
    return; /* the caller's: idle again, theirs to free */
  if (j->drop)
    j->drop(j->arg);
  mem_free(j);
}

static void drop_jobs(cp_jobq *q) {
  for (struct job *j = q->head, *next; j; j = next) {
    next = j->next;
    cp__job_drop(j);
  }
  q->head = q->tail = NULL;
}

static void jobq_free(cp_jobq *q) {
  cp__mutex_destroy(&q->mu);
  mem_free(q);
}

void cp_jobq_destroy(cp_jobq *q) {
  if (!q)
    return;
  cp_service *svc = q->svc;
  cp__timers_forget(svc, q); /* its pending timers go: they would post to freed memory */
  cp__mutex_lock(&q->mu);
  drop_jobs(q);
  /* A run still in the port (or running: destroy from the queue's own job)
   * would touch q: let it free q instead. Once the workers are stopped no
   * run will come, so free now. */
  bool later = q->scheduled && !cp__service_stopped(svc);
  q->dying = later;
  cp__mutex_unlock(&q->mu);
  if (!later)
    jobq_free(q);
}

static void overflow_add(cp_jobq *q) {
  struct cp__jobs *J = &q->svc->jobs;
  cp__mutex_lock(&J->mu);
  q->overflow_next = J->overflow;
  J->overflow = q;
  atomic_store_explicit(&J->any, true, memory_order_release);
  cp__mutex_unlock(&J->mu);
}

void cp__jobs_run_overflow(cp_service *svc) {
  struct cp__jobs *J = &svc->jobs;
  if (!atomic_load_explicit(&J->any, memory_order_acquire))
    return;
  cp__mutex_lock(&J->mu);
  cp_jobq *q = J->overflow;
  J->overflow = NULL;
  atomic_store_explicit(&J->any, false, memory_order_relaxed);
  cp__mutex_unlock(&J->mu);
  while (q) {
    cp_jobq *next = q->overflow_next;
    cp__jobq_on_run(q);
    q = next;
  }
}

/* q->scheduled was set by the caller: get q's run going. 0, or CP_ESHUTDOWN
 * (the port is closed; q->scheduled is still set: the caller clears it). */
static int schedule(cp_jobq *q) {
  cp_port *port = cp_service_port(q->svc);
  for (;;) {
    int rc = cp_port_post(port, q, &q->op, 0);
    if (rc != CP_ENOMEM)
      return rc;
    if (cp__net_worker_of == q->svc) {
      overflow_add(q); /* this worker runs it after its batch */
      return 0;
    }
    cp__thread_yield(); /* another thread: wait for the workers to make room */
  }
}

int cp__jobq_push(cp_jobq *q, struct job *j) {
  assert(atomic_load_explicit(&j->queued, memory_order_relaxed));
  j->next = NULL;
  cp__mutex_lock(&q->mu);
  if (q->tail)
    q->tail->next = j;
  else
    q->head = j;
  q->tail = j;
  bool post = !q->scheduled;
  q->scheduled = true;
  cp__mutex_unlock(&q->mu);
  if (!post)
    return 0;
  int rc = schedule(q);
  if (rc) {
    /* The port is closed: the service is stopping. Take the job back. */
    cp__mutex_lock(&q->mu);
    q->scheduled = false;
    cp__mutex_unlock(&q->mu);
    cp__jobq_unlink(q, j);
  }
  return rc;
}

bool cp__jobq_unlink(cp_jobq *q, struct job *j) {
  bool found = false;
  cp__mutex_lock(&q->mu);
  if (atomic_load_explicit(&j->queued, memory_order_relaxed)) {
    struct job *prev = NULL;
    for (struct job *it = q->head; it; prev = it, it = it->next) {
      if (it != j)
        continue;
      if (prev)
        prev->next = j->next;
      else
        q->head = j->next;
      if (q->tail == j)
        q->tail = prev;
      found = true;
      break;
    }
    if (found)
      atomic_store_explicit(&j->queued, 0, memory_order_relaxed);
  }
  cp__mutex_unlock(&q->mu);
  return found;
}

int cp_jobq_post(cp_jobq *q, cp_job_fn fn, void *arg) {
  if (!q || !fn)
    return CP_EINVAL;
  /* Once the workers are on their way out, nothing would run it. (A run of
   * this queue may still sit in the port, so `scheduled` cannot tell.) */
  if (cp__service_stopped(q->svc))
    return CP_ESHUTDOWN;
  struct job *j = mem_alloc(sizeof *j);
  if (!j)
    return CP_ENOMEM;
  *j = (struct job){.fn = fn, .arg = arg, .kind = JOB_ALLOC};
  atomic_init(&j->queued, 1);
  int rc = cp__jobq_push(q, j);
  if (rc)
    mem_free(j);
  return rc;
}

int cp_jobq_post_job(cp_jobq *q, cp_job *job, cp_job_fn fn, void *arg) {
  if (!q || !job || !fn)
    return CP_EINVAL;
  if (cp__service_stopped(q->svc))
    return CP_ESHUTDOWN;
  struct job *j = (struct job *)(void *)job;
  if (atomic_exchange_explicit(&j->queued, 1, memory_order_acq_rel))
    return CP_EBUSY;
  j->fn = fn;
  j->arg = arg;
  j->drop = NULL;
  j->kind = JOB_USER;
  return cp__jobq_push(q, j); /* CP_ESHUTDOWN: not queued (queued is 0 again) */
}

void cp__jobq_on_run(cp_jobq *q) {
  for (int n = 0; n < BATCH; n++) {
    cp__mutex_lock(&q->mu);
    if (q->dying) {
      cp__mutex_unlock(&q->mu);
      jobq_free(q);
      return;
    }
    assert(q->scheduled);
    struct job *j = q->head;
    cp_job_fn fn = NULL;
    void *arg = NULL;
    uint8_t kind = JOB_USER;
    if (j) {
      q->head = j->next;
      if (!q->head)
        q->tail = NULL;
      /* Read before it is released: once `queued` is 0 the caller may post
       * the job again (a repeating timer, a cp_job). */
      fn = j->fn;
      arg = j->arg;
      kind = j->kind;
      atomic_store_explicit(&j->queued, 0, memory_order_release);
    }
    cp__mutex_unlock(&q->mu);
    if (!j)
      break;
    fn(arg);
    if (kind == JOB_ALLOC)
      mem_free(j); /* never a cp_job: the engine does not touch those after fn */
  }
  cp__mutex_lock(&q->mu);
  if (q->dying) { /* destroyed by its own last job */
    cp__mutex_unlock(&q->mu);
    jobq_free(q);
    return;
  }
  bool more = q->head != NULL;
  if (!more)
    q->scheduled = false;
  cp__mutex_unlock(&q->mu);
  /* More left: go to the back of the port's queue, so others get a turn. */
  if (more && schedule(q) != 0) {
    cp__mutex_lock(&q->mu);
    q->scheduled = false;
    cp__mutex_unlock(&q->mu);
  }
}
