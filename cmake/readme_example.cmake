# cmake/readme_example.cmake - the README's port example ("The port in 50 lines"), taken from
# README.md at configure time and compiled unchanged, with the project's warnings as errors, on
# Linux (CMakeLists.txt) and Windows (cmake/windows_apps.cmake): it must stay a real program.
# tests/port/test_readme_port.c runs its serve() and echoes through it on every backend (io_uring,
# epoll; IOCP under Wine, skip mode on and off).
file(READ ${CMAKE_SOURCE_DIR}/README.md cport_readme)
string(FIND "${cport_readme}" "## The port in 50 lines" cport_at)
if(cport_at EQUAL -1)
  message(FATAL_ERROR "README.md: no section 'The port in 50 lines'")
endif()
string(SUBSTRING "${cport_readme}" ${cport_at} -1 cport_rest)
string(FIND "${cport_rest}" "```c\n" cport_at)
math(EXPR cport_at "${cport_at} + 5")
string(SUBSTRING "${cport_rest}" ${cport_at} -1 cport_rest)
string(FIND "${cport_rest}" "```" cport_end)
string(SUBSTRING "${cport_rest}" 0 ${cport_end} cport_code)
file(WRITE ${CMAKE_BINARY_DIR}/readme_port.c "${cport_code}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/README.md)
add_library(readme_port_example OBJECT ${CMAKE_BINARY_DIR}/readme_port.c)
target_link_libraries(readme_port_example PRIVATE cport_static)
