/*
 * wire_decode_same.c - apps/common/wire_decode.h (cport-dummy's hand decoder)
 * agrees with protobuf-c's unpack of the chatw messages it replaces, on every
 * message kind it decodes (S_CHAT, S_MEMBER_JOINED, S_MEMBER_LEFT): the same
 * verdict (decodes or not) and the same values, on valid messages (protobuf-c's
 * encodings, and hand-made ones with fields repeated, reordered, unknown or of
 * the wrong wire type), on every truncation of them, on every byte of them
 * replaced by each of a set of telling values, and on random mutations from a
 * fixed seed. Exit 0 on success.
 */
#include "../../apps/common/wire_decode.h"
#include "chat_wire.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static unsigned long cases, decoded;

#define BIN(s) ((ProtobufCBinaryData){.len = sizeof(s) - 1, .data = (uint8_t *)(s)})

static bool same_bytes(ProtobufCBinaryData a, struct wire_bytes b) {
  return a.len == b.len && (!a.len || !memcmp(a.data, b.data, a.len));
}

static void fail(const char *kind, const uint8_t *p, size_t n, const char *why) {
  if (failures++ < 10) {
    fprintf(stderr, "FAIL: %s (%zu bytes):", kind, n);
    for (size_t i = 0; i < n && i < 64; i++)
      fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, ": %s\n", why);
  }
}

/* The verdicts of both decoders on one input of one kind. */
static void agree(const char *kind, const uint8_t *p, size_t n, bool hand, const void *pc,
                  bool same) {
  if (hand != (pc != NULL))
    fail(kind, p, n,
         hand ? "hand decodes, protobuf-c does not" : "protobuf-c decodes, hand does not");
  else if (pc && !same)
    fail(kind, p, n, "values differ");
  decoded += pc != NULL;
}

/* One input, every kind: both decoders must agree. */
static void check(const uint8_t *p, size_t n) {
  cases++;
  struct wire_schat c;
  bool ok = wire_decode_schat(p, n, &c);
  Chatw__SChat *mc = chatw__schat__unpack(NULL, n, p);
  agree("S_CHAT", p, n, ok, mc,
        mc && mc->player_id == c.player_id && mc->client_time_us == c.client_time_us &&
            same_bytes(mc->text, c.text) && same_bytes(mc->room, c.room));
  chatw__schat__free_unpacked(mc, NULL);

  struct wire_smember_joined j;
  ok = wire_decode_smember_joined(p, n, &j);
  Chatw__SMemberJoined *mj = chatw__smember_joined__unpack(NULL, n, p);
  agree("S_MEMBER_JOINED", p, n, ok, mj,
        mj && same_bytes(mj->room, j.room) && (mj->member != NULL) == j.has_member &&
            (!mj->member || (mj->member->player_id == j.member.player_id &&
                             same_bytes(mj->member->name, j.member.name))));
  chatw__smember_joined__free_unpacked(mj, NULL);

  struct wire_smember_left l;
  ok = wire_decode_smember_left(p, n, &l);
  Chatw__SMemberLeft *ml = chatw__smember_left__unpack(NULL, n, p);
  agree("S_MEMBER_LEFT", p, n, ok, ml,
        ml && ml->player_id == l.player_id && same_bytes(ml->room, l.room));
  chatw__smember_left__free_unpacked(ml, NULL);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)rng;
}

/* The input, every truncation, every byte replaced, random mutations. */
static void around(const uint8_t *p, size_t n) {
  static const uint8_t values[] = {0x00, 0x01, 0x02, 0x05, 0x07, 0x08, 0x0a, 0x0b, 0x0c, 0x10,
                                   0x12, 0x18, 0x1a, 0x20, 0x22, 0x7f, 0x80, 0x81, 0xff};
  uint8_t x[1200];
  if (n > sizeof x)
    return;
  for (size_t k = 0; k <= n; k++)
    check(p, k);
  for (size_t i = 0; i < n; i++)
    for (size_t v = 0; v < sizeof values; v++) {
      memcpy(x, p, n);
      x[i] = values[v];
      check(x, n);
    }
  for (unsigned r = 0; r < 2000; r++) {
    memcpy(x, p, n);
    unsigned k = 1 + next_rand() % 4;
    for (unsigned j = 0; j < k && n; j++)
      x[next_rand() % n] = (uint8_t)next_rand();
    size_t len = next_rand() % 4 ? n : next_rand() % (n + 1);
    check(x, len);
  }
}

static void packed(const ProtobufCMessage *m) {
  uint8_t buf[1200];
  size_t n = protobuf_c_message_get_packed_size(m);
  if (n > sizeof buf) {
    fprintf(stderr, "FAIL: test message too large\n");
    failures++;
    return;
  }
  protobuf_c_message_pack(m, buf);
  around(buf, n);
}

int main(void) {
  Chatw__SChat c = CHATW__SCHAT__INIT;
  c.player_id = 123456789;
  c.text = BIN("7:42:123456789:abcdefghijklmnop");
  c.client_time_us = 1764633600123456ull;
  c.room = BIN("room-0");
  packed(&c.base);
  c.player_id = UINT64_MAX;
  c.client_time_us = 0;
  c.text = BIN("a\0b\xff");
  c.room = BIN("");
  packed(&c.base);
  Chatw__SChat empty = CHATW__SCHAT__INIT;
  packed(&empty.base);

  Chatw__Member mem = CHATW__MEMBER__INIT;
  mem.player_id = 77;
  mem.name = BIN("dummy-17");
  Chatw__SMemberJoined j = CHATW__SMEMBER_JOINED__INIT;
  j.room = BIN("room-3");
  j.member = &mem;
  packed(&j.base);
  Chatw__Member zero = CHATW__MEMBER__INIT;
  j.member = &zero;
  packed(&j.base);

  Chatw__SMemberLeft l = CHATW__SMEMBER_LEFT__INIT;
  l.room = BIN("room-12");
  l.player_id = 1ull << 63;
  packed(&l.base);

  /* hand-made: fields twice (the last wins), in reverse order, unknown fields of every
   * wire type, the member twice (merged), a known field of the wrong wire type */
  static const uint8_t twice[] = {0x22, 0x02, 'r',  '1',  0x08, 0x05, 0x12, 0x01, 'x',
                                  0x08, 0x06, 0x22, 0x01, 's',  0x18, 0x09, 0x12, 0x00};
  static const uint8_t unknown[] = {0x28, 0x96, 0x01, 0x31, 1,    2,    3,    4,    5,    6,   7,
                                    8,    0x3a, 0x02, 'h',  'i',  0x45, 1,    2,    3,    4,   0x08,
                                    0x01, 0x80, 0x01, 0x00, 0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00};
  static const uint8_t member_twice[] = {0x12, 0x04, 0x08, 0x07, 0x12, 0x00, 0x0a,
                                         0x01, 'r',  0x12, 0x05, 0x08, 0x00, 0x12,
                                         0x01, 'n',  0x12, 0x02, 0x08, 0x09};
  static const uint8_t wrong_type[] = {0x0a, 0x01, 'x'};
  static const uint8_t group[] = {0x0b, 0x0c};
  static const uint8_t long_len[] = {0x12, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 'x'};
  static const uint8_t overlong_tag0[] = {0x80, 0x00, 0x00};
  const struct {
    const uint8_t *p;
    size_t n;
  } made[] = {{twice, sizeof twice},
              {unknown, sizeof unknown},
              {member_twice, sizeof member_twice},
              {wrong_type, sizeof wrong_type},
              {group, sizeof group},
              {long_len, sizeof long_len},
              {overlong_tag0, sizeof overlong_tag0}};
  for (size_t i = 0; i < sizeof made / sizeof made[0]; i++)
    around(made[i].p, made[i].n);

  printf("wire_decode_same: %lu inputs x 3 kinds, %lu decoded by both, %d disagreements\n", cases,
         decoded, failures);
  return failures ? 1 : 0;
}
