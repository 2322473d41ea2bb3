// Names a rank database's layout is made of (docs/format.md, "Rank databases"): its column
// families and the key of its format marker. Part of the on-disk format: DO NOT CHANGE.
#ifndef DCPKV_STORE_STORE_FORMAT_H_
#define DCPKV_STORE_STORE_FORMAT_H_

namespace dcpkv {

inline constexpr char kChunksColumnFamily[] = "chunks";
inline constexpr char kManifestsColumnFamily[] = "manifests";
// Key in the default column family holding the store format version as decimal text.
inline constexpr char kStoreFormatKey[] = "dcpkv.store_format";
inline constexpr int kStoreFormatVersion = 1;

}  // namespace dcpkv

#endif  // DCPKV_STORE_STORE_FORMAT_H_
