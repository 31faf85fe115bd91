/*
 * sendbuf.c - reference-counted send buffers and their allocator.
 *
 * Small buffers are carved from 64 KiB chunks, one "current" chunk per
 * thread, as an IOCP ServerCore's SendBufferChunk does: an allocation is a
 * pointer bump and one atomic increment (the chunk's), with no lock and no malloc. A chunk
 * counts the buffers carved from it (plus one while it is a thread's current
 * chunk) and goes back to a small shared pool when the count drops to zero,
 * whichever thread drops it. Buffers above a quarter chunk get their own
 * allocation.
 *
 * A small buffer let go of is kept, up to CACHE_MAX of them, by the thread
 * that let it go, and handed out again first (last in, first out): a
 * request-reply load then writes the same few cache lines over and over
 * instead of a fresh line of the chunk per reply, and skips both of the
 * chunk's atomics. Only a buffer of the thread's current chunk is kept, so
 * the cache never holds a chunk that would otherwise have gone back to the
 * pool (kept buffers of other chunks once held three more chunks' pages in a
 * test that walks 100,000 chat rooms); they go when the chunk is replaced.
 *
 * Under AddressSanitizer a small buffer's bytes are poisoned from its last
 * reference until it is handed out again (kept or not), and so is a chunk's
 * room not carved yet and a pooled chunk's whole data: a write to a buffer
 * after its last cp_sendbuf_unref, or past its capacity, is reported - with
 * last-in-first-out reuse it would otherwise land in the next reply.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include "common/asan.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_SIZE (64u * 1024u)
#define LARGE (CHUNK_SIZE / 4)
#define POOL_MAX 64

struct chunk {
  _Atomic uint32_t refs;
  uint32_t used;
  struct chunk *next; /* in the pool */
  /* While it is a thread's current chunk, that thread's let-go buffers of
   * it (refs 0, each still counted in refs), touched by that thread only. */
  cp_sendbuf *kept;
  uint32_t nkept;
  _Alignas(16) uint8_t data[];
};

struct cp_sendbuf {
  struct chunk *chunk; /* NULL: allocated on its own */
  _Atomic uint32_t refs;
  uint32_t len;
  uint32_t cap;
  cp_sendbuf *next_kept; /* in a thread's cache of let-go buffers (refs 0) */
  _Alignas(16) uint8_t data[];
};
_Static_assert(sizeof(cp_sendbuf) == 32, "the header stays two 16-byte units");

/* The per-thread cache: at most CACHE_MAX buffers of at most CACHE_CAP bytes,
 * all inside the current chunk (no memory of their own). A kept buffer is
 * reused for a request of at least half its capacity, so a small packet does
 * not take a big one. They go with the chunk: when it is replaced, at the
 * thread's exit, or by cp__sendbuf_trim on that thread. */
#define CACHE_MAX 32u
#define CACHE_CAP 1024u

#define CHUNK_DATA (CHUNK_SIZE - sizeof(struct chunk))

static cp__mutex pool_mu; /* set up by init(), once */
static struct chunk *pool;
static unsigned pool_len;

static cp__once_t init_once = CP__ONCE_INIT;
static void init(void);

/* Buffers made and buffers freed, counted by the thread that made or freed
 * them: no locked instruction per buffer (a process-wide counter took two per
 * message, on a line every worker writes). Two counts that only go up, each
 * written by its thread alone with a release store: the sum reads every freed
 * count before every made count (acquire), so a free it sees comes with its
 * buffer's making and the figure never goes below zero, even while buffers
 * move between threads. A thread gets counts of its own where it allocates
 * anyway - its first chunk or large buffer - so that a free never allocates;
 * until then it adds to the shared ones (one atomic, as before). At the
 * thread's exit (or cp__sendbuf_trim on it) its counts go into the shared
 * ones, under pool_mu, which the sum holds too. */
struct tcount {
  _Atomic uint64_t made, freed;
  struct tcount *prev, *next;
};
static struct tcount *tcounts; /* guarded by pool_mu */
static _Atomic uint64_t shared_made, shared_freed;
static cp__key count_key;
static _Thread_local struct tcount *my_count;

static void count_leave(struct tcount *t) {
  cp__mutex_lock(&pool_mu);
  atomic_fetch_add_explicit(&shared_made, atomic_load_explicit(&t->made, memory_order_relaxed),
                            memory_order_release);
  atomic_fetch_add_explicit(&shared_freed, atomic_load_explicit(&t->freed, memory_order_relaxed),
                            memory_order_release);
  if (t->prev)
    t->prev->next = t->next;
  else
    tcounts = t->next;
  if (t->next)
    t->next->prev = t->prev;
  cp__mutex_unlock(&pool_mu);
  mem_free(t);
}

static void count_exit(void *t) {
  my_count = NULL;
  count_leave(t);
}

/* This thread's own counts, if it has none yet and memory allows (init done). */
static void count_join(void) {
  struct tcount *t;
  if (my_count || !(t = mem_calloc(1, sizeof *t)))
    return;
  cp__mutex_lock(&pool_mu);
  t->next = tcounts;
  if (tcounts)
    tcounts->prev = t;
  tcounts = t;
  cp__mutex_unlock(&pool_mu);
  my_count = t;
  cp__key_set(count_key, t);
}

/* One buffer made (freed false) or freed, in this thread's count or the
 * shared one. */
static inline void count_bump(bool freed) {
  struct tcount *t = my_count;
  if (__builtin_expect(t == NULL, 0)) {
    atomic_fetch_add_explicit(freed ? &shared_freed : &shared_made, 1, memory_order_release);
    return;
  }
  _Atomic uint64_t *own = freed ? &t->freed : &t->made;
  atomic_store_explicit(own, atomic_load_explicit(own, memory_order_relaxed) + 1,
                        memory_order_release);
}

size_t cp_sendbuf_outstanding(void) {
  cp__once(&init_once, init);
  cp__mutex_lock(&pool_mu);
  uint64_t freed = atomic_load_explicit(&shared_freed, memory_order_acquire);
  for (struct tcount *t = tcounts; t; t = t->next)
    freed += atomic_load_explicit(&t->freed, memory_order_acquire);
  uint64_t made = atomic_load_explicit(&shared_made, memory_order_acquire);
  for (struct tcount *t = tcounts; t; t = t->next)
    made += atomic_load_explicit(&t->made, memory_order_acquire);
  cp__mutex_unlock(&pool_mu);
  assert(made >= freed); /* every free counted comes with its making */
  return made >= freed ? (size_t)(made - freed) : 0;
}
static cp__key cur_key;
/* The chunk this thread carves from (and keeps let-go buffers of); its key
 * holds the same pointer, so the thread's exit gives it up (drop_current). */
static _Thread_local struct chunk *cur;

static void chunk_unref(struct chunk *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
    return;
  CP__POISON(c->data, CHUNK_DATA);
  cp__mutex_lock(&pool_mu);
  if (pool_len < POOL_MAX) {
    c->next = pool;
    pool = c;
    pool_len++;
    c = NULL;
  }
  cp__mutex_unlock(&pool_mu);
  if (c)
    CP__UNPOISON(c->data, CHUNK_DATA);
  mem_free(c);
}

/* Let go of c's kept buffers (c is, or was until now, this thread's current chunk). */
static void keep_flush(struct chunk *c) {
  while (c->kept) {
    cp_sendbuf *b = c->kept;
    assert(b->chunk == c);
    c->kept = b->next_kept;
    chunk_unref(c); /* never the last: the current reference is still held */
  }
  c->nkept = 0;
}

void cp__sendbuf_trim(void) {
  cp__once(&init_once, init);
  if (cur)
    keep_flush(cur);
  if (my_count) { /* its memory too; the thread counts in the shared counts until it allocates */
    struct tcount *t = my_count;
    my_count = NULL;
    cp__key_set(count_key, NULL);
    count_leave(t);
  }
  cp__mutex_lock(&pool_mu);
  struct chunk *c = pool;
  pool = NULL;
  pool_len = 0;
  cp__mutex_unlock(&pool_mu);
  while (c) {
    struct chunk *next = c->next;
    CP__UNPOISON(c->data, CHUNK_DATA);
    mem_free(c);
    c = next;
  }
}

/* A thread that exits gives up its current chunk and the buffers it kept of it. */
static void drop_current(void *c) {
  keep_flush(c);
  chunk_unref(c);
}
static void init(void) {
  cp__mutex_init(&pool_mu);
  cp__key_create(&cur_key, drop_current);
  cp__key_create(&count_key, count_exit);
}

static struct chunk *chunk_new(void) {
  struct chunk *c = NULL;
  cp__once(&init_once, init);
  cp__mutex_lock(&pool_mu);
  if (pool) {
    c = pool;
    pool = c->next;
    pool_len--;
  }
  cp__mutex_unlock(&pool_mu);
  if (!c) {
    if (!(c = mem_alloc(CHUNK_SIZE)))
      return NULL;
    CP__POISON(c->data, CHUNK_DATA); /* carved a buffer at a time */
  }
  atomic_init(&c->refs, 1); /* the thread's "current" reference */
  c->used = 0;
  c->next = NULL;
  c->kept = NULL;
  c->nkept = 0;
  return c;
}

/* A small buffer without blocking: a kept one, or carved from the current
 * chunk if it has room; NULL if it would take a new chunk. */
static cp_sendbuf *small_nowait(size_t cap, size_t need) {
  struct chunk *c = cur;
  if (!c)
    return NULL;
  cp_sendbuf *b = c->kept;
  if (b && b->cap >= cap && b->cap / 2 <= cap) {
    assert(atomic_load_explicit(&b->refs, memory_order_relaxed) == 0 && b->chunk == c);
    c->kept = b->next_kept; /* warm, and its chunk reference is still held */
    c->nkept--;
    CP__UNPOISON(b->data, cap);
  } else if (c->used + need <= CHUNK_DATA) {
    b = (cp_sendbuf *)(void *)(c->data + c->used);
    CP__UNPOISON(b, sizeof *b + cap);
    c->used += (uint32_t)need;
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    b->chunk = c;
  } else {
    return NULL;
  }
  b->cap = (uint32_t)cap; /* a kept one may have room for more: cap is what was asked */
  return b;
}

static cp_sendbuf *made(cp_sendbuf *b) {
  atomic_init(&b->refs, 1);
  count_bump(false);
  b->len = 0;
  return b;
}

static size_t need_of(size_t cap) {
  return (sizeof(cp_sendbuf) + cap + 15) & ~(size_t)15;
}

cp_sendbuf *cp__sendbuf_alloc_nowait(size_t cap) {
  cp_sendbuf *b = cap <= LARGE ? small_nowait(cap, need_of(cap)) : NULL;
  return b ? made(b) : NULL;
}

cp_sendbuf *cp_sendbuf_alloc(size_t cap) {
  if (cap > UINT32_MAX - 64)
    return NULL;
  size_t need = need_of(cap);
  cp_sendbuf *b;
  if (cap > LARGE) {
    cp__once(&init_once, init);
    count_join();
    if (!(b = mem_alloc(need)))
      return NULL;
    b->chunk = NULL;
    b->cap = (uint32_t)cap;
  } else if (!(b = small_nowait(cap, need))) {
    struct chunk *c = chunk_new(); /* the current one is full (or there is none) */
    if (!c)
      return NULL;
    count_join();
    if (cur) { /* the old chunk's kept buffers, then the chunk */
      keep_flush(cur);
      chunk_unref(cur);
    }
    cur = c;
    cp__key_set(cur_key, c);
    b = small_nowait(cap, need);
    assert(b); /* a fresh chunk has room for any small buffer */
  }
  return made(b);
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
  /* The only reference (a reply made for one session, the usual case): nobody
   * can take another (cp_sendbuf_ref needs one held), so no locked read-modify-
   * write. The acquire pairs with the release of the drops before ours. */
  uint32_t was = atomic_load_explicit(&b->refs, memory_order_acquire);
  if (was == 1)
    atomic_store_explicit(&b->refs, 0, memory_order_relaxed); /* a second unref still asserts */
  else
    was = atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel);
  assert(was > 0); /* never below zero */
  if (was != 1)
    return;
  count_bump(true);
  if (!b->chunk) {
    mem_free(b);
    return;
  }
  struct chunk *c = b->chunk;
  CP__POISON(b->data, b->cap);
  if (c == cur && b->cap <= CACHE_CAP && c->nkept < CACHE_MAX) {
    b->next_kept = c->kept; /* this thread's current chunk: only it touches the list */
    c->kept = b;
    c->nkept++;
    return;
  }
  chunk_unref(c);
}
