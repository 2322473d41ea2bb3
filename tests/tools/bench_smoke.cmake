# Smoke run of every benchmark of dcpkv_bench at a tiny size (no timings asserted).
find_package(Python3 COMPONENTS Interpreter REQUIRED)
add_test(NAME dcpkv_bench_smoke
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/bench_smoke_test.py
          $<TARGET_FILE:dcpkv_bench>)
set_tests_properties(dcpkv_bench_smoke PROPERTIES TIMEOUT 300 LABELS "bench")
