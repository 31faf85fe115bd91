/*
 * uv_echo - the echo server a libuv user writes (the peer of the benchmarks).
 *
 *   uv_echo [--host 127.0.0.1] [--port 7777]
 *
 * One thread, one loop: uv_listen, uv_accept, uv_read_start with an alloc_cb
 * that mallocs the suggested size (64 KiB), and the bytes written back with
 * uv_write, the buffer freed in the write callback - the shape of libuv's own
 * test/echo-server.c. An idle connection holds its uv_tcp_t and no buffer.
 * SIGINT/SIGTERM stop it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct wreq {
  uv_write_t req;
  uv_buf_t buf;
};

static void on_close(uv_handle_t *h) {
  free(h);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void on_written(uv_write_t *req, int status) {
  struct wreq *w = (struct wreq *)req;
  if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
    uv_close((uv_handle_t *)req->handle, on_close);
  free(w->buf.base);
  free(w);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  if (n > 0) {
    struct wreq *w = malloc(sizeof *w);
    if (w) {
      w->buf = uv_buf_init(buf->base, (unsigned)n);
      if (uv_write(&w->req, s, &w->buf, 1, on_written) == 0)
        return;
      free(w);
    }
  }
  free(buf->base);
  if (n < 0 && !uv_is_closing((uv_handle_t *)s))
    uv_close((uv_handle_t *)s, on_close);
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0)
    return;
  uv_tcp_t *c = malloc(sizeof *c);
  if (!c)
    return;
  uv_tcp_init(server->loop, c);
  if (uv_accept(server, (uv_stream_t *)c) == 0) {
    uv_tcp_nodelay(c, 1);
    uv_read_start((uv_stream_t *)c, on_alloc, on_read);
  } else {
    uv_close((uv_handle_t *)c, on_close);
  }
}

static void on_signal(uv_signal_t *h, int sig) {
  (void)sig;
  uv_stop(h->loop);
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
      fprintf(stderr, "usage: uv_echo [--host H] [--port P]\n");
      return 2;
    }
  }
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t server;
  struct sockaddr_in addr;
  if (uv_ip4_addr(host, port, &addr) || port < 1 || port > 65535) {
    fprintf(stderr, "uv_echo: bad address %s:%d\n", host, port);
    return 2;
  }
  uv_tcp_init(loop, &server);
  int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (!rc)
    rc = uv_listen((uv_stream_t *)&server, 4096, on_connection);
  if (rc) {
    fprintf(stderr, "uv_echo: %s:%d: %s\n", host, port, uv_strerror(rc));
    return 1;
  }
  uv_signal_t sint, sterm;
  uv_signal_init(loop, &sint);
  uv_signal_init(loop, &sterm);
  uv_signal_start(&sint, on_signal, SIGINT);
  uv_signal_start(&sterm, on_signal, SIGTERM);
  fprintf(stderr, "uv_echo: listening on %s:%d, libuv %s\n", host, port, uv_version_string());
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
