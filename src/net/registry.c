/*
 * registry.c - the service's live sessions: an array with each session's
 * index stored in the session, so adding and removing are O(1) (the last entry
 * moves into the hole). Broadcast works on a referenced snapshot, taken under
 * the lock and used outside it, so a send that ends a session (slow consumer)
 * can unregister it without deadlocking on the registry.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <stdlib.h>

int registry_add(cp_service *svc, cp_session *s) {
  pthread_mutex_lock(&svc->reg_mu);
  /* Checked under reg_mu: cp_service_stop sets `stopping` before it takes
   * its snapshot under reg_mu, so a session either makes the snapshot (and
   * is closed by stop) or sees `stopping` here - never neither. */
  if (atomic_load(&svc->stopping)) {
    pthread_mutex_unlock(&svc->reg_mu);
    return -ESHUTDOWN;
  }
  if (svc->reg_len == svc->reg_cap) {
    uint32_t cap = svc->reg_cap ? svc->reg_cap * 2 : 256;
    cp_session **r = mem_realloc(svc->reg, cap * sizeof *r);
    if (!r) {
      pthread_mutex_unlock(&svc->reg_mu);
      return -ENOMEM;
    }
    svc->reg = r;
    svc->reg_cap = cap;
  }
  s->reg_idx = svc->reg_len;
  svc->reg[svc->reg_len++] = cp_session_get(s);
  pthread_mutex_unlock(&svc->reg_mu);
  return 0;
}

void registry_remove(cp_service *svc, cp_session *s) {
  pthread_mutex_lock(&svc->reg_mu);
  uint32_t i = s->reg_idx;
  bool was = i != UINT32_MAX;
  if (was) {
    cp_session *last = svc->reg[--svc->reg_len];
    svc->reg[i] = last;
    last->reg_idx = i;
    s->reg_idx = UINT32_MAX;
  }
  pthread_mutex_unlock(&svc->reg_mu);
  if (was)
    cp_session_put(s);
}

cp_session **registry_snapshot(cp_service *svc, size_t *n) {
  pthread_mutex_lock(&svc->reg_mu);
  cp_session **v = mem_alloc((svc->reg_len ? svc->reg_len : 1) * sizeof *v);
  *n = 0;
  if (v) {
    for (uint32_t i = 0; i < svc->reg_len; i++)
      v[i] = cp_session_get(svc->reg[i]);
    *n = svc->reg_len;
  }
  pthread_mutex_unlock(&svc->reg_mu);
  return v;
}

void registry_release(cp_session **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    cp_session_put(v[i]);
  mem_free(v);
}

size_t cp_service_broadcast(cp_service *svc, cp_sendbuf *buf) {
  size_t n;
  cp_session **v = registry_snapshot(svc, &n);
  if (!v)
    return 0;
  size_t ok = cp_session_send_many(v, n, buf);
  registry_release(v, n);
  return ok;
}
