/*
 * wire_decode.h - a hand decoder of the server packets a client receives by
 * the million (S_CHAT, S_MEMBER_JOINED, S_MEMBER_LEFT), straight from the
 * wire bytes: no allocation, no copy, strings as (pointer, length) into the
 * packet. cport-dummy decodes every delivery with it; protobuf-c's unpack
 * allocates and copies each message, which cost the load generator a fifth of
 * its CPU per delivery (docs/performance.md, the chat section).
 *
 * It accepts and rejects what protobuf-c's unpack of the chatw (bytes)
 * messages does, and gives the same values (tests/e2e/wire_decode_same.c
 * checks both on valid messages and on every truncation and many mutations):
 * fields in any order, a field given twice keeps the last value (a
 * sub-message given twice is merged, as protobuf-c merges it), unknown fields
 * of any valid wire type skipped, a known field with the wrong wire type, a
 * bad varint, tag or length, field number 0 and groups refused.
 */
#ifndef CPORT_APPS_WIRE_DECODE_H
#define CPORT_APPS_WIRE_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

/* A byte string inside the packet (not terminated). */
struct wire_bytes {
  const uint8_t *data;
  size_t len;
};

/* A varint at *p of at most max bytes (bits past 64 dropped, as protobuf-c
 * does): its value, and *p past it; false if it runs past end or is longer. */
static inline bool wire_get_varint(const uint8_t **p, const uint8_t *end, unsigned max,
                                   uint64_t *v) {
  const uint8_t *q = *p;
  if (q < end && !(*q & 0x80)) { /* one byte: most tags, lengths and small values */
    *v = *q;
    *p = q + 1;
    return true;
  }
  uint64_t x;
  if (end - q >= 8) { /* 2 to 8 bytes read at once (S_CHAT's time stamp: 7 or 8, every delivery) */
    memcpy(&x, q, 8); /* little-endian: the first byte lowest */
    uint64_t stops = ~x & 0x8080808080808080ull;
    if (stops) {
      unsigned n = (unsigned)__builtin_ctzll(stops) / 8 + 1; /* bytes, the last one included */
      if (n > max)
        return false;
      if (n < 8)
        x &= (1ull << (n * 8)) - 1;
      x &= 0x7f7f7f7f7f7f7f7full; /* the 7-bit groups, then packed together pairwise */
      x = (x & 0x007f007f007f007full) | (x & 0x7f007f007f007f00ull) >> 1;
      x = (x & 0x00003fff00003fffull) | (x & 0x3fff00003fff0000ull) >> 2;
      x = (x & 0x000000000fffffffull) | (x & 0x0fffffff00000000ull) >> 4;
      *p = q + n;
      *v = x;
      return true;
    }
  }
  x = 0;
  for (unsigned i = 0; i < max; i++) {
    if (q == end)
      return false;
    uint8_t b = *q++;
    x |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *p = q;
      *v = x;
      return true;
    }
  }
  return false;
}

/* A length-delimited value at *p (its length read as wire_next reads it). */
static inline bool wire_get_bytes(const uint8_t **p, const uint8_t *end, struct wire_bytes *b) {
  uint64_t n;
  if (!wire_get_varint(p, end, 5, &n) || (n &= 0xffffffffu) > (uint64_t)(end - *p))
    return false;
  b->data = *p;
  b->len = (size_t)n;
  *p += n;
  return true;
}

/* The next field at *p: its number, wire type, and value (a varint's value in
 * *v; a length-delimited field's bytes in *b; fixed fields are skipped).
 * 1: a field; 0: the end; -1: malformed. */
static inline int wire_next(const uint8_t **p, const uint8_t *end, uint32_t *field, unsigned *type,
                            uint64_t *v, struct wire_bytes *b) {
  if (*p == end)
    return 0;
  uint64_t tag; /* as protobuf-c reads it: at most 5 bytes, 32 bits kept, and a first byte
                   with field bits 0 refused */
  if (!(**p & 0xf8) || !wire_get_varint(p, end, 5, &tag))
    return -1;
  *field = (uint32_t)(tag >> 3);
  *type = (unsigned)(tag & 7);
  size_t left = (size_t)(end - *p);
  switch (*type) {
  case WIRE_VARINT:
    return wire_get_varint(p, end, 10, v) ? 1 : -1;
  case WIRE_I64:
    if (left < 8)
      return -1;
    *p += 8;
    return 1;
  case WIRE_I32:
    if (left < 4)
      return -1;
    *p += 4;
    return 1;
  case WIRE_LEN: /* protobuf-c: a length of at most 5 bytes, 32 bits kept */
    return wire_get_bytes(p, end, b) ? 1 : -1;
  default: /* groups (3, 4) and 6, 7: protobuf-c refuses them */
    return -1;
  }
}

/* A message's known fields: number, wire type (WIRE_VARINT: a uint64_t,
 * WIRE_LEN: a struct wire_bytes) and where the value goes in the output; or,
 * for a sub-message, a function that decodes each occurrence into the output. */
struct wire_field {
  uint32_t num;
  unsigned type;
  size_t off;
  bool (*sub)(struct wire_bytes b, void *out);
};

/* Decode p[0..len) into out by its fields: a field given twice keeps the last
 * value, an unknown one is skipped; false if malformed or a known field has
 * another wire type. out is not cleared first. */
static inline bool wire_decode_fields(const uint8_t *p, size_t len, const struct wire_field *f,
                                      size_t nf, void *out) {
  const uint8_t *end = p + len;
  uint32_t num;
  unsigned type;
  uint64_t v;
  struct wire_bytes b;
  int r;
  while ((r = wire_next(&p, end, &num, &type, &v, &b)) > 0) {
    for (size_t i = 0; i < nf; i++) {
      if (f[i].num != num)
        continue;
      if (f[i].type != type)
        return false;
      if (f[i].sub) {
        if (!f[i].sub(b, out))
          return false;
      } else if (type == WIRE_VARINT)
        memcpy((char *)out + f[i].off, &v, sizeof v);
      else
        memcpy((char *)out + f[i].off, &b, sizeof b);
      break;
    }
  }
  return r == 0;
}

/* S_CHAT (chatw__SChat). */
struct wire_schat {
  uint64_t player_id, client_time_us;
  struct wire_bytes text, room;
};

static inline bool wire_decode_schat(const uint8_t *p, size_t len, struct wire_schat *m) {
  /* The fast path, one per delivery: the encoding protobuf-c writes (fields 1
   * to 4 in order, each at most once, one-byte tags). Anything else - and
   * anything malformed - is decoded again from the start by the general loop,
   * so the verdict and values are always the general loop's. */
  const uint8_t *q = p, *end = p + len;
  *m = (struct wire_schat){0};
  if (q < end && *q == 0x08 && (q++, !wire_get_varint(&q, end, 10, &m->player_id)))
    goto general;
  if (q < end && *q == 0x12 && (q++, !wire_get_bytes(&q, end, &m->text)))
    goto general;
  if (q < end && *q == 0x18 && (q++, !wire_get_varint(&q, end, 10, &m->client_time_us)))
    goto general;
  if (q < end && *q == 0x22 && (q++, !wire_get_bytes(&q, end, &m->room)))
    goto general;
  if (q == end)
    return true;
general:;
  static const struct wire_field f[] = {
      {1, WIRE_VARINT, offsetof(struct wire_schat, player_id), NULL},
      {2, WIRE_LEN, offsetof(struct wire_schat, text), NULL},
      {3, WIRE_VARINT, offsetof(struct wire_schat, client_time_us), NULL},
      {4, WIRE_LEN, offsetof(struct wire_schat, room), NULL}};
  *m = (struct wire_schat){0};
  return wire_decode_fields(p, len, f, 4, m);
}

/* Member (chatw__Member). */
struct wire_member {
  uint64_t player_id;
  struct wire_bytes name;
};

/* S_MEMBER_JOINED (chatw__SMemberJoined): has_member tells whether the
 * member field came (protobuf-c leaves it NULL otherwise). A second
 * occurrence of it is merged as protobuf-c 1.4 merges it: its player_id
 * replaces the earlier one (zero included), its name only if not empty. */
struct wire_smember_joined {
  struct wire_bytes room;
  bool has_member;
  struct wire_member member;
};

/* One occurrence of S_MEMBER_JOINED's member, merged into out. */
static inline bool wire_merge_member(struct wire_bytes b, void *out) {
  static const struct wire_field f[] = {
      {1, WIRE_VARINT, offsetof(struct wire_member, player_id), NULL},
      {2, WIRE_LEN, offsetof(struct wire_member, name), NULL}};
  struct wire_smember_joined *m = out;
  struct wire_member x = {0};
  if (!wire_decode_fields(b.data, b.len, f, 2, &x))
    return false;
  m->member.player_id = x.player_id;
  if (!m->has_member || x.name.len)
    m->member.name = x.name;
  m->has_member = true;
  return true;
}

static inline bool wire_decode_smember_joined(const uint8_t *p, size_t len,
                                              struct wire_smember_joined *m) {
  static const struct wire_field f[] = {
      {1, WIRE_LEN, offsetof(struct wire_smember_joined, room), NULL},
      {2, WIRE_LEN, 0, wire_merge_member}};
  *m = (struct wire_smember_joined){0};
  return wire_decode_fields(p, len, f, 2, m);
}

/* S_MEMBER_LEFT (chatw__SMemberLeft). */
struct wire_smember_left {
  struct wire_bytes room;
  uint64_t player_id;
};

static inline bool wire_decode_smember_left(const uint8_t *p, size_t len,
                                            struct wire_smember_left *m) {
  static const struct wire_field f[] = {
      {1, WIRE_LEN, offsetof(struct wire_smember_left, room), NULL},
      {2, WIRE_VARINT, offsetof(struct wire_smember_left, player_id), NULL}};
  *m = (struct wire_smember_left){0};
  return wire_decode_fields(p, len, f, 2, m);
}

#endif
