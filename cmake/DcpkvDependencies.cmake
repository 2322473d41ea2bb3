# Every dependency comes from Debian's packages (scripts/install_deps.sh installs them).
include(GNUInstallDirs)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(RocksDB CONFIG REQUIRED)
find_package(FlatBuffers CONFIG REQUIRED)
find_package(Gloo CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)

if(DCPKV_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
endif()

# CUDA (optional): pinned staging memory now, device tensors and NCCL later. Found under
# /usr/local/cuda when present; linked statically so that libdcpkv needs no CUDA runtime at run
# time, and every CUDA call tolerates a machine without a GPU or driver.
option(DCPKV_WITH_CUDA "Build the CUDA paths when the CUDA toolkit is found" ON)
if(DCPKV_WITH_CUDA)
  if(NOT CUDAToolkit_ROOT AND EXISTS /usr/local/cuda)
    set(CUDAToolkit_ROOT /usr/local/cuda)
  endif()
  find_package(CUDAToolkit QUIET)
  if(NOT CUDAToolkit_FOUND)
    message(STATUS "dcpkv: CUDA toolkit not found; building without the CUDA paths")
    set(DCPKV_WITH_CUDA OFF)
  endif()
endif()
