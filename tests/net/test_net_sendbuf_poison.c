/*
 * test_net_sendbuf_poison - a send buffer after its last reference.
 *
 * The per-thread cache hands the buffer let go of last out first, so a
 * write to a buffer after its last cp_sendbuf_unref would land in the next
 * reply. Under AddressSanitizer the library poisons a small buffer's bytes
 * from its last reference until it is handed out again:
 *
 *  1. Every build: a buffer let go of and asked for again (same size) is the
 *     same memory, with exactly the capacity asked for, and a new owner may
 *     write all of it.
 *  2. AddressSanitizer builds (Linux): in a child process each, a write
 *     after the last unref, a read after it, a write one byte past the
 *     capacity, and a write into a buffer kept and then handed out again
 *     but only after its new owner let go: the child is stopped with
 *     "use-after-poison" (exit status not 0). A child that uses a buffer
 *     handed out again within its capacity exits 0.
 */
#include "common/test.h"

#include "common/asan.h"

#if defined(CP__ASAN) && !defined(_WIN32)
#include <sys/wait.h>
#include <unistd.h>
#define DEATH_TESTS 1
#endif

static void reuse_same_memory(void) {
  cp_sendbuf *a = cp_sendbuf_alloc(100);
  CHECK(a != NULL);
  memset(cp_sendbuf_data(a), 'a', 100);
  uint8_t *was = cp_sendbuf_data(a);
  cp_sendbuf_unref(a);
  cp_sendbuf *b = cp_sendbuf_alloc(100);
  CHECK(b != NULL);
  CHECK(cp_sendbuf_data(b) == was); /* last in, first out */
  CHECK_EQ(cp_sendbuf_cap(b), 100);
  CHECK_EQ(cp_sendbuf_len(b), 0);
  memset(cp_sendbuf_data(b), 'b', 100);
  cp_sendbuf_set_len(b, 100);
  CHECK_EQ(cp_sendbuf_len(b), 100);
  cp_sendbuf_unref(b);
  /* a smaller request (at least half) reuses it too, with its own capacity */
  cp_sendbuf *c = cp_sendbuf_alloc(60);
  CHECK(c != NULL);
  CHECK(cp_sendbuf_data(c) == was);
  CHECK_EQ(cp_sendbuf_cap(c), 60);
  memset(cp_sendbuf_data(c), 'c', 60);
  cp_sendbuf_unref(c);
  CHECK_EQ(cp_sendbuf_outstanding(), 0);
}

#ifdef DEATH_TESTS
enum { WRITE_AFTER, READ_AFTER, PAST_CAP, AFTER_REUSE, REUSE_OK };

static volatile uint8_t sink;

static void child(int what) {
  cp_sendbuf *b = cp_sendbuf_alloc(64);
  uint8_t *d = cp_sendbuf_data(b);
  memset(d, 1, 64);
  switch (what) {
  case WRITE_AFTER:
    cp_sendbuf_unref(b);
    d[10] = 2;
    break;
  case READ_AFTER:
    cp_sendbuf_unref(b);
    sink = d[0];
    break;
  case PAST_CAP:
    d[64] = 2;
    break;
  case AFTER_REUSE: {
    cp_sendbuf_unref(b);
    cp_sendbuf *again = cp_sendbuf_alloc(64);
    if (cp_sendbuf_data(again) != d)
      _exit(3); /* not reused: nothing to test */
    memset(cp_sendbuf_data(again), 3, 64);
    cp_sendbuf_unref(again);
    d[0] = 4; /* the first owner's stale pointer */
    break;
  }
  case REUSE_OK: {
    cp_sendbuf_unref(b);
    cp_sendbuf *again = cp_sendbuf_alloc(64);
    memset(cp_sendbuf_data(again), 3, 64);
    sink = cp_sendbuf_data(again)[63];
    cp_sendbuf_unref(again);
    break;
  }
  }
  _exit(0);
}

/* Run child(what) in a process of its own: its exit status, and whether its
 * standard error names a use-after-poison. */
static int run_child(int what, bool *poison) {
  int pfd[2];
  CHECK_EQ(pipe(pfd), 0);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    dup2(pfd[1], 2);
    child(what);
  }
  close(pfd[1]);
  char out[16384];
  size_t n = 0;
  for (ssize_t r; n < sizeof out - 1 && (r = read(pfd[0], out + n, sizeof out - 1 - n)) != 0;)
    if (r > 0)
      n += (size_t)r;
    else if (errno != EINTR)
      break;
  out[n] = 0;
  close(pfd[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    CHECK_EQ(errno, EINTR);
  *poison = strstr(out, "use-after-poison") != NULL;
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void death_tests(void) {
  static const char *names[] = {"write after unref", "read after unref", "write past cap",
                                "stale write after reuse", "reuse within cap"};
  for (int what = WRITE_AFTER; what <= REUSE_OK; what++) {
    bool poison;
    int st = run_child(what, &poison);
    printf("  %s: status %d, use-after-poison %s\n", names[what], st, poison ? "yes" : "no");
    if (what == REUSE_OK) {
      CHECK_EQ(st, 0);
      CHECK(!poison);
    } else {
      CHECK(st != 0 && st != 3);
      CHECK(poison);
    }
  }
}
#endif

int main(void) {
  test_begin("test_net_sendbuf_poison", 60);
  reuse_same_memory();
#ifdef DEATH_TESTS
  death_tests();
#else
  printf("  (no AddressSanitizer: the poisoning checks are skipped)\n");
#endif
  return 0;
}
