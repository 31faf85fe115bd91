/*
 * e2e_probe_console.c - can a test deliver a console control event other than Ctrl+C to a
 * program running headless under Wine? (docs/windows.md, "Stopping cport-server.exe")
 *
 * The probe starts itself as a child that installs cport/stop.h's handler and waits, then:
 *  1. close: the child attached to a pseudo console (CreatePseudoConsole), and the console
 *     closed (ClosePseudoConsole) - on Windows the child gets CTRL_CLOSE_EVENT;
 *  2. break: the child in a new process group, and GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT,
 *     its group) - on Windows the child gets CTRL_BREAK_EVENT.
 * Each prints what the child saw (its stop kind, or that its handler never ran) and its exit
 * code. It exits 0 either way: it shows what Wine does. Wine 8.0 (Debian bookworm): the pseudo
 * console is created and closed, and the child's handler never runs; the break event fails with
 * ERROR_INVALID_ACCESS (12: no console to send it through), and the child sees nothing. So the
 * tests use Ctrl+C, sent as SIGINT to the Wine process, which Wine delivers as CTRL_C_EVENT
 * (windows.stop_request, windows.e2e_chat). SIGTERM to the Wine process ends it at once.
 */
#include <cport/stop.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

typedef void *probe_hpcon;
typedef HRESULT(WINAPI *create_pc_fn)(COORD, HANDLE, HANDLE, DWORD, probe_hpcon *);
typedef void(WINAPI *close_pc_fn)(probe_hpcon);
#define PROBE_ATTR_PSEUDOCONSOLE 0x00020016 /* PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE */

static int child(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (cp_stop_install() != 0)
    return 2;
  printf("ready\n");
  int kind = cp_stop_wait(3000);
  printf("child: stop kind %d (%s)\n", kind,
         kind == CP_STOP_TERMINATE   ? "terminate: close/logoff/shutdown"
         : kind == CP_STOP_INTERRUPT ? "interrupt: Ctrl+C/Ctrl+Break"
                                     : "none within 3 s");
  return kind ? 0 : 1;
}

static close_pc_fn close_pc;

static DWORD WINAPI closer(void *pc) {
  close_pc(pc);
  return 0;
}

/* Start this program as the child; when it says "ready", deliver the event. */
static void run(const char *self, int close_mode) {
  char cmd[MAX_PATH + 16];
  snprintf(cmd, sizeof cmd, "\"%s\" child", self);
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
  HANDLE rd, wr;
  if (!CreatePipe(&rd, &wr, &sa, 0))
    return;
  SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0);
  STARTUPINFOEXA si = {0};
  si.StartupInfo.cb = sizeof si;
  si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  si.StartupInfo.hStdOutput = si.StartupInfo.hStdError = wr;
  si.StartupInfo.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  DWORD flags = CREATE_NEW_PROCESS_GROUP;
  probe_hpcon pc = NULL;
  HMODULE k32 = GetModuleHandleA("kernel32.dll");
  if (close_mode) {
    create_pc_fn create_pc = (create_pc_fn)(void *)GetProcAddress(k32, "CreatePseudoConsole");
    close_pc = (close_pc_fn)(void *)GetProcAddress(k32, "ClosePseudoConsole");
    HANDLE in_r, in_w, out_r, out_w;
    CreatePipe(&in_r, &in_w, NULL, 0);
    CreatePipe(&out_r, &out_w, NULL, 0);
    HRESULT hr = create_pc && close_pc ? create_pc((COORD){80, 25}, in_r, out_w, 0, &pc) : E_FAIL;
    printf("close: CreatePseudoConsole: 0x%lx\n", (unsigned long)hr);
    if (hr != S_OK)
      return;
    SIZE_T sz = 0;
    InitializeProcThreadAttributeList(NULL, 1, 0, &sz);
    si.lpAttributeList = malloc(sz);
    InitializeProcThreadAttributeList(si.lpAttributeList, 1, 0, &sz);
    UpdateProcThreadAttribute(si.lpAttributeList, 0, PROBE_ATTR_PSEUDOCONSOLE, pc, sizeof pc, NULL,
                              NULL);
    flags = EXTENDED_STARTUPINFO_PRESENT;
  }
  PROCESS_INFORMATION pi;
  if (!CreateProcessA(NULL, cmd, NULL, NULL, TRUE, flags, NULL, NULL, &si.StartupInfo, &pi)) {
    printf("CreateProcess failed: %lu\n", GetLastError());
    return;
  }
  CloseHandle(wr);
  char buf[1024], seen[4096] = ""; /* the child's output so far (it may come a byte a read) */
  size_t seen_n = 0;
  DWORD n;
  int sent = 0;
  while (ReadFile(rd, buf, sizeof buf - 1, &n, NULL) && n > 0) {
    buf[n] = 0;
    fputs(buf, stdout);
    if (seen_n + n < sizeof seen) {
      memcpy(seen + seen_n, buf, n + 1);
      seen_n += n;
    }
    if (!sent && strstr(seen, "ready")) {
      sent = 1;
      if (close_mode) {
        /* ClosePseudoConsole may wait for the attached processes: on a thread, bounded */
        HANDLE t = CreateThread(NULL, 0, closer, pc, 0, NULL);
        DWORD w = t ? WaitForSingleObject(t, 3000) : WAIT_FAILED;
        printf("close: ClosePseudoConsole %s\n",
               w == WAIT_OBJECT_0 ? "returned" : "did not return within 3 s");
        if (t)
          CloseHandle(t);
      } else {
        BOOL ok = GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pi.dwProcessId);
        printf("break: GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT) = %d, error %lu\n", ok,
               ok ? 0ul : GetLastError());
      }
    }
  }
  WaitForSingleObject(pi.hProcess, 20000);
  DWORD code = 0;
  GetExitCodeProcess(pi.hProcess, &code);
  printf("%s: child exit code %lu\n", close_mode ? "close" : "break", code);
  CloseHandle(pi.hProcess);
  CloseHandle(pi.hThread);
  CloseHandle(rd);
  free(si.lpAttributeList);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "child"))
    return child();
  setvbuf(stdout, NULL, _IONBF, 0);
  char self[MAX_PATH];
  GetModuleFileNameA(NULL, self, sizeof self);
  run(self, 1);
  run(self, 0);
  return 0;
}
