/*
 * metrics.c - GET /metrics in the Prometheus text format, served by the
 * engine itself: a second service in raw mode. A request is read until its
 * blank line (at most 4 KiB), answered, and the connection closed after the
 * answer is sent. Anything else gets 404 or 400; a client that sends more
 * than 4 KiB of headers is cut off.
 */
#define _GNU_SOURCE
#include "server.h"

#include "../common/os.h"

#include <stdlib.h>
#include <string.h>

#define REQ_MAX 4096

struct req {
  size_t len;
  char buf[REQ_MAX + 1];
};

static metrics_fill_fn fill;

static void reply(cp_session *s, const char *status, const char *type, const char *body,
                  size_t blen) {
  char head[256];
  int hn = snprintf(head, sizeof head,
                    "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n",
                    status, type, blen);
  cp_sendbuf *b = cp_sendbuf_alloc((size_t)hn + blen);
  if (b) {
    memcpy(cp_sendbuf_data(b), head, (size_t)hn);
    memcpy(cp_sendbuf_data(b) + hn, body, blen);
    cp_sendbuf_set_len(b, (size_t)hn + blen);
    cp_session_send(s, b);
    cp_sendbuf_unref(b);
  }
  cp_session_disconnect(s, true);
}

static void on_connected(cp_session *s) {
  struct req *r = calloc(1, sizeof *r);
  if (!r)
    cp_session_disconnect(s, false);
  cp_session_set_user(s, r);
}

/* Whether buf[0..len) holds the n bytes of pat. */
static bool has_bytes(const char *buf, size_t len, const char *pat, size_t n) {
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(buf + i, pat, n) == 0)
      return true;
  return false;
}

/* Whether buf[0..len) starts with the n bytes of pat. */
static bool starts_with(const char *buf, size_t len, const char *pat, size_t n) {
  return len >= n && memcmp(buf, pat, n) == 0;
}

static void on_raw(cp_session *s, const void *data, size_t len) {
  struct req *r = cp_session_user(s);
  if (!r || r->len == SIZE_MAX)
    return; /* already answered */
  if (len > REQ_MAX - r->len) {
    r->len = SIZE_MAX;
    reply(s, "431 Request Header Fields Too Large", "text/plain", "too large\n", 10);
    return;
  }
  memcpy(r->buf + r->len, data, len);
  r->len += len;
  /* The request is bytes from the network: searched and compared by length,
   * a zero byte included (never C-string functions). */
  if (!has_bytes(r->buf, r->len, "\r\n\r\n", 4) && !has_bytes(r->buf, r->len, "\n\n", 2))
    return;
  bool get = starts_with(r->buf, r->len, "GET ", 4);
  bool path = get && (starts_with(r->buf + 4, r->len - 4, "/metrics ", 9) ||
                      starts_with(r->buf + 4, r->len - 4, "/metrics?", 9) ||
                      starts_with(r->buf + 4, r->len - 4, "/metrics\r", 9) ||
                      starts_with(r->buf + 4, r->len - 4, "/metrics\n", 9));
  r->len = SIZE_MAX;
  if (!get) {
    reply(s, "405 Method Not Allowed", "text/plain", "GET only\n", 9);
  } else if (!path) {
    reply(s, "404 Not Found", "text/plain", "try /metrics\n", 13);
  } else {
    char *body = NULL;
    size_t blen = 0;
    FILE *f = os_memfile_open(&body, &blen);
    if (!f) {
      reply(s, "500 Internal Server Error", "text/plain", "no memory\n", 10);
      return;
    }
    fill(f);
    if (os_memfile_close(f, &body, &blen)) {
      reply(s, "500 Internal Server Error", "text/plain", "no memory\n", 10);
      return;
    }
    reply(s, "200 OK", "text/plain; version=0.0.4", body, blen);
    free(body);
  }
}

static void on_disconnected(cp_session *s, cp_reason why) {
  (void)why;
  free(cp_session_user(s));
  cp_session_set_user(s, NULL);
}

int metrics_start(const char *host, uint16_t port, cp_backend backend, metrics_fill_fn fn,
                  cp_service **out) {
  fill = fn;
  cp_service_options o = {.kind = CP_SERVICE_SERVER,
                          .host = host,
                          .port = port,
                          .threads = 1,
                          .accepts = 4,
                          .max_sessions = 64,
                          .raw = true,
                          .idle_timeout_ms = 10000,
                          .port_opts = {.backend = backend, .buf_count = 64},
                          .callbacks = {.on_connected = on_connected,
                                        .on_raw = on_raw,
                                        .on_disconnected = on_disconnected}};
  int rc = cp_service_create(out, &o);
  if (!rc && (rc = cp_service_start(*out))) {
    cp_service_destroy(*out);
    *out = NULL;
  }
  return rc;
}
