# Script mode (cmake -P): install, build the consumer against the install, run it.
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
if(NOT EXISTS ${prefix}/lib/cmake/dcpkv/dcpkvConfig.cmake AND
   NOT EXISTS ${prefix}/lib/x86_64-linux-gnu/cmake/dcpkv/dcpkvConfig.cmake)
  message(FATAL_ERROR "dcpkvConfig.cmake was not installed under ${prefix}")
endif()
# A sanitized libdcpkv needs the sanitizer runtime loaded first: build the consumer with it too.
set(flags "")
if(SANITIZE)
  set(flags "-fsanitize=${SANITIZE}")
endif()
run_step("configure consumer" ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build
         -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release
         "-DCMAKE_CXX_FLAGS=${flags}" "-DCMAKE_EXE_LINKER_FLAGS=${flags}")
run_step("build consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run_step("run consumer" ${WORK_DIR}/build/dcpkv_consumer ${WORK_DIR}/store)
