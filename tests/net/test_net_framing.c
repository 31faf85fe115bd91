/* Framing: a set of packets split in two at every byte boundary (the server
 * is made to receive the first part before the second is sent), the whole
 * set dribbled one byte per receive, many packets coalesced in one write, and
 * packets of the largest size. The server checks every body and echoes each
 * packet; the client compares the echo byte for byte. */
#include "common/nettest.h"

#define MAXP 65535

static atomic_long bad_bodies;

static void on_packet(cp_session *s, const cp_packet *pkt) {
  CHECK_EQ(pkt->size, pkt->data[0] | pkt->data[1] << 8);
  CHECK_EQ(pkt->body_len, pkt->size - 4u);
  CHECK(pkt->body == pkt->data + 4);
  /* the seq of our pattern is in the id's high byte */
  if (!nt_body_ok(pkt->body, pkt->body_len, pkt->id, pkt->id >> 8))
    atomic_fetch_add(&bad_bodies, 1);
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  CHECK_EQ(cp_session_send(s, b), 0);
  cp_sendbuf_unref(b);
}

static cp_service *svc;
static int fd;
static uint64_t sent_bytes, sent_packets;

/* Send bytes and wait until the server has received every one of them, so
 * the next bytes arrive in a later receive. */
static void send_and_land(const uint8_t *p, size_t n) {
  test_send_all(fd, p, n);
  sent_bytes += n;
  WAIT_UNTIL(nt_stats(svc).bytes_in == sent_bytes);
}

static void expect_echo(const uint8_t *want, size_t n, size_t packets) {
  static uint8_t in[1 << 20];
  CHECK(n <= sizeof in);
  test_recv_all(fd, in, n);
  CHECK(!memcmp(in, want, n));
  sent_packets += packets;
  CHECK_EQ(nt_stats(svc).packets_in, sent_packets);
}

int main(void) {
  test_begin("test_net_framing", 240);
  cp_service_options o = {.threads = 2, .max_packet = MAXP, .callbacks = {.on_packet = on_packet}};
  struct sockaddr_in addr;
  svc = nt_server(o, &addr);
  fd = test_connect(&addr);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  /* A set of packets of awkward sizes: a bare header, 1-byte body, ... */
  static uint8_t set[4096];
  const size_t sizes[] = {0, 1, 3, 4, 5, 17, 100, 250};
  size_t len = 0, nset = sizeof sizes / sizeof sizes[0];
  for (size_t i = 0; i < nset; i++)
    len += nt_packet(set + len, (uint16_t)(i << 8 | 0x11), (uint32_t)i, sizes[i]);

  /* 1. split in two at every boundary */
  for (size_t cut = 1; cut < len; cut++) {
    send_and_land(set, cut);
    send_and_land(set + cut, len - cut);
    expect_echo(set, len, nset);
  }
  fprintf(stderr, "  %zu two-part splits of %zu packets (%zu bytes) reassembled\n", len - 1, nset,
          len);

  /* 2. three parts: every cut inside the first header and the first body */
  for (size_t a = 1; a < 12; a++)
    for (size_t b = a + 1; b < len; b += 7) {
      send_and_land(set, a);
      send_and_land(set + a, b - a);
      send_and_land(set + b, len - b);
      expect_echo(set, len, nset);
    }

  /* 3. one byte per receive */
  for (size_t i = 0; i < len; i++)
    send_and_land(set + i, 1);
  expect_echo(set, len, nset);

  /* 4. coalesced: 400 packets in one write */
  static uint8_t many[400 * 64];
  size_t mlen = 0;
  for (uint32_t i = 0; i < 400; i++)
    mlen += nt_packet(many + mlen, (uint16_t)((i & 0xff) << 8 | 0x22), i & 0xff, i % 57);
  test_send_all(fd, many, mlen);
  sent_bytes += mlen;
  expect_echo(many, mlen, 400);

  /* 5. the largest packets, whole and split across receives at odd places */
  static uint8_t big[3 * MAXP];
  size_t blen = 0;
  for (uint32_t i = 0; i < 3; i++)
    blen += nt_packet(big + blen, (uint16_t)(i << 8 | 0x33), i, MAXP - 4);
  test_send_all(fd, big, blen);
  sent_bytes += blen;
  expect_echo(big, blen, 3);
  const size_t cuts[] = {1, 2, 3, 4, 5, 4096, MAXP - 1, MAXP, MAXP + 1, MAXP + 3, 2 * MAXP + 7};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    send_and_land(big, cuts[i]);
    send_and_land(big + cuts[i], blen - cuts[i]);
    expect_echo(big, blen, 3);
  }

  CHECK_EQ(atomic_load(&bad_bodies), 0);
  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.bytes_in, sent_bytes);
  WAIT_UNTIL(nt_stats(svc).bytes_out == sent_bytes);
  CHECK_EQ(st.disconnects[CP_REASON_BAD_PACKET], 0);
  close(fd);
  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_PEER_CLOSED] == 1);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
