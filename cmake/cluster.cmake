# Cluster mode (issue 14): the Redis layer of a cport-server node
# (apps/server/cluster/), linked into cport-server when hiredis is found
# (--cluster; without it nothing changes), and its tests against a real
# redis-server.
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
if(NOT HIREDIS_FOUND)
  message(STATUS "cport: no hiredis (scripts/setup installs libhiredis-dev): no --cluster, cluster tests skipped")
else()
  include(${CMAKE_SOURCE_DIR}/cmake/cluster_sources.cmake)
  add_library(cport_cluster STATIC ${CPORT_CLUSTER_SOURCES})
  target_include_directories(cport_cluster PUBLIC ${CMAKE_SOURCE_DIR}/apps/server/cluster)
  target_link_libraries(cport_cluster PUBLIC cport_static PkgConfig::HIREDIS)
  if(CPORT_BUILD_APPS)
    # the node: cport-server --cluster
    target_sources(cport_server_parts PRIVATE ${CMAKE_SOURCE_DIR}/apps/server/cluster/node.c)
    target_compile_definitions(cport_server_parts PUBLIC CPORT_CLUSTER=1)
    target_link_libraries(cport_server_parts PUBLIC cport_cluster)
  endif()
  if(CPORT_BUILD_TESTS)
    foreach(name redis_proto redis_rooms redis_follow redis_presence)
      add_executable(${name} ${CMAKE_SOURCE_DIR}/tests/cluster/${name}.c)
      target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
      target_link_libraries(${name} PRIVATE cport_cluster)
      set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
      foreach(backend uring epoll)
        add_test(NAME cluster.${name}.${backend} COMMAND ${name})
        set_tests_properties(cluster.${name}.${backend} PROPERTIES
          ENVIRONMENT "CPORT_BACKEND=${backend}" TIMEOUT 300 SKIP_RETURN_CODE 77
          LABELS "cluster;${backend}")
      endforeach()
    endforeach()
    # cport-server's --cluster URL, parsed and masked (apps/common/cli.h), and cl_redis's AUTH
    # pieces (no backend, no Redis)
    add_executable(redis_url ${CMAKE_SOURCE_DIR}/tests/cluster/redis_url.c)
    target_include_directories(redis_url PRIVATE ${CMAKE_SOURCE_DIR}/tests)
    target_link_libraries(redis_url PRIVATE cport_cluster)
    set_target_properties(redis_url PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
    add_test(NAME cluster.redis_url COMMAND redis_url)
    set_tests_properties(cluster.redis_url PROPERTIES TIMEOUT 60 LABELS "cluster")
    # cport-server nodes on real Redis processes (needs cport-server): auth - a Redis with a
    # password and an ACL user, bad --cluster URLs; sentinel - behind Redis Sentinel, a forced
    # failover
    if(CPORT_BUILD_APPS)
      foreach(name auth sentinel)
        foreach(backend uring epoll)
          add_test(NAME cluster.${name}.${backend}
                   COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cluster/cluster_${name}.sh
                           ${CMAKE_BINARY_DIR}/bin ${backend})
          set_tests_properties(cluster.${name}.${backend} PROPERTIES
            TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS "cluster;e2e;${backend}")
        endforeach()
      endforeach()
    endif()
    # the shell fixture for the cluster's end-to-end tests (no backend involved)
    add_test(NAME cluster.redis_fixture_sh
             COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cluster/redis_fixture_selftest.sh)
    set_tests_properties(cluster.redis_fixture_sh PROPERTIES
      TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS "cluster")
  endif()
endif()
