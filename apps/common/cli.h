/*
 * cli.h - the command-line pieces cport-server and cport-dummy share: numbers
 * with bounds, HOST:PORT, durations, a choice from a list of names, backend
 * names (through cp_backend_from_name), and the one "bad value" message.
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
  if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
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

#endif
