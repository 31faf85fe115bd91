/*
 * fuzz_util.h - what the fuzz targets share: a check that aborts (so
 * libFuzzer keeps the input), and a buffer that abuts a PROT_NONE guard page.
 * Header-only; the targets include it once each.
 *
 * Guard pages. A fuzz input lives in libFuzzer's heap copy, where a read
 * just past its end lands in an ASan redzone. Copying each piece of input
 * into a mapping whose next page is PROT_NONE makes such a read fault even in
 * a build without ASan, and catches reads that skip a redzone. A piece can
 * also be placed against the guard page before it, to catch reads before
 * its start.
 */
#ifndef CPORT_FUZZ_UTIL_H
#define CPORT_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                     \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* [guard page][cap bytes of data pages][guard page] */
struct guard_buf {
  uint8_t *map;
  size_t map_len, cap, page;
};

static inline void guard_grow(struct guard_buf *g, size_t n) {
  if (g->map && n <= g->cap)
    return;
  if (!g->page)
    g->page = (size_t)sysconf(_SC_PAGESIZE);
  if (g->map)
    munmap(g->map, g->map_len);
  size_t cap = g->cap ? g->cap : 16 * g->page;
  while (cap < n)
    cap *= 2;
  g->map_len = cap + 2 * g->page;
  void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  FUZZ_CHECK(m != MAP_FAILED);
  g->map = m;
  g->cap = cap;
  FUZZ_CHECK(mprotect(g->map, g->page, PROT_NONE) == 0);
  FUZZ_CHECK(mprotect(g->map + g->page + cap, g->page, PROT_NONE) == 0);
}

/* Copy n bytes of src next to a guard page: by default so that the last byte
 * is the one right before the guard page after it (a read past the end
 * faults); with at_start, so that the first byte is the one right after the
 * guard page before it. With n == 0 the pointer returned is on a guard page:
 * reading any byte of it faults. Valid until the next call. */
static inline const uint8_t *guard_place(struct guard_buf *g, const void *src, size_t n,
                                         bool at_start) {
  guard_grow(g, n);
  uint8_t *dst = g->map + g->page + (at_start && n ? 0 : g->cap - n);
  if (n)
    memcpy(dst, src, n);
  return dst;
}

static inline uint16_t fuzz_le16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

#endif
