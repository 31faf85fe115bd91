/* Accept recovers from descriptor exhaustion: with RLIMIT_NOFILE lowered so
 * only a few sessions fit, 40 clients (in a child process, with its own
 * descriptor table) are all served: accepts fail with EMFILE, back off, and
 * go on as sessions end and free their descriptors. */
#include "common/nettest.h"

#include <dirent.h>
#include <sys/wait.h>

#define CLIENTS 40

static void raw_echo(cp_session *s, const void *data, size_t len) {
  cp_sendbuf *b = cp_sendbuf_copy(data, len);
  CHECK(b != NULL);
  int rc = cp_session_send(s, b);
  CHECK(rc == 0 || rc == CP_ENOTCONN);
  cp_sendbuf_unref(b);
}

/* A descriptor limit with exactly `room` free numbers below it. The
 * descriptors open now (not counting the one the /proc scan itself uses) may
 * have holes, and may lie above it: they stay usable, only new ones must be
 * below the limit. Without holes this is the highest open fd + room + 1. */
#define MAX_SCAN 65536
static rlim_t limit_with_room(int room) {
  static bool open_fd[MAX_SCAN];
  DIR *d = opendir("/proc/self/fd");
  CHECK(d != NULL);
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    int fd = atoi(e->d_name);
    if (fd != self && fd >= 0 && fd < MAX_SCAN)
      open_fd[fd] = true;
  }
  closedir(d);
  int fd = 0;
  for (int free_fds = 0;; fd++) {
    CHECK(fd < MAX_SCAN);
    if (!open_fd[fd] && ++free_fds == room)
      break;
  }
  return (rlim_t)fd + 1;
}

static void read_full(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      _exit(1);
    p += n;
    len -= (size_t)n;
  }
}

/* The child: 40 clients, one distinct byte each; a client closes once its
 * byte came back. 0 when all echoed, 1 on a wrong byte, EOF or 60 s. */
static int child(int rfd) {
  uint16_t port;
  read_full(rfd, &port, sizeof port); /* the parent has lowered its limit */
  close(rfd);
  struct sockaddr_in addr = {
      .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
  struct pollfd pfd[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) {
    pfd[i].fd = test_connect(&addr);
    pfd[i].events = POLLIN;
    uint8_t b = (uint8_t)('A' + i);
    test_send_all(pfd[i].fd, &b, 1);
  }
  int left = CLIENTS;
  uint64_t until = test_now_ms() + 60000;
  while (left) {
    if (test_now_ms() > until) {
      fprintf(stderr, "child: %d clients got no echo in 60 s\n", left);
      return 1;
    }
    int r = poll(pfd, CLIENTS, 1000);
    if (r < 0 && errno != EINTR)
      return 1;
    for (int i = 0; r > 0 && i < CLIENTS; i++) {
      if (pfd[i].fd < 0 || !pfd[i].revents)
        continue;
      uint8_t b;
      ssize_t n = recv(pfd[i].fd, &b, 1, MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (n != 1 || b != (uint8_t)('A' + i)) {
        fprintf(stderr, "child: client %d: recv %zd, byte %d\n", i, n, n == 1 ? b : -1);
        return 1;
      }
      close(pfd[i].fd);
      pfd[i].fd = -1; /* poll ignores it now */
      left--;
    }
  }
  return 0;
}

int main(void) {
  test_begin("test_net_emfile", 120);
  int pp[2];
  CHECK_EQ(pipe2(pp, O_CLOEXEC), 0);
  /* Fork first, while this process has no threads yet. */
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(pp[1]);
    alarm(90); /* the watchdog is not inherited */
    _exit(child(pp[0]));
  }
  close(pp[0]);

  cp_service *svc = nt_server(
      (cp_service_options){.threads = 2, .accepts = 16, .raw = true, .callbacks.on_raw = raw_echo},
      NULL);
  uint16_t port = cp_service_listen_port(svc);
  CHECK(port != 0);

  /* Only a few descriptors left: a few sessions at once, then EMFILE. */
  struct rlimit old;
  CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  struct rlimit low = {.rlim_cur = limit_with_room(5), .rlim_max = old.rlim_max};
  CHECK(low.rlim_cur <= old.rlim_cur);
  CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  fprintf(stderr, "  RLIMIT_NOFILE %llu: 5 descriptors free\n", (unsigned long long)low.rlim_cur);
  ssize_t w;
  while ((w = write(pp[1], &port, sizeof port)) < 0 && errno == EINTR)
    ;
  CHECK_EQ(w, sizeof port);
  close(pp[1]);

  int status = 0;
  pid_t got;
  while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
    ;
  CHECK_EQ(got, pid);
  CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  if (!WIFEXITED(status))
    fprintf(stderr, "child: status %#x\n", status);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);

  uint64_t until = test_now_ms() + 30000;
  cp_service_stats st;
  do {
    test_sleep_ms(2);
    cp_service_get_stats(svc, &st);
  } while ((st.disconnects[CP_REASON_PEER_CLOSED] < CLIENTS || st.sessions) &&
           test_now_ms() < until);
  fprintf(stderr, "  accepts %" PRIu64 ", accept_errors %" PRIu64 "\n", st.accepts,
          st.accept_errors);
  CHECK_EQ(st.accepts, CLIENTS);
  CHECK(st.accept_errors > 0); /* exhaustion happened, and was recovered from */
  CHECK_EQ(st.refused, 0);
  CHECK_EQ(st.disconnects[CP_REASON_PEER_CLOSED], CLIENTS);
  CHECK_EQ(st.sessions, 0);
  CHECK_EQ(st.bytes_in, CLIENTS);
  CHECK_EQ(st.packets_in, CLIENTS);
  for (int r = 0; r < CP_REASON_COUNT; r++)
    if (r != CP_REASON_PEER_CLOSED)
      CHECK_EQ(st.disconnects[r], 0);
  cp_service_stop(svc, 0);
  nt_check_port_settled(svc);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
