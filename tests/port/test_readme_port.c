/* The README's port example ("The port in 50 lines", taken from README.md at configure time by
 * cmake/readme_example.cmake) run as it is: serve() on a free port in a thread of its own; two
 * clients each send 100 kB in pieces and must read back exactly what they sent, then a third
 * connects and goes, and the server still echoes. serve() loops until its port is closed, which
 * the example never does: the process ends with the test. */
#include "common/test.h"

#include <pthread.h>

int serve(uint16_t port);

static uint16_t port;

static void *run(void *arg) {
  (void)arg;
  int rc = serve(port);
  fprintf(stderr, "test_readme_port: serve() returned %d\n", rc);
  exit(1); /* it returns only if it could not start, or its port was closed */
}

/* A blocking client to addr, once serve() listens. */
static int client(const struct sockaddr_in *addr) {
  for (int i = 0; i < 1000; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    int err = test_connect_wait(fd, addr);
    if (!err) {
      test_set_nonblock(fd, false);
      test_set_timeouts(fd, 30000);
      return fd;
    }
    close(fd); /* refused (Winsock's code on Windows): not listening yet */
    test_sleep_ms(10);
  }
  CHECK(!"serve() never listened");
  return -1;
}

static void echo(int fd, size_t total, unsigned salt) {
  char out[4096], in[4096];
  for (size_t done = 0; done < total;) {
    size_t n = total - done < sizeof out ? total - done : 1 + (done + salt) % sizeof out;
    for (size_t i = 0; i < n; i++)
      out[i] = (char)((done + i) * 31 + salt);
    test_send_all(fd, out, n);
    test_recv_all(fd, in, n);
    CHECK(!memcmp(in, out, n));
    done += n;
  }
}

int main(void) {
  test_begin("test_readme_port", 60);
  struct sockaddr_in addr;
  int l = test_listener(&addr); /* a free port, given to serve() */
  port = ntohs(addr.sin_port);
  close(l);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, run, NULL) == 0);
  int a = client(&addr), b = client(&addr);
  echo(a, 100000, 1);
  echo(b, 100000, 2);
  int c = client(&addr);
  close(c); /* the example frees its connection on end-of-stream */
  echo(a, 5000, 3);
  close(a);
  close(b);
  fprintf(stderr, "test_readme_port: 205,000 bytes echoed exactly over two connections\n");
  return 0;
}
