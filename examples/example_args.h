/* example_args.h - the flags every example server takes:
 * --host (default 127.0.0.1), --port (default 7777), --threads (default: CPU
 * count), --backend auto|uring|epoll. Header-only, for the examples. */
#ifndef CPORT_EXAMPLE_ARGS_H
#define CPORT_EXAMPLE_ARGS_H

#include <cport.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct example_args {
  const char *host;
  uint16_t port;
  unsigned threads;
  cp_backend backend;
};

/* Parse argv; on a bad flag print usage and exit 2 (0 for --help). */
static inline void example_parse(int argc, char **argv, struct example_args *a) {
  static const struct option opts[] = {
      {"host", required_argument, 0, 'h'},    {"port", required_argument, 0, 'p'},
      {"threads", required_argument, 0, 't'}, {"backend", required_argument, 0, 'b'},
      {"help", no_argument, 0, 'H'},          {0, 0, 0, 0}};
  *a = (struct example_args){"127.0.0.1", 7777, 0, CP_BACKEND_AUTO}; /* 0 threads: CPU count */
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    char *end = NULL;
    long v;
    switch (c) {
    case 'h':
      a->host = optarg;
      continue;
    case 'p':
      v = strtol(optarg, &end, 10);
      if (*end || v < 0 || v > 65535)
        break;
      a->port = (uint16_t)v;
      continue;
    case 't':
      v = strtol(optarg, &end, 10);
      if (*end || v < 1 || v > 256)
        break;
      a->threads = (unsigned)v;
      continue;
    case 'b':
      if (cp_backend_from_name(optarg, &a->backend) == 0)
        continue;
      break;
    case 'H':
      printf("usage: %s [--host ADDR] [--port N] [--threads N] [--backend auto|uring|epoll]\n",
             argv[0]);
      exit(0);
    }
    fprintf(stderr,
            "usage: %s [--host ADDR] [--port N] [--threads N] "
            "[--backend auto|uring|epoll]\n",
            argv[0]);
    exit(2);
  }
  if (optind < argc) {
    fprintf(stderr, "%s: unexpected argument %s\n", argv[0], argv[optind]);
    exit(2);
  }
}

/* Catch SIGINT/SIGTERM (Ctrl+C, Ctrl+Break or a console close on Windows; cport/stop.h): call
 * before starting the service, then example_wait_stop() returns when one arrives. */
static inline void example_catch_stop(void) {
  if (cp_stop_install() != 0) {
    fprintf(stderr, "cannot catch stop requests\n");
    exit(1);
  }
}

static inline void example_wait_stop(void) {
  cp_stop_wait(-1);
}

#endif
