/* redis_conn.c - see redis_conn.h. */
#define _XOPEN_SOURCE 700 /* pthread_mutexattr_settype */
#include "redis_conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pending {
  cl_reply_fn fn;
  void *arg;
  size_t expect; /* replies this command gets: 1, or one per channel for (un)subscribe */
};

struct cl_redis {
  pthread_mutex_t lock; /* q, head/count, closed, write order */
  cl_redis_mode mode;
  cl_write_fn write;
  void *io;
  cl_message_fn on_message;
  void *msg_arg;
  redisReader *reader; /* only cl_redis_feed's caller touches it */
  struct pending *q;   /* ring */
  size_t cap, head, count;
  bool closed;
  size_t noauth;   /* NOAUTH error replies (under lock) */
  size_t readonly; /* READONLY error replies (under lock) */
  char err[160];
};

/* ASCII case-insensitive comparison of a length-delimited name with a literal. */
static bool name_is(const char *s, size_t len, const char *lit) {
  size_t n = strlen(lit);
  if (len != n)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (c != lit[i])
      return false;
  }
  return true;
}

static bool is_sub_cmd(const char *s, size_t len) {
  return name_is(s, len, "subscribe") || name_is(s, len, "unsubscribe") ||
         name_is(s, len, "psubscribe") || name_is(s, len, "punsubscribe");
}

cl_redis *cl_redis_create(cl_redis_mode mode, cl_write_fn write, void *io, cl_message_fn on_message,
                          void *msg_arg) {
  if (!write || (mode != CL_REDIS_COMMANDS && mode != CL_REDIS_SUBSCRIBER))
    return NULL;
  cl_redis *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->reader = redisReaderCreate();
  if (!c->reader) {
    free(c);
    return NULL;
  }
  /* Recursive: the write may end the connection inline (a session's
   * on_disconnected runs nested when cp_session_send is called on one of the
   * service's workers and the send fails), and that calls cl_redis_fail_all. */
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&c->lock, &ma);
  pthread_mutexattr_destroy(&ma);
  c->mode = mode;
  c->write = write;
  c->io = io;
  c->on_message = on_message;
  c->msg_arg = msg_arg;
  return c;
}

void cl_redis_destroy(cl_redis *c) {
  if (!c)
    return;
  cl_redis_fail_all(c, "connection closed");
  redisReaderFree(c->reader);
  pthread_mutex_destroy(&c->lock);
  free(c->q);
  free(c);
}

static int push_locked(cl_redis *c, cl_reply_fn fn, void *arg, size_t expect) {
  if (c->count == c->cap) {
    size_t ncap = c->cap ? c->cap * 2 : 16;
    struct pending *nq = malloc(ncap * sizeof *nq);
    if (!nq)
      return -ENOMEM;
    for (size_t i = 0; i < c->count; i++)
      nq[i] = c->q[(c->head + i) % c->cap];
    free(c->q);
    c->q = nq;
    c->cap = ncap;
    c->head = 0;
  }
  c->q[(c->head + c->count) % c->cap] = (struct pending){fn, arg, expect};
  c->count++;
  return 0;
}

int cl_redis_command(cl_redis *c, int argc, const char **argv, const size_t *argvlen,
                     cl_reply_fn fn, void *arg) {
  if (!c || argc < 1 || !argv || !argvlen)
    return -EINVAL;
  bool sub = is_sub_cmd(argv[0], argvlen[0]);
  size_t expect = 1;
  if (c->mode == CL_REDIS_SUBSCRIBER) {
    if (sub) {
      if (argc < 2) /* "unsubscribe from all" answers once per channel: name them */
        return -EINVAL;
      expect = (size_t)argc - 1;
    } else if (!name_is(argv[0], argvlen[0], "ping") && !name_is(argv[0], argvlen[0], "auth") &&
               !name_is(argv[0], argvlen[0], "role")) {
      return -EINVAL;
    }
  } else if (sub) {
    return -EINVAL;
  }
  char *cmd = NULL;
  int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
  if (len < 0)
    return -ENOMEM;
  pthread_mutex_lock(&c->lock);
  int rc = c->closed ? -ENOTCONN : push_locked(c, fn, arg, expect);
  if (!rc) {
    rc = c->write(c->io, cmd, (size_t)len);
    if (rc && c->closed)
      rc = 0;    /* the connection ended inside the write: fail_all already told fn */
    else if (rc) /* nothing went out: the entry just pushed is the last one */
      c->count--;
  }
  pthread_mutex_unlock(&c->lock);
  redisFreeCommand(cmd);
  return rc;
}

/* Take the oldest pending command if reply completes it. false: none pending. */
static bool pop_for(cl_redis *c, bool confirmation, struct pending *out, bool *done) {
  pthread_mutex_lock(&c->lock);
  bool ok = c->count > 0;
  if (ok) {
    struct pending *p = &c->q[c->head];
    *out = *p;
    *done = !confirmation || --p->expect == 0;
    if (*done) {
      c->head = (c->head + 1) % c->cap;
      c->count--;
    }
  }
  pthread_mutex_unlock(&c->lock);
  return ok;
}

static bool elem_is(const redisReply *r, size_t i, const char *lit) {
  return r->elements > i && r->element[i]->type == REDIS_REPLY_STRING &&
         name_is(r->element[i]->str, r->element[i]->len, lit);
}

static void protocol_error(cl_redis *c, const char *what) {
  char buf[sizeof c->err];
  snprintf(buf, sizeof buf, "redis protocol error: %s", what);
  cl_redis_fail_all(c, buf);
  pthread_mutex_lock(&c->lock);
  memcpy(c->err, buf, sizeof buf);
  pthread_mutex_unlock(&c->lock);
}

int cl_redis_feed(cl_redis *c, const void *data, size_t len) {
  pthread_mutex_lock(&c->lock);
  bool closed = c->closed;
  pthread_mutex_unlock(&c->lock);
  if (closed)
    return -EPROTO;
  if (redisReaderFeed(c->reader, data, len) != REDIS_OK) {
    protocol_error(c, c->reader->errstr);
    return -EPROTO;
  }
  for (;;) {
    void *v = NULL;
    if (redisReaderGetReply(c->reader, &v) != REDIS_OK) {
      protocol_error(c, c->reader->errstr);
      return -EPROTO;
    }
    if (!v)
      return 0;
    redisReply *r = v;
    bool confirmation = false;
    if (r->type == REDIS_REPLY_ERROR && r->len >= 6 && !memcmp(r->str, "NOAUTH", 6)) {
      pthread_mutex_lock(&c->lock);
      c->noauth++;
      pthread_mutex_unlock(&c->lock);
    }
    if (r->type == REDIS_REPLY_ERROR && r->len >= 8 && !memcmp(r->str, "READONLY", 8)) {
      pthread_mutex_lock(&c->lock);
      c->readonly++;
      pthread_mutex_unlock(&c->lock);
    }
    if (c->mode == CL_REDIS_SUBSCRIBER && r->type == REDIS_REPLY_ARRAY) {
      bool msg = r->elements == 3 && elem_is(r, 0, "message");
      bool pmsg = r->elements == 4 && elem_is(r, 0, "pmessage");
      if (msg || pmsg) {
        const redisReply *ch = r->element[pmsg ? 2 : 1], *d = r->element[pmsg ? 3 : 2];
        if (ch->type != REDIS_REPLY_STRING || d->type != REDIS_REPLY_STRING ||
            (pmsg && r->element[1]->type != REDIS_REPLY_STRING)) {
          freeReplyObject(r);
          protocol_error(c, "a pub/sub message that is not strings");
          return -EPROTO;
        }
        if (c->on_message)
          c->on_message(c->msg_arg, pmsg ? r->element[1]->str : NULL, pmsg ? r->element[1]->len : 0,
                        ch->str, ch->len, d->str, d->len);
        freeReplyObject(r);
        continue;
      }
      confirmation = elem_is(r, 0, "subscribe") || elem_is(r, 0, "unsubscribe") ||
                     elem_is(r, 0, "psubscribe") || elem_is(r, 0, "punsubscribe");
    }
    struct pending p;
    bool done;
    if (!pop_for(c, confirmation, &p, &done)) {
      freeReplyObject(r);
      protocol_error(c, "a reply to no command");
      return -EPROTO;
    }
    if (done && p.fn)
      p.fn(p.arg, r, NULL);
    else
      freeReplyObject(r);
  }
}

void cl_redis_fail_all(cl_redis *c, const char *err) {
  char why[sizeof c->err];
  snprintf(why, sizeof why, "%s", err ? err : "connection lost");
  for (;;) {
    pthread_mutex_lock(&c->lock);
    c->closed = true;
    struct pending p = {0};
    bool any = c->count > 0;
    if (any) {
      p = c->q[c->head];
      c->head = (c->head + 1) % c->cap;
      c->count--;
    }
    pthread_mutex_unlock(&c->lock);
    if (!any)
      return;
    if (p.fn)
      p.fn(p.arg, NULL, why);
  }
}

const char *cl_redis_error(const cl_redis *c) {
  return c->err;
}

size_t cl_redis_pending(cl_redis *c) {
  pthread_mutex_lock(&c->lock);
  size_t n = c->count;
  pthread_mutex_unlock(&c->lock);
  return n;
}

size_t cl_redis_noauth(cl_redis *c) {
  pthread_mutex_lock(&c->lock);
  size_t n = c->noauth;
  pthread_mutex_unlock(&c->lock);
  return n;
}

size_t cl_redis_readonly(cl_redis *c) {
  pthread_mutex_lock(&c->lock);
  size_t n = c->readonly;
  pthread_mutex_unlock(&c->lock);
  return n;
}

int cl_redis_session_write(void *io, const void *data, size_t len) {
  cp_sendbuf *b = cp_sendbuf_copy(data, len);
  if (!b)
    return -ENOMEM;
  int rc = cp_session_send(io, b);
  cp_sendbuf_unref(b);
  return rc;
}

const char *cl_redis_reply_kind(const redisReply *r) {
  if (!r)
    return "no reply";
  switch (r->type) {
  case REDIS_REPLY_ERROR:
    return r->str;
  case REDIS_REPLY_STRING:
    return "string";
  case REDIS_REPLY_ARRAY:
    return "array";
  case REDIS_REPLY_INTEGER:
    return "integer";
  case REDIS_REPLY_NIL:
    return "nil";
  case REDIS_REPLY_STATUS:
    return "status";
  default:
    return "unknown";
  }
}
