/*
 * idle_conns - open N idle connections to a server and hold them.
 *
 *   idle_conns --port P [--host 127.0.0.1] --conns N
 *
 * Connects N sockets (nonblocking, at most 256 in progress at once), prints
 * "ready N" on stdout once all are connected, then sends nothing and holds
 * them until stdin closes or SIGTERM. For measuring what an idle connection
 * costs a server (bench/run-idle). Exit 1 if a connect fails.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define WINDOW 256

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, n = 0;
  static const struct option opts[] = {{"host", required_argument, 0, 'H'},
                                       {"port", required_argument, 0, 'p'},
                                       {"conns", required_argument, 0, 'c'},
                                       {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "H:p:c:", opts, NULL)) != -1) {
    if (o == 'H')
      host = optarg;
    else if (o == 'p')
      port = atoi(optarg);
    else if (o == 'c')
      n = atoi(optarg);
    else
      return 2;
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (port < 1 || port > 65535 || n < 1 || inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "usage: idle_conns --port P [--host H] --conns N\n");
    return 2;
  }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  int *fds = calloc((size_t)n, sizeof *fds);
  struct pollfd *pf = calloc(WINDOW, sizeof *pf);
  if (!fds || !pf)
    return 1;
  int done = 0;
  while (done < n) {
    int k = n - done < WINDOW ? n - done : WINDOW;
    for (int i = 0; i < k; i++) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        fprintf(stderr, "idle_conns: socket: %s (after %d)\n", strerror(errno), done + i);
        return 1;
      }
      if (connect(fd, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) {
        fprintf(stderr, "idle_conns: connect: %s\n", strerror(errno));
        return 1;
      }
      fds[done + i] = fd;
      pf[i] = (struct pollfd){.fd = fd, .events = POLLOUT};
    }
    for (int left = k; left > 0;) {
      int r = poll(pf, (nfds_t)k, 10000);
      if (r <= 0) {
        fprintf(stderr, "idle_conns: connects timed out\n");
        return 1;
      }
      for (int i = 0; i < k; i++) {
        if (pf[i].fd < 0 || !pf[i].revents)
          continue;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(pf[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
          fprintf(stderr, "idle_conns: connect: %s\n", strerror(err));
          return 1;
        }
        pf[i].fd = -1;
        left--;
      }
    }
    done += k;
  }
  printf("ready %d\n", n);
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0)
    ;
  return 0;
}
