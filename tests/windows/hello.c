/* hello.c - the smallest Windows program: proves the cross compiler and the Wine runner. */
#include <stdio.h>
#include <windows.h>

int main(void) {
  OSVERSIONINFOW v = {.dwOSVersionInfoSize = sizeof v};
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  GetVersionExW(&v);
#pragma GCC diagnostic pop
  printf("hello from Windows %lu.%lu build %lu\n", v.dwMajorVersion, v.dwMinorVersion,
         v.dwBuildNumber);
  return 0;
}
