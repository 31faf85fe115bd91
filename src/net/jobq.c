/*
 * jobq.c - job queues (serial executors) and the service's timers.
 *
 * A job queue is a FIFO plus a "scheduled" flag. Posting to an idle queue
 * posts one completion (CP_OP_POST) to the port; the worker that takes it runs
 * the queue's jobs, a batch at a time, and re-posts itself if more are left
 * so one busy queue cannot hog a worker. There is never more than one such
 * completion per queue, so jobs of one queue never run at the same time, and
 * they run in the order they were posted, whichever thread posted them.
 *
 * Timers: one heap for the service, ordered by due time, and one port timeout
 * op armed for the earliest entry. A timer that falls due is posted to its
 * job queue like any other job. A new entry earlier than the armed one
 * cancels the armed op; its completion re-arms for the earliest.
 *
 * Out of memory: every allocation a job needs is made when it is posted, so
 * the poster gets -ENOMEM and nothing is lost later: a timer's job node is
 * allocated by cp_jobq_post_after and only moved to its queue when it falls
 * due. The service's own periodic job (the idle scan) has a node made once,
 * at start, and stays in the heap: it fires and is re-inserted without any
 * allocation.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <stdlib.h>
#include <time.h>

#define BATCH 64

struct job {
  struct job *next;
  cp_job_fn fn;
  void *arg;
  uint32_t period_ms;  /* a kept job: re-inserted in the timer heap each time it falls due */
  cp_job_fn drop;      /* the engine's own timers: frees arg if the job never runs */
  bool kept;           /* made once and reused: never freed by a run or a drop */
  _Atomic bool queued; /* a kept job: in its queue, not yet run */
};

static struct job *job_new(cp_job_fn fn, void *arg) {
  struct job *j = mem_alloc(sizeof *j);
  if (j)
    *j = (struct job){.fn = fn, .arg = arg};
  return j;
}

static void job_done(struct job *j) {
  if (j->kept)
    atomic_store_explicit(&j->queued, false, memory_order_release);
  else
    mem_free(j);
}

struct cp_jobq {
  cp_op op; /* the posted completion; its key is the queue */
  cp_service *svc;
  pthread_mutex_t mu;
  struct job *head, *tail;
  bool scheduled; /* its run is in the port or running */
  bool dying;     /* destroyed while scheduled: the run frees it */
};

uint64_t cp__net_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

cp_jobq *cp_jobq_create(cp_service *svc) {
  cp_jobq *q = mem_calloc(1, sizeof *q);
  if (!q)
    return NULL;
  q->svc = svc;
  pthread_mutex_init(&q->mu, NULL);
  return q;
}

/* A job that will never run (its queue or the service goes). */
static void job_drop(struct job *j) {
  if (j->drop)
    j->drop(j->arg);
  job_done(j);
}

static void drop_jobs(cp_jobq *q) {
  for (struct job *j = q->head, *next; j; j = next) {
    next = j->next;
    job_drop(j);
  }
  q->head = q->tail = NULL;
}

static void jobq_free(cp_jobq *q) {
  pthread_mutex_destroy(&q->mu);
  mem_free(q);
}

static void timers_forget(cp_service *svc, cp_jobq *q);

void cp_jobq_destroy(cp_jobq *q) {
  if (!q)
    return;
  cp_service *svc = q->svc;
  timers_forget(svc, q); /* its pending timers go: they would post to freed memory */
  pthread_mutex_lock(&q->mu);
  drop_jobs(q);
  /* A run still in the port (or running: destroy from the queue's own job)
   * would touch q: let it free q instead. Once the workers are stopped no
   * run will come, so free now. */
  bool later = q->scheduled && !atomic_load(&svc->stopped);
  q->dying = later;
  pthread_mutex_unlock(&q->mu);
  if (!later)
    jobq_free(q);
}

/* Append j and schedule a run if none is. 0, or the port's error with j
 * taken back out (still the caller's). */
static int jobq_push(cp_jobq *q, struct job *j) {
  j->next = NULL;
  pthread_mutex_lock(&q->mu);
  if (q->tail)
    q->tail->next = j;
  else
    q->head = j;
  q->tail = j;
  bool post = !q->scheduled;
  q->scheduled = true;
  pthread_mutex_unlock(&q->mu);
  if (!post)
    return 0;
  int rc = cp_port_post(q->svc->port, q, &q->op, 0);
  if (rc) {
    /* The port is closed (or out of memory): take the job back. */
    pthread_mutex_lock(&q->mu);
    q->scheduled = false;
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
      break;
    }
    pthread_mutex_unlock(&q->mu);
  }
  return rc;
}

int cp_jobq_post(cp_jobq *q, cp_job_fn fn, void *arg) {
  if (!q || !fn)
    return -EINVAL;
  /* Once the workers are on their way out, nothing would run it. (A run of
   * this queue may still sit in the port, so `scheduled` cannot tell.) */
  if (atomic_load(&q->svc->stopped))
    return -ESHUTDOWN;
  struct job *j = job_new(fn, arg);
  if (!j)
    return -ENOMEM;
  int rc = jobq_push(q, j);
  if (rc)
    mem_free(j);
  return rc;
}

void cp__jobq_on_run(cp_jobq *q) {
  for (int n = 0; n < BATCH; n++) {
    pthread_mutex_lock(&q->mu);
    if (q->dying) {
      pthread_mutex_unlock(&q->mu);
      jobq_free(q);
      return;
    }
    struct job *j = q->head;
    if (j) {
      q->head = j->next;
      if (!q->head)
        q->tail = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    if (!j)
      break;
    j->fn(j->arg);
    job_done(j);
  }
  pthread_mutex_lock(&q->mu);
  if (q->dying) { /* destroyed by its own last job */
    pthread_mutex_unlock(&q->mu);
    jobq_free(q);
    return;
  }
  bool more = q->head != NULL;
  if (!more)
    q->scheduled = false;
  pthread_mutex_unlock(&q->mu);
  /* More left: go to the back of the port's queue, so others get a turn. */
  if (more && cp_port_post(q->svc->port, q, &q->op, 0) != 0) {
    pthread_mutex_lock(&q->mu);
    q->scheduled = false;
    pthread_mutex_unlock(&q->mu);
  }
}

/* ---- timers ---------------------------------------------------------- */

static bool ent_before(const struct timer_ent *a, const struct timer_ent *b) {
  return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_up(struct timer_ent *h, uint32_t i) {
  struct timer_ent e = h[i];
  while (i > 0 && ent_before(&e, &h[(i - 1) / 2])) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = e;
}

static void heap_pop(struct timer_ent *h, uint32_t *len) {
  struct timer_ent e = h[--*len];
  uint32_t i = 0, n = *len;
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    const struct timer_ent *best = &e;
    if (l < n && ent_before(&h[l], best))
      m = l, best = &h[l];
    if (r < n && ent_before(&h[r], best))
      m = r;
    if (m == i)
      break;
    h[i] = h[m];
    i = m;
  }
  if (n)
    h[i] = e;
}

/* Arm the port timer for the earliest entry (tm_mu held). */
static void arm(cp_service *svc) {
  if (!svc->heap_len || svc->tm_armed || atomic_load(&svc->stopped))
    return;
  uint64_t now = cp__net_now_ms(), due = svc->heap[0].due_ms;
  if (cp_port_timeout(svc->port, &svc->tm_op, NULL, due > now ? due - now : 0) == 0) {
    svc->tm_armed = true;
    svc->tm_armed_due = due;
  }
}

/* Put j in the timer heap, due in delay_ms. 0, -ESHUTDOWN or -ENOMEM (j is
 * still the caller's). */
static int timer_add(cp_jobq *q, uint64_t delay_ms, struct job *j) {
  cp_service *svc = q->svc;
  pthread_mutex_lock(&svc->tm_mu);
  if (atomic_load(&svc->stopped)) {
    pthread_mutex_unlock(&svc->tm_mu);
    return -ESHUTDOWN;
  }
  if (svc->heap_len == svc->heap_cap) {
    uint32_t cap = svc->heap_cap ? svc->heap_cap * 2 : 64;
    struct timer_ent *h = mem_realloc(svc->heap, cap * sizeof *h);
    if (!h) {
      pthread_mutex_unlock(&svc->tm_mu);
      return -ENOMEM;
    }
    svc->heap = h;
    svc->heap_cap = cap;
  }
  /* Round now up, so the job never runs before delay_ms has passed (the
   * timer fires when the rounded-down clock reaches due). */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t due =
      (uint64_t)ts.tv_sec * 1000u + ((uint64_t)ts.tv_nsec + 999999u) / 1000000u + delay_ms;
  svc->heap[svc->heap_len] =
      (struct timer_ent){.due_ms = due, .seq = svc->tm_seq++, .q = q, .job = j};
  heap_up(svc->heap, svc->heap_len++);
  if (!svc->tm_armed)
    arm(svc);
  else if (due < svc->tm_armed_due && !svc->tm_cancelling &&
           cp_port_cancel_op(svc->port, &svc->tm_op) == 0)
    svc->tm_cancelling = true; /* its completion re-arms for this one */
  pthread_mutex_unlock(&svc->tm_mu);
  return 0;
}

int cp_jobq_post_after(cp_jobq *q, uint64_t delay_ms, cp_job_fn fn, void *arg) {
  if (!q || !fn)
    return -EINVAL;
  if (delay_ms == 0)
    return cp_jobq_post(q, fn, arg);
  struct job *j = job_new(fn, arg);
  if (!j)
    return -ENOMEM;
  int rc = timer_add(q, delay_ms, j);
  if (rc)
    mem_free(j);
  return rc;
}

int cp__jobq_post_after_owned(cp_jobq *q, uint64_t delay_ms, cp_job_fn fn, cp_job_fn drop,
                              void *arg) {
  struct job *j = job_new(fn, arg);
  if (!j)
    return -ENOMEM;
  j->drop = drop;
  int rc = timer_add(q, delay_ms ? delay_ms : 1, j);
  if (rc)
    mem_free(j);
  return rc;
}

int cp__jobq_every(cp_jobq *q, uint32_t period_ms, cp_job_fn fn, void *arg, struct job **out) {
  struct job *j = job_new(fn, arg);
  if (!j)
    return -ENOMEM;
  j->kept = true;
  j->period_ms = period_ms ? period_ms : 1;
  int rc = timer_add(q, j->period_ms, j);
  if (rc) {
    mem_free(j);
    return rc;
  }
  *out = j;
  return 0;
}

void cp__job_free_kept(struct job *j) {
  mem_free(j);
}

/* A timer fell due: move its job to its queue (tm_mu held). Nothing is
 * allocated here; returns -ENOMEM if the port had no room for the queue's
 * run, and the caller puts the entry back, due a little later. */
static int timer_run(const struct timer_ent *e) {
  struct job *j = e->job;
  if (j->kept) {
    if (atomic_load_explicit(&j->queued, memory_order_acquire))
      return 0; /* the last one has not run yet: one in the queue is enough */
    atomic_store_explicit(&j->queued, true, memory_order_relaxed);
  }
  int rc = jobq_push(e->q, j);
  if (rc == -ENOMEM) {
    if (j->kept)
      atomic_store_explicit(&j->queued, false, memory_order_relaxed);
    return rc;
  }
  if (rc)
    job_drop(j); /* the port is closed: the service is stopping */
  return 0;
}

void cp__timer_on_fire(cp_service *svc, const cp_completion *c) {
  (void)c;
  struct timer_ent due[BATCH];
  uint32_t n;
  do {
    n = 0;
    pthread_mutex_lock(&svc->tm_mu);
    svc->tm_armed = false;
    svc->tm_cancelling = false;
    uint64_t now = cp__net_now_ms();
    while (svc->heap_len && svc->heap[0].due_ms <= now && n < BATCH) {
      due[n++] = svc->heap[0];
      heap_pop(svc->heap, &svc->heap_len);
    }
    /* Kept jobs go back in at once, into the room they just left. */
    for (uint32_t i = 0; i < n; i++) {
      struct timer_ent e = due[i];
      if (!e.job->kept)
        continue;
      e.due_ms = now + e.job->period_ms;
      e.seq = svc->tm_seq++;
      svc->heap[svc->heap_len] = e;
      heap_up(svc->heap, svc->heap_len++);
    }
    /* Queued before tm_mu goes, so cp_jobq_destroy (which takes tm_mu
     * first) never frees a queue between taking its entry and posting. A
     * port out of memory for the run: the entry goes back, due in 1 ms
     * (never spin here: tm_mu is held), into room it just left. */
    for (uint32_t i = 0; i < n; i++) {
      if (timer_run(&due[i]) == 0 || due[i].job->kept)
        continue; /* a kept one is back in the heap already */
      due[i].due_ms = now + 1;
      due[i].seq = svc->tm_seq++;
      svc->heap[svc->heap_len] = due[i];
      heap_up(svc->heap, svc->heap_len++);
    }
    if (n < BATCH)
      arm(svc);
    pthread_mutex_unlock(&svc->tm_mu);
  } while (n == BATCH);
}

/* Remove q's entries from the timer heap (rebuilt in place). */
static void timers_forget(cp_service *svc, cp_jobq *q) {
  pthread_mutex_lock(&svc->tm_mu);
  uint32_t n = 0;
  for (uint32_t i = 0; i < svc->heap_len; i++) {
    if (svc->heap[i].q != q)
      svc->heap[n++] = svc->heap[i];
    else
      job_drop(svc->heap[i].job);
  }
  if (n != svc->heap_len) {
    svc->heap_len = 0;
    for (uint32_t i = 0; i < n; i++)
      heap_up(svc->heap, svc->heap_len++);
  }
  pthread_mutex_unlock(&svc->tm_mu);
}

void cp__timers_clear(cp_service *svc) {
  pthread_mutex_lock(&svc->tm_mu);
  for (uint32_t i = 0; i < svc->heap_len; i++)
    job_drop(svc->heap[i].job);
  mem_free(svc->heap);
  svc->heap = NULL;
  svc->heap_len = svc->heap_cap = 0;
  pthread_mutex_unlock(&svc->tm_mu);
}
