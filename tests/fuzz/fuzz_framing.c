/*
 * fuzz_framing.c - differential fuzzing of the packet framing (src/net/framing.c).
 *
 * The input is a byte stream plus how to cut it: cp__frame_feed() gets the
 * stream in chunks (1-byte chunks, empty chunks, chunks that split headers,
 * the whole stream at once), and a trivial reference parser walks the whole
 * stream in one go. It checks, exactly:
 *   - the same packets, bytes compared, in the same order, each delivered by
 *     the cp__frame_feed call whose chunk completes it;
 *   - FRAME_BAD exactly when the reference meets a header with size < 4 or
 *     size > max_packet, from the call whose chunk completes that header,
 *     after every packet before it;
 *   - after every FRAME_OK, the kept part holds exactly the bytes after the
 *     last complete packet (none: no part), and no more than max_packet;
 *   - FRAME_STOP when deliver returns false (at the k-th packet), at once;
 *   - FRAME_NOMEM when the n-th allocation of the engine's allocator fails
 *     (cp_replace_allocator), and never an allocation failure swallowed;
 *   - cp__frame_reset frees everything: the allocator counts live blocks (and
 *     libFuzzer's leak check runs after each input).
 * Every chunk is copied against a PROT_NONE guard page (at its end, or at
 * its start) before cp__frame_feed sees it, so a read outside it faults.
 *
 * Input: byte 0 flags, bytes 1-2 max_packet (LE; below 4 become 4..7), byte 3
 * k (deliver returns false at packet k + 1), byte 4 n (fail allocation n,
 * from 0), byte 5 the number of chunk lengths (low 4 bits), then that many
 * chunk lengths (one byte each: b < 192 is b, else 192 + (b - 192) * 256),
 * then the stream.
 */
#define _GNU_SOURCE
#include "cport/alloc.h"
#include "fuzz_util.h"
#include "net/framing.h"

enum {
  F_STOP = 1,         /* deliver returns false at packet k + 1 */
  F_NOMEM = 2,        /* allocation n fails */
  F_CYCLE = 4,        /* repeat the chunk lengths until the stream ends */
  F_GUARD_START = 8,  /* chunks abut the guard page before them */
  F_GUARD_ALT = 16,   /* alternate the guard side chunk by chunk */
  F_EMPTY_FIRST = 32, /* feed an empty chunk before every chunk */
};

/* ---- the engine's allocator, counted and failing on demand ----------- */

static size_t n_allocs, fail_at = SIZE_MAX;
static bool alloc_failed;
static long live_blocks;

static bool inject(void) {
  if (n_allocs++ != fail_at)
    return false;
  alloc_failed = true;
  return true;
}

static void *f_malloc(size_t n) {
  void *p = inject() ? NULL : malloc(n);
  live_blocks += p != NULL;
  return p;
}

static void *f_calloc(size_t c, size_t n) {
  void *p = inject() ? NULL : calloc(c, n);
  live_blocks += p != NULL;
  return p;
}

static void *f_realloc(void *old, size_t n) {
  void *p = inject() ? NULL : realloc(old, n);
  live_blocks += p && !old;
  return p;
}

static void f_free(void *p) {
  live_blocks -= p != NULL;
  free(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  FUZZ_CHECK(cp_replace_allocator(f_malloc, f_realloc, f_calloc, f_free) == 0);
  return 0;
}

/* ---- the reference: the whole stream in one walk -------------------- */

struct ref {
  size_t n;       /* complete packets before the end or a bad header */
  size_t *off;    /* where each starts */
  bool bad;       /* a bad header at bad_off (its 4 bytes are all there) */
  size_t bad_off; /* or: where the unconsumed tail starts */
};

static void ref_parse(struct ref *r, const uint8_t *s, size_t len, uint16_t max_packet) {
  size_t off = 0;
  r->n = 0;
  r->bad = false;
  r->off = malloc((len / 4 + 1) * sizeof *r->off);
  FUZZ_CHECK(r->off);
  while (len - off >= 4) {
    uint16_t size = fuzz_le16(s + off);
    if (size < 4 || size > max_packet) {
      r->bad = true;
      break;
    }
    if (size > len - off)
      break;
    r->off[r->n++] = off;
    off += size;
  }
  r->bad_off = off;
}

/* Where packet i ends. */
static size_t ref_end(const struct ref *r, const uint8_t *s, size_t i) {
  return r->off[i] + fuzz_le16(s + r->off[i]);
}

/* ---- the run ---------------------------------------------------------- */

struct run {
  const uint8_t *s; /* the stream (libFuzzer's copy: only the reference reads it) */
  struct ref ref;
  size_t got;                 /* packets delivered */
  size_t fed_before, fed_now; /* stream bytes before / after the current chunk */
  size_t stop_at;             /* deliver returns false at this packet (1-based) */
  size_t complete;            /* complete_in()'s count so far */
  bool said_stop;
};

static bool deliver(void *ctx, const uint8_t *pkt, uint16_t size) {
  struct run *r = ctx;
  FUZZ_CHECK(!r->said_stop);
  FUZZ_CHECK(r->got < r->ref.n);
  size_t off = r->ref.off[r->got];
  FUZZ_CHECK(size == fuzz_le16(r->s + off));
  FUZZ_CHECK(fuzz_le16(pkt) == size);
  FUZZ_CHECK(memcmp(pkt, r->s + off, size) == 0);
  /* delivered by the call whose chunk completes it */
  FUZZ_CHECK(off + size <= r->fed_now);
  FUZZ_CHECK(off + size > r->fed_before);
  r->got++;
  if (r->got == r->stop_at) {
    r->said_stop = true;
    return false;
  }
  return true;
}

/* Complete packets in the first `fed` bytes of the stream; fed never
 * shrinks from one call to the next, so the count goes on from the last. */
static size_t complete_in(struct run *r, size_t fed) {
  while (r->complete < r->ref.n && ref_end(&r->ref, r->s, r->complete) <= fed)
    r->complete++;
  return r->complete;
}

static size_t chunk_len(uint8_t b) {
  return b < 192 ? b : 192 + (size_t)(b - 192) * 256;
}

static struct guard_buf guard;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 6)
    return 0;
  uint8_t flags = data[0];
  uint16_t max_packet = fuzz_le16(data + 1);
  if (max_packet < 4)
    max_packet = (uint16_t)(max_packet + 4);
  size_t stop_k = data[3], fail_n = data[4];
  size_t nsplit = data[5] & 15;
  if (size < 6 + nsplit)
    return 0;
  size_t lens[16], sum = 0;
  for (size_t i = 0; i < nsplit; i++)
    sum += lens[i] = chunk_len(data[6 + i]);
  if ((flags & F_CYCLE) && nsplit && !sum)
    for (size_t i = 0; i < nsplit; i++)
      lens[i] = 1;
  const uint8_t *stream = data + 6 + nsplit;
  size_t len = size - 6 - nsplit;

  struct run r = {.s = stream, .stop_at = (flags & F_STOP) ? stop_k + 1 : SIZE_MAX};
  ref_parse(&r.ref, stream, len, max_packet);
  n_allocs = 0;
  alloc_failed = false;
  fail_at = (flags & F_NOMEM) ? fail_n : SIZE_MAX;
  FUZZ_CHECK(live_blocks == 0);

  struct frame_part *part = NULL, *last_part = NULL;
  frame_status st = FRAME_OK;
  size_t chunk = 0;
  bool at_start = flags & F_GUARD_START;
  for (;;) {
    size_t n = len - r.fed_before;
    if (nsplit && ((flags & F_CYCLE) || chunk < nsplit) && lens[chunk % nsplit] < n)
      n = lens[chunk % nsplit];
    if (flags & F_EMPTY_FIRST) {
      r.fed_now = r.fed_before;
      const uint8_t *p = guard_place(&guard, NULL, 0, false);
      FUZZ_CHECK(cp__frame_feed(&part, p, 0, max_packet, deliver, &r) == FRAME_OK);
    }
    r.fed_now = r.fed_before + n;
    bool failed_before = alloc_failed;
    const uint8_t *p = guard_place(&guard, stream + r.fed_before, n, at_start);
    st = cp__frame_feed(&part, p, n, max_packet, deliver, &r);
    bool failed_here = alloc_failed && !failed_before;
    chunk++;
    if (flags & F_GUARD_ALT)
      at_start = !at_start;

    /* a failed allocation is reported, and only a failed one is */
    FUZZ_CHECK(failed_here == (st == FRAME_NOMEM));
    /* deliver said stop: nothing else happened after it */
    FUZZ_CHECK(r.said_stop == (st == FRAME_STOP));
    /* the bad header is reported by the call that completes it */
    bool bad_here = r.ref.bad && r.ref.bad_off + 4 > r.fed_before && r.ref.bad_off + 4 <= r.fed_now;
    /* (a stop, or no memory for a packet before it, may come first) */
    if (st != FRAME_NOMEM && st != FRAME_STOP)
      FUZZ_CHECK(bad_here == (st == FRAME_BAD));

    if (st != FRAME_OK) {
      /* every packet before the point it stopped at was delivered */
      FUZZ_CHECK(r.got >= complete_in(&r, r.fed_before));
      if (st == FRAME_BAD)
        FUZZ_CHECK(r.got == r.ref.n);
      break;
    }
    /* every packet completed so far was delivered, and only those */
    FUZZ_CHECK(r.got == complete_in(&r, r.fed_now));
    /* the part holds exactly what follows the last of them */
    size_t from = r.got ? ref_end(&r.ref, stream, r.got - 1) : 0, tail = r.fed_now - from;
    if (!tail) {
      FUZZ_CHECK(part == NULL);
    } else {
      FUZZ_CHECK(part != NULL);
      FUZZ_CHECK(part->len == tail);
      FUZZ_CHECK(part->cap >= part->len && part->cap <= max_packet);
      /* All of it when it moved (or at the end), else the bytes this chunk
       * added: comparing all of it after each of many small chunks would
       * make a run quadratic. */
      size_t cmp =
          part != last_part || r.fed_now == len || from >= r.fed_before ? 0 : r.fed_before - from;
      FUZZ_CHECK(memcmp(part->data + cmp, stream + from + cmp, tail - cmp) == 0);
    }
    last_part = part;
    FUZZ_CHECK(live_blocks == (part != NULL));
    if (r.fed_now == len)
      break;
    r.fed_before = r.fed_now;
  }
  if (st == FRAME_OK) {
    FUZZ_CHECK(r.got == r.ref.n);
    FUZZ_CHECK(!r.ref.bad);
  }
  cp__frame_reset(&part);
  FUZZ_CHECK(part == NULL);
  FUZZ_CHECK(live_blocks == 0);
  fail_at = SIZE_MAX;
  free(r.ref.off);
  return 0;
}
