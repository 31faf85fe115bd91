/*
 * cport/error.h - cport's error codes.
 *
 * Every cport function that can fail returns 0 (or a count) on success and
 * one of these negative codes on failure, and every failed completion
 * carries one in cp_completion.result. On Linux (and every POSIX system)
 * each equals -errno, as libuv's UV_E* do, so -EINVAL and CP_EINVAL are the
 * same number there. On Windows they are fixed values (the Linux numbers)
 * that the Windows backend maps Winsock and system errors to, because
 * mingw's errno.h lacks some (ESHUTDOWN) and numbers others differently
 * (ECONNRESET): compare with the CP_E* names, never with errno values, and
 * a program is portable.
 */
#ifndef CPORT_ERROR_H
#define CPORT_ERROR_H

#include "cport/export.h"

#ifdef _WIN32
#define CP__ERR(name, linux_value) (-(linux_value))
#else
#include <errno.h>
#define CP__ERR(name, linux_value) (-(name))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define CP_EPERM CP__ERR(EPERM, 1)                      /* operation not permitted */
#define CP_ENOENT CP__ERR(ENOENT, 2)                    /* not found (e.g. op not pending) */
#define CP_EINTR CP__ERR(EINTR, 4)                      /* interrupted */
#define CP_EIO CP__ERR(EIO, 5)                          /* I/O error */
#define CP_ENXIO CP__ERR(ENXIO, 6)                      /* no such device or address */
#define CP_EBADF CP__ERR(EBADF, 9)                      /* bad socket / not associated */
#define CP_EAGAIN CP__ERR(EAGAIN, 11)                   /* try again */
#define CP_ENOMEM CP__ERR(ENOMEM, 12)                   /* out of memory */
#define CP_EACCES CP__ERR(EACCES, 13)                   /* permission denied */
#define CP_EFAULT CP__ERR(EFAULT, 14)                   /* bad address */
#define CP_EBUSY CP__ERR(EBUSY, 16)                     /* resource busy */
#define CP_EEXIST CP__ERR(EEXIST, 17)                   /* already exists */
#define CP_ENODEV CP__ERR(ENODEV, 19)                   /* backend not available here */
#define CP_EINVAL CP__ERR(EINVAL, 22)                   /* invalid argument */
#define CP_ENFILE CP__ERR(ENFILE, 23)                   /* too many open files (system) */
#define CP_EMFILE CP__ERR(EMFILE, 24)                   /* too many open files (process) */
#define CP_ENOSPC CP__ERR(ENOSPC, 28)                   /* no space left */
#define CP_EPIPE CP__ERR(EPIPE, 32)                     /* broken pipe: peer gone, send failed */
#define CP_ERANGE CP__ERR(ERANGE, 34)                   /* out of range */
#define CP_ENOSYS CP__ERR(ENOSYS, 38)                   /* not implemented */
#define CP_ENOTSOCK CP__ERR(ENOTSOCK, 88)               /* not a socket */
#define CP_EMSGSIZE CP__ERR(EMSGSIZE, 90)               /* message too long */
#define CP_EPROTONOSUPPORT CP__ERR(EPROTONOSUPPORT, 93) /* protocol not supported */
#define CP_EOPNOTSUPP CP__ERR(EOPNOTSUPP, 95)           /* operation not supported */
#define CP_EAFNOSUPPORT CP__ERR(EAFNOSUPPORT, 97)       /* address family not supported */
#define CP_EADDRINUSE CP__ERR(EADDRINUSE, 98)           /* address in use */
#define CP_EADDRNOTAVAIL CP__ERR(EADDRNOTAVAIL, 99)     /* address not available */
#define CP_ENETDOWN CP__ERR(ENETDOWN, 100)              /* network down */
#define CP_ENETUNREACH CP__ERR(ENETUNREACH, 101)        /* network unreachable */
#define CP_ECONNABORTED CP__ERR(ECONNABORTED, 103)      /* connection aborted */
#define CP_ECONNRESET CP__ERR(ECONNRESET, 104)          /* connection reset by peer */
#define CP_ENOBUFS CP__ERR(ENOBUFS, 105)                /* no buffer space */
#define CP_EISCONN CP__ERR(EISCONN, 106)                /* already connected */
#define CP_ENOTCONN CP__ERR(ENOTCONN, 107)              /* not connected */
#define CP_ESHUTDOWN CP__ERR(ESHUTDOWN, 108)            /* the port (or socket) was shut down */
#define CP_ETIMEDOUT CP__ERR(ETIMEDOUT, 110)            /* timed out */
#define CP_ECONNREFUSED CP__ERR(ECONNREFUSED, 111)      /* connection refused */
#define CP_EHOSTUNREACH CP__ERR(EHOSTUNREACH, 113)      /* host unreachable */
#define CP_EALREADY CP__ERR(EALREADY, 114)              /* already in progress */
#define CP_EINPROGRESS CP__ERR(EINPROGRESS, 115)        /* in progress */
#define CP_ECANCELED CP__ERR(ECANCELED, 125)            /* cancelled */

/*
 * A static, human-readable message for a cport error code (negative) or an
 * errno value (positive; same meaning on POSIX). Never NULL: unknown codes
 * give "Unknown error". Any thread.
 */
CP_API const char *cp_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* CPORT_ERROR_H */
