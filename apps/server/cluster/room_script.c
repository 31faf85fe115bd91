/* room_script.c - see room_script.h. */
#include "room_script.h"

#include "presence.h"
#include "room_keys.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
const char cl_room_script_text[] =
  "-- cport room event (docs/cluster.md)\n"
  "-- KEYS: 1 meta, 2 stream, 3 members (zset), 4 member data (hash), 5 node index (set)\n"
  "-- ARGV: 1 op j|l|c, 2 player id, 3 event, 4 stream maxlen, 5 channel,\n"
  "--       6 node index entry, 7 member data, 8 list max, 9 idle ttl s\n"
  "local op, player = ARGV[1], ARGV[2]\n"
  "if op ~= 'j' and op ~= 'l' and op ~= 'c' then\n"
  "  return redis.error_reply('ERR cport room script: bad op')\n"
  "end\n"
  "local epoch = redis.call('HGET', KEYS[1], 'e')\n"
  "if not epoch then\n"
  "  local t = redis.call('TIME')\n"
  "  epoch = t[1] .. string.format('%06d', tonumber(t[2]))\n"
  "  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])\n"
  "  redis.call('HSET', KEYS[1], 'e', epoch, 's', '0')\n"
  "end\n"
  "local function list(off)\n"
  "  local ids = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[8]) - 1, 'WITHSCORES')\n"
  "  local out = {off, epoch, redis.call('ZCARD', KEYS[3])}\n"
  "  for i = 1, #ids, 2 do\n"
  "    out[#out + 1] = ids[i]\n"
  "    out[#out + 1] = ids[i + 1]\n"
  "    out[#out + 1] = redis.call('HGET', KEYS[4], ids[i])\n"
  "  end\n"
  "  return out\n"
  "end\n"
  "local member = redis.call('ZSCORE', KEYS[3], player)\n"
  "if (op == 'j') == (member ~= false) then\n"
  "  -- a join of a member: its list again, nothing published\n"
  "  if op == 'j' then return list(-1) end\n"
  "  return {-1, epoch}\n"
  "end\n"
  "-- the stream first: if it refuses the id (a foreign entry past our offset),\n"
  "-- nothing has been written yet (a script error does not roll back)\n"
  "local off = tonumber(redis.call('HGET', KEYS[1], 's')) + 1\n"
  "local offs = string.format('%d', off)\n"
  "redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], offs .. '-0', 'd', ARGV[3])\n"
  "redis.call('HSET', KEYS[1], 's', offs)\n"
  "local ttl = tonumber(ARGV[9])\n"
  "if op == 'j' then\n"
  "  redis.call('ZADD', KEYS[3], off, player)\n"
  "  redis.call('HSET', KEYS[4], player, ARGV[7])\n"
  "  redis.call('SADD', KEYS[5], ARGV[6])\n"
  "  redis.call('PERSIST', KEYS[1])\n"
  "  redis.call('PERSIST', KEYS[2])\n"
  "elseif op == 'l' then\n"
  "  redis.call('ZREM', KEYS[3], player)\n"
  "  redis.call('HDEL', KEYS[4], player)\n"
  "  redis.call('SREM', KEYS[5], ARGV[6])\n"
  "end\n"
  "if op == 'l' and ttl > 0 and redis.call('ZCARD', KEYS[3]) == 0 then\n"
  "  redis.call('EXPIRE', KEYS[1], ttl)\n"
  "  redis.call('EXPIRE', KEYS[2], ttl)\n"
  "end\n"
  "redis.call('PUBLISH', ARGV[5], offs .. ':' .. epoch .. ':' .. ARGV[3])\n"
  "if op ~= 'j' then return {off, epoch} end\n"
  "return list(off)\n";

const char cl_ids_script_text[] =
  "-- cport player ids (docs/cluster.md). KEYS: 1 counter; ARGV: 1 block size\n"
  "local t = redis.call('TIME')\n"
  "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
  "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
  "if cur < now then cur = now end\n"
  "redis.call('SET', KEYS[1], string.format('%d', cur + tonumber(ARGV[1])))\n"
  "return cur\n";
/* clang-format on */

static _Atomic uint64_t noscript_retries;

uint64_t cl_script_noscript_retries(void) {
  return atomic_load(&noscript_retries);
}

void cl_scripts_init(cl_scripts *s) {
  pthread_mutex_init(&s->lock, NULL);
  s->room_sha[0] = s->ids_sha[0] = 0;
}

/* ---- loading ---------------------------------------------------------- */

struct loadctx {
  cl_scripts *s;
  bool ids;     /* which script this reply is for */
  bool *failed; /* shared by the pair */
  void (*done)(void *arg, const char *err);
  void *arg;
};

static void loaded(void *arg, redisReply *r, const char *err) {
  struct loadctx *l = arg;
  char buf[160] = "";
  if (!r)
    snprintf(buf, sizeof buf, "%s", err);
  else if (r->type != REDIS_REPLY_STRING || r->len != 40)
    snprintf(buf, sizeof buf, "SCRIPT LOAD: %s", cl_redis_reply_kind(r));
  if (!buf[0]) {
    pthread_mutex_lock(&l->s->lock);
    memcpy(l->ids ? l->s->ids_sha : l->s->room_sha, r->str, 40);
    (l->ids ? l->s->ids_sha : l->s->room_sha)[40] = 0;
    pthread_mutex_unlock(&l->s->lock);
  }
  if (r)
    freeReplyObject(r);
  if (buf[0])
    *l->failed = true;
  if (l->ids) { /* the second reply: report once */
    if (l->done)
      l->done(l->arg, *l->failed ? (buf[0] ? buf : "SCRIPT LOAD failed") : NULL);
    free(l->failed);
  }
  free(l);
}

int cl_scripts_load(cl_redis *c, cl_scripts *s, void (*done)(void *arg, const char *err),
                    void *arg) {
  bool *failed = calloc(1, sizeof *failed);
  struct loadctx *a = malloc(sizeof *a), *b = malloc(sizeof *b);
  if (!failed || !a || !b) {
    free(failed), free(a), free(b);
    return -ENOMEM;
  }
  *a = (struct loadctx){s, false, failed, done, arg};
  *b = (struct loadctx){s, true, failed, done, arg};
  const char *av[3] = {"SCRIPT", "LOAD", cl_room_script_text};
  size_t al[3] = {6, 4, sizeof cl_room_script_text - 1};
  int rc = cl_redis_command(c, 3, av, al, loaded, a);
  if (rc) {
    free(failed), free(a), free(b);
    return rc;
  }
  av[2] = cl_ids_script_text;
  al[2] = sizeof cl_ids_script_text - 1;
  rc = cl_redis_command(c, 3, av, al, loaded, b);
  if (rc) { /* a's reply, if any, comes with c's failure; b reports nothing */
    *failed = true;
    free(b);
    return rc;
  }
  return 0;
}

/* ---- EVALSHA with an EVAL fallback ------------------------------------ */

#define MAXARGS 20

struct evalctx {
  cl_redis *c;
  bool ids, retried;
  int argc;
  const char *argv[MAXARGS];
  size_t len[MAXARGS];
  cl_publish_fn pf;
  void (*idf)(void *arg, uint64_t first, const char *err);
  void *arg;
  char *blob;
};

static bool parse_u64(const char *s, size_t len, uint64_t *out) {
  if (len < 1 || len > 19 || (len > 1 && s[0] == '0'))
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return true;
}

static void eval_done(void *arg, redisReply *r, const char *err);

static int eval_send(struct evalctx *e) {
  return cl_redis_command(e->c, e->argc, e->argv, e->len, eval_done, e);
}

static void report_room(struct evalctx *e, const redisReply *r) {
  const char *bad = NULL;
  cl_publish_result res = {0};
  cl_member *m = NULL;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
      r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING) {
    bad = "room script: a malformed reply";
    goto out;
  }
  res.offset = r->element[0]->integer;
  res.epoch = r->element[1]->str;
  res.epoch_len = r->element[1]->len;
  if (res.offset < -1 || res.offset == 0) {
    bad = "room script: a bad offset";
    goto out;
  }
  if (r->elements > 2) {
    if (r->element[2]->type != REDIS_REPLY_INTEGER || r->element[2]->integer < 0 ||
        (r->elements - 3) % 3) {
      bad = "room script: a malformed member list";
      goto out;
    }
    res.member_count = (uint64_t)r->element[2]->integer;
    res.nmembers = (r->elements - 3) / 3;
    m = calloc(res.nmembers ? res.nmembers : 1, sizeof *m);
    if (!m) {
      bad = "out of memory";
      goto out;
    }
    for (size_t i = 0; i < res.nmembers; i++) {
      const redisReply *id = r->element[3 + 3 * i], *sc = r->element[4 + 3 * i],
                       *d = r->element[5 + 3 * i];
      if (id->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING ||
          !parse_u64(id->str, id->len, &m[i].player) ||
          !parse_u64(sc->str, sc->len, &m[i].joined) ||
          (d->type != REDIS_REPLY_STRING && d->type != REDIS_REPLY_NIL)) {
        bad = "room script: a malformed member";
        goto out;
      }
      m[i].data = d->type == REDIS_REPLY_STRING ? d->str : "";
      m[i].len = d->type == REDIS_REPLY_STRING ? d->len : 0;
    }
    res.members = m;
  }
out:
  if (e->pf)
    e->pf(e->arg, bad ? NULL : &res, bad);
  free(m);
}

static void eval_done(void *arg, redisReply *r, const char *err) {
  struct evalctx *e = arg;
  char buf[200];
  if (r && r->type == REDIS_REPLY_ERROR && r->len >= 8 && !memcmp(r->str, "NOSCRIPT", 8) &&
      !e->retried) {
    /* The cache lost the script: the same call with the body. */
    freeReplyObject(r);
    e->retried = true;
    atomic_fetch_add(&noscript_retries, 1);
    e->argv[0] = "EVAL";
    e->len[0] = 4;
    e->argv[1] = e->ids ? cl_ids_script_text : cl_room_script_text;
    e->len[1] = e->ids ? sizeof cl_ids_script_text - 1 : sizeof cl_room_script_text - 1;
    int rc = eval_send(e);
    if (!rc)
      return;
    snprintf(buf, sizeof buf, "EVAL after NOSCRIPT: %s", strerror(-rc));
    err = buf;
    r = NULL;
  } else if (r && r->type == REDIS_REPLY_ERROR) {
    snprintf(buf, sizeof buf, "%.*s", (int)(r->len < 180 ? r->len : 180), r->str);
    freeReplyObject(r);
    err = buf;
    r = NULL;
  }
  if (e->ids) {
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
      e->idf(e->arg, (uint64_t)r->integer, NULL);
    else
      e->idf(e->arg, 0, r ? "id script: a malformed reply" : err);
  } else if (r) {
    report_room(e, r);
  } else if (e->pf) {
    e->pf(e->arg, NULL, err);
  }
  if (r)
    freeReplyObject(r);
  free(e->blob);
  free(e);
}

/* Start an evalctx: EVALSHA sha (or EVAL body before the SHA is known). */
static struct evalctx *eval_new(cl_redis *c, cl_scripts *s, bool ids, size_t blob) {
  struct evalctx *e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  e->blob = malloc(blob ? blob : 1);
  if (!e->blob) {
    free(e);
    return NULL;
  }
  e->c = c;
  e->ids = ids;
  char *sha = e->blob; /* the first 41 bytes of the blob */
  pthread_mutex_lock(&s->lock);
  memcpy(sha, ids ? s->ids_sha : s->room_sha, 41);
  pthread_mutex_unlock(&s->lock);
  if (sha[0]) {
    e->argv[0] = "EVALSHA";
    e->len[0] = 7;
    e->argv[1] = sha;
    e->len[1] = 40;
  } else {
    e->retried = true; /* EVAL already */
    e->argv[0] = "EVAL";
    e->len[0] = 4;
    e->argv[1] = ids ? cl_ids_script_text : cl_room_script_text;
    e->len[1] = ids ? sizeof cl_ids_script_text - 1 : sizeof cl_room_script_text - 1;
  }
  e->argc = 2;
  return e;
}

static void add_arg(struct evalctx *e, const void *p, size_t len) {
  assert(e->argc < MAXARGS);
  e->argv[e->argc] = p;
  e->len[e->argc++] = len;
}

int cl_room_event(cl_redis *c, cl_scripts *s, const cl_event_req *req, cl_publish_fn fn,
                  void *arg) {
  if (!c || !s || !req || req->room_len > CL_ROOM_MAX || req->stream_max < 1 ||
      (req->op != CL_OP_JOIN && req->op != CL_OP_LEAVE && req->op != CL_OP_CHAT) ||
      (req->room_len && !req->room) || (req->event_len && !req->event) ||
      (req->member_len && !req->member) || (req->node_len && !req->node) ||
      req->node_len > CL_ROOM_MAX)
    return -EINVAL;
  /* blob: sha, 5 keys, numbers, the node key and entry */
  size_t blob = 41 + 5 * CL_ROOM_KEY_MAX + 4 * 24 + 2 * (2 * CL_ROOM_MAX + 32);
  struct evalctx *e = eval_new(c, s, false, blob);
  if (!e)
    return -ENOMEM;
  e->pf = fn;
  e->arg = arg;
  char *p = e->blob + 41;
  add_arg(e, "5", 1);
  static const enum cl_room_key keys[] = {CL_KEY_META, CL_KEY_STREAM, CL_KEY_MEMBERS, CL_KEY_DATA};
  for (size_t i = 0; i < 4; i++) {
    size_t n = cl_room_key(p, keys[i], req->room, req->room_len);
    add_arg(e, p, n);
    p += n;
  }
  /* the node's index: cport:node:<hex node name> (presence.h) */
  char *k = p;
  p += cl_node_key(p, req->node, req->node_len);
  add_arg(e, k, (size_t)(p - k));
  static const char hexd[] = "0123456789abcdef";
  char *op = p;
  *p++ = (char)req->op;
  add_arg(e, op, 1);
  char *num = p;
  p += sprintf(p, "%llu", (unsigned long long)req->player);
  size_t numlen = (size_t)(p - num);
  add_arg(e, num, numlen);
  add_arg(e, req->event_len ? req->event : "", req->event_len);
  char *mx = p;
  p += sprintf(p, "%u", req->stream_max);
  add_arg(e, mx, (size_t)(p - mx));
  char *ch = p;
  p += cl_room_key(p, CL_KEY_CHANNEL, req->room, req->room_len);
  add_arg(e, ch, (size_t)(p - ch));
  /* node index entry: "<player>:<hex room>" */
  char *ent = p;
  memcpy(p, num, numlen);
  p += numlen;
  *p++ = ':';
  const unsigned char *rn = req->room;
  for (size_t i = 0; i < req->room_len; i++) {
    *p++ = hexd[rn[i] >> 4];
    *p++ = hexd[rn[i] & 15];
  }
  add_arg(e, ent, (size_t)(p - ent));
  add_arg(e, req->member_len ? req->member : "", req->member_len);
  char *lm = p;
  p += sprintf(p, "%u", req->list_max);
  add_arg(e, lm, (size_t)(p - lm));
  char *ttl = p;
  p += sprintf(p, "%u", req->idle_ttl_s);
  add_arg(e, ttl, (size_t)(p - ttl));
  int rc = eval_send(e);
  if (rc) {
    free(e->blob);
    free(e);
  }
  return rc;
}

int cl_ids_reserve(cl_redis *c, cl_scripts *s, unsigned block,
                   void (*fn)(void *arg, uint64_t first, const char *err), void *arg) {
  if (!c || !s || !fn || block < 1)
    return -EINVAL;
  struct evalctx *e = eval_new(c, s, true, 41 + 16);
  if (!e)
    return -ENOMEM;
  e->idf = fn;
  e->arg = arg;
  add_arg(e, "1", 1);
  add_arg(e, "cport:ids", 9);
  char *p = e->blob + 41;
  add_arg(e, p, (size_t)sprintf(p, "%u", block));
  int rc = eval_send(e);
  if (rc) {
    free(e->blob);
    free(e);
  }
  return rc;
}

/* ---- decoding ----------------------------------------------------------- */

bool cl_message_decode(const char *msg, size_t len, uint64_t *offset, const char **epoch,
                       size_t *epoch_len, const char **event, size_t *event_len) {
  const char *c1 = memchr(msg, ':', len < 20 ? len : 20);
  if (!c1 || !parse_u64(msg, (size_t)(c1 - msg), offset) || *offset == 0)
    return false;
  size_t rest = len - (size_t)(c1 - msg) - 1;
  const char *ep = c1 + 1;
  const char *c2 = memchr(ep, ':', rest < 32 ? rest : 32);
  if (!c2 || c2 == ep)
    return false;
  for (const char *q = ep; q < c2; q++)
    if (*q < '0' || *q > '9')
      return false;
  *epoch = ep;
  *epoch_len = (size_t)(c2 - ep);
  *event = c2 + 1;
  *event_len = rest - *epoch_len - 1;
  return true;
}

bool cl_stream_entry_decode(const redisReply *entry, uint64_t *offset, const char **event,
                            size_t *event_len) {
  if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2)
    return false;
  const redisReply *id = entry->element[0], *f = entry->element[1];
  if (id->type != REDIS_REPLY_STRING || f->type != REDIS_REPLY_ARRAY || f->elements != 2 ||
      f->element[0]->type != REDIS_REPLY_STRING || f->element[1]->type != REDIS_REPLY_STRING ||
      f->element[0]->len != 1 || f->element[0]->str[0] != 'd')
    return false;
  if (id->len < 3 || id->str[id->len - 2] != '-' || id->str[id->len - 1] != '0' ||
      !parse_u64(id->str, id->len - 2, offset) || *offset == 0)
    return false;
  *event = f->element[1]->str;
  *event_len = f->element[1]->len;
  return true;
}
