/*
 * redis_url.c - cport-server's --cluster URL (apps/common/cli.h:
 * cli_redis_url_parse, cli_redis_url_masked; docs/cluster.md, "Redis with a
 * password"): every part, percent-decoding to exact bytes (a zero byte too),
 * the split at the last '@' and the first ':', the limits, and each refusal
 * with its reason; the masked form never holds a byte of the password. And
 * the AUTH pieces of cl_redis (redis_conn.h): AUTH USER PASSWORD formatted
 * binary-safe, NOAUTH replies counted (cl_redis_noauth: how the node tells a
 * connection that is no longer authenticated). No backend, no Redis.
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

/* AUTH with a user and a password holding a zero byte goes out whole; NOAUTH answers count. */
static void auth_pieces(void) {
  for (int mode = 0; mode < 2; mode++) {
    cl_redis *c = cl_redis_create(mode ? CL_REDIS_SUBSCRIBER : CL_REDIS_COMMANDS, write_to_wire,
                                  NULL, NULL, NULL);
    CHECK(c);
    wire_len = 0;
    const char *argv[] = {"AUTH", "u:x", "p\0@"};
    size_t lens[] = {4, 3, 3};
    CHECK_EQ(cl_redis_command(c, 3, argv, lens, on_reply, NULL), 0);
    static const char want[] = "*3\r\n$4\r\nAUTH\r\n$3\r\nu:x\r\n$3\r\np\0@\r\n";
    CHECK_EQ(wire_len, sizeof want - 1);
    CHECK(!memcmp(wire, want, wire_len));
    const char *ping[] = {"PING"};
    size_t plen[] = {4};
    CHECK_EQ(cl_redis_command(c, 1, ping, plen, on_reply, NULL), 0);
    replies = errors = 0;
    static const char in[] = "-WRONGPASS invalid username-password pair\r\n"
                             "-NOAUTH Authentication required.\r\n";
    CHECK_EQ(cl_redis_feed(c, in, sizeof in - 1), 0);
    CHECK_EQ(replies, 2);
    CHECK_EQ(errors, 2);
    CHECK_EQ(cl_redis_noauth(c), 1);
    cl_redis_destroy(c);
  }
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
  auth_pieces();
  printf("redis_url: PASS\n");
  return 0;
}
