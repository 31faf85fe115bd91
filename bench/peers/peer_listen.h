/*
 * peer_listen.h - the command line and listening socket the hand-written C echo peers share
 * (header-only: each peer stays one program of one file plus this).
 *
 *   NAME [--host 127.0.0.1] [--port 7777]
 *
 * peer_listen parses that, raises the descriptor limit to its hard maximum, and returns a
 * listening TCP socket (socket flags: SOCK_CLOEXEC and what the caller adds, e.g.
 * SOCK_NONBLOCK). On bad arguments or a failure it prints why and exits.
 */
#ifndef CPORT_BENCH_PEER_LISTEN_H
#define CPORT_BENCH_PEER_LISTEN_H

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

static int peer_listen(int argc, char **argv, const char *name, int sock_flags) {
  const char *host = "127.0.0.1";
  int port = 7777;
  static const struct option longopts[] = {{"host", required_argument, 0, 'H'},
                                           {"port", required_argument, 0, 'p'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "H:p:h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'H':
      host = optarg;
      break;
    case 'p': {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (*end || v < 0 || v > 65535) {
        fprintf(stderr, "%s: bad --port %s\n", name, optarg);
        exit(2);
      }
      port = (int)v;
      break;
    }
    case 'h':
      printf("usage: %s [--host 127.0.0.1] [--port 7777]\n", name);
      exit(0);
    default:
      fprintf(stderr, "usage: %s [--host 127.0.0.1] [--port 7777]\n", name);
      exit(2);
    }
  }

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, NULL, &hints, &ai) != 0) {
      fprintf(stderr, "%s: cannot resolve host %s\n", name, host);
      exit(2);
    }
    sa.sin_addr = ((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr;
    freeaddrinfo(ai);
  }

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | sock_flags, 0);
  if (lfd < 0) {
    fprintf(stderr, "%s: socket: %s\n", name, strerror(errno));
    exit(1);
  }
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, SOMAXCONN) < 0) {
    fprintf(stderr, "%s: cannot listen on %s:%d: %s\n", name, host, port, strerror(errno));
    exit(1);
  }
  fprintf(stderr, "%s: listening on %s:%d\n", name, host, port);
  return lfd;
}

#endif
