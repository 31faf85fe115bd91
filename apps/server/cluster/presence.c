/* presence.c - see presence.h. */
#include "presence.h"

#include "room_keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
static const char heartbeat_lua[] =
  "-- cport node heartbeat. KEYS: 1 cport:nodes; ARGV: 1 node, 2 ttl ms\n"
  "local t = redis.call('TIME')\n"
  "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
  "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"
  "return now\n";

static const char claim_lua[] =
  "-- cport: claim dead nodes. KEYS: 1 cport:nodes; ARGV: 1 max, 2 lease ms, 3 grace ms\n"
  "-- A node past its deadline whose liveness channel still has a subscriber (its subscriber\n"
  "-- connection is open: the process lives, its heartbeat is late) is spared for grace ms.\n"
  "-- Pages of 128 late nodes: a claimed node leaves the range (its lease), a spared one stays,\n"
  "-- so the next page starts after the spared ones; dead nodes behind many spared are found.\n"
  "local t = redis.call('TIME')\n"
  "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
  "local max, lease, grace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
  "local dead, spared = {}, {}\n"
  "while #dead < max do\n"
  "  local late = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT',\n"
  "                         #spared / 2, 128)\n"
  "  if #late == 0 then break end\n"
  "  for i = 1, #late, 2 do\n"
  "    local over = now - tonumber(late[i + 1])\n"
  "    local subs = redis.call('PUBSUB', 'NUMSUB', 'cport:alive:' .. late[i])[2]\n"
  "    if subs > 0 and over < grace then\n"
  "      spared[#spared + 1] = late[i]\n"
  "      spared[#spared + 1] = over\n"
  "    elseif #dead < max then\n"
  "      redis.call('ZADD', KEYS[1], now + lease, late[i])\n"
  "      dead[#dead + 1] = late[i]\n"
  "    else\n"
  "      break\n"
  "    end\n"
  "  end\n"
  "end\n"
  "return {dead, spared}\n";
/* clang-format on */

static const char hexd[] = "0123456789abcdef";

size_t cl_node_key(char *out, const void *node, size_t len) {
  const unsigned char *p = node;
  memcpy(out, "cport:node:", 11);
  size_t n = 11;
  for (size_t i = 0; i < len; i++) {
    out[n++] = hexd[p[i] >> 4];
    out[n++] = hexd[p[i] & 15];
  }
  return n;
}

struct hb {
  void (*fn)(void *arg, const char *err);
  void *arg;
};

static void hb_done(void *arg, redisReply *r, const char *err) {
  struct hb *h = arg;
  char buf[200] = "";
  if (r && r->type == REDIS_REPLY_ERROR)
    snprintf(buf, sizeof buf, "heartbeat: %.*s", (int)(r->len < 180 ? r->len : 180), r->str);
  else if (!r)
    snprintf(buf, sizeof buf, "heartbeat: %s", err);
  if (h->fn)
    h->fn(h->arg, buf[0] ? buf : NULL);
  if (r)
    freeReplyObject(r);
  free(h);
}

int cl_node_heartbeat(cl_redis *c, const void *node, size_t len, unsigned ttl_ms,
                      void (*fn)(void *arg, const char *err), void *arg) {
  if (!c || (len && !node) || len > CL_ROOM_MAX || !ttl_ms)
    return -EINVAL;
  struct hb *h = malloc(sizeof *h);
  if (!h)
    return -ENOMEM;
  *h = (struct hb){fn, arg};
  char ttl[16];
  int tl = snprintf(ttl, sizeof ttl, "%u", ttl_ms);
  const char *av[6] = {"EVAL", heartbeat_lua, "1", "cport:nodes", len ? node : "", ttl};
  size_t al[6] = {4, sizeof heartbeat_lua - 1, 1, 11, len, (size_t)tl};
  int rc = cl_redis_command(c, 6, av, al, hb_done, h);
  if (rc)
    free(h);
  return rc;
}

size_t cl_node_alive_channel(char *out, const void *node, size_t len) {
  memcpy(out, "cport:alive:", 12);
  memcpy(out + 12, node, len);
  return 12 + len;
}

int cl_nodes_claim_dead(cl_redis *c, unsigned max, unsigned lease_ms, unsigned grace_ms,
                        cl_reply_fn fn, void *arg) {
  if (!c || !max || !lease_ms)
    return -EINVAL;
  char m[16], l[16], g[16];
  int ml = snprintf(m, sizeof m, "%u", max), ll = snprintf(l, sizeof l, "%u", lease_ms),
      gl = snprintf(g, sizeof g, "%u", grace_ms);
  const char *av[7] = {"EVAL", claim_lua, "1", "cport:nodes", m, l, g};
  size_t al[7] = {4, sizeof claim_lua - 1, 1, 11, (size_t)ml, (size_t)ll, (size_t)gl};
  return cl_redis_command(c, 7, av, al, fn, arg);
}

int cl_node_forget(cl_redis *c, const void *node, size_t len, cl_reply_fn fn, void *arg) {
  if (!c || (len && !node) || len > CL_ROOM_MAX)
    return -EINVAL;
  /* Two commands pipelined: ZREM, then DEL (the callback comes with the DEL). */
  const char *av[3] = {"ZREM", "cport:nodes", len ? node : ""};
  size_t al[3] = {4, 11, len};
  int rc = cl_redis_command(c, 3, av, al, NULL, NULL);
  if (rc)
    return rc;
  char key[11 + 2 * CL_ROOM_MAX];
  size_t kl = cl_node_key(key, node, len);
  const char *dv[2] = {"DEL", key};
  size_t dl[2] = {3, kl};
  return cl_redis_command(c, 2, dv, dl, fn, arg);
}

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool cl_node_entry_decode(const char *e, size_t len, uint64_t *player, void *room,
                          size_t *room_len) {
  const char *colon = memchr(e, ':', len < 21 ? len : 21);
  if (!colon || colon == e || (colon - e > 1 && e[0] == '0'))
    return false;
  uint64_t v = 0;
  for (const char *p = e; p < colon; p++) {
    if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
      return false;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  size_t hex = len - (size_t)(colon - e) - 1;
  if (hex % 2 || hex / 2 > CL_ROOM_MAX)
    return false;
  unsigned char *o = room;
  for (size_t i = 0; i < hex / 2; i++) {
    int hi = hexval(colon[1 + 2 * i]), lo = hexval(colon[2 + 2 * i]);
    if (hi < 0 || lo < 0)
      return false;
    o[i] = (unsigned char)(hi << 4 | lo);
  }
  *player = v;
  *room_len = hex / 2;
  return true;
}
