/*
 * sink.c - where the backends put the completions they find (see struct
 * sink in port_internal.h): written once for io_uring and epoll.
 */
#include "port/port_internal.h"

#include <assert.h>

#define SPILL_MAX ((int)(sizeof((struct sink *)0)->spill / sizeof((struct sink *)0)->spill[0]))

/* Queue the spill without waking anyone; note whether a wake is needed. */
static void spill_out(cp_port *p, struct sink *s) {
  if (s->nspill && cp__port_queue(p, s->spill, s->nspill))
    s->wake = true;
  s->nspill = 0;
}

void cp__sink_put(cp_port *p, struct sink *s, struct op *o, int64_t res, void *buf) {
  assert(o->state != OPS_IDLE && o->state != OPS_DONE); /* exactly once */
  cp__op_free_rest(o);
  cp_completion *c = s->n < s->max ? &s->out[s->n++] : &s->spill[s->nspill++];
  op_complete(o, c, res, buf);
  if (s->nspill == SPILL_MAX)
    spill_out(p, s);
}

void cp__sink_drain(cp_port *p, struct sink *s, struct opq *q, int64_t res) {
  struct op *o;
  while ((o = opq_pop(q)))
    cp__sink_put(p, s, o, res, NULL);
}

void cp__sink_flush(cp_port *p, struct sink *s) {
  spill_out(p, s);
  if (s->wake)
    p->be->wake(p);
  s->wake = false;
}
