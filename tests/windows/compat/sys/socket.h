/*
 * Stand-in <sys/socket.h> for the Windows build, until the portable API (issue 11: cp_socket_t,
 * cp_buf, CP_E*) replaces port.h's POSIX includes. Only what port.h and the Windows tests use.
 * Delete with tests/windows/compat/ once port.h includes no POSIX header.
 */
#ifndef CPORT_COMPAT_SYS_SOCKET_H
#define CPORT_COMPAT_SYS_SOCKET_H
#include <winsock2.h>
#include <ws2tcpip.h>

#include <errno.h>

#ifndef SHUT_WR
#define SHUT_RD SD_RECEIVE
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#endif
/* mingw's errno.h has no ESHUTDOWN (its ECONNRESET is Linux's ESHUTDOWN, 108). */
#ifndef ESHUTDOWN
#define ESHUTDOWN 1108
#endif
#endif
