/*
 * error.c - cp_strerror: the same text for a cport code on every platform
 * (cport's own table), the C library's for any other errno value on POSIX.
 */
#define _GNU_SOURCE
#include "cport/error.h"

#include <string.h>

#define E(code, text)                                                                              \
  case (code):                                                                                     \
    return text;

static const char *cp_message(int err) {
  switch (err) {
    E(CP_EPERM, "Operation not permitted")
    E(CP_ENOENT, "No such file or directory")
    E(CP_EINTR, "Interrupted system call")
    E(CP_EIO, "Input/output error")
    E(CP_ENXIO, "No such device or address")
    E(CP_EBADF, "Bad file descriptor")
    E(CP_EAGAIN, "Resource temporarily unavailable")
    E(CP_ENOMEM, "Cannot allocate memory")
    E(CP_EACCES, "Permission denied")
    E(CP_EFAULT, "Bad address")
    E(CP_EBUSY, "Device or resource busy")
    E(CP_EEXIST, "File exists")
    E(CP_ENODEV, "No such device")
    E(CP_EINVAL, "Invalid argument")
    E(CP_ENFILE, "Too many open files in system")
    E(CP_EMFILE, "Too many open files")
    E(CP_ENOSPC, "No space left on device")
    E(CP_EPIPE, "Broken pipe")
    E(CP_ERANGE, "Numerical result out of range")
    E(CP_ENOSYS, "Function not implemented")
    E(CP_ENOTSOCK, "Socket operation on non-socket")
    E(CP_EMSGSIZE, "Message too long")
    E(CP_EPROTONOSUPPORT, "Protocol not supported")
    E(CP_EOPNOTSUPP, "Operation not supported")
    E(CP_EAFNOSUPPORT, "Address family not supported by protocol")
    E(CP_EADDRINUSE, "Address already in use")
    E(CP_EADDRNOTAVAIL, "Cannot assign requested address")
    E(CP_ENETDOWN, "Network is down")
    E(CP_ENETUNREACH, "Network is unreachable")
    E(CP_ECONNABORTED, "Software caused connection abort")
    E(CP_ECONNRESET, "Connection reset by peer")
    E(CP_ENOBUFS, "No buffer space available")
    E(CP_EISCONN, "Transport endpoint is already connected")
    E(CP_ENOTCONN, "Transport endpoint is not connected")
    E(CP_ESHUTDOWN, "Cannot send after transport endpoint shutdown")
    E(CP_ETIMEDOUT, "Connection timed out")
    E(CP_ECONNREFUSED, "Connection refused")
    E(CP_EHOSTUNREACH, "No route to host")
    E(CP_EALREADY, "Operation already in progress")
    E(CP_EINPROGRESS, "Operation now in progress")
    E(CP_ECANCELED, "Operation canceled")
  }
  return NULL;
}

const char *cp_strerror(int err) {
  if (err > 0)
    err = -err;
  if (err == 0)
    return "Success";
  const char *s = cp_message(err);
#ifndef _WIN32
  /* Any other errno value: strerrordesc_np (glibc 2.32+) returns static text
   * and NULL for unknown values (strerror may use a shared buffer). */
  if (!s)
    s = err > -4096 ? strerrordesc_np(-err) : NULL;
#endif
  return s ? s : "Unknown error";
}
