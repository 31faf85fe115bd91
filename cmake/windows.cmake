# cmake/windows.cmake - the Windows (x86_64-w64-mingw32) build, included by CMakeLists.txt when
# cross-compiling with cmake/toolchain-mingw-w64.cmake (`make windows`). Tests run under Wine
# through the toolchain's CMAKE_CROSSCOMPILING_EMULATOR (scripts/wine-run); they share one
# wineserver (CPORT_WINE_KEEP=1) that the cleanup fixture stops at the end.
#
# What builds here today: the chain's proofs (hello, winsock_echo) and the probes of what Wine
# does (tests/windows/probe_*.c, see docs/windows.md).
add_compile_options(-Wall -Wextra)
if(CPORT_WERROR)
  add_compile_options(-Werror)
endif()
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
enable_testing()

set(CPORT_WIN_TEST_ENV "CPORT_WINE_KEEP=1")
# The C test suites (tests/common/test.h) mark that their main was reached: scripts/wine-run
# runs one that Wine never started once more.
set(CPORT_WIN_SUITE_ENV "CPORT_WINE_KEEP=1;CPORT_WINE_RETRY_UNSTARTED=1")
# One persistent wineserver for the whole run (scripts/wine-run says why), stopped at the end.
add_test(NAME windows.wine_start COMMAND ${CMAKE_SOURCE_DIR}/scripts/wine-run --start)
set_tests_properties(windows.wine_start PROPERTIES FIXTURES_SETUP wine TIMEOUT 120)
add_test(NAME windows.wine_stop COMMAND ${CMAKE_SOURCE_DIR}/scripts/wine-run --stop)
set_tests_properties(windows.wine_stop PROPERTIES FIXTURES_CLEANUP wine)

# A program from tests/windows/, run under Wine as test windows.<name>.
function(cport_windows_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS})
  add_test(NAME windows.${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  set_tests_properties(windows.${name} PROPERTIES ENVIRONMENT "${CPORT_WIN_TEST_ENV}"
                       FIXTURES_REQUIRED wine TIMEOUT ${T_TIMEOUT})
endfunction()

cport_windows_test(hello SOURCES tests/windows/hello.c)
cport_windows_test(winsock_echo SOURCES tests/windows/winsock_echo.c LIBS ws2_32)
foreach(p disconnectex_skip cancel_nothing acceptex connectex zero_recv gqcs cancel_op send_reset
    abort_close)
  cport_windows_test(probe_${p} SOURCES tests/windows/probe_${p}.c LIBS mswsock ws2_32)
endforeach()

# The library on Windows: the platform layer's Win32 half, the socket helpers on Winsock, the
# IOCP port and the engine (src/net, the same files as on Linux).
set(CPORT_WIN_SOURCES src/common/mem.c src/common/heap.c src/common/log.c src/common/version.c
  src/platform/win32.c src/platform/thread_token.c src/port/backend.c src/port/error.c src/port/sockaddr.c src/port/socket_win32.c src/port/iocp.c
  src/net/framing.c src/net/jobq.c src/net/listener.c src/net/registry.c src/net/sendbuf.c
  src/net/service.c src/net/session.c src/net/slab.c src/net/timers.c)
add_library(cport_static STATIC ${CPORT_WIN_SOURCES})
target_compile_definitions(cport_static PUBLIC CPORT_STATIC PRIVATE CPORT_BUILDING)
target_include_directories(cport_static
  PUBLIC ${CMAKE_SOURCE_DIR}/include
  PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(cport_static PUBLIC mswsock ws2_32 ntdll)
set_target_properties(cport_static PROPERTIES OUTPUT_NAME cport C_STANDARD 17 C_STANDARD_REQUIRED ON)

# cport.dll: only what carries CP_API (__declspec(dllexport)) leaves it, as on Linux; the
# import library is libcport.dll.a. windows.dll_exports checks the export table.
add_library(cport SHARED ${CPORT_WIN_SOURCES})
target_compile_definitions(cport PRIVATE CPORT_BUILDING)
target_include_directories(cport PUBLIC ${CMAKE_SOURCE_DIR}/include PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(cport PRIVATE mswsock ws2_32 ntdll)
set_target_properties(cport PROPERTIES C_STANDARD 17 C_STANDARD_REQUIRED ON PREFIX "")
find_program(MINGW_OBJDUMP NAMES x86_64-w64-mingw32-objdump REQUIRED)
add_test(NAME windows.dll_exports
         COMMAND ${CMAKE_SOURCE_DIR}/tests/windows/dll_exports.sh ${MINGW_OBJDUMP}
                 $<TARGET_FILE:cport> ${CMAKE_SOURCE_DIR}/include/cport)

cport_windows_test(win_iocp SOURCES tests/windows/win_iocp.c LIBS cport_static TIMEOUT 120)
# A process that exits while other threads make send buffers exits (key destructors and
# ExitProcess: src/platform/win32.c).
cport_windows_test(win_exit_traffic SOURCES tests/windows/win_exit_traffic.c LIBS cport_static
                   TIMEOUT 300)
# FILE_SKIP_COMPLETION_PORT_ON_SUCCESS on and off (CPORT_IOCP_SKIP): packets per message.
cport_windows_test(win_skip SOURCES tests/windows/win_skip.c LIBS cport_static pthread TIMEOUT 120)
target_include_directories(win_skip PRIVATE ${CMAKE_SOURCE_DIR}/tests ${CMAKE_SOURCE_DIR}/src)
target_link_options(win_skip PRIVATE -static)

# The port and engine suites (tests/port, tests/net) on the IOCP backend, the same sources as on
# Linux: tests/common/test.h gives them Winsock under POSIX's names. winpthreads is linked
# statically (the tests' own threads). Registered as port.<test>.iocp and net.<test>.iocp.
set(CPORT_WIN_PORT_TESTS test_accept_many test_backend_forced test_bad_input test_blocking_socket test_ops test_cancel_many test_close_pending test_concurrency
    test_disassociate test_idle_pooled test_one_waiter test_pingpong_mt test_platform test_post_fairness
    test_order_ready_poll test_pooled_arrivals test_post_mt test_readme_port test_recv_eof test_send_after_fin
    test_send_concurrent
    test_send_large test_send_order test_socket_api
    test_wait_timeout)
set(CPORT_WIN_NET_TESTS ${CPORT_WIN_NET_TESTS_OVERRIDE})
if(NOT CPORT_WIN_NET_TESTS)
  file(GLOB CPORT_WIN_NET_TEST_FILES RELATIVE ${CMAKE_SOURCE_DIR}/tests/net
       ${CMAKE_SOURCE_DIR}/tests/net/test_net_*.c)
  string(REPLACE ".c" "" CPORT_WIN_NET_TESTS "${CPORT_WIN_NET_TEST_FILES}")
  # test_net_emfile lowers RLIMIT_NOFILE in a forked child: Windows has no descriptor limit to
  # lower, nor fork, so its Windows version is tests/windows/win_emfile.c (a backend test hook
  # fails the accept's socket creation with WSAEMFILE), under the same name.
  list(REMOVE_ITEM CPORT_WIN_NET_TESTS test_net_emfile)
  list(APPEND CPORT_WIN_NET_TESTS test_net_emfile)
endif()
# Wine 8.0 cannot close a socket abortively (probe_abort_close: a FIN goes before the RST), so
# test_net_reasons's resetting client is a native Linux process under Wine
# (tests/windows/reset_helper.py, started by tests/windows/with_reset_helper.sh).
set(CPORT_WIN_NET_WRAPPED test_net_reasons)
set(CPORT_WIN_SOURCE_test_net_emfile tests/windows/win_emfile.c)
function(cport_windows_suite layer name)
  set(src tests/${layer}/${name}.c)
  if(CPORT_WIN_SOURCE_${name})
    set(src ${CPORT_WIN_SOURCE_${name}})
  endif()
  add_executable(${layer}_${name} ${src})
  target_include_directories(${layer}_${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(${layer}_${name} PRIVATE cport_static pthread)
  target_link_options(${layer}_${name} PRIVATE -static)
  target_compile_options(${layer}_${name} PRIVATE -Wno-pointer-sign) # Winsock takes char *
  if(name IN_LIST CPORT_WIN_NET_WRAPPED)
    add_test(NAME ${layer}.${name}.iocp
             COMMAND ${CMAKE_SOURCE_DIR}/tests/windows/with_reset_helper.sh
                     $<TARGET_FILE:${layer}_${name}>)
  else()
    add_test(NAME ${layer}.${name}.iocp COMMAND ${layer}_${name})
  endif()
  set_tests_properties(${layer}.${name}.iocp PROPERTIES ENVIRONMENT "${CPORT_WIN_SUITE_ENV}"
                       FIXTURES_REQUIRED wine TIMEOUT 300 SKIP_RETURN_CODE 77)
endfunction()
# The port suite again with FILE_SKIP_COMPLETION_PORT_ON_SUCCESS off (CPORT_IOCP_SKIP=0: every
# op through its kernel packet) as port.<test>.iocp_noskip: all but the three longest under
# Wine (pingpong_mt, idle_pooled, post_mt: 45-150 s each, posts only in post_mt), so that it
# adds well under a minute; CPORT_WIN_NOSKIP_ALL=ON registers them too.
set(CPORT_WIN_NOSKIP_LONG test_pingpong_mt test_idle_pooled test_post_mt)
option(CPORT_WIN_NOSKIP_ALL "register every port test with CPORT_IOCP_SKIP=0 too" OFF)
foreach(name ${CPORT_WIN_PORT_TESTS})
  cport_windows_suite(port ${name})
  if(name IN_LIST CPORT_WIN_NOSKIP_LONG AND NOT CPORT_WIN_NOSKIP_ALL)
    continue()
  endif()
  add_test(NAME port.${name}.iocp_noskip COMMAND port_${name})
  set_tests_properties(port.${name}.iocp_noskip PROPERTIES
                       ENVIRONMENT "${CPORT_WIN_SUITE_ENV};CPORT_IOCP_SKIP=0"
                       FIXTURES_REQUIRED wine TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()
# serve() of the README's port example (cmake/readme_example.cmake, from windows_apps.cmake)
target_sources(port_test_readme_port PRIVATE $<TARGET_OBJECTS:readme_port_example>)
foreach(name ${CPORT_WIN_NET_TESTS})
  cport_windows_suite(net ${name})
endforeach()

# Stop requests (src/platform/stop_request.h): SIGINT to the Wine process arrives as Ctrl+C.
add_executable(win_stop tests/windows/win_stop.c)
target_include_directories(win_stop PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(win_stop PRIVATE cport_static)
add_test(NAME windows.stop_request
         COMMAND ${CMAKE_SOURCE_DIR}/tests/windows/stop_request.sh $<TARGET_FILE:win_stop>)
set_tests_properties(windows.stop_request PROPERTIES ENVIRONMENT "${CPORT_WIN_TEST_ENV}"
                     FIXTURES_REQUIRED wine TIMEOUT 60)
include(${CMAKE_SOURCE_DIR}/cmake/windows_apps.cmake) # the apps and examples (issue 12)
