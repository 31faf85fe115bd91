/* Packets that arrive before a bad header in the same read are delivered and
 * their replies sent before the session closes as bad_packet: three good
 * packets, a header of size 3 and some trailing bytes go in one write; the
 * three echoes come back, byte for byte, then the end of the stream. */
#include "common/nettest.h"

static void on_packet(cp_session *s, const cp_packet *pkt) {
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  CHECK_EQ(cp_session_send(s, b), 0);
  cp_sendbuf_unref(b);
}

int main(void) {
  test_begin("test_net_bad_header_after", 120);
  cp_service_options o = {.threads = 2, .max_packet = 512, .callbacks = {.on_packet = on_packet}};
  struct sockaddr_in addr;
  cp_service *svc = nt_server(o, &addr);
  for (int round = 0; round < 20; round++) {
    int fd = test_connect(&addr);
    uint8_t out[256], in[256];
    size_t n = 0;
    for (uint32_t k = 0; k < 3; k++)
      n += nt_packet(out + n, 1, k, 20 + k);
    size_t good = n;
    const uint8_t bad[] = {3, 0, 1, 0, 'x', 'y', 'z'};
    memcpy(out + n, bad, sizeof bad);
    n += sizeof bad;
    test_send_all(fd, out, n);
    test_recv_all(fd, in, good);
    CHECK(!memcmp(in, out, good));
    CHECK(nt_read_to_end(fd)); /* and nothing more */
    close(fd);
    WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_BAD_PACKET] == (uint64_t)round + 1);
  }
  WAIT_UNTIL(nt_stats(svc).sessions == 0);
  CHECK_EQ(nt_disconnects(svc), 20);
  fprintf(stderr,
          "  20 x (3 packets + a bad header in one write): 3 replies each, then bad_packet\n");
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
