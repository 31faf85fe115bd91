/* probe_gqcs.c - GetQueuedCompletionStatusEx takes several packets in one call and times out
 * with WAIT_TIMEOUT; N posted packets do NOT wake N waiters when each waiter may take several
 * at once - so a close packet must be passed on: each waiter that takes it posts it again
 * (how cport closes a port: every waiter, present and future, sees it); and what closing the
 * port handle does to a blocked waiter; and whether a port of concurrency 1 lets several busy
 * threads (that never block) run at once - it must not on Windows, Wine does not limit. */
#include "probe.h"

#define WAITERS 4
static HANDLE g_iocp;
static volatile LONG g_woken, g_closed_err;

static DWORD WINAPI waiter(void *arg) {
  (void)arg;
  OVERLAPPED_ENTRY e[4];
  ULONG n = 0;
  BOOL ok = GetQueuedCompletionStatusEx(g_iocp, e, 4, &n, 1500, FALSE);
  if (ok && n >= 1 && e[0].lpCompletionKey == 99)
    InterlockedIncrement(&g_woken);
  return 0;
}

/* The chained close: a waiter that takes the close packet posts it again for the next one. */
static DWORD WINAPI waiter_chain(void *arg) {
  (void)arg;
  OVERLAPPED_ENTRY e[4];
  ULONG n = 0;
  BOOL ok = GetQueuedCompletionStatusEx(g_iocp, e, 4, &n, 5000, FALSE);
  for (ULONG i = 0; ok && i < n; i++)
    if (e[i].lpCompletionKey == 100) {
      InterlockedIncrement(&g_woken);
      PostQueuedCompletionStatus(g_iocp, 0, 100, NULL);
    }
  return 0;
}

static DWORD WINAPI waiter_close(void *arg) {
  (void)arg;
  OVERLAPPED_ENTRY e[1];
  ULONG n = 0;
  BOOL ok = GetQueuedCompletionStatusEx(g_iocp, e, 1, &n, 1000, FALSE);
  InterlockedExchange(&g_closed_err, ok ? 0 : (LONG)GetLastError());
  return 0;
}

static HANDLE g_conc;
static volatile LONG g_running, g_max;

static DWORD WINAPI busy(void *arg) {
  (void)arg;
  OVERLAPPED_ENTRY e[1];
  ULONG n;
  while (GetQueuedCompletionStatusEx(g_conc, e, 1, &n, 1000, FALSE)) {
    LONG r = InterlockedIncrement(&g_running), m;
    while (r > (m = g_max) && InterlockedCompareExchange(&g_max, r, m) != m)
      ;
    ULONGLONG t = GetTickCount64();
    while (GetTickCount64() - t < 50) /* busy: never blocks, so IOCP keeps counting it */
      ;
    InterlockedDecrement(&g_running);
  }
  return 0;
}

static void probe_concurrency(void) {
  g_conc = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
  HANDLE t[4];
  for (int i = 0; i < 4; i++)
    t[i] = CreateThread(NULL, 0, busy, NULL, 0, NULL);
  Sleep(200);
  for (int i = 0; i < 8; i++)
    PostQueuedCompletionStatus(g_conc, 0, 1, NULL);
  WaitForMultipleObjects(4, t, TRUE, 20000);
  printf("probe: a port of concurrency 1, 4 busy threads that never block: at most %ld ran at "
         "once (Windows: 1)\n",
         g_max);
  CloseHandle(g_conc);
}

int main(void) {
  probe_init();
  probe_concurrency();
  g_iocp = probe_iocp();
  for (int i = 0; i < 5; i++)
    PROBE_OK(PostQueuedCompletionStatus(g_iocp, (DWORD)i, 10 + i, NULL));
  OVERLAPPED_ENTRY e[8];
  ULONG n = 0;
  BOOL ok = GetQueuedCompletionStatusEx(g_iocp, e, 8, &n, 0, FALSE);
  printf("probe: GQCSEx with 5 posts queued: %s, %lu entries, first key %llu bytes %lu, last "
         "key %llu\n",
         ok ? "TRUE" : "FALSE", n, (unsigned long long)e[0].lpCompletionKey,
         e[0].dwNumberOfBytesTransferred, (unsigned long long)e[n ? n - 1 : 0].lpCompletionKey);
  ok = GetQueuedCompletionStatusEx(g_iocp, e, 8, &n, 50, FALSE);
  printf("probe: GQCSEx on an empty port, 50 ms: %s, error %lu (WAIT_TIMEOUT=%ld)\n",
         ok ? "TRUE" : "FALSE", ok ? 0 : GetLastError(), WAIT_TIMEOUT);

  HANDLE th[WAITERS];
  for (int i = 0; i < WAITERS; i++)
    th[i] = CreateThread(NULL, 0, waiter, NULL, 0, NULL);
  Sleep(200);
  for (int i = 0; i < WAITERS; i++)
    PostQueuedCompletionStatus(g_iocp, 0, 99, NULL);
  WaitForMultipleObjects(WAITERS, th, TRUE, 10000);
  printf("probe: %d waiters taking up to 4 each, %d posts: %ld woken\n", WAITERS, WAITERS, g_woken);
  for (int i = 0; i < WAITERS; i++)
    CloseHandle(th[i]);
  OVERLAPPED_ENTRY rest[8];
  while (GetQueuedCompletionStatusEx(g_iocp, rest, 8, &n, 0, FALSE))
    ;
  g_woken = 0;
  for (int i = 0; i < WAITERS; i++)
    th[i] = CreateThread(NULL, 0, waiter_chain, NULL, 0, NULL);
  Sleep(200);
  PostQueuedCompletionStatus(g_iocp, 0, 100, NULL);
  WaitForMultipleObjects(WAITERS, th, TRUE, 10000);
  printf("probe: %d waiters, one close packet passed on by each: %ld woken\n", WAITERS, g_woken);
  while (GetQueuedCompletionStatusEx(g_iocp, rest, 8, &n, 0, FALSE))
    ;

  HANDLE t = CreateThread(NULL, 0, waiter_close, NULL, 0, NULL);
  Sleep(200);
  ULONGLONG t0 = GetTickCount64();
  CloseHandle(g_iocp);
  DWORD w = WaitForSingleObject(t, 5000);
  printf("probe: (the waiter had a 1000 ms timeout; it returned after %llu ms)\n",
         (unsigned long long)(GetTickCount64() - t0));
  printf("probe: closing the port handle under a blocked GQCSEx: the waiter %s, error %ld "
         "(ERROR_ABANDONED_WAIT_0=%ld, WAIT_TIMEOUT=%ld)\n",
         w == WAIT_OBJECT_0 ? "returns" : "STAYS BLOCKED", g_closed_err, ERROR_ABANDONED_WAIT_0,
         WAIT_TIMEOUT);
  return 0;
}
