/*
 * win_iocp.c - the IOCP backend (src/port/iocp.c) op by op, under Wine or on Windows, until
 * the port suite (tests/port) builds on Windows with the portable API. Every check is about
 * behaviour: results, counts, bytes compared, exactly one completion per op.
 */
#include <winsock2.h>
#include <ws2tcpip.h>

#include <cport/port.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)
#define CHECK_EQ(a, b)                                                                             \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__, __LINE__, #a,  \
              a_, #b, b_);                                                                         \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

static cp_port *new_port(unsigned bufs) {
  cp_port *p;
  cp_port_options o = {.buf_count = bufs, .concurrency = 4};
  CHECK_EQ(cp_port_create(&p, &o), 0);
  return p;
}

static SOCKET listener(struct sockaddr_in *a) {
  SOCKET l = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int alen = sizeof *a;
  CHECK(bind(l, (struct sockaddr *)a, sizeof *a) == 0);
  CHECK(listen(l, 64) == 0);
  CHECK(getsockname(l, (struct sockaddr *)a, &alen) == 0);
  return l;
}

/* One completion within 5 s. */
#define take(p) take_at(p, __LINE__)
static cp_completion take_at(cp_port *p, int line) {
  cp_completion c;
  int n = cp_port_wait(p, &c, 1, 5000);
  if (n != 1)
    fprintf(stderr, "take at line %d: wait returned %d\n", line, n);
  CHECK_EQ(n, 1);
  return c;
}

static void no_completion(cp_port *p, int ms) {
  cp_completion c;
  CHECK_EQ(cp_port_wait(p, &c, 1, ms), 0);
}

/* A connected pair through the port: *srv accepted with cp_port_accept, *cli connected with
 * cp_port_connect; both associated (keys 1 and 2). */
static void pair(cp_port *p, SOCKET *srv, SOCKET *cli) {
  struct sockaddr_in a;
  SOCKET l = listener(&a);
  CHECK_EQ(cp_port_associate(p, l, (void *)9), 0);
  cp_op aop, cop;
  struct sockaddr_storage peer;
  socklen_t plen = sizeof peer;
  CHECK_EQ(cp_port_accept(p, l, &aop, (struct sockaddr *)&peer, &plen), 0);
  SOCKET c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  CHECK_EQ(cp_port_associate(p, c, (void *)2), 0);
  CHECK_EQ(cp_port_connect(p, c, &cop, (struct sockaddr *)&a, sizeof a), 0);
  int got = 0;
  SOCKET s = INVALID_SOCKET;
  for (int i = 0; i < 2; i++) {
    cp_completion x = take(p);
    if (x.op == &aop) {
      CHECK_EQ(x.kind, CP_OP_ACCEPT);
      CHECK(x.result > 0);
      CHECK(x.key == (void *)9);
      s = (SOCKET)x.result;
      got |= 1;
    } else {
      CHECK(x.op == &cop);
      CHECK_EQ(x.kind, CP_OP_CONNECT);
      CHECK_EQ(x.result, 0);
      CHECK(x.key == (void *)2);
      got |= 2;
    }
  }
  CHECK_EQ(got, 3);
  struct sockaddr_in me;
  int mlen = sizeof me;
  CHECK(getsockname(c, (struct sockaddr *)&me, &mlen) == 0);
  CHECK_EQ(plen, sizeof(struct sockaddr_in));
  CHECK_EQ(((struct sockaddr_in *)&peer)->sin_port, me.sin_port);
  CHECK_EQ(cp_port_disassociate(p, l), 0);
  closesocket(l);
  CHECK_EQ(cp_port_associate(p, s, (void *)1), 0);
  *srv = s;
  *cli = c;
}

static void settled(cp_port *p) {
  cp_port_stats st;
  cp_port_get_stats(p, &st);
  CHECK_EQ(st.started, st.completed);
}

static void test_create(void) {
  cp_port *p;
  cp_port_options o = {.backend = CP_BACKEND_URING};
  CHECK_EQ(cp_port_create(&p, &o), CP_ENODEV);
  CHECK_EQ(cp_port_create(NULL, NULL), CP_EINVAL);
  CHECK_EQ(cp_port_create(&p, NULL), 0);
  CHECK(!strcmp(cp_backend_name(cp_port_backend(p)), "iocp"));
  cp_port_destroy(p);
  cp_port_destroy(NULL);
}

static void test_bad_input(void) {
  cp_port *p = new_port(0);
  cp_op op;
  char b[4];
  cp_buf v = cp_buf_init(b, sizeof b), z = cp_buf_init(b, 0);
  cp_completion c;
  SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  CHECK_EQ(cp_port_recv(p, s, &op, &v, 1), CP_EBADF); /* not associated */
  CHECK_EQ(cp_port_associate(p, INVALID_SOCKET, NULL), CP_EBADF);
  CHECK_EQ(cp_port_associate(p, (SOCKET)12345, NULL), CP_EBADF);
  CHECK_EQ(cp_port_associate(NULL, s, NULL), CP_EINVAL);
  CHECK_EQ(cp_port_associate(p, s, (void *)1), 0);
  CHECK_EQ(cp_port_associate(p, s, (void *)2), 0); /* twice: the key is replaced */
  CHECK_EQ(cp_port_recv(p, s, NULL, &v, 1), CP_EINVAL);
  CHECK_EQ(cp_port_recv(p, s, &op, &z, 1), CP_EINVAL);
  CHECK_EQ(cp_port_recv(p, s, &op, &v, 0), CP_EINVAL);
  CHECK_EQ(cp_port_send(p, s, &op, NULL, 1), CP_EINVAL);
  CHECK_EQ(cp_port_wait(p, &c, 0, 0), CP_EINVAL);
  CHECK_EQ(cp_port_wait(p, NULL, 1, 0), CP_EINVAL);
  CHECK_EQ(cp_port_wait(p, &c, 1, 0), 0);
  CHECK_EQ(cp_port_disconnect(p, s, &op, 7), CP_EINVAL);
  CHECK_EQ(cp_port_timeout(p, &op, NULL, UINT64_MAX), CP_EINVAL);
  CHECK_EQ(cp_port_cancel(p, s), 0); /* nothing pending */
  CHECK_EQ(cp_port_cancel(p, (SOCKET)4242), CP_EBADF);
  memset(&op, 0, sizeof op);
  CHECK_EQ(cp_port_cancel_op(p, &op), CP_ENOENT);
  /* A recv on a socket that is not connected: one completion with an error. */
  CHECK_EQ(cp_port_recv(p, s, &op, &v, 1), 0);
  c = take(p);
  CHECK(c.op == &op && c.result < 0 && c.key == (void *)2);
  CHECK_EQ(cp_port_disassociate(p, s), 0);
  CHECK_EQ(cp_port_disassociate(p, s), CP_EBADF);
  closesocket(s);
  settled(p);
  cp_port_destroy(p);
}

static void test_send_recv(void) {
  cp_port *p = new_port(0);
  SOCKET s, c;
  pair(p, &s, &c);
  char a[] = "hello ", b[] = "iocp ", d[] = "world";
  cp_buf sv[3] = {cp_buf_init(a, 6), cp_buf_init(b, 5), cp_buf_init(d, 5)};
  cp_op so, ro;
  CHECK_EQ(cp_port_send(p, c, &so, sv, 3), 0);
  cp_completion x = take(p);
  CHECK(x.op == &so && x.kind == CP_OP_SEND && x.result == 16);
  char buf[64] = {0};
  cp_buf rv;
  size_t got = 0;
  while (got < 16) {
    rv = cp_buf_init(buf + got, sizeof buf - got);
    CHECK_EQ(cp_port_recv(p, s, &ro, &rv, 1), 0);
    x = take(p);
    CHECK(x.op == &ro && x.kind == CP_OP_RECV && x.result > 0 && x.key == (void *)1);
    got += (size_t)x.result;
  }
  CHECK(!memcmp(buf, "hello iocp world", 16));
  closesocket(s);
  closesocket(c);
  settled(p);
  cp_port_destroy(p);
}

/* Several sends in flight on one socket reach the wire whole and in start order, and complete
 * in start order, while the peer reads only once they are all started. */
static void test_send_order(void) {
  cp_port *p = new_port(0);
  SOCKET s, c;
  pair(p, &s, &c);
  enum { N = 8, LEN = 256 * 1024 };
  static char data[N][LEN];
  static cp_op ops[N];
  cp_buf v[N];
  for (int i = 0; i < N; i++) {
    memset(data[i], 'a' + i, LEN);
    v[i] = cp_buf_init(data[i], LEN);
    CHECK_EQ(cp_port_send(p, c, &ops[i], &v[i], 1), 0);
  }
  /* Read everything with plain blocking recv on the other end. */
  u_long nb = 0;
  ioctlsocket(s, FIONBIO, &nb);
  CHECK_EQ(cp_port_disassociate(p, s), 0);
  static char in[N * LEN];
  size_t got = 0;
  int next = 0;
  while (got < sizeof in) {
    int n = recv(s, in + got, (int)(sizeof in - got), 0);
    CHECK(n > 0);
    got += (size_t)n;
    cp_completion x;
    while (cp_port_wait(p, &x, 1, 0) == 1) {
      CHECK(x.op == &ops[next]);
      CHECK_EQ(x.result, LEN);
      next++;
    }
  }
  while (next < N) {
    cp_completion x = take(p);
    CHECK(x.op == &ops[next]);
    CHECK_EQ(x.result, LEN);
    next++;
  }
  for (int i = 0; i < N; i++)
    for (int k = 0; k < LEN; k += 4096)
      CHECK_EQ(in[(size_t)i * LEN + k], 'a' + i);
  closesocket(s);
  closesocket(c);
  settled(p);
  cp_port_destroy(p);
}

static void test_pooled(void) {
  cp_port *p = new_port(1); /* one buffer: the second receive must wait for it */
  SOCKET s1, c1, s2, c2;
  pair(p, &s1, &c1);
  pair(p, &s2, &c2);
  cp_op r1, r2;
  CHECK_EQ(cp_port_recv_pooled(p, s1, &r1), 0);
  CHECK_EQ(cp_port_recv_pooled(p, s2, &r2), 0);
  no_completion(p, 100); /* idle: nothing, and no buffer held */
  CHECK_EQ(send(c1, "one", 3, 0), 3);
  cp_completion x = take(p);
  CHECK(x.op == &r1 && x.kind == CP_OP_RECV_POOLED && x.result == 3 && x.buf);
  CHECK(!memcmp(x.buf, "one", 3));
  void *held = x.buf;
  CHECK_EQ(send(c2, "two", 3, 0), 3);
  no_completion(p, 200); /* r2 is starved */
  cp_port_stats st;
  cp_port_get_stats(p, &st);
  CHECK_EQ(st.buf_waits, 1);
  cp_port_buf_release(p, held);
  x = take(p);
  CHECK(x.op == &r2 && x.result == 3 && !memcmp(x.buf, "two", 3));
  cp_port_buf_release(p, x.buf);
  /* EOF: 0 and no buffer. */
  CHECK_EQ(cp_port_recv_pooled(p, s1, &r1), 0);
  shutdown(c1, SD_SEND);
  x = take(p);
  CHECK(x.op == &r1 && x.result == 0 && x.buf == NULL);
  cp_port_buf_release(p, (char *)0x1234); /* not ours: ignored */
  closesocket(s1);
  closesocket(c1);
  closesocket(s2);
  closesocket(c2);
  settled(p);
  cp_port_destroy(p);
}

static void test_disconnect(void) {
  cp_port *p = new_port(0);
  SOCKET s, c;
  pair(p, &s, &c);
  static char big[1 << 20];
  memset(big, 'x', sizeof big);
  cp_buf v = cp_buf_init(big, sizeof big);
  cp_op so, dop, ro;
  CHECK_EQ(cp_port_send(p, s, &so, &v, 1), 0);
  CHECK_EQ(cp_port_disconnect(p, s, &dop, CP_SHUT_WR), 0); /* after the send */
  /* The peer gets every byte, then EOF; the port is polled meanwhile (the disconnect starts
   * when the send's completion is processed, as on Linux). */
  CHECK_EQ(cp_port_disassociate(p, c), 0);
  size_t got = 0;
  char buf[65536];
  int seen = 0;
  cp_completion x;
  for (;;) {
    int n = recv(c, buf, sizeof buf, 0);
    if (n == 0)
      break;
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    CHECK_EQ(WSAGetLastError(), WSAEWOULDBLOCK);
    if (cp_port_wait(p, &x, 1, 10) == 1) {
      if (x.op == &so) {
        CHECK(!(seen & 2));
        CHECK_EQ(x.result, sizeof big);
        seen |= 1;
      } else {
        CHECK(x.op == &dop && x.kind == CP_OP_DISCONNECT && x.result == 0);
        seen |= 2;
      }
    }
  }
  CHECK_EQ(got, sizeof big);
  while (seen != 3) {
    x = take(p);
    if (x.op == &so) {
      CHECK(!(seen & 2));
      CHECK_EQ(x.result, sizeof big);
      seen |= 1;
    } else {
      CHECK(x.op == &dop && x.kind == CP_OP_DISCONNECT && x.result == 0);
      seen |= 2;
    }
  }
  closesocket(s);
  closesocket(c);

  /* CP_SHUT_RDWR ends a pending receive with 0. */
  pair(p, &s, &c);
  char rb[8];
  cp_buf rv = cp_buf_init(rb, sizeof rb);
  CHECK_EQ(cp_port_recv(p, s, &ro, &rv, 1), 0);
  no_completion(p, 50);
  CHECK_EQ(cp_port_disconnect(p, s, &dop, CP_SHUT_RDWR), 0);
  seen = 0;
  for (int i = 0; i < 2; i++) {
    x = take(p);
    if (x.op == &ro) {
      CHECK_EQ(x.result, 0);
      seen |= 1;
    } else {
      CHECK(x.op == &dop && x.result == 0);
      seen |= 2;
    }
  }
  CHECK_EQ(seen, 3);
  closesocket(s);
  closesocket(c);
  settled(p);
  cp_port_destroy(p);
}

static void test_cancel(void) {
  cp_port *p = new_port(0);
  SOCKET s, c;
  pair(p, &s, &c);
  char b[3][8];
  cp_buf v[3] = {cp_buf_init(b[0], 8), cp_buf_init(b[1], 8), cp_buf_init(b[2], 8)};
  cp_op r[3];
  for (int i = 0; i < 3; i++)
    CHECK_EQ(cp_port_recv(p, s, &r[i], &v[i], 1), 0);
  CHECK_EQ(cp_port_cancel(p, s), 0);
  for (int i = 0; i < 3; i++) { /* each once, in start order */
    cp_completion x = take(p);
    CHECK(x.op == &r[i]);
    CHECK_EQ(x.result, CP_ECANCELED);
  }
  no_completion(p, 50);
  CHECK_EQ(cp_port_cancel(p, s), 0); /* nothing pending: still 0 */

  /* One op of two: the first is cancelled, the second takes the data. */
  CHECK_EQ(cp_port_recv(p, s, &r[0], &v[0], 1), 0);
  CHECK_EQ(cp_port_recv(p, s, &r[1], &v[1], 1), 0);
  CHECK_EQ(cp_port_cancel_op(p, &r[0]), 0);
  cp_completion x = take(p);
  CHECK(x.op == &r[0] && x.result == CP_ECANCELED);
  CHECK_EQ(cp_port_cancel_op(p, &r[0]), CP_ENOENT);
  CHECK_EQ(send(c, "data", 4, 0), 4);
  x = take(p);
  CHECK(x.op == &r[1] && x.result == 4 && !memcmp(b[1], "data", 4));
  CHECK_EQ(cp_port_cancel_op(p, &r[1]), CP_ENOENT);

  /* The second of two queued: it is cancelled when it comes up, the first is not. */
  CHECK_EQ(cp_port_recv(p, s, &r[0], &v[0], 1), 0);
  CHECK_EQ(cp_port_recv(p, s, &r[1], &v[1], 1), 0);
  CHECK_EQ(cp_port_cancel_op(p, &r[1]), 0);
  CHECK_EQ(send(c, "more", 4, 0), 4);
  x = take(p);
  CHECK(x.op == &r[0] && x.result == 4);
  x = take(p);
  CHECK(x.op == &r[1] && x.result == CP_ECANCELED);

  /* Disassociate with a receive pending: it is cancelled, once. */
  CHECK_EQ(cp_port_recv(p, s, &r[2], &v[2], 1), 0);
  CHECK_EQ(cp_port_disassociate(p, s), 0);
  x = take(p);
  CHECK(x.op == &r[2] && x.result == CP_ECANCELED);
  no_completion(p, 50);
  closesocket(s);
  closesocket(c);
  settled(p);
  cp_port_destroy(p);
}

static void test_timers_posts(void) {
  cp_port *p = new_port(0);
  cp_op t1, t2;
  CHECK_EQ(cp_port_timeout(p, &t1, (void *)5, 30), 0);
  CHECK_EQ(cp_port_timeout(p, &t2, (void *)6, 60000), 0);
  cp_completion x = take(p);
  CHECK(x.op == &t1 && x.kind == CP_OP_TIMEOUT && x.result == 0 && x.key == (void *)5);
  CHECK_EQ(cp_port_cancel_op(p, &t1), CP_ENOENT);
  CHECK_EQ(cp_port_cancel_op(p, &t2), 0);
  x = take(p);
  CHECK(x.op == &t2 && x.result == CP_ECANCELED && x.key == (void *)6);
  CHECK_EQ(cp_port_cancel_op(p, &t2), CP_ENOENT);
  cp_op po;
  CHECK_EQ(cp_port_post(p, (void *)7, &po, -123), 0);
  CHECK_EQ(cp_port_post(p, (void *)8, NULL, 99), 0);
  x = take(p);
  CHECK(x.op == &po && x.key == (void *)7 && x.result == -123 && x.kind == CP_OP_POST);
  x = take(p);
  CHECK(x.op == NULL && x.key == (void *)8 && x.result == 99);
  settled(p);
  cp_port_destroy(p);
}

/* Posts from several threads, taken by several waiters: each exactly once. */
enum { POSTERS = 3, PER = 2000, WAITERS = 3 };
static cp_port *g_port;
static volatile LONG g_seen[POSTERS * PER];
static volatile LONG g_total;

static DWORD WINAPI poster(void *arg) {
  intptr_t id = (intptr_t)arg;
  for (int i = 0; i < PER; i++)
    CHECK_EQ(cp_port_post(g_port, NULL, NULL, id * PER + i), 0);
  return 0;
}

static DWORD WINAPI waiter(void *arg) {
  (void)arg;
  cp_completion c[16];
  for (;;) {
    int n = cp_port_wait(g_port, c, 16, -1);
    if (n == CP_PORT_CLOSED)
      return 0;
    CHECK(n >= 1);
    for (int i = 0; i < n; i++) {
      CHECK_EQ(InterlockedIncrement(&g_seen[c[i].result]), 1);
      InterlockedIncrement(&g_total);
    }
  }
}

static void test_posts_mt_and_close(void) {
  g_port = new_port(0);
  HANDLE w[WAITERS], q[POSTERS];
  for (int i = 0; i < WAITERS; i++)
    w[i] = CreateThread(NULL, 0, waiter, NULL, 0, NULL);
  for (intptr_t i = 0; i < POSTERS; i++)
    q[i] = CreateThread(NULL, 0, poster, (void *)i, 0, NULL);
  CHECK_EQ(WaitForMultipleObjects(POSTERS, q, TRUE, 30000), WAIT_OBJECT_0);
  while (g_total < POSTERS * PER)
    Sleep(5);
  /* Every waiter is blocked now; close wakes each of them. */
  cp_port_close(g_port);
  CHECK_EQ(WaitForMultipleObjects(WAITERS, w, TRUE, 10000), WAIT_OBJECT_0);
  cp_completion c;
  CHECK_EQ(cp_port_wait(g_port, &c, 1, -1), CP_PORT_CLOSED);
  cp_op op;
  CHECK_EQ(cp_port_post(g_port, NULL, NULL, 0), CP_ESHUTDOWN);
  CHECK_EQ(cp_port_timeout(g_port, &op, NULL, 1), CP_ESHUTDOWN);
  CHECK_EQ(g_total, POSTERS * PER);
  for (int i = 0; i < WAITERS; i++)
    CloseHandle(w[i]);
  for (int i = 0; i < POSTERS; i++)
    CloseHandle(q[i]);
  cp_port_destroy(g_port);
}

static void test_connect_refused(void) {
  cp_port *p = new_port(0);
  struct sockaddr_in a;
  SOCKET l = listener(&a);
  closesocket(l); /* nobody listens there now */
  SOCKET c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  CHECK_EQ(cp_port_associate(p, c, NULL), 0);
  cp_op op;
  CHECK_EQ(cp_port_connect(p, c, &op, (struct sockaddr *)&a, sizeof a), 0);
  cp_completion x = take(p);
  CHECK(x.op == &op && x.result == CP_ECONNREFUSED);
  closesocket(c);
  settled(p);
  cp_port_destroy(p);
}

/* The peer resets while a large send is in flight: one completion, an error. */
static void test_reset_mid_send(void) {
  cp_port *p = new_port(0);
  SOCKET s, c;
  pair(p, &s, &c);
  static char big[8 << 20];
  cp_buf v = cp_buf_init(big, sizeof big);
  cp_op so;
  CHECK_EQ(cp_port_send(p, s, &so, &v, 1), 0);
  CHECK_EQ(cp_port_disassociate(p, c), 0);
  struct linger lg = {1, 0};
  setsockopt(c, SOL_SOCKET, SO_LINGER, (char *)&lg, sizeof lg);
  closesocket(c); /* RST */
  cp_completion x = take(p);
  CHECK(x.op == &so);
  CHECK(x.result == CP_ECONNRESET || x.result == CP_ECONNABORTED || x.result == CP_EPIPE ||
        x.result == (int64_t)sizeof big);
  no_completion(p, 50);
  closesocket(s);
  settled(p);
  cp_port_destroy(p);
}

/* Destroy with an accept, a receive, a pooled receive and a timer in flight. */
static void test_destroy_busy(void) {
  cp_port *p = new_port(0);
  SOCKET s, c;
  pair(p, &s, &c);
  struct sockaddr_in a;
  SOCKET l = listener(&a);
  CHECK_EQ(cp_port_associate(p, l, NULL), 0);
  cp_op aop, rop, pop, top;
  char b[8];
  cp_buf v = cp_buf_init(b, sizeof b);
  CHECK_EQ(cp_port_accept(p, l, &aop, NULL, NULL), 0);
  CHECK_EQ(cp_port_recv(p, s, &rop, &v, 1), 0);
  CHECK_EQ(cp_port_recv_pooled(p, c, &pop), 0);
  CHECK_EQ(cp_port_timeout(p, &top, NULL, 60000), 0);
  cp_port_destroy(p);
  closesocket(l);
  closesocket(s);
  closesocket(c);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {
      {"create", test_create},
      {"bad_input", test_bad_input},
      {"send_recv", test_send_recv},
      {"send_order", test_send_order},
      {"pooled", test_pooled},
      {"disconnect", test_disconnect},
      {"cancel", test_cancel},
      {"timers_posts", test_timers_posts},
      {"posts_mt_and_close", test_posts_mt_and_close},
      {"connect_refused", test_connect_refused},
      {"reset_mid_send", test_reset_mid_send},
      {"destroy_busy", test_destroy_busy},
  };
  const char *only = getenv("CPORT_TEST_ONLY");
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    if (only && strcmp(only, tests[i].name))
      continue;
    tests[i].fn();
    printf("win_iocp: %s ok\n", tests[i].name);
  }
  return 0;
}
