/* version.c - the library's version, from the headers it was built with. */
#include "cport/version.h"

unsigned cp_version(void) {
  return CPORT_VERSION_HEX;
}

const char *cp_version_string(void) {
  return CPORT_VERSION_STRING;
}
