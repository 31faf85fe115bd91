/* A program built against an installed cport by tests/link/test_install.sh: with pkg-config
 * (libcport.so and libcport.a) and with CMake's find_package (consumer/CMakeLists.txt). It
 * checks that the headers and the library it runs with are the same version, and runs the
 * port once: a timer and a posted completion, each taken back exactly as it was started. */
#include <cport.h>

#include <stdio.h>
#include <string.h>

static int fail(const char *what) {
  fprintf(stderr, "consumer: %s\n", what);
  return 1;
}

int main(void) {
  if (cp_version() != CPORT_VERSION_HEX || strcmp(cp_version_string(), CPORT_VERSION_STRING))
    return fail("the library is not the version of the headers");
  cp_port *port;
  int rc = cp_port_create(&port, NULL);
  if (rc) {
    fprintf(stderr, "consumer: cp_port_create: %s\n", cp_strerror(rc));
    return 1;
  }
  static int key;
  cp_op timer, post;
  if (cp_port_timeout(port, &timer, &key, 1) || cp_port_post(port, &key, &post, 42))
    return fail("cannot start the ops");
  int seen_timer = 0, seen_post = 0;
  while (seen_timer + seen_post < 2) {
    cp_completion c;
    if (cp_port_wait(port, &c, 1, 10000) != 1 || c.key != &key)
      return fail("no completion, or a wrong key");
    if (c.kind == CP_OP_TIMEOUT && c.op == &timer && c.result == 0)
      seen_timer++;
    else if (c.kind == CP_OP_POST && c.op == &post && c.result == 42)
      seen_post++;
    else
      return fail("a completion that was not started");
  }
  printf("consumer: cport %s, backend %s: timer and post completed\n", cp_version_string(),
         cp_backend_name(cp_port_backend(port)));
  cp_port_destroy(port);
  return 0;
}
