/*
 * sendbuf.c - reference-counted send buffers and their allocator.
 *
 * Small buffers are carved from 64 KiB chunks, one "current" chunk per
 * thread, as an IOCP ServerCore's SendBufferChunk does: an allocation is a
 * pointer bump and two atomic increments, with no lock and no malloc. A chunk
 * counts the buffers carved from it (plus one while it is a thread's current
 * chunk) and goes back to a small shared pool when the count drops to zero,
 * whichever thread drops it. Buffers above a quarter chunk get their own
 * allocation.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_SIZE (64u * 1024u)
#define LARGE (CHUNK_SIZE / 4)
#define POOL_MAX 64

struct chunk {
  _Atomic uint32_t refs;
  uint32_t used;
  struct chunk *next; /* in the pool */
  _Alignas(16) uint8_t data[];
};

struct cp_sendbuf {
  struct chunk *chunk; /* NULL: allocated on its own */
  _Atomic uint32_t refs;
  uint32_t len;
  uint32_t cap;
  _Alignas(16) uint8_t data[];
};

#define CHUNK_DATA (CHUNK_SIZE - sizeof(struct chunk))

static cp__mutex pool_mu; /* set up by init(), once */
static struct chunk *pool;
static unsigned pool_len;

static _Atomic size_t outstanding;

size_t cp_sendbuf_outstanding(void) {
  return atomic_load_explicit(&outstanding, memory_order_relaxed);
}

static cp__once_t init_once = CP__ONCE_INIT;
static cp__key cur_key;
static void init(void);
static _Thread_local struct chunk *cur;

static void chunk_unref(struct chunk *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
    return;
  cp__mutex_lock(&pool_mu);
  if (pool_len < POOL_MAX) {
    c->next = pool;
    pool = c;
    pool_len++;
    c = NULL;
  }
  cp__mutex_unlock(&pool_mu);
  mem_free(c);
}

void cp__sendbuf_trim(void) {
  cp__once(&init_once, init);
  cp__mutex_lock(&pool_mu);
  struct chunk *c = pool;
  pool = NULL;
  pool_len = 0;
  cp__mutex_unlock(&pool_mu);
  while (c) {
    struct chunk *next = c->next;
    mem_free(c);
    c = next;
  }
}

/* A thread that exits gives up its current chunk. */
static void drop_current(void *c) {
  chunk_unref(c);
}
static void init(void) {
  cp__mutex_init(&pool_mu);
  cp__key_create(&cur_key, drop_current);
}

static struct chunk *chunk_new(void) {
  struct chunk *c = NULL;
  cp__mutex_lock(&pool_mu);
  if (pool) {
    c = pool;
    pool = c->next;
    pool_len--;
  }
  cp__mutex_unlock(&pool_mu);
  if (!c && !(c = mem_alloc(CHUNK_SIZE)))
    return NULL;
  atomic_init(&c->refs, 1); /* the thread's "current" reference */
  c->used = 0;
  c->next = NULL;
  return c;
}

cp_sendbuf *cp_sendbuf_alloc(size_t cap) {
  if (cap > UINT32_MAX - 64)
    return NULL;
  cp_sendbuf *b;
  size_t need = (sizeof(cp_sendbuf) + cap + 15) & ~(size_t)15;
  if (cap > LARGE) {
    b = mem_alloc(need);
    if (!b)
      return NULL;
    b->chunk = NULL;
  } else {
    if (!cur || cur->used + need > CHUNK_DATA) {
      cp__once(&init_once, init);
      struct chunk *c = chunk_new();
      if (!c)
        return NULL;
      if (cur)
        chunk_unref(cur);
      cur = c;
      cp__key_set(cur_key, c);
    }
    b = (cp_sendbuf *)(void *)(cur->data + cur->used);
    cur->used += (uint32_t)need;
    atomic_fetch_add_explicit(&cur->refs, 1, memory_order_relaxed);
    b->chunk = cur;
  }
  atomic_init(&b->refs, 1);
  atomic_fetch_add_explicit(&outstanding, 1, memory_order_relaxed);
  b->len = 0;
  b->cap = (uint32_t)cap;
  return b;
}

cp_sendbuf *cp_packet_alloc(uint16_t id, size_t body_len) {
  if (body_len > 0xffffu - CP_PACKET_HEADER)
    return NULL;
  uint16_t size = (uint16_t)(body_len + CP_PACKET_HEADER);
  cp_sendbuf *b = cp_sendbuf_alloc(size);
  if (!b)
    return NULL;
  b->data[0] = (uint8_t)(size & 0xff);
  b->data[1] = (uint8_t)(size >> 8);
  b->data[2] = (uint8_t)(id & 0xff);
  b->data[3] = (uint8_t)(id >> 8);
  b->len = size;
  return b;
}

cp_sendbuf *cp_sendbuf_copy(const void *data, size_t len) {
  if (!data && len)
    return NULL;
  cp_sendbuf *b = cp_sendbuf_alloc(len);
  if (b && len) {
    memcpy(b->data, data, len);
    b->len = (uint32_t)len;
  }
  return b;
}

bool cp__sendbuf_append(cp_sendbuf *b, const void *data, size_t len) {
  assert(atomic_load_explicit(&b->refs, memory_order_relaxed) == 1); /* nobody else sees it */
  if (len > b->cap - b->len)
    return false;
  memcpy(b->data + b->len, data, len);
  b->len += (uint32_t)len;
  return true;
}

uint8_t *cp_sendbuf_data(cp_sendbuf *b) {
  return b ? b->data : NULL;
}
size_t cp_sendbuf_len(const cp_sendbuf *b) {
  return b ? b->len : 0;
}
size_t cp_sendbuf_cap(const cp_sendbuf *b) {
  return b ? b->cap : 0;
}

void cp_sendbuf_set_len(cp_sendbuf *b, size_t len) {
  if (!b)
    return;
  b->len = (uint32_t)(len <= b->cap ? len : b->cap);
}

cp_sendbuf *cp_sendbuf_ref(cp_sendbuf *b) {
  if (!b)
    return NULL;
  uint32_t was = atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  assert(was > 0);
  (void)was;
  return b;
}

/* n references more, in one atomic add (a broadcast's, one per session). */
void cp__sendbuf_ref_n(cp_sendbuf *b, size_t n) {
  uint32_t was = atomic_fetch_add_explicit(&b->refs, (uint32_t)n, memory_order_relaxed);
  assert(was > 0 && (uint64_t)was + n <= UINT32_MAX);
  (void)was;
}

/* n references fewer, never the last one. */
void cp__sendbuf_unref_n(cp_sendbuf *b, size_t n) {
  uint32_t was = atomic_fetch_sub_explicit(&b->refs, (uint32_t)n, memory_order_relaxed);
  assert(was > n);
  (void)was;
}

void cp_sendbuf_unref(cp_sendbuf *b) {
  if (!b)
    return;
  uint32_t was = atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel);
  assert(was > 0); /* never below zero */
  if (was != 1)
    return;
  atomic_fetch_sub_explicit(&outstanding, 1, memory_order_relaxed);
  if (b->chunk)
    chunk_unref(b->chunk);
  else
    mem_free(b);
}
