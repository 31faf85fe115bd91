/*
 * timers.c - the service's timers and the engine's clock.
 *
 * One min-heap of timers for the service, ordered by due time (then start
 * order), and one port timeout op armed for the earliest. A timer that falls
 * due is moved to its job queue like any other job (its node is the timer's
 * own: nothing is allocated when it fires); a repeating one goes back in the
 * heap at once, into the room it just left. A new timer earlier than the
 * armed one cancels the armed op; its completion re-arms for the earliest.
 *
 * Exactly once: a timer is pending while it is in the heap (under the
 * timers' lock) or its job is in its queue's list (under the queue's lock,
 * taken inside the timers' lock). cp_timer_cancel takes both and removes it
 * from wherever it is; the worker that runs it takes it out of the list
 * under the queue's lock before calling fn. So either the run or the cancel
 * finds it, never both.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <assert.h>
#include <stdlib.h>

#define BATCH 64

/* The timers' lock, and (debug builds) whether this thread holds it. */
#ifndef NDEBUG
static _Thread_local const struct cp__timers *tm_held;
#endif
static void tm_lock(struct cp__timers *T) {
  cp__mutex_lock(&T->mu);
#ifndef NDEBUG
  assert(tm_held == NULL);
  tm_held = T;
#endif
}
static void tm_unlock(struct cp__timers *T) {
#ifndef NDEBUG
  assert(tm_held == T);
  tm_held = NULL;
#endif
  cp__mutex_unlock(&T->mu);
}
#define ASSERT_TM_LOCKED(T) assert(tm_held == (T))

/* The engine's clock is the platform's one clock, in milliseconds. */
uint64_t cp__net_now_ms(void) {
  return cp__now_ns() / 1000000u;
}

/* Now rounded up: a timer due at now_up + delay never runs before delay has
 * passed (it fires when the rounded-down clock reaches its due time). */
static uint64_t now_ms_up(void) {
  return (cp__now_ns() + 999999u) / 1000000u;
}

static struct timer *tm_of(cp_timer *t) {
  return (struct timer *)(void *)t;
}

/* The heap's key: the due time in ms, then the start order, so timers due
 * in the same millisecond run in the order they were started (the seq part
 * wraps after 16 M starts: then one such tie may come out of order). */
#define SEQ_BITS 24
static uint64_t key_of(uint64_t due_ms, uint64_t seq) {
  return due_ms << SEQ_BITS | (seq & ((1u << SEQ_BITS) - 1));
}
static uint64_t due_of(const struct timer *t) {
  return t->node.key >> SEQ_BITS;
}
static struct timer *timer_of(struct cp__heap_node *n) {
  return container_of(n, struct timer, node);
}
static bool pending_in_heap(struct cp__timers *T, const struct timer *t) {
  return cp__heap_contains(&T->heap, &t->node);
}

/* ---- arming the port ------------------------------------------------- */

/* Arm the port timer for the earliest entry (lock held). */
static void arm(cp_service *svc) {
  struct cp__timers *T = &svc->timers;
  ASSERT_TM_LOCKED(T);
  struct cp__heap_node *min = cp__heap_min(&T->heap);
  if (!min || T->armed || T->stopped || !T->running)
    return;
  uint64_t now = cp__net_now_ms(), due = due_of(timer_of(min));
  if (cp_port_timeout(cp_service_port(svc), &T->op, NULL, due > now ? due - now : 0) == 0) {
    T->armed = true;
    T->armed_due = due;
  }
}

void cp__timers_run(cp_service *svc) {
  struct cp__timers *T = &svc->timers;
  tm_lock(T);
  T->running = true;
  arm(svc);
  tm_unlock(T);
}

void cp__timers_init(cp_service *svc) {
  struct cp__timers *T = &svc->timers;
  *T = (struct cp__timers){0};
  cp__mutex_init(&T->mu);
  cp__heap_init(&T->heap, 0); /* allocates nothing yet: cannot fail */
}

/* Room in the heap for `more` entries besides the reserved slots (lock
 * held). The heap keeps room for every reservation, whether its timer waits
 * or not (cap >= unreserved entries + reserved): so a reserved timer's push
 * never allocates. */
static bool heap_room(struct cp__timers *T, uint32_t more) {
  ASSERT_TM_LOCKED(T);
  uint64_t need = (uint64_t)cp__heap_len(&T->heap) + T->reserved + more;
  if (need <= cp__heap_cap(&T->heap))
    return true;
  if (need > UINT32_MAX / 2)
    return false;
  uint32_t cap = cp__heap_cap(&T->heap) ? cp__heap_cap(&T->heap) : 16;
  while (cap < need)
    cap *= 2;
  return cp__heap_reserve(&T->heap, cap) == 0 || cp__heap_reserve(&T->heap, (uint32_t)need) == 0;
}

int cp__timers_reserve(cp_service *svc) {
  struct cp__timers *T = &svc->timers;
  tm_lock(T);
  bool ok = heap_room(T, 1);
  if (ok)
    T->reserved++;
  tm_unlock(T);
  return ok ? 0 : CP_ENOMEM;
}

void cp__timers_unreserve(cp_service *svc) {
  struct cp__timers *T = &svc->timers;
  tm_lock(T);
  assert(T->reserved > 0);
  T->reserved--;
  tm_unlock(T);
}

/* Put t in the heap, due in delay_ms (lock held, t not pending); reserved:
 * t holds a reservation (cp__timers_reserve), so nothing is allocated. */
static int timer_add(cp_service *svc, struct timer *t, uint64_t delay_ms, bool reserved) {
  struct cp__timers *T = &svc->timers;
  ASSERT_TM_LOCKED(T);
  if (T->stopped || cp__service_stopped(svc))
    return CP_ESHUTDOWN;
  /* a reserved timer's slot is counted in T->reserved: room for it is there */
  assert(!reserved || cp__heap_len(&T->heap) < cp__heap_cap(&T->heap));
  if (!reserved && !heap_room(T, 1))
    return CP_ENOMEM;
  uint64_t due = now_ms_up() + delay_ms;
  cp__heap_node_init(&t->node, key_of(due, T->seq++));
  int rc = cp__heap_push(&T->heap, &t->node);
  assert(rc == 0); /* there was room */
  (void)rc;
  if (!T->armed)
    arm(svc);
  else if (due < T->armed_due && !T->cancelling &&
           cp_port_cancel_op(cp_service_port(svc), &T->op) == 0)
    T->cancelling = true; /* its completion re-arms for this one */
  return 0;
}

static int start(struct timer *t, cp_jobq *q, uint64_t delay_ms, uint64_t period_ms, cp_job_fn fn,
                 cp_job_fn drop, void *arg, uint8_t kind, bool reserved) {
  cp_service *svc = cp__jobq_service(q);
  struct cp__timers *T = &svc->timers;
  tm_lock(T);
  if (pending_in_heap(T, t) || atomic_load_explicit(&t->job.queued, memory_order_acquire)) {
    tm_unlock(T);
    return CP_EBUSY;
  }
  t->q = q;
  t->svc = svc;
  t->period_ms = period_ms;
  t->job.fn = fn;
  t->job.arg = arg;
  t->job.drop = drop;
  t->job.kind = kind;
  int rc = timer_add(svc, t, delay_ms, reserved);
  tm_unlock(T);
  return rc;
}

int cp_timer_start(cp_timer *ct, cp_jobq *q, uint64_t delay_ms, uint64_t period_ms, cp_job_fn fn,
                   void *arg) {
  if (!ct || !q || !fn)
    return CP_EINVAL;
  return start(tm_of(ct), q, delay_ms, period_ms, fn, NULL, arg, JOB_USER, false);
}

int cp_timer_cancel(cp_timer *ct) {
  if (!ct)
    return CP_EINVAL;
  struct timer *t = tm_of(ct);
  if (!t->svc)
    return CP_ENOENT; /* never started */
  struct cp__timers *T = &t->svc->timers;
  tm_lock(T);
  bool was = cp__heap_remove(&T->heap, &t->node);
  /* t->q only while its job is queued: a queue that was destroyed has
   * dropped the job first (queued is 0 then). */
  if (atomic_load_explicit(&t->job.queued, memory_order_acquire) && cp__jobq_unlink(t->q, &t->job))
    was = true;
  tm_unlock(T);
  return was ? 0 : CP_ENOENT;
}

static int post_alloc(cp_jobq *q, uint64_t delay_ms, cp_job_fn fn, cp_job_fn drop, void *arg) {
  if (cp__service_stopped(cp__jobq_service(q)))
    return CP_ESHUTDOWN;
  struct timer *t = mem_calloc(1, sizeof *t);
  if (!t)
    return CP_ENOMEM;
  int rc = start(t, q, delay_ms, 0, fn, drop, arg, JOB_ALLOC, false);
  if (rc)
    mem_free(t);
  return rc;
}

int cp_jobq_post_after(cp_jobq *q, uint64_t delay_ms, cp_job_fn fn, void *arg) {
  if (!q || !fn)
    return CP_EINVAL;
  if (delay_ms == 0)
    return cp_jobq_post(q, fn, arg);
  return post_alloc(q, delay_ms, fn, NULL, arg);
}

int cp__timer_start_reserved(cp_timer *ct, cp_jobq *q, uint64_t delay_ms, cp_job_fn fn, void *arg) {
  return start(tm_of(ct), q, delay_ms, 0, fn, NULL, arg, JOB_USER, true);
}

int cp__timer_post_owned(cp_jobq *q, uint64_t delay_ms, cp_job_fn fn, cp_job_fn drop, void *arg) {
  return post_alloc(q, delay_ms ? delay_ms : 1, fn, drop, arg);
}

/* ---- firing ---------------------------------------------------------- */

/* t fell due (lock held, t out of the heap): re-insert a repeating one, and
 * queue its job unless its last run still waits in the queue. */
static void fall_due(struct cp__timers *T, struct timer *t, uint64_t now) {
  ASSERT_TM_LOCKED(T);
  if (t->period_ms) {
    t->node.key = key_of(now + t->period_ms, T->seq++);
    int rc = cp__heap_push(&T->heap, &t->node); /* into the room it just left */
    assert(rc == 0);
    (void)rc;
  }
  if (atomic_exchange_explicit(&t->job.queued, 1, memory_order_acq_rel))
    return; /* merged into the run still waiting */
  /* Queued before the lock goes, so cp_jobq_destroy (which takes it first)
   * never frees a queue between taking its entry and posting. */
  if (cp__jobq_push(t->q, &t->job) != 0 && !pending_in_heap(T, t))
    cp__job_drop(&t->job); /* the port is closed: the service is stopping */
}

void cp__timer_on_fire(cp_service *svc, const cp_completion *c) {
  (void)c;
  struct cp__timers *T = &svc->timers;
  /* This is the completion of the one armed op: it is free again. Only
   * here - not on every round below: between rounds the lock is let go, and
   * another thread may arm the op again (then arm() below sees it armed). */
  tm_lock(T);
  assert(T->armed);
  T->armed = false;
  T->cancelling = false;
  tm_unlock(T);
  uint32_t n;
  do {
    n = 0;
    tm_lock(T);
    uint64_t now = cp__net_now_ms();
    struct cp__heap_node *min;
    while (n < BATCH && (min = cp__heap_min(&T->heap)) && due_of(timer_of(min)) <= now) {
      cp__heap_pop(&T->heap);
      fall_due(T, timer_of(min), now);
      n++;
    }
    if (n < BATCH)
      arm(svc);
    tm_unlock(T);
  } while (n == BATCH);
}

void cp__timers_forget(cp_service *svc, cp_jobq *q) {
  struct cp__timers *T = &svc->timers;
  tm_lock(T);
  for (uint32_t i = 0; i < cp__heap_len(&T->heap);) {
    struct timer *t = timer_of(T->heap.a[i]);
    if (t->q != q) {
      i++;
      continue;
    }
    cp__heap_remove(&T->heap, &t->node); /* another entry moves into i: look at it next */
    if (!atomic_load(&t->job.queued))
      cp__job_drop(&t->job); /* (a queued one goes with the queue's list) */
  }
  tm_unlock(T);
}

void cp__timers_stop(cp_service *svc) {
  struct cp__timers *T = &svc->timers;
  tm_lock(T);
  T->stopped = true;
  if (T->armed && !T->cancelling)
    T->cancelling = cp_port_cancel_op(cp_service_port(svc), &T->op) == 0;
  tm_unlock(T);
  /* Wait for the armed op to come back: its completion touches T. */
  for (;;) {
    tm_lock(T);
    bool armed = T->armed;
    tm_unlock(T);
    if (!armed)
      break;
    cp__thread_yield();
  }
}

void cp__timers_destroy(cp_service *svc) {
  struct cp__timers *T = &svc->timers;
  tm_lock(T);
  struct cp__heap_node *min;
  while ((min = cp__heap_pop(&T->heap))) {
    struct timer *t = timer_of(min);
    if (!atomic_load(&t->job.queued))
      cp__job_drop(&t->job); /* (a queued one goes with its queue) */
  }
  cp__heap_free(&T->heap);
  tm_unlock(T);
  cp__mutex_destroy(&T->mu);
}
