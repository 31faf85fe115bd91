/*
 * probe.h - what the Windows probes share (header-only). A probe is a small program that prints
 * what the system it runs on does with one Winsock/IOCP call, one "probe: ..." line per fact,
 * and exits 0 whatever it observed (it reports, it does not judge). They document where Wine
 * differs from Windows (docs/windows.md), and what the IOCP backend relies on.
 */
#ifndef CPORT_PROBE_H
#define CPORT_PROBE_H

#include <mswsock.h>
#include <windows.h>
#include <winsock2.h>
#include <ws2tcpip.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_FAIL(...)                                                                            \
  do {                                                                                             \
    fprintf(stderr, "probe: setup failed at %s:%d: ", __FILE__, __LINE__);                         \
    fprintf(stderr, __VA_ARGS__);                                                                  \
    fprintf(stderr, " (WSA %d, Win32 %lu)\n", WSAGetLastError(), GetLastError());                  \
    exit(2);                                                                                       \
  } while (0)
#define PROBE_OK(cond)                                                                             \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      PROBE_FAIL("%s", #cond);                                                                     \
  } while (0)

static LPFN_ACCEPTEX probe_acceptex;
static LPFN_CONNECTEX probe_connectex;
static LPFN_DISCONNECTEX probe_disconnectex;
static LPFN_GETACCEPTEXSOCKADDRS probe_getacceptexsockaddrs;

static inline void *probe_ext(SOCKET s, GUID g) {
  void *fn = NULL;
  DWORD n = 0;
  PROBE_OK(WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &g, sizeof g, &fn, sizeof fn, &n, NULL,
                    NULL) == 0);
  return fn;
}

static inline SOCKET probe_socket(void) {
  SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
  PROBE_OK(s != INVALID_SOCKET);
  return s;
}

/* Winsock up, the extension functions loaded. */
static inline void probe_init(void) {
  WSADATA wd;
  PROBE_OK(WSAStartup(MAKEWORD(2, 2), &wd) == 0);
  SOCKET s = probe_socket();
  probe_acceptex = (LPFN_ACCEPTEX)probe_ext(s, (GUID)WSAID_ACCEPTEX);
  probe_connectex = (LPFN_CONNECTEX)probe_ext(s, (GUID)WSAID_CONNECTEX);
  probe_disconnectex = (LPFN_DISCONNECTEX)probe_ext(s, (GUID)WSAID_DISCONNECTEX);
  probe_getacceptexsockaddrs =
      (LPFN_GETACCEPTEXSOCKADDRS)probe_ext(s, (GUID)WSAID_GETACCEPTEXSOCKADDRS);
  closesocket(s);
}

/* A listening socket on 127.0.0.1 at a free port; its address in *a. */
static inline SOCKET probe_listen(struct sockaddr_in *a) {
  SOCKET l = probe_socket();
  *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int alen = sizeof *a;
  PROBE_OK(bind(l, (struct sockaddr *)a, sizeof *a) == 0);
  PROBE_OK(listen(l, 16) == 0);
  PROBE_OK(getsockname(l, (struct sockaddr *)a, &alen) == 0);
  return l;
}

/* A connected pair over loopback with plain calls: *srv (accepted) and *cli. Both overlapped. */
static inline void probe_pair(SOCKET *srv, SOCKET *cli) {
  struct sockaddr_in a;
  SOCKET l = probe_listen(&a);
  *cli = probe_socket();
  PROBE_OK(connect(*cli, (struct sockaddr *)&a, sizeof a) == 0);
  *srv = accept(l, NULL, NULL);
  PROBE_OK(*srv != INVALID_SOCKET);
  closesocket(l);
}

static inline HANDLE probe_iocp(void) {
  HANDLE h = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
  PROBE_OK(h != NULL);
  return h;
}

static inline void probe_assoc(HANDLE iocp, SOCKET s, ULONG_PTR key) {
  PROBE_OK(CreateIoCompletionPort((HANDLE)s, iocp, key, 0) == iocp);
}

/* One completion within ms: 1 and its fields, or 0 on timeout (*err = GetLastError()). */
static inline int probe_take(HANDLE iocp, DWORD ms, OVERLAPPED **ov, DWORD *bytes, DWORD *err) {
  ULONG_PTR key;
  *ov = NULL;
  *bytes = 0;
  BOOL ok = GetQueuedCompletionStatus(iocp, bytes, &key, ov, ms);
  *err = ok ? 0 : GetLastError();
  return *ov != NULL || ok;
}

#endif
