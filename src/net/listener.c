/*
 * listener.c - the listening socket and its posted accepts (AcceptEx style).
 *
 * `accepts` accept ops stay posted; each re-posts itself when it completes.
 * When descriptors run out (EMFILE/ENFILE, or the kernel is short of memory)
 * an accept does not spin: it re-posts after a back-off (a timer of its own
 * on the service's job queue), and the listener keeps serving once
 * descriptors free up. A connection above max_sessions is accepted and closed
 * at once (refused). Its state is struct cp__listener in the service, which
 * only this file touches.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <stdlib.h>

#define BACKOFF_MS 50

struct acceptor {
  cp_op op;
  cp_service *svc;
  struct sockaddr_storage peer;
  socklen_t peer_len;
  cp_timer backoff; /* re-post after running out of descriptors */
};

void cp__listener_init(cp_service *svc) {
  struct cp__listener *L = &svc->listener;
  L->fd = CP_INVALID_SOCKET;
  atomic_init(&L->port, 0);
  L->acceptors = NULL;
  atomic_init(&L->posted, 0);
  atomic_init(&L->admitted, 0);
  cp__mutex_init(&L->mu);
  L->stopped = false;
}

void cp__listener_fini(cp_service *svc) {
  cp__mutex_destroy(&svc->listener.mu);
}

uint16_t cp__listener_port(const cp_service *svc) {
  return atomic_load(&((cp_service *)svc)->listener.port);
}

unsigned cp__listener_pending(const cp_service *svc) {
  return atomic_load(&((cp_service *)svc)->listener.posted);
}

void cp__listener_unadmit(cp_service *svc) {
  uint64_t was = atomic_fetch_sub(&svc->listener.admitted, 1);
  assert(was > 0); /* a slot given back was taken */
  (void)was;
}

/* 0, or the port's error (the accept holds nothing then). */
static int post(struct acceptor *a) {
  cp_service *svc = a->svc;
  struct cp__listener *L = &svc->listener;
  /* Under mu, so that no accept starts after stop's cancel: a worker that
   * re-posts while stop cancels either starts its accept before the cancel
   * (which ends it) or sees `stopped` (an accept started after the cancel
   * would never complete, and stop would wait for it forever). */
  cp__mutex_lock(&L->mu);
  if (L->stopped || atomic_load(&svc->stopping)) {
    cp__mutex_unlock(&L->mu);
    return CP_ESHUTDOWN;
  }
  a->peer_len = sizeof a->peer;
  atomic_fetch_add(&L->posted, 1);
  int rc = cp_port_accept(svc->port, L->fd, &a->op, (struct sockaddr *)&a->peer, &a->peer_len);
  if (rc)
    atomic_fetch_sub(&L->posted, 1);
  cp__mutex_unlock(&L->mu);
  return rc;
}

static void post_later(void *arg) {
  struct acceptor *a = arg;
  atomic_fetch_sub(&a->svc->listener.posted, 1); /* the back-off's hold */
  post(a);
}

int cp__listener_open(cp_service *svc) {
  struct cp__listener *L = &svc->listener;
  assert(L->fd == CP_INVALID_SOCKET);
  cp_socket_t fd;
  uint16_t port = 0;
  int err = cp__socket_listen_addr(&fd, (struct sockaddr *)&svc->addr, svc->addrlen,
                                   (int)svc->o.backlog, &port);
  if (err)
    return err;
  struct acceptor *acc = mem_calloc(svc->o.accepts, sizeof *acc);
  int rc = acc ? cp_port_associate(svc->port, fd, NULL) : CP_ENOMEM;
  if (rc) {
    mem_free(acc);
    cp_socket_close(fd);
    return rc;
  }
  for (unsigned i = 0; i < svc->o.accepts; i++)
    acc[i].svc = svc;
  L->fd = fd;
  atomic_store(&L->port, port);
  L->acceptors = acc;
  return 0;
}

int cp__listener_arm(cp_service *svc) {
  struct cp__listener *L = &svc->listener;
  for (unsigned i = 0; i < svc->o.accepts; i++) {
    int rc = post(&L->acceptors[i]);
    if (rc && i == 0)
      return rc; /* none posted: the start fails */
    if (rc)
      break; /* fewer accepts posted than asked for: the listener works */
  }
  return 0;
}

void cp__listener_close(cp_service *svc) {
  struct cp__listener *L = &svc->listener;
  assert(atomic_load(&L->posted) == 0);
  /* under mu: cp__listener_stop (from cp_service_stop) may look at fd meanwhile */
  cp__mutex_lock(&L->mu);
  cp_socket_t fd = L->fd;
  struct acceptor *acc = L->acceptors;
  L->fd = CP_INVALID_SOCKET;
  atomic_store(&L->port, 0);
  L->acceptors = NULL;
  cp__mutex_unlock(&L->mu);
  if (fd != CP_INVALID_SOCKET) {
    cp_port_disassociate(svc->port, fd);
    cp_socket_close(fd);
  }
  mem_free(acc);
}

/* max_sessions: take a slot, before the session exists, so workers accepting
 * at the same time cannot both take the last one. */
static bool admit(cp_service *svc) {
  if (!svc->o.max_sessions)
    return true;
  if (atomic_fetch_add(&svc->listener.admitted, 1) < svc->o.max_sessions)
    return true;
  atomic_fetch_sub(&svc->listener.admitted, 1);
  return false;
}

/* A connection came: refuse it, or make it a session. */
static void take(cp_service *svc, cp_socket_t fd) {
  if (atomic_load(&svc->stopping)) {
    cp_socket_close(fd);
    return;
  }
  if (!admit(svc)) {
    stat_add(&svc->st.refused, 1);
    cp_socket_close(fd);
    return;
  }
  cp_session *s = cp__session_new(svc, fd, NULL);
  if (!s) {
    if (svc->o.max_sessions)
      cp__listener_unadmit(svc);
    stat_add(&svc->st.accept_errors, 1);
    cp_socket_close(fd);
    return;
  }
  cp_socket_nodelay(fd, 1);
  /* The session gives the slot back when it ends. */
  cp__session_start(s, svc->o.max_sessions != 0);
  /* Counted once announced: whoever sees `accepts` reach N also sees the N
   * sessions (counted in `sessions` unless they already ended). */
  stat_add(&svc->st.accepts, 1);
  cp_session_put(s); /* the creator's reference */
}

void cp__listener_on_accept(cp_service *svc, const cp_completion *c) {
  struct acceptor *a = container_of(c->op, struct acceptor, op);
  struct cp__listener *L = &svc->listener;
  atomic_fetch_sub(&L->posted, 1);
  if (c->result >= 0) {
    take(svc, (cp_socket_t)c->result);
    post(a);
    return;
  }
  if (c->result == CP_ECANCELED || atomic_load(&svc->stopping))
    return;
  stat_add(&svc->st.accept_errors, 1);
  if (c->result == CP_EMFILE || c->result == CP_ENFILE || c->result == CP_ENOBUFS ||
      c->result == CP_ENOMEM) {
    /* Out of descriptors or memory: back off instead of spinning. */
    atomic_fetch_add(&L->posted, 1);
    if (cp_timer_start(&a->backoff, svc->sysq, BACKOFF_MS, 0, post_later, a) != 0)
      atomic_fetch_sub(&L->posted, 1);
    return;
  }
  post(a); /* ECONNABORTED and the like: that connection is gone, go on */
}

void cp__listener_stop(cp_service *svc) {
  struct cp__listener *L = &svc->listener;
  cp__mutex_lock(&L->mu);
  L->stopped = true;
  if (L->fd != CP_INVALID_SOCKET)
    cp_port_cancel(svc->port, L->fd);
  cp__mutex_unlock(&L->mu);
}
