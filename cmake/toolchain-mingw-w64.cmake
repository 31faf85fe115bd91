# Cross-compile cport for 64-bit Windows with Debian's mingw-w64 (gcc-mingw-w64-x86-64):
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-w64.cmake
# The win32 threading flavour (x86_64-w64-mingw32-gcc-win32) is preferred: cport uses Win32
# threads itself and needs no winpthread DLL. Programs are linked statically against libgcc so
# an .exe runs with only system DLLs (kernel32, ws2_32, mswsock) - under Wine too
# (scripts/wine-run). The Windows runtimes cport links (protobuf-c, hiredis) are cross-built
# by scripts/win-deps into .deps/mingw, searched here.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(MINGW_TRIPLE x86_64-w64-mingw32)

find_program(MINGW_GCC NAMES ${MINGW_TRIPLE}-gcc-win32 ${MINGW_TRIPLE}-gcc REQUIRED)
find_program(MINGW_GXX NAMES ${MINGW_TRIPLE}-g++-win32 ${MINGW_TRIPLE}-g++)
set(CMAKE_C_COMPILER ${MINGW_GCC})
if(MINGW_GXX)
  set(CMAKE_CXX_COMPILER ${MINGW_GXX})
endif()
set(CMAKE_RC_COMPILER ${MINGW_TRIPLE}-windres)

get_filename_component(CPORT_SRC_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(CPORT_MINGW_DEPS "${CPORT_SRC_ROOT}/.deps/mingw" CACHE PATH "cross-built Windows runtimes")

set(CMAKE_FIND_ROOT_PATH /usr/${MINGW_TRIPLE} ${CPORT_MINGW_DEPS})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Windows 8 / Server 2012 API level: GetQueuedCompletionStatusEx, CancelIoEx, InitOnce,
# SRWLOCK and CONDITION_VARIABLE (Vista), SetFileCompletionNotificationModes.
add_compile_definitions(_WIN32_WINNT=0x0602 WINVER=0x0602 WIN32_LEAN_AND_MEAN)
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static-libgcc")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc")
# Tests run through Wine (scripts/wine-run).
set(CMAKE_CROSSCOMPILING_EMULATOR "${CPORT_SRC_ROOT}/scripts/wine-run")
