/* framing.c - see framing.h. */
#include "net/framing.h"

#include "common/mem.h"

#include <string.h>

#define HDR 4u

static inline uint16_t le16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

static bool size_ok(uint16_t size, uint16_t max_packet) {
  return size >= HDR && size <= max_packet;
}

/* Room for cap bytes in *part, keeping what it holds. */
static bool reserve(struct frame_part **part, uint16_t cap) {
  struct frame_part *pt = *part;
  if (pt && pt->cap >= cap)
    return true;
  struct frame_part *n = mem_realloc(pt, sizeof *n + cap);
  if (!n)
    return false;
  if (!pt)
    n->len = 0;
  n->cap = cap;
  *part = n;
  return true;
}

void cp__frame_reset(struct frame_part **part) {
  mem_free(*part);
  *part = NULL;
}

frame_status cp__frame_feed(struct frame_part **part, const uint8_t *p, size_t n,
                            uint16_t max_packet, frame_deliver_fn deliver, void *ctx) {
  struct frame_part *pt = *part;
  if (pt) {
    /* Finish the header first (the part has room for one), then the body. */
    while (pt->len < HDR && n) {
      pt->data[pt->len++] = *p++;
      n--;
    }
    if (pt->len < HDR)
      return FRAME_OK;
    uint16_t size = le16(pt->data);
    if (!size_ok(size, max_packet))
      return FRAME_BAD;
    if (!reserve(part, size))
      return FRAME_NOMEM;
    pt = *part;
    size_t take = size - pt->len;
    if (take > n)
      take = n;
    memcpy(pt->data + pt->len, p, take);
    pt->len = (uint16_t)(pt->len + take);
    p += take;
    n -= take;
    if (pt->len < size)
      return FRAME_OK;
    bool go_on = deliver(ctx, pt->data, size);
    cp__frame_reset(part);
    if (!go_on)
      return FRAME_STOP;
  }
  while (n >= HDR) {
    uint16_t size = le16(p);
    if (!size_ok(size, max_packet))
      return FRAME_BAD;
    if (size > n)
      break;
    if (!deliver(ctx, p, size))
      return FRAME_STOP;
    p += size;
    n -= size;
  }
  if (n) {
    /* n < this packet's size (<= max_packet), or n < 4: keep the tail in a
     * part sized for the whole packet, or for its header. */
    if (!reserve(part, n >= HDR ? le16(p) : HDR))
      return FRAME_NOMEM;
    memcpy((*part)->data, p, n);
    (*part)->len = (uint16_t)n;
  }
  return FRAME_OK;
}
