/*
 * socket_internal.h - the socket calls the engine (src/net) makes beyond cport/socket.h,
 * defined beside the public helpers (socket_posix.c on POSIX, socket_win32.c on Winsock), so
 * that the engine makes no system socket call of its own. Errors are CP_E* codes.
 */
#ifndef CPORT_SOCKET_INTERNAL_H
#define CPORT_SOCKET_INTERNAL_H

#include "cport/socket.h"

/* A nonblocking, non-inheritable TCP socket listening on addr (SO_REUSEADDR on POSIX,
 * SO_EXCLUSIVEADDRUSE on Windows: POSIX's bind rule), backlog <= 0 meaning the system's
 * maximum; *bound_port (if not NULL) gets the port it is bound to. 0 or a code, and nothing
 * is left open then. The caller owns the socket. */
int cp__socket_listen_addr(cp_socket_t *out, const struct sockaddr *addr, socklen_t len,
                           int backlog, uint16_t *bound_port);

/* shutdown(2) / shutdown(): how is CP_SHUT_WR, CP_SHUT_RDWR, or CP__SHUT_RD (ends pending
 * receives, sends no FIN). 0 or a code. */
#define CP__SHUT_RD 0
int cp__socket_shutdown(cp_socket_t sock, int how);

/* SO_LINGER on with a zero timeout: closing sock then resets the connection and drops what
 * it has not sent, at once, instead of leaving it to the kernel to deliver. 0 or a code. */
int cp__socket_abortive(cp_socket_t sock);

/* The peer's numeric address into host (hostlen >= 46: INET6_ADDRSTRLEN, always terminated)
 * and its port into *port. 0, or a code (not connected, not a socket) with host and *port
 * untouched. */
int cp__socket_peer(cp_socket_t sock, char *host, size_t hostlen, uint16_t *port);

#endif /* CPORT_SOCKET_INTERNAL_H */
