/*
 * echo_port - an echo server on the raw completion-port API.
 *
 * The IOCP echo server of the seeds, done right:
 *  - N worker threads loop on one port (GetQueuedCompletionStatus);
 *  - accepts are pre-posted (AcceptEx) and re-posted as each completes;
 *  - receives use the port's buffer pool, so an idle client holds no buffer,
 *    and the received buffer is sent straight back (no copy);
 *  - a connection is reference counted: every op in flight holds a
 *    reference, and the memory goes only with the last one, so a client that
 *    vanishes mid-I/O can never make a worker touch freed memory.
 *
 *   echo_port [--host 127.0.0.1] [--port 7777] [--threads 4] [--backend auto|uring|epoll]
 *             [--accepts 64]
 * SIGINT/SIGTERM (Ctrl+C or a console close on Windows) stop it cleanly: cport/stop.h.
 */
#define _GNU_SOURCE
#include <cport.h>

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

enum io_type { IO_ACCEPT = 1, IO_RECV, IO_SEND };

/* The overlapped, with our own type tag next to it. */
struct io {
  cp_op op;
  enum io_type type;
};

struct acceptor {
  struct io io;
  struct sockaddr_storage peer;
  socklen_t peer_len;
};

struct conn {
  cp_socket_t fd;
  atomic_int refs;   /* one per op in flight */
  struct io recv_io; /* at most one recv ... */
  struct io send_io; /* ... and one send in flight: echo keeps the order */
  cp_buf iov;
  void *buf;                /* the pooled buffer being echoed */
  struct conn *prev, *next; /* registry, so shutdown frees everyone */
};

struct server {
  cp_port *port;
  cp_socket_t lfd;
  struct acceptor *acceptors;
  int n_accepts;
  pthread_mutex_t mu;
  struct conn *conns;
  atomic_bool stopping;
};

static void conn_put(struct server *s, struct conn *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  /* Last reference: no op of this connection can complete any more. */
  pthread_mutex_lock(&s->mu);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  pthread_mutex_unlock(&s->mu);
  cp_port_disassociate(s->port, c->fd);
  cp_socket_close(c->fd);
  free(c);
}

/* Start a recv; on failure the connection is over. */
static void conn_recv(struct server *s, struct conn *c) {
  atomic_fetch_add(&c->refs, 1);
  if (cp_port_recv_pooled(s->port, c->fd, &c->recv_io.op) != 0)
    conn_put(s, c);
}

static void post_accept(struct server *s, struct acceptor *a) {
  a->peer_len = sizeof a->peer;
  int rc = cp_port_accept(s->port, s->lfd, &a->io.op, (struct sockaddr *)&a->peer, &a->peer_len);
  if (rc && rc != CP_ESHUTDOWN)
    fprintf(stderr, "echo_port: accept: %s\n", cp_strerror(rc));
}

static void on_accept(struct server *s, struct acceptor *a, int64_t res) {
  if (res >= 0) {
    cp_socket_t fd = (cp_socket_t)res;
    struct conn *c = calloc(1, sizeof *c);
    cp_socket_nodelay(fd, 1);
    if (!c || cp_port_associate(s->port, fd, c) != 0) {
      free(c);
      cp_socket_close(fd);
    } else {
      c->fd = fd;
      c->recv_io.type = IO_RECV;
      c->send_io.type = IO_SEND;
      atomic_init(&c->refs, 1); /* held until the first recv is started */
      pthread_mutex_lock(&s->mu);
      c->next = s->conns;
      if (s->conns)
        s->conns->prev = c;
      s->conns = c;
      pthread_mutex_unlock(&s->mu);
      conn_recv(s, c);
      conn_put(s, c);
    }
  } else if (res == CP_EMFILE || res == CP_ENFILE) {
    usleep(10000); /* out of descriptors: let some close, then accept again */
  }
  if (!atomic_load(&s->stopping))
    post_accept(s, a);
}

static void on_recv(struct server *s, struct conn *c, const cp_completion *e) {
  if (e->result <= 0) { /* 0: client closed; <0: reset or cancelled */
    conn_put(s, c);
    return;
  }
  c->buf = e->buf;
  c->iov = cp_buf_init(e->buf, (size_t)e->result);
  /* The recv's reference passes to the send. */
  if (cp_port_send(s->port, c->fd, &c->send_io.op, &c->iov, 1) != 0) {
    cp_port_buf_release(s->port, c->buf);
    conn_put(s, c);
  }
}

static void on_send(struct server *s, struct conn *c, const cp_completion *e) {
  cp_port_buf_release(s->port, c->buf);
  c->buf = NULL;
  if (e->result >= 0)
    conn_recv(s, c); /* the send's reference passes back to the next recv... */
  conn_put(s, c);    /* ...which took its own; drop the send's */
}

static void *worker(void *arg) {
  struct server *s = arg;
  cp_completion ev[128];
  for (;;) {
    int n = cp_port_wait(s->port, ev, 128, -1);
    if (n == CP_PORT_CLOSED)
      return NULL;
    for (int i = 0; i < n; i++) {
      struct io *io = container_of(ev[i].op, struct io, op);
      switch (io->type) {
      case IO_ACCEPT:
        on_accept(s, container_of(io, struct acceptor, io), ev[i].result);
        break;
      case IO_RECV:
        on_recv(s, container_of(io, struct conn, recv_io), &ev[i]);
        break;
      case IO_SEND:
        on_send(s, container_of(io, struct conn, send_io), &ev[i]);
        break;
      }
    }
  }
}

static void usage(FILE *f) {
  fprintf(f, "usage: echo_port [--host ADDR] [--port N] [--threads N] "
             "[--backend auto|uring|epoll] [--accepts N]\n");
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 7777, accepts = 64;
  long threads = 4;
  cp_port_options opts = {0};
  static const struct option longopts[] = {{"host", required_argument, 0, 'h'},
                                           {"port", required_argument, 0, 'p'},
                                           {"threads", required_argument, 0, 't'},
                                           {"backend", required_argument, 0, 'b'},
                                           {"accepts", required_argument, 0, 'a'},
                                           {"help", no_argument, 0, '?'},
                                           {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    char *end = NULL;
    switch (ch) {
    case 'h':
      host = optarg;
      break;
    case 'p':
      port = (int)strtol(optarg, &end, 10);
      if (*end || port < 0 || port > 65535) {
        fprintf(stderr, "echo_port: bad --port %s\n", optarg);
        return 2;
      }
      break;
    case 't':
      threads = strtol(optarg, &end, 10);
      if (*end || threads < 1 || threads > 256) {
        fprintf(stderr, "echo_port: bad --threads %s\n", optarg);
        return 2;
      }
      break;
    case 'a':
      accepts = (int)strtol(optarg, &end, 10);
      if (*end || accepts < 1 || accepts > 4096) {
        fprintf(stderr, "echo_port: bad --accepts %s\n", optarg);
        return 2;
      }
      break;
    case 'b':
      if (cp_backend_from_name(optarg, &opts.backend) != 0) {
        fprintf(stderr, "echo_port: bad --backend %s\n", optarg);
        return 2;
      }
      break;
    default:
      usage(ch == '?' && optind > 0 && !strcmp(argv[optind - 1], "--help") ? stdout : stderr);
      return ch == '?' && !strcmp(argv[optind - 1], "--help") ? 0 : 2;
    }
  }
  if (optind < argc) {
    usage(stderr);
    return 2;
  }

  /* SIGINT/SIGTERM (a console's Ctrl+C or close) wake the waiting main thread. */
  cp_stop_install();

  struct server s = {.lfd = CP_INVALID_SOCKET};
  pthread_mutex_init(&s.mu, NULL);
  int rc = cp_port_create(&s.port, &opts);
  if (rc) {
    fprintf(stderr, "echo_port: cannot create the port: %s\n", cp_strerror(rc));
    return 1;
  }
  uint16_t bound;
  rc = cp_socket_listen(&s.lfd, host, (uint16_t)port, 4096, &bound);
  if (rc) {
    fprintf(stderr, "echo_port: cannot listen on %s:%d: %s\n", host, port, cp_strerror(rc));
    cp_port_destroy(s.port);
    return rc == CP_EINVAL ? 2 : 1;
  }
  cp_port_associate(s.port, s.lfd, &s);
  s.n_accepts = accepts;
  s.acceptors = calloc((size_t)accepts, sizeof *s.acceptors);
  for (int i = 0; i < accepts; i++) {
    s.acceptors[i].io.type = IO_ACCEPT;
    post_accept(&s, &s.acceptors[i]);
  }
  pthread_t *tids = calloc((size_t)threads, sizeof *tids);
  for (long i = 0; i < threads; i++)
    pthread_create(&tids[i], NULL, worker, &s);
  fprintf(stderr, "echo_port: listening on %s:%u, %ld threads, backend %s\n", host, bound, threads,
          cp_backend_name(cp_port_backend(s.port)));

  cp_stop_wait(-1);
  atomic_store(&s.stopping, true);
  cp_port_close(s.port); /* every worker returns CP_PORT_CLOSED */
  for (long i = 0; i < threads; i++)
    pthread_join(tids[i], NULL);
  cp_port_destroy(s.port); /* cancels and waits out everything in flight */
  cp_socket_close(s.lfd);
  unsigned long n = 0;
  for (struct conn *c = s.conns, *next; c; c = next, n++) {
    next = c->next;
    cp_socket_close(c->fd);
    free(c);
  }
  free(s.acceptors);
  free(tids);
  pthread_mutex_destroy(&s.mu);
  fprintf(stderr, "echo_port: stopped (%lu connections closed)\n", n);
  return 0;
}
