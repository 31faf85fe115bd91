/*
 * cport-server - the GameServer: echo, packet-echo and chat rooms on cport.
 *
 *   cport-server [--host 127.0.0.1] [--port 7777] [--mode echo|packet-echo|chat]
 *                [--threads N] [--backend auto|uring|epoll] [--max-sessions N]
 *                [--max-packet BYTES] [--idle-timeout SECONDS]
 *                [--max-rooms N] [--enter-rate N] [--chat-rate N] [--room-flush-ms N]
 *                [--metrics HOST:PORT|off] [--quiet]
 *                [--cluster redis://[[USER]:PASSWORD@]HOST:PORT | redis-sentinel://...]
 *                [--node-name NAME]
 *
 * Prints a stats line a second (unless --quiet), serves Prometheus metrics on
 * the metrics address, and on SIGINT/SIGTERM drains, prints final counters
 * and exits 0.
 */
#define _GNU_SOURCE
#include "server.h"

#include "../common/cli.h"
#include "../common/os.h"
#include "../common/wire.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum mode { MODE_ECHO, MODE_PACKET_ECHO, MODE_CHAT };
static const char *const mode_names[] = {"echo", "packet-echo", "chat"};

static cp_service *svc;
static enum mode mode = MODE_CHAT;

#ifdef CPORT_CLUSTER
#define CLUSTER_HELP                                                                               \
  "  --cluster redis://[[USER]:PASSWORD@]HOST:PORT\n"                                              \
  "                         chat: share every room with the nodes on this Redis\n"                 \
  "                         (docs/cluster.md); --max-rooms then counts per node.\n"                \
  "                         HOST: a name (resolved once, at start), IPv4, or [IPv6].\n"            \
  "                         PASSWORD (and the ACL USER) percent-encoded (%%40 is @);\n"            \
  "                         without one in the URL, $CPORT_CLUSTER_PASSWORD (not seen\n"           \
  "                         in ps); never logged. No TLS (rediss://)\n"                            \
  "  --cluster redis-sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME\n"          \
  "                         the same through Redis Sentinel: the master asked from the\n"          \
  "                         sentinels (up to 8) on every reconnect, ROLE checked, a\n"             \
  "                         failover followed; a sentinel's own password from\n"                   \
  "                         $CPORT_SENTINEL_PASSWORD\n"                                            \
  "  --node-name NAME       this node's name in the cluster (default HOST:PORT)\n"
#else
#define CLUSTER_HELP ""
#endif

#define STR_(x) #x
#define STR(x) STR_(x)
#define FLUSH_MS_STR STR(CHAT_DEFAULT_FLUSH_MS) /* "20": the one number, as text */

static void usage(FILE *f) {
  fprintf(
      f, "usage: cport-server [options]\n"
         "  --host ADDR            address to listen on (default 127.0.0.1)\n"
         "  --port N               port (default 7777)\n"
         "  --mode MODE            echo | packet-echo | chat (default chat)\n"
         "  --threads N            worker threads (default: CPU count)\n"
         "  --backend B            auto | uring | epoll (default auto)\n"
         "  --max-sessions N       refuse connections above N (default unlimited)\n"
         "  --max-packet BYTES     largest packet, header included (default 16384)\n"
         "  --idle-timeout SECONDS close sessions that complete no packet for this long\n"
         "                         (echo: send no byte); 0 = never (default 0)\n"
         "  --max-rooms N          chat: live rooms at most (default 65536)\n"
         "  --enter-rate N         chat: C_ENTER_ROOM per second per session; 0 = unlimited\n"
         "                         (default 0)\n"
         "  --chat-rate N          chat: C_CHAT per second per session; 0 = unlimited (default 0)\n"
         "  --room-flush-ms N      chat: a busy room sends its chats at most every N ms, held\n"
         "                         together; 0 = each at once (default " FLUSH_MS_STR ")\n"
         "  --metrics HOST:PORT    Prometheus metrics address (default 127.0.0.1:9100), or off\n"
         "  --quiet                no stats line\n" CLUSTER_HELP "  --help\n");
}

static enum cli_status bad(const char *flag, const char *val) {
  return cli_bad_value("cport-server", flag, val, "\n(see cport-server --help)");
}

/* ---- echo modes ------------------------------------------------------ */

static void echo_raw(cp_session *s, const void *data, size_t len) {
  /* appended to the reply buffer of this receive when it has room */
  int rc = cp_session_send_copy(s, data, len);
  if (rc == CP_ENOMEM) {
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
  G("rooms",
    "Live chat rooms (created on first entry, deleted when empty; with --cluster: the "
    "rooms this node follows).",
    mode == MODE_CHAT ? chat_rooms() : 0);
  uint64_t buffers = 0, held = 0, full = 0;
  if (mode == MODE_CHAT)
    chat_buffer_stats(&buffers, &held, &full);
  C("chat_buffers", "Chat buffers sent to rooms (each carries the chats that came together).",
    buffers);
  C("chat_held_buffers", "Chat buffers of those held by --room-flush-ms before going out.", held);
  C("chat_full_buffers",
    "Chat buffers that filled before going out (each makes its room's next ones larger).", full);
  if (mode == MODE_CHAT)
    chat_cluster_metrics(f);
  fprintf(f, "# HELP cport_disconnects_total Sessions ended, by reason.\n"
             "# TYPE cport_disconnects_total counter\n");
  for (int i = 0; i < CP_REASON_COUNT; i++)
    fprintf(f, "cport_disconnects_total{reason=\"%s\"} %" PRIu64 "\n", cp_reason_name((cp_reason)i),
            st.disconnects[i]);
  fprintf(f,
          "# HELP cport_cpu_seconds_total CPU time of the server process.\n"
          "# TYPE cport_cpu_seconds_total counter\ncport_cpu_seconds_total %.6f\n",
          os_cpu_seconds());
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

/* ---- parse ----------------------------------------------------------- */

struct options {
  const char *host;
  uint16_t port;
  enum mode mode;
  unsigned threads; /* 0: CPU count */
  cp_backend backend;
  unsigned max_sessions, max_packet, idle_ms, max_rooms, enter_rate, chat_rate, flush_ms;
  const char *metrics; /* as given */
  bool metrics_on;     /* not "off" */
  char mhost[64];      /* the metrics address, when metrics_on */
  uint16_t mport;
  bool quiet;
  const char *cluster;   /* redis://HOST:PORT or NULL */
  const char *node_name; /* NULL: HOST:PORT */
};

static const struct option long_opts[] = {
    {"host", required_argument, 0, 'h'},       {"port", required_argument, 0, 'p'},
    {"mode", required_argument, 0, 'm'},       {"threads", required_argument, 0, 't'},
    {"backend", required_argument, 0, 'b'},    {"max-sessions", required_argument, 0, 'S'},
    {"max-packet", required_argument, 0, 'P'}, {"idle-timeout", required_argument, 0, 'i'},
    {"metrics", required_argument, 0, 'M'},    {"quiet", no_argument, 0, 'q'},
    {"max-rooms", required_argument, 0, 'R'},  {"enter-rate", required_argument, 0, 'E'},
    {"chat-rate", required_argument, 0, 'C'},  {"room-flush-ms", required_argument, 0, 'F'},
    {"cluster", required_argument, 0, 'c'},    {"node-name", required_argument, 0, 'n'},
    {"help", no_argument, 0, '?' + 256},       {0, 0, 0, 0}};

/* One option c with its argument v into o. */
static enum cli_status parse_option(int c, const char *v, struct options *o) {
  unsigned long port;
  int m;
  switch (c) {
  case 'h':
    o->host = v;
    return CLI_RUN;
  case 'p':
    if (!cli_uint(v, 0, 65535, &port))
      return bad("port", v);
    o->port = (uint16_t)port;
    return CLI_RUN;
  case 'm':
    if (!cli_choice(v, mode_names, 3, &m))
      return bad("mode", v);
    o->mode = (enum mode)m;
    return CLI_RUN;
  case 't':
    return cli_unsigned(v, 1, 256, &o->threads) ? CLI_RUN : bad("threads", v);
  case 'b':
    return cli_backend(v, &o->backend) ? CLI_RUN : bad("backend", v);
  case 'S':
    return cli_unsigned(v, 0, UINT_MAX, &o->max_sessions) ? CLI_RUN : bad("max-sessions", v);
  case 'P':
    return cli_unsigned(v, 4, 65535, &o->max_packet) ? CLI_RUN : bad("max-packet", v);
  case 'i':
    return cli_duration_ms(v, 1000, 0, 86400, &o->idle_ms) ? CLI_RUN : bad("idle-timeout", v);
  case 'R':
    return cli_unsigned(v, 1, UINT_MAX, &o->max_rooms) ? CLI_RUN : bad("max-rooms", v);
  case 'E':
    return cli_unsigned(v, 0, 1000000, &o->enter_rate) ? CLI_RUN : bad("enter-rate", v);
  case 'C':
    return cli_unsigned(v, 0, 1000000, &o->chat_rate) ? CLI_RUN : bad("chat-rate", v);
  case 'F':
    return cli_unsigned(v, 0, 10000, &o->flush_ms) ? CLI_RUN : bad("room-flush-ms", v);
  case 'M':
    o->metrics = v;
    return CLI_RUN;
  case 'q':
    o->quiet = true;
    return CLI_RUN;
  case 'c':
    o->cluster = v;
    return CLI_RUN;
  case 'n':
    if (!*v || strlen(v) > 255)
      return bad("node-name", v);
    o->node_name = v;
    return CLI_RUN;
  case '?' + 256:
    return CLI_HELP;
  default:
    fprintf(stderr, "cport-server: unknown or incomplete option '%s'\n", v);
    usage(stderr);
    return CLI_USAGE;
  }
}

/* argv into o: no side effect but the error messages. */
static enum cli_status parse(int argc, char **argv, struct options *o) {
  *o = (struct options){.host = "127.0.0.1",
                        .port = 7777,
                        .mode = MODE_CHAT,
                        .backend = CP_BACKEND_AUTO,
                        .max_packet = 16384,
                        .max_rooms = CHAT_DEFAULT_MAX_ROOMS,
                        .flush_ms = CHAT_DEFAULT_FLUSH_MS,
                        .metrics = "127.0.0.1:9100"};
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
    /* an unknown option is reported by its argv word */
    enum cli_status st = parse_option(c, c == '?' || c == ':' ? argv[optind - 1] : optarg, o);
    if (st != CLI_RUN)
      return st;
  }
  if (optind < argc) {
    fprintf(stderr, "cport-server: unexpected argument '%s'\n", argv[optind]);
    return CLI_USAGE;
  }
  if (o->mode == MODE_CHAT && o->max_packet < CHAT_LARGEST_SERVER_PACKET) {
    fprintf(stderr,
            "cport-server: --max-packet %u is below %d, the largest packet chat mode sends "
            "(S_CHAT with a 1000-byte text)\n",
            o->max_packet, CHAT_LARGEST_SERVER_PACKET);
    return CLI_USAGE;
  }
  if (o->cluster && o->mode != MODE_CHAT) {
    fprintf(stderr, "cport-server: --cluster needs --mode chat\n");
    return CLI_USAGE;
  }
  cli_redis_url url;
  const char *why;
  if (o->cluster && !cli_redis_url_parse(o->cluster, &url, &why)) {
    char shown[320];
    cli_redis_url_masked(o->cluster, shown, sizeof shown);
    fprintf(stderr, "cport-server: bad value for --cluster: '%s': %s\n(see cport-server --help)\n",
            shown, why);
    return CLI_USAGE;
  }
  o->metrics_on = strcmp(o->metrics, "off") != 0;
  if (o->metrics_on && !cli_host_port(o->metrics, o->mhost, sizeof o->mhost, &o->mport))
    return bad("metrics", o->metrics);
  return CLI_RUN;
}

/* ---- run ------------------------------------------------------------- */

static cp_service_options service_options(const struct options *o) {
  cp_service_options so = {.kind = CP_SERVICE_SERVER,
                           .host = o->host,
                           .port = o->port,
                           .threads = o->threads,
                           .port_opts = {.backend = o->backend},
                           .max_sessions = o->max_sessions,
                           .max_packet = (uint16_t)o->max_packet,
                           .raw = o->mode == MODE_ECHO,
                           .idle_timeout_ms = o->idle_ms};
  if (o->mode == MODE_ECHO)
    so.callbacks =
        (cp_session_callbacks){.on_raw = echo_raw, .on_disconnected = srv_on_disconnected};
  else if (o->mode == MODE_PACKET_ECHO)
    so.callbacks =
        (cp_session_callbacks){.on_packet = echo_packet, .on_disconnected = srv_on_disconnected};
  else
    so.callbacks = (cp_session_callbacks){.on_connected = chat_on_connected,
                                          .on_packet = chat_on_packet,
                                          .on_disconnected = chat_on_disconnected,
                                          .on_bad_packet = chat_on_bad_packet};
  return so;
}

/* The game service (svc) and the metrics service (*msvc, NULL when off), started; 0, or the
 * exit status (said why): 1, or CLI_USAGE for a --cluster URL that node_start refused. */
static int start(const struct options *o, cp_service **msvc) {
  cp_service_options so = service_options(o);
  int rc = cp_service_create(&svc, &so);
  if (rc) {
    fprintf(stderr, "cport-server: %s\n", cp_strerror(rc));
    return 1;
  }
  if (o->mode == MODE_CHAT)
    chat_init(svc, &(struct chat_limits){.max_rooms = o->max_rooms,
                                         .max_packet = o->max_packet,
                                         .enter_rate = o->enter_rate,
                                         .chat_rate = o->chat_rate,
                                         .flush_ms = o->flush_ms});
  rc = cp_service_start(svc);
  if (rc) {
    fprintf(stderr, "cport-server: cannot listen on %s:%u: %s\n", o->host, o->port,
            cp_strerror(rc));
    cp_service_destroy(svc);
    return 1;
  }
  if (o->cluster) {
    char name[300];
    if (o->node_name)
      snprintf(name, sizeof name, "%s", o->node_name);
    else
      snprintf(name, sizeof name, "%s:%u", o->host, cp_service_listen_port(svc));
    rc = chat_cluster_start(o->cluster, name, strlen(name));
    if (rc != 0) {
      cp_service_destroy(svc);
      return rc == CP_EINVAL ? CLI_USAGE : 1; /* a bad URL, a name that does not resolve */
    }
  }
  *msvc = NULL;
  if (o->metrics_on) {
    rc = metrics_start(o->mhost, o->mport, o->backend, fill_metrics, msvc);
    if (rc) {
      fprintf(stderr, "cport-server: cannot serve metrics on %s: %s\n", o->metrics,
              cp_strerror(rc));
      cp_service_destroy(svc);
      return 1;
    }
  }
  return 0;
}

static void announce(const struct options *o, cp_service *msvc) {
  char maddr[80] = "off";
  if (msvc)
    snprintf(maddr, sizeof maddr, "%s:%u", o->mhost, cp_service_listen_port(msvc));
  fprintf(stderr, "cport-server: %s mode on %s:%u, %u threads, backend %s, metrics %s\n",
          mode_names[o->mode], o->host, cp_service_listen_port(svc),
          o->threads ? o->threads : os_cpu_count(),
          cp_backend_name(cp_port_backend(cp_service_port(svc))), maddr);
}

/* A stats line a second (unless quiet) until a stop request (cport/stop.h: SIGINT or SIGTERM;
 * Ctrl+C, Ctrl+Break or a console close on Windows). */
static void serve(bool quiet) {
  cp_service_stats prev, st;
  cp_service_get_stats(svc, &prev);
  for (;;) {
    if (cp_stop_wait(1000) != 0)
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
}

/* Start, serve until a signal; msvc for report. 0 or the exit status (start's). */
static int run(const struct options *o, cp_service **msvc) {
  mode = o->mode;
  os_raise_fd_limit();
  int rc = cp_stop_install();
  if (rc) {
    fprintf(stderr, "cport-server: %s\n", cp_strerror(rc));
    return 1;
  }
  rc = start(o, msvc);
  if (rc)
    return rc;
  announce(o, *msvc);
  serve(o->quiet);
  if (o->cluster) { /* stop taking players; they leave over Redis; then the node goes */
    int r = cp_service_stop_accepting(svc);
    if (r && r != CP_ENOSYS)
      fprintf(stderr, "cport-server: stop accepting: %s\n", cp_strerror(r));
    fprintf(stderr, "cport-server: cluster: leaving every room\n");
    chat_cluster_drain(3000);
    chat_cluster_stop();
  }
  return 0;
}

/* ---- report ---------------------------------------------------------- */

/* Drain, print the final counters, tear down. */
static int report(cp_service *msvc) {
  fprintf(stderr, "cport-server: draining\n");
  cp_service_stop(svc, 2000);
  cp_service_stats st;
  cp_service_get_stats(svc, &st);
  print_final(&st);
  if (msvc)
    cp_service_destroy(msvc);
  if (mode == MODE_CHAT)
    chat_shutdown();
  cp_service_destroy(svc);
  return 0;
}

int main(int argc, char **argv) {
  struct options o;
  enum cli_status st = parse(argc, argv, &o);
  if (st == CLI_HELP)
    usage(stdout);
  if (st != CLI_RUN)
    return st;
  cp_log_set(srv_log_library, CP_LOG_INFO, NULL); /* the library's messages: our log */
  cp_service *msvc;
  int rc = run(&o, &msvc);
  return rc ? rc : report(msvc);
}
