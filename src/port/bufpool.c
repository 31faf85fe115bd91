/*
 * bufpool.c - the slab behind pooled receives.
 *
 * One anonymous mapping of count * size bytes. Pages are only backed once a
 * buffer is first written, so a large pool costs address space, not memory,
 * until traffic needs it. A buffer is named by its index; both backends keep
 * their own free list of indices (io_uring: the provided-buffer ring).
 */
#define _GNU_SOURCE
#include "port/port_internal.h"

#include <errno.h>
#include <sys/mman.h>

int cp__bufpool_init(struct bufpool *b, uint32_t count, uint32_t size) {
  b->count = count;
  b->size = size;
  b->slab_len = (size_t)count * size;
  void *m = mmap(NULL, b->slab_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    b->slab = NULL;
    return -errno;
  }
  b->slab = m;
  return 0;
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
