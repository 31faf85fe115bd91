/* A forced backend that is unavailable is a clear error, never a silent
 * switch. On Linux io_uring is made unavailable for real, the way a
 * container's seccomp profile does: io_uring_setup fails with EPERM. On
 * Windows the unavailable ones are Linux's own (io_uring, epoll). */
#include "common/test.h"

#ifdef _WIN32
#define NATIVE CP_BACKEND_IOCP
/* Windows' counterpart of the child below: io_uring and epoll do not exist here, forced by
 * option or by CPORT_BACKEND they are unavailable (CP_ENODEV), never a silent switch to IOCP. */
static int unavailable(void) {
  cp_port *p = NULL;
  static const cp_backend linux_only[] = {CP_BACKEND_URING, CP_BACKEND_EPOLL};
  static const char *const names[] = {"uring", "epoll"};
  for (int i = 0; i < 2; i++) {
    cp_port_options o = {.backend = linux_only[i]};
    CHECK_EQ(cp_port_create(&p, &o), CP_ENODEV);
    CHECK(p == NULL);
    setenv("CPORT_BACKEND", names[i], 1);
    CHECK_EQ(cp_port_create(&p, NULL), CP_ENODEV);
    CHECK(p == NULL);
  }
  setenv("CPORT_BACKEND", "bogus", 1);
  CHECK_EQ(cp_port_create(&p, NULL), CP_EINVAL);
  CHECK(p == NULL);
  unsetenv("CPORT_BACKEND");
  CHECK_EQ(cp_port_create(&p, NULL), 0); /* auto: IOCP */
  CHECK_EQ(cp_port_backend(p), CP_BACKEND_IOCP);
  CHECK_EQ(cp_port_post(p, NULL, NULL, 5), 0);
  cp_completion c;
  CHECK_EQ(cp_port_wait(p, &c, 1, 1000), 1);
  CHECK_EQ(c.result, 5);
  cp_port_destroy(p);
  setenv("CPORT_BACKEND", "iocp", 1);
  CHECK_EQ(cp_port_create(&p, NULL), 0);
  CHECK_EQ(cp_port_backend(p), CP_BACKEND_IOCP);
  cp_port_destroy(p);
  unsetenv("CPORT_BACKEND");
  return 0;
}
#else
#define NATIVE CP_BACKEND_EPOLL
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static void block_io_uring(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
  CHECK_EQ(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
  CHECK_EQ(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
}

static int child(void) {
  block_io_uring();
  cp_port *p = NULL;
  cp_port_options o = {.backend = CP_BACKEND_URING};
  CHECK_EQ(cp_port_create(&p, &o), CP_ENODEV);
  CHECK(p == NULL);
  setenv("CPORT_BACKEND", "uring", 1);
  CHECK_EQ(cp_port_create(&p, NULL), CP_ENODEV);
  CHECK(p == NULL);
  setenv("CPORT_BACKEND", "bogus", 1);
  CHECK_EQ(cp_port_create(&p, NULL), CP_EINVAL);
  unsetenv("CPORT_BACKEND");
  CHECK_EQ(cp_port_create(&p, NULL), 0); /* auto: falls back */
  CHECK_EQ(cp_port_backend(p), CP_BACKEND_EPOLL);
  CHECK_EQ(cp_port_post(p, NULL, NULL, 5), 0);
  cp_completion c;
  CHECK_EQ(cp_port_wait(p, &c, 1, 1000), 1);
  cp_port_destroy(p);
  setenv("CPORT_BACKEND", "epoll", 1);
  CHECK_EQ(cp_port_create(&p, NULL), 0);
  CHECK_EQ(cp_port_backend(p), CP_BACKEND_EPOLL);
  cp_port_destroy(p);
  return 0;
}
#endif

int main(void) {
  test_begin("test_backend_forced", 60);
  /* An explicit option beats the environment, and a bad value is EINVAL. */
  cp_port *p = NULL;
  cp_port_options o = {.backend = NATIVE};
  CHECK_EQ(cp_port_create(&p, &o), 0);
  CHECK_EQ(cp_port_backend(p), NATIVE);
  cp_port_destroy(p);
  o.backend = (cp_backend)42;
  CHECK_EQ(cp_port_create(&p, &o), CP_EINVAL);
  CHECK(!strcmp(cp_backend_name(CP_BACKEND_URING), "uring"));
  CHECK(!strcmp(cp_backend_name(CP_BACKEND_EPOLL), "epoll"));
  CHECK(!strcmp(cp_backend_name(CP_BACKEND_IOCP), "iocp"));
  CHECK(!strcmp(cp_backend_name(CP_BACKEND_AUTO), "auto"));
  CHECK(!strcmp(cp_backend_name((cp_backend)42), "unknown"));
  /* the one parser of backend names */
  static const struct {
    const char *name;
    int rc;
    cp_backend b;
  } names[] = {{"auto", 0, CP_BACKEND_AUTO},   {"", 0, CP_BACKEND_AUTO},
               {"uring", 0, CP_BACKEND_URING}, {"io_uring", 0, CP_BACKEND_URING},
               {"epoll", 0, CP_BACKEND_EPOLL}, {"iocp", 0, CP_BACKEND_IOCP},
               {"EPOLL", CP_EINVAL, 99},       {"epoll ", CP_EINVAL, 99},
               {"bogus", CP_EINVAL, 99}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    cp_backend b = (cp_backend)99;
    CHECK_EQ(cp_backend_from_name(names[i].name, &b), names[i].rc);
    CHECK_EQ(b, names[i].b);
  }
  cp_backend b = CP_BACKEND_EPOLL;
  CHECK_EQ(cp_backend_from_name(NULL, &b), CP_EINVAL);
  CHECK_EQ(cp_backend_from_name("epoll", NULL), CP_EINVAL);
#ifdef _WIN32
  CHECK_EQ(unavailable(), 0);
#else
  /* IOCP is Windows' own: asked for here it is unavailable, not invalid */
  o.backend = CP_BACKEND_IOCP;
  CHECK_EQ(cp_port_create(&p, &o), CP_ENODEV);
  CHECK(p == NULL);
  /* The seccomp filter stays with a process: do it in a child. */
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0)
    _exit(child());
  int status;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
#endif
  return 0;
}
