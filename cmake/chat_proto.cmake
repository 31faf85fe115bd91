# cmake/chat_proto.cmake - the chat protocol's generated code (protoc-c runs on the build
# machine) as the static library chat_proto, for the Linux build (CMakeLists.txt) and the Windows
# one (cmake/windows_apps.cmake); each links its own libprotobuf-c to it.
find_program(PROTOC_C protoc-c REQUIRED)
set(CHAT_GEN ${CMAKE_BINARY_DIR}/gen)
add_custom_command(
  OUTPUT ${CHAT_GEN}/chat.pb-c.c ${CHAT_GEN}/chat.pb-c.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CHAT_GEN}
  COMMAND ${PROTOC_C} --c_out=${CHAT_GEN} --proto_path=${CMAKE_SOURCE_DIR}/proto
          ${CMAKE_SOURCE_DIR}/proto/chat.proto
  DEPENDS ${CMAKE_SOURCE_DIR}/proto/chat.proto
  COMMENT "protoc-c proto/chat.proto")
# chat_wire.proto: chat.proto with every `string` a `bytes` (package chatw), wire-identical;
# the apps decode and encode with it so that strings keep their length (zero bytes included).
add_custom_command(
  OUTPUT ${CHAT_GEN}/chat_wire.pb-c.c ${CHAT_GEN}/chat_wire.pb-c.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CHAT_GEN}
  COMMAND sed -e "s/^package chat;/package chatw;/" -e "s/^  string /  bytes /"
          ${CMAKE_SOURCE_DIR}/proto/chat.proto > ${CHAT_GEN}/chat_wire.proto
  COMMAND ${PROTOC_C} --c_out=${CHAT_GEN} --proto_path=${CHAT_GEN} ${CHAT_GEN}/chat_wire.proto
  DEPENDS ${CMAKE_SOURCE_DIR}/proto/chat.proto
  COMMENT "protoc-c proto/chat.proto as chat_wire.proto (bytes)" VERBATIM)
add_library(chat_proto STATIC ${CHAT_GEN}/chat.pb-c.c ${CHAT_GEN}/chat_wire.pb-c.c)
target_include_directories(chat_proto PUBLIC ${CHAT_GEN})
# generated code: our warning flags are not its business
target_compile_options(chat_proto PRIVATE -w)
