/*
 * echo.c - cport-dummy's echo and packet-echo modes: every byte compared, in order
 * (main.c describes them).
 */
#define _GNU_SOURCE
#include "dummy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The byte at offset i (past the header) of message seq of client c. */
static inline uint8_t pattern(unsigned c, uint64_t seq, uint32_t i) {
  uint64_t x = (uint64_t)c * 0x9E3779B97F4A7C15ull ^ seq * 0xC2B2AE3D27D4EB4Full ^ (i >> 3);
  x ^= x >> 29;
  return (uint8_t)(x >> ((i & 7) * 8));
}

static void put64(uint8_t *p, uint64_t v) {
  memcpy(p, &v, 8);
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* ---- echo modes ------------------------------------------------------ */

static unsigned pre(void) {
  return cfg.mode == MODE_PACKET_ECHO ? CP_PACKET_HEADER : 0;
}

/* Send the next message of c (send lock held by caller). */
void echo_send(struct client *c) {
  uint64_t seq = c->sent;
  cp_sendbuf *b = cp_sendbuf_alloc(cfg.size);
  if (!b) {
    dummy_error("client %u: out of memory", c->idx);
    return;
  }
  uint8_t *p = cp_sendbuf_data(b);
  unsigned h = pre();
  if (h) {
    p[0] = (uint8_t)(cfg.size & 0xff);
    p[1] = (uint8_t)(cfg.size >> 8);
    p[2] = (uint8_t)(seq & 0xff);
    p[3] = (uint8_t)((seq >> 8) & 0xff);
  }
  put64(p + h, seq);
  put64(p + h + 8, now_ns());
  for (uint32_t i = h + MSG_HDR; i < cfg.size; i++)
    p[i] = pattern(c->idx, seq, i);
  cp_sendbuf_set_len(b, cfg.size);
  if (cp_session_send(c->s, b) == 0) {
    c->sent++;
    atomic_fetch_add_explicit(&n_sent, 1, memory_order_relaxed);
  }
  cp_sendbuf_unref(b);
}

/* Bytes of echoed messages, as they arrive (strand). */
void echo_bytes(struct client *c, const uint8_t *d, size_t n) {
  unsigned h = pre();
  uint32_t fixed = h + MSG_HDR;
  while (n) {
    if (c->roff < fixed) {
      c->rhdr[c->roff++] = *d++;
      n--;
      if (c->roff == fixed) {
        uint64_t seq = get64(c->rhdr + h);
        if (seq != c->rseq)
          dummy_error("client %u: expected message %" PRIu64 ", got %" PRIu64
                      " (lost or reordered)",
                      c->idx, c->rseq, seq);
        if (h && (c->rhdr[0] | c->rhdr[1] << 8) != (int)cfg.size)
          dummy_error("client %u: message %" PRIu64 " has a bad packet header", c->idx, c->rseq);
      }
    } else {
      if (*d != pattern(c->idx, c->rseq, c->roff)) {
        dummy_error("client %u: message %" PRIu64 " byte %u corrupted", c->idx, c->rseq, c->roff);
      }
      c->roff++;
      d++;
      n--;
    }
    if (c->roff == cfg.size) {
      uint64_t t = get64(c->rhdr + h + 8), now = now_ns();
      if (atomic_load_explicit(&measuring, memory_order_relaxed)) {
        count_delivery(now > t ? (now - t) / 1000 : 0);
        count_bytes(cfg.size);
      }
      c->rseq++;
      c->roff = 0;
      pthread_spin_lock(&c->lock);
      c->recvd++;
      int st = atomic_load(&c->state);
      if (cfg.rate == 0 && atomic_load(&sending) && st == CS_UP)
        echo_send(c); /* depth mode: one back, one out */
      else if (st == CS_LEAVING && c->recvd == c->sent)
        leave_now(c); /* churn: the last one is back */
      pthread_spin_unlock(&c->lock);
    }
  }
}

void on_raw(cp_session *s, const void *data, size_t len) {
  struct client *c = cp_session_user(s);
  if (c)
    echo_bytes(c, data, len);
}
