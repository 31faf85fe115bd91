/* Bad headers - size 0, 3, max+1 and 65535 with a small max, each sent whole
 * and dribbled byte by byte - disconnect only that session, with "bad
 * packet"; a bystander session keeps echoing through all of it. */
#include "common/nettest.h"

#define MAXP 512

static void on_packet(cp_session *s, const cp_packet *pkt) {
  cp_sendbuf *b = cp_sendbuf_copy(pkt->data, pkt->size);
  CHECK_EQ(cp_session_send(s, b), 0);
  cp_sendbuf_unref(b);
}

static cp_service *svc;
static uint64_t landed;

static void roundtrip(int fd, uint32_t seq) {
  uint8_t out[64], in[64];
  size_t n = nt_packet(out, 1, seq, 30);
  test_send_all(fd, out, n);
  test_recv_all(fd, in, n);
  CHECK(!memcmp(in, out, n));
  landed += n;
}

int main(void) {
  test_begin("test_net_bad_header", 120);
  cp_service_options o = {.threads = 2, .max_packet = MAXP, .callbacks = {.on_packet = on_packet}};
  struct sockaddr_in addr;
  svc = nt_server(o, &addr);
  int bystander = test_connect(&addr);
  roundtrip(bystander, 0);

  const uint16_t sizes[] = {0, 3, MAXP + 1, 65535};
  uint64_t bad = 0;
  for (int dribble = 0; dribble < 2; dribble++)
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      int victim = test_connect(&addr);
      roundtrip(victim, 1); /* a good packet first: the bad one follows it */
      uint8_t hdr[4] = {(uint8_t)sizes[i], (uint8_t)(sizes[i] >> 8), 5, 0};
      if (dribble) {
        /* each byte lands in its own receive: the check runs on the partial header */
        for (int k = 0; k < 4; k++) {
          test_send_all(victim, hdr + k, 1);
          landed++;
          if (k < 3)
            WAIT_UNTIL(nt_stats(svc).bytes_in == landed);
        }
      } else {
        test_send_all(victim, hdr, 4);
      }
      CHECK(nt_read_to_end(victim));
      close(victim);
      bad++;
      WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_BAD_PACKET] == bad);
      roundtrip(bystander, (uint32_t)(2 + i));
      landed = nt_stats(svc).bytes_in;
    }
  WAIT_UNTIL(nt_stats(svc).sessions == 1);
  cp_service_stats st = nt_stats(svc);
  CHECK_EQ(st.disconnects[CP_REASON_BAD_PACKET], 8);
  CHECK_EQ(nt_disconnects(svc), 8);
  CHECK_EQ(st.accepts, 9);
  fprintf(stderr, "  8 bad headers, 8 sessions closed as bad_packet, bystander unaffected\n");
  close(bystander);
  WAIT_UNTIL(nt_stats(svc).disconnects[CP_REASON_PEER_CLOSED] == 1);
  cp_service_destroy(svc);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  return 0;
}
