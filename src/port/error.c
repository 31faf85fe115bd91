/* error.c - cp_strerror. */
#define _GNU_SOURCE
#include "cport/port.h"

#include <string.h>

const char *cp_strerror(int err) {
  if (err < 0)
    err = -err;
  if (err == 0)
    return "Success";
  /* strerror() may use a shared buffer for unknown values; strerrordesc_np
   * (glibc 2.32+) returns static text and NULL for unknown ones. */
  const char *s = strerrordesc_np(err);
  return s ? s : "Unknown error";
}
