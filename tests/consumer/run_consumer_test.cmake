# Script mode (cmake -P): install dcpkv into a temporary prefix, check what was installed, then
# build tests/consumer/project against it and run it, as a user's project would.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "${name}: ok\n${out}")
endfunction()

run_step("install" ${CMAKE_COMMAND} --install ${DCPKV_BUILD_DIR} --prefix ${prefix})
file(GLOB_RECURSE config_files ${prefix}/lib*/dcpkvConfig.cmake)
if(NOT config_files)
  message(FATAL_ERROR "dcpkvConfig.cmake was not installed under ${prefix}")
endif()

# The installed headers are the public API: no layer-internal header, nothing of the format.
file(GLOB_RECURSE headers RELATIVE ${prefix}/include ${prefix}/include/*)
set(public_text "")
foreach(h ${headers})
  if(h MATCHES "^dcpkv/(core|store|api|inspect)/" OR h MATCHES "/internal/")
    message(FATAL_ERROR "internal header installed: include/${h}")
  endif()
  file(READ ${prefix}/include/${h} text)
  string(REGEX REPLACE "//[^\n]*" "" text "${text}")  # declarations, not what comments name
  string(APPEND public_text "${text}")
endforeach()
foreach(h dcpkv/checkpoint.h dcpkv/status.h dcpkv/diagnostics.h dcpkv/replication/replicator.h)
  if(NOT EXISTS ${prefix}/include/${h})
    message(FATAL_ERROR "public header not installed: include/${h}")
  endif()
endforeach()
file(GLOB_RECURSE archives ${prefix}/*.a)
if(archives)
  message(FATAL_ERROR "static libraries installed: ${archives}")
endif()

# libdcpkv.so exports the public API only: every dcpkv symbol it defines belongs to a class or
# function that an installed header declares.
file(GLOB_RECURSE library ${prefix}/lib*/libdcpkv.so)
execute_process(COMMAND nm -D --defined-only -C ${library} RESULT_VARIABLE rc OUTPUT_VARIABLE syms)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${library}")
endif()
string(REPLACE "\n" ";" syms "${syms}")
set(exported 0)
foreach(line ${syms})
  # "<address> <type> <demangled>": keep symbols of dcpkv's own namespaces.
  if(NOT line MATCHES "^[0-9a-f]+ [A-Za-z] (typeinfo name for |typeinfo for |vtable for |guard variable for )?dcpkv::(replication::)?([A-Za-z_][A-Za-z0-9_]*)")
    continue()
  endif()
  set(name ${CMAKE_MATCH_3})
  math(EXPR exported "${exported} + 1")
  if(name STREQUAL "operator")
    continue()
  endif()
  string(REGEX MATCH "[^A-Za-z0-9_]${name}[^A-Za-z0-9_]" declared "${public_text}")
  if(NOT declared)
    message(FATAL_ERROR "libdcpkv.so exports a symbol no installed header declares: ${line}")
  endif()
endforeach()
if(exported LESS 50)
  message(FATAL_ERROR "libdcpkv.so exports only ${exported} dcpkv symbols: is the API exported?")
endif()
message(STATUS "libdcpkv.so: ${exported} exported dcpkv symbols, each declared by a public header")

# A sanitized libdcpkv needs the sanitizer runtime loaded first: build the consumer with it too.
set(flags "")
if(SANITIZE)
  set(flags "-fsanitize=${SANITIZE}")
endif()
run_step("configure consumer" ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build
         -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release
         "-DCMAKE_CXX_FLAGS=${flags}" "-DCMAKE_EXE_LINKER_FLAGS=${flags}")
run_step("build consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
# The installed tools start from the prefix as they are (no LD_LIBRARY_PATH).
run_step("installed dcpkv --help" ${prefix}/bin/dcpkv --help)
run_step("installed dcpkv_demo" ${prefix}/bin/dcpkv_demo --root ${WORK_DIR}/demo --steps 2
         --save-every 1)
run_step("run consumer" ${WORK_DIR}/build/dcpkv_consumer ${WORK_DIR}/store ${prefix}/bin/dcpkv
         ${WORK_DIR}/replica)
