/*
 * cport/stop.h: a wait with no request times out with 0; bad kinds are refused; a request from
 * another thread wakes a waiter without limit exactly with its kind; the first kind sticks. On
 * POSIX the request is a real SIGTERM to the process (not blocked in any thread), and a child
 * process checks SIGINT; on Windows the console's Ctrl+C is checked under Wine by
 * tests/windows/e2e_chat.sh (cport-server.exe), here cp_stop_request stands for it.
 */
#include "common/test.h"

#include <cport/stop.h>
#ifndef _WIN32
#include <sys/wait.h>
#endif

static atomic_int woke_with = -1;

static void *waiter(void *arg) {
  (void)arg;
  atomic_store(&woke_with, cp_stop_wait(-1)); /* without limit */
  return NULL;
}

static void ask_to_stop(int kind) {
#ifdef _WIN32
  CHECK_EQ(cp_stop_request(kind), 0);
#else
  CHECK_EQ(kill(getpid(), kind == CP_STOP_INTERRUPT ? SIGINT : SIGTERM), 0);
#endif
}

#ifndef _WIN32
/* SIGINT in a child of its own (the request is once per process). */
static void check_interrupt_in_child(void) {
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    if (cp_stop_install() != 0)
      _exit(2);
    kill(getpid(), SIGINT);
    _exit(cp_stop_wait(10000) == CP_STOP_INTERRUPT && cp_stop_requested() == CP_STOP_INTERRUPT ? 0
                                                                                               : 3);
  }
  int status = 0;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
}
#endif

int main(void) {
  test_begin("test_stop", 60);
  CHECK_EQ(cp_stop_requested(), 0);
  CHECK_EQ(cp_stop_wait(0), 0);
  uint64_t t0 = test_now_ms();
  CHECK_EQ(cp_stop_wait(50), 0);
  CHECK(test_now_ms() - t0 >= 45); /* it waited (a lower bound only) */
  CHECK_EQ(cp_stop_request(0), CP_EINVAL);
  CHECK_EQ(cp_stop_request(3), CP_EINVAL);
  CHECK_EQ(cp_stop_request(-1), CP_EINVAL);
  CHECK_EQ(cp_stop_requested(), 0);
#ifndef _WIN32
  check_interrupt_in_child();
#endif
  CHECK_EQ(cp_stop_install(), 0);
  CHECK_EQ(cp_stop_install(), 0); /* twice is fine */

  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, waiter, NULL), 0);
  test_sleep_ms(50); /* most likely asleep in the wait by now; either way it must wake */
  CHECK_EQ(atomic_load(&woke_with), -1);
  ask_to_stop(CP_STOP_TERMINATE);
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK_EQ(atomic_load(&woke_with), CP_STOP_TERMINATE);
  CHECK_EQ(cp_stop_requested(), CP_STOP_TERMINATE);

  /* Sticky: a later request of another kind changes nothing, and every wait returns at once. */
  ask_to_stop(CP_STOP_INTERRUPT);
  CHECK_EQ(cp_stop_request(CP_STOP_INTERRUPT), 0);
  CHECK_EQ(cp_stop_wait(-1), CP_STOP_TERMINATE);
  CHECK_EQ(cp_stop_wait(0), CP_STOP_TERMINATE);
  CHECK_EQ(cp_stop_requested(), CP_STOP_TERMINATE);
  printf("test_stop: ok\n");
  return 0;
}
