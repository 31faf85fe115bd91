/*
 * wire.h - the chat protocol's packets, shared by cport-server and
 * cport-dummy: a cport packet header {uint16 size; uint16 id} and a protobuf
 * body generated from proto/chat.proto. See docs/protocol.md (protocol 2).
 *
 * Strings are byte strings: protobuf-c hands a proto3 `string` over as a
 * zero-terminated C string, which loses everything after a zero byte. So the
 * build also generates chat_wire.proto, a copy of chat.proto whose strings
 * are `bytes` (package chatw, types Chatw__*): the same bytes on the wire,
 * with lengths kept. The server decodes and encodes only with it.
 */
#ifndef CPORT_APPS_WIRE_H
#define CPORT_APPS_WIRE_H

#include <cport.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.pb-c.h"
#include "chat_wire.pb-c.h"

#define CHAT_NAME_MAX 32
#define CHAT_ROOM_MAX 32
#define CHAT_TEXT_MAX 1000
#define CHAT_MEMBERS_LISTED 500

/* The largest packet protocol 2 can send, header included: S_CHAT with a
 * 1000-byte text, a 32-byte room and two 10-byte varints (player_id and
 * client_time_us at their largest): 4 + (1+10) + (1+2+1000) + (1+10) + (1+1+32)
 * = 1063. cport-server refuses a --max-packet below it. */
#define CHAT_LARGEST_SERVER_PACKET 1063

/* Encode m as the body of a packet with this id. NULL if it would not fit
 * in a packet or memory ran out. */
static inline cp_sendbuf *wire_packet(uint16_t id, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  cp_sendbuf *b = cp_packet_alloc(id, n);
  if (b)
    protobuf_c_message_pack(m, cp_sendbuf_data(b) + CP_PACKET_HEADER);
  return b;
}

/* Write a packet with this id and m as its body at p (room for its
 * protobuf_c_message_get_packed_size plus the header): its size. */
static inline size_t wire_put_packet(uint8_t *p, uint16_t id, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_pack(m, p + CP_PACKET_HEADER) + CP_PACKET_HEADER;
  p[0] = (uint8_t)n;
  p[1] = (uint8_t)(n >> 8);
  p[2] = (uint8_t)id;
  p[3] = (uint8_t)(id >> 8);
  return n;
}

/* Encode and send; 0 or -errno. */
static inline int wire_send(cp_session *s, uint16_t id, const ProtobufCMessage *m) {
  cp_sendbuf *b = wire_packet(id, m);
  if (!b)
    return -ENOMEM;
  int rc = cp_session_send(s, b);
  cp_sendbuf_unref(b);
  return rc;
}

/* Whether p[0..n) is UTF-8 as proto3 defines it (U+0000 included; no
 * overlong forms, no surrogates, nothing above U+10FFFF). By length: never
 * stops at a zero byte. */
static inline bool wire_utf8_ok(const uint8_t *p, size_t n) {
  if (!n)
    return true; /* (p may be NULL) */
  const uint8_t *end = p + n;
  while (p < end) {
    unsigned c = *p++, more, min;
    if (c < 0x80)
      continue;
    if (c >= 0xC2 && c <= 0xDF)
      more = 1, min = 0x80, c &= 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
      more = 2, min = 0x800, c &= 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
      more = 3, min = 0x10000, c &= 0x07;
    else
      return false;
    if ((size_t)(end - p) < more)
      return false;
    for (; more; more--, p++) {
      if ((*p & 0xC0) != 0x80)
        return false;
      c = c << 6 | (*p & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
      return false;
  }
  return true;
}

/* Bytes of a varint. */
static inline size_t wire_varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

#endif
