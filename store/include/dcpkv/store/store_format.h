// Names a rank database's layout is made of (docs/format.md, "Rank databases"): its column
// families and the key of its format marker. Part of the on-disk format: DO NOT CHANGE.
#ifndef DCPKV_STORE_STORE_FORMAT_H_
#define DCPKV_STORE_STORE_FORMAT_H_

namespace dcpkv {

inline constexpr char kChunksColumnFamily[] = "chunks";
inline constexpr char kManifestsColumnFamily[] = "manifests";
// Key in the default column family holding the store format version as decimal text.
inline constexpr char kStoreFormatKey[] = "dcpkv.store_format";
// Version 1: chunks written by WriteBatch (values of 64 KiB and more in blob files).
// Version 2: chunks also in ingested table files (values inline), built in <dir>/ingest/.
// Version 3: as 2, and every checkpoint with chunks in the database has a data marker
//            (key_encoding.h, kDataMarkerKeyTag) in the default column family.
// A build reads every version up to kStoreFormatVersion and refuses newer ones. A read-write
// open of this build raises an older store to version 3 (writing the data markers of the
// checkpoints it finds first), and new stores start at 3, so that a build that does not keep the
// markers refuses the store with a clear message instead of writing chunks without them.
inline constexpr int kFirstStoreFormatVersion = 1;
inline constexpr int kIngestStoreFormatVersion = 2;
inline constexpr int kDataMarkerStoreFormatVersion = 3;
inline constexpr int kStoreFormatVersion = kDataMarkerStoreFormatVersion;

}  // namespace dcpkv

#endif  // DCPKV_STORE_STORE_FORMAT_H_
