/* room_keys.c - see room_keys.h. */
#include "room_keys.h"

#include <string.h>

static const char *const suffix[] = {":meta", ":s", ":m", ":d", ":ch"};
static const char hexd[] = "0123456789abcdef";

size_t cl_room_key(char *out, enum cl_room_key which, const void *room, size_t len) {
  if (len > CL_ROOM_MAX || which > CL_KEY_CHANNEL)
    return 0;
  const unsigned char *p = room;
  size_t n = 0;
  memcpy(out, "cport:{r", 8);
  n = 8;
  for (size_t i = 0; i < len; i++) {
    out[n++] = hexd[p[i] >> 4];
    out[n++] = hexd[p[i] & 15];
  }
  out[n++] = '}';
  size_t sl = strlen(suffix[which]);
  memcpy(out + n, suffix[which], sl);
  return n + sl;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

bool cl_room_from_channel(const char *ch, size_t ch_len, void *out, size_t *len) {
  const size_t pre = 8, post = 4; /* "cport:{r" ... "}:ch" */
  if (ch_len < pre + post || memcmp(ch, "cport:{r", pre) != 0 ||
      memcmp(ch + ch_len - post, "}:ch", post) != 0)
    return false;
  size_t hex = ch_len - pre - post;
  if (hex % 2 || hex / 2 > CL_ROOM_MAX)
    return false;
  unsigned char *o = out;
  for (size_t i = 0; i < hex / 2; i++) {
    int hi = hexval(ch[pre + 2 * i]), lo = hexval(ch[pre + 2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    o[i] = (unsigned char)(hi << 4 | lo);
  }
  *len = hex / 2;
  return true;
}
