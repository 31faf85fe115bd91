# cmake -DROOT=<source dir> -P cmake/check_sources.cmake
#
# CMakeLists.txt lists every source instead of globbing them, so a file added to a folder but
# not to its list would be left out of the build silently (a test that never runs). This script
# (the test build.sources_listed) fails naming each such file: every library source, test,
# end-to-end script, example, program source and fuzz target must appear in CMakeLists.txt or
# in a cmake/*.cmake it includes (cmake/windows.cmake for the Windows-only sources, say).
if(NOT ROOT)
  message(FATAL_ERROR "usage: cmake -DROOT=<source dir> -P check_sources.cmake")
endif()
file(READ ${ROOT}/CMakeLists.txt lists)
file(GLOB included ${ROOT}/cmake/*.cmake)
foreach(f ${included})
  file(READ ${f} text)
  string(APPEND lists "${text}")
endforeach()
file(GLOB_RECURSE found RELATIVE ${ROOT}
  ${ROOT}/src/*.c
  ${ROOT}/apps/*.c
  ${ROOT}/examples/*.c
  ${ROOT}/bench/*.c
  ${ROOT}/bench/*.cpp
  ${ROOT}/tests/test_*.c
  ${ROOT}/tests/test_*.sh
  ${ROOT}/tests/fuzz_*.c)
list(SORT found)
set(missing "")
foreach(f ${found})
  string(FIND "${lists}" "${f}" at)
  if(at EQUAL -1)
    string(APPEND missing "\n  ${f}")
  endif()
endforeach()
list(LENGTH found n)
if(missing)
  message(FATAL_ERROR "not listed in CMakeLists.txt (add each to its folder's list) or cmake/*.cmake:${missing}")
endif()
message(STATUS "check_sources: all ${n} sources are listed in CMakeLists.txt")
