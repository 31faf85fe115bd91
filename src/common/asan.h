/*
 * asan.h - memory the library holds but nobody may touch, marked for
 * AddressSanitizer: a use is reported until the memory is handed out again.
 * No-ops in other builds.
 */
#ifndef CPORT_COMMON_ASAN_H
#define CPORT_COMMON_ASAN_H

#if defined(__SANITIZE_ADDRESS__)
#define CP__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CP__ASAN 1
#endif
#endif

#ifdef CP__ASAN
#include <sanitizer/asan_interface.h>
#define CP__POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define CP__UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define CP__POISON(p, n) ((void)(p), (void)(n))
#define CP__UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#endif /* CPORT_COMMON_ASAN_H */
