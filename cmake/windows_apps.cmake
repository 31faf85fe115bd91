# cmake/windows_apps.cmake - cport-server.exe, cport-dummy.exe and the examples for Windows
# (issue 12), included by cmake/windows.cmake after the library targets. Every program links
# statically (libgcc, winpthread, protobuf-c from .deps/mingw built by scripts/win-deps), so Wine
# and Windows need nothing but system DLLs next to it.

# Stop requests (cport/stop.h): the public half on top of win32.c's console handler.
target_sources(cport_static PRIVATE ${CMAKE_SOURCE_DIR}/src/platform/stop.c
                                    ${CMAKE_SOURCE_DIR}/src/platform/stop_win32.c)
target_sources(cport PRIVATE ${CMAKE_SOURCE_DIR}/src/platform/stop.c
                             ${CMAKE_SOURCE_DIR}/src/platform/stop_win32.c)

# ---- the chat protocol: protoc-c runs on Linux, libprotobuf-c.a was cross-built ------------
set(CPORT_WIN_DEPS ${CMAKE_SOURCE_DIR}/.deps/mingw)
include(${CMAKE_SOURCE_DIR}/cmake/chat_proto.cmake)
target_include_directories(chat_proto PUBLIC ${CPORT_WIN_DEPS}/include)
target_link_libraries(chat_proto PUBLIC ${CPORT_WIN_DEPS}/lib/libprotobuf-c.a)

# mingw's C99 printf (%zu, %llu) instead of msvcrt's.
set(CPORT_WIN_APP_DEFS __USE_MINGW_ANSI_STDIO=1)
include(${CMAKE_SOURCE_DIR}/cmake/server_sources.cmake) # CPORT_SERVER_SOURCES
set(CPORT_WIN_EXAMPLES broadcast chat_relay packet_echo)

add_library(cport_server_parts STATIC ${CPORT_SERVER_SOURCES})
target_compile_definitions(cport_server_parts PRIVATE ${CPORT_WIN_APP_DEFS})
target_link_libraries(cport_server_parts PUBLIC cport_static chat_proto)
add_executable(cport-server apps/server/main.c)
target_link_libraries(cport-server PRIVATE cport_server_parts)
add_executable(cport-dummy apps/dummy/chat.c apps/dummy/clients.c apps/dummy/echo.c
                           apps/dummy/main.c apps/dummy/order.c apps/dummy/stats.c)
target_link_libraries(cport-dummy PRIVATE cport_static chat_proto)
set(CPORT_WIN_APP_TARGETS cport-server cport-dummy)
foreach(ex ${CPORT_WIN_EXAMPLES})
  add_executable(${ex} examples/${ex}.c)
  target_link_libraries(${ex} PRIVATE cport_static)
  list(APPEND CPORT_WIN_APP_TARGETS ${ex})
endforeach()
add_executable(echo_port examples/echo_port.c)
target_link_libraries(echo_port PRIVATE cport_static)
list(APPEND CPORT_WIN_APP_TARGETS echo_port)
foreach(t ${CPORT_WIN_APP_TARGETS})
  target_compile_definitions(${t} PRIVATE ${CPORT_WIN_APP_DEFS})
  target_link_libraries(${t} PRIVATE pthread)
  target_link_options(${t} PRIVATE -static)
  set_target_properties(${t} PROPERTIES C_STANDARD 17 C_STANDARD_REQUIRED ON)
endforeach()

include(${CMAKE_SOURCE_DIR}/cmake/readme_example.cmake) # the README's port example, compiled

# cport/stop.h on Windows: timeouts, bad kinds, a request waking a waiter, stickiness.
add_executable(port_test_stop tests/port/test_stop.c)
target_include_directories(port_test_stop BEFORE PRIVATE ${CMAKE_SOURCE_DIR}/tests/windows/shim)
target_include_directories(port_test_stop PRIVATE ${CMAKE_SOURCE_DIR}/tests ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(port_test_stop PRIVATE cport_static pthread)
target_link_options(port_test_stop PRIVATE -static)
add_test(NAME port.test_stop.iocp COMMAND port_test_stop)
set_tests_properties(port.test_stop.iocp PROPERTIES ENVIRONMENT "${CPORT_WIN_TEST_ENV}"
                     FIXTURES_REQUIRED wine TIMEOUT 60)

# The examples under Wine, driven from Linux over loopback (tests/e2e/examples.sh): a small
# client exchange each, exact bytes, then Ctrl+C (SIGINT to the Wine process) and exit 0.
add_test(NAME windows.e2e_examples
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/examples.sh ${CMAKE_BINARY_DIR}/bin iocp wine)
set_tests_properties(windows.e2e_examples PROPERTIES ENVIRONMENT "${CPORT_WIN_TEST_ENV}"
                     FIXTURES_REQUIRED wine TIMEOUT 180)

# cport-server.exe (echo, then chat) under Wine driven by the LINUX cport-dummy (build/, which
# `make test-windows` builds first) over loopback, then Ctrl+C: drain and exit 0.
add_test(NAME windows.e2e_chat
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/windows/e2e_chat.sh ${CMAKE_BINARY_DIR}/bin
                 ${CMAKE_SOURCE_DIR}/build/bin)
set_tests_properties(windows.e2e_chat PROPERTIES ENVIRONMENT "${CPORT_WIN_TEST_ENV}"
                     FIXTURES_REQUIRED wine TIMEOUT 300)

# What Wine does with a console close and a Ctrl+Break sent to another process (docs/windows.md).
cport_windows_test(e2e_probe_console SOURCES tests/windows/e2e_probe_console.c LIBS cport_static
                   TIMEOUT 120)

include(${CMAKE_SOURCE_DIR}/cmake/windows_cluster.cmake) # the cluster's Redis layer (issue 14)

# The mirror of windows.e2e_chat: cport-dummy.exe under Wine drives the LINUX cport-server
# (echo with exact byte counts, then chat with every chat verified), which SIGTERM drains.
add_test(NAME windows.e2e_dummy
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/windows/e2e_chat.sh ${CMAKE_BINARY_DIR}/bin
                 ${CMAKE_SOURCE_DIR}/build/bin dummy)
set_tests_properties(windows.e2e_dummy PROPERTIES ENVIRONMENT "${CPORT_WIN_TEST_ENV}"
                     FIXTURES_REQUIRED wine TIMEOUT 300)
