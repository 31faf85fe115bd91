/*
 * cport/version.h - which cport this is.
 *
 * The macros give the version of the headers a program was compiled with;
 * cp_version() and cp_version_string() that of the library it runs with
 * (the shared library may have been replaced since). Versions follow
 * semantic versioning; while the major is 0, a new minor may change the API
 * incompatibly (and then the shared library's SONAME changes with it).
 *
 * CMakeLists.txt reads the project's version from the three numbers below:
 * this file is the one place to change it.
 */
#ifndef CPORT_VERSION_H
#define CPORT_VERSION_H

#include "cport/export.h"

#define CPORT_VERSION_MAJOR 0
#define CPORT_VERSION_MINOR 2
#define CPORT_VERSION_PATCH 0

/* (major << 16) | (minor << 8) | patch: 0x000200 for 0.2.0; compares in order. */
#define CPORT_VERSION_HEX                                                                          \
  ((CPORT_VERSION_MAJOR << 16) | (CPORT_VERSION_MINOR << 8) | CPORT_VERSION_PATCH)

#define CPORT_VERSION_STRINGIFY_(x) #x
#define CPORT_VERSION_STRINGIFY(x) CPORT_VERSION_STRINGIFY_(x)
/* "0.2.0" */
#define CPORT_VERSION_STRING                                                                       \
  CPORT_VERSION_STRINGIFY(CPORT_VERSION_MAJOR)                                                     \
  "." CPORT_VERSION_STRINGIFY(CPORT_VERSION_MINOR) "." CPORT_VERSION_STRINGIFY(CPORT_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The version of the library the program runs with, packed as
 * CPORT_VERSION_HEX is: (major << 16) | (minor << 8) | patch. A program can
 * compare it with CPORT_VERSION_HEX to see that the headers it was compiled
 * with match. Any thread, any time, before or after any other call.
 */
CP_API unsigned cp_version(void);

/* The same as a string, "0.2.0" (CPORT_VERSION_STRING): static, never freed. */
CP_API const char *cp_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* CPORT_VERSION_H */
