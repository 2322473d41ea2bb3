# `cmake --install` puts the headers, the library and dcpkvConfig.cmake under the prefix, so that
# another project can find_package(dcpkv) and link dcpkv::dcpkv.
include(CMakePackageConfigHelpers)

install(TARGETS dcpkv EXPORT dcpkvTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY api/include/dcpkv store/include/dcpkv
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")

set(DCPKV_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dcpkv)
install(EXPORT dcpkvTargets NAMESPACE dcpkv:: DESTINATION ${DCPKV_CMAKE_DIR})
configure_package_config_file(cmake/dcpkvConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/dcpkvConfig.cmake INSTALL_DESTINATION ${DCPKV_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/dcpkvConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/dcpkvConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/dcpkvConfigVersion.cmake DESTINATION ${DCPKV_CMAKE_DIR})
