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

# NCCL (optional, needs CUDA): the NCCL process group. Looked for under the CUDA toolkit (and
# NCCL_ROOT); the static library is preferred so that libdcpkv needs no libnccl at run time.
option(DCPKV_WITH_NCCL "Build the NCCL process group when NCCL is found (needs CUDA)" ON)
if(DCPKV_WITH_NCCL AND NOT DCPKV_WITH_CUDA)
  message(STATUS "dcpkv: no CUDA; building without the NCCL process group")
  set(DCPKV_WITH_NCCL OFF)
endif()
if(DCPKV_WITH_NCCL)
  set(_dcpkv_nccl_hints ${CUDAToolkit_ROOT} ${CUDAToolkit_LIBRARY_ROOT} $ENV{NCCL_ROOT}
                        /usr/local/cuda)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_dcpkv_nccl_hints} ${CUDAToolkit_INCLUDE_DIRS}
            PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY NAMES nccl_static nccl HINTS ${_dcpkv_nccl_hints}
               ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    add_library(dcpkv_nccl UNKNOWN IMPORTED)
    set_target_properties(dcpkv_nccl PROPERTIES IMPORTED_LOCATION ${NCCL_LIBRARY}
                                                INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
    message(STATUS "dcpkv: NCCL process group with ${NCCL_LIBRARY}")
  else()
    message(STATUS "dcpkv: NCCL not found; building without the NCCL process group")
    set(DCPKV_WITH_NCCL OFF)
  endif()
endif()
