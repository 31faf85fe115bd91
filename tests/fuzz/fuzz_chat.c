/*
 * fuzz_chat.c - fuzzing cport-server's chat handlers (apps/server/chat/)
 * through the real engine.
 *
 * The handlers take sessions only the engine makes, so the target runs the
 * real thing in-process: a chat service on 127.0.0.1 (port 0), as
 * cport-server --mode chat runs it, with the backend from CPORT_BACKEND
 * (default epoll: faster to start, and steadier) and FUZZ_CHAT_THREADS
 * workers (default 2). Each input is a script of records for two clients:
 * well-formed messages built by the harness (login, enter, chat, leave, with
 * fuzzed names and texts, any byte a zero byte included), C_PING, fuzzed
 * bodies under a real or an unknown packet id, or raw bytes that may break
 * the framing. The clients connect over
 * loopback, write their streams in script order while reading, and the
 * target checks what comes back against a model of docs/protocol.md:
 *   - every packet from the server is framed, has a server-to-client id and
 *     a body that decodes (and strings that are UTF-8: FUZZ_CHAT_UTF8=0 to
 *     leave that out); strings are compared by length (protocol 2);
 *   - each client's answers (S_LOGIN, S_ENTER_ROOM and S_LEAVE_ROOM with
 *     their rooms - a switch answers both -, S_ERROR and its code, S_PONG
 *     with its time) are exactly the model's, in request order; after an
 *     error that closes the connection (a body that does not decode, an
 *     unknown id) or a bad header, nothing more is answered and the server
 *     closes - but only once every answer before it was sent, and before a
 *     bad header also the client's own chats (protocol 2, rule 9: the target
 *     serves with chat_on_bad_packet, as cport-server does);
 *   - room traffic (S_CHAT, S_MEMBER_JOINED, S_MEMBER_LEFT) names the room
 *     the client is in by its answers, and comes only between them;
 *   - a client the model keeps connected gets every answer (S_ENTER_ROOM
 *     listing itself first, byte for byte) and its own chats back before it
 *     sends its FIN; the server never closes it first;
 *   - chats from the other client are ones it sent; the sessions' close
 *     reasons (stats) are the model's;
 *   - afterwards the server is fine: a fresh client logs in and gets S_LOGIN,
 *     every session goes away and every send buffer is freed.
 * A wait over FUZZ_CHAT_TIMEOUT_MS (default 5000) aborts: a hang is a bug.
 *
 * Every C_ENTER_ROOM that names a valid room is rewritten before it is sent
 * to one of 64 names (one per length and first letter), so that the two
 * clients meet in rooms often; names still go up to 32 bytes.
 *
 * Each write is copied against a guard page before send(). That matters less
 * here than in fuzz_framing: the bytes cross the kernel, and the decoders
 * read the engine's own receive buffers (fuzz_framing places those).
 */
#define _GNU_SOURCE
#include <errno.h>

#include "../../apps/common/wire.h"
#include "../../apps/server/server.h"
#include "fuzz_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#define NCLIENTS 2
#define MAX_RECORDS 64
#define MAX_PACKET 16384 /* cport-server's default --max-packet */

enum {
  C_LOGIN = 1,
  S_LOGIN,
  C_ENTER,
  S_ENTER,
  C_CHAT,
  S_CHAT,
  C_LEAVE,
  S_LEAVE,
  S_ERROR,
  C_PING,
  S_PONG,
  S_JOINED,
  S_LEFT
};

static cp_service *svc;
static struct sockaddr_in addr;
static unsigned timeout_ms = 5000;
static bool check_utf8 = true;
static uint64_t input_no;
static struct guard_buf guard;

/* ---- small things ------------------------------------------------------ */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pause_us(long us) {
  struct timespec ts = {.tv_nsec = us * 1000};
  nanosleep(&ts, NULL);
}

struct bytes {
  uint8_t *p;
  size_t len, cap;
};

static void b_put(struct bytes *b, const void *src, size_t n) {
  if (!b->p || b->len + n > b->cap) { /* (never NULL after: p + 0 is fine) */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    FUZZ_CHECK(b->p);
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->len, src, n);
  b->len += n;
}

static void b_byte(struct bytes *b, uint8_t v) {
  b_put(b, &v, 1);
}

static void b_free(struct bytes *b) {
  free(b->p);
  *b = (struct bytes){0};
}

/* protobuf wire encoding, by hand, so that strings may hold any byte */
static void pb_varint(struct bytes *b, uint64_t v) {
  while (v >= 0x80) {
    b_byte(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  b_byte(b, (uint8_t)v);
}

static void pb_bytes(struct bytes *b, unsigned field, const void *p, size_t n) {
  pb_varint(b, field << 3 | 2);
  pb_varint(b, n);
  b_put(b, p, n);
}

static void put_packet(struct bytes *b, uint16_t id, const struct bytes *body) {
  size_t size = CP_PACKET_HEADER + body->len;
  FUZZ_CHECK(size <= 65535);
  uint8_t h[4] = {(uint8_t)size, (uint8_t)(size >> 8), (uint8_t)id, (uint8_t)(id >> 8)};
  b_put(b, h, 4);
  b_put(b, body->p, body->len);
}

/* Well-formed UTF-8, after the table of well-formed byte sequences in the
 * Unicode standard (3.9): the second byte's range depends on the first. By
 * length: U+0000 is a character like any other. */
static bool utf8_ok(const uint8_t *p, size_t n) {
  if (!n)
    return true; /* (p may be NULL) */
  const uint8_t *end = p + n;
  while (p < end) {
    uint8_t b = *p++, lo = 0x80, hi = 0xBF;
    int more;
    if (b < 0x80)
      continue;
    if (b >= 0xC2 && b <= 0xDF)
      more = 1;
    else if (b >= 0xE0 && b <= 0xEF)
      more = 2, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4)
      more = 3, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else
      return false;
    for (int i = 0; i < more; i++, p++, lo = 0x80, hi = 0xBF)
      if (p >= end || *p < lo || *p > hi)
        return false;
  }
  return true;
}

static bool name_ok(ProtobufCBinaryData s) {
  return s.len >= 1 && s.len <= CHAT_NAME_MAX; /* CHAT_ROOM_MAX is the same */
}

/* The bounded room names: length 1..32, 'a' or 'b', then 'x's. */
static void room_name(char *out, size_t len, unsigned which) {
  out[0] = (char)('a' + (which & 1));
  memset(out + 1, 'x', len - 1);
  out[len] = 0;
}

static bool room_bounded(ProtobufCBinaryData s) {
  if (s.len < 1 || s.len > CHAT_ROOM_MAX || (s.data[0] != 'a' && s.data[0] != 'b'))
    return false;
  for (size_t i = 1; i < s.len; i++)
    if (s.data[i] != 'x')
      return false;
  return true;
}

/* A proto3 string field decodes only if it is UTF-8 (protobuf-c does not
 * check; conformant decoders do, so the server must: ERR_BAD_MESSAGE). Every
 * byte counts, a zero byte included (protocol 2). */
static bool str_decodes(ProtobufCBinaryData s) {
  return !check_utf8 || utf8_ok(s.data, s.len);
}

static bool bin_eq(ProtobufCBinaryData a, const uint8_t *b, size_t n) {
  return a.len == n && (!n || !memcmp(a.data, b, n));
}

/* ---- the script -------------------------------------------------------- */

struct in {
  const uint8_t *p;
  size_t n;
};

static uint8_t in_byte(struct in *in) {
  if (!in->n)
    return 0;
  in->n--;
  return *in->p++;
}

/* want bytes of input into b, padded with pad if the input ends */
static void in_take(struct in *in, struct bytes *b, size_t want, uint8_t pad) {
  size_t n = want < in->n ? want : in->n;
  b_put(b, in->p, n);
  in->p += n;
  in->n -= n;
  for (; n < want; n++)
    b_byte(b, pad);
}

struct step {
  int client;
  size_t end; /* write the client's stream up to here */
};

/*
 * Records, until the input ends (at most MAX_RECORDS): a byte h, client h & 1,
 * kind (h >> 1) & 7:
 *   0 C_LOGIN: a byte, name length % 36; the name's bytes
 *   1 C_ENTER_ROOM: a byte b: length b % 34 (0 empty, 33 too long), b / 34
 *     picks the room among those of that length
 *   7 C_PING: a byte, the client time
 *   2, 6 C_CHAT: 2 bytes, text length % 1040; the text's bytes
 *   3 C_LEAVE_ROOM
 *   4 a fuzzed body: a byte i, the id (i & 15 < 12: 1, 3, 5 or 7, else 0, 2,
 *     9 or 256 + i), a length byte, the body
 *   5 raw bytes into the stream, no header: a length byte, the bytes
 * (Input running out pads what is missing.)
 */
static size_t parse_script(const uint8_t *data, size_t size, struct bytes *raw,
                           struct step *steps) {
  struct in in = {data, size};
  size_t nsteps = 0;
  while (in.n && nsteps < MAX_RECORDS) {
    uint8_t h = in_byte(&in);
    int c = h & 1;
    struct bytes body = {0};
    switch ((h >> 1) & 7) {
    case 0: {
      struct bytes name = {0};
      in_take(&in, &name, in_byte(&in) % 36, 'n');
      pb_bytes(&body, 1, name.p, name.len);
      b_free(&name);
      put_packet(&raw[c], C_LOGIN, &body);
      break;
    }
    case 7:
      pb_varint(&body, 1 << 3);
      pb_varint(&body, in_byte(&in));
      put_packet(&raw[c], C_PING, &body);
      break;
    case 1: {
      uint8_t b = in_byte(&in);
      size_t len = b % 34;
      char room[CHAT_ROOM_MAX + 2] = "";
      if (len > CHAT_ROOM_MAX)
        memset(room, 'x', len);
      else if (len)
        room_name(room, len, b / 34);
      pb_bytes(&body, 1, room, len);
      put_packet(&raw[c], C_ENTER, &body);
      break;
    }
    case 2:
    case 6: {
      size_t len = in_byte(&in);
      len = (len | (size_t)in_byte(&in) << 8) % 1040;
      struct bytes text = {0};
      in_take(&in, &text, len, 'c');
      pb_bytes(&body, 1, text.p, text.len);
      b_free(&text);
      pb_varint(&body, 2 << 3);
      pb_varint(&body, input_no << 16 | nsteps);
      put_packet(&raw[c], C_CHAT, &body);
      break;
    }
    case 3:
      put_packet(&raw[c], C_LEAVE, &body);
      break;
    case 4: {
      uint8_t i = in_byte(&in);
      static const uint16_t real[4] = {C_LOGIN, C_ENTER, C_CHAT, C_PING};
      uint16_t bad[4] = {0, S_LOGIN, S_ERROR, (uint16_t)(256 + i)};
      uint16_t id = (i & 15) < 12 ? real[i & 3] : bad[i & 3];
      in_take(&in, &body, in_byte(&in), 0);
      put_packet(&raw[c], id, &body);
      break;
    }
    case 5:
      in_take(&in, &raw[c], in_byte(&in), 0);
      break;
    }
    b_free(&body);
    steps[nsteps++] = (struct step){c, raw[c].len};
  }
  return nsteps;
}

/* ---- framing the streams, and keeping rooms few ------------------------ */

struct pk {
  size_t off;
  uint16_t size, id;
};

struct framed {
  struct pk *v;
  size_t n;
  bool bad;    /* a bad header at `rest` */
  size_t rest; /* where what follows the last complete packet starts */
};

static void frame(struct framed *f, const struct bytes *s) {
  f->v = malloc((s->len / 4 + 1) * sizeof *f->v);
  FUZZ_CHECK(f->v);
  f->n = 0;
  f->bad = false;
  size_t off = 0;
  while (s->len - off >= 4) {
    uint16_t size = fuzz_le16(s->p + off);
    if (size < 4 || size > MAX_PACKET) {
      f->bad = true;
      break;
    }
    if (size > s->len - off)
      break;
    f->v[f->n++] = (struct pk){off, size, fuzz_le16(s->p + off + 2)};
    off += size;
  }
  f->rest = off;
}

/* Rewrite each C_ENTER_ROOM naming a valid room not of the bounded set into
 * one that names a bounded room of the same length; map the write steps'
 * offsets onto the new stream. */
static void bound_rooms(struct bytes *s, struct step *steps, size_t nsteps, int c) {
  struct framed f;
  frame(&f, s);
  struct bytes out = {0};
  size_t *new_off = malloc((f.n + 1) * sizeof *new_off);
  FUZZ_CHECK(new_off);
  bool changed = false;
  for (size_t i = 0; i < f.n; i++) {
    const struct pk *p = &f.v[i];
    new_off[i] = out.len;
    Chatw__CEnterRoom *m = NULL;
    if (p->id == C_ENTER)
      m = chatw__center_room__unpack(NULL, p->size - 4u, s->p + p->off + 4);
    if (m && str_decodes(m->room) && name_ok(m->room) && !room_bounded(m->room)) {
      char room[CHAT_ROOM_MAX + 1];
      unsigned sum = 0;
      for (size_t q = 0; q < m->room.len; q++)
        sum += m->room.data[q];
      room_name(room, m->room.len, sum);
      struct bytes body = {0};
      pb_bytes(&body, 1, room, strlen(room));
      put_packet(&out, C_ENTER, &body);
      b_free(&body);
      changed = true;
    } else {
      b_put(&out, s->p + p->off, p->size);
    }
    if (m)
      chatw__center_room__free_unpacked(m, NULL);
  }
  new_off[f.n] = out.len;
  b_put(&out, s->p + f.rest, s->len - f.rest);
  if (changed) {
    for (size_t k = 0; k < nsteps; k++) {
      if (steps[k].client != c)
        continue;
      size_t o = steps[k].end, i = 0;
      if (o >= f.rest) {
        o = new_off[f.n] + (o - f.rest);
      } else {
        while (o >= f.v[i].off + f.v[i].size)
          i++;
        size_t in_pk = o - f.v[i].off, new_size = new_off[i + 1] - new_off[i];
        o = new_off[i] + (in_pk < new_size ? in_pk : new_size);
      }
      steps[k].end = o;
    }
  }
  b_free(s);
  *s = out;
  free(new_off);
  free(f.v);
}

/* ---- the model: what the server must answer ---------------------------- */

enum end { END_OPEN, END_LOCAL, END_BAD }; /* our FIN; an error and a close; a bad header */

/* An answer, in request order (protocol 2): S_LOGIN, S_ENTER_ROOM,
 * S_LEAVE_ROOM, S_ERROR, S_PONG. */
struct reply {
  uint16_t id;
  int code;         /* S_ERROR */
  uint8_t room_len; /* S_ENTER_ROOM, S_LEAVE_ROOM */
  uint8_t room[CHAT_ROOM_MAX];
  uint64_t time; /* S_PONG */
};

struct line {
  uint8_t *text;
  size_t len;
  uint64_t time;
  bool seen;
};

struct model {
  struct reply *direct; /* every answer, in order */
  size_t ndirect;
  struct line *chats; /* chats accepted from this client: each comes back once */
  size_t nchats;
  uint8_t name_len;
  uint8_t name[CHAT_NAME_MAX];
  enum end end;
  /* END_LOCAL with a bad header later in the stream: the engine may frame
   * the bad header before the chain reaches the error's request; the session
   * then ends as bad_packet, otherwise as local. Either way every answer up
   * to the S_ERROR comes first. */
  bool maybe_bad;
};

static void model_run(struct model *m, const struct bytes *s) {
  struct framed f;
  frame(&f, s);
  memset(m, 0, sizeof *m);
  m->direct = calloc(2 * f.n + 1, sizeof *m->direct); /* a switch answers twice */
  m->chats = calloc(f.n + 1, sizeof *m->chats);
  FUZZ_CHECK(m->direct && m->chats);
  bool logged = false;
  uint8_t room[CHAT_ROOM_MAX];
  size_t room_len = 0; /* 0: in no room */
#define ERR(c) (m->direct[m->ndirect++] = (struct reply){.id = S_ERROR, .code = (c)})
#define ROOM_REPLY(i, r, n)                                                                        \
  do {                                                                                             \
    struct reply *r_ = &m->direct[m->ndirect++];                                                   \
    *r_ = (struct reply){.id = (i), .room_len = (uint8_t)(n)};                                     \
    memcpy(r_->room, (r), (n));                                                                    \
  } while (0)
  for (size_t i = 0; i < f.n && m->end == END_OPEN; i++) {
    size_t len = f.v[i].size - 4u;
    const uint8_t *body = s->p + f.v[i].off + 4;
    switch (f.v[i].id) {
    case C_LOGIN: {
      Chatw__CLogin *x = chatw__clogin__unpack(NULL, len, body);
      if (!x || !str_decodes(x->name)) {
        ERR(CHATW__ERROR_CODE__ERR_BAD_MESSAGE);
        m->end = END_LOCAL;
      } else if (logged) {
        ERR(CHATW__ERROR_CODE__ERR_ALREADY_LOGGED_IN);
      } else if (!name_ok(x->name)) {
        ERR(CHATW__ERROR_CODE__ERR_BAD_NAME);
      } else {
        m->direct[m->ndirect++] = (struct reply){.id = S_LOGIN};
        logged = true;
        m->name_len = (uint8_t)x->name.len;
        memcpy(m->name, x->name.data, x->name.len);
      }
      chatw__clogin__free_unpacked(x, NULL);
      break;
    }
    case C_ENTER: {
      Chatw__CEnterRoom *x = chatw__center_room__unpack(NULL, len, body);
      if (!x || !str_decodes(x->room)) {
        ERR(CHATW__ERROR_CODE__ERR_BAD_MESSAGE);
        m->end = END_LOCAL;
      } else if (!logged) {
        ERR(CHATW__ERROR_CODE__ERR_NOT_LOGGED_IN);
      } else if (!name_ok(x->room)) {
        ERR(CHATW__ERROR_CODE__ERR_BAD_ROOM);
      } else {
        /* Another room: S_LEAVE_ROOM of the old one first. The same room:
         * S_ENTER_ROOM again. */
        FUZZ_CHECK(room_bounded(x->room));
        if (room_len && !bin_eq(x->room, room, room_len))
          ROOM_REPLY(S_LEAVE, room, room_len);
        room_len = x->room.len;
        memcpy(room, x->room.data, room_len);
        ROOM_REPLY(S_ENTER, room, room_len);
      }
      chatw__center_room__free_unpacked(x, NULL);
      break;
    }
    case C_CHAT: {
      Chatw__CChat *x = chatw__cchat__unpack(NULL, len, body);
      if (!x || !str_decodes(x->text)) {
        ERR(CHATW__ERROR_CODE__ERR_BAD_MESSAGE);
        m->end = END_LOCAL;
      } else if (!logged) {
        ERR(CHATW__ERROR_CODE__ERR_NOT_LOGGED_IN);
      } else if (!room_len) {
        ERR(CHATW__ERROR_CODE__ERR_NOT_IN_ROOM);
      } else if (x->text.len > CHAT_TEXT_MAX) {
        ERR(CHATW__ERROR_CODE__ERR_TOO_LONG);
      } else {
        uint8_t *t = malloc(x->text.len + 1);
        FUZZ_CHECK(t);
        if (x->text.len)
          memcpy(t, x->text.data, x->text.len);
        m->chats[m->nchats++] = (struct line){t, x->text.len, x->client_time_us, false};
      }
      chatw__cchat__free_unpacked(x, NULL);
      break;
    }
    case C_LEAVE: {
      Chatw__CLeaveRoom *x = chatw__cleave_room__unpack(NULL, len, body);
      if (!x) {
        ERR(CHATW__ERROR_CODE__ERR_BAD_MESSAGE);
        m->end = END_LOCAL;
      } else if (!logged) {
        ERR(CHATW__ERROR_CODE__ERR_NOT_LOGGED_IN);
      } else if (!room_len) {
        ERR(CHATW__ERROR_CODE__ERR_NOT_IN_ROOM);
      } else {
        ROOM_REPLY(S_LEAVE, room, room_len);
        room_len = 0;
      }
      chatw__cleave_room__free_unpacked(x, NULL);
      break;
    }
    case C_PING: {
      Chatw__CPing *x = chatw__cping__unpack(NULL, len, body);
      if (!x) {
        ERR(CHATW__ERROR_CODE__ERR_BAD_MESSAGE);
        m->end = END_LOCAL;
      } else {
        m->direct[m->ndirect++] = (struct reply){.id = S_PONG, .time = x->client_time_us};
      }
      chatw__cping__free_unpacked(x, NULL);
      break;
    }
    default:
      ERR(CHATW__ERROR_CODE__ERR_UNKNOWN_ID);
      m->end = END_LOCAL;
      break;
    }
  }
#undef ERR
#undef ROOM_REPLY
  if (m->end == END_OPEN && f.bad)
    m->end = END_BAD;
  m->maybe_bad = m->end == END_LOCAL && f.bad;
  free(f.v);
}

static void model_free(struct model *m) {
  for (size_t i = 0; i < m->nchats; i++)
    free(m->chats[i].text);
  free(m->direct);
  free(m->chats);
}

/* ---- the clients ----------------------------------------------------- */

struct foreign {
  uint64_t player;
  uint8_t *text;
  size_t len;
  uint64_t time;
};

struct client {
  int fd;
  struct bytes out; /* the stream to write */
  size_t sent;
  bool write_dead, fin, eof;
  struct bytes in; /* received, not yet a whole packet */
  uint64_t id;     /* from S_LOGIN */
  struct model m;
  size_t got_direct, got_chats;
  uint8_t room_len; /* the room it is in, as the answers say (0: none) */
  uint8_t room[CHAT_ROOM_MAX];
  struct foreign *foreign; /* S_CHAT from others, checked at the end */
  size_t nforeign, foreign_cap;
};

static int cur_client; /* for fail() */
static struct client *cur_clients;

static void dump_client(const struct client *c, int i) {
  fprintf(stderr,
          "  client %d: sent %zu of %zu bytes%s%s%s, id %llu, model end %d: answers %zu of "
          "%zu, own chats %zu of %zu\n",
          i, c->sent, c->out.len, c->write_dead ? " (write failed)" : "",
          c->fin ? ", FIN sent" : "", c->eof ? ", EOF" : "", (unsigned long long)c->id,
          (int)c->m.end, c->got_direct, c->m.ndirect, c->got_chats, c->m.nchats);
}

#define FAIL(...)                                                                                  \
  do {                                                                                             \
    fprintf(stderr, "fuzz_chat: client %d: ", cur_client);                                         \
    fprintf(stderr, __VA_ARGS__);                                                                  \
    fprintf(stderr, "\n");                                                                         \
    if (cur_clients)                                                                               \
      for (int i_ = 0; i_ < NCLIENTS; i_++)                                                        \
        dump_client(&cur_clients[i_], i_);                                                         \
    abort();                                                                                       \
  } while (0)

#define EXPECT(cond)                                                                               \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      FAIL("%s:%d: expected %s", __FILE__, __LINE__, #cond);                                       \
  } while (0)

static int connect_client(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FUZZ_CHECK(fd >= 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc;
  do
    rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (rc && errno == EINTR);
  if (rc)
    FAIL("connect: %s", strerror(errno));
  return fd;
}

static void direct_reply(struct client *c, uint16_t id, int code, ProtobufCBinaryData room,
                         uint64_t time) {
  EXPECT(c->got_direct < c->m.ndirect); /* nothing more was asked, or it closed */
  const struct reply *r = &c->m.direct[c->got_direct++];
  if (r->id != id || (id == S_ERROR && r->code != code) ||
      ((id == S_LEAVE || id == S_ENTER) && !bin_eq(room, r->room, r->room_len)) ||
      (id == S_PONG && r->time != time))
    FAIL("answer %zu: got id %u code %d room of %zu bytes, want id %u code %d room of %u bytes "
         "(answers come in request order)",
         c->got_direct - 1, id, code, room.len, r->id, r->code, r->room_len);
}

static void check_str(ProtobufCBinaryData s) {
  if (check_utf8 && !utf8_ok(s.data, s.len))
    FAIL("a string from the server is not UTF-8 (proto3 strings must be)");
}

static const ProtobufCBinaryData no_room = {0, NULL};

/* Room traffic must name the room the answers say it is in. */
static void in_room(struct client *c, ProtobufCBinaryData room, const char *what) {
  if (!c->room_len || !bin_eq(room, c->room, c->room_len))
    FAIL("%s of a room it is not in (room traffic only between S_ENTER_ROOM and S_LEAVE_ROOM)",
         what);
}

/* One packet from the server. */
static void on_packet(struct client *c, uint16_t id, const uint8_t *body, size_t len) {
  switch (id) {
  case S_LOGIN: {
    Chatw__SLogin *m = chatw__slogin__unpack(NULL, len, body);
    EXPECT(m);
    direct_reply(c, id, 0, no_room, 0);
    EXPECT(m->player_id != 0);
    EXPECT(c->id == 0);
    c->id = m->player_id;
    chatw__slogin__free_unpacked(m, NULL);
    break;
  }
  case S_ERROR: {
    Chatw__SError *m = chatw__serror__unpack(NULL, len, body);
    EXPECT(m);
    check_str(m->text);
    EXPECT(m->code != CHATW__ERROR_CODE__ERR_ROOM_FULL); /* rooms are few, memory plenty */
    direct_reply(c, id, m->code, no_room, 0);
    chatw__serror__free_unpacked(m, NULL);
    break;
  }
  case S_PONG: {
    Chatw__SPong *m = chatw__spong__unpack(NULL, len, body);
    EXPECT(m);
    direct_reply(c, id, 0, no_room, m->client_time_us);
    EXPECT(m->server_time_us != 0);
    chatw__spong__free_unpacked(m, NULL);
    break;
  }
  case S_LEAVE: {
    Chatw__SLeaveRoom *m = chatw__sleave_room__unpack(NULL, len, body);
    EXPECT(m);
    check_str(m->room);
    direct_reply(c, id, 0, m->room, 0);
    c->room_len = 0;
    chatw__sleave_room__free_unpacked(m, NULL);
    break;
  }
  case S_ENTER: {
    Chatw__SEnterRoom *m = chatw__senter_room__unpack(NULL, len, body);
    EXPECT(m);
    check_str(m->room);
    direct_reply(c, id, 0, m->room, 0);
    c->room_len = (uint8_t)m->room.len;
    memcpy(c->room, m->room.data, m->room.len);
    EXPECT(c->id != 0);
    EXPECT(m->member_count >= 1 && m->member_count <= NCLIENTS);
    EXPECT(m->n_members == m->member_count); /* few: all fit */
    for (size_t i = 0; i < m->n_members; i++) {
      check_str(m->members[i]->name);
      EXPECT(m->members[i]->player_id != 0);
      for (size_t j = 0; j < i; j++)
        EXPECT(m->members[j]->player_id != m->members[i]->player_id);
    }
    /* it first, with its name byte for byte */
    EXPECT(m->members[0]->player_id == c->id);
    EXPECT(bin_eq(m->members[0]->name, c->m.name, c->m.name_len));
    chatw__senter_room__free_unpacked(m, NULL);
    break;
  }
  case S_JOINED: {
    Chatw__SMemberJoined *m = chatw__smember_joined__unpack(NULL, len, body);
    EXPECT(m && m->member);
    check_str(m->room);
    check_str(m->member->name);
    in_room(c, m->room, "S_MEMBER_JOINED");
    EXPECT(m->member->player_id != c->id);
    chatw__smember_joined__free_unpacked(m, NULL);
    break;
  }
  case S_LEFT: {
    Chatw__SMemberLeft *m = chatw__smember_left__unpack(NULL, len, body);
    EXPECT(m);
    check_str(m->room);
    in_room(c, m->room, "S_MEMBER_LEFT");
    EXPECT(m->player_id != c->id);
    chatw__smember_left__free_unpacked(m, NULL);
    break;
  }
  case S_CHAT: {
    Chatw__SChat *m = chatw__schat__unpack(NULL, len, body);
    EXPECT(m);
    check_str(m->text);
    check_str(m->room);
    in_room(c, m->room, "S_CHAT");
    EXPECT(m->player_id != 0);
    if (c->id && m->player_id == c->id) {
      size_t k = 0;
      while (k < c->m.nchats && (c->m.chats[k].seen || c->m.chats[k].time != m->client_time_us ||
                                 !bin_eq(m->text, c->m.chats[k].text, c->m.chats[k].len)))
        k++;
      if (k == c->m.nchats)
        FAIL("S_CHAT of its own (%zu bytes, time %llu): it sent no such chat, or it came twice",
             m->text.len, (unsigned long long)m->client_time_us);
      c->m.chats[k].seen = true;
      c->got_chats++;
    } else {
      if (c->nforeign == c->foreign_cap) {
        c->foreign_cap = c->foreign_cap ? 2 * c->foreign_cap : 16;
        c->foreign = realloc(c->foreign, c->foreign_cap * sizeof *c->foreign);
        FUZZ_CHECK(c->foreign);
      }
      uint8_t *t = malloc(m->text.len + 1);
      FUZZ_CHECK(t);
      if (m->text.len)
        memcpy(t, m->text.data, m->text.len);
      c->foreign[c->nforeign++] = (struct foreign){m->player_id, t, m->text.len, m->client_time_us};
    }
    chatw__schat__free_unpacked(m, NULL);
    break;
  }
  default:
    FAIL("a packet with id %u from the server", id);
  }
}

static void on_bytes(struct client *c) {
  size_t off = 0;
  while (c->in.len - off >= 4) {
    uint16_t size = fuzz_le16(c->in.p + off), id = fuzz_le16(c->in.p + off + 2);
    EXPECT(size >= 4);
    if (size > c->in.len - off)
      break;
    on_packet(c, id, c->in.p + off + 4, size - 4u);
    off += size;
  }
  memmove(c->in.p, c->in.p + off, c->in.len - off);
  c->in.len -= off;
}

static void do_read(struct client *c) {
  uint8_t buf[65536];
  ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n > 0) {
    b_put(&c->in, buf, (size_t)n);
    on_bytes(c);
  } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    /* EOF, or a reset (the server closed with our bytes unread) */
    if (n < 0)
      EXPECT(errno == ECONNRESET || errno == EPIPE);
    c->eof = true;
    if (c->m.end == END_OPEN && !c->fin)
      FAIL("the server closed a connection that did nothing wrong (%s)",
           n ? strerror(errno) : "EOF");
    /* Protocol 2: every request before the error or the bad header is
     * answered before the close; before a bad header the room's S_CHAT of
     * the client's own chats too (rule 9). After an error that closes, own
     * chats still in the room's queue may be lost (the session is draining). */
    if (c->m.end != END_OPEN && c->got_direct != c->m.ndirect)
      FAIL("closed after %zu of %zu answers (protocol 2: all come before the close)", c->got_direct,
           c->m.ndirect);
    if (c->m.end == END_BAD && c->got_chats != c->m.nchats)
      FAIL("closed for a bad header after %zu of its %zu own chats came back (rule 9)",
           c->got_chats, c->m.nchats);
  }
}

static bool all_answered(const struct client *c) {
  return c->got_direct == c->m.ndirect && c->got_chats == c->m.nchats;
}

/* Write the steps in order while reading both; then, once a client the
 * model keeps open has every answer, send its FIN; read until both EOF. */
static void run_clients(struct client *cl, const struct step *steps, size_t nsteps) {
  uint64_t deadline = now_ms() + timeout_ms;
  size_t k = 0;
  for (;;) {
    while (k < nsteps && (cl[steps[k].client].write_dead || cl[steps[k].client].eof ||
                          cl[steps[k].client].sent >= steps[k].end))
      k++;
    bool done = true;
    for (int i = 0; i < NCLIENTS; i++) {
      struct client *c = &cl[i];
      if (k == nsteps && !c->fin && !c->eof && c->m.end == END_OPEN && all_answered(c)) {
        FUZZ_CHECK(shutdown(c->fd, SHUT_WR) == 0);
        c->fin = true;
      }
      done &= c->eof;
    }
    if (done)
      break;
    struct pollfd p[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
      p[i] = (struct pollfd){.fd = cl[i].eof ? -1 : cl[i].fd, .events = POLLIN};
      if (k < nsteps && steps[k].client == i)
        p[i].events |= POLLOUT;
    }
    uint64_t now = now_ms();
    if (now >= deadline)
      FAIL("not done after %u ms (a hang: a reply or a close that never came)", timeout_ms);
    int rc = poll(p, NCLIENTS, (int)(deadline - now));
    if (rc < 0 && errno == EINTR)
      continue;
    FUZZ_CHECK(rc >= 0);
    for (int i = 0; i < NCLIENTS; i++) {
      struct client *c = &cl[i];
      cur_client = i;
      if (p[i].revents & (POLLIN | POLLHUP | POLLERR))
        do_read(c);
      if ((p[i].revents & POLLOUT) && !c->eof) {
        size_t n = steps[k].end - c->sent;
        const uint8_t *src = guard_place(&guard, c->out.p + c->sent, n, false);
        ssize_t w = send(c->fd, src, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
          c->sent += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          /* the server closed: fine only if the model says it would */
          EXPECT(errno == EPIPE || errno == ECONNRESET);
          if (c->m.end == END_OPEN)
            FAIL("the server closed a connection that did nothing wrong (send: %s)",
                 strerror(errno));
          c->write_dead = true;
        }
      }
    }
  }
}

/* At the end: the other client's chats are the ones it sent. */
static void check_foreign(struct client *cl) {
  for (int i = 0; i < NCLIENTS; i++) {
    cur_client = i;
    const struct client *o = &cl[1 - i];
    for (size_t f = 0; f < cl[i].nforeign; f++) {
      const struct foreign *x = &cl[i].foreign[f];
      if (o->id)
        EXPECT(x->player == o->id);
      size_t k = 0;
      while (k < o->m.nchats && (o->m.chats[k].time != x->time || o->m.chats[k].len != x->len ||
                                 (x->len && memcmp(o->m.chats[k].text, x->text, x->len))))
        k++;
      if (k == o->m.nchats)
        FAIL("S_CHAT of %zu bytes from player %llu: the other client sent no such chat", x->len,
             (unsigned long long)x->player);
    }
  }
  cur_client = 0;
  if (cl[0].id && cl[1].id)
    EXPECT(cl[0].id != cl[1].id);
}

/* A fresh client logs in and gets its S_LOGIN. */
static void probe(void) {
  cur_client = -1;
  int fd = connect_client();
  static const uint8_t login[] = {11, 0, C_LOGIN, 0, 0x0a, 5, 'p', 'r', 'o', 'b', 'e'};
  EXPECT(send(fd, login, sizeof login, MSG_NOSIGNAL) == (ssize_t)sizeof login);
  uint8_t buf[64];
  size_t have = 0;
  uint64_t deadline = now_ms() + timeout_ms;
  while (have < 4 || have < fuzz_le16(buf)) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint64_t now = now_ms();
    if (now >= deadline)
      FAIL("the server did not answer a fresh C_LOGIN in %u ms", timeout_ms);
    int rc = poll(&p, 1, (int)(deadline - now));
    if (rc <= 0)
      continue;
    ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
    if (n <= 0)
      FAIL("the server closed a fresh client before it answered C_LOGIN");
    have += (size_t)n;
  }
  EXPECT(fuzz_le16(buf + 2) == S_LOGIN);
  EXPECT(have == fuzz_le16(buf));
  Chatw__SLogin *m = chatw__slogin__unpack(NULL, have - 4, buf + 4);
  EXPECT(m && m->player_id != 0);
  chatw__slogin__free_unpacked(m, NULL);
  close(fd);
}

/* ---- the service ------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *v;
  if ((v = getenv("FUZZ_CHAT_TIMEOUT_MS")) && atoi(v) > 0)
    timeout_ms = (unsigned)atoi(v);
  if ((v = getenv("FUZZ_CHAT_UTF8")))
    check_utf8 = atoi(v) != 0;
  unsigned threads = 2;
  if ((v = getenv("FUZZ_CHAT_THREADS")) && atoi(v) > 0)
    threads = (unsigned)atoi(v);
  cp_service_options o = {
      .kind = CP_SERVICE_SERVER,
      .host = "127.0.0.1",
      .port = 0,
      .threads = threads,
      /* CPORT_BACKEND decides when set (CP_BACKEND_AUTO reads it) */
      .port_opts = {.backend = getenv("CPORT_BACKEND") ? CP_BACKEND_AUTO : CP_BACKEND_EPOLL},
      .max_packet = MAX_PACKET,
      /* as cport-server --mode chat: rule 9's answers before a bad header */
      .callbacks = {.on_connected = chat_on_connected,
                    .on_packet = chat_on_packet,
                    .on_disconnected = chat_on_disconnected,
                    .on_bad_packet = chat_on_bad_packet}};
  int rc = cp_service_create(&svc, &o);
  if (rc) {
    fprintf(stderr, "fuzz_chat: cp_service_create: %s\n", cp_strerror(rc));
    exit(1);
  }
  chat_init(svc,
            &(struct chat_limits){.max_packet = MAX_PACKET, .flush_ms = CHAT_DEFAULT_FLUSH_MS});
  rc = cp_service_start(svc);
  if (rc) {
    fprintf(stderr, "fuzz_chat: cp_service_start: %s\n", cp_strerror(rc));
    exit(1);
  }
  addr = (struct sockaddr_in){.sin_family = AF_INET,
                              .sin_port = htons(cp_service_listen_port(svc)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  fprintf(stderr, "fuzz_chat: chat service on 127.0.0.1:%u, backend %s, %u threads\n",
          cp_service_listen_port(svc), cp_backend_name(cp_port_backend(cp_service_port(svc))),
          threads);
  return 0;
}

static void wait_idle(void) {
  uint64_t deadline = now_ms() + timeout_ms;
  cp_service_stats st;
  for (;;) {
    cp_service_get_stats(svc, &st);
    if (st.sessions == 0 && cp_sendbuf_outstanding() == 0)
      return;
    if (now_ms() >= deadline)
      FAIL("after %u ms, %llu sessions are still there and %zu send buffers not freed", timeout_ms,
           (unsigned long long)st.sessions, cp_sendbuf_outstanding());
    pause_us(50);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input_no++;
  struct client cl[NCLIENTS];
  memset(cl, 0, sizeof cl);
  struct bytes raw[NCLIENTS] = {{0}};
  for (int i = 0; i < NCLIENTS; i++)
    b_put(&raw[i], NULL, 0);
  struct step steps[MAX_RECORDS];
  size_t nsteps = parse_script(data, size, raw, steps);
  for (int i = 0; i < NCLIENTS; i++) {
    bound_rooms(&raw[i], steps, nsteps, i);
    cl[i].out = raw[i];
    model_run(&cl[i].m, &cl[i].out);
  }
  cur_clients = cl;
  cur_client = -1;
  wait_idle();
  cp_service_stats before, after;
  cp_service_get_stats(svc, &before);

  for (int i = 0; i < NCLIENTS; i++)
    cl[i].fd = connect_client();
  run_clients(cl, steps, nsteps);
  check_foreign(cl);
  for (int i = 0; i < NCLIENTS; i++)
    close(cl[i].fd);
  probe();
  wait_idle();

  /* Every session of this input accepted and counted as ended: the engine
   * bumps those counters a moment after a session is gone (once its
   * on_disconnected returned), so wait_idle's "no session" can come first. */
  uint64_t settle = now_ms() + timeout_ms;
  for (;;) {
    cp_service_get_stats(svc, &after);
    uint64_t ended = 0;
    for (int r = 0; r < CP_REASON_COUNT; r++)
      ended += after.disconnects[r] - before.disconnects[r];
    if (after.accepts - before.accepts == NCLIENTS + 1 && ended == NCLIENTS + 1)
      break;
    if (now_ms() >= settle)
      break; /* the checks below name what is off */
    pause_us(50);
  }
  /* how the sessions ended: as the model says (the probe: it closed) */
  uint64_t want[CP_REASON_COUNT] = {0};
  want[CP_REASON_PEER_CLOSED] = 1;
  unsigned either = 0; /* maybe_bad: local or bad_packet */
  for (int i = 0; i < NCLIENTS; i++) {
    if (cl[i].m.maybe_bad) {
      either++;
      continue;
    }
    want[cl[i].m.end == END_OPEN    ? CP_REASON_PEER_CLOSED
         : cl[i].m.end == END_LOCAL ? CP_REASON_LOCAL
                                    : CP_REASON_BAD_PACKET]++;
  }
  for (int r = CP_REASON_LOCAL; r == CP_REASON_LOCAL || r == CP_REASON_BAD_PACKET;
       r = r == CP_REASON_LOCAL ? CP_REASON_BAD_PACKET : -1)
    if (after.disconnects[r] - before.disconnects[r] < want[r])
      FAIL("%llu sessions ended %s, want at least %llu",
           (unsigned long long)(after.disconnects[r] - before.disconnects[r]),
           cp_reason_name((cp_reason)r), (unsigned long long)want[r]);
  uint64_t extra = (after.disconnects[CP_REASON_LOCAL] - before.disconnects[CP_REASON_LOCAL] -
                    want[CP_REASON_LOCAL]) +
                   (after.disconnects[CP_REASON_BAD_PACKET] -
                    before.disconnects[CP_REASON_BAD_PACKET] - want[CP_REASON_BAD_PACKET]);
  if (extra != either)
    FAIL("%llu sessions ended local or bad_packet beyond the model's, want %u",
         (unsigned long long)extra, either);
  for (int r = 0; r < CP_REASON_COUNT; r++)
    if (r != CP_REASON_LOCAL && r != CP_REASON_BAD_PACKET &&
        after.disconnects[r] - before.disconnects[r] != want[r])
      FAIL("%llu sessions ended %s, want %llu",
           (unsigned long long)(after.disconnects[r] - before.disconnects[r]),
           cp_reason_name((cp_reason)r), (unsigned long long)want[r]);
  EXPECT(after.accepts - before.accepts == NCLIENTS + 1);

  cur_clients = NULL;
  for (int i = 0; i < NCLIENTS; i++) {
    model_free(&cl[i].m);
    b_free(&cl[i].out);
    b_free(&cl[i].in);
    for (size_t f = 0; f < cl[i].nforeign; f++)
      free(cl[i].foreign[f].text);
    free(cl[i].foreign);
  }
  return 0;
}
