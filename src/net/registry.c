/*
 * registry.c - the service's live sessions: an array with each session's
 * index stored in the session, so adding and removing are O(1) (the last entry
 * moves into the hole). Broadcast works on a referenced snapshot, taken under
 * the lock and used outside it, so a send that ends a session (slow consumer)
 * can unregister it without deadlocking on the registry. The registry's
 * block is twice its capacity: the second half is scratch for a snapshot
 * that cannot be allocated, so a broadcast, stop or idle scan never fails
 * for lack of memory.
 */
#define _GNU_SOURCE
#include "net/net_internal.h"

#include <stdlib.h>

/* The scratch this thread holds (bc_mu held), or NULL. */
static _Thread_local cp_session **scratch_held;

/* Grow the array (reg_mu and bc_mu held): one block, the registry in the
 * first half and the snapshot's fallback scratch in the second. */
static int grow(cp_service *svc) {
  uint32_t cap = svc->reg_cap ? svc->reg_cap * 2 : 256;
  cp_session **r = mem_realloc(svc->reg, 2 * (size_t)cap * sizeof *r);
  if (!r)
    return -ENOMEM;
  svc->reg = r;
  svc->reg_cap = cap;
  return 0;
}

int cp__registry_add(cp_service *svc, cp_session *s) {
  cp__mutex_lock(&svc->reg_mu);
  /* Checked under reg_mu: cp_service_stop sets `stopping` before it takes
   * its snapshot under reg_mu, so a session either makes the snapshot (and
   * is closed by stop) or sees `stopping` here - never neither. */
  if (!atomic_load(&svc->stopping) && svc->reg_len == svc->reg_cap) {
    /* Growing moves the scratch a snapshot may be using: take bc_mu first
     * (the lock order is bc_mu, then reg_mu). This thread may hold it
     * already (a callback run inline under a fallback snapshot connects a
     * new session): then growing would pull the scratch from under it. */
    if (scratch_held) {
      cp__mutex_unlock(&svc->reg_mu);
      return -ENOMEM;
    }
    cp__mutex_unlock(&svc->reg_mu);
    cp__mutex_lock(&svc->bc_mu);
    cp__mutex_lock(&svc->reg_mu);
    int rc = svc->reg_len == svc->reg_cap ? grow(svc) : 0;
    cp__mutex_unlock(&svc->bc_mu);
    if (rc) {
      cp__mutex_unlock(&svc->reg_mu);
      return rc;
    }
  }
  if (atomic_load(&svc->stopping)) {
    cp__mutex_unlock(&svc->reg_mu);
    return -ESHUTDOWN;
  }
  s->reg_idx = svc->reg_len;
  svc->reg[svc->reg_len++] = cp_session_get(s);
  cp__mutex_unlock(&svc->reg_mu);
  return 0;
}

cp_session *cp__registry_find(cp_service *svc, uint64_t id) {
  cp_session *found = NULL;
  cp__mutex_lock(&svc->reg_mu);
  for (uint32_t i = 0; i < svc->reg_len && !found; i++)
    if (svc->reg[i]->id == id)
      found = cp_session_get(svc->reg[i]);
  cp__mutex_unlock(&svc->reg_mu);
  return found;
}

void cp__registry_remove(cp_service *svc, cp_session *s) {
  cp__mutex_lock(&svc->reg_mu);
  uint32_t i = s->reg_idx;
  bool was = i != UINT32_MAX;
  if (was) {
    cp_session *last = svc->reg[--svc->reg_len];
    svc->reg[i] = last;
    last->reg_idx = i;
    s->reg_idx = UINT32_MAX;
  }
  cp__mutex_unlock(&svc->reg_mu);
  if (was)
    cp_session_put(s);
}

cp_session **cp__registry_snapshot(cp_service *svc, size_t *n) {
  cp__mutex_lock(&svc->reg_mu);
  *n = svc->reg_len;
  cp_session **v = *n ? mem_alloc(*n * sizeof *v) : NULL;
  if (!v && *n) {
    /* Out of memory: use the scratch kept as large as the registry, one
     * thread at a time. A thread that holds it already (a callback run
     * inline by what it does with the snapshot) gets nothing. */
    cp__mutex_unlock(&svc->reg_mu);
    if (scratch_held) {
      *n = 0;
      return NULL;
    }
    cp__mutex_lock(&svc->bc_mu);
    cp__mutex_lock(&svc->reg_mu);
    *n = svc->reg_len;
    v = scratch_held = svc->reg + svc->reg_cap;
  }
  for (size_t i = 0; i < *n; i++)
    v[i] = cp_session_get(svc->reg[i]);
  cp__mutex_unlock(&svc->reg_mu);
  return v;
}

void cp__registry_release(cp_service *svc, cp_session **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    cp_session_put(v[i]);
  if (v && v == scratch_held) {
    scratch_held = NULL;
    cp__mutex_unlock(&svc->bc_mu);
  } else {
    mem_free(v);
  }
}

size_t cp_service_broadcast(cp_service *svc, cp_sendbuf *buf) {
  size_t n;
  cp_session **v = cp__registry_snapshot(svc, &n);
  size_t ok = cp_session_send_many(v, n, buf);
  cp__registry_release(svc, v, n);
  return ok;
}
