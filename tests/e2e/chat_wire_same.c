/*
 * chat_wire_same.c - proto/chat.proto (strings) and the chat_wire.proto the
 * build derives from it (bytes) are the same on the wire: every message with
 * strings, encoded by each with the same values (strings without a zero
 * byte, which the `string` side cannot carry), gives the same bytes, and the
 * `bytes` side decodes the `string` side's encoding back to the same values.
 * The two descriptors also have the same fields (numbers, labels, types but
 * string/bytes). Exit 0 on success.
 */
#include "chat.pb-c.h"
#include "chat_wire.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define BIN(s) ((ProtobufCBinaryData){.len = strlen(s), .data = (uint8_t *)(s)})

static void same(const char *what, const ProtobufCMessage *a, const ProtobufCMessage *b) {
  uint8_t x[4096], y[4096];
  size_t nx = protobuf_c_message_get_packed_size(a), ny = protobuf_c_message_get_packed_size(b);
  if (nx > sizeof x || ny > sizeof y || nx != ny || protobuf_c_message_pack(a, x) != nx ||
      protobuf_c_message_pack(b, y) != ny || memcmp(x, y, nx)) {
    fprintf(stderr, "FAIL: %s: string and bytes encodings differ (%zu vs %zu bytes)\n", what, nx,
            ny);
    failures++;
    return;
  }
  /* and back: the bytes side reads the string side's encoding */
  ProtobufCMessage *m = protobuf_c_message_unpack(b->descriptor, NULL, nx, x);
  uint8_t z[4096];
  if (!m || protobuf_c_message_get_packed_size(m) != nx || protobuf_c_message_pack(m, z) != nx ||
      memcmp(x, z, nx)) {
    fprintf(stderr, "FAIL: %s: the bytes side does not read the string side back\n", what);
    failures++;
  }
  protobuf_c_message_free_unpacked(m, NULL);
  printf("  %-16s %zu bytes, identical\n", what, nx);
}

static void same_fields(const ProtobufCMessageDescriptor *a, const ProtobufCMessageDescriptor *b) {
  int ok = a->n_fields == b->n_fields && !strcmp(a->short_name, b->short_name);
  for (unsigned i = 0; ok && i < a->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &a->fields[i], *g = &b->fields[i];
    ok = f->id == g->id && f->label == g->label && !strcmp(f->name, g->name) &&
         (f->type == g->type ||
          (f->type == PROTOBUF_C_TYPE_STRING && g->type == PROTOBUF_C_TYPE_BYTES));
  }
  if (!ok) {
    fprintf(stderr, "FAIL: %s: the fields differ\n", a->name);
    failures++;
  }
}

int main(void) {
  const ProtobufCMessageDescriptor *ds[][2] = {
      {&chat__clogin__descriptor, &chatw__clogin__descriptor},
      {&chat__slogin__descriptor, &chatw__slogin__descriptor},
      {&chat__center_room__descriptor, &chatw__center_room__descriptor},
      {&chat__member__descriptor, &chatw__member__descriptor},
      {&chat__senter_room__descriptor, &chatw__senter_room__descriptor},
      {&chat__cchat__descriptor, &chatw__cchat__descriptor},
      {&chat__schat__descriptor, &chatw__schat__descriptor},
      {&chat__cleave_room__descriptor, &chatw__cleave_room__descriptor},
      {&chat__sleave_room__descriptor, &chatw__sleave_room__descriptor},
      {&chat__serror__descriptor, &chatw__serror__descriptor},
      {&chat__cping__descriptor, &chatw__cping__descriptor},
      {&chat__spong__descriptor, &chatw__spong__descriptor},
      {&chat__smember_joined__descriptor, &chatw__smember_joined__descriptor},
      {&chat__smember_left__descriptor, &chatw__smember_left__descriptor}};
  for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
    same_fields(ds[i][0], ds[i][1]);

  const char *name = "ann \xc3\xa9\xe2\x82\xac", *room = "hall-\xf0\x9f\x98\x80", *text = "hello";
  Chat__CLogin l = CHAT__CLOGIN__INIT;
  Chatw__CLogin lw = CHATW__CLOGIN__INIT;
  l.name = (char *)name;
  lw.name = BIN(name);
  same("C_LOGIN", &l.base, &lw.base);
  Chat__CEnterRoom e = CHAT__CENTER_ROOM__INIT;
  Chatw__CEnterRoom ew = CHATW__CENTER_ROOM__INIT;
  e.room = (char *)room;
  ew.room = BIN(room);
  same("C_ENTER_ROOM", &e.base, &ew.base);
  Chat__Member m[2] = {CHAT__MEMBER__INIT, CHAT__MEMBER__INIT}, *mp[2] = {&m[0], &m[1]};
  Chatw__Member mw[2] = {CHATW__MEMBER__INIT, CHATW__MEMBER__INIT}, *mwp[2] = {&mw[0], &mw[1]};
  m[0].player_id = mw[0].player_id = 1;
  m[1].player_id = mw[1].player_id = UINT64_MAX;
  m[0].name = (char *)name;
  mw[0].name = BIN(name);
  m[1].name = "b";
  mw[1].name = BIN("b");
  Chat__SEnterRoom se = CHAT__SENTER_ROOM__INIT;
  Chatw__SEnterRoom sew = CHATW__SENTER_ROOM__INIT;
  se.room = (char *)room;
  sew.room = BIN(room);
  se.member_count = sew.member_count = 7;
  se.n_members = sew.n_members = 2;
  se.members = mp;
  sew.members = mwp;
  same("S_ENTER_ROOM", &se.base, &sew.base);
  Chat__CChat c = CHAT__CCHAT__INIT;
  Chatw__CChat cw = CHATW__CCHAT__INIT;
  c.text = (char *)text;
  cw.text = BIN(text);
  c.client_time_us = cw.client_time_us = 123456789;
  same("C_CHAT", &c.base, &cw.base);
  c.text = "";
  cw.text = BIN("");
  same("C_CHAT (empty)", &c.base, &cw.base);
  Chat__SChat sc = CHAT__SCHAT__INIT;
  Chatw__SChat scw = CHATW__SCHAT__INIT;
  sc.player_id = scw.player_id = 42;
  sc.text = (char *)text;
  scw.text = BIN(text);
  sc.client_time_us = scw.client_time_us = UINT64_MAX;
  sc.room = (char *)room;
  scw.room = BIN(room);
  same("S_CHAT", &sc.base, &scw.base);
  Chat__SLeaveRoom sl = CHAT__SLEAVE_ROOM__INIT;
  Chatw__SLeaveRoom slw = CHATW__SLEAVE_ROOM__INIT;
  sl.room = (char *)room;
  slw.room = BIN(room);
  same("S_LEAVE_ROOM", &sl.base, &slw.base);
  Chat__SError er = CHAT__SERROR__INIT;
  Chatw__SError erw = CHATW__SERROR__INIT;
  er.code = CHAT__ERROR_CODE__ERR_RATE_LIMITED;
  erw.code = CHATW__ERROR_CODE__ERR_RATE_LIMITED;
  er.text = "too many chats";
  erw.text = BIN("too many chats");
  same("S_ERROR", &er.base, &erw.base);
  Chat__SMemberJoined j = CHAT__SMEMBER_JOINED__INIT;
  Chatw__SMemberJoined jw = CHATW__SMEMBER_JOINED__INIT;
  j.room = (char *)room;
  jw.room = BIN(room);
  j.member = &m[0];
  jw.member = &mw[0];
  same("S_MEMBER_JOINED", &j.base, &jw.base);
  Chat__SMemberLeft ml = CHAT__SMEMBER_LEFT__INIT;
  Chatw__SMemberLeft mlw = CHATW__SMEMBER_LEFT__INIT;
  ml.room = (char *)room;
  mlw.room = BIN(room);
  ml.player_id = mlw.player_id = 99;
  same("S_MEMBER_LEFT", &ml.base, &mlw.base);
  Chat__SPong p = CHAT__SPONG__INIT;
  Chatw__SPong pw = CHATW__SPONG__INIT;
  p.client_time_us = pw.client_time_us = 1;
  p.server_time_us = pw.server_time_us = 2;
  same("S_PONG", &p.base, &pw.base);
  if (failures)
    return 1;
  printf("PASS: chat.proto and chat_wire.proto encode the same bytes\n");
  return 0;
}
