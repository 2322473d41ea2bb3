// Entry points of the save protocol for other parts of api/. Internal.
#ifndef DCPKV_API_SAVE_INTERNAL_H_
#define DCPKV_API_SAVE_INTERNAL_H_

#include "dcpkv/checkpoint.h"

namespace dcpkv {

// Save of an already flattened state dict (async_save's staged copy). If `flat` is an error it
// is this rank's local failure: the save still runs its collectives so that every rank fails
// with it.
StatusOr<Metadata> SaveFlattened(const StatusOr<FlatStateDict>& flat, const SaveOptions& options);

}  // namespace dcpkv

#endif  // DCPKV_API_SAVE_INTERNAL_H_
