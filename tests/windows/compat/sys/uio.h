/* Stand-in <sys/uio.h> for the Windows build (see compat/sys/socket.h): struct iovec. */
#ifndef CPORT_COMPAT_SYS_UIO_H
#define CPORT_COMPAT_SYS_UIO_H
#include <stddef.h>
struct iovec {
  void *iov_base;
  size_t iov_len;
};
#ifndef IOV_MAX
#define IOV_MAX 1024
#endif
#endif
