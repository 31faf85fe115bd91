/*
 * framing.h - cutting a received byte stream into packets: a little-endian
 * header {uint16 size; uint16 id}, size counting the header, then the body.
 *
 * Pure: no sockets, no sessions, no locks, so that it can be tested and
 * fuzzed on its own (tests/fuzz/fuzz_framing.c). Complete packets are handed
 * over straight from the caller's bytes; only an incomplete tail is copied,
 * into a part allocated for exactly that packet and freed as soon as it is
 * complete.
 */
#ifndef CPORT_NET_FRAMING_H
#define CPORT_NET_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The bytes of an incomplete packet (or of an incomplete header). */
struct frame_part {
  uint16_t len, cap;
  uint8_t data[];
};

typedef enum frame_status {
  FRAME_OK = 0, /* every byte was consumed (a tail may be kept in *part) */
  FRAME_STOP,   /* deliver returned false: the rest was not looked at */
  FRAME_BAD,    /* a header with size < 4 or size > max_packet */
  FRAME_NOMEM,  /* the tail could not be kept */
} frame_status;

/* One complete packet, header included; valid only during the call. Return
 * false to stop framing (the receiver is closing). */
typedef bool (*frame_deliver_fn)(void *ctx, const uint8_t *pkt, uint16_t size);

/*
 * Frame n more bytes of the stream, continuing a packet kept in *part (NULL
 * if none). Delivers each complete packet in order. After FRAME_BAD,
 * FRAME_NOMEM or FRAME_STOP the stream is over for the caller: call
 * cp__frame_reset. max_packet >= 4.
 */
frame_status cp__frame_feed(struct frame_part **part, const uint8_t *p, size_t n,
                            uint16_t max_packet, frame_deliver_fn deliver, void *ctx);

/* Free a kept tail, if any; *part becomes NULL. */
void cp__frame_reset(struct frame_part **part);

#endif /* CPORT_NET_FRAMING_H */
