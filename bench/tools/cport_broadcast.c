/*
 * cport_broadcast - broadcast throughput of the engine.
 *
 *   cport_broadcast [--sessions 1000] [--size 32] [--duration 5] [--warmup 1]
 *                   [--backend auto|uring|epoll] [--threads 1] [--window 64]
 *                   [--server-cpu N --client-cpu M] [--json]
 *
 * A server service (--threads workers) holds --sessions sessions; a forked
 * receiver process (its own CPU with --client-cpu) holds the other ends in one
 * epoll loop and reads everything. The main thread broadcasts one --size-byte
 * packet (id 1, body: a 64-bit sequence number, then a pattern) to every
 * session, over and over, from a job queue on the service's workers (where a
 * game's rooms broadcast from), keeping at most --window broadcasts queued
 * (cp_service_stats.send_queue_bytes) so memory stays bounded. The receiver
 * checks every packet on every connection: header, sequence (each connection
 * sees 0, 1, 2, ... with no gap), pattern. Reported over the window after the
 * warm-up: packets delivered per second (read by the receiver, all
 * connections), broadcasts per second, and the server's gathered sends.
 * Exit 1 on any verification error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cport.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct shared {
  _Atomic uint64_t delivered; /* packets read and verified, all connections */
  _Atomic int ready;          /* receiver: all connected */
  _Atomic int failed;
  char error[256];
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu) {
  if (cpu < 0)
    return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set))
    perror("cport_broadcast: sched_setaffinity");
}

static uint8_t pattern(uint64_t seq, size_t j) {
  return (uint8_t)(seq * 7 + j);
}

struct rconn {
  int fd;
  uint64_t seq;  /* next expected */
  uint32_t have; /* bytes of the current packet */
  uint8_t pkt[];
};

static void fail(struct shared *sh, const char *msg) {
  snprintf(sh->error, sizeof sh->error, "%s", msg);
  atomic_store(&sh->failed, 1);
  _exit(1);
}

/* The receiver process: connect n, read and verify until the parent kills us. */
static void receiver(struct shared *sh, int pipe_rd, int n, size_t size, int cpu) {
  pin(cpu);
  uint16_t port;
  if (read(pipe_rd, &port, sizeof port) != sizeof port)
    _exit(0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct rconn **c = calloc((size_t)n, sizeof *c);
  for (int i = 0; i < n; i++) {
    c[i] = calloc(1, sizeof **c + size);
    c[i]->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c[i]->fd < 0 || connect(c[i]->fd, (struct sockaddr *)&a, sizeof a))
      fail(sh, "receiver: connect failed");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, c[i]->fd, &ev);
  }
  atomic_store(&sh->ready, 1);
  static uint8_t buf[1 << 16];
  struct epoll_event evs[256];
  for (;;) {
    int k = epoll_wait(ep, evs, 256, -1);
    for (int e = 0; e < k; e++) {
      struct rconn *r = evs[e].data.ptr;
      ssize_t got = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
      if (got == 0)
        _exit(0); /* the server went away: the run is over */
      if (got < 0) {
        if (errno == EAGAIN || errno == EINTR)
          continue;
        _exit(0);
      }
      uint64_t done = 0;
      for (ssize_t off = 0; off < got;) {
        size_t take = size - r->have;
        if (take > (size_t)(got - off))
          take = (size_t)(got - off);
        memcpy(r->pkt + r->have, buf + off, take);
        r->have += (uint32_t)take;
        off += (ssize_t)take;
        if (r->have < size)
          break;
        r->have = 0;
        uint64_t seq;
        memcpy(&seq, r->pkt + 4, 8);
        if ((r->pkt[0] | r->pkt[1] << 8) != (int)size || r->pkt[2] != 1 || r->pkt[3] != 0)
          fail(sh, "receiver: bad packet header");
        if (seq != r->seq)
          fail(sh, "receiver: a packet was lost, duplicated or reordered");
        for (size_t j = 12; j < size; j++)
          if (r->pkt[j] != pattern(seq, j))
            fail(sh, "receiver: corrupted packet body");
        r->seq++;
        done++;
      }
      atomic_fetch_add_explicit(&sh->delivered, done, memory_order_relaxed);
    }
  }
}

struct pump {
  cp_service *svc;
  cp_jobq *q;
  size_t size;
  uint64_t limit; /* bytes queued in all sessions before the pump waits */
  struct shared *sh;
  _Atomic uint64_t seq;
  _Atomic bool stop;
};

/* One job: broadcast until the queues hold `limit` bytes, then come back. */
static void pump_run(void *arg) {
  struct pump *pu = arg;
  if (atomic_load(&pu->stop) || atomic_load(&pu->sh->failed))
    return;
  cp_service_stats st;
  for (int i = 0; i < 64; i++) {
    cp_service_get_stats(pu->svc, &st);
    if (st.send_queue_bytes > pu->limit)
      break;
    uint64_t seq = atomic_load_explicit(&pu->seq, memory_order_relaxed);
    cp_sendbuf *b = cp_packet_alloc(1, pu->size - 4);
    if (!b)
      break;
    uint8_t *p = cp_sendbuf_data(b);
    memcpy(p + 4, &seq, 8);
    for (size_t j = 12; j < pu->size; j++)
      p[j] = pattern(seq, j);
    cp_service_broadcast(pu->svc, b);
    cp_sendbuf_unref(b);
    atomic_store_explicit(&pu->seq, seq + 1, memory_order_relaxed);
  }
  /* post, not run in a loop: the worker handles the send completions between */
  cp_jobq_post(pu->q, pump_run, pu);
}

int main(int argc, char **argv) {
  int sessions = 1000, threads = 1, window = 64, server_cpu = -1, client_cpu = -1;
  size_t size = 32;
  double duration = 5, warmup = 1;
  bool json = false;
  cp_backend backend = CP_BACKEND_AUTO;
  static const struct option opts[] = {{"sessions", required_argument, 0, 'n'},
                                       {"size", required_argument, 0, 's'},
                                       {"duration", required_argument, 0, 'D'},
                                       {"warmup", required_argument, 0, 'w'},
                                       {"backend", required_argument, 0, 'b'},
                                       {"threads", required_argument, 0, 't'},
                                       {"window", required_argument, 0, 'W'},
                                       {"server-cpu", required_argument, 0, 'S'},
                                       {"client-cpu", required_argument, 0, 'C'},
                                       {"json", no_argument, 0, 'j'},
                                       {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "n:s:D:w:b:t:W:S:C:j", opts, NULL)) != -1) {
    switch (o) {
    case 'n':
      sessions = atoi(optarg);
      break;
    case 's':
      size = (size_t)atol(optarg);
      break;
    case 'D':
      duration = atof(optarg);
      break;
    case 'w':
      warmup = atof(optarg);
      break;
    case 't':
      threads = atoi(optarg);
      break;
    case 'W':
      window = atoi(optarg);
      break;
    case 'S':
      server_cpu = atoi(optarg);
      break;
    case 'C':
      client_cpu = atoi(optarg);
      break;
    case 'j':
      json = true;
      break;
    case 'b':
      if (cp_backend_from_name(optarg, &backend) != 0) {
        fprintf(stderr, "cport_broadcast: bad --backend %s\n", optarg);
        return 2;
      }
      break;
    default:
      fprintf(stderr, "usage: see the comment at the top of bench/tools/cport_broadcast.c\n");
      return 2;
    }
  }
  if (sessions < 1 || sessions > 9000 || size < 12 || size > 65535 || duration <= 0 || warmup < 0 ||
      threads < 1 || window < 1) {
    fprintf(stderr, "cport_broadcast: bad arguments (sessions 1..9000, size 12..65535)\n");
    return 2;
  }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  struct shared *sh =
      mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int pp[2];
  if (sh == MAP_FAILED || pipe(pp))
    return 1;
  pid_t child = fork();
  if (child == 0) {
    close(pp[1]);
    receiver(sh, pp[0], sessions, size, client_cpu);
    _exit(0);
  }
  close(pp[0]);
  pin(server_cpu);

  cp_service_options so = {
      .kind = CP_SERVICE_SERVER, .threads = (unsigned)threads, .port_opts = {.backend = backend}};
  cp_service *svc;
  int rc = cp_service_create(&svc, &so);
  if (!rc)
    rc = cp_service_start(svc);
  if (rc) {
    fprintf(stderr, "cport_broadcast: %s\n", cp_strerror(rc));
    kill(child, SIGKILL);
    return 1;
  }
  uint16_t port = cp_service_listen_port(svc);
  if (write(pp[1], &port, sizeof port) != sizeof port)
    return 1;
  cp_service_stats st;
  for (;;) {
    cp_service_get_stats(svc, &st);
    if (st.sessions == (uint64_t)sessions && atomic_load(&sh->ready))
      break;
    if (atomic_load(&sh->failed) || waitpid(child, NULL, WNOHANG) == child) {
      fprintf(stderr, "cport_broadcast: %s\n", sh->error[0] ? sh->error : "receiver died");
      return 1;
    }
    usleep(1000);
  }
  /* The broadcasts run on a job queue, as a game's rooms do: on the
   * service's worker, so every send's completion is handled by the thread
   * that will wait next, with no wake-up of another thread per send. */
  struct pump pu = {.svc = svc,
                    .q = cp_jobq_create(svc),
                    .size = size,
                    .limit = (uint64_t)window * (uint64_t)sessions * size,
                    .sh = sh};
  if (!pu.q || cp_jobq_post(pu.q, pump_run, &pu))
    return 1;
  double t0 = now_s(), t_start = t0 + warmup, t_end = t_start + duration;
  while (now_s() < t_start && !atomic_load(&sh->failed))
    usleep(1000);
  cp_service_get_stats(svc, &st);
  uint64_t d_start = atomic_load(&sh->delivered), seq_start = atomic_load(&pu.seq),
           sends_start = st.sends;
  t_start = now_s();
  while (now_s() < t_end && !atomic_load(&sh->failed))
    usleep(1000);
  uint64_t seq = atomic_load(&pu.seq);
  double t_stop = now_s();
  uint64_t delivered = atomic_load(&sh->delivered) - d_start;
  cp_service_get_stats(svc, &st);
  uint64_t sends = st.sends - sends_start;
  double win = t_stop - t_start;
  atomic_store(&pu.stop, true);
  cp_service_stop(svc, 2000);
  cp_jobq_destroy(pu.q);
  cp_service_destroy(svc);
  int status = 0;
  waitpid(child, &status, 0);
  if (atomic_load(&sh->failed)) {
    fprintf(stderr, "cport_broadcast: FAILED: %s\n", sh->error);
    return 1;
  }
  double dps = (double)delivered / win, bps = (double)(seq - seq_start) / win;
  const char *be = backend == CP_BACKEND_URING   ? "uring"
                   : backend == CP_BACKEND_EPOLL ? "epoll"
                                                 : "auto";
  if (json)
    printf("{\"backend\":\"%s\",\"sessions\":%d,\"size\":%zu,\"threads\":%d,\"duration_s\":%.3f,"
           "\"broadcasts_per_s\":%.1f,\"delivered_per_s\":%.1f,\"delivered_bytes_per_s\":%.1f,"
           "\"packets_per_send\":%.2f,\"errors\":0}\n",
           be, sessions, size, threads, win, bps, dps, dps * (double)size,
           sends ? (double)(seq - seq_start) * sessions / (double)sends : 0.0);
  else
    printf("cport_broadcast (%s): %d sessions, %zu-byte packet: %.0f broadcasts/s, %.0f packets "
           "delivered/s (%.1f MB/s), %.2f packets per gathered send; every packet verified\n",
           be, sessions, size, bps, dps, dps * (double)size / 1e6,
           sends ? (double)(seq - seq_start) * sessions / (double)sends : 0.0);
  return 0;
}
