/* The slab behind pooled receives (src/port/bufpool.c), on its own: a pool of
 * 2 MiB or more starts on a 2 MiB boundary and takes MADV_HUGEPAGE (what the
 * io_uring backend asks for, since its buffer ring goes round the whole pool);
 * a small pool is left as it is; every buffer is writable end to end and maps
 * back to its index, and nothing else does. Where the kernel has transparent
 * huge pages on (enabled: always or madvise), a fully written large pool is
 * backed by at least one huge page. */
#include "common/test.h"

#include "port/port_internal.h"

#include <stdint.h>
#include <string.h>

#define MIB ((size_t)1 << 20)

/* Every buffer: first and last byte written, index round trip; pointers that
 * are not a buffer's start are refused. */
static void check_buffers(const struct bufpool *b) {
  CHECK(b->slab != NULL);
  CHECK_EQ(b->slab_len, (size_t)b->count * b->size);
  for (uint32_t i = 0; i < b->count; i++) {
    char *a = bufpool_addr(b, i);
    a[0] = (char)i;
    a[b->size - 1] = (char)~i;
    CHECK_EQ(cp__bufpool_index(b, a), (long)i);
    if (b->size > 1)
      CHECK_EQ(cp__bufpool_index(b, a + 1), -1L);
  }
  for (uint32_t i = 0; i < b->count; i++) {
    const char *a = bufpool_addr(b, i);
    CHECK_EQ(a[0], (char)i);
    CHECK_EQ(a[b->size - 1], (char)~i);
  }
  CHECK_EQ(cp__bufpool_index(b, b->slab - 1), -1L);
  CHECK_EQ(cp__bufpool_index(b, b->slab + b->slab_len), -1L);
  CHECK_EQ(cp__bufpool_index(b, NULL), -1L);
}

/* kB of AnonHugePages in the mapping that holds addr, from /proc/self/smaps;
 * -1 if the mapping is not found. */
static long anon_huge_kb(const void *addr) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f)
    return -1;
  char line[512];
  bool in = false;
  long kb = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
      continue;
    }
    if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
      break;
  }
  fclose(f);
  return kb;
}

/* "always" or "madvise" is selected (in brackets) in the kernel's THP switch. */
static bool thp_on(void) {
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (!f)
    return false;
  char s[128] = {0};
  bool on = fgets(s, sizeof s, f) && (strstr(s, "[always]") || strstr(s, "[madvise]"));
  fclose(f);
  return on;
}

static void test_large(void) {
  struct bufpool b;
  CHECK_EQ(cp__bufpool_init(&b, 4096, 4096), 0); /* the port's default: 16 MiB */
  CHECK_EQ((uintptr_t)b.slab % (2 * MIB), (uintptr_t)0);
  int rc = cp__bufpool_huge(&b);
  CHECK(rc == 0 || rc == CP_EINVAL); /* EINVAL: a kernel built without THP */
  check_buffers(&b);
  long kb = anon_huge_kb(b.slab);
  CHECK(kb >= 0);
  if (rc == 0 && thp_on()) {
    /* the kernel may fall back to small pages when it has no free 2 MiB:
     * ask for one, not all eight */
    CHECK(kb >= 2048);
  }
  printf("large pool: 16 MiB at %p, AnonHugePages %ld kB (THP %s)\n", (void *)b.slab, kb,
         thp_on() ? "on" : "off");
  cp__bufpool_free(&b);
  CHECK(b.slab == NULL);
}

static void test_small_and_odd(void) {
  struct bufpool b;
  CHECK_EQ(cp__bufpool_init(&b, 8, 4096), 0); /* 32 KiB: no alignment asked for */
  CHECK_EQ(cp__bufpool_huge(&b), 0);          /* nothing to do */
  check_buffers(&b);
  cp__bufpool_free(&b);

  CHECK_EQ(cp__bufpool_init(&b, 3, 1000), 0); /* sizes that are no page multiple */
  check_buffers(&b);
  cp__bufpool_free(&b);

  /* just over 2 MiB, and not a multiple of it: aligned, the tail kept */
  CHECK_EQ(cp__bufpool_init(&b, 513, 4096), 0);
  CHECK_EQ((uintptr_t)b.slab % (2 * MIB), (uintptr_t)0);
  CHECK_EQ(cp__bufpool_huge(&b) == 0 || cp__bufpool_huge(&b) == CP_EINVAL, true);
  check_buffers(&b);
  cp__bufpool_free(&b);

  /* over 2 MiB and no page multiple: aligned, and the tail given back from the
   * page after the pool's end (not from its unaligned end, which munmap refuses) */
  CHECK_EQ(cp__bufpool_init(&b, 600, 4100), 0);
  CHECK_EQ((uintptr_t)b.slab % (2 * MIB), (uintptr_t)0);
  check_buffers(&b);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *next = (char *)(((uintptr_t)(b.slab + b.slab_len) + page - 1) & ~(uintptr_t)(page - 1));
  CHECK(anon_huge_kb(next) == -1); /* nothing mapped after the pool's last page */
  cp__bufpool_free(&b);
  cp__bufpool_free(&b); /* twice: harmless */
}

int main(void) {
  test_large();
  test_small_and_odd();
  printf("test_bufpool: ok\n");
  return 0;
}
