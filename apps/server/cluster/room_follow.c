/* room_follow.c - see room_follow.h. */
#include "room_follow.h"

#include "room_script.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct cl_held {
  uint64_t offset;
  size_t len;
  char *data;
};

void cl_follow_start(cl_follow *f, const char *epoch, size_t epoch_len, uint64_t last,
                     size_t held_max) {
  cl_follow_stats st = f->st; /* the counters live on across epochs */
  cl_follow_free(f);
  memset(f, 0, sizeof *f);
  f->st = st;
  f->epoch_len = epoch_len < sizeof f->epoch ? epoch_len : sizeof f->epoch;
  memcpy(f->epoch, epoch, f->epoch_len);
  f->last = last;
  f->held_max = held_max ? held_max : 4096;
}

void cl_follow_free(cl_follow *f) {
  for (size_t i = 0; i < f->nheld; i++)
    free(f->held[i].data);
  free(f->held);
  f->held = NULL;
  f->nheld = 0;
}

/* Keep a message past a gap, sorted by offset, once. */
static void hold(cl_follow *f, uint64_t off, const char *event, size_t len) {
  size_t i = f->nheld;
  while (i > 0 && f->held[i - 1].offset > off)
    i--;
  if (i > 0 && f->held[i - 1].offset == off) {
    f->st.duplicates++;
    return;
  }
  struct cl_held *h = f->nheld < f->held_max ? realloc(f->held, (f->nheld + 1) * sizeof *h) : NULL;
  char *d = h ? malloc(len ? len : 1) : NULL;
  if (h)
    f->held = h;
  if (!d) { /* not held: it is in the stream, and read again when its turn comes */
    f->st.held_dropped++;
    return;
  }
  memcpy(d, event, len);
  memmove(&f->held[i + 1], &f->held[i], (f->nheld - i) * sizeof *h);
  f->held[i] = (struct cl_held){off, len, d};
  f->nheld++;
}

static void deliver1(cl_follow *f, uint64_t off, const char *event, size_t len,
                     cl_deliver_fn deliver, void *arg) {
  assert(off == f->last + 1);
  f->last = off;
  f->st.delivered++;
  if (deliver)
    deliver(arg, off, event, len);
}

/* Deliver held messages that are next; ask for the hole before the rest. */
static cl_follow_result drain(cl_follow *f, cl_deliver_fn deliver, void *arg, uint64_t *from,
                              uint64_t *to) {
  size_t i = 0;
  for (; i < f->nheld && f->held[i].offset <= f->last + 1; i++) {
    if (f->held[i].offset == f->last + 1)
      deliver1(f, f->held[i].offset, f->held[i].data, f->held[i].len, deliver, arg);
    else
      f->st.duplicates++;
    free(f->held[i].data);
  }
  if (i) {
    memmove(f->held, f->held + i, (f->nheld - i) * sizeof *f->held);
    f->nheld -= i;
  }
  if (!f->nheld || f->reading)
    return CL_FOLLOW_OK;
  f->reading = true;
  f->st.gaps++;
  *from = f->last + 1;
  *to = f->held[0].offset - 1;
  return CL_FOLLOW_READ;
}

cl_follow_result cl_follow_message(cl_follow *f, uint64_t offset, const char *epoch,
                                   size_t epoch_len, const char *event, size_t len,
                                   cl_deliver_fn deliver, void *arg, uint64_t *from, uint64_t *to) {
  if (epoch_len != f->epoch_len || memcmp(epoch, f->epoch, epoch_len)) {
    f->st.epoch_changes++;
    return CL_FOLLOW_NEW_EPOCH;
  }
  if (offset <= f->last) {
    f->st.duplicates++;
    return CL_FOLLOW_OK;
  }
  if (offset == f->last + 1 && !f->reading) {
    deliver1(f, offset, event, len, deliver, arg);
    return drain(f, deliver, arg, from, to);
  }
  hold(f, offset, event, len);
  if (f->reading)
    return CL_FOLLOW_OK;
  return drain(f, deliver, arg, from, to); /* asks for last + 1 .. offset - 1 */
}

cl_follow_result cl_follow_resync(cl_follow *f, uint64_t *from, uint64_t *to) {
  f->reading = true;
  f->st.gaps++;
  *from = f->last + 1;
  *to = CL_FOLLOW_END;
  return CL_FOLLOW_READ;
}

cl_follow_result cl_follow_range(cl_follow *f, const redisReply *r, uint64_t from, uint64_t to,
                                 cl_deliver_fn deliver, void *arg, uint64_t *nfrom, uint64_t *nto) {
  (void)from;
  f->reading = false;
  if (!r || r->type != REDIS_REPLY_ARRAY) {
    f->st.bad_entries++;
    return CL_FOLLOW_ERROR;
  }
  for (size_t i = 0; i < r->elements; i++) {
    uint64_t off;
    const char *ev;
    size_t len;
    if (!cl_stream_entry_decode(r->element[i], &off, &ev, &len)) {
      f->st.bad_entries++; /* skipped: counted as lost below if it leaves a hole */
      continue;
    }
    if (off <= f->last) {
      f->st.duplicates++;
      continue;
    }
    if (off > f->last + 1) { /* trimmed from the capped stream (or a bad entry) */
      f->st.gap_lost += off - 1 - f->last;
      f->last = off - 1;
    }
    deliver1(f, off, ev, len, deliver, arg);
  }
  /* Everything up to `to` was published before a message we hold: what the
   * stream no longer has is lost. */
  if (to != CL_FOLLOW_END && f->last < to) {
    f->st.gap_lost += to - f->last;
    f->last = to;
  }
  return drain(f, deliver, arg, nfrom, nto);
}
