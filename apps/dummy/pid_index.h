/*
 * pid_index.h - cport-dummy's index of a table of player ids (a member's presence table,
 * struct client.mpid) by player id, so that an S_MEMBER_LEFT finds its member at once instead
 * of scanning the room (tests/e2e/dummy_units.c checks it against a scan).
 *
 * ids[]: the table, 0 for an empty slot. ix[]: 2^bits entries, each 0 (empty) or a slot of
 * ids + 1, open addressing with linear probing; 2^bits must exceed the slots of ids (so it is
 * never full). Every non-zero id is indexed once: the caller adds a slot after storing its id
 * and takes it out before clearing it. Not thread-safe: the owner's (a member's strand).
 */
#ifndef CPORT_APPS_DUMMY_PID_INDEX_H
#define CPORT_APPS_DUMMY_PID_INDEX_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

/* Where id belongs in an index of 2^bits entries (Fibonacci hashing: the top bits of a
 * multiple, so consecutive ids spread). */
static inline size_t pid_index_home(uint64_t id, unsigned bits) {
  return (size_t)((id * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* Index ids[slot] (not 0). */
static inline void pid_index_add(uint32_t *ix, unsigned bits, const uint64_t *ids, unsigned slot) {
  size_t mask = ((size_t)1 << bits) - 1, i = pid_index_home(ids[slot], bits);
  while (ix[i]) /* never full: more entries than slots */
    i = (i + 1) & mask;
  ix[i] = slot + 1;
}

/* The slot of ids holding id, taken out of the index (the caller then clears it); UINT_MAX if
 * none does. Linear probing, so a removal moves the entries after it in its run that would no
 * longer be found into the hole (no tombstones: the index never fills up). */
static inline unsigned pid_index_take(uint32_t *ix, unsigned bits, const uint64_t *ids,
                                      uint64_t id) {
  size_t mask = ((size_t)1 << bits) - 1, i = pid_index_home(id, bits);
  while (ix[i] && ids[ix[i] - 1] != id)
    i = (i + 1) & mask;
  if (!ix[i])
    return UINT_MAX;
  unsigned slot = ix[i] - 1;
  for (size_t j = (i + 1) & mask; ix[j]; j = (j + 1) & mask) {
    size_t k = pid_index_home(ids[ix[j] - 1], bits); /* ix[j]'s home: it stays if in (i, j] */
    if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
      continue;
    ix[i] = ix[j];
    i = j;
  }
  ix[i] = 0;
  return slot;
}

#endif
