/*
 * listener.c - the listening socket and its posted accepts (AcceptEx style).
 *
 * `accepts` accept ops stay posted; each re-posts itself when it completes.
 * When descriptors run out (EMFILE/ENFILE, or the kernel is short of memory)
 * an accept does not spin: it re-posts after a back-off on the service's own
 * job queue, and the listener keeps serving once descriptors free up. A
 * connection above max_sessions is accepted and closed at once (refused).
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <unistd.h>

#define BACKOFF_MS 50

struct acceptor {
  cp_op op;
  cp_service *svc;
  struct sockaddr_storage peer;
  socklen_t peer_len;
  cp_timer backoff; /* re-post after running out of descriptors */
};

static void post(struct acceptor *a) {
  cp_service *svc = a->svc;
  if (atomic_load(&svc->stopping))
    return;
  a->peer_len = sizeof a->peer;
  atomic_fetch_add(&svc->accepts_posted, 1);
  if (cp_port_accept(svc->port, svc->lfd, &a->op, (struct sockaddr *)&a->peer, &a->peer_len))
    atomic_fetch_sub(&svc->accepts_posted, 1);
}

static void post_later(void *arg) {
  struct acceptor *a = arg;
  atomic_fetch_sub(&a->svc->accepts_posted, 1); /* the back-off's hold */
  post(a);
}

int cp__listener_start(cp_service *svc) {
  int fd = socket(svc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&svc->addr, svc->addrlen) < 0 ||
      listen(fd, (int)svc->o.backlog) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  svc->listen_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                    : ((struct sockaddr_in *)&ss)->sin_port);
  int rc = cp_port_associate(svc->port, fd, NULL);
  if (!rc && !(svc->acceptors = mem_calloc(svc->o.accepts, sizeof *svc->acceptors)))
    rc = -ENOMEM;
  if (rc) {
    close(fd);
    return rc;
  }
  svc->lfd = fd;
  for (unsigned i = 0; i < svc->o.accepts; i++) {
    struct acceptor *a = &svc->acceptors[i];
    a->svc = svc;
    post(a);
  }
  return 0;
}

void cp__listener_on_accept(cp_service *svc, const cp_completion *c) {
  struct acceptor *a = container_of(c->op, struct acceptor, op);
  atomic_fetch_sub(&svc->accepts_posted, 1);
  if (c->result >= 0) {
    int fd = (int)c->result;
    cp_session *s = NULL;
    if (atomic_load(&svc->stopping)) {
      close(fd);
      return;
    }
    /* A slot is taken before the session exists, so workers accepting at
     * the same time cannot both take the last one; the session gives it
     * back when it ends. */
    bool capped = svc->o.max_sessions != 0;
    if (capped && atomic_fetch_add(&svc->admitted, 1) >= svc->o.max_sessions) {
      atomic_fetch_sub(&svc->admitted, 1);
      stat_add(&svc->n_refused, 1);
      close(fd);
    } else if (!(s = cp__session_new(svc, fd, false))) {
      if (capped)
        atomic_fetch_sub(&svc->admitted, 1);
      stat_add(&svc->n_accept_errors, 1);
      close(fd);
    } else {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (capped)
        s->flags |= SF_ADMITTED; /* we own the strand until cp__session_start */
      cp__session_start(s);
      /* Counted once announced: whoever sees `accepts` reach N also sees the
       * N sessions (counted in `sessions` unless they already ended). */
      stat_add(&svc->n_accepts, 1);
      cp_session_put(s); /* the creator's reference */
    }
    post(a);
    return;
  }
  if (c->result == -ECANCELED || atomic_load(&svc->stopping))
    return;
  stat_add(&svc->n_accept_errors, 1);
  if (c->result == -EMFILE || c->result == -ENFILE || c->result == -ENOBUFS ||
      c->result == -ENOMEM) {
    /* Out of descriptors or memory: back off instead of spinning. */
    atomic_fetch_add(&svc->accepts_posted, 1);
    if (cp_timer_start(&a->backoff, svc->sysq, BACKOFF_MS, 0, post_later, a) != 0)
      atomic_fetch_sub(&svc->accepts_posted, 1);
    return;
  }
  post(a); /* ECONNABORTED and the like: that connection is gone, go on */
}

void cp__listener_stop(cp_service *svc) {
  if (svc->lfd >= 0)
    cp_port_cancel(svc->port, svc->lfd);
}
