/*
 * room_keys.h - Redis key and channel names of a room, binary-safe.
 *
 * A room name is a byte string (zero bytes allowed). Its keys carry it
 * hex-encoded inside a Redis Cluster hash tag, so every key of a room lands
 * in one slot, the mapping is injective ("a\0x" -> 610078, "a\0y" -> 610079)
 * and no byte of the name can end the tag early ('}') or the string (0):
 *
 *   cport:{r<hex>}:meta  hash   e = epoch, s = last offset
 *   cport:{r<hex>}:s      stream the room's events, id "<offset>-0", field d
 *   cport:{r<hex>}:m     zset   members: player id (decimal) scored by join offset
 *   cport:{r<hex>}:d     hash   member data: player id -> the node's bytes (name...)
 *   cport:{r<hex>}:ch    channel the events as "<offset>:<epoch>:<event>"
 *
 * Everything is length-delimited; no C-string function sees a room name.
 */
#ifndef CPORT_CLUSTER_ROOM_KEYS_H
#define CPORT_CLUSTER_ROOM_KEYS_H

#include <stdbool.h>
#include <stddef.h>

enum cl_room_key { CL_KEY_META, CL_KEY_STREAM, CL_KEY_MEMBERS, CL_KEY_DATA, CL_KEY_CHANNEL };

/* Longest room name accepted, bytes (protocol 2 allows far fewer). */
#define CL_ROOM_MAX 1024u
/* Room keys are at most this long. */
#define CL_ROOM_KEY_MAX (sizeof "cport:{r}:meta" + 2 * CL_ROOM_MAX)

/* Write key `which` of room (len bytes) to out (CL_ROOM_KEY_MAX bytes).
 * Returns its length, or 0 if len > CL_ROOM_MAX. */
size_t cl_room_key(char *out, enum cl_room_key which, const void *room, size_t len);

/* The room of a channel name made by cl_room_key(CL_KEY_CHANNEL): decodes
 * into out (CL_ROOM_MAX bytes) and returns true with *len set; false for any
 * other channel (wrong shape, odd or non-hex digits). */
bool cl_room_from_channel(const char *ch, size_t ch_len, void *out, size_t *len);

#endif
