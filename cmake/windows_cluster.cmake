# cmake/windows_cluster.cmake - the cluster's Redis layer (apps/server/cluster/, libcport_cluster)
# for Windows (issue 14 item 4b groundwork), included by cmake/windows_apps.cmake. It uses only
# hiredis's reply reader and command formatter (its connections are cport sessions), from
# .deps/mingw/lib/libhiredis.a, which scripts/win-deps cross-builds from Debian's source package
# (hiredis's own networking is not in it). The sources are the Linux library's
# (cmake/cluster.cmake), listed here on their own so that node code added there does not reach
# the Windows build before it builds there. Not linked into cport-server.exe yet.
add_library(cport_cluster STATIC
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/presence.c
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/redis_conn.c
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/room_follow.c
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/room_keys.c
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/room_script.c)
target_include_directories(cport_cluster PUBLIC ${CMAKE_SOURCE_DIR}/apps/server/cluster
                                                ${CPORT_WIN_DEPS}/include)
target_compile_definitions(cport_cluster PRIVATE ${CPORT_WIN_APP_DEFS})
target_link_libraries(cport_cluster PUBLIC cport_static ${CPORT_WIN_DEPS}/lib/libhiredis.a pthread)
set_target_properties(cport_cluster PROPERTIES C_STANDARD 17 C_STANDARD_REQUIRED ON)
