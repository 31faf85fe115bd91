/*
 * chat_text.h - the numbers in cport-dummy's chat texts, "<client>:<seq>:<player id>:" and
 * filler: read on every delivery, so fast (tests/e2e/dummy_units.c checks them against a
 * plain reader).
 */
#ifndef CPORT_APPS_DUMMY_CHAT_TEXT_H
#define CPORT_APPS_DUMMY_CHAT_TEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Decimal digits at *p (before end), at most 19 (no overflow to check): the
 * number, and *p past them; false if there are none or more. */
static inline bool parse_num(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  const uint8_t *q = *p, *stop = end - q > 19 ? q + 19 : end;
  uint64_t v = 0;
  for (; q < stop && (unsigned)(*q - '0') <= 9; q++)
    v = v * 10 + (unsigned)(*q - '0');
  if (q == *p || (q < end && (unsigned)(*q - '0') <= 9))
    return false;
  *p = q;
  *out = v;
  return true;
}

/* "<digits>:" at *p (before end): the number, and *p past the colon; false if not there.
 * Three fields of every delivery: 1 to 7 digits followed by the colon are read 8 bytes at
 * once (SWAR), anything else digit by digit. */
static inline bool parse_field(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  const uint8_t *q = *p;
  uint64_t v;
  if (end - q >= 8) {
    uint64_t x;
    memcpy(&x, q, 8);           /* little-endian: the first character in the lowest byte */
    x ^= 0x3030303030303030ull; /* a digit becomes its value 0..9 */
    /* the high bit of each byte that is not a digit (a carry out of a flagged byte only
     * reaches bytes above it: the lowest flag is exact) */
    uint64_t bad = ((x + 0x7676767676767676ull) | x) & 0x8080808080808080ull;
    unsigned len = bad ? (unsigned)__builtin_ctzll(bad) / 8 : 8;
    if (len >= 1 && len <= 7) {
      if ((x >> (len * 8) & 0xff) != (':' ^ '0'))
        return false;
      x <<= (8 - len) * 8; /* the digits in the high bytes, zeros (leading zeros) below */
      x = x * 2561 >> 8;   /* pairs of digits */
      x = (x & 0x00FF00FF00FF00FFull) * 6553601 >> 16; /* fours */
      *out = (x & 0x0000FFFF0000FFFFull) * 42949672960001ull >> 32 & 0xffffffffu;
      *p = q + len + 1;
      return true;
    }
  }
  if (!parse_num(&q, end, &v) || q == end || *q != ':')
    return false;
  *p = q + 1;
  *out = v;
  return true;
}

#endif
