/*
 * cli.h - the command-line pieces cport-server and cport-dummy share: numbers
 * with bounds, HOST:PORT, durations, a choice from a list of names, backend
 * names (through cp_backend_from_name), the one "bad value" message, and
 * cport-server's --cluster URL (redis://[[USER]:PASSWORD@]HOST:PORT, parsed
 * and shown with the password masked).
 *
 * Every parser only reads its string and writes *out on success; none prints
 * or exits. A program reports a refused value with cli_bad_value and returns
 * CLI_USAGE (exit status 2) from its parse step.
 */
#ifndef CPORT_APPS_CLI_H
#define CPORT_APPS_CLI_H

#include <cport/port.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a parse step returns: go on and run, or exit with this status. */
enum cli_status {
  CLI_RUN = -1,  /* options parsed: run */
  CLI_HELP = 0,  /* --help: print the usage on stdout, exit 0 */
  CLI_USAGE = 2, /* bad flags (already reported): exit 2 */
};

/* "PROG: bad value for --FLAG: 'VAL'" and then detail (may be ""). */
static inline enum cli_status cli_bad_value(const char *prog, const char *flag, const char *val,
                                            const char *detail) {
  fprintf(stderr, "%s: bad value for --%s: '%s'%s\n", prog, flag, val, detail);
  return CLI_USAGE;
}

/* A decimal unsigned number in [min, max]: no sign, no space, nothing after. */
static inline bool cli_uint(const char *s, unsigned long min, unsigned long max,
                            unsigned long *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || s[0] < '0' || s[0] > '9' || v < min || v > max)
    return false;
  *out = v;
  return true;
}

/* cli_uint into an unsigned (max must fit one). */
static inline bool cli_unsigned(const char *s, unsigned min, unsigned max, unsigned *out) {
  unsigned long v;
  if (!cli_uint(s, min, max, &v))
    return false;
  *out = (unsigned)v;
  return true;
}

/* A duration given as a count of units of unit_ms milliseconds (1000: seconds, 1: ms), the
 * count in [min, max]; *out_ms in milliseconds (max * unit_ms must fit an unsigned). */
static inline bool cli_duration_ms(const char *s, unsigned unit_ms, unsigned min, unsigned max,
                                   unsigned *out_ms) {
  unsigned n;
  if (!cli_unsigned(s, min, max, &n))
    return false;
  *out_ms = n * unit_ms;
  return true;
}

/* A decimal real number, all of s, in (min, max] - or [min, max] if min_ok. */
static inline bool cli_real(const char *s, double min, bool min_ok, double max, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !(min_ok ? v >= min : v > min) || v > max)
    return false;
  *out = v;
  return true;
}

/* One of names[0..n): *out its index. */
static inline bool cli_choice(const char *s, const char *const *names, int n, int *out) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s, names[i])) {
      *out = i;
      return true;
    }
  return false;
}

/* A backend name as cp_backend_from_name takes it (auto | uring | epoll). */
static inline bool cli_backend(const char *s, cp_backend *out) {
  return cp_backend_from_name(s, out) == 0;
}

/* HOST:PORT (the last colon splits; HOST not empty and shorter than host_size, PORT 0..65535):
 * host gets HOST, NUL-terminated. */
static inline bool cli_host_port(const char *s, char *host, size_t host_size, uint16_t *port) {
  const char *colon = strrchr(s, ':');
  unsigned long p;
  if (!colon || colon == s || (size_t)(colon - s) >= host_size ||
      !cli_uint(colon + 1, 0, 65535, &p))
    return false;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  *port = (uint16_t)p;
  return true;
}

/* ---- redis://[[USER]:PASSWORD@]HOST:PORT (cport-server --cluster) ---------------------- */

#define CLI_REDIS_CRED_MAX 256  /* USER and PASSWORD: bytes after percent-decoding */
#define CLI_REDIS_HOST_MAX 254  /* a DNS name is at most 253 characters */
#define CLI_SENTINEL_MAX 8      /* sentinels in a redis-sentinel:// URL */
#define CLI_MASTER_NAME_MAX 128 /* its MASTER_NAME */

/* A parsed --cluster URL. USER and PASSWORD are bytes (percent-decoded: any byte, NUL too). */
typedef struct cli_redis_url {
  char host[CLI_REDIS_HOST_MAX]; /* a name, an IPv4 literal or an IPv6 literal (brackets off) */
  bool ipv6;                     /* HOST was given as [IPv6] */
  uint16_t port;                 /* 1..65535 */
  bool has_user, has_pass;
  uint8_t user[CLI_REDIS_CRED_MAX], pass[CLI_REDIS_CRED_MAX];
  size_t user_len, pass_len;
  /* redis-sentinel://...: the sentinels (host/ipv6/port above: the first one) and the master's
   * name; nsentinels is 0 for redis:// */
  unsigned nsentinels;
  struct cli_sentinel {
    char host[CLI_REDIS_HOST_MAX];
    bool ipv6;
    uint16_t port;
  } sentinels[CLI_SENTINEL_MAX];
  char master[CLI_MASTER_NAME_MAX + 1]; /* NUL-terminated; [A-Za-z0-9._-] */
  size_t master_len;
} cli_redis_url;

static inline int cli_hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decode s[0..len) into out (at most CLI_REDIS_CRED_MAX bytes); *why on failure
 * (too_long when longer). */
static inline bool cli_pct_decode(const char *s, size_t len, uint8_t *out, size_t *out_len,
                                  const char *too_long, const char **why) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      int hi = i + 2 < len ? cli_hex_digit(s[i + 1]) : -1;
      int lo = hi >= 0 ? cli_hex_digit(s[i + 2]) : -1;
      if (lo < 0) {
        *why = "a '%' in USER or PASSWORD must be followed by two hex digits (%40 is '@')";
        return false;
      }
      c = hi * 16 + lo;
      i += 2;
    }
    if (n == CLI_REDIS_CRED_MAX) {
      *why = too_long;
      return false;
    }
    out[n++] = (uint8_t)c;
  }
  *out_len = n;
  return true;
}

/* The case-insensitive prefix p (lower case) of s. */
static inline bool cli_prefix_ci(const char *s, const char *p) {
  for (; *p; s++, p++)
    if (*s != *p && !(*s >= 'A' && *s <= 'Z' && *s - 'A' + 'a' == *p))
      return false;
  return true;
}

/* HOST:PORT (hp, NUL-terminated) into host/ipv6/port: a name or IPv4 literal
 * ([A-Za-z0-9._-]), or [IPv6]. false: *why says what is wrong. */
static inline bool cli_hostport_parse(const char *hp, char *host, bool *ipv6, uint16_t *port,
                                      const char **why) {
  const char *pc; /* the ':' before PORT */
  if (*hp == '[') {
    const char *end = strchr(hp, ']');
    size_t n = end ? (size_t)(end - hp - 1) : 0;
    if (!end || n == 0 || n >= CLI_REDIS_HOST_MAX ||
        strspn(hp + 1, "0123456789abcdefABCDEF:.") != n) {
      *why = "a bad [IPv6] address";
      return false;
    }
    memcpy(host, hp + 1, n);
    host[n] = '\0';
    *ipv6 = true;
    pc = end + 1;
    if (*pc != ':') {
      *why = "missing :PORT after HOST";
      return false;
    }
  } else {
    pc = strrchr(hp, ':');
    size_t n = pc ? (size_t)(pc - hp) : strlen(hp);
    if (n == 0) {
      *why = "missing HOST";
      return false;
    }
    if (!pc) {
      *why = "missing :PORT after HOST";
      return false;
    }
    if (memchr(hp, ':', n)) {
      *why = "an IPv6 address goes in brackets: redis://[::1]:6379";
      return false;
    }
    if (n >= CLI_REDIS_HOST_MAX || strspn(hp, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789.-_") != n) {
      *why = "HOST must be a name (letters, digits, '.', '-', '_'; up to 253), an IPv4 address "
             "or [IPv6]";
      return false;
    }
    memcpy(host, hp, n);
    host[n] = '\0';
  }
  unsigned long p;
  if (!pc[1]) {
    *why = "missing PORT after ':'";
    return false;
  }
  if (!cli_uint(pc + 1, 1, 65535, &p)) {
    *why = "PORT must be a number from 1 to 65535";
    return false;
  }
  *port = (uint16_t)p;
  return true;
}

/* redis-sentinel://...'s HOST:PORT[,HOST:PORT...]/MASTER_NAME (hp) into *u. */
static inline bool cli_sentinels_parse(const char *hp, cli_redis_url *u, const char **why) {
  const char *slash = strchr(hp, '/');
  if (!slash) {
    *why = "missing /MASTER_NAME after the sentinels";
    return false;
  }
  const char *name = slash + 1;
  size_t nl = strlen(name);
  if (nl == 0 || nl > CLI_MASTER_NAME_MAX ||
      strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != nl) {
    *why = "MASTER_NAME must be 1 to 128 letters, digits, '.', '-' or '_' (nothing after it)";
    return false;
  }
  if (slash == hp) {
    *why = "missing HOST";
    return false;
  }
  memcpy(u->master, name, nl + 1);
  u->master_len = nl;
  for (const char *p = hp; p < slash;) {
    const char *comma = memchr(p, ',', (size_t)(slash - p));
    const char *end = comma ? comma : slash;
    char one[CLI_REDIS_HOST_MAX + 16];
    if (u->nsentinels == CLI_SENTINEL_MAX) {
      *why = "more than 8 sentinels";
      return false;
    }
    if ((size_t)(end - p) >= sizeof one) {
      *why = "HOST must be a name (letters, digits, '.', '-', '_'; up to 253), an IPv4 address "
             "or [IPv6]";
      return false;
    }
    memcpy(one, p, (size_t)(end - p));
    one[end - p] = '\0';
    struct cli_sentinel *t = &u->sentinels[u->nsentinels];
    if (!cli_hostport_parse(one, t->host, &t->ipv6, &t->port, why))
      return false;
    u->nsentinels++;
    p = comma ? comma + 1 : slash;
    if (comma && p == slash) {
      *why = "missing HOST";
      return false;
    }
  }
  memcpy(u->host, u->sentinels[0].host, sizeof u->host);
  u->ipv6 = u->sentinels[0].ipv6;
  u->port = u->sentinels[0].port;
  return true;
}

/*
 * redis://[[USER]:PASSWORD@]HOST:PORT, or
 * redis-sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME (at most 8
 * sentinels; USER/PASSWORD are the data Redis's), into *u. The last '@' ends USER:PASSWORD, the
 * first ':' in it ends USER (so a password may hold ':' and '@' as they are; '%XX' is any byte).
 * HOST: a name or IPv4 literal ([A-Za-z0-9._-]), or [IPv6]. false: *why says what is wrong (a
 * static text with no byte of the URL in it). Reads only s.
 */
static inline bool cli_redis_url_parse(const char *s, cli_redis_url *u, const char **why) {
  memset(u, 0, sizeof *u);
  if (cli_prefix_ci(s, "rediss://")) {
    *why = "TLS (rediss://) is not supported: use redis:// (over a TLS tunnel if need be)";
    return false;
  }
  bool sentinel = cli_prefix_ci(s, "redis-sentinel://");
  if (!sentinel && !cli_prefix_ci(s, "redis://")) {
    *why = "expected redis://[[USER]:PASSWORD@]HOST:PORT or "
           "redis-sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME";
    return false;
  }
  const char *a = s + (sentinel ? 17 : 8), *at = strrchr(a, '@'), *hp = at ? at + 1 : a;
  if (at) {
    const char *colon = memchr(a, ':', (size_t)(at - a));
    const char *uend = colon ? colon : at;
    if (uend > a) {
      if (!cli_pct_decode(a, (size_t)(uend - a), u->user, &u->user_len,
                          "USER is longer than 256 bytes", why))
        return false;
      u->has_user = true;
    }
    if (colon) {
      if (colon + 1 == at) {
        *why = "an empty PASSWORD after ':'";
        return false;
      }
      if (!cli_pct_decode(colon + 1, (size_t)(at - colon - 1), u->pass, &u->pass_len,
                          "PASSWORD is longer than 256 bytes", why))
        return false;
      u->has_pass = true;
    }
    if (!u->has_user && !u->has_pass) {
      *why = "nothing before '@' (USER, :PASSWORD or USER:PASSWORD)";
      return false;
    }
  }
  if (sentinel)
    return cli_sentinels_parse(hp, u, why);
  if (strpbrk(hp, "/?#")) {
    *why = "nothing may follow HOST:PORT (no database number, path or query: the cluster uses "
           "database 0)";
    return false;
  }
  return cli_hostport_parse(hp, u->host, &u->ipv6, &u->port, why);
}

/* s for logs, with anything that may be a password replaced by "***"; always NUL-terminated,
 * cut to size. For any string, parsed or not:
 * - before the last '@': USER:PASSWORD shows as USER:***, a lone USER as *** (redis-cli takes
 *   redis://SECRET@HOST for a password);
 * - no '@': shown only if it reads HOST or HOST:PORT with digits after the last ':' and no
 *   other ':' outside [brackets] (redis://:SECRET, a forgotten HOST, would show the secret). */
static inline void cli_redis_url_masked(const char *s, char *out, size_t size) {
  const char *a = strstr(s, "://"), *at;
  a = a ? a + 3 : s;
  at = strrchr(a, '@');
  if (at) {
    const char *colon = memchr(a, ':', (size_t)(at - a));
    if (colon)
      snprintf(out, size, "%.*s:***%s", (int)(colon - s), s, at);
    else
      snprintf(out, size, "%.*s***%s", (int)(a - s), s, at);
    return;
  }
  const char *hp = a, *last = strrchr(a, ':');
  if (*hp == '[') {
    const char *end = strchr(hp, ']');
    hp = end ? end + 1 : hp + strlen(hp);
    last = strrchr(hp, ':');
  }
  bool plain = !last || (memchr(hp, ':', (size_t)(last - hp)) == NULL &&
                         strspn(last + 1, "0123456789") == strlen(last + 1));
  if (plain)
    snprintf(out, size, "%s", s);
  else
    snprintf(out, size, "%.*s***", (int)(a - s), s);
}

#endif
