# `cmake --install` puts what a user of dcpkv needs under the prefix, and nothing else:
#   lib/libdcpkv.so*                  the library (public API only; every other symbol hidden)
#   include/dcpkv/*.h                 the public API of core and api
#   include/dcpkv/replication/*.h     manifest replication (replica server and client, Replicator)
#   lib/cmake/dcpkv/                  dcpkvConfig.cmake: find_package(dcpkv) -> dcpkv::dcpkv
#   bin/dcpkv, dcpkv_demo, ...        the tools, which find libdcpkv (if they use it) from any prefix
# Not installed: the layers' internal headers (include/dcpkv/core/, store/, api/,
# replication/internal/) and the static layer libraries.
include(CMakePackageConfigHelpers)

install(TARGETS dcpkv EXPORT dcpkvTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY core/include/dcpkv api/include/dcpkv
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h"
  PATTERN "core" EXCLUDE
  PATTERN "api" EXCLUDE)
install(FILES tools/inspect/public/dcpkv/maintenance.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dcpkv)
install(DIRECTORY replication/include/dcpkv
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h"
  PATTERN "internal" EXCLUDE)

set(DCPKV_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dcpkv)
install(EXPORT dcpkvTargets NAMESPACE dcpkv:: DESTINATION ${DCPKV_CMAKE_DIR})
configure_package_config_file(cmake/dcpkvConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/dcpkvConfig.cmake INSTALL_DESTINATION ${DCPKV_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/dcpkvConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/dcpkvConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/dcpkvConfigVersion.cmake DESTINATION ${DCPKV_CMAKE_DIR})
