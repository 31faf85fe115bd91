/*
 * cport-server - the GameServer: echo, packet-echo and chat rooms on cport.
 *
 *   cport-server [--host 127.0.0.1] [--port 7777] [--mode echo|packet-echo|chat]
 *                [--threads N] [--backend auto|uring|epoll] [--max-sessions N]
 *                [--max-packet BYTES] [--idle-timeout SECONDS]
 *                [--metrics HOST:PORT|off] [--quiet]
 *
 * Prints a stats line a second (unless --quiet), serves Prometheus metrics on
 * the metrics address, and on SIGINT/SIGTERM drains, prints final counters
 * and exits 0.
 */
#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_ECHO, MODE_PACKET_ECHO, MODE_CHAT };
static const char *const mode_names[] = {"echo", "packet-echo", "chat"};

static cp_service *svc;
static enum mode mode = MODE_CHAT;

static void usage(FILE *f) {
  fprintf(f,
          "usage: cport-server [options]\n"
          "  --host ADDR            address to listen on (default 127.0.0.1)\n"
          "  --port N               port (default 7777)\n"
          "  --mode MODE            echo | packet-echo | chat (default chat)\n"
          "  --threads N            worker threads (default: CPU count)\n"
          "  --backend B            auto | uring | epoll (default auto)\n"
          "  --max-sessions N       refuse connections above N (default unlimited)\n"
          "  --max-packet BYTES     largest packet, header included (default 16384)\n"
          "  --idle-timeout SECONDS close sessions that complete no packet for this long\n"
          "                         (echo: send no byte); 0 = never (default 0)\n"
          "  --metrics HOST:PORT    Prometheus metrics address (default 127.0.0.1:9100), or off\n"
          "  --quiet                no stats line\n"
          "  --help\n");
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || v > max || s[0] == '-')
    return false;
  *out = v;
  return true;
}

static void die_usage(const char *flag, const char *val) {
  fprintf(stderr, "cport-server: bad value for --%s: '%s'\n(see cport-server --help)\n", flag, val);
  exit(2);
}

/* ---- echo modes ------------------------------------------------------ */

static void echo_raw(cp_session *s, const void *data, size_t len) {
  cp_sendbuf *b = cp_sendbuf_copy(data, len);
  int rc = b ? cp_session_send(s, b) : -ENOMEM;
  cp_sendbuf_unref(b);
  if (rc == -ENOMEM) {
    /* An echo that cannot be sent must not be skipped silently. */
    srv_log_session(s, NULL, "out of memory for an echo; disconnecting");
    cp_session_disconnect(s, false);
  }
}

static void echo_packet(cp_session *s, const cp_packet *pkt) {
  echo_raw(s, pkt->data, pkt->size);
}

/* ---- metrics --------------------------------------------------------- */

static void fill_metrics(FILE *f) {
  cp_service_stats st;
  cp_service_get_stats(svc, &st);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
#define G(name, help, v)                                                                           \
  fprintf(f,                                                                                       \
          "# HELP cport_" name " " help "\n# TYPE cport_" name " gauge\ncport_" name " %" PRIu64   \
          "\n",                                                                                    \
          (uint64_t)(v))
#define C(name, help, v)                                                                           \
  fprintf(f,                                                                                       \
          "# HELP cport_" name "_total " help "\n# TYPE cport_" name "_total counter\ncport_" name \
          "_total %" PRIu64 "\n",                                                                  \
          (uint64_t)(v))
  G("sessions", "Connected sessions.", st.sessions);
  C("accepts", "Connections accepted.", st.accepts);
  C("refused", "Connections refused over --max-sessions.", st.refused);
  C("accept_errors", "Failed accepts (EMFILE and the like).", st.accept_errors);
  C("bytes_received", "Bytes received.", st.bytes_in);
  C("bytes_sent", "Bytes sent.", st.bytes_out);
  C("packets_received", "Packets received (echo: receives).", st.packets_in);
  C("packets_sent", "Packets queued for sending.", st.packets_out);
  C("sends", "Gathered sends made.", st.sends);
  G("send_queue_bytes", "Bytes queued for sending in all sessions.", st.send_queue_bytes);
  G("rooms", "Chat rooms.", mode == MODE_CHAT ? chat_rooms() : 0);
  fprintf(f, "# HELP cport_disconnects_total Sessions ended, by reason.\n"
             "# TYPE cport_disconnects_total counter\n");
  for (int i = 0; i < CP_REASON_COUNT; i++)
    fprintf(f, "cport_disconnects_total{reason=\"%s\"} %" PRIu64 "\n", cp_reason_name((cp_reason)i),
            st.disconnects[i]);
  fprintf(f,
          "# HELP cport_cpu_seconds_total CPU time of the server process.\n"
          "# TYPE cport_cpu_seconds_total counter\ncport_cpu_seconds_total %.6f\n",
          (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
              (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
#undef G
#undef C
}

static uint64_t total_disconnects(const cp_service_stats *st) {
  uint64_t n = 0;
  for (int i = 0; i < CP_REASON_COUNT; i++)
    n += st->disconnects[i];
  return n;
}

static void print_final(const cp_service_stats *st) {
  fprintf(stderr,
          "cport-server: final: accepts %" PRIu64 ", refused %" PRIu64 ", packets in %" PRIu64
          ", out %" PRIu64 ", bytes in %" PRIu64 ", out %" PRIu64 ", disconnects:",
          st->accepts, st->refused, st->packets_in, st->packets_out, st->bytes_in, st->bytes_out);
  for (int i = 0; i < CP_REASON_COUNT; i++)
    if (st->disconnects[i])
      fprintf(stderr, " %s=%" PRIu64, cp_reason_name((cp_reason)i), st->disconnects[i]);
  fprintf(stderr, "\n");
}

int main(int argc, char **argv) {
  cp_log_set(srv_log_library, CP_LOG_INFO, NULL); /* the library's messages: our log */
  const char *host = "127.0.0.1", *metrics = "127.0.0.1:9100";
  unsigned long port = 7777, threads = 0, max_sessions = 0, max_packet = 16384, idle = 0;
  cp_backend backend = CP_BACKEND_AUTO;
  bool quiet = false;
  static const struct option opts[] = {
      {"host", required_argument, 0, 'h'},       {"port", required_argument, 0, 'p'},
      {"mode", required_argument, 0, 'm'},       {"threads", required_argument, 0, 't'},
      {"backend", required_argument, 0, 'b'},    {"max-sessions", required_argument, 0, 'S'},
      {"max-packet", required_argument, 0, 'P'}, {"idle-timeout", required_argument, 0, 'i'},
      {"metrics", required_argument, 0, 'M'},    {"quiet", no_argument, 0, 'q'},
      {"help", no_argument, 0, '?' + 256},       {0, 0, 0, 0}};
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      host = optarg;
      break;
    case 'p':
      if (!parse_uint(optarg, 65535, &port))
        die_usage("port", optarg);
      break;
    case 'm':
      if (!strcmp(optarg, "echo"))
        mode = MODE_ECHO;
      else if (!strcmp(optarg, "packet-echo"))
        mode = MODE_PACKET_ECHO;
      else if (!strcmp(optarg, "chat"))
        mode = MODE_CHAT;
      else
        die_usage("mode", optarg);
      break;
    case 't':
      if (!parse_uint(optarg, 256, &threads) || !threads)
        die_usage("threads", optarg);
      break;
    case 'b':
      if (cp_backend_from_name(optarg, &backend) != 0)
        die_usage("backend", optarg);
      break;
    case 'S':
      if (!parse_uint(optarg, UINT_MAX, &max_sessions))
        die_usage("max-sessions", optarg);
      break;
    case 'P':
      if (!parse_uint(optarg, 65535, &max_packet) || max_packet < 4)
        die_usage("max-packet", optarg);
      break;
    case 'i':
      if (!parse_uint(optarg, 86400, &idle))
        die_usage("idle-timeout", optarg);
      break;
    case 'M':
      metrics = optarg;
      break;
    case 'q':
      quiet = true;
      break;
    case '?' + 256:
      usage(stdout);
      return 0;
    default:
      fprintf(stderr, "cport-server: unknown or incomplete option '%s'\n", argv[optind - 1]);
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "cport-server: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  char mhost[64] = "";
  unsigned long mport = 0;
  if (strcmp(metrics, "off")) {
    const char *colon = strrchr(metrics, ':');
    if (!colon || (size_t)(colon - metrics) >= sizeof mhost || colon == metrics ||
        !parse_uint(colon + 1, 65535, &mport))
      die_usage("metrics", metrics);
    memcpy(mhost, metrics, (size_t)(colon - metrics));
  }

  /* Many players: use every descriptor we may. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  cp_service_options o = {.kind = CP_SERVICE_SERVER,
                          .host = host,
                          .port = (uint16_t)port,
                          .threads = (unsigned)threads,
                          .port_opts = {.backend = backend},
                          .max_sessions = (unsigned)max_sessions,
                          .max_packet = (uint16_t)max_packet,
                          .raw = mode == MODE_ECHO,
                          .idle_timeout_ms = (unsigned)idle * 1000u};
  if (mode == MODE_ECHO)
    o.callbacks =
        (cp_session_callbacks){.on_raw = echo_raw, .on_disconnected = srv_on_disconnected};
  else if (mode == MODE_PACKET_ECHO)
    o.callbacks =
        (cp_session_callbacks){.on_packet = echo_packet, .on_disconnected = srv_on_disconnected};
  else
    o.callbacks = (cp_session_callbacks){.on_connected = chat_on_connected,
                                         .on_packet = chat_on_packet,
                                         .on_disconnected = chat_on_disconnected};
  int rc = cp_service_create(&svc, &o);
  if (rc) {
    fprintf(stderr, "cport-server: %s\n", cp_strerror(rc));
    return 1;
  }
  if (mode == MODE_CHAT)
    chat_init(svc);
  rc = cp_service_start(svc);
  if (rc) {
    fprintf(stderr, "cport-server: cannot listen on %s:%lu: %s\n", host, port, cp_strerror(rc));
    cp_service_destroy(svc);
    return 1;
  }
  cp_service *msvc = NULL;
  if (mport || *mhost) {
    rc = metrics_start(mhost, (uint16_t)mport, backend, fill_metrics, &msvc);
    if (rc) {
      fprintf(stderr, "cport-server: cannot serve metrics on %s: %s\n", metrics, cp_strerror(rc));
      cp_service_destroy(svc);
      return 1;
    }
  }
  char maddr[80] = "off";
  if (msvc)
    snprintf(maddr, sizeof maddr, "%s:%u", mhost, cp_service_listen_port(msvc));
  fprintf(stderr, "cport-server: %s mode on %s:%u, %u threads, backend %s, metrics %s\n",
          mode_names[mode], host, cp_service_listen_port(svc),
          threads ? (unsigned)threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN),
          cp_backend_name(cp_port_backend(cp_service_port(svc))), maddr);

  cp_service_stats prev, st;
  cp_service_get_stats(svc, &prev);
  struct timespec one = {.tv_sec = 1, .tv_nsec = 0};
  for (;;) {
    int sig = sigtimedwait(&sigs, NULL, &one);
    if (sig == SIGINT || sig == SIGTERM)
      break;
    cp_service_get_stats(svc, &st);
    if (!quiet)
      fprintf(stderr,
              "sessions %" PRIu64 "  in %" PRIu64 "/s  out %" PRIu64 "/s  %.1f MB/s in  %.1f MB/s "
              "out  disconnects %" PRIu64 "\n",
              st.sessions, st.packets_in - prev.packets_in, st.packets_out - prev.packets_out,
              (double)(st.bytes_in - prev.bytes_in) / 1e6,
              (double)(st.bytes_out - prev.bytes_out) / 1e6, total_disconnects(&st));
    prev = st;
  }
  fprintf(stderr, "cport-server: draining\n");
  cp_service_stop(svc, 2000);
  cp_service_get_stats(svc, &st);
  print_final(&st);
  if (msvc)
    cp_service_destroy(msvc);
  if (mode == MODE_CHAT)
    chat_shutdown();
  cp_service_destroy(svc);
  return 0;
}
