/*
 * cport/export.h - what marks a declaration as part of cport's API.
 *
 * The library is built with hidden visibility: only declarations marked
 * CP_API leave libcport.so (or cport.dll). Everything else is internal and
 * carries the reserved prefix cp__ so that libcport.a cannot clash with an
 * application's own names either.
 *
 * CPORT_BUILDING is defined while cport itself is compiled; CPORT_STATIC by a
 * Windows program that links libcport.a instead of the DLL.
 */
#ifndef CPORT_EXPORT_H
#define CPORT_EXPORT_H

#if defined(_WIN32) || defined(__CYGWIN__)
#if defined(CPORT_STATIC)
#define CP_API
#elif defined(CPORT_BUILDING)
#define CP_API __declspec(dllexport)
#else
#define CP_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define CP_API __attribute__((visibility("default")))
#else
#define CP_API
#endif

#endif /* CPORT_EXPORT_H */
