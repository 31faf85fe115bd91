# cmake/cluster_sources.cmake - the sources of libcport_cluster (the cluster's Redis layer,
# apps/server/cluster/), one list for the Linux build (cmake/cluster.cmake) and the Windows
# one (cmake/windows_cluster.cmake).
set(CPORT_CLUSTER_SOURCES
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/presence.c
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/redis_conn.c
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/room_follow.c
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/room_keys.c
  ${CMAKE_SOURCE_DIR}/apps/server/cluster/room_script.c)
