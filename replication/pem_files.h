// Reading the PEM files of TLS options.
#ifndef DCPKV_REPLICATION_PEM_FILES_H_
#define DCPKV_REPLICATION_PEM_FILES_H_

#include <string>
#include <string_view>

#include "dcpkv/status.h"

namespace dcpkv::replication {

// The contents of the PEM file at `path`, which `what` names ("tls_cert_file"). INVALID_ARGUMENT
// naming both if it cannot be read, or holds no PEM block ("-----BEGIN "), or is over 1 MiB.
StatusOr<std::string> ReadPemFile(const std::string& path, std::string_view what);

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_PEM_FILES_H_
