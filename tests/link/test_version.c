/* The version: the macros agree with each other and with the project's
 * version (CMake passes it as CPORT_EXPECTED_VERSION), and the library
 * reports the version of the headers it was built from. */
#include <cport.h>

#include <stdio.h>
#include <string.h>

#ifndef CPORT_EXPECTED_VERSION
#error "CMake passes the project's version as CPORT_EXPECTED_VERSION"
#endif

#if CPORT_VERSION_HEX < 0x000200
#error "CPORT_VERSION_HEX does not work in #if, or the version went back"
#endif

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

int main(void) {
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", CPORT_VERSION_MAJOR, CPORT_VERSION_MINOR,
           CPORT_VERSION_PATCH);
  CHECK(!strcmp(CPORT_VERSION_STRING, want));
  CHECK(!strcmp(CPORT_VERSION_STRING, CPORT_EXPECTED_VERSION));
  CHECK(CPORT_VERSION_HEX ==
        (CPORT_VERSION_MAJOR << 16 | CPORT_VERSION_MINOR << 8 | CPORT_VERSION_PATCH));
  CHECK(cp_version() == CPORT_VERSION_HEX);
  CHECK(cp_version_string() != NULL && !strcmp(cp_version_string(), CPORT_VERSION_STRING));
  CHECK(cp_version_string() == cp_version_string()); /* static */
  printf("cport %s (0x%06x)\n", cp_version_string(), cp_version());
  return 0;
}
