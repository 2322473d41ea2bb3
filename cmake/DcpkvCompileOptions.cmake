# Warning, sanitizer and fuzzing flags shared by every dcpkv target.

# Fuzzing (tests/fuzz): libFuzzer needs clang, and the fuzzers look for memory errors and
# undefined behaviour, so every target is built with coverage instrumentation for libFuzzer
# (fuzzer-no-link; only the fuzzers link libFuzzer itself) and with ASan + UBSan.
if(DCPKV_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "DCPKV_FUZZ needs clang (libFuzzer); CMAKE_CXX_COMPILER is "
                        "${CMAKE_CXX_COMPILER_ID}. Use the \"fuzz\" preset.")
  endif()
  if(NOT DCPKV_SANITIZE)
    set(DCPKV_SANITIZE "address,undefined")
  elseif(DCPKV_SANITIZE MATCHES "thread")
    message(FATAL_ERROR "DCPKV_FUZZ cannot be combined with DCPKV_SANITIZE=${DCPKV_SANITIZE}")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

# Sanitizers: 'address,undefined' (ASan + UBSan, every error fatal) or 'thread' (TSan). The
# runtime options (suppressions, halt_on_error) come from the test presets' environment.
if(DCPKV_SANITIZE)
  if(DCPKV_SANITIZE MATCHES "thread" AND DCPKV_SANITIZE MATCHES "address")
    message(FATAL_ERROR "DCPKV_SANITIZE: thread and address cannot be combined")
  endif()
  add_compile_options(-fsanitize=${DCPKV_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${DCPKV_SANITIZE})
endif()

function(dcpkv_set_compile_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter
    # Option structs are filled with designated initializers that leave the rest at defaults.
    -Wno-missing-field-initializers)
  if(DCPKV_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# dcpkv_flatc(TARGET SCHEMA_DIR dir OUTPUT_DIR dir [INCLUDE_DIRS dirs] [INCLUDE_PREFIX prefix]
#             SCHEMAS names...): flatc --cpp for each <SCHEMA_DIR>/<name>.fbs into OUTPUT_DIR,
# with include statements of generated headers prefixed by INCLUDE_PREFIX; TARGET builds them.
function(dcpkv_flatc target)
  cmake_parse_arguments(ARG "" "SCHEMA_DIR;OUTPUT_DIR;INCLUDE_PREFIX" "INCLUDE_DIRS;SCHEMAS" ${ARGN})
  set(include_flags -I ${ARG_SCHEMA_DIR})
  set(deps)
  foreach(dir ${ARG_INCLUDE_DIRS})
    list(APPEND include_flags -I ${dir})
    file(GLOB dir_schemas ${dir}/*.fbs)
    list(APPEND deps ${dir_schemas})
  endforeach()
  set(prefix_flags)
  if(ARG_INCLUDE_PREFIX)
    set(prefix_flags --include-prefix ${ARG_INCLUDE_PREFIX})
  endif()
  set(outputs)
  foreach(schema ${ARG_SCHEMAS})
    set(out ${ARG_OUTPUT_DIR}/${schema}_generated.h)
    add_custom_command(
      OUTPUT ${out}
      COMMAND flatbuffers::flatc --cpp ${prefix_flags} -o ${ARG_OUTPUT_DIR} ${include_flags}
              ${ARG_SCHEMA_DIR}/${schema}.fbs
      DEPENDS ${ARG_SCHEMA_DIR}/${schema}.fbs ${deps}
      COMMENT "flatc ${schema}.fbs"
      VERBATIM)
    list(APPEND outputs ${out})
  endforeach()
  add_custom_target(${target} DEPENDS ${outputs})
endfunction()
