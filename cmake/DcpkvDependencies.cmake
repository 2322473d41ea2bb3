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
