/*
 * backend.c - the backends' names, one table for every platform (port.c on
 * Linux and iocp.c on Windows both use it).
 */
#include "cport/port.h"

#include <string.h>

const char *cp_backend_name(cp_backend b) {
  switch (b) {
  case CP_BACKEND_URING:
    return "uring";
  case CP_BACKEND_EPOLL:
    return "epoll";
  case CP_BACKEND_IOCP:
    return "iocp";
  case CP_BACKEND_AUTO:
    return "auto";
  }
  return "unknown";
}

int cp_backend_from_name(const char *name, cp_backend *out) {
  if (!name || !out)
    return CP_EINVAL;
  static const struct {
    const char *name;
    cp_backend backend;
  } names[] = {{"", CP_BACKEND_AUTO},       {"auto", CP_BACKEND_AUTO},
               {"uring", CP_BACKEND_URING}, {"io_uring", CP_BACKEND_URING},
               {"epoll", CP_BACKEND_EPOLL}, {"iocp", CP_BACKEND_IOCP}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(name, names[i].name)) {
      *out = names[i].backend;
      return 0;
    }
  return CP_EINVAL;
}
