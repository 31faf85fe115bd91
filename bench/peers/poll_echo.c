/*
 * poll_echo - the "select model": a single-threaded poll() echo server.
 *
 * What the seeds compare IOCP against: one thread that hands the kernel the
 * whole array of descriptors on every call and then scans it for the ready
 * ones. Each poll() costs time in proportion to the number of connections,
 * idle ones included - the cost a completion port does not pay.
 *  - a nonblocking listener at slot 0, accept4 until EAGAIN;
 *  - on POLLIN: one read into a 64 KiB buffer, one write of the same bytes
 *    back; a short write keeps the rest, stops reading (POLLOUT instead) until
 *    it is written, so every byte is echoed, in order, with bounded memory.
 *
 *   poll_echo [--host 127.0.0.1] [--port 7777]
 *
 * SIGINT/SIGTERM stop it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

struct pend {
  char *data;
  size_t off, len;
};

static char buf[BUF_SIZE];
static volatile sig_atomic_t stop;
static struct pollfd *pfd; /* slot 0: the listener */
static struct pend *pend;  /* per slot */
static size_t n, cap;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void drop(size_t i) { /* close slot i; the last slot moves into it */
  close(pfd[i].fd);
  free(pend[i].data);
  n--;
  pfd[i] = pfd[n];
  pend[i] = pend[n];
}

/* Write what is pending on slot i; false if the connection is gone. */
static int flush(size_t i) {
  struct pend *p = &pend[i];
  while (p->off < p->len) {
    ssize_t w = write(pfd[i].fd, p->data + p->off, p->len - p->off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        return 1;
      return 0;
    }
    p->off += (size_t)w;
  }
  free(p->data);
  *p = (struct pend){0};
  pfd[i].events = POLLIN;
  return 1;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 7777;
  static const struct option opts[] = {
      {"host", required_argument, 0, 'H'}, {"port", required_argument, 0, 'p'}, {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "H:p:", opts, NULL)) != -1) {
    if (o == 'H')
      host = optarg;
    else if (o == 'p')
      port = atoi(optarg);
    else {
      fprintf(stderr, "usage: poll_echo [--host H] [--port P]\n");
      return 2;
    }
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (port < 1 || port > 65535 || inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "poll_echo: bad address %s:%d\n", host, port);
    return 2;
  }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) {
    fprintf(stderr, "poll_echo: %s:%d: %s\n", host, port, strerror(errno));
    return 1;
  }
  cap = 1024;
  pfd = calloc(cap, sizeof *pfd);
  pend = calloc(cap, sizeof *pend);
  if (!pfd || !pend)
    return 1;
  pfd[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
  n = 1;
  fprintf(stderr, "poll_echo: listening on %s:%d\n", host, port);
  while (!stop) {
    int r = poll(pfd, (nfds_t)n, -1);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      perror("poll_echo: poll");
      return 1;
    }
    /* connections first (from the end, so a drop's move does not skip one) */
    for (size_t i = n - 1; i >= 1 && r > 0; i--) {
      short ev = pfd[i].revents;
      if (!ev)
        continue;
      r--;
      if (ev & POLLOUT) {
        if (!flush(i))
          drop(i);
        continue;
      }
      if (!(ev & (POLLIN | POLLHUP | POLLERR)))
        continue;
      ssize_t got = read(pfd[i].fd, buf, sizeof buf);
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
          continue;
        drop(i);
        continue;
      }
      ssize_t w = write(pfd[i].fd, buf, (size_t)got);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        drop(i);
        continue;
      }
      if (w < got) { /* keep the rest; read no more until it is out */
        size_t off = w > 0 ? (size_t)w : 0, rest = (size_t)got - off;
        char *d = malloc(rest);
        if (!d) {
          drop(i);
          continue;
        }
        memcpy(d, buf + off, rest);
        pend[i] = (struct pend){d, 0, rest};
        pfd[i].events = POLLOUT;
      }
    }
    if (pfd[0].revents & POLLIN) {
      for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
          break;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (n == cap) {
          size_t nc = cap * 2;
          struct pollfd *np = realloc(pfd, nc * sizeof *np);
          if (!np) {
            close(fd);
            continue;
          }
          pfd = np;
          struct pend *pp = realloc(pend, nc * sizeof *pp);
          if (!pp) {
            close(fd);
            continue;
          }
          pend = pp;
          cap = nc;
        }
        pfd[n] = (struct pollfd){.fd = fd, .events = POLLIN};
        pend[n] = (struct pend){0};
        n++;
      }
    }
  }
  return 0;
}
