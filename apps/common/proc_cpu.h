/*
 * proc_cpu.h - the CPU time a process has used so far, from Linux's
 * /proc/PID/stat: what the benchmarks divide by the messages of a window
 * (cport-dummy --server-pid, bench/tools/loadgen).
 */
#ifndef CPORT_APPS_PROC_CPU_H
#define CPORT_APPS_PROC_CPU_H

#include <stdio.h>
#include <string.h>

/* utime+stime of pid in clock ticks (sysconf(_SC_CLK_TCK) a second), or -1. */
static inline long long proc_cpu_ticks(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* comm may hold spaces */
  if (!p)
    return -1;
  /* After ") ": field 3 (state) ... utime is field 14, stime 15. */
  unsigned long long ut, st;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (long long)(ut + st);
}

#endif
