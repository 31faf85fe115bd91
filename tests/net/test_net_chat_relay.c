/* examples/chat_relay.c, driven through its protocol: three clients, rooms 1
 * and 2. A chat reaches everyone in the sender's room but the sender, and
 * nobody in another room; the repeating announcement tells each room its
 * member count, and follows a member leaving; out of memory (the example's
 * own allocations fail) disconnects a new session at once and a sender whose
 * chat cannot be copied, and the others go on. The relay then stops: every
 * member's session reference is put by its leave job (a leaked reference
 * would hang stop; the watchdog turns that into a failure), and every send
 * buffer is back. */
#include "common/nettest.h"

static atomic_int relay_fail;
static void *t_malloc(size_t n) {
  return atomic_load(&relay_fail) ? NULL : malloc(n);
}
static void *t_calloc(size_t c, size_t n) {
  return atomic_load(&relay_fail) ? NULL : calloc(c, n);
}
#define CHAT_RELAY_LIB
#define RELAY_MALLOC t_malloc
#define RELAY_CALLOC t_calloc
#include "../examples/chat_relay.c"

struct pkt {
  uint16_t id;
  size_t len;
  uint8_t body[256];
};

/* One packet; false on EOF or reset. */
static bool read_pkt(int fd, struct pkt *p) {
  uint8_t h[4];
  size_t got = 0;
  while (got < 4) {
    ssize_t k = recv(fd, h + got, 4 - got, 0);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      fprintf(stderr, "no packet within 30 s\n");
      exit(1);
    }
    if (k <= 0)
      return false;
    got += (size_t)k;
  }
  size_t size = (size_t)(h[0] | h[1] << 8);
  CHECK(size >= 4 && size - 4 <= sizeof p->body);
  p->id = (uint16_t)(h[2] | h[3] << 8);
  p->len = size - 4;
  test_recv_all(fd, p->body, p->len);
  return true;
}

static uint32_t count_of(const struct pkt *p) {
  return (uint32_t)(p->body[0] | p->body[1] << 8 | p->body[2] << 16 | (uint32_t)p->body[3] << 24);
}

/* Read until a COUNT equal to want arrives; no MSG may come meanwhile. */
static void wait_count(int fd, uint32_t want) {
  struct pkt p;
  for (;;) {
    CHECK(read_pkt(fd, &p));
    CHECK_EQ(p.id, ID_COUNT);
    if (count_of(&p) == want)
      return;
  }
}

/* The next MSG (COUNTs skipped); its text must be text. */
static void expect_msg(int fd, const char *text) {
  struct pkt p;
  do
    CHECK(read_pkt(fd, &p));
  while (p.id == ID_COUNT);
  CHECK_EQ(p.id, ID_MSG);
  CHECK_EQ(p.len, 8 + strlen(text));
  CHECK(memcmp(p.body + 8, text, strlen(text)) == 0);
  uint64_t id = 0;
  for (int i = 0; i < 8; i++)
    id |= (uint64_t)p.body[i] << (8 * i);
  CHECK(id != 0);
}

static void send_pkt(int fd, uint16_t id, const void *body, size_t len) {
  uint8_t b[260];
  size_t size = 4 + len;
  b[0] = (uint8_t)size;
  b[1] = (uint8_t)(size >> 8);
  b[2] = (uint8_t)id;
  b[3] = (uint8_t)(id >> 8);
  memcpy(b + 4, body, len);
  test_send_all(fd, b, size);
}

static int client(const struct sockaddr_in *addr, uint8_t room) {
  int fd = test_connect(addr);
  test_set_timeouts(fd, 30000);
  if (room != 0xff)
    send_pkt(fd, ID_JOIN, &room, 1);
  return fd;
}

/* Read to the end (EOF or reset): the server closed it. */
static void expect_closed(int fd) {
  struct pkt p;
  while (read_pkt(fd, &p))
    ;
}

int main(void) {
  test_begin("test_net_chat_relay", 120);
  struct example_args a = {"127.0.0.1", 0, 2, CP_BACKEND_AUTO};
  struct chat_relay cr;
  CHECK_EQ(chat_relay_start(&cr, &a, 20), 0);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons(cp_service_listen_port(cr.svc))};
  int A = client(&addr, 1), B = client(&addr, 1), C = client(&addr, 2);
  wait_count(A, 2);
  wait_count(B, 2);
  wait_count(C, 1);

  send_pkt(A, ID_CHAT, "hello", 5);
  expect_msg(B, "hello");
  send_pkt(B, ID_CHAT, "b1", 2);
  expect_msg(A, "b1"); /* A's first MSG: its own "hello" never came back */
  wait_count(C, 1);    /* a full round of announcements in room 2: no MSG */
  wait_count(C, 1);

  close(B); /* the leave job: A's room now counts 1 */
  wait_count(A, 1);

  /* out of memory in the example's own allocations */
  atomic_store(&relay_fail, 1);
  int D = client(&addr, 0xff);
  expect_closed(D); /* no member could be made: disconnected at once */
  close(D);
  send_pkt(A, ID_CHAT, "lost", 4);
  expect_closed(A); /* its chat could not be copied: disconnected, not silently dropped */
  close(A);
  atomic_store(&relay_fail, 0);
  int E = client(&addr, 2); /* the relay goes on */
  wait_count(C, 2);
  send_pkt(E, ID_CHAT, "e1", 2);
  expect_msg(C, "e1");

  cp_service_stats st = nt_stats(cr.svc);
  fprintf(stderr, "  %llu accepted, %llu disconnected so far\n", (unsigned long long)st.accepts,
          (unsigned long long)nt_disconnects(cr.svc));
  chat_relay_stop(&cr); /* would hang if a member's reference leaked */
  close(C);
  close(E);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
  fprintf(stderr, "PASS\n");
  return 0;
}
