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
// A build reads every version up to kStoreFormatVersion and refuses newer ones; a version 1 store
// becomes version 2 on its first ingested table file, so that a build reading only version 1
// refuses it with a clear message instead of meeting files it does not expect.
inline constexpr int kFirstStoreFormatVersion = 1;
inline constexpr int kIngestStoreFormatVersion = 2;
inline constexpr int kStoreFormatVersion = kIngestStoreFormatVersion;

}  // namespace dcpkv

#endif  // DCPKV_STORE_STORE_FORMAT_H_
