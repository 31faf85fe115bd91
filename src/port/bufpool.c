/*
 * bufpool.c - the slab behind pooled receives.
 *
 * One anonymous mapping of count * size bytes. Pages are only backed once a
 * buffer is first written, so a large pool costs address space, not memory,
 * until traffic needs it. A buffer is named by its index; both backends keep
 * their own free list of indices (io_uring: the provided-buffer ring).
 *
 * A pool of 2 MiB or more starts on a 2 MiB boundary, so that a backend may
 * ask for transparent huge pages (cp__bufpool_huge) and get them for all of it.
 */
#define _GNU_SOURCE
#include "port/port_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_PAGE ((size_t)2 << 20)

int cp__bufpool_init(struct bufpool *b, uint32_t count, uint32_t size) {
  b->count = count;
  b->size = size;
  b->slab_len = (size_t)count * size;
  size_t slack = b->slab_len >= HUGE_PAGE ? HUGE_PAGE : 0;
  char *m =
      mmap(NULL, b->slab_len + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    b->slab = NULL;
    return -errno;
  }
  if (slack) { /* keep the aligned part, give back the ends (whole pages: the
                * mapping's own end is slab_len rounded up, plus slack) */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t keep = (b->slab_len + page - 1) / page * page;
    char *a = (char *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > m)
      munmap(m, (size_t)(a - m));
    if (a + keep < m + keep + slack)
      munmap(a + keep, (size_t)(m + keep + slack - (a + keep)));
    m = a;
  }
  b->slab = m;
  assert(!slack || ((uintptr_t)b->slab & (HUGE_PAGE - 1)) == 0);
  return 0;
}

int cp__bufpool_huge(struct bufpool *b) {
  if (!b->slab || b->slab_len < HUGE_PAGE)
    return 0;
  return madvise(b->slab, b->slab_len, MADV_HUGEPAGE) ? -errno : 0;
}

void cp__bufpool_free(struct bufpool *b) {
  if (b->slab)
    munmap(b->slab, b->slab_len);
  b->slab = NULL;
}

long cp__bufpool_index(const struct bufpool *b, const void *buf) {
  const char *c = buf;
  if (!b->slab || c < b->slab || c >= b->slab + b->slab_len)
    return -1;
  size_t off = (size_t)(c - b->slab);
  if (off % b->size)
    return -1;
  return (long)(off / b->size);
}
