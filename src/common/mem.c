/* mem.c - the replaceable allocator. */
#define _GNU_SOURCE
#include "common/mem.h"

#include "cport/error.h"

#include <errno.h>
#include <stdlib.h>

struct cp__mem_fns cp__mem_fns = {malloc, realloc, calloc, free};

int cp_replace_allocator(cp_malloc_fn m, cp_realloc_fn r, cp_calloc_fn c, cp_free_fn f) {
  if (!m || !r || !c || !f)
    return CP_EINVAL;
  cp__mem_fns = (struct cp__mem_fns){m, r, c, f};
  return 0;
}
