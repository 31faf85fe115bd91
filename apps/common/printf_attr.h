/*
 * printf_attr.h - APPS_PRINTF(fmt, first): gcc's printf format check of a function's
 * arguments. On mingw the archetype is gnu_printf (the programs use mingw's C99 printf,
 * __USE_MINGW_ANSI_STDIO: %zu, %llu), elsewhere printf. Header-only.
 */
#ifndef CPORT_APPS_PRINTF_ATTR_H
#define CPORT_APPS_PRINTF_ATTR_H

#include <stdio.h>

#ifdef __MINGW_PRINTF_FORMAT
#define APPS_PRINTF(fmt, first) __attribute__((format(__MINGW_PRINTF_FORMAT, fmt, first)))
#else
#define APPS_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))
#endif

#endif
