/*
 * win32_internal.h - what the Windows files of the port layer share (iocp.c and
 * socket_win32.c): starting Winsock, and Winsock/Win32 errors as cport's codes.
 */
#ifndef CPORT_WIN32_INTERNAL_H
#define CPORT_WIN32_INTERNAL_H
#ifdef _WIN32
#include "cport/port.h"
#include "cport/socket.h"

#include <stdbool.h>
#include <stdint.h>

#include <windows.h>

/* WSAStartup(2.2), once per process (cport's business, never the user's). 0 or a code. */
int cp__winsock_start(void);

/* A Winsock (WSAE*) or Win32 (ERROR_*) error as cport's code (negative; CP_EIO if unknown). */
int cp__error_from_win(DWORD err);

/* cp_port_associate's check and mode: an open socket, made nonblocking. 0, CP_EBADF (not
 * open), CP_ENOTSOCK (a handle that is not a socket). */
int cp__socket_prepare(cp_socket_t sock);

/* Tests only (tests/windows/win_emfile.c): when set, cp_port_accept calls it before it creates
 * the socket to accept into; a Winsock error it returns (WSAEMFILE, WSAENOBUFS) stands for
 * WSASocketW's failure, 0 lets it go on. Windows has no descriptor limit a test could lower.
 * Set it before the port's first accept, clear it after its last. */
extern int (*cp__iocp_accept_fault)(void);

/* Tests and measurements only (tests/windows/win_skip.c): what the IOCP backend did on p since
 * its creation. skip: CPORT_IOCP_SKIP was not 0; gqcs: GetQueuedCompletionStatusEx calls;
 * packets: packets taken from the kernel port (an op's I/O, a post, an op finished in user
 * space; wake-ups and the close not counted); inline_ok:
 * ops that succeeded at once in skip mode (no packet: the ready list); wakes: wake-up packets
 * posted for the ready list; skip_sockets: associations that set the mode. */
typedef struct {
  bool skip;
  uint64_t gqcs, packets, inline_ok, wakes, skip_sockets;
} cp__iocp_counts;
void cp__iocp_get_counts(const cp_port *p, cp__iocp_counts *out);

#endif
#endif
