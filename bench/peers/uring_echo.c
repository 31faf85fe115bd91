/*
 * uring_echo - a minimal hand-written io_uring echo server: the io_uring floor the engine is
 * measured against, next to epoll_echo.
 *
 * What an author who knows today's io_uring would write, and nothing more:
 *  - one thread, one ring, set up with SINGLE_ISSUER + DEFER_TASKRUN where the kernel has it
 *    (6.1), else COOP_TASKRUN (5.19), else plain; the ring fd registered;
 *  - one multishot accept on the listener;
 *  - one multishot receive per connection into a provided-buffer ring (no buffer is held by an
 *    idle connection);
 *  - each received buffer is sent back as it is, then returned to the buffer ring when the send
 *    completes. At most one send per connection is with the kernel (two sends on one socket
 *    have no order in io_uring); data that arrives meanwhile is copied behind it;
 *  - submit and wait in one io_uring_enter (io_uring_submit_and_wait), completions reaped in
 *    a batch.
 * So the common path is one recv CQE, one send SQE + CQE, one enter per batch.
 *
 *   uring_echo [--host 127.0.0.1] [--port 7777]
 *
 * Two variables take features away, to measure what each is worth (bench/run-port's
 * uring_echo/coop and uring_echo/oneshot):
 *   URING_ECHO_SETUP=coop    COOP_TASKRUN instead of SINGLE_ISSUER + DEFER_TASKRUN (what a ring
 *                            that several threads submit to and reap from can have; cport's)
 *   URING_ECHO_RECV=oneshot  a one-shot receive (buffer select) per message, posted when the
 *                            reply's send has completed (read after write, as cport's engine)
 *
 * SIGINT/SIGTERM stop it. Nothing is printed on the hot path.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_listen.h"

#define NBUF 4096 /* provided buffers (a power of two) */
#define BUFSZ 4096
#define BGID 1

enum { T_ACCEPT, T_RECV, T_SEND };

struct conn {
  int fd;
  int recv_armed; /* a multishot recv is with the kernel */
  int sending;    /* a send is with the kernel */
  int dead;       /* closing: no new sends, freed once nothing is with the kernel */
  int out_bid;    /* the send's buffer: a provided buffer, or -1 for out_heap */
  char *out_heap;
  size_t out_off, out_len;
  char *pend; /* bytes received while a send was with the kernel */
  size_t pend_len, pend_cap;
  int in_starved; /* on the starved list */
  struct conn *next_starved;
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static int lfd;
static volatile sig_atomic_t stop;
static struct conn *starved; /* connections whose multishot recv ended for want of buffers */
static int oneshot;          /* URING_ECHO_RECV=oneshot */
static int first_coop;       /* URING_ECHO_SETUP=coop */

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static uint64_t tag(struct conn *c, int t) {
  return (uint64_t)(uintptr_t)c | (uint64_t)t;
}

static struct io_uring_sqe *sqe_get(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  if (!sqe) {
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

static void buf_return(int bid) {
  io_uring_buf_ring_add(br, bufs + (size_t)bid * BUFSZ, BUFSZ, (unsigned short)bid,
                        io_uring_buf_ring_mask(NBUF), 0);
  io_uring_buf_ring_advance(br, 1);
}

static void arm_accept(void) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, tag(NULL, T_ACCEPT));
}

static void arm_recv(struct conn *c) {
  struct io_uring_sqe *sqe = sqe_get();
  if (oneshot)
    io_uring_prep_recv(sqe, c->fd, NULL, BUFSZ, 0);
  else
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BGID;
  io_uring_sqe_set_data64(sqe, tag(c, T_RECV));
  c->recv_armed = 1;
}

static void send_out(struct conn *c) {
  struct io_uring_sqe *sqe = sqe_get();
  const char *base = c->out_bid >= 0 ? bufs + (size_t)c->out_bid * BUFSZ : c->out_heap;
  io_uring_prep_send(sqe, c->fd, base + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, tag(c, T_SEND));
  c->sending = 1;
}

static void conn_maybe_free(struct conn *c) {
  if (!c->dead || c->recv_armed || c->sending || c->in_starved)
    return;
  close(c->fd);
  free(c->out_heap);
  free(c->pend);
  free(c);
}

static void conn_kill(struct conn *c) {
  if (!c->dead) {
    c->dead = 1;
    shutdown(c->fd, SHUT_RDWR); /* ends the multishot recv */
  }
  conn_maybe_free(c);
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE))
    c->recv_armed = 0;
  int res = cqe->res;
  if (res > 0) {
    int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (c->dead) {
      buf_return(bid);
    } else if (!c->sending) {
      c->out_bid = bid;
      c->out_off = 0;
      c->out_len = (size_t)res;
      send_out(c);
    } else {
      if (c->pend_len + (size_t)res > c->pend_cap) {
        size_t cap = c->pend_cap ? c->pend_cap * 2 : BUFSZ;
        while (cap < c->pend_len + (size_t)res)
          cap *= 2;
        char *p = realloc(c->pend, cap);
        if (!p) {
          buf_return(bid);
          conn_kill(c);
          return;
        }
        c->pend = p;
        c->pend_cap = cap;
      }
      memcpy(c->pend + c->pend_len, bufs + (size_t)bid * BUFSZ, (size_t)res);
      c->pend_len += (size_t)res;
      buf_return(bid);
    }
    if (!c->recv_armed && !c->dead && !(oneshot && c->sending))
      arm_recv(c); /* the kernel ended the multishot (e.g. CQ overflow): arm it again;
                    * one-shot: the next receive goes after the reply's send */
    conn_maybe_free(c);
    return;
  }
  if (res == -ENOBUFS && !c->dead) {
    c->next_starved = starved; /* re-armed once a send gives a buffer back */
    c->in_starved = 1;
    starved = c;
    return;
  }
  conn_kill(c); /* EOF or error */
}

static void on_send(struct conn *c, int res) {
  c->sending = 0;
  if (res > 0 && !c->dead) {
    c->out_off += (size_t)res;
    if (c->out_off < c->out_len) {
      send_out(c); /* short send: the rest */
      return;
    }
  }
  if (c->out_bid >= 0) {
    buf_return(c->out_bid);
    c->out_bid = -1;
    while (starved) {
      struct conn *s = starved;
      starved = s->next_starved;
      s->in_starved = 0;
      if (!s->dead) {
        arm_recv(s);
        break;
      }
      conn_maybe_free(s);
    }
  }
  if (res <= 0) {
    conn_kill(c);
    return;
  }
  if (c->pend_len && !c->dead) { /* what came in meanwhile goes next */
    free(c->out_heap);
    c->out_heap = c->pend;
    c->out_len = c->pend_len;
    c->out_off = 0;
    c->pend = NULL;
    c->pend_len = c->pend_cap = 0;
    send_out(c);
    return;
  }
  free(c->out_heap);
  c->out_heap = NULL;
  if (oneshot && !c->dead && !c->recv_armed && !c->in_starved)
    arm_recv(c); /* read after write */
  conn_maybe_free(c);
}

static void on_accept(struct io_uring_cqe *cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE) && !stop)
    arm_accept();
  if (cqe->res < 0)
    return;
  int fd = cqe->res, one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct conn *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return;
  }
  c->fd = fd;
  c->out_bid = -1;
  arm_recv(c);
}

static const char *ring_kind = "plain"; /* the setup ring_setup got */

static int ring_setup(void) {
  static const unsigned tries[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                       IORING_SETUP_SUBMIT_ALL,
                                   IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, 0};
  size_t first = first_coop ? 1 : 0;
  int rc = -EINVAL;
  for (size_t i = first; i < sizeof tries / sizeof tries[0]; i++) {
    struct io_uring_params prm;
    memset(&prm, 0, sizeof prm);
    prm.flags = tries[i] | IORING_SETUP_CQSIZE;
    prm.cq_entries = 65536;
    rc = io_uring_queue_init_params(4096, &ring, &prm);
    if (rc == 0) {
      ring_kind = i == 0 ? "SINGLE_ISSUER+DEFER_TASKRUN" : i == 1 ? "COOP_TASKRUN" : "plain";
      break;
    }
  }
  if (rc)
    return rc;
  io_uring_register_ring_fd(&ring); /* optional: enter without the fd lookup */
  size_t brlen = sizeof(struct io_uring_buf) * NBUF;
  br = mmap(NULL, brlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bufs =
      mmap(NULL, (size_t)NBUF * BUFSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (br == MAP_FAILED || bufs == MAP_FAILED)
    return -ENOMEM;
  io_uring_buf_ring_init(br);
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (unsigned long)br;
  reg.ring_entries = NBUF;
  reg.bgid = BGID;
  rc = io_uring_register_buf_ring(&ring, &reg, 0);
  if (rc)
    return rc;
  for (int i = 0; i < NBUF; i++)
    io_uring_buf_ring_add(br, bufs + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i,
                          io_uring_buf_ring_mask(NBUF), i);
  io_uring_buf_ring_advance(br, NBUF);
  return 0;
}

int main(int argc, char **argv) {
  lfd = peer_listen(argc, argv, "uring_echo", 0);
  const char *recv_mode = getenv("URING_ECHO_RECV");
  oneshot = recv_mode && strcmp(recv_mode, "oneshot") == 0;
  const char *setup = getenv("URING_ECHO_SETUP");
  first_coop = setup && strcmp(setup, "coop") == 0;
  int rc = ring_setup();
  if (rc) {
    fprintf(stderr, "uring_echo: io_uring setup: %s\n", strerror(-rc));
    return 1;
  }

  /* bench/run-port checks the variant it asked for ("backend coop", "backend oneshot"). */
  const char *variant =
      first_coop ? (oneshot ? "coop-oneshot" : "coop") : (oneshot ? "oneshot" : "default");
  fprintf(stderr, "uring_echo: backend %s (ring: %s; receive: %s)\n", variant, ring_kind,
          oneshot ? "one-shot, after the send" : "multishot");

  struct sigaction sact = {.sa_handler = on_signal};
  sigemptyset(&sact.sa_mask);
  sigaction(SIGINT, &sact, NULL);
  sigaction(SIGTERM, &sact, NULL);
  signal(SIGPIPE, SIG_IGN);

  arm_accept();
  while (!stop) {
    rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY) {
      fprintf(stderr, "uring_echo: io_uring_enter: %s\n", strerror(-rc));
      return 1;
    }
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      uint64_t ud = io_uring_cqe_get_data64(cqe);
      struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)3);
      switch ((int)(ud & 3)) {
      case T_ACCEPT:
        on_accept(cqe);
        break;
      case T_RECV:
        on_recv(c, cqe);
        break;
      case T_SEND:
        on_send(c, cqe->res);
        break;
      }
      n++;
    }
    io_uring_cq_advance(&ring, n);
  }
  fprintf(stderr, "uring_echo: stopped\n");
  io_uring_queue_exit(&ring);
  close(lfd);
  return 0;
}
