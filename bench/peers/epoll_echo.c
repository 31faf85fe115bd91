/*
 * epoll_echo - the hand-written floor: a minimal single-threaded epoll echo server.
 *
 * The usual kind, the one the completion-port echo is measured against:
 *  - one thread, one epoll instance, level-triggered, a batch of events per epoll_wait;
 *  - a nonblocking listener in the same epoll, accept4 until EAGAIN;
 *  - on readable: one read into a static 64 KiB buffer, one write of the same bytes back.
 *    That is the whole common path: epoll_wait, read, write.
 *  - if the write is short, the rest goes into a per-connection buffer, reading stops
 *    (back-pressure) and the connection waits for EPOLLOUT; once the rest is written it
 *    goes back to reading. So every byte is echoed, in order, and memory stays bounded.
 *
 *   epoll_echo [--host 127.0.0.1] [--port 7777]
 *
 * SIGINT/SIGTERM stop it (they are blocked except inside epoll_pwait, so no wake-up is
 * lost). Nothing is printed on the hot path.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_listen.h"

#define MAX_EVENTS 512
#define BUF_SIZE (64 * 1024)

struct conn {
  int fd;
  char *pend;      /* bytes read but not yet written back (only after a short write) */
  size_t pend_off; /* first unwritten byte of pend */
  size_t pend_len; /* end of pend */
};

static char buf[BUF_SIZE];
static volatile sig_atomic_t stop;
static int listener_tag; /* epoll data.ptr of the listener: its address */

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void conn_close(struct conn *c) {
  close(c->fd); /* also removes it from the epoll set */
  free(c->pend);
  free(c);
}

/* Write what is pending. 1: all written, 0: the socket is full again, -1: error. */
static int conn_flush(struct conn *c) {
  while (c->pend_off < c->pend_len) {
    ssize_t n = write(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    c->pend_off += (size_t)n;
  }
  free(c->pend);
  c->pend = NULL;
  c->pend_off = c->pend_len = 0;
  return 1;
}

static void set_events(int ep, struct conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
    perror("epoll_echo: epoll_ctl(MOD)");
    exit(1);
  }
}

static void on_readable(int ep, struct conn *c) {
  ssize_t n = read(c->fd, buf, sizeof buf);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return;
    conn_close(c); /* EOF or error */
    return;
  }
  ssize_t w = write(c->fd, buf, (size_t)n);
  if (w == n)
    return; /* the common path */
  if (w < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      conn_close(c);
      return;
    }
    w = 0;
  }
  /* Short write: keep the rest, stop reading until it is out. */
  size_t rest = (size_t)(n - w);
  c->pend = malloc(rest);
  if (!c->pend) {
    conn_close(c);
    return;
  }
  memcpy(c->pend, buf + w, rest);
  c->pend_off = 0;
  c->pend_len = rest;
  set_events(ep, c, EPOLLOUT);
}

static void on_writable(int ep, struct conn *c) {
  int r = conn_flush(c);
  if (r < 0)
    conn_close(c);
  else if (r > 0)
    set_events(ep, c, EPOLLIN);
}

static void on_accept(int ep, int lfd, int *spare_fd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if ((errno == EMFILE || errno == ENFILE) && *spare_fd >= 0) {
        /* Out of descriptors: accept and drop one connection with the spare fd, so a
         * level-triggered listener does not spin, then take the spare back. */
        close(*spare_fd);
        int drop = accept(lfd, NULL, NULL);
        if (drop >= 0)
          close(drop);
        *spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        continue;
      }
      return; /* EAGAIN, or nothing to do about it */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
      close(fd);
      free(c);
    }
  }
}

int main(int argc, char **argv) {
  int lfd = peer_listen(argc, argv, "epoll_echo", SOCK_NONBLOCK);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("epoll_echo: epoll_create1");
    return 1;
  }
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listener_tag};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
    perror("epoll_echo: epoll_ctl(ADD listener)");
    return 1;
  }
  int spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

  /* SIGINT/SIGTERM are blocked everywhere but inside epoll_pwait. */
  sigset_t block, waitmask;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &waitmask);
  sigdelset(&waitmask, SIGINT);
  sigdelset(&waitmask, SIGTERM);
  struct sigaction sact = {.sa_handler = on_signal};
  sigemptyset(&sact.sa_mask);
  sigaction(SIGINT, &sact, NULL);
  sigaction(SIGTERM, &sact, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct epoll_event evs[MAX_EVENTS];
  while (!stop) {
    int n = epoll_pwait(ep, evs, MAX_EVENTS, -1, &waitmask);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      perror("epoll_echo: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == &listener_tag) {
        on_accept(ep, lfd, &spare_fd);
        continue;
      }
      struct conn *c = evs[i].data.ptr;
      /* A connection's events come once per epoll_wait, and a closed one is never
       * reported again, so c is live here. */
      if (c->pend) {
        if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
          on_writable(ep, c);
      } else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(ep, c);
      }
    }
  }
  fprintf(stderr, "epoll_echo: stopped\n");
  close(lfd);
  close(ep);
  return 0;
}
