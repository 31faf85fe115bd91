/*
 * dummy_units.c - two pieces of cport-dummy checked on their own (no server, no backend):
 *  - apps/dummy/chat_text.h: parse_field (a fast path reading 8 bytes at once) gives what a
 *    plain digit-by-digit reader gives, on every field shape the chat texts use and on
 *    edge cases (no digits, 7/8/19/20 digits, a missing colon, any byte after the digits,
 *    fields near the end of the text), and on random texts from a fixed seed;
 *  - apps/dummy/order.c: members that receive a room's chats in one order agree (whole
 *    windows, and members joining and leaving at different times); one member that gets
 *    two chats swapped, in any part of the stream, is found, and so is one that lost a chat;
 *  - apps/dummy/pid_index.h: random adds and removals (rooms of 1 to 64 slots x 2, ids that
 *    collide and wrap around the index's end, ids not in it) give what a scan of the table
 *    gives, and the index holds exactly the table's non-zero ids.
 * Exit 0 on success.
 */
#include "../../apps/dummy/chat_text.h"
#include "../../apps/dummy/order.h"
#include "../../apps/dummy/pid_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static unsigned long cases;

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    cases++;                                                                                       \
    if (!(cond) && failures++ < 20) {                                                              \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                         \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fprintf(stderr, "\n");                                                                       \
    }                                                                                              \
  } while (0)

/* The plain reader: 1 to 19 digits then a colon. */
static bool plain_field(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  const uint8_t *q = *p;
  uint64_t v = 0;
  unsigned n = 0;
  while (q < end && *q >= '0' && *q <= '9') {
    if (++n > 19)
      return false;
    v = v * 10 + (unsigned)(*q++ - '0');
  }
  if (!n || q == end || *q != ':')
    return false;
  *p = q + 1;
  *out = v;
  return true;
}

/* Both readers on t[0..n), field after field, as on_chat reads them. */
static void same_fields(const uint8_t *t, size_t n) {
  const uint8_t *a = t, *b = t, *end = t + n;
  for (int k = 0; k < 4; k++) {
    uint64_t va = 0, vb = 0;
    bool ra = parse_field(&a, end, &va), rb = plain_field(&b, end, &vb);
    CHECK(ra == rb && (!ra || (va == vb && a == b)), "'%.*s' field %d: %d %llu / plain %d %llu",
          (int)n, (const char *)t, k, ra, (unsigned long long)va, rb, (unsigned long long)vb);
    if (!ra || !rb)
      return;
  }
}

static void same_str(const char *s) {
  /* copied to a buffer of its exact size, so a read past the end would be found by ASan */
  size_t n = strlen(s);
  uint8_t *t = malloc(n ? n : 1);
  memcpy(t, s, n);
  same_fields(t, n);
  free(t);
}

static void test_parse(void) {
  static const char *const fixed[] = {"0:1:1:abcdefghij",
                                      "1999:10:123456:xyz",
                                      "1:2:3:",
                                      "1:2:3",
                                      ":1:2:",
                                      "12345678:1:1:aaaa",
                                      "1234567:1234567:1234567:",
                                      "9999999:99999999:999999999:",
                                      "1234567890123456789:1:",
                                      "12345678901234567890:1:",
                                      "007:0008:00000009:padding!",
                                      "5;6:7:",
                                      "5:6 :7:",
                                      "5:6:7:\xff",
                                      "",
                                      "1",
                                      "1:",
                                      "a:1:2:",
                                      "1:a:2:",
                                      "4294967295:4294967296:18446744073709551615:",
                                      "00000000:1:",
                                      "1/2:3:",
                                      "1:2/:3:",
                                      "1:2:3:4:5:6:7:8:9"};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    same_str(fixed[i]);
  /* every byte value right after 1..9 digits, the field 0..3 bytes from the end */
  for (unsigned digits = 1; digits <= 9; digits++)
    for (unsigned c = 0; c < 256; c++)
      for (unsigned tail = 0; tail <= 8; tail++) {
        uint8_t t[32];
        size_t n = 0;
        for (unsigned d = 0; d < digits; d++)
          t[n++] = (uint8_t)('1' + (d * 7 + c) % 9);
        t[n++] = (uint8_t)c;
        for (unsigned k = 0; k < tail; k++)
          t[n++] = (uint8_t) "0:a9:z/;"[k];
        same_fields(t, n);
      }
  /* random texts of digits, colons and a few others */
  srand(12345);
  for (int i = 0; i < 200000; i++) {
    uint8_t t[40];
    size_t n = (size_t)(rand() % 40);
    for (size_t k = 0; k < n; k++) {
      int r = rand() % 16;
      t[k] = r < 11 ? (uint8_t)('0' + r % 10) : r < 14 ? ':' : (uint8_t)(rand() % 256);
    }
    same_fields(t, n);
  }
}

/* A room's chat stream: chat k is (sender k % 37, sequence k / 37 + 1). */
static uint64_t chat(unsigned k) {
  return order_key(k % 37, k / 37 + 1);
}

/* Member m gets chats [from, to) of the stream (head: it entered before the first), with
 * chats at swap and swap + 1 exchanged (swap < 0: none) and chat `lost` missing (< 0: none);
 * end: it is up at the end with every chat. */
static void member(struct order *o, unsigned from, unsigned to, bool end, long swap, long lost) {
  order_start(o, from); /* the chats before chat `from` were sent before it entered */
  for (unsigned k = from; k < to; k++) {
    unsigned c = k;
    if (swap >= 0 && (long)k == swap)
      c = k + 1;
    else if (swap >= 0 && (long)k == swap + 1)
      c = k - 1;
    if ((long)k != lost)
      order_add(o, chat(c));
  }
  if (end)
    order_end(o);
}

static struct order_result verify(struct order *m, size_t n) {
  struct order *p[4] = {0};
  for (size_t i = 0; i < n && i < 4; i++)
    p[i] = &m[i];
  struct order_result r = order_verify(p, n);
  for (size_t i = 0; i < n; i++)
    order_free(&m[i]);
  return r;
}

static void test_order(void) {
  const unsigned N = 5000; /* about 78 markers */
  struct order m[4] = {0};
  struct order_result r;
  /* one order, whole windows: every chat compared */
  for (int i = 0; i < 3; i++)
    member(&m[i], 0, N, true, -1, -1);
  r = verify(m, 3);
  CHECK(r.mismatches == 0 && r.chats == 3ull * N && r.checkpoints > 40 && !r.incomplete,
        "one order: %llu mismatches, %llu chats compared", (unsigned long long)r.mismatches,
        (unsigned long long)r.chats);
  /* members that recorded nothing (they left before any whole segment): nothing to compare */
  member(&m[0], 0, 3, false, -1, -1);
  member(&m[1], 0, 0, false, -1, -1);
  r = verify(m, 2);
  CHECK(r.mismatches == 0 && r.checkpoints == 0 && r.chats == 0 && !r.incomplete,
        "no records: %llu checkpoints", (unsigned long long)r.checkpoints);
  /* a stream with no marker at all: compared whole */
  for (int i = 0; i < 2; i++)
    member(&m[i], 0, 3, true, -1, -1);
  r = verify(m, 2);
  CHECK(r.mismatches == 0 && r.chats == 6, "short stream: %llu chats compared",
        (unsigned long long)r.chats);
  member(&m[0], 0, 3, true, -1, -1);
  member(&m[1], 0, 3, true, 0, -1);
  r = verify(m, 2);
  CHECK(r.mismatches == 1, "short stream swapped: %llu mismatches",
        (unsigned long long)r.mismatches);
  /* members that entered after chats were sent (sent: the room's chats sent before the enter,
   * counted as entered() does) saw no head of the stream, however little came after: churn
   * reconnects the dummy's settle lets in once sending stopped, one with the last chats still
   * in flight (here chat 2), one with none - neither records the whole stream */
  member(&m[0], 0, 3, true, -1, -1);
  member(&m[1], 0, 3, true, -1, -1);
  order_start(&m[2], 2);
  order_add(&m[2], chat(2));
  order_end(&m[2]);
  order_start(&m[3], 3);
  order_end(&m[3]);
  r = verify(m, 4);
  CHECK(r.mismatches == 0 && r.checkpoints == 1 && r.records == 2 && r.chats == 6,
        "entered after the stream started: %llu mismatches, %llu records",
        (unsigned long long)r.mismatches, (unsigned long long)r.records);
  /* members joining and leaving at different times, one order: they agree where they overlap */
  member(&m[0], 0, N, true, -1, -1);
  member(&m[1], 1000, N, true, -1, -1);
  member(&m[2], 0, 3000, false, -1, -1);
  member(&m[3], 700, 4100, false, -1, -1);
  r = verify(m, 4);
  CHECK(r.mismatches == 0 && r.checkpoints > 40, "churn: %llu mismatches, %llu checkpoints",
        (unsigned long long)r.mismatches, (unsigned long long)r.checkpoints);
  /* one member with two chats swapped, anywhere: found */
  for (unsigned s = 0; s + 1 < N; s += 97) {
    member(&m[0], 0, N, true, -1, -1);
    member(&m[1], 0, N, true, (long)s, -1);
    member(&m[2], 0, N, true, -1, -1);
    r = verify(m, 3);
    /* a marker moved by the swap changes the segments on both sides of it */
    uint64_t want = order_is_marker(chat(s)) || order_is_marker(chat(s + 1)) ? 2 : 1;
    CHECK(r.mismatches == want, "swap at %u: %llu mismatches", s, (unsigned long long)r.mismatches);
  }
  /* ... also by a member that joined late, within what it saw whole */
  member(&m[0], 0, N, true, -1, -1);
  member(&m[1], 1000, N, true, 2500, -1);
  r = verify(m, 2);
  CHECK(r.mismatches == 1, "late joiner's swap: %llu mismatches", (unsigned long long)r.mismatches);
  /* a lost chat (not a marker) changes its segment */
  for (unsigned l = 5; l < N; l += 301) {
    if (order_is_marker(chat(l)))
      continue; /* a lost marker merges two segments: also found, but counted differently */
    member(&m[0], 0, N, true, -1, -1);
    member(&m[1], 0, N, true, -1, (long)l);
    r = verify(m, 2);
    CHECK(r.mismatches == 1, "lost %u: %llu mismatches", l, (unsigned long long)r.mismatches);
  }
}

/* The slot of ids[0..n) holding id, by a scan; UINT_MAX if none. */
static unsigned scan_slot(const uint64_t *ids, unsigned n, uint64_t id) {
  for (unsigned j = 0; j < n; j++)
    if (ids[j] == id)
      return j;
  return UINT_MAX;
}

static void test_pid_index(void) {
  uint64_t x = 0x2545F4914F6CDD1Dull; /* xorshift64, a fixed seed */
#define NEXT() (x ^= x << 13, x ^= x >> 7, x ^= x << 17)
  for (unsigned room = 1; room <= 64; room++) {
    unsigned n = 2 * room, bits = 1, bad = 0;
    while ((1u << bits) <= n)
      bits++;
    uint64_t ids[128] = {0};
    uint32_t ix[256] = {0};
    for (unsigned op = 0; op < 4000 && !bad; op++) {
      unsigned slot = (unsigned)(NEXT() % n);
      /* ids from a small range (3 x room, so adds and removals of the same id recur), some
       * spread over the 64 bits: runs that collide and wrap around the index's end */
      uint64_t id = NEXT() % 4 ? 1 + NEXT() % (3 * room) : NEXT() | 1;
      if (!ids[slot] && scan_slot(ids, n, id) == UINT_MAX) {
        ids[slot] = id;
        pid_index_add(ix, bits, ids, slot);
      } else if (ids[slot]) {
        unsigned got = pid_index_take(ix, bits, ids, ids[slot]);
        bad += got != slot;
        CHECK(got == slot, "room %u, op %u: took slot %u, not %u", room, op, got, slot);
        ids[slot] = 0;
      }
      uint64_t absent = NEXT() | 1;
      if (scan_slot(ids, n, absent) == UINT_MAX)
        CHECK(pid_index_take(ix, bits, ids, absent) == UINT_MAX, "room %u: an absent id found",
              room);
    }
    /* every id found where it is (take, then add back); the index holds nothing else */
    unsigned held = 0, filled = 0;
    for (unsigned j = 0; j < n; j++)
      if (ids[j]) {
        filled++;
        unsigned got = pid_index_take(ix, bits, ids, ids[j]);
        CHECK(got == j, "room %u: id of slot %u found at %u", room, j, got);
        pid_index_add(ix, bits, ids, j);
      }
    for (unsigned i = 0; i < 1u << bits; i++)
      held += ix[i] != 0;
    CHECK(held == filled, "room %u: %u entries for %u ids", room, held, filled);
  }
#undef NEXT
}

int main(void) {
  test_parse();
  test_order();
  test_pid_index();
  printf("dummy_units: %lu cases, %d failed\n", cases, failures);
  return failures ? 1 : 0;
}
