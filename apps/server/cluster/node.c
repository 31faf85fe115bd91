/*
 * node.c - a node's Redis connections, heartbeat, dead-node sweep and player
 * id blocks (node.h, docs/cluster.md).
 *
 * A link is one connection: its cl_redis (NULL while down) under the link's
 * recursive mutex (cp_session_send may end the session inline, running
 * on_disconnected nested inside a command sent under the mutex). A lost
 * connection's cl_redis is failed (every pending callback told) and freed
 * from a job, once no command sent under the mutex still uses it. Reconnects
 * are one-shot jobs on the node's queue.
 *
 * Every connection begins with its handshake: AUTH [USER] PASSWORD, or PING
 * without a password (a Redis that wants one answers NOAUTH). Until its
 * answer the connection's cl_redis is the link's `hs`, which nothing else
 * sends on; it becomes `r` (usable) once Redis accepted it. A refused
 * handshake is counted (auth_failures), logged, and the connection closed
 * and retried with the back-off of a failed connect (the back-off is reset
 * only by an accepted handshake).
 *
 * HOST is resolved once, at node_start (getaddrinfo; no worker ever waits on
 * DNS): every connect tries the addresses it gave in turn, the next one at
 * once after a failed connect, the back-off after a whole round failed.
 *
 * Sentinel (redis-sentinel://, Redis's "Sentinel clients guidelines"): every
 * connect of a link first asks the sentinels in turn, from the one that
 * answered last, for the master (SENTINEL get-master-addr-by-name, on a
 * short-lived outbound session of the node's service: a query, its state
 * freed from a job), connects to the answer, runs the handshake, then ROLE:
 * a server that is not master is refused (counted, logged, back-off, asked
 * again). A sentinel that does not answer in SENTINEL_TIMEOUT_MS, is down or
 * knows no such master: the next one at once; all of them: the back-off. A
 * READONLY reply or the loss of an up connection is a possible failover:
 * both links are closed (once per master generation, N.mgen) and reconnect
 * through Sentinel; the recovery of a reconnect (re-subscribe, gap reads,
 * epoch check) then runs as after any outage. And every tick, while both are
 * up, one lookup checks the master (N.chk): a sentinel that names another one
 * than the links are connected to closes both too - a demoted master keeps
 * accepting writes until Sentinel reconfigures it, which can take seconds.
 */
#define _GNU_SOURCE
#include "node.h"

#include "../../common/cli.h"
#include "../../common/os.h"
#include "../../common/printf_attr.h"
#include "presence.h"
#include "room_keys.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

node_counters node_stats;

#define ID_BLOCK 10000u
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define CONNECT_TIMEOUT_MS 2000u
#define FAIL_LOG_MS 5000u
#define HEARTBEAT_TTL_MS 3000u
#define SWEEP_LEASE_MS 5000u
/* A node past its heartbeat deadline whose subscriber connection is still
 * open (its liveness channel subscribed) is spared this long: a node whose
 * heartbeats queue behind a burst of work (2,000 entries at once, each a
 * member list) is alive, and sweeping it would remove live players. One that
 * hangs with its connection open is swept after the grace. */
#define SWEEP_GRACE_MS 30000u
/* A heartbeat round trip longer than this is logged (at most every 10 s). */
#define HEARTBEAT_SLOW_MS 1000u
#define ADDR_MAX 8u                /* addresses of HOST tried */
#define HANDSHAKE_TIMEOUT_MS 5000u /* AUTH/PING unanswered: the connection is given up */
#define SENTINEL_TIMEOUT_MS 1000u  /* a sentinel's answer is due within this */

struct squery;

struct link {
  const char *what;
  cl_redis_mode mode;
  pthread_mutex_t mu; /* recursive */
  cl_redis *r;        /* NULL while down or handshaking */
  cl_redis *hs;       /* the connection's while its AUTH/PING is answered (nothing else sends) */
  cp_session *s;      /* a reference while connected */
  bool told;          /* under mu: this connection's failure was logged (a refused AUTH...) */
  uint64_t hs_deadline_ms; /* under mu: the handshake's answer is due by then */
  size_t noauth_base;      /* under mu: NOAUTH replies r had when it came up */
  unsigned addr_i;         /* under mu: the address the next attempt goes to */
  unsigned tried;          /* under mu: addresses that failed to connect in this round */
  _Atomic bool ready;      /* commands: scripts loaded; subscriber: connected */
  bool ever_up;            /* under mu */
  /* under mu: the reconnect loop's state, for its log and the tick's watch */
  unsigned fails;         /* attempts that failed since the link was last up */
  uint64_t fail_log_ms;   /* when a failed attempt was last logged */
  uint64_t attempt_ms;    /* when the attempt under way began (0: none) */
  uint64_t scheduled_ms;  /* when the next attempt was scheduled (0: none) */
  bool stuck_logged;      /* the tick logged the attempt or schedule under way */
  _Atomic uint64_t feeds; /* byte batches received: progress */
  uint64_t feeds_seen;    /* tick's: feeds at the last tick */
  unsigned stalled;       /* tick's: ticks with commands pending and no byte received */
  unsigned backoff_ms;
  /* Sentinel, under mu: */
  struct squery *sq;    /* the lookup under way (NULL: none) */
  unsigned sq_i;        /* the sentinel it asks */
  unsigned sq_tried;    /* sentinels that failed in this round */
  char maddr[64];       /* the master the sentinel named (numeric) */
  uint16_t mport;       /* and its port */
  char mshown[80];      /* "ADDR:PORT", for logs */
  uint64_t gen;         /* N.mgen when this connection's lookup began */
  size_t readonly_base; /* READONLY replies r had when it came up */
};

static struct {
  cp_service *svc;
  cli_redis_url url;       /* HOST, PORT, USER, PASSWORD (never logged) */
  char shown[320];         /* the URL with the password as "***" */
  char where[300];         /* HOST:PORT, for logs */
  char addr[ADDR_MAX][64]; /* HOST's addresses (numeric), from node_start */
  unsigned naddr;
  char name[256];
  size_t name_len;
  bool sentinel;                      /* redis-sentinel:// */
  char saddr[CLI_SENTINEL_MAX][64];   /* each sentinel's address (the first of its HOST's) */
  char sshown[CLI_SENTINEL_MAX][300]; /* HOST:PORT, for logs */
  uint8_t spass[CLI_REDIS_CRED_MAX];  /* CPORT_SENTINEL_PASSWORD (never logged) */
  size_t spass_len;                   /* 0: no AUTH to the sentinels */
  _Atomic unsigned sent_first;        /* the sentinel that answered last: asked first */
  _Atomic uint64_t mgen;              /* master generation: +1 per suspected failover */
  pthread_mutex_t master_mu;
  char master[80]; /* under master_mu: the last master a sentinel named ("" before) */
  node_hooks hooks;
  cp_jobq *q;
  cp_timer tick;
  _Atomic bool stopping, timers_off;
  cl_scripts scripts;
  struct link cmd, sub;
  struct link chk; /* Sentinel: the tick's check of the master (its lookups only, no connection) */
  _Atomic bool lost;               /* a connection was lost since both were last up */
  _Atomic uint64_t claim_after_ms; /* no dead nodes claimed before (mono_ms) */
  pthread_mutex_t owed_mu;
  struct owed *owed; /* leaves to re-send (node_leave_later), newest first */
  size_t nowed;
  pthread_mutex_t ids_mu;
  uint64_t id_next, id_end, id_next2, id_end2; /* the block in use, the one after */
  bool ids_asked;
} N;

static void link_connect(struct link *l);

struct owed { /* a leave to re-send */
  struct owed *next;
  uint64_t player;
  size_t len;
  uint8_t room[];
};
#define OWED_MAX 1000000u
static void resend_leaves(void);
static void hb_done(void *arg, const char *err);

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- log ---------------------------------------------------------------- */

/* "cport-server: " head, then fmt's line. */
static void vlog(const char *head, const char *fmt, va_list ap) {
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  fprintf(stderr, "cport-server: %s%s\n", head, buf);
}

static void nlog(const char *fmt, ...) APPS_PRINTF(1, 2);
static void nlog(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog("cluster: ", fmt, ap);
  va_end(ap);
}

/* A line logged at most every 10 s (any thread): true for the caller that takes the turn. */
static bool log_due(_Atomic uint64_t *last_ms, uint64_t now) {
  uint64_t last = atomic_load(last_ms);
  return now - last >= 10000 && atomic_compare_exchange_strong(last_ms, &last, now);
}

/* ---- links -------------------------------------------------------------- */

/* A failed attempt's line (under l->mu): the first one (`first`), then at most one per
 * FAIL_LOG_MS. */
static bool fail_log_due(struct link *l, bool first) {
  uint64_t now = mono_ms();
  bool due = first || now - l->fail_log_ms >= FAIL_LOG_MS;
  if (due)
    l->fail_log_ms = now;
  return due;
}

static struct link *link_of(cp_session *s) {
  return cp_session_user(s); /* set before the connect */
}

/* The address the link's connection goes to, for logs (under l->mu). */
static const char *link_addr(const struct link *l) {
  return N.sentinel ? l->mshown : N.addr[l->addr_i];
}

static void master_lost(struct link *l, const char *why);

static void on_message(void *arg, const char *pattern, size_t plen, const char *ch, size_t chlen,
                       const char *data, size_t len) {
  (void)arg, (void)pattern, (void)plen;
  uint8_t room[CL_ROOM_MAX];
  size_t rlen;
  if (!cl_room_from_channel(ch, chlen, room, &rlen)) {
    atomic_fetch_add(&node_stats.bad_messages, 1);
    nlog("a message on channel '%.*s' that is not a room's: ignored",
         (int)(chlen < 80 ? chlen : 80), ch);
    return;
  }
  N.hooks.message(room, rlen, data, len);
}

static void ids_reply(void *arg, uint64_t first, const char *err);

static void ids_ask(void) {
  /* under ids_mu */
  if (N.ids_asked)
    return;
  N.ids_asked = true;
  pthread_mutex_lock(&N.cmd.mu);
  int rc = N.cmd.r ? cl_ids_reserve(N.cmd.r, &N.scripts, ID_BLOCK, ids_reply, NULL) : -ENOTCONN;
  pthread_mutex_unlock(&N.cmd.mu);
  if (rc)
    N.ids_asked = false; /* asked again when the connection is up */
}

static void ids_reply(void *arg, uint64_t first, const char *err) {
  (void)arg;
  bool ready = false;
  pthread_mutex_lock(&N.ids_mu);
  N.ids_asked = false;
  if (err) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("player ids: %s", err);
  } else if (N.id_next == N.id_end) {
    N.id_next = first;
    N.id_end = first + ID_BLOCK;
    ready = true;
  } else {
    N.id_next2 = first;
    N.id_end2 = first + ID_BLOCK;
  }
  pthread_mutex_unlock(&N.ids_mu);
  if (ready && N.hooks.ids_ready)
    N.hooks.ids_ready();
}

bool node_take_id(uint64_t *id) {
  pthread_mutex_lock(&N.ids_mu);
  if (N.id_next == N.id_end && N.id_next2 != N.id_end2) {
    N.id_next = N.id_next2;
    N.id_end = N.id_end2;
    N.id_next2 = N.id_end2 = 0;
  }
  bool ok = N.id_next != N.id_end;
  if (ok)
    *id = N.id_next++;
  /* the next block is asked for when half of this one is gone */
  if (N.id_next2 == N.id_end2 && N.id_end - N.id_next < ID_BLOCK / 2)
    ids_ask();
  pthread_mutex_unlock(&N.ids_mu);
  return ok;
}

/* Both connections up again after a loss: chat mode re-subscribes and resyncs. */
static void maybe_back(void) {
  if (node_available() && atomic_exchange(&N.lost, false) && N.hooks.sub_up)
    N.hooks.sub_up();
}

static void scripts_loaded(void *arg, const char *err) {
  struct link *l = arg;
  if (err) {
    if (atomic_load(&N.stopping))
      return;
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("loading the scripts: %s; reconnecting", err);
    pthread_mutex_lock(&l->mu);
    if (l->s)
      cp_session_disconnect(l->s, false);
    pthread_mutex_unlock(&l->mu);
    return;
  }
  atomic_store(&l->ready, true);
  /* A heartbeat at once: an outage shorter than its deadline must not get
   * this node swept as dead by a node that came back first. */
  pthread_mutex_lock(&l->mu);
  if (l->r && !atomic_load(&N.timers_off))
    cl_node_heartbeat(l->r, N.name, N.name_len, HEARTBEAT_TTL_MS, hb_done,
                      (void *)(uintptr_t)mono_ms());
  pthread_mutex_unlock(&l->mu);
  resend_leaves();
  pthread_mutex_lock(&N.ids_mu);
  if (N.id_next == N.id_end || N.id_next2 == N.id_end2)
    ids_ask();
  pthread_mutex_unlock(&N.ids_mu);
  maybe_back();
}

/* The liveness channel: subscribed while the subscriber connection is up, so
 * Redis knows this process is there even when its heartbeats run late
 * (presence.h). Nothing is published on it. */
static void alive_subscribed(void *arg, redisReply *r, const char *err) {
  struct link *l = arg;
  (void)err;
  if (!r)
    return; /* the connection went: its loss is logged, and its reconnect subscribes again */
  if (r->type == REDIS_REPLY_ERROR && !atomic_load(&N.stopping)) {
    /* e.g. an ACL user without the channel: refused, as an AUTH would be */
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("subscribing to this node's liveness channel: %.*s (an ACL user needs the channels "
         "cport:*, e.g. &cport:*); reconnecting with back-off",
         (int)(r->len < 200 ? r->len : 200), r->str);
    pthread_mutex_lock(&l->mu);
    if (l->s)
      cp_session_disconnect(l->s, false);
    pthread_mutex_unlock(&l->mu);
  }
  freeReplyObject(r);
}

static void alive_subscribe(struct link *l) {
  char ch[CL_ALIVE_CHANNEL_MAX];
  size_t n = cl_node_alive_channel(ch, N.name, N.name_len);
  const char *argv[] = {"SUBSCRIBE", ch};
  size_t lens[] = {9, n};
  pthread_mutex_lock(&l->mu);
  int rc = l->r ? cl_redis_command(l->r, 2, argv, lens, alive_subscribed, l) : -ENOTCONN;
  pthread_mutex_unlock(&l->mu);
  (void)rc; /* not sent: the connection is down, and its reconnect subscribes again */
}

/* The handshake was accepted: the connection is up. */
static void link_up(struct link *l) {
  pthread_mutex_lock(&l->mu);
  assert(!l->r); /* one connection at a time: the last one's state is gone */
  cl_redis *r = l->hs;
  char addr[80];
  snprintf(addr, sizeof addr, "%s", link_addr(l));
  bool again = l->ever_up;
  if (r) {
    l->r = r;
    l->hs = NULL;
    l->noauth_base = cl_redis_noauth(r);
    l->readonly_base = cl_redis_readonly(r);
    l->ever_up = true;
    l->backoff_ms = 0;
    l->fails = 0;
  }
  pthread_mutex_unlock(&l->mu);
  if (!r)
    return; /* lost meanwhile */
  if (again)
    atomic_fetch_add(&node_stats.reconnects, 1);
  /* Back after an outage (a Redis restart cuts every node): the others'
   * heartbeats are stale too; give them a deadline to come back before any
   * is taken for dead. */
  if (again && l->mode == CL_REDIS_COMMANDS)
    atomic_store(&N.claim_after_ms, mono_ms() + HEARTBEAT_TTL_MS);
  nlog("%s connection to redis %s (%s) up%s", l->what, N.where, addr, again ? " again" : "");
  if (l->mode == CL_REDIS_COMMANDS) {
    pthread_mutex_lock(&l->mu);
    int rc = l->r ? cl_scripts_load(l->r, &N.scripts, scripts_loaded, l) : -ENOTCONN;
    if (rc && l->s)
      cp_session_disconnect(l->s, false);
    pthread_mutex_unlock(&l->mu);
  } else {
    alive_subscribe(l);
    atomic_store(&l->ready, true);
    maybe_back();
  }
}

/* What an operator should do about a refused handshake (Redis's error text e). */
static const char *auth_hint(const char *e, size_t len) {
  if (len >= 9 && !memcmp(e, "WRONGPASS", 9))
    return "the user or password is wrong (or the ACL user is disabled)";
  if (len >= 6 && !memcmp(e, "NOAUTH", 6))
    return N.url.has_pass
               ? "Redis wants a password"
               : "this Redis requires a password: give it in the URL (redis://:PASSWORD@HOST:PORT) "
                 "or in CPORT_CLUSTER_PASSWORD";
  static const char nopass[] = "without any password configured";
  for (size_t i = 0; i + sizeof nopass - 1 <= len; i++)
    if (!memcmp(e + i, nopass, sizeof nopass - 1))
      return "this Redis has no password for its default user: give none, or name the ACL user "
             "(redis://USER:PASSWORD@HOST:PORT)";
  if (N.url.has_user)
    return "AUTH USER PASSWORD needs Redis 6 or later (ACL users)";
  return "Redis refused the connection's first command";
}

/* A server's text e (len bytes) for a log line into out (NUL-terminated, at most 200 bytes of
 * e), each occurrence of one of the n passwords pw (pl bytes each; 0: none) replaced by "***" -
 * one that runs past the 200 bytes too, not its first bytes shown: a server or proxy that
 * echoes the command's arguments must not put one in the log. */
static void text_masked(const char *e, size_t len, const uint8_t *const *pw, const size_t *pl,
                        size_t n, char *out, size_t size) {
  size_t o = 0, shown = len < 200 ? len : 200; /* a password that starts in it: all matched */
  assert(size > 4);
  for (size_t i = 0; i < shown && o + 4 < size;) {
    size_t k = 0;
    while (k < n && !(pl[k] && len - i >= pl[k] && memcmp(e + i, pw[k], pl[k]) == 0))
      k++;
    if (k < n) {
      memcpy(out + o, "***", 3);
      o += 3;
      i += pl[k];
    } else {
      out[o++] = e[i++];
    }
  }
  out[o] = 0;
}

/* Redis's error text e (len bytes) for a log line (text_masked): Redis's password masked. */
static void error_shown(const char *e, size_t len, char *out, size_t size) {
  const uint8_t *pw[] = {N.url.pass};
  size_t pl[] = {N.url.has_pass ? N.url.pass_len : 0};
  text_masked(e, len, pw, pl, 1, out, size);
}

/* A sentinel's error text e (len bytes) for a log line (text_masked): the sentinels' password
 * (CPORT_SENTINEL_PASSWORD) masked, and Redis's too. */
static void sentinel_error_shown(const char *e, size_t len, char *out, size_t size) {
  const uint8_t *pw[] = {N.spass, N.url.pass};
  size_t pl[] = {N.spass_len, N.url.has_pass ? N.url.pass_len : 0};
  text_masked(e, len, pw, pl, 2, out, size);
}

/* A refused handshake (the first one, or a NOAUTH later on a connection that was up): counted,
 * logged (rate-limited as failed attempts are), the connection closed; on_disconnected then
 * retries with the back-off. */
static void auth_refused(struct link *l, const char *e, size_t len) {
  atomic_fetch_add(&node_stats.auth_failures, 1);
  pthread_mutex_lock(&l->mu);
  l->told = true;
  unsigned n = l->fails + 1;
  bool log = fail_log_due(l, n == 1);
  if (l->s)
    cp_session_disconnect(l->s, false);
  pthread_mutex_unlock(&l->mu);
  if (log && !atomic_load(&N.stopping)) {
    char shown[256];
    error_shown(e, len, shown, sizeof shown);
    nlog("%s connection to redis %s: authentication refused (attempt %u): %s - %s; "
         "reconnecting with back-off",
         l->what, N.where, n, shown, auth_hint(e, len));
  }
}

/* Sentinel: ROLE's answer. Anything but a master is refused: counted, logged, the connection
 * closed (on_disconnected asks Sentinel again after the back-off). */
static void role_done(void *arg, redisReply *r, const char *err) {
  struct link *l = arg;
  (void)err;
  if (!r)
    return;
  const redisReply *e = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0] : NULL;
  bool master = e && e->type == REDIS_REPLY_STRING && e->len == 6 && !memcmp(e->str, "master", 6);
  if (master) {
    link_up(l);
  } else {
    atomic_fetch_add(&node_stats.not_master, 1);
    pthread_mutex_lock(&l->mu);
    char addr[80];
    snprintf(addr, sizeof addr, "%s", link_addr(l));
    l->told = true;
    if (l->s)
      cp_session_disconnect(l->s, false);
    bool log = fail_log_due(l, l->fails == 0); /* logged as failed attempts are */
    pthread_mutex_unlock(&l->mu);
    bool named = e && e->type == REDIS_REPLY_STRING;
    const char *role = named ? e->str : cl_redis_reply_kind(r); /* "slave", or "ERR ..." */
    int rl = named ? (int)(e->len < 40 ? e->len : 40) : (int)strlen(role);
    if (log && !atomic_load(&N.stopping))
      nlog("%s connection: %s is not the master of '%s' (ROLE: %.*s); asking Sentinel again with "
           "back-off",
           l->what, addr, N.url.master, rl, role);
  }
  freeReplyObject(r);
}

static void handshake_done(void *arg, redisReply *r, const char *err) {
  struct link *l = arg;
  (void)err;
  if (!r)
    return; /* the connection went first: on_disconnected tells */
  if (r->type == REDIS_REPLY_ERROR) {
    auth_refused(l, r->str, r->len);
  } else if (N.sentinel) {
    const char *argv[] = {"ROLE"};
    size_t lens[] = {4};
    pthread_mutex_lock(&l->mu);
    int rc = l->hs ? cl_redis_command(l->hs, 1, argv, lens, role_done, l) : -ENOTCONN;
    if (rc && l->s)
      cp_session_disconnect(l->s, false);
    pthread_mutex_unlock(&l->mu);
  } else {
    link_up(l);
  }
  freeReplyObject(r);
}

/* The connection's first command (under l->mu, l->hs set): AUTH [USER] PASSWORD, or PING. */
static int handshake(struct link *l) {
  assert(l->hs && !l->r);
  const char *argv[3] = {"PING"};
  size_t lens[3] = {4};
  int argc = 1;
  if (N.url.has_pass) {
    argv[0] = "AUTH";
    if (N.url.has_user) {
      argv[argc] = (const char *)N.url.user;
      lens[argc++] = N.url.user_len;
    }
    argv[argc] = (const char *)N.url.pass;
    lens[argc++] = N.url.pass_len;
  }
  return cl_redis_command(l->hs, argc, argv, lens, handshake_done, l);
}

/* A handshake not answered in time (a Redis, or a service on its port, that accepts and never
 * answers): the connection is closed and retried. A job per connection; one of an earlier
 * connection finds the deadline of the current one not passed and does nothing. */
static void handshake_timeout(void *arg) {
  struct link *l = arg;
  pthread_mutex_lock(&l->mu);
  bool late = l->hs && l->s && !l->told && mono_ms() >= l->hs_deadline_ms;
  if (late) {
    l->told = true;
    cp_session_disconnect(l->s, false);
  }
  pthread_mutex_unlock(&l->mu);
  if (late && !atomic_load(&N.stopping)) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("%s connection to redis %s: no answer to %s in %u ms; reconnecting with back-off", l->what,
         N.where, N.url.has_pass ? "AUTH" : "PING", HANDSHAKE_TIMEOUT_MS);
  }
}

static void on_connected(cp_session *s) {
  struct link *l = link_of(s);
  pthread_mutex_lock(&l->mu);
  l->hs = cl_redis_create(l->mode, cl_redis_session_write, s, on_message, NULL);
  if (!l->hs) {
    pthread_mutex_unlock(&l->mu);
    cp_session_disconnect(s, false);
    return;
  }
  l->s = cp_session_get(s);
  l->attempt_ms = 0;
  l->tried = 0;
  l->hs_deadline_ms = mono_ms() + HANDSHAKE_TIMEOUT_MS;
  int rc = handshake(l);
  pthread_mutex_unlock(&l->mu);
  if (rc) {
    cp_session_disconnect(s, false);
  } else if (cp_jobq_post_after(N.q, HANDSHAKE_TIMEOUT_MS, handshake_timeout, l) != 0) {
    /* no deadline for this handshake: do not wait without one */
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("%s connection: could not arm the handshake's timeout; reconnecting", l->what);
    cp_session_disconnect(s, false);
  }
}

static void on_raw(cp_session *s, const void *data, size_t len) {
  struct link *l = link_of(s);
  atomic_fetch_add(&l->feeds, 1);
  pthread_mutex_lock(&l->mu);
  cl_redis *r = l->s == s ? (l->r ? l->r : l->hs) : NULL;
  pthread_mutex_unlock(&l->mu);
  if (r && cl_redis_feed(r, data, len) < 0) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("%s connection: %s; reconnecting", l->what, cl_redis_error(r));
    cp_session_disconnect(s, false);
    return;
  }
  /* NOAUTH to a command on a connection that was up: it is no longer authenticated. */
  pthread_mutex_lock(&l->mu);
  bool noauth = r && l->r == r && cl_redis_noauth(r) > l->noauth_base;
  if (noauth)
    l->noauth_base = cl_redis_noauth(r);
  pthread_mutex_unlock(&l->mu);
  static const char late[] = "NOAUTH (to a command after the handshake)";
  if (noauth)
    auth_refused(l, late, sizeof late - 1);
  /* READONLY: this master was demoted (a failover); Sentinel names the new one. */
  pthread_mutex_lock(&l->mu);
  bool ro = N.sentinel && r && l->r == r && cl_redis_readonly(r) > l->readonly_base;
  if (ro)
    l->readonly_base = cl_redis_readonly(r);
  pthread_mutex_unlock(&l->mu);
  if (ro) {
    atomic_fetch_add(&node_stats.readonly, 1);
    master_lost(l, "READONLY reply (the master was demoted)");
  }
}

static void reconnect_job(void *arg) {
  struct link *l = arg;
  pthread_mutex_lock(&l->mu);
  l->scheduled_ms = 0;
  pthread_mutex_unlock(&l->mu);
  if (!atomic_load(&N.stopping))
    link_connect(l);
}

/* A connect to the link's address failed: go to HOST's next address; true while this round
 * of them has more (the next attempt goes at once), false after the last (the back-off).
 * Under l->mu. */
static bool next_addr(struct link *l) {
  assert(N.naddr >= 1 && N.naddr <= ADDR_MAX && l->addr_i < N.naddr);
  if (N.naddr < 2)
    return false;
  l->addr_i = (l->addr_i + 1) % N.naddr;
  if (++l->tried < N.naddr)
    return true;
  l->tried = 0;
  return false;
}

/* The next attempt: at once (the next address of this round), or after the back-off. */
static void schedule_reconnect(struct link *l, bool at_once) {
  if (atomic_load(&N.stopping))
    return;
  pthread_mutex_lock(&l->mu);
  if (!at_once) {
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (l->backoff_ms > BACKOFF_MAX_MS)
      l->backoff_ms = BACKOFF_MAX_MS;
  }
  unsigned ms = at_once ? 0 : l->backoff_ms;
  l->scheduled_ms = mono_ms();
  l->stuck_logged = false;
  pthread_mutex_unlock(&l->mu);
  int rc = ms ? cp_jobq_post_after(N.q, ms, reconnect_job, l) : cp_jobq_post(N.q, reconnect_job, l);
  if (rc != 0 && !atomic_load(&N.stopping))
    nlog("%s connection: cannot schedule a reconnect: %s", l->what, cp_strerror(rc));
}

struct lost {
  struct link *l;
  cl_redis *r;
  char why[96];
};

/* A lost connection's state: its pending callbacks told, then freed - once
 * no command that took it before the loss (under the link's mutex) runs. */
static void lost_free(struct link *l, cl_redis *r, const char *why) {
  cl_redis_fail_all(r, why);
  pthread_mutex_lock(&l->mu);
  pthread_mutex_unlock(&l->mu);
  cl_redis_destroy(r);
}

static void fail_job(void *arg) {
  struct lost *x = arg;
  lost_free(x->l, x->r, x->why);
  free(x);
}

static void on_disconnected(cp_session *s, cp_reason why) {
  struct link *l = link_of(s);
  cl_redis *r = NULL;
  bool connected = false, was_up = false, told = false, at_once = false;
  pthread_mutex_lock(&l->mu);
  char addr[80];
  snprintf(addr, sizeof addr, "%s", link_addr(l));
  if (l->s == s) {
    connected = true;
    was_up = l->r != NULL;
    r = was_up ? l->r : l->hs;
    l->r = l->hs = NULL;
    atomic_store(&l->ready, false);
    if (was_up)
      atomic_store(&N.lost, true);
    l->s = NULL;
  } else {
    at_once = !N.sentinel && next_addr(l); /* Sentinel: asked again after the back-off */
  }
  told = l->told;
  l->told = false;
  /* Every lost connection is logged; failed attempts (a refused handshake
   * included) too, at most one line per FAIL_LOG_MS (the first, then one
   * with the count); a refused handshake was logged by auth_refused. */
  l->attempt_ms = 0;
  bool log = was_up && !told;
  unsigned fails = 0;
  if (!was_up) {
    fails = ++l->fails;
    log = !told && fail_log_due(l, fails == 1);
  }
  pthread_mutex_unlock(&l->mu);
  if (r) {
    /* Its pending callbacks are told from a job: on_disconnected may run nested
     * in a command sent under a lock of ours (or of chat mode's). */
    struct lost *x = malloc(sizeof *x);
    if (x) {
      x->l = l;
      x->r = r;
      snprintf(x->why, sizeof x->why, "connection lost (%s)", cp_reason_name(why));
    }
    if (!x || cp_jobq_post(N.q, fail_job, x) != 0) {
      free(x); /* (no memory, or stopping: then nothing sends any more) */
      lost_free(l, r, "connection lost");
    }
  }
  if (connected)
    cp_session_put(s);
  if (was_up && N.sentinel)
    master_lost(l, "connection lost");
  if (log && !atomic_load(&N.stopping)) {
    if (was_up)
      nlog("%s connection to redis %s lost (%s); reconnecting with back-off", l->what, N.where,
           cp_reason_name(why));
    else
      nlog("%s connection to redis %s (%s): attempt %u failed (%s%s); reconnecting%s", l->what,
           N.where, addr, fails, cp_reason_name(why), connected ? " before Redis answered" : "",
           at_once ? " to the next address" : " with back-off");
  }
  schedule_reconnect(l, at_once);
}

/* Connect to the link's Redis: HOST's address addr_i, or (Sentinel) the master it was told. */
static void master_connect(struct link *l) {
  pthread_mutex_lock(&l->mu);
  l->attempt_ms = mono_ms();
  l->stuck_logged = false;
  char addr[64];
  snprintf(addr, sizeof addr, "%s", N.sentinel ? l->maddr : N.addr[l->addr_i]);
  uint16_t port = N.sentinel ? l->mport : N.url.port;
  pthread_mutex_unlock(&l->mu);
  cp_session_callbacks cb = {
      .on_connected = on_connected, .on_raw = on_raw, .on_disconnected = on_disconnected};
  cp_connect_options o = {.host = addr,
                          .port = port,
                          .raw = true,
                          .send_queue_max = 256u << 20,
                          .connect_timeout_ms = CONNECT_TIMEOUT_MS,
                          .callbacks = cb,
                          .user = l};
  int rc = cp_service_connect_to(N.svc, &o, NULL);
  if (rc) {
    pthread_mutex_lock(&l->mu);
    l->attempt_ms = 0;
    bool at_once = !N.sentinel && next_addr(l);
    pthread_mutex_unlock(&l->mu);
    nlog("%s connection: cannot connect to %s: %s", l->what, addr, cp_strerror(rc));
    schedule_reconnect(l, at_once);
  }
}

/* ---- Sentinel ------------------------------------------------------------ */

/* One question to one sentinel: SENTINEL get-master-addr-by-name NAME. Its session's user. */
struct squery {
  struct link *l;
  unsigned i;           /* the sentinel */
  cp_session *s;        /* a reference while connected (under l->mu) */
  cl_redis *r;          /* the session's protocol state (NULL before on_connected) */
  uint64_t deadline_ms; /* under l->mu: the answer is due by then */
  bool answered;        /* ip/port hold the master */
  char ip[64];
  uint16_t port;
  char why[200]; /* why it gave no master ("" while none known) */
};

static void sentinel_ask(struct link *l);
static void check_master(const char *shown);

/* The master's address a sentinel gave (two strings: a numeric address, a port). */
static bool master_addr(struct squery *q, const redisReply *r) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
    return false;
  const redisReply *a = r->element[0], *p = r->element[1];
  char port[8];
  unsigned long v;
  if (a->len == 0 || a->len >= sizeof q->ip ||
      strspn(a->str, "0123456789abcdefABCDEF:.") != a->len || p->len == 0 || p->len >= sizeof port)
    return false;
  memcpy(port, p->str, p->len);
  port[p->len] = '\0';
  if (!cli_uint(port, 1, 65535, &v))
    return false;
  memcpy(q->ip, a->str, a->len);
  q->ip[a->len] = '\0';
  q->port = (uint16_t)v;
  return true;
}

/* Under l->mu: the question is over; the session closes (sq_disconnected goes on). */
static void sq_close(struct squery *q) {
  if (q->s)
    cp_session_disconnect(q->s, false);
}

static void sq_auth(void *arg, redisReply *r, const char *err) {
  struct squery *q = arg;
  (void)err;
  if (r && r->type == REDIS_REPLY_ERROR) {
    char shown[128];
    sentinel_error_shown(r->str, r->len, shown, sizeof shown);
    pthread_mutex_lock(&q->l->mu);
    snprintf(q->why, sizeof q->why, "AUTH (CPORT_SENTINEL_PASSWORD) refused: %s", shown);
    pthread_mutex_unlock(&q->l->mu);
  }
  if (r)
    freeReplyObject(r);
}

static void sq_reply(void *arg, redisReply *r, const char *err) {
  struct squery *q = arg;
  (void)err;
  if (!r)
    return; /* the session went first: sq_disconnected tells */
  pthread_mutex_lock(&q->l->mu);
  if (master_addr(q, r))
    q->answered = true;
  else if (q->why[0])
    ; /* its AUTH was refused: that is the cause */
  else if (r->type == REDIS_REPLY_NIL)
    snprintf(q->why, sizeof q->why, "knows no master named '%s'", N.url.master);
  else if (r->type == REDIS_REPLY_ERROR)
    sentinel_error_shown(r->str, r->len, q->why, sizeof q->why);
  else
    snprintf(q->why, sizeof q->why, "an answer that is not ADDRESS PORT (%s)",
             cl_redis_reply_kind(r));
  sq_close(q);
  pthread_mutex_unlock(&q->l->mu);
  freeReplyObject(r);
}

/* A sentinel that accepts and never answers: its session is closed. A job per question; one of
 * an earlier question finds the current one's deadline not passed. */
static void sq_timeout(void *arg) {
  struct link *l = arg;
  pthread_mutex_lock(&l->mu);
  struct squery *q = l->sq;
  if (q && q->s && !q->answered && mono_ms() >= q->deadline_ms) {
    if (!q->why[0])
      snprintf(q->why, sizeof q->why, "no answer in %u ms", SENTINEL_TIMEOUT_MS);
    sq_close(q);
  }
  pthread_mutex_unlock(&l->mu);
}

static void sq_connected(cp_session *s) {
  struct squery *q = cp_session_user(s);
  struct link *l = q->l;
  pthread_mutex_lock(&l->mu);
  q->r = cl_redis_create(CL_REDIS_COMMANDS, cl_redis_session_write, s, NULL, NULL);
  q->s = cp_session_get(s);
  q->deadline_ms = mono_ms() + SENTINEL_TIMEOUT_MS;
  int rc = q->r ? 0 : CP_ENOMEM;
  if (!rc && N.spass_len) {
    const char *argv[] = {"AUTH", (const char *)N.spass};
    size_t lens[] = {4, N.spass_len};
    rc = cl_redis_command(q->r, 2, argv, lens, sq_auth, q);
  }
  if (!rc) {
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", N.url.master};
    size_t lens[] = {8, 23, N.url.master_len};
    rc = cl_redis_command(q->r, 3, argv, lens, sq_reply, q);
  }
  if (rc)
    sq_close(q);
  pthread_mutex_unlock(&l->mu);
  if (!rc)
    cp_jobq_post_after(N.q, SENTINEL_TIMEOUT_MS, sq_timeout, l);
}

static void sq_raw(cp_session *s, const void *data, size_t len) {
  struct squery *q = cp_session_user(s);
  pthread_mutex_lock(&q->l->mu);
  cl_redis *r = q->r;
  pthread_mutex_unlock(&q->l->mu);
  if (r && cl_redis_feed(r, data, len) < 0) {
    pthread_mutex_lock(&q->l->mu);
    if (!q->why[0])
      snprintf(q->why, sizeof q->why, "%s", cl_redis_error(r));
    sq_close(q);
    pthread_mutex_unlock(&q->l->mu);
  }
}

/* The tick's check: a sentinel named master shown; a link up on another one is closed (both). */
static void check_master(const char *shown) {
  struct link *both[] = {&N.cmd, &N.sub};
  for (int i = 0; i < 2; i++) {
    struct link *x = both[i];
    pthread_mutex_lock(&x->mu);
    bool other = x->s && strcmp(x->mshown, shown) != 0;
    pthread_mutex_unlock(&x->mu);
    if (other) {
      char why[160];
      snprintf(why, sizeof why, "the sentinels name another master (%s)", shown);
      master_lost(x, why);
      return;
    }
  }
}

/* The question is over (its session closed): the master connected to, or the next sentinel, or
 * (a whole round failed) the back-off. From a job: its state is freed here. */
static void sq_done(void *arg) {
  struct squery *q = arg;
  struct link *l = q->l;
  if (q->r)
    lost_free(l, q->r, "the sentinel's session ended");
  pthread_mutex_lock(&l->mu);
  l->sq = NULL;
  l->attempt_ms = 0;
  bool next = false, log = false;
  unsigned fails = 0;
  if (q->answered) {
    snprintf(l->maddr, sizeof l->maddr, "%s", q->ip);
    l->mport = q->port;
    snprintf(l->mshown, sizeof l->mshown, strchr(q->ip, ':') ? "[%s]:%u" : "%s:%u", q->ip, q->port);
    l->sq_tried = 0;
  } else if (++l->sq_tried < N.url.nsentinels) {
    next = true;
    l->sq_i = (l->sq_i + 1) % N.url.nsentinels;
  } else {
    l->sq_tried = 0;
    fails = ++l->fails;
  }
  if (!q->answered) { /* rate-limited as failed attempts are */
    uint64_t now = mono_ms();
    log = l->fails <= 1 || now - l->fail_log_ms >= FAIL_LOG_MS;
    if (log && !next)
      l->fail_log_ms = now;
  }
  char shown[80];
  snprintf(shown, sizeof shown, "%s", l->mshown);
  pthread_mutex_unlock(&l->mu);
  bool stopping = atomic_load(&N.stopping);
  if (q->answered) {
    atomic_fetch_add(&node_stats.sentinel_lookups, 1);
    atomic_store(&N.sent_first, q->i);
    pthread_mutex_lock(&N.master_mu);
    bool changed = strcmp(N.master, shown) != 0;
    char was[sizeof N.master];
    memcpy(was, N.master, sizeof was);
    if (changed)
      memcpy(N.master, shown, sizeof N.master);
    pthread_mutex_unlock(&N.master_mu);
    if (changed && was[0])
      atomic_fetch_add(&node_stats.master_changes, 1);
    if (changed && !stopping)
      nlog("sentinel %s: the master of '%s' is %s%s%s%s", N.sshown[q->i], N.url.master, shown,
           was[0] ? " (it was " : "", was, was[0] ? ": a new master)" : "");
  } else {
    atomic_fetch_add(&node_stats.sentinel_failures, 1);
    if (log && !stopping)
      nlog("%s connection: sentinel %s: %s%s", l->what, N.sshown[q->i],
           q->why[0] ? q->why : "cannot connect", next ? "; asking the next sentinel" : "");
    if (!next && log && !stopping && l != &N.chk)
      nlog("%s connection: no sentinel named the master of '%s' (round %u); requests get "
           "ERR_UNAVAILABLE; asking again with back-off",
           l->what, N.url.master, fails);
  }
  bool answered = q->answered;
  free(q);
  if (stopping)
    return;
  if (l == &N.chk) { /* a check: no connection; a next sentinel at once, else the next tick */
    if (answered)
      check_master(shown);
    else if (next)
      sentinel_ask(l);
    return;
  }
  if (answered)
    master_connect(l);
  else if (next)
    sentinel_ask(l);
  else
    schedule_reconnect(l, false);
}

static void sq_disconnected(cp_session *s, cp_reason why) {
  struct squery *q = cp_session_user(s);
  struct link *l = q->l;
  pthread_mutex_lock(&l->mu);
  cp_session *held = q->s;
  q->s = NULL;
  if (!q->answered && !q->why[0])
    snprintf(q->why, sizeof q->why, "%s (%s)",
             held ? "closed before it answered" : "cannot connect", cp_reason_name(why));
  pthread_mutex_unlock(&l->mu);
  if (held)
    cp_session_put(held);
  /* from a job: on_disconnected may run nested in a command sent under l->mu */
  if (cp_jobq_post(N.q, sq_done, q) != 0) { /* stopping */
    if (q->r)
      lost_free(l, q->r, "stopping");
    pthread_mutex_lock(&l->mu);
    l->sq = NULL;
    pthread_mutex_unlock(&l->mu);
    free(q);
  }
}

/* Ask sentinel l->sq_i for the master (a new question on a new session). */
static void sentinel_ask(struct link *l) {
  struct squery *q = calloc(1, sizeof *q);
  if (!q) {
    nlog("%s connection: out of memory asking Sentinel", l->what);
    schedule_reconnect(l, false);
    return;
  }
  pthread_mutex_lock(&l->mu);
  assert(!l->sq && l->sq_i < N.url.nsentinels);
  if (l->sq_tried == 0) { /* a new round: from the sentinel that answered last */
    l->sq_i = atomic_load(&N.sent_first) % N.url.nsentinels;
    l->gen = atomic_load(&N.mgen);
  }
  q->l = l;
  q->i = l->sq_i;
  l->sq = q;
  l->attempt_ms = mono_ms();
  l->stuck_logged = false;
  pthread_mutex_unlock(&l->mu);
  cp_session_callbacks cb = {
      .on_connected = sq_connected, .on_raw = sq_raw, .on_disconnected = sq_disconnected};
  cp_connect_options o = {.host = N.saddr[q->i],
                          .port = N.url.sentinels[q->i].port,
                          .raw = true,
                          .connect_timeout_ms = SENTINEL_TIMEOUT_MS,
                          .callbacks = cb,
                          .user = q};
  int rc = cp_service_connect_to(N.svc, &o, NULL);
  if (rc) {
    snprintf(q->why, sizeof q->why, "cannot connect: %s", cp_strerror(rc));
    if (cp_jobq_post(N.q, sq_done, q) != 0) {
      pthread_mutex_lock(&l->mu);
      l->sq = NULL;
      pthread_mutex_unlock(&l->mu);
      free(q);
    }
  }
}

/* A possible failover (READONLY, or an up connection lost): both links reconnect through
 * Sentinel. Once per master generation: the connections of the generation l's belongs to are
 * closed; the losses that causes (or one of a newer generation) change nothing more. */
static void master_lost(struct link *l, const char *why) {
  pthread_mutex_lock(&l->mu);
  uint64_t g = l->gen;
  pthread_mutex_unlock(&l->mu);
  if (!atomic_compare_exchange_strong(&N.mgen, &g, g + 1) || atomic_load(&N.stopping))
    return;
  nlog("%s connection: %s: asking Sentinel for the master again (both connections)", l->what, why);
  struct link *both[] = {&N.cmd, &N.sub};
  for (int i = 0; i < 2; i++) {
    struct link *x = both[i];
    pthread_mutex_lock(&x->mu);
    if (x->s && x->gen <= g)
      cp_session_disconnect(x->s, false);
    pthread_mutex_unlock(&x->mu);
  }
}

static void link_connect(struct link *l) {
  if (N.sentinel)
    sentinel_ask(l);
  else
    master_connect(l);
}

static void link_init(struct link *l, const char *what, cl_redis_mode mode) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&l->mu, &a);
  pthread_mutexattr_destroy(&a);
  l->what = what;
  l->mode = mode;
}

/* ---- commands ------------------------------------------------------------ */

bool node_available(void) {
  return atomic_load(&N.cmd.ready) && atomic_load(&N.sub.ready);
}

bool node_commands_available(void) {
  return atomic_load(&N.cmd.ready);
}

bool node_wait_available(unsigned ms) {
  for (unsigned t = 0; !node_available() && t < ms; t += 10)
    usleep(10000);
  return node_available();
}

const char *node_name(size_t *len) {
  *len = N.name_len;
  return N.name;
}

int node_room_event(cl_event_req *req, cl_publish_fn fn, void *arg) {
  req->node = N.name;
  req->node_len = N.name_len;
  pthread_mutex_lock(&N.cmd.mu);
  int rc = N.cmd.r && atomic_load(&N.cmd.ready) ? cl_room_event(N.cmd.r, &N.scripts, req, fn, arg)
                                                : -ENOTCONN;
  pthread_mutex_unlock(&N.cmd.mu);
  if (!rc)
    atomic_fetch_add(&node_stats.publishes, 1);
  return rc;
}

int node_subscribe(const void *room, size_t len, bool subscribe, cl_reply_fn fn, void *arg) {
  char ch[CL_ROOM_KEY_MAX];
  size_t n = cl_room_key(ch, CL_KEY_CHANNEL, room, len);
  if (!n)
    return -EINVAL;
  const char *argv[] = {subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE", ch};
  size_t lens[] = {subscribe ? 9u : 11u, n};
  pthread_mutex_lock(&N.sub.mu);
  int rc = N.sub.r ? cl_redis_command(N.sub.r, 2, argv, lens, fn, arg) : -ENOTCONN;
  pthread_mutex_unlock(&N.sub.mu);
  return rc;
}

int node_xrange(const void *room, size_t len, uint64_t from, uint64_t to, cl_reply_fn fn,
                void *arg) {
  char k[CL_ROOM_KEY_MAX], a[32], b[32];
  size_t n = cl_room_key(k, CL_KEY_STREAM, room, len);
  if (!n)
    return -EINVAL;
  int al = snprintf(a, sizeof a, "%" PRIu64 "-0", from);
  int bl =
      to == UINT64_MAX ? snprintf(b, sizeof b, "+") : snprintf(b, sizeof b, "%" PRIu64 "-0", to);
  const char *argv[] = {"XRANGE", k, a, b};
  size_t lens[] = {6, n, (size_t)al, (size_t)bl};
  pthread_mutex_lock(&N.cmd.mu);
  int rc = N.cmd.r ? cl_redis_command(N.cmd.r, 4, argv, lens, fn, arg) : -ENOTCONN;
  pthread_mutex_unlock(&N.cmd.mu);
  if (!rc)
    atomic_fetch_add(&node_stats.gap_reads, 1);
  return rc;
}

int node_room_epoch(const void *room, size_t len, cl_reply_fn fn, void *arg) {
  char k[CL_ROOM_KEY_MAX];
  size_t n = cl_room_key(k, CL_KEY_META, room, len);
  if (!n)
    return -EINVAL;
  const char *argv[] = {"HGET", k, "e"};
  size_t lens[] = {4, n, 1};
  pthread_mutex_lock(&N.cmd.mu);
  int rc = N.cmd.r ? cl_redis_command(N.cmd.r, 3, argv, lens, fn, arg) : -ENOTCONN;
  pthread_mutex_unlock(&N.cmd.mu);
  return rc;
}

/* ---- heartbeat and the sweep of dead nodes ------------------------------- */

/* arg: mono_ms() when the heartbeat was sent. */
static void hb_done(void *arg, const char *err) {
  static _Atomic uint64_t logged_ms;
  uint64_t now = mono_ms(), rtt = now - (uint64_t)(uintptr_t)arg;
  if (!err && rtt > HEARTBEAT_SLOW_MS) {
    atomic_fetch_add(&node_stats.heartbeats_slow, 1);
    if (log_due(&logged_ms, now))
      nlog("a heartbeat took %" PRIu64 " ms (deadline %u ms; a node past it is swept only once "
           "its subscriber connection is gone, or %u ms later)",
           rtt, HEARTBEAT_TTL_MS, SWEEP_GRACE_MS);
  }
  if (err) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("%s", err);
  }
}

struct dead {
  size_t len;
  char name[];
};

static void sweep_leave_done(void *arg, const cl_publish_result *res, const char *err) {
  (void)arg;
  if (!res) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("sweep: a leave failed: %s", err);
  } else if (res->offset > 0) {
    atomic_fetch_add(&node_stats.swept_members, 1);
  }
}

/* The leave event of a player (chat.c's encoding: op, id, time). */
static size_t leave_event(uint8_t *out, uint64_t player) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
  out[0] = CL_OP_LEAVE;
  for (int i = 0; i < 8; i++) {
    out[1 + i] = (uint8_t)(player >> (8 * i));
    out[9 + i] = (uint8_t)(now >> (8 * i));
  }
  return 17;
}

/* ---- leaves that failed during an outage -------------------------------- */

/* Keep a leave (again) for the next time the command connection is up. */
static void owed_keep(struct owed *o) {
  pthread_mutex_lock(&N.owed_mu);
  o->next = N.owed;
  N.owed = o;
  N.nowed++;
  pthread_mutex_unlock(&N.owed_mu);
}

bool node_leave_later(uint64_t player, const void *room, size_t len) {
  struct owed *o = len <= CL_ROOM_MAX ? malloc(sizeof *o + len) : NULL;
  pthread_mutex_lock(&N.owed_mu);
  bool ok = o && N.nowed < OWED_MAX;
  pthread_mutex_unlock(&N.owed_mu);
  if (ok) {
    o->player = player;
    o->len = len;
    memcpy(o->room, room, len);
    owed_keep(o);
  } else {
    free(o);
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("player %" PRIu64 "'s leave cannot be kept for a re-send: it stays a member in Redis "
         "until this node is swept or the room expires",
         player);
  }
  if (ok && node_commands_available())
    resend_leaves(); /* the connection came back meanwhile */
  return ok;
}

static void resent(void *arg, const cl_publish_result *res, const char *err) {
  struct owed *o = arg;
  (void)err;
  if (!res) { /* lost again with the connection: kept for the next time */
    owed_keep(o);
    return;
  }
  if (res->offset > 0)
    atomic_fetch_add(&node_stats.leaves_resent_published, 1);
  free(o);
}

/* The command connection is up: re-send the leaves that failed (oldest first). */
static void resend_leaves(void) {
  pthread_mutex_lock(&N.owed_mu);
  struct owed *list = NULL;
  size_t n = N.nowed;
  while (N.owed) { /* reversed: oldest first */
    struct owed *o = N.owed;
    N.owed = o->next;
    o->next = list;
    list = o;
  }
  N.nowed = 0;
  pthread_mutex_unlock(&N.owed_mu);
  if (!list)
    return;
  nlog("re-sending %zu leaves that failed while Redis was unreachable", n);
  while (list) {
    struct owed *o = list;
    list = o->next;
    uint8_t ev[17];
    cl_event_req q = {.op = CL_OP_LEAVE,
                      .player = o->player,
                      .room = o->room,
                      .room_len = o->len,
                      .event = ev,
                      .event_len = leave_event(ev, o->player),
                      .stream_max = NODE_STREAM_MAX,
                      .idle_ttl_s = NODE_IDLE_TTL_S};
    if (node_room_event(&q, resent, o) != 0) { /* down again: kept, the rest too */
      owed_keep(o);
      while (list) {
        struct owed *x = list;
        list = x->next;
        owed_keep(x);
      }
      return;
    }
    atomic_fetch_add(&node_stats.leaves_resent, 1);
  }
}

static void sweep_members(void *arg, redisReply *r, const char *err) {
  struct dead *d = arg;
  if (!r || r->type != REDIS_REPLY_ARRAY) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("sweep of node '%.*s': %s", (int)d->len, d->name, r ? cl_redis_reply_kind(r) : err);
  } else {
    nlog("node '%.*s' is dead (no heartbeat): its %zu members leave their rooms", (int)d->len,
         d->name, r->elements);
    pthread_mutex_lock(&N.cmd.mu);
    for (size_t i = 0; N.cmd.r && i < r->elements; i++) {
      uint64_t player;
      uint8_t room[CL_ROOM_MAX], ev[17];
      size_t room_len;
      const redisReply *e = r->element[i];
      if (e->type != REDIS_REPLY_STRING ||
          !cl_node_entry_decode(e->str, e->len, &player, room, &room_len)) {
        atomic_fetch_add(&node_stats.bad_messages, 1);
        continue;
      }
      cl_event_req q = {.op = CL_OP_LEAVE,
                        .player = player,
                        .room = room,
                        .room_len = room_len,
                        .event = ev,
                        .event_len = leave_event(ev, player),
                        .node = d->name,
                        .node_len = d->len,
                        .stream_max = NODE_STREAM_MAX,
                        .idle_ttl_s = NODE_IDLE_TTL_S};
      cl_room_event(N.cmd.r, &N.scripts, &q, sweep_leave_done, NULL);
    }
    /* after the leaves (one connection: FIFO) */
    if (N.cmd.r && cl_node_forget(N.cmd.r, d->name, d->len, NULL, NULL) == 0)
      atomic_fetch_add(&node_stats.swept_nodes, 1);
    pthread_mutex_unlock(&N.cmd.mu);
  }
  if (r)
    freeReplyObject(r);
  free(d);
}

/* Nodes past their deadline that the claim spared (their subscriber
 * connection is open): (name, ms past the deadline) pairs. Counted; logged
 * at most every 10 s. */
static void spared(const redisReply *a) {
  static _Atomic uint64_t logged_ms; /* claimed() runs on the command connection's strand */
  for (size_t i = 0; i + 1 < a->elements; i += 2) {
    const redisReply *name = a->element[i], *over = a->element[i + 1];
    if (name->type != REDIS_REPLY_STRING || over->type != REDIS_REPLY_INTEGER)
      continue;
    atomic_fetch_add(&node_stats.spared_nodes, 1);
    if (log_due(&logged_ms, mono_ms())) {
      nlog("node '%.*s' is %lld ms past its heartbeat deadline but still connected to Redis: "
           "not taken for dead (for up to %u ms)",
           (int)(name->len < 200 ? name->len : 200), name->str, over->integer, SWEEP_GRACE_MS);
    }
  }
}

static void claimed(void *arg, redisReply *r, const char *err) {
  (void)arg;
  if (!r || r->type != REDIS_REPLY_ARRAY) {
    if (r || !atomic_load(&N.stopping)) {
      atomic_fetch_add(&node_stats.redis_errors, 1);
      nlog("claiming dead nodes: %s", r ? cl_redis_reply_kind(r) : err);
    }
  } else if (r->elements != 2 || r->element[0]->type != REDIS_REPLY_ARRAY ||
             r->element[1]->type != REDIS_REPLY_ARRAY) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("claiming dead nodes: a reply of an unknown shape");
  } else {
    spared(r->element[1]);
    const redisReply *dead = r->element[0];
    for (size_t i = 0; i < dead->elements; i++) {
      const redisReply *e = dead->element[i];
      if (e->type != REDIS_REPLY_STRING || e->len > CL_ROOM_MAX)
        continue;
      struct dead *d = malloc(sizeof *d + e->len);
      if (!d)
        continue;
      d->len = e->len;
      memcpy(d->name, e->str, e->len);
      char key[16 + 2 * CL_ROOM_MAX];
      size_t kl = cl_node_key(key, d->name, d->len);
      const char *argv[] = {"SMEMBERS", key};
      size_t lens[] = {8, kl};
      pthread_mutex_lock(&N.cmd.mu);
      int rc = N.cmd.r ? cl_redis_command(N.cmd.r, 2, argv, lens, sweep_members, d) : -ENOTCONN;
      pthread_mutex_unlock(&N.cmd.mu);
      if (rc)
        free(d);
    }
  }
  if (r)
    freeReplyObject(r);
}

/* Tick: a connection with commands pending that received nothing for
 * REPLY_TIMEOUT_S ticks is given up (a Redis that accepts and never answers). */
#define REPLY_TIMEOUT_S 5
static void check_stall(struct link *l) {
  pthread_mutex_lock(&l->mu);
  uint64_t f = atomic_load(&l->feeds);
  bool waiting = l->r && cl_redis_pending(l->r) > 0 && l->mode == CL_REDIS_COMMANDS;
  l->stalled = waiting && f == l->feeds_seen ? l->stalled + 1 : 0;
  l->feeds_seen = f;
  bool cut = l->stalled >= REPLY_TIMEOUT_S && l->s;
  if (cut) {
    l->stalled = 0;
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("%s connection: no reply for %d s; reconnecting", l->what, REPLY_TIMEOUT_S);
    cp_session_disconnect(l->s, false);
  }
  pthread_mutex_unlock(&l->mu);
}

/* Tick: the reconnect loop of a link that is down must move: an attempt
 * ends within its connect timeout, a scheduled one starts within the
 * back-off. One that does not is logged, once (it would be an engine bug). */
#define STUCK_SLACK_MS 5000u
static void check_loop(struct link *l) {
  pthread_mutex_lock(&l->mu);
  uint64_t now = mono_ms();
  const char *what = NULL;
  uint64_t since = 0;
  if (l->attempt_ms && now - l->attempt_ms > CONNECT_TIMEOUT_MS + STUCK_SLACK_MS) {
    what = "a connect attempt has had no outcome";
    since = l->attempt_ms;
  } else if (l->scheduled_ms && now - l->scheduled_ms > BACKOFF_MAX_MS + STUCK_SLACK_MS) {
    what = "a scheduled reconnect has not started";
    since = l->scheduled_ms;
  }
  bool log = what && !l->stuck_logged && !atomic_load(&N.stopping);
  if (log)
    l->stuck_logged = true;
  pthread_mutex_unlock(&l->mu);
  if (log) {
    atomic_fetch_add(&node_stats.redis_errors, 1);
    nlog("%s connection: %s for %" PRIu64 " ms", l->what, what, now - since);
  }
}

static void tick(void *arg) {
  (void)arg;
  check_loop(&N.cmd);
  check_loop(&N.sub);
  check_stall(&N.cmd);
  if (N.sentinel && node_available() && !atomic_load(&N.stopping)) {
    pthread_mutex_lock(&N.chk.mu);
    bool busy = N.chk.sq != NULL;
    if (!busy)
      N.chk.sq_tried = 0;
    pthread_mutex_unlock(&N.chk.mu);
    if (!busy)
      sentinel_ask(&N.chk);
  }
  if (atomic_load(&N.timers_off) || !atomic_load(&N.cmd.ready))
    return;
  pthread_mutex_lock(&N.cmd.mu);
  if (N.cmd.r) {
    cl_node_heartbeat(N.cmd.r, N.name, N.name_len, HEARTBEAT_TTL_MS, hb_done,
                      (void *)(uintptr_t)mono_ms());
    if (mono_ms() >= atomic_load(&N.claim_after_ms))
      cl_nodes_claim_dead(N.cmd.r, 4, SWEEP_LEASE_MS, SWEEP_GRACE_MS, claimed, NULL);
  }
  pthread_mutex_unlock(&N.cmd.mu);
}

/* ---- start and stop ------------------------------------------------------ */

/* "cport-server: --cluster URL: " (the password as ***) and then what. */
static void start_error(const char *fmt, ...) APPS_PRINTF(1, 2);
static void start_error(const char *fmt, ...) {
  char head[sizeof N.shown + 16];
  snprintf(head, sizeof head, "--cluster %s: ", N.shown);
  va_list ap;
  va_start(ap, fmt);
  vlog(head, fmt, ap);
  va_end(ap);
}

/* host's addresses into out (every IPv4 and IPv6 one getaddrinfo gives, in its order, at
 * most max, numeric; *n of them). 0 or CP_EINVAL (said why). Blocks on DNS: at start only. */
static int resolve(const char *host, bool ipv6, char (*out)[64], unsigned max, unsigned *n) {
  struct addrinfo hints = {.ai_family = ipv6 ? AF_INET6 : AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = ipv6 ? AI_NUMERICHOST : 0},
                  *res = NULL;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc) {
    start_error("cannot resolve '%s': %s", host, gai_strerror(rc));
    return CP_EINVAL;
  }
  *n = 0;
  for (struct addrinfo *ai = res; ai && *n < max; ai = ai->ai_next) {
    char ip[64];
    if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
        getnameinfo(ai->ai_addr, (socklen_t)ai->ai_addrlen, ip, sizeof ip, NULL, 0,
                    NI_NUMERICHOST) != 0)
      continue;
    bool seen = false;
    for (unsigned i = 0; i < *n; i++)
      seen = seen || !strcmp(out[i], ip);
    if (!seen)
      memcpy(out[(*n)++], ip, sizeof ip);
  }
  freeaddrinfo(res);
  if (!*n) {
    start_error("'%s' has no IPv4 or IPv6 address", host);
    return CP_EINVAL;
  }
  return 0;
}

/* Sentinel: each sentinel's address (the first its HOST resolves to) and CPORT_SENTINEL_PASSWORD
 * into N; logged. 0 or CP_EINVAL (said why). */
static int configure_sentinels(void) {
  N.sentinel = true;
  const char *env = getenv("CPORT_SENTINEL_PASSWORD");
  if (env && *env) {
    size_t n = strlen(env);
    if (n > sizeof N.spass) {
      start_error("CPORT_SENTINEL_PASSWORD is longer than %zu bytes", sizeof N.spass);
      return CP_EINVAL;
    }
    memcpy(N.spass, env, n);
    N.spass_len = n;
  }
  char list[CLI_SENTINEL_MAX * 80] = "";
  for (unsigned i = 0, at = 0; i < N.url.nsentinels; i++) {
    const struct cli_sentinel *t = &N.url.sentinels[i];
    unsigned one;
    int rc = resolve(t->host, t->ipv6, &N.saddr[i], 1, &one);
    if (rc)
      return rc;
    snprintf(N.sshown[i], sizeof N.sshown[i], t->ipv6 ? "[%s]:%u" : "%s:%u", t->host, t->port);
    at += (unsigned)snprintf(list + at, sizeof list - at, "%s%s (%s)", i ? ", " : "", N.sshown[i],
                             N.saddr[i]);
  }
  snprintf(N.where, sizeof N.where, "master '%s'", N.url.master);
  nlog("redis %s (Sentinel, master '%s'; %s; %s%s; sentinels %s), sentinels: %s", N.shown,
       N.url.master, N.url.has_pass ? "AUTH" : "no password",
       N.url.has_user ? "ACL user" : "default user",
       N.url.has_pass && !strstr(N.shown, "***") ? ", password from CPORT_CLUSTER_PASSWORD" : "",
       N.spass_len ? "with AUTH (CPORT_SENTINEL_PASSWORD)" : "without a password", list);
  return 0;
}

/* The URL, the password (the URL's, else CPORT_CLUSTER_PASSWORD) and HOST's addresses into N.
 * 0 or CP_EINVAL (said why, without the password). */
static int configure(const char *url) {
  cli_redis_url_masked(url, N.shown, sizeof N.shown);
  const char *why;
  if (!cli_redis_url_parse(url, &N.url, &why)) {
    start_error("%s", why);
    return CP_EINVAL;
  }
  const char *env = getenv("CPORT_CLUSTER_PASSWORD");
  bool from_env = !N.url.has_pass && env && *env;
  if (from_env) {
    size_t n = strlen(env);
    if (n > sizeof N.url.pass) {
      start_error("CPORT_CLUSTER_PASSWORD is longer than %zu bytes", sizeof N.url.pass);
      return CP_EINVAL;
    }
    memcpy(N.url.pass, env, n);
    N.url.pass_len = n;
    N.url.has_pass = true;
  }
  if (N.url.has_user && !N.url.has_pass) {
    start_error("USER needs a PASSWORD (redis://USER:PASSWORD@... or CPORT_CLUSTER_PASSWORD)");
    return CP_EINVAL;
  }
  if (N.url.nsentinels)
    return configure_sentinels();
  snprintf(N.where, sizeof N.where, N.url.ipv6 ? "[%s]:%u" : "%s:%u", N.url.host, N.url.port);
  int rc = resolve(N.url.host, N.url.ipv6, N.addr, ADDR_MAX, &N.naddr);
  if (rc)
    return rc;
  char list[ADDR_MAX * 66] = "";
  for (unsigned i = 0, at = 0; i < N.naddr; i++)
    at += (unsigned)snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "", N.addr[i]);
  nlog("redis %s (%s; %s%s), addresses kept from now: %s", N.shown,
       N.url.has_pass ? "AUTH" : "no password", N.url.has_user ? "ACL user" : "default user",
       from_env ? ", password from CPORT_CLUSTER_PASSWORD" : "", list);
  return 0;
}

int node_start(cp_service *svc, const char *url, const char *name, size_t len,
               const node_hooks *hooks) {
  if (len > sizeof N.name || len == 0) {
    fprintf(stderr, "cport-server: --node-name: 1 to %zu bytes\n", sizeof N.name);
    return CP_EINVAL;
  }
  int rc = configure(url);
  if (rc)
    return rc;
  memcpy(N.name, name, len);
  N.name_len = len;
  N.svc = svc;
  N.hooks = *hooks;
  cl_scripts_init(&N.scripts);
  pthread_mutex_init(&N.ids_mu, NULL);
  pthread_mutex_init(&N.owed_mu, NULL);
  pthread_mutex_init(&N.master_mu, NULL);
  link_init(&N.cmd, "command", CL_REDIS_COMMANDS);
  link_init(&N.sub, "subscriber", CL_REDIS_SUBSCRIBER);
  link_init(&N.chk, "sentinel check", CL_REDIS_COMMANDS);
  if (!(N.q = cp_jobq_create(svc)))
    return CP_ENOMEM;
  rc = cp_timer_start(&N.tick, N.q, 1000, 1000, tick, NULL);
  if (rc)
    return rc;
  link_connect(&N.cmd);
  link_connect(&N.sub);
  return 0;
}

void node_stop_timers(void) {
  atomic_store(&N.timers_off, true);
  atomic_store(&N.stopping, true); /* no reconnect from here on */
}

static void forgotten(void *arg, redisReply *r, const char *err) {
  (void)err;
  atomic_store((_Atomic bool *)arg, true);
  if (r)
    freeReplyObject(r);
}

void node_forget(unsigned ms) {
  static _Atomic bool done;
  pthread_mutex_lock(&N.cmd.mu);
  int rc =
      N.cmd.r ? cl_node_forget(N.cmd.r, N.name, N.name_len, forgotten, (void *)&done) : -ENOTCONN;
  pthread_mutex_unlock(&N.cmd.mu);
  for (unsigned t = 0; !rc && !atomic_load(&done) && t < ms; t += 10)
    usleep(10000);
}

static void link_free(struct link *l) {
  cl_redis_destroy(l->r); /* after cp_service_stop: normally NULL (on_disconnected ran) */
  cl_redis_destroy(l->hs);
  l->r = l->hs = NULL;
}

void node_shutdown(void) {
  atomic_store(&N.stopping, true);
  cp_timer_cancel(&N.tick);
  cp_jobq_destroy(N.q);
  N.q = NULL;
  link_free(&N.cmd);
  link_free(&N.sub);
}

/* ---- metrics ------------------------------------------------------------- */

void node_note_lag(uint64_t lag_us) {
  static const uint64_t le[] = {1000, 2000, 5000, 10000, 50000, 100000, 500000};
  size_t b = 0;
  while (b < 7 && lag_us > le[b])
    b++;
  atomic_fetch_add(&node_stats.lag_bucket[b], 1);
  atomic_fetch_add(&node_stats.lag_count, 1);
  atomic_fetch_add(&node_stats.lag_sum_us, lag_us);
}

void node_metrics(FILE *f) {
#define C(name, help, v)                                                                           \
  fprintf(f,                                                                                       \
          "# HELP cport_cluster_" name "_total " help "\n# TYPE cport_cluster_" name               \
          "_total counter\ncport_cluster_" name "_total %" PRIu64 "\n",                            \
          (uint64_t)atomic_load(&(v)))
  C("publishes", "Room events this node published (room script runs).", node_stats.publishes);
  C("deliveries", "Room events delivered from the cluster to this node's members.",
    node_stats.deliveries);
  C("gap_recoveries", "Ranges read from a room's stream (a gap, a resync).", node_stats.gap_reads);
  C("gap_lost", "Events older than a room's capped stream: lost to this node.",
    node_stats.gap_lost);
  C("epoch_changes", "Rooms whose state was lost in Redis (a new epoch).",
    node_stats.epoch_changes);
  C("bad_messages", "Channel messages or stream entries that do not decode.",
    node_stats.bad_messages);
  C("redis_reconnects", "Redis connections re-established.", node_stats.reconnects);
  C("unavailable", "Requests answered ERR_UNAVAILABLE (Redis unreachable).",
    node_stats.unavailable);
  C("redis_errors", "Redis error replies and failed commands.", node_stats.redis_errors);
  C("swept_nodes", "Dead nodes this node cleaned.", node_stats.swept_nodes);
  C("swept_members", "Members of dead nodes this node removed from rooms.",
    node_stats.swept_members);
  C("spared_nodes", "Nodes past their heartbeat deadline not taken for dead (still connected).",
    node_stats.spared_nodes);
  C("heartbeats_slow", "This node's heartbeats that took over a second.",
    node_stats.heartbeats_slow);
  C("leaves_resent", "Leaves re-sent after they failed while Redis was unreachable.",
    node_stats.leaves_resent);
  C("leaves_resent_published", "Re-sent leaves that removed a member (S_MEMBER_LEFT).",
    node_stats.leaves_resent_published);
  C("auth_failures",
    "Redis connections whose AUTH (or first PING) was refused: WRONGPASS, NOAUTH, no password set.",
    node_stats.auth_failures);
  C("sentinel_lookups", "Masters' addresses a sentinel gave (one per connect through Sentinel).",
    node_stats.sentinel_lookups);
  C("sentinel_failures", "Sentinels asked that named no master (down, silent, unknown name).",
    node_stats.sentinel_failures);
  C("master_changes", "Times a sentinel named another master than the one before (failovers).",
    node_stats.master_changes);
  C("not_master", "Connections refused because ROLE said the server is not a master.",
    node_stats.not_master);
  C("readonly", "READONLY replies (a demoted master): both connections re-asked Sentinel.",
    node_stats.readonly);
#undef C
  fprintf(f, "# HELP cport_cluster_redis_info The node's Redis (the password as ***).\n"
             "# TYPE cport_cluster_redis_info gauge\ncport_cluster_redis_info{url=\"");
  for (const char *c = N.shown; *c; c++) /* a label value: \, " and newline escaped */
    if (*c == '\n')
      fputs("\\n", f);
    else
      fprintf(f, "%s%c", *c == '\\' || *c == '"' ? "\\" : "", *c);
  fprintf(f, "\"} 1\n");
  fprintf(f,
          "# HELP cport_cluster_up Both Redis connections are up.\n"
          "# TYPE cport_cluster_up gauge\ncport_cluster_up %d\n",
          node_available() ? 1 : 0);
  static const char *const le[] = {"0.001", "0.002", "0.005", "0.01", "0.05", "0.1", "0.5", "+Inf"};
  fprintf(f, "# HELP cport_cluster_delivery_lag_seconds Publish-to-delivery lag of room events "
             "(publisher's clock to this node's).\n"
             "# TYPE cport_cluster_delivery_lag_seconds histogram\n");
  uint64_t cum = 0;
  for (int i = 0; i < 8; i++) {
    cum += atomic_load(&node_stats.lag_bucket[i]);
    fprintf(f, "cport_cluster_delivery_lag_seconds_bucket{le=\"%s\"} %" PRIu64 "\n", le[i], cum);
  }
  fprintf(f,
          "cport_cluster_delivery_lag_seconds_sum %.6f\n"
          "cport_cluster_delivery_lag_seconds_count %" PRIu64 "\n",
          (double)atomic_load(&node_stats.lag_sum_us) / 1e6, cum);
}
