/*
 * wire.h - the chat protocol's packets, shared by cport-server and
 * cport-dummy: a cport packet header {uint16 size; uint16 id} and a protobuf
 * body generated from proto/chat.proto. See docs/protocol.md.
 */
#ifndef CPORT_APPS_WIRE_H
#define CPORT_APPS_WIRE_H

#include <cport.h>

#include "chat.pb-c.h"

#define CHAT_NAME_MAX 32
#define CHAT_ROOM_MAX 32
#define CHAT_TEXT_MAX 1000
#define CHAT_MEMBERS_LISTED 500

/* Encode m as the body of a packet with this id. NULL if it would not fit
 * in a packet or memory ran out. */
static inline cp_sendbuf *wire_packet(uint16_t id, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  cp_sendbuf *b = cp_packet_alloc(id, n);
  if (b)
    protobuf_c_message_pack(m, cp_sendbuf_data(b) + CP_PACKET_HEADER);
  return b;
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

#endif
