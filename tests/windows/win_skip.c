/*
 * win_skip.c - FILE_SKIP_COMPLETION_PORT_ON_SUCCESS in the IOCP backend, measured by what it
 * saves, with it on and off (CPORT_IOCP_SKIP): one thread echoes MSGS messages of 64 bytes
 * between two sockets of one port (the client sends, the server receives and sends it back,
 * the client receives), every byte compared, every op completing exactly once. Printed per
 * message: GetQueuedCompletionStatusEx calls, kernel packets, ops that succeeded at once.
 * Asserted: what does not depend on timing - skip mode is set on the three sockets (on with
 * it, none without), and a 64-byte send on an idle loopback connection succeeds at once, so
 * in skip mode at least one op a message comes from the ready list, and none without.
 * Counts, not speed: no time measured under Wine says anything about Windows.
 */
#include "common/test.h"

#include "port/win32_internal.h"

#define MSGS 2000
#define SIZE 64

static cp_completion take(cp_port *p) {
  cp_completion c;
  CHECK_EQ(cp_port_wait(p, &c, 1, 5000), 1);
  return c;
}

/* srv accepted through the port, cli connected through it; both associated. */
static void pair(cp_port *p, SOCKET *srv, SOCKET *cli) {
  SOCKET l = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int alen = sizeof a;
  CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(l, 4) == 0);
  CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
  CHECK_EQ(cp_port_associate(p, l, (void *)9), 0);
  cp_op aop, cop;
  CHECK_EQ(cp_port_accept(p, l, &aop, NULL, NULL), 0);
  SOCKET c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  CHECK_EQ(cp_port_associate(p, c, (void *)2), 0);
  CHECK_EQ(cp_port_connect(p, c, &cop, (struct sockaddr *)&a, sizeof a), 0);
  SOCKET s = INVALID_SOCKET;
  for (int i = 0; i < 2; i++) {
    cp_completion x = take(p);
    if (x.op == &aop) {
      CHECK(x.result > 0);
      s = (SOCKET)x.result;
    } else {
      CHECK(x.op == &cop);
      CHECK_EQ(x.result, 0);
    }
  }
  CHECK(s != INVALID_SOCKET);
  CHECK_EQ(cp_port_disassociate(p, l), 0);
  closesocket(l);
  CHECK_EQ(cp_port_associate(p, s, (void *)1), 0);
  *srv = s;
  *cli = c;
}

/* What happened between two readings (the socket count is a total). */
static cp__iocp_counts since(const cp__iocp_counts *before, const cp__iocp_counts *after) {
  return (cp__iocp_counts){.skip = after->skip,
                           .gqcs = after->gqcs - before->gqcs,
                           .packets = after->packets - before->packets,
                           .inline_ok = after->inline_ok - before->inline_ok,
                           .wakes = after->wakes - before->wakes,
                           .skip_sockets = after->skip_sockets};
}

static cp__iocp_counts run(const char *skip) {
  CHECK(_putenv_s("CPORT_IOCP_SKIP", skip) == 0);
  cp_port *p;
  cp_port_options o = {.concurrency = 1};
  CHECK_EQ(cp_port_create(&p, &o), 0);
  SOCKET srv, cli;
  pair(p, &srv, &cli);
  cp__iocp_counts before;
  cp__iocp_get_counts(p, &before);

  static uint8_t out[SIZE], mid[SIZE], back[SIZE];
  cp_op csend, crecv, srecv, ssend;
  cp_buf bout = cp_buf_init(out, SIZE), bmid = cp_buf_init(mid, SIZE),
         bback = cp_buf_init(back, SIZE);
  CHECK_EQ(cp_port_recv(p, srv, &srecv, &bmid, 1), 0);
  for (int m = 0; m < MSGS; m++) {
    for (int j = 0; j < SIZE; j++)
      out[j] = (uint8_t)(m * 7 + j);
    CHECK_EQ(cp_port_recv(p, cli, &crecv, &bback, 1), 0);
    CHECK_EQ(cp_port_send(p, cli, &csend, &bout, 1), 0);
    /* Four completions a message, each exactly once. */
    bool sent = false, echoed = false, got = false, back_in = false;
    size_t in_srv = 0, in_cli = 0;
    while (!(sent && echoed && back_in)) {
      cp_completion c = take(p);
      CHECK(c.result > 0);
      if (c.op == &csend) {
        CHECK(!sent);
        CHECK_EQ(c.result, SIZE);
        sent = true;
      } else if (c.op == &srecv) {
        CHECK(!got);
        in_srv += (size_t)c.result;
        if (in_srv < SIZE) { /* the rest of the message */
          cp_buf rest = cp_buf_init(mid + in_srv, SIZE - in_srv);
          CHECK_EQ(cp_port_recv(p, srv, &srecv, &rest, 1), 0);
          continue;
        }
        got = true;
        CHECK(!memcmp(mid, out, SIZE));
        CHECK_EQ(cp_port_send(p, srv, &ssend, &bmid, 1), 0);
      } else if (c.op == &ssend) {
        CHECK(got && !echoed);
        CHECK_EQ(c.result, SIZE);
        echoed = true;
        CHECK_EQ(cp_port_recv(p, srv, &srecv, &bmid, 1), 0); /* the next message */
      } else {
        CHECK(c.op == &crecv && !back_in);
        in_cli += (size_t)c.result;
        if (in_cli < SIZE) {
          cp_buf rest = cp_buf_init(back + in_cli, SIZE - in_cli);
          CHECK_EQ(cp_port_recv(p, cli, &crecv, &rest, 1), 0);
          continue;
        }
        back_in = true;
        CHECK(!memcmp(back, out, SIZE));
      }
    }
  }
  cp__iocp_counts after;
  cp__iocp_get_counts(p, &after);
  /* The server's last receive: cancelled, once. */
  CHECK_EQ(cp_port_cancel_op(p, &srecv), 0);
  cp_completion c = take(p);
  CHECK(c.op == &srecv && c.result == CP_ECANCELED);
  cp_port_stats st;
  cp_port_get_stats(p, &st);
  CHECK_EQ(st.started, st.completed);
  closesocket(srv);
  closesocket(cli);
  cp_port_destroy(p);
  cp__iocp_counts d = since(&before, &after);
  printf("win_skip: CPORT_IOCP_SKIP=%s: %d echoes of %d bytes: per message %.2f "
         "GetQueuedCompletionStatusEx calls, %.2f kernel packets, %.2f ops done at once "
         "(ready list), %llu wake-ups; %llu sockets in skip mode\n",
         skip, MSGS, SIZE, (double)d.gqcs / MSGS, (double)d.packets / MSGS,
         (double)d.inline_ok / MSGS, (unsigned long long)d.wakes,
         (unsigned long long)d.skip_sockets);
  return d;
}

/* The server side only, on `workers` threads: the client is a plain blocking socket of the
 * main thread; the server echoes with one op at a time (receive, then send what came, then
 * receive again), so whichever worker takes a completion starts the next op. With a second
 * worker blocked in the kernel when the send succeeds at once, the send's completion needs a
 * wake-up packet. */
static cp_port *wport;
static int wsrv;
static cp_op wrecv, wsend;
static uint8_t wbuf[SIZE];
static cp_buf wiov;
static atomic_int warmed; /* receives the workers started */

static void *echo_worker(void *arg) {
  (void)arg;
  cp_completion ev[4];
  for (;;) {
    int n = cp_port_wait(wport, ev, 4, -1);
    if (n == CP_PORT_CLOSED)
      return NULL;
    CHECK(n > 0);
    for (int i = 0; i < n; i++) {
      if (ev[i].op == &wrecv) {
        if (ev[i].result == CP_ECANCELED)
          continue; /* the end */
        CHECK(ev[i].result > 0);
        wiov = cp_buf_init(wbuf, (size_t)ev[i].result);
        CHECK_EQ(cp_port_send(wport, wsrv, &wsend, &wiov, 1), 0);
      } else {
        CHECK(ev[i].op == &wsend && ev[i].result == (int64_t)wiov.len);
        wiov = cp_buf_init(wbuf, SIZE);
        CHECK_EQ(cp_port_recv(wport, wsrv, &wrecv, &wiov, 1), 0);
        atomic_fetch_add(&warmed, 1);
      }
    }
  }
}

static cp__iocp_counts run_workers(const char *skip, int workers) {
  CHECK(_putenv_s("CPORT_IOCP_SKIP", skip) == 0);
  CHECK_EQ(cp_port_create(&wport, &(cp_port_options){.concurrency = (unsigned)workers}), 0);
  atomic_store(&warmed, 0);
  struct sockaddr_in addr;
  int lfd = test_listener(&addr), cli;
  test_pair(lfd, &addr, &cli, &wsrv);
  close(lfd);
  CHECK_EQ(cp_port_associate(wport, wsrv, NULL), 0);
  cp__iocp_counts before;
  cp__iocp_get_counts(wport, &before);
  pthread_t th[4];
  for (int i = 0; i < workers; i++)
    CHECK(pthread_create(&th[i], NULL, echo_worker, NULL) == 0);
  wiov = cp_buf_init(wbuf, SIZE);
  CHECK_EQ(cp_port_recv(wport, wsrv, &wrecv, &wiov, 1), 0);
  uint8_t out[SIZE], back[SIZE];
  for (int m = 0; m < MSGS; m++) {
    for (int j = 0; j < SIZE; j++)
      out[j] = (uint8_t)(m * 13 + j);
    test_send_all(cli, out, SIZE);
    test_recv_all(cli, back, SIZE);
    CHECK(!memcmp(back, out, SIZE));
  }
  cp__iocp_counts after;
  cp__iocp_get_counts(wport, &after);
  /* The echo may arrive before its send's completion is handled: wait for the last receive. */
  while (atomic_load(&warmed) != MSGS)
    Sleep(1);
  CHECK_EQ(cp_port_cancel(wport, wsrv), 0);
  cp_port_stats st;
  do {
    Sleep(1);
    cp_port_get_stats(wport, &st);
  } while (st.completed != st.started);
  cp_port_close(wport);
  for (int i = 0; i < workers; i++)
    pthread_join(th[i], NULL);
  close(cli);
  close(wsrv);
  cp_port_destroy(wport);
  cp__iocp_counts d = since(&before, &after);
  printf("win_skip: CPORT_IOCP_SKIP=%s, %d worker(s), the server side of %d echoes: per message "
         "%.2f kernel packets, %.2f ops done at once, %.2f wake-up packets\n",
         skip, workers, MSGS, (double)d.packets / MSGS, (double)d.inline_ok / MSGS,
         (double)d.wakes / MSGS);
  return d;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  cp__iocp_counts off = run("0"), on = run("1");
  CHECK(!off.skip && on.skip);
  CHECK_EQ(off.skip_sockets, 0);
  CHECK_EQ(off.inline_ok, 0);
  CHECK_EQ(on.skip_sockets, 3); /* the listener, the client, the accepted socket */
  CHECK(on.inline_ok >= MSGS);  /* the client's sends at least */
  CHECK(on.packets < off.packets);
  CHECK_EQ(on.wakes, 0); /* one thread: it is never blocked while it starts an op */
  /* With workers: the counts that do not depend on timing. */
  cp__iocp_counts w1off = run_workers("0", 1), w1 = run_workers("1", 1);
  cp__iocp_counts w2off = run_workers("0", 2), w2 = run_workers("1", 2);
  CHECK_EQ(w1off.inline_ok + w1off.wakes + w2off.inline_ok + w2off.wakes, 0);
  CHECK(w1.inline_ok >= MSGS && w2.inline_ok >= MSGS); /* every echo's send */
  CHECK_EQ(w1.wakes, 0); /* the only worker starts the send: nobody to wake */
  /* Bad values are refused. */
  CHECK(_putenv_s("CPORT_IOCP_SKIP", "yes") == 0);
  cp_port *p;
  CHECK_EQ(cp_port_create(&p, NULL), CP_EINVAL);
  return 0;
}
