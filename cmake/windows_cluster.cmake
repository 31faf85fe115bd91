# cmake/windows_cluster.cmake - the cluster's Redis layer (apps/server/cluster/, libcport_cluster)
# for Windows (issue 14 item 4b groundwork), included by cmake/windows_apps.cmake. It uses only
# hiredis's reply reader and command formatter (its connections are cport sessions), from
# .deps/mingw/lib/libhiredis.a, which scripts/win-deps cross-builds from Debian's source package
# (hiredis's own networking is not in it). The sources are the Linux library's
# (cmake/cluster_sources.cmake). cport-server.exe is built with it: --cluster, --node-name.
include(${CMAKE_SOURCE_DIR}/cmake/cluster_sources.cmake)
add_library(cport_cluster STATIC ${CPORT_CLUSTER_SOURCES})
target_include_directories(cport_cluster PUBLIC ${CMAKE_SOURCE_DIR}/apps/server/cluster
                                                ${CPORT_WIN_DEPS}/include)
target_compile_definitions(cport_cluster PRIVATE ${CPORT_WIN_APP_DEFS})
target_link_libraries(cport_cluster PUBLIC cport_static ${CPORT_WIN_DEPS}/lib/libhiredis.a pthread)
set_target_properties(cport_cluster PROPERTIES C_STANDARD 17 C_STANDARD_REQUIRED ON)

# the node: cport-server.exe --cluster, as cmake/cluster.cmake does on Linux
target_sources(cport_server_parts PRIVATE ${CMAKE_SOURCE_DIR}/apps/server/cluster/node.c)
target_compile_definitions(cport_server_parts PUBLIC CPORT_CLUSTER=1)
target_link_libraries(cport_server_parts PUBLIC cport_cluster)

# The layer under Wine against a Linux redis-server (loopback), over an outbound session of a
# server service: tests/windows/win_cluster_redis.c, started by win_cluster_redis.sh.
add_executable(win_cluster_redis tests/windows/win_cluster_redis.c)
target_include_directories(win_cluster_redis PRIVATE ${CMAKE_SOURCE_DIR}/tests ${CMAKE_SOURCE_DIR}/src)
target_compile_definitions(win_cluster_redis PRIVATE ${CPORT_WIN_APP_DEFS})
target_link_libraries(win_cluster_redis PRIVATE cport_cluster)
target_link_options(win_cluster_redis PRIVATE -static)
add_test(NAME cluster.redis_smoke.iocp
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/windows/win_cluster_redis.sh
                 $<TARGET_FILE:win_cluster_redis>)
set_tests_properties(cluster.redis_smoke.iocp PROPERTIES ENVIRONMENT "${CPORT_WIN_TEST_ENV}"
                     FIXTURES_REQUIRED wine TIMEOUT 180 SKIP_RETURN_CODE 77)

# A Windows node and a Linux node share rooms: cport-server.exe --cluster under Wine, the Linux
# cport-server --cluster and the LINUX cport-dummy --servers over both (build/, which
# `make test-windows` builds first), a Linux redis-server; then Ctrl+C the Windows node: its
# players leave the Linux node's rooms over Redis (tests/windows/e2e_cluster.sh, win_cluster.py).
add_test(NAME windows.e2e_cluster
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/windows/e2e_cluster.sh ${CMAKE_BINARY_DIR}/bin
                 ${CMAKE_SOURCE_DIR}/build/bin)
set_tests_properties(windows.e2e_cluster PROPERTIES ENVIRONMENT "${CPORT_WIN_TEST_ENV}"
                     FIXTURES_REQUIRED wine TIMEOUT 180 SKIP_RETURN_CODE 77)
