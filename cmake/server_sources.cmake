# cmake/server_sources.cmake - cport-server but its main() (chat mode in apps/server/chat/, the
# log, /metrics): also what fuzz_chat runs. One list for the Linux build (CMakeLists.txt) and the
# Windows one (cmake/windows_apps.cmake).
set(CPORT_SERVER_SOURCES
  ${CMAKE_SOURCE_DIR}/apps/server/chat/chain.c
  ${CMAKE_SOURCE_DIR}/apps/server/chat/chats.c
  ${CMAKE_SOURCE_DIR}/apps/server/chat/cluster_delivery.c
  ${CMAKE_SOURCE_DIR}/apps/server/chat/cluster_requests.c
  ${CMAKE_SOURCE_DIR}/apps/server/chat/requests.c
  ${CMAKE_SOURCE_DIR}/apps/server/chat/rooms.c
  ${CMAKE_SOURCE_DIR}/apps/server/log.c
  ${CMAKE_SOURCE_DIR}/apps/server/metrics.c)
