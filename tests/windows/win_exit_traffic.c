/* win_exit_traffic.c - a process that exits while other threads make and drop send buffers
 * exits. ExitProcess kills those threads wherever they are, maybe inside the send-buffer
 * pool's lock; then it runs the exiting thread's FLS callbacks, among them the one that gives
 * its current chunk back to that pool. That callback must not wait for the dead thread's lock
 * (src/platform/win32.c: key destructors do not run while the process exits).
 *
 * The parent starts ROUNDS children of itself ("child"): each makes buffers on WORKERS threads
 * (16,000 bytes: a chunk holds three, so the pool's lock is taken every few), keeps one buffer
 * of its own thread's chunk, and calls exit(0) after a few ms. Every child must end, with
 * status 0, within 10 s. */
#include <cport.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

#define ROUNDS 100
#define WORKERS 2

static DWORD WINAPI churn(LPVOID arg) {
  (void)arg;
  for (;;) {
    cp_sendbuf *b = cp_sendbuf_alloc(16000);
    if (b)
      memset(cp_sendbuf_data(b), 1, 64);
    cp_sendbuf_unref(b);
  }
  return 0;
}

static int child(void) {
  cp_sendbuf *mine = cp_sendbuf_alloc(100); /* this thread's chunk, and a buffer kept of it */
  cp_sendbuf_unref(mine);
  for (int i = 0; i < WORKERS; i++)
    if (!CreateThread(NULL, 0, churn, NULL, 0, NULL))
      return 2;
  Sleep(5 + (GetCurrentProcessId() % 7) * 3); /* the threads are anywhere by now */
  exit(0);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "child") == 0)
    return child();
  /* What the library asks: present, and false while the process runs (else no thread's
   * destructor would run, and a thread's chunk would never go back to the pool). */
  FARPROC f = GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "RtlDllShutdownInProgress");
  BOOLEAN(NTAPI * exiting)(void) = NULL;
  if (f)
    memcpy(&exiting, &f, sizeof exiting);
  if (!exiting || exiting()) {
    fprintf(stderr, "RtlDllShutdownInProgress: %s\n", exiting ? "true while running" : "absent");
    return 1;
  }
  char self[MAX_PATH];
  if (!GetModuleFileNameA(NULL, self, sizeof self))
    return 1;
  int hung = 0, failed = 0;
  for (int r = 0; r < ROUNDS; r++) {
    char cmd[MAX_PATH + 16];
    snprintf(cmd, sizeof cmd, "\"%s\" child", self);
    STARTUPINFOA si = {.cb = sizeof si};
    PROCESS_INFORMATION pi;
    if (!CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi)) {
      fprintf(stderr, "CreateProcess failed: %lu\n", GetLastError());
      return 1;
    }
    DWORD code = 0;
    if (WaitForSingleObject(pi.hProcess, 10000) != WAIT_OBJECT_0) {
      hung++;
      TerminateProcess(pi.hProcess, 99);
      WaitForSingleObject(pi.hProcess, INFINITE);
    } else if (!GetExitCodeProcess(pi.hProcess, &code) || code != 0) {
      failed++;
      fprintf(stderr, "round %d: the child exited with %lu\n", r, code);
    }
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
  }
  printf("win_exit_traffic: %d rounds, %d hung at exit, %d failed\n", ROUNDS, hung, failed);
  return hung || failed ? 1 : 0;
}
