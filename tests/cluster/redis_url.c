/*
 * redis_url.c - cport-server's --cluster URL (apps/common/cli.h:
 * cli_redis_url_parse, cli_redis_url_masked; docs/cluster.md, "Redis with a
 * password"): every part, percent-decoding to exact bytes (a zero byte too),
 * the split at the last '@' and the first ':', the limits, and each refusal
 * with its reason; the masked form never holds a byte of the password. And
 * the AUTH pieces of cl_redis (redis_conn.h): AUTH USER PASSWORD formatted
 * binary-safe, NOAUTH replies counted (cl_redis_noauth: how the node tells a
 * connection that is no longer authenticated). The redis-sentinel:// form, and
 * cl_redis's ROLE (both modes) and READONLY count. No backend, no Redis.
 */
#include "common/test.h"

#include "../apps/common/cli.h"
#include "redis_conn.h"

static cli_redis_url u;

static void ok(const char *s) {
  const char *why = NULL;
  if (!cli_redis_url_parse(s, &u, &why)) {
    fprintf(stderr, "refused '%s': %s\n", s, why);
    exit(1);
  }
}

/* s is refused, and why holds want. */
static void refused(const char *s, const char *want) {
  const char *why = NULL;
  if (cli_redis_url_parse(s, &u, &why)) {
    fprintf(stderr, "'%s' is taken; expected: %s\n", s, want);
    exit(1);
  }
  if (!strstr(why, want)) {
    fprintf(stderr, "'%s': '%s' does not say '%s'\n", s, why, want);
    exit(1);
  }
}

static void bytes_are(const uint8_t *got, size_t len, const void *want, size_t want_len) {
  CHECK_EQ(len, want_len);
  CHECK(!memcmp(got, want, len));
}

static void masked_is(const char *s, const char *want) {
  char out[320];
  cli_redis_url_masked(s, out, sizeof out);
  if (strcmp(out, want)) {
    fprintf(stderr, "masked '%s': '%s', not '%s'\n", s, out, want);
    exit(1);
  }
}

static char wire[1024];
static size_t wire_len;
static int write_to_wire(void *io, const void *data, size_t len) {
  (void)io;
  CHECK(wire_len + len <= sizeof wire);
  memcpy(wire + wire_len, data, len);
  wire_len += len;
  return 0;
}

static int replies, errors;
static void on_reply(void *arg, redisReply *r, const char *err) {
  (void)arg, (void)err;
  CHECK(r);
  replies++;
  errors += r->type == REDIS_REPLY_ERROR;
  freeReplyObject(r);
}

/* A new cl_redis (mode 1: subscriber) on the wire; it sends argv, which goes out as want. */
static cl_redis *sent_as(int mode, int argc, const char **argv, const size_t *lens,
                         const char *want, size_t want_len) {
  cl_redis *c = cl_redis_create(mode ? CL_REDIS_SUBSCRIBER : CL_REDIS_COMMANDS, write_to_wire, NULL,
                                NULL, NULL);
  CHECK(c);
  wire_len = 0;
  CHECK_EQ(cl_redis_command(c, argc, argv, lens, on_reply, NULL), 0);
  CHECK_EQ(wire_len, want_len);
  CHECK(!memcmp(wire, want, wire_len));
  return c;
}

/* in (one literal) fed to c: n replies in all since the last count reset, e of them errors. */
#define FED(c, in, n, e)                                                                           \
  do {                                                                                             \
    CHECK_EQ(cl_redis_feed(c, in, sizeof in - 1), 0);                                              \
    CHECK_EQ(replies, n);                                                                          \
    CHECK_EQ(errors, e);                                                                           \
  } while (0)

/* AUTH with a user and a password holding a zero byte goes out whole; NOAUTH answers count. */
static void auth_pieces(void) {
  for (int mode = 0; mode < 2; mode++) {
    const char *argv[] = {"AUTH", "u:x", "p\0@"};
    size_t lens[] = {4, 3, 3};
    static const char want[] = "*3\r\n$4\r\nAUTH\r\n$3\r\nu:x\r\n$3\r\np\0@\r\n";
    cl_redis *c = sent_as(mode, 3, argv, lens, want, sizeof want - 1);
    const char *ping[] = {"PING"};
    size_t plen[] = {4};
    CHECK_EQ(cl_redis_command(c, 1, ping, plen, on_reply, NULL), 0);
    replies = errors = 0;
    static const char in[] = "-WRONGPASS invalid username-password pair\r\n"
                             "-NOAUTH Authentication required.\r\n";
    FED(c, in, 2, 2);
    CHECK_EQ(cl_redis_noauth(c), 1);
    CHECK_EQ(cl_redis_readonly(c), 0);
    cl_redis_destroy(c);
  }
}

/* Sentinel's pieces of cl_redis: ROLE runs in both modes (the handshake of a subscriber
 * connection too) and its array answer goes to its callback, not taken for a push; READONLY
 * answers count (how the node tells a demoted master). */
static void sentinel_pieces(void) {
  for (int mode = 0; mode < 2; mode++) {
    const char *role[] = {"ROLE"};
    size_t rlen[] = {4};
    static const char want[] = "*1\r\n$4\r\nROLE\r\n";
    cl_redis *c = sent_as(mode, 1, role, rlen, want, sizeof want - 1);
    replies = errors = 0;
    static const char in[] = "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
    FED(c, in, 1, 0);
    CHECK_EQ(cl_redis_pending(c), 0u);
    if (!mode) {
      const char *set[] = {"SET", "k", "v"};
      size_t slen[] = {3, 1, 1};
      CHECK_EQ(cl_redis_command(c, 3, set, slen, on_reply, NULL), 0);
      CHECK_EQ(cl_redis_command(c, 3, set, slen, on_reply, NULL), 0);
      static const char ro[] = "-READONLY You can't write against a read only replica.\r\n"
                               "-READONLY You can't write against a read only replica.\r\n";
      FED(c, ro, 3, 2);
      CHECK_EQ(cl_redis_readonly(c), 2);
      CHECK_EQ(cl_redis_noauth(c), 0);
    }
    cl_redis_destroy(c);
  }
}

/* redis-sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME */
static void sentinel_urls(void) {
  ok("redis-sentinel://127.0.0.1:26379/m");
  CHECK_EQ(u.nsentinels, 1u);
  CHECK(!strcmp(u.sentinels[0].host, "127.0.0.1") && u.sentinels[0].port == 26379);
  CHECK(!strcmp(u.host, "127.0.0.1") && u.port == 26379 && !u.has_pass && !u.has_user);
  CHECK(u.master_len == 1 && !strcmp(u.master, "m"));
  ok("REDIS-SENTINEL://cport:p:w@/d,@x@s1:1,[::1]:2,s-3.example:65535/my_master.1-a");
  CHECK_EQ(u.nsentinels, 3u);
  CHECK(!strcmp(u.sentinels[0].host, "s1") && u.sentinels[0].port == 1 && !u.sentinels[0].ipv6);
  CHECK(!strcmp(u.sentinels[1].host, "::1") && u.sentinels[1].port == 2 && u.sentinels[1].ipv6);
  CHECK(!strcmp(u.sentinels[2].host, "s-3.example") && u.sentinels[2].port == 65535);
  CHECK(u.master_len == 13 && !strcmp(u.master, "my_master.1-a"));
  bytes_are(u.user, u.user_len, "cport", 5);
  bytes_are(u.pass, u.pass_len, "p:w@/d,@x", 9);
  ok("redis-sentinel://:%00@h:1,h:2,h:3,h:4,h:5,h:6,h:7,h:8/m");
  CHECK_EQ(u.nsentinels, 8u);
  CHECK(u.sentinels[7].port == 8);
  bytes_are(u.pass, u.pass_len, "\0", 1);
  ok("redis://h:1");
  CHECK_EQ(u.nsentinels, 0u);
  CHECK_EQ(u.master_len, 0u);
  refused("redis-sentinel://h:1,h:2,h:3,h:4,h:5,h:6,h:7,h:8,h:9/m", "more than 8 sentinels");
  refused("redis-sentinel://h:1", "missing /MASTER_NAME");
  refused("redis-sentinel://h:1/", "MASTER_NAME must be");
  refused("redis-sentinel://h:1/m/0", "MASTER_NAME must be");
  refused("redis-sentinel://h:1/m?x", "MASTER_NAME must be");
  refused("redis-sentinel://h:1/m n", "MASTER_NAME must be");
  refused("redis-sentinel://h:1,/m", "missing HOST");
  refused("redis-sentinel://,h:1/m", "missing HOST");
  refused("redis-sentinel:///m", "missing HOST");
  refused("redis-sentinel://h/m", "missing :PORT");
  refused("redis-sentinel://h:0/m", "PORT must be a number from 1 to 65535");
  refused("redis-sentinel://h:1,k:x/m", "PORT must be a number from 1 to 65535");
  refused("redis-sentinel://[::1:1/m", "a bad [IPv6] address");
  refused("redis-sentinel://@h:1/m", "nothing before '@'");
  refused("redis-sentinel:/h:1/m", "or redis-sentinel://");
  masked_is("redis-sentinel://:s3cret@h:1,k:2/m", "redis-sentinel://:***@h:1,k:2/m");
  masked_is("redis-sentinel://u:a@b/c@h:1/m", "redis-sentinel://u:***@h:1/m");
}

int main(void) {
  test_begin("redis_url", 60);
  ok("redis://127.0.0.1:6379");
  CHECK(!strcmp(u.host, "127.0.0.1") && u.port == 6379 && !u.ipv6 && !u.has_user && !u.has_pass);
  ok("REDIS://localhost:1");
  CHECK(!strcmp(u.host, "localhost") && u.port == 1);
  ok("redis://redis-0.redis_svc.example:65535");
  CHECK(!strcmp(u.host, "redis-0.redis_svc.example") && u.port == 65535);
  ok("redis://[::1]:6380");
  CHECK(!strcmp(u.host, "::1") && u.ipv6 && u.port == 6380);
  ok("redis://[fd00::5:1.2.3.4]:7");
  CHECK(!strcmp(u.host, "fd00::5:1.2.3.4") && u.ipv6);

  /* password only; user and password; user alone (its password from the environment) */
  ok("redis://:s3cret@h:1");
  CHECK(!u.has_user && u.has_pass);
  bytes_are(u.pass, u.pass_len, "s3cret", 6);
  ok("redis://cport:pw@h:1");
  CHECK(u.has_user && u.has_pass);
  bytes_are(u.user, u.user_len, "cport", 5);
  bytes_are(u.pass, u.pass_len, "pw", 2);
  ok("redis://cport@h:1");
  CHECK(u.has_user && !u.has_pass);
  /* percent-decoding: any byte, a zero byte included; upper and lower case hex */
  ok("redis://u%3Ax%40:a%00b%ffc%2525%3a%40@h:1");
  bytes_are(u.user, u.user_len, "u:x@", 4);
  bytes_are(u.pass, u.pass_len,
            "a\0b\xff"
            "c%25:@",
            10);
  /* the last '@' ends USER:PASSWORD, the first ':' ends USER: ':' and '@' as they are */
  ok("redis://u:p:a@s@s@[::1]:9");
  bytes_are(u.user, u.user_len, "u", 1);
  bytes_are(u.pass, u.pass_len, "p:a@s@s", 7);
  CHECK(!strcmp(u.host, "::1") && u.port == 9);
  /* 256 bytes each at most (after decoding: 256 %XX are 256 bytes) */
  char url[1200], *p = url;
  p += sprintf(p, "redis://:");
  for (int i = 0; i < 256; i++)
    p += sprintf(p, "%%%02x", i);
  sprintf(p, "@h:1");
  ok(url);
  CHECK_EQ(u.pass_len, 256);
  for (int i = 0; i < 256; i++)
    CHECK_EQ(u.pass[i], i);
  sprintf(p, "x@h:1");
  refused(url, "PASSWORD is longer than 256 bytes");
  memset(url, 'u', sizeof url);
  memcpy(url, "redis://", 8);
  strcpy(url + 8 + 257, ":p@h:1");
  refused(url, "USER is longer than 256 bytes");

  refused("redis://:@", "an empty PASSWORD");
  refused("redis://:@h:1", "an empty PASSWORD");
  refused("redis://@h:1", "nothing before '@'");
  refused("redis://u:p@", "missing HOST");
  refused("redis://:6379", "missing HOST");
  refused("redis://h", "missing :PORT");
  refused("redis://h:", "missing PORT");
  refused("redis://h:0", "PORT must be a number from 1 to 65535");
  refused("redis://h:70000", "PORT must be a number from 1 to 65535");
  refused("redis://h:-1", "PORT must be a number from 1 to 65535");
  refused("redis://h:+1", "PORT must be a number from 1 to 65535");
  refused("redis://h:63 79", "PORT must be a number from 1 to 65535");
  refused("redis://h:6379/0", "nothing may follow HOST:PORT");
  refused("redis://h:6379?db=1", "nothing may follow HOST:PORT");
  refused("redis://::1:6379", "an IPv6 address goes in brackets");
  refused("redis://[::1]6379", "missing :PORT");
  refused("redis://[]:1", "a bad [IPv6] address");
  refused("redis://[::1:1", "a bad [IPv6] address");
  refused("redis://[::g]:1", "a bad [IPv6] address");
  refused("redis://h st:1", "HOST must be a name");
  refused("redis://h\xc3\xa9:1", "HOST must be a name");
  refused("rediss://h:1", "TLS (rediss://) is not supported");
  refused("REDISS://h:1", "TLS (rediss://) is not supported");
  refused("http://h:1", "expected redis://");
  refused("redis:/h:1", "expected redis://");
  refused("", "expected redis://");
  refused("redis://:a%4@h:1", "two hex digits");
  refused("redis://:a%@h:1", "two hex digits");
  refused("redis://:a%g0@h:1", "two hex digits");
  refused("redis://u%zz:p@h:1", "two hex digits");

  masked_is("redis://h:1", "redis://h:1");
  masked_is("redis://:s3cret@h:1", "redis://:***@h:1");
  masked_is("redis://cport:p:a@s@s@h:1", "redis://cport:***@h:1");
  masked_is("redis://cport@h:1", "redis://***@h:1"); /* redis-cli: a lone one is a password */
  masked_is("redis://s3cret@h:1", "redis://***@h:1");
  masked_is("redis://:s3cret", "redis://***"); /* no '@', not HOST:PORT: a forgotten HOST */
  masked_is("redis://s3:cret", "redis://***");
  masked_is("redis://h", "redis://h");
  masked_is("redis://h:", "redis://h:");
  masked_is("redis://[::1]:6379", "redis://[::1]:6379");
  masked_is("redis://[::1]:x", "redis://***");
  masked_is("rediss://u:s3cret@h:1", "rediss://u:***@h:1");
  masked_is("redis:/u:s3cret@h:1", "redis:***@h:1"); /* not a URL: masked all the same */
  masked_is("redis://:s3cret@", "redis://:***@");
  sentinel_urls();
  auth_pieces();
  sentinel_pieces();
  printf("redis_url: PASS\n");
  return 0;
}
