#include "dcpkv/core/metadata_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <flatbuffers/flatbuffers.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dcpkv/core/schema/metadata_generated.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;

SavedShard Shard(Shape offsets, Shape sizes, int32_t rank, DType dtype, uint32_t chunks = 1) {
  uint64_t bytes = ElementSize(dtype);
  for (uint64_t s : sizes) bytes *= s;
  return SavedShard{std::move(offsets), std::move(sizes), rank, bytes, chunks};
}

// A metadata with tensors of several dtypes and dimension counts, a scalar, an empty tensor,
// bytes entries and a many-shard tensor.
Metadata SampleMetadata() {
  Metadata md;
  md.checkpoint_id = "step-100";
  md.world_size = 8;
  md.coordinator_rank = 3;
  md.committed_unix_micros = 1764331200123456;
  md.entries["model.w"] = {DType::kBFloat16,
                           {1024, 512},
                           {Shard({0, 0}, {512, 512}, 0, DType::kBFloat16, 1),
                            Shard({512, 0}, {512, 512}, 1, DType::kBFloat16, 2)}};
  md.entries["model.bias"] = {DType::kFloat32, {512}, {Shard({0}, {512}, 0, DType::kFloat32)}};
  md.entries["optim.step"] = {DType::kInt64, {}, {Shard({}, {}, 0, DType::kInt64)}};
  md.entries["model.empty"] = {
      DType::kFloat16, {0, 7}, {Shard({0, 0}, {0, 7}, 2, DType::kFloat16, 0)}};
  md.entries["rng.state"] = {DType::kBytes, {5000}, {Shard({0}, {5000}, 7, DType::kBytes, 1)}};
  md.entries["config"] = {DType::kBytes, {0}, {Shard({0}, {0}, 0, DType::kBytes, 0)}};
  md.entries["unsaved"] = {DType::kInt8, {4, 4}, {}};
  EntryMetadata many{DType::kFloat8E4M3, {64, 3, 2, 2}, {}};
  for (uint64_t i = 0; i < 64; ++i) {
    many.shards.push_back(Shard({i, 0, 0, 0}, {1, 3, 2, 2}, static_cast<int32_t>(i % 8),
                                DType::kFloat8E4M3, static_cast<uint32_t>(i)));
  }
  md.entries["model.layers.0.mlp.w1"] = many;
  for (DType dtype : kAllDTypes) {
    md.entries["dtype." + std::string(DTypeName(dtype))] = {
        dtype, {3, 5}, {Shard({0, 0}, {3, 5}, 5, dtype, 1)}};
  }
  return md;
}

void ExpectDataLoss(std::string_view bytes, const std::string& what) {
  StatusOr<Metadata> d = DecodeMetadata(bytes);
  ASSERT_FALSE(d.ok()) << "not detected: " << what;
  EXPECT_EQ(d.status().code(), StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(what));
}

TEST(MetadataCodecTest, RoundTrip) {
  Metadata md = SampleMetadata();
  std::string enc = EncodeMetadata(md);
  EXPECT_EQ(std::memcmp(enc.data() + 4, "DKVD", 4), 0);
  StatusOr<Metadata> d = DecodeMetadata(enc);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(*d == md);
  EXPECT_EQ(d->entries.at("optim.step").global_shape, Shape{});
  EXPECT_EQ(d->entries.at("model.layers.0.mlp.w1").shards.size(), 64u);
  EXPECT_EQ(d->entries.at("rng.state").shards[0].bytes, 5000u);
  // Encoding is deterministic.
  EXPECT_EQ(EncodeMetadata(*d), enc);
}

// SampleMetadata as saved through dcpkv.torch: torch properties on some tensors (strides given,
// given as none, absent; defaults and others), a torch.save bytes entry, and the DCP metadata
// with a flatten mapping of dict keys and list indices and a storage meta.
Metadata SampleTorchMetadata() {
  Metadata md = SampleMetadata();
  md.entries.at("model.w").torch_properties = TorchTensorProperties{};  // all defaults
  TorchTensorProperties grad;
  grad.requires_grad = true;
  grad.has_strides = true;
  grad.strides = {1, 512};
  md.entries.at("model.bias").torch_properties = grad;
  TorchTensorProperties scalar;
  scalar.has_strides = true;  // a 0-d tensor's strides: () is not None
  md.entries.at("optim.step").torch_properties = scalar;
  TorchTensorProperties odd;
  odd.layout = "sparse_coo";
  odd.memory_format = "channels_last";
  odd.pin_memory = true;
  odd.strides = {};
  md.entries.at("model.layers.0.mlp.w1").torch_properties = odd;
  md.entries.at("rng.state").bytes_encoding = BytesEncoding::kTorchSave;
  // "config" stays a raw bytes entry, "model.empty" a tensor without properties.
  TorchDcpMetadata& t = md.torch_dcp.emplace();
  t.version = "1.0.0";
  t.has_flatten_mapping = true;
  t.flatten_mapping["model.w"] = {{"model", -1}, {"w", -1}};
  t.flatten_mapping["model.layers.0.mlp.w1"] = {
      {"model", -1}, {"layers", -1}, {"", 0}, {"mlp", -1}, {"w1", -1}};
  t.flatten_mapping["optim.step"] = {{"optim", -1}, {"step", -1}};
  t.flatten_mapping["rng.state"] = {{"rng", -1}, {"state", -1}};
  t.flatten_mapping["lists.3.7"] = {{"lists", -1}, {"", 3}, {"", 7}};
  t.flatten_mapping["x"] = {};  // an empty path: not what DCP writes, but representable
  t.has_storage_meta = true;
  t.storage_checkpoint_id = "/ckpt/step-100";
  t.save_id = "3f2c9a";
  t.load_id = "";
  t.modules = {"model", "optim"};
  return md;
}

TEST(MetadataCodecTest, TorchFieldsRoundTrip) {
  const Metadata md = SampleTorchMetadata();
  const std::string enc = EncodeMetadata(md);
  ASSERT_TRUE(ValidateMetadata(md).ok()) << ValidateMetadata(md);
  StatusOr<Metadata> d = DecodeMetadata(enc);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(*d == md);
  EXPECT_EQ(EncodeMetadata(*d), enc);
  // The fields one by one (operator== covers them too, but a mistake there would hide here).
  ASSERT_TRUE(d->entries.at("model.w").torch_properties.has_value());
  EXPECT_EQ(d->entries.at("model.w").torch_properties->layout, "strided");
  EXPECT_EQ(d->entries.at("model.w").torch_properties->memory_format, "contiguous_format");
  EXPECT_FALSE(d->entries.at("model.w").torch_properties->has_strides);
  const std::optional<TorchTensorProperties>& bias = d->entries.at("model.bias").torch_properties;
  ASSERT_TRUE(bias.has_value());
  EXPECT_TRUE(bias->requires_grad);
  EXPECT_FALSE(bias->pin_memory);
  EXPECT_TRUE(bias->has_strides);
  EXPECT_EQ(bias->strides, (std::vector<int64_t>{1, 512}));
  ASSERT_TRUE(d->entries.at("optim.step").torch_properties.has_value());
  EXPECT_TRUE(d->entries.at("optim.step").torch_properties->has_strides);
  EXPECT_TRUE(d->entries.at("optim.step").torch_properties->strides.empty());
  const std::optional<TorchTensorProperties>& odd =
      d->entries.at("model.layers.0.mlp.w1").torch_properties;
  ASSERT_TRUE(odd.has_value());
  EXPECT_EQ(odd->layout, "sparse_coo");
  EXPECT_EQ(odd->memory_format, "channels_last");
  EXPECT_TRUE(odd->pin_memory);
  EXPECT_FALSE(odd->requires_grad);
  EXPECT_FALSE(odd->has_strides);
  EXPECT_FALSE(d->entries.at("model.empty").torch_properties.has_value());
  EXPECT_FALSE(d->entries.at("config").torch_properties.has_value());
  EXPECT_EQ(d->entries.at("rng.state").bytes_encoding, BytesEncoding::kTorchSave);
  EXPECT_EQ(d->entries.at("config").bytes_encoding, BytesEncoding::kRaw);
  ASSERT_TRUE(d->torch_dcp.has_value());
  const TorchDcpMetadata& t = *d->torch_dcp;
  EXPECT_EQ(t.version, "1.0.0");
  EXPECT_TRUE(t.has_flatten_mapping);
  ASSERT_EQ(t.flatten_mapping.size(), 6u);
  const std::vector<TorchPathElement>& lists = t.flatten_mapping.at("lists.3.7");
  ASSERT_EQ(lists.size(), 3u);
  EXPECT_EQ(lists[0].key, "lists");
  EXPECT_EQ(lists[0].index, -1);
  EXPECT_EQ(lists[1].index, 3);
  EXPECT_EQ(lists[2].index, 7);
  EXPECT_EQ(t.flatten_mapping.at("model.layers.0.mlp.w1")[2].index, 0);
  EXPECT_EQ(t.flatten_mapping.at("model.layers.0.mlp.w1")[3].key, "mlp");
  EXPECT_TRUE(t.flatten_mapping.at("x").empty());
  EXPECT_TRUE(t.has_storage_meta);
  EXPECT_EQ(t.storage_checkpoint_id, "/ckpt/step-100");
  EXPECT_EQ(t.save_id, "3f2c9a");
  EXPECT_EQ(t.load_id, "");
  EXPECT_EQ(t.modules, (std::vector<std::string>{"model", "optim"}));
  // And at any alignment.
  for (size_t shift = 1; shift < 8; ++shift) {
    std::string buf(shift, 'x');
    buf += enc;
    StatusOr<Metadata> s = DecodeMetadata(std::string_view(buf).substr(shift));
    ASSERT_TRUE(s.ok()) << shift << ": " << s.status();
    EXPECT_TRUE(*s == md) << shift;
  }
}

TEST(MetadataCodecTest, TorchFieldsAreOptional) {
  // Without them: absent stays absent, and the encoding is what it was before they existed
  // (nothing is written for an absent table or a default bytes_encoding).
  const Metadata plain = SampleMetadata();
  const std::string plain_enc = EncodeMetadata(plain);
  StatusOr<Metadata> d = DecodeMetadata(plain_enc);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(*d == plain);
  EXPECT_FALSE(d->torch_dcp.has_value());
  for (const auto& [fqn, e] : d->entries) {
    EXPECT_FALSE(e.torch_properties.has_value()) << fqn;
    EXPECT_EQ(e.bytes_encoding, BytesEncoding::kRaw) << fqn;
  }
  namespace fb = ::dcpkv::format;
  auto has_field = [](const void* table, flatbuffers::voffset_t field) {
    return reinterpret_cast<const flatbuffers::Table*>(table)->CheckField(field);
  };
  const fb::CheckpointMetadata* root = fb::GetCheckpointMetadata(plain_enc.data());
  EXPECT_FALSE(has_field(root, fb::CheckpointMetadata::VT_TORCH_DCP));
  EXPECT_TRUE(has_field(root, fb::CheckpointMetadata::VT_TAGS));  // the check can see a field
  for (const fb::Entry* e : *root->entries()) {
    EXPECT_FALSE(has_field(e, fb::Entry::VT_TORCH_PROPERTIES)) << e->fqn()->str();
    EXPECT_FALSE(has_field(e, fb::Entry::VT_BYTES_ENCODING)) << e->fqn()->str();
  }
  const Metadata torch = SampleTorchMetadata();
  EXPECT_FALSE(plain == torch);
  EXPECT_GT(EncodeMetadata(torch).size(), plain_enc.size());
  // Present but empty is not absent.
  Metadata empty = plain;
  empty.torch_dcp.emplace();
  empty.entries.at("model.bias").torch_properties.emplace();
  EXPECT_FALSE(empty == plain);
  d = DecodeMetadata(EncodeMetadata(empty));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(*d == empty);
  ASSERT_TRUE(d->torch_dcp.has_value());
  EXPECT_FALSE(d->torch_dcp->has_flatten_mapping);
  EXPECT_FALSE(d->torch_dcp->has_storage_meta);
  EXPECT_TRUE(d->entries.at("model.bias").torch_properties.has_value());
  EXPECT_FALSE(d->entries.at("model.w").torch_properties.has_value());
  // Each new field takes part in operator==.
  Metadata other = torch;
  other.entries.at("rng.state").bytes_encoding = BytesEncoding::kRaw;
  EXPECT_FALSE(other == torch);
  other = torch;
  other.entries.at("model.bias").torch_properties->strides[1] = 511;
  EXPECT_FALSE(other == torch);
  other = torch;
  other.torch_dcp->flatten_mapping.at("lists.3.7")[1].index = 4;
  EXPECT_FALSE(other == torch);
  other = torch;
  other.torch_dcp->modules.pop_back();
  EXPECT_FALSE(other == torch);
}

TEST(MetadataCodecTest, RoundTripAtAnyAlignment) {
  Metadata md = SampleMetadata();
  std::string enc = EncodeMetadata(md);
  for (size_t shift = 0; shift < 8; ++shift) {
    std::string buf(shift, 'x');
    buf += enc;
    StatusOr<Metadata> d = DecodeMetadata(std::string_view(buf).substr(shift));
    ASSERT_TRUE(d.ok()) << shift << ": " << d.status();
    EXPECT_TRUE(*d == md);
  }
}

TEST(MetadataCodecTest, EmptyMetadata) {
  Metadata md;
  md.checkpoint_id = "c";
  StatusOr<Metadata> d = DecodeMetadata(EncodeMetadata(md));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(*d == md);
}

TEST(MetadataCodecTest, LargeMetadataRoundTrip) {
  Metadata md;
  md.checkpoint_id = "large";
  md.world_size = 64;
  md.committed_unix_micros = -1;
  for (int f = 0; f < 1000; ++f) {
    EntryMetadata e{DType::kBFloat16, {64 * 128, 4096}, {}};
    for (uint64_t s = 0; s < 64; ++s) {
      e.shards.push_back(
          Shard({s * 128, 0}, {128, 4096}, static_cast<int32_t>(s), DType::kBFloat16, 1));
    }
    md.entries["model.layers." + std::to_string(f) + ".w"] = std::move(e);
  }
  std::string enc = EncodeMetadata(md);
  StatusOr<Metadata> d = DecodeMetadata(enc);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(*d == md);
  // Column-wise shards: about 48 bytes per 2-d shard.
  EXPECT_LT(enc.size(), 1000u * 64 * 64);
}

TEST(MetadataCodecTest, TruncationIsDataLoss) {
  std::string enc = EncodeMetadata(SampleMetadata());
  for (size_t keep = 0; keep < enc.size(); ++keep) {
    // An exactly sized (16-byte aligned) allocation: AddressSanitizer reports any overread.
    std::unique_ptr<char[]> prefix(new char[keep]);
    std::memcpy(prefix.get(), enc.data(), keep);
    StatusOr<Metadata> d = DecodeMetadata(std::string_view(prefix.get(), keep));
    ASSERT_FALSE(d.ok()) << "truncated to " << keep;
    ASSERT_EQ(d.status().code(), StatusCode::kDataLoss) << keep << ": " << d.status();
  }
}

TEST(MetadataCodecTest, GarbageIsDataLoss) {
  for (uint64_t seed = 0; seed < 300; ++seed) {
    std::vector<uint8_t> junk = testing::RandomBytes(8 + seed * 7, seed);
    if (seed % 2 == 0) std::memcpy(junk.data() + 4, "DKVD", 4);  // right identifier, bad body
    std::string_view bytes(reinterpret_cast<const char*>(junk.data()), junk.size());
    ExpectDataLoss(bytes, "corrupt checkpoint metadata");
  }
  // A valid FlatBuffer of another type.
  ExpectDataLoss(std::string("\x08\x00\x00\x00"
                             "DKVM"
                             "\x00\x00\x00\x00",
                             12),
                 "identifier");
}

// What flipping each bit pattern (0x01, 0x80, 0xFF) of each byte of `enc`, the encoding of
// `md`, does: a DATA_LOSS error (detected), the same Metadata (padding no reader looks at), or a
// different one that is still valid (a commit time, a chunk count, a character of a key).
struct FlipOutcomes {
  size_t detected = 0;
  size_t unchanged = 0;
  size_t changed = 0;
};

FlipOutcomes FlipEveryByte(const std::string& enc, const Metadata& md) {
  FlipOutcomes o;
  for (size_t at = 0; at < enc.size(); ++at) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xFF}}) {
      std::string bad = enc;
      bad[at] = static_cast<char>(bad[at] ^ mask);
      StatusOr<Metadata> d = DecodeMetadata(bad);
      if (!d.ok()) {
        EXPECT_EQ(d.status().code(), StatusCode::kDataLoss) << at << ": " << d.status();
        ++o.detected;
      } else if (*d == md) {
        ++o.unchanged;
      } else {
        ++o.changed;
        EXPECT_TRUE(ValidateMetadata(*d).ok()) << at;
      }
    }
  }
  return o;
}

TEST(MetadataCodecTest, EveryFlippedByteIsDetectedOrHarmless) {
  Metadata md;
  md.checkpoint_id = "ckpt-1";
  md.world_size = 4;
  md.coordinator_rank = 1;
  md.committed_unix_micros = 77;
  md.entries["a.w"] = {
      DType::kFloat32,
      {4, 6},
      {Shard({0, 0}, {2, 6}, 0, DType::kFloat32), Shard({2, 0}, {2, 6}, 3, DType::kFloat32)}};
  md.entries["b"] = {DType::kBytes, {9}, {Shard({0}, {9}, 2, DType::kBytes)}};
  md.entries["s"] = {DType::kInt64, {}, {Shard({}, {}, 1, DType::kInt64)}};
  const std::string enc = EncodeMetadata(md);
  const FlipOutcomes o = FlipEveryByte(enc, md);
  // Most flips are caught; a few bytes are padding.
  const size_t flips = 3 * enc.size();
  EXPECT_GT(o.detected, flips / 2) << o.unchanged << " " << o.changed;
  EXPECT_LT(o.unchanged, flips / 8) << o.unchanged;
}

Metadata OneTensor(EntryMetadata e) {
  Metadata md;
  md.checkpoint_id = "bad";
  md.world_size = 2;
  md.entries["model.w"] = std::move(e);
  return md;
}

TEST(MetadataCodecTest, SemanticViolationsAreDataLoss) {
  const DType f32 = DType::kFloat32;
  // Shard outside the global shape.
  ExpectDataLoss(EncodeMetadata(OneTensor({f32, {4, 4}, {Shard({2, 0}, {3, 4}, 0, f32)}})),
                 "fqn \"model.w\": shard 0: offset 2 + size 3 exceeds global dimension 0");
  // Offset + size overflowing 64 bits.
  ExpectDataLoss(EncodeMetadata(OneTensor({f32, {4}, {Shard({~0ull}, {2}, 0, f32)}})),
                 "exceeds global dimension");
  // Bytes that do not match the sizes.
  SavedShard wrong_bytes = Shard({0, 0}, {4, 4}, 0, f32);
  wrong_bytes.bytes += 1;
  ExpectDataLoss(EncodeMetadata(OneTensor({f32, {4, 4}, {wrong_bytes}})),
                 "fqn \"model.w\": shard 0: bytes 65 do not match");
  // Ranks outside [0, world_size).
  ExpectDataLoss(EncodeMetadata(OneTensor({f32, {4}, {Shard({0}, {4}, 2, f32)}})),
                 "fqn \"model.w\": shard 0: rank 2 is outside [0, 2)");
  ExpectDataLoss(EncodeMetadata(OneTensor({f32, {4}, {Shard({0}, {4}, -1, f32)}})),
                 "rank -1 is outside");
  // Invalid dtypes.
  ExpectDataLoss(EncodeMetadata(OneTensor({static_cast<DType>(99), {4}, {}})),
                 "fqn \"model.w\": invalid dtype 99");
  ExpectDataLoss(EncodeMetadata(OneTensor({static_cast<DType>(0), {4}, {}})), "invalid dtype 0");
  // Offsets and sizes of another dimension count than the global shape: the encoder pads them
  // with zeros (and ValidateMetadata rejects such metadata before it is encoded).
  EXPECT_EQ(ValidateMetadata(OneTensor({f32, {4, 4}, {Shard({0}, {4}, 0, f32)}})).code(),
            StatusCode::kInvalidArgument);
  ExpectDataLoss(EncodeMetadata(OneTensor({f32, {4, 4}, {Shard({0}, {4}, 0, f32)}})),
                 "fqn \"model.w\": shard 0: bytes 16 do not match sizes [4, 0]");
  // Too many dimensions.
  ExpectDataLoss(EncodeMetadata(OneTensor({f32, Shape(65, 1), {}})), "65 dimensions");
  // A global shape whose byte size overflows.
  ExpectDataLoss(EncodeMetadata(OneTensor({DType::kFloat64, {1ull << 40, 1ull << 30}, {}})),
                 "overflows 64 bits");
  // ... unless the tensor is empty.
  EXPECT_TRUE(DecodeMetadata(EncodeMetadata(OneTensor(
                                 {DType::kFloat64, {1ull << 40, 1ull << 30, 1ull << 40, 0}, {}})))
                  .ok());
  // Invalid fqn and checkpoint id.
  Metadata bad_fqn = OneTensor({f32, {4}, {}});
  bad_fqn.entries["has space"] = {f32, {4}, {}};
  ExpectDataLoss(EncodeMetadata(bad_fqn),
                 "checkpoint \"bad\": fqn \"has space\" has invalid byte 0x20 at position 3");
  Metadata bad_id = OneTensor({f32, {4}, {}});
  bad_id.checkpoint_id = "latest";
  ExpectDataLoss(EncodeMetadata(bad_id), "corrupt checkpoint metadata");
  bad_id.checkpoint_id = "";
  ExpectDataLoss(EncodeMetadata(bad_id), "corrupt checkpoint metadata");
  // World size and coordinator rank.
  Metadata bad_world = OneTensor({f32, {4}, {}});
  bad_world.world_size = 0;
  ExpectDataLoss(EncodeMetadata(bad_world), "world_size 0 is not positive");
  Metadata bad_coord = OneTensor({f32, {4}, {}});
  bad_coord.coordinator_rank = 2;
  ExpectDataLoss(EncodeMetadata(bad_coord), "coordinator_rank 2 is outside [0, 2)");
}

// Finds `needle` in `hay` exactly once.
size_t FindOnce(const std::string& hay, std::string_view needle) {
  size_t at = hay.find(needle);
  EXPECT_NE(at, std::string::npos);
  EXPECT_EQ(hay.find(needle, at + 1), std::string::npos);
  return at;
}

TEST(MetadataCodecTest, DuplicateAndUnsortedFqnsAreDataLoss) {
  // std::map cannot hold duplicates: encode "aaa" and "aab", then patch the second into "aaa".
  Metadata md = OneTensor({DType::kInt8, {1}, {}});
  md.entries.clear();
  md.entries["xaa"] = {DType::kInt8, {1}, {}};
  md.entries["xab"] = {DType::kInt8, {2}, {}};
  std::string enc = EncodeMetadata(md);
  std::string dup = enc;
  dup[FindOnce(enc, "xab") + 2] = 'a';
  ExpectDataLoss(dup, "duplicate fqn \"xaa\"");
  std::string unsorted = enc;
  unsorted[FindOnce(enc, "xab") + 1] = '0';  // "x0b" < "xaa"
  ExpectDataLoss(unsorted, "fqn \"x0b\" out of order after \"xaa\"");
}

TEST(MetadataCodecTest, TorchFieldViolationsAreDataLoss) {
  // A bytes_encoding this build does not know, named with its fqn and value.
  Metadata md = SampleTorchMetadata();
  md.entries.at("rng.state").bytes_encoding = static_cast<BytesEncoding>(7);
  EXPECT_EQ(ValidateMetadata(md).code(), StatusCode::kInvalidArgument);
  ExpectDataLoss(EncodeMetadata(md),
                 "checkpoint \"step-100\": fqn \"rng.state\": unknown bytes_encoding 7");
  md.entries.at("rng.state").bytes_encoding = static_cast<BytesEncoding>(255);
  ExpectDataLoss(EncodeMetadata(md), "fqn \"rng.state\": unknown bytes_encoding 255");
  // torch.save on a tensor.
  md = SampleTorchMetadata();
  md.entries.at("model.w").bytes_encoding = BytesEncoding::kTorchSave;
  ExpectDataLoss(EncodeMetadata(md),
                 "fqn \"model.w\": bytes_encoding torch.save on a tensor (bytes entries only)");
  // Strides without has_strides, too many strides.
  md = SampleTorchMetadata();
  md.entries.at("model.w").torch_properties->strides = {512, 1};
  ExpectDataLoss(EncodeMetadata(md),
                 "fqn \"model.w\": torch properties: strides without has_strides");
  md.entries.at("model.w").torch_properties->has_strides = true;
  md.entries.at("model.w").torch_properties->strides.assign(65, 1);
  ExpectDataLoss(EncodeMetadata(md), "fqn \"model.w\": torch properties: 65 strides");
  // A flatten mapping without has_flatten_mapping; storage meta without has_storage_meta.
  md = SampleTorchMetadata();
  md.torch_dcp->has_flatten_mapping = false;
  ExpectDataLoss(EncodeMetadata(md), "flatten mapping without has_flatten_mapping");
  md = SampleTorchMetadata();
  md.torch_dcp->has_storage_meta = false;
  ExpectDataLoss(EncodeMetadata(md), "storage meta fields without has_storage_meta");
  // A path index that is neither a list index nor -1; an invalid flattened name.
  md = SampleTorchMetadata();
  md.torch_dcp->flatten_mapping.at("lists.3.7")[2].index = -2;
  ExpectDataLoss(EncodeMetadata(md),
                 "torch metadata: flatten mapping: fqn \"lists.3.7\": path element 2 has index -2");
  md = SampleTorchMetadata();
  md.torch_dcp->flatten_mapping["has space"] = {{"has space", -1}};
  ExpectDataLoss(EncodeMetadata(md), "fqn \"has space\" has invalid byte 0x20");
  // Duplicate and unsorted flattened names: encode "xaa" and "xab", then patch the second.
  md = SampleTorchMetadata();
  md.torch_dcp->flatten_mapping.clear();
  md.torch_dcp->flatten_mapping["xaa"] = {{"xaa", -1}};
  md.torch_dcp->flatten_mapping["xab"] = {{"xyz", -1}};
  const std::string enc = EncodeMetadata(md);
  ASSERT_TRUE(DecodeMetadata(enc).ok());
  std::string dup = enc;
  dup[FindOnce(enc, "xab") + 2] = 'a';
  ExpectDataLoss(dup, "torch metadata: flatten mapping: duplicate fqn \"xaa\"");
  std::string unsorted = enc;
  unsorted[FindOnce(enc, "xab") + 1] = '0';  // "x0b" < "xaa"
  ExpectDataLoss(unsorted,
                 "torch metadata: flatten mapping: fqn \"x0b\" out of order after \"xaa\"");
}

TEST(MetadataCodecTest, EveryFlippedByteOfTorchFieldsIsDetectedOrValid) {
  Metadata md;
  md.checkpoint_id = "ckpt-1";
  md.world_size = 2;
  md.entries["a.w"] = {DType::kFloat32, {4, 6}, {Shard({0, 0}, {4, 6}, 0, DType::kFloat32)}};
  md.entries["a.w"].torch_properties = TorchTensorProperties{};
  md.entries["a.w"].torch_properties->has_strides = true;
  md.entries["a.w"].torch_properties->strides = {6, 1};
  md.entries["b"] = {DType::kBytes, {9}, {Shard({0}, {9}, 1, DType::kBytes)}};
  md.entries["b"].bytes_encoding = BytesEncoding::kTorchSave;
  TorchDcpMetadata& t = md.torch_dcp.emplace();
  t.version = "1.0.0";
  t.has_flatten_mapping = true;
  t.flatten_mapping["a.w"] = {{"a", -1}, {"w", -1}};
  t.flatten_mapping["l.0"] = {{"l", -1}, {"", 0}};
  t.has_storage_meta = true;
  t.save_id = "s";
  t.modules = {"m"};
  const std::string enc = EncodeMetadata(md);
  EXPECT_GT(FlipEveryByte(enc, md).detected, enc.size());
}

// Writes `values` as a vector of 8-byte values whose elements start 4 bytes off an 8-byte
// boundary of the finished buffer: no encoder does that, but the FlatBuffers Verifier (which
// checks only the 4-byte length field) accepts it.
// REQUIRES: the finished buffer's size is a multiple of 8 (it has an 8-byte field).
flatbuffers::Offset<flatbuffers::Vector<uint64_t>> MisalignedU64Vector(
    flatbuffers::FlatBufferBuilder& b, const std::vector<uint64_t>& values) {
  b.Align(sizeof(uint32_t));
  // Offsets count from the end: an offset that is a multiple of 8 puts the length field on an
  // 8-byte boundary and the elements after it 4 bytes off one.
  if ((b.GetSize() + 8 * values.size() + 4) % 8 != 0) b.PushElement<uint32_t>(0);
  b.StartVector(2 * values.size(), sizeof(uint32_t));
  for (size_t i = values.size(); i-- > 0;) {
    b.PushElement(static_cast<uint32_t>(values[i] >> 32));
    b.PushElement(static_cast<uint32_t>(values[i]));
  }
  return flatbuffers::Offset<flatbuffers::Vector<uint64_t>>(b.EndVector(values.size()));
}

// Builds CheckpointMetadata buffers with the raw FlatBuffers API (field slots as declared in
// core/schema/metadata.fbs), to write what EncodeMetadata never does.
struct RawEntry {
  std::string fqn = "w";
  uint8_t dtype = static_cast<uint8_t>(DType::kInt8);
  std::vector<uint64_t> shape = {4};
  std::vector<int32_t> ranks = {0};
  std::vector<uint64_t> offsets = {0};
  std::vector<uint64_t> sizes = {4};
  std::vector<uint64_t> bytes = {4};
  std::vector<uint32_t> chunks = {1};
};

// A FlattenedName of a raw torch_dcp table.
struct RawFlattenedName {
  std::string fqn = "w";
  std::vector<std::string> keys = {"w"};
  std::vector<int64_t> indices = {-1};
};

struct RawMetadata {
  uint16_t format_version = 1;
  std::string checkpoint_id = "raw";
  int32_t world_size = 1;
  std::vector<RawEntry> entries = {RawEntry{}};
  // Entries after the first reuse the first one's vectors (no encoder does that).
  bool share_vectors = false;
  // A string in the field slot after the last one (`torch_dcp`), as a later version might
  // append.
  std::string future_field;
  // If not empty, a torch_dcp table with this flatten mapping (names after the first reuse the
  // first one's path columns if share_vectors).
  std::vector<RawFlattenedName> flatten;
  // The first entry's shard_offsets are misaligned (MisalignedU64Vector).
  bool misaligned_offsets = false;

  std::string Build() const {
    namespace fbs = ::flatbuffers;
    fbs::FlatBufferBuilder b;
    b.ForceDefaults(true);
    std::vector<fbs::Offset<void>> tables;
    fbs::Offset<fbs::Vector<uint64_t>> shape, offsets, sizes, bytes;
    fbs::Offset<fbs::Vector<int32_t>> ranks;
    fbs::Offset<fbs::Vector<uint32_t>> chunks;
    for (size_t i = 0; i < entries.size(); ++i) {
      const RawEntry& e = entries[i];
      if (i == 0 || !share_vectors) {
        shape = b.CreateVector(e.shape);
        ranks = b.CreateVector(e.ranks);
        offsets = i == 0 && misaligned_offsets ? MisalignedU64Vector(b, e.offsets)
                                               : b.CreateVector(e.offsets);
        sizes = b.CreateVector(e.sizes);
        bytes = b.CreateVector(e.bytes);
        chunks = b.CreateVector(e.chunks);
      }
      auto fqn = b.CreateString(e.fqn);
      fbs::uoffset_t start = b.StartTable();
      b.AddOffset(4, fqn);
      b.AddElement<uint8_t>(6, e.dtype, 0);
      b.AddOffset(8, shape);
      b.AddOffset(10, ranks);
      b.AddOffset(12, offsets);
      b.AddOffset(14, sizes);
      b.AddOffset(16, bytes);
      b.AddOffset(18, chunks);
      tables.push_back(fbs::Offset<void>(b.EndTable(start)));
    }
    auto entries_vec = b.CreateVector(tables);
    fbs::Offset<void> torch_dcp;
    if (!flatten.empty()) {
      std::vector<fbs::Offset<void>> names;
      fbs::Offset<fbs::Vector<fbs::Offset<fbs::String>>> keys;
      fbs::Offset<fbs::Vector<int64_t>> indices;
      for (size_t i = 0; i < flatten.size(); ++i) {
        if (i == 0 || !share_vectors) {
          keys = b.CreateVectorOfStrings(flatten[i].keys);
          indices = b.CreateVector(flatten[i].indices);
        }
        auto fqn = b.CreateString(flatten[i].fqn);
        fbs::uoffset_t start = b.StartTable();
        b.AddOffset(4, fqn);
        b.AddOffset(6, keys);
        b.AddOffset(8, indices);
        names.push_back(fbs::Offset<void>(b.EndTable(start)));
      }
      auto mapping = b.CreateVector(names);
      fbs::uoffset_t start = b.StartTable();
      b.AddElement<uint8_t>(6, 1, 0);  // has_flatten_mapping
      b.AddOffset(8, mapping);
      torch_dcp = fbs::Offset<void>(b.EndTable(start));
    }
    auto id = b.CreateString(checkpoint_id);
    fbs::Offset<fbs::String> future;
    if (!future_field.empty()) future = b.CreateString(future_field);
    fbs::uoffset_t start = b.StartTable();
    b.AddElement<uint16_t>(4, format_version, 1);
    b.AddOffset(6, id);
    b.AddElement<int32_t>(8, world_size, 0);
    b.AddElement<int32_t>(10, 0, 0);
    b.AddElement<int64_t>(12, 5, 0);
    b.AddOffset(14, entries_vec);
    if (!flatten.empty()) b.AddOffset(26, torch_dcp);
    if (!future_field.empty()) b.AddOffset(28, future);  // after the last field of this version
    b.Finish(fbs::Offset<void>(b.EndTable(start)), "DKVD");
    return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
  }
};

TEST(MetadataCodecTest, RawBuilderMatchesSchema) {
  StatusOr<Metadata> d = DecodeMetadata(RawMetadata{}.Build());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->checkpoint_id, "raw");
  EXPECT_EQ(d->committed_unix_micros, 5);
  ASSERT_EQ(d->entries.count("w"), 1u);
  EXPECT_TRUE(d->entries.at("w") ==
              (EntryMetadata{DType::kInt8, {4}, {SavedShard{{0}, {4}, 0, 4, 1}}}));
}

TEST(MetadataCodecTest, UnsupportedVersionIsDataLoss) {
  RawMetadata raw;
  raw.format_version = 3;
  ExpectDataLoss(raw.Build(), "unsupported format version 3");
  raw.format_version = 0;
  ExpectDataLoss(raw.Build(), "unsupported format version 0");
}

TEST(MetadataCodecTest, FieldsAppendedByLaterVersionsAreIgnored) {
  RawMetadata raw;
  raw.future_field = "base checkpoint: step-50";
  StatusOr<Metadata> d = DecodeMetadata(raw.Build());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->entries.size(), 1u);
}

TEST(MetadataCodecTest, ColumnLengthsMustAgree) {
  RawMetadata raw;
  raw.entries[0].shape = {4, 4};  // two dimensions, but one offset and one size per shard
  raw.entries[0].sizes = {4};
  ExpectDataLoss(raw.Build(),
                 "fqn \"w\": shard_offsets has 1 values; 1 shards of 2 dimensions need 2");
  raw = RawMetadata{};
  raw.entries[0].chunks = {};
  ExpectDataLoss(raw.Build(), "shard_chunks has 0 values");
  raw = RawMetadata{};
  raw.entries[0].ranks = {0, 0};
  ExpectDataLoss(raw.Build(), "shard_offsets has 1 values; 2 shards");
}

TEST(MetadataCodecTest, SharedVectorsAreDataLoss) {
  // 100 entries that all point at the same 10000-shard columns would decode to 100 times the
  // buffer's data; the decoder refuses instead of allocating it.
  RawMetadata raw;
  raw.share_vectors = true;
  RawEntry& first = raw.entries[0];
  first.shape = {10000};
  first.ranks.assign(10000, 0);
  first.offsets.clear();
  for (uint64_t i = 0; i < 10000; ++i) first.offsets.push_back(i);
  first.sizes.assign(10000, 1);
  first.bytes.assign(10000, 1);
  first.chunks.assign(10000, 1);
  for (int i = 1; i < 100; ++i) raw.entries.push_back(RawEntry{"w" + std::to_string(1000 + i)});
  ExpectDataLoss(raw.Build(), "vectors overlap other data");
  raw.entries.resize(1);
  EXPECT_TRUE(DecodeMetadata(raw.Build()).ok());
}

// Found by tests/fuzz/metadata_codec_fuzzer: 8-byte reads of a misaligned vector (undefined
// behaviour) instead of DATA_LOSS.
TEST(MetadataCodecTest, MisalignedVectorIsDataLoss) {
  RawMetadata raw;
  raw.misaligned_offsets = true;
  ExpectDataLoss(raw.Build(), "fqn \"w\": misaligned vector of 8-byte values");
  raw.misaligned_offsets = false;
  EXPECT_TRUE(DecodeMetadata(raw.Build()).ok());
}

TEST(MetadataCodecTest, MissingRequiredFqnIsDataLoss) {
  // An entry table without its fqn (a required field) fails verification.
  flatbuffers::FlatBufferBuilder b;
  auto empty_vec = b.CreateVector(std::vector<uint64_t>{});
  flatbuffers::uoffset_t start = b.StartTable();
  b.AddOffset(8, empty_vec);
  std::vector<flatbuffers::Offset<void>> tables = {flatbuffers::Offset<void>(b.EndTable(start))};
  auto entries = b.CreateVector(tables);
  auto id = b.CreateString("c");
  start = b.StartTable();
  b.AddOffset(6, id);
  b.AddElement<int32_t>(8, 1, 0);
  b.AddOffset(14, entries);
  b.Finish(flatbuffers::Offset<void>(b.EndTable(start)), "DKVD");
  ExpectDataLoss(std::string_view(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()),
                 "FlatBuffers verification failed");
}

TEST(MetadataCodecTest, RawTorchFlattenMappingMatchesSchema) {
  RawMetadata raw;
  raw.flatten = {RawFlattenedName{}, {"w.0", {"w", ""}, {-1, 0}}};
  StatusOr<Metadata> d = DecodeMetadata(raw.Build());
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(d->torch_dcp.has_value());
  EXPECT_TRUE(d->torch_dcp->has_flatten_mapping);
  EXPECT_FALSE(d->torch_dcp->has_storage_meta);
  EXPECT_EQ(d->torch_dcp->version, "");
  ASSERT_EQ(d->torch_dcp->flatten_mapping.size(), 2u);
  EXPECT_EQ(d->torch_dcp->flatten_mapping.at("w"), (std::vector<TorchPathElement>{{"w", -1}}));
  EXPECT_EQ(d->torch_dcp->flatten_mapping.at("w.0"),
            (std::vector<TorchPathElement>{{"w", -1}, {"", 0}}));
}

TEST(MetadataCodecTest, TorchPathColumnsMustAgree) {
  RawMetadata raw;
  raw.flatten = {RawFlattenedName{}, {"w.0", {"w", ""}, {-1}}};
  ExpectDataLoss(raw.Build(),
                 "checkpoint \"raw\": torch metadata: flatten mapping: fqn \"w.0\": 2 path_keys "
                 "for 1 path_indices");
  raw.flatten = {{"w", {}, {-1, 0}}};
  ExpectDataLoss(raw.Build(), "fqn \"w\": 0 path_keys for 2 path_indices");
  // Out of order as the raw builder writes them (EncodeMetadata cannot).
  raw.flatten = {{"w.1", {"w", ""}, {-1, 1}}, {"w.0", {"w", ""}, {-1, 0}}};
  ExpectDataLoss(raw.Build(), "fqn \"w.0\" out of order after \"w.1\"");
}

TEST(MetadataCodecTest, SharedTorchPathVectorsAreDataLoss) {
  // 2000 flattened names that all point at the same 2000-element path columns would decode to
  // far more than the buffer holds.
  RawMetadata raw;
  raw.share_vectors = true;
  RawFlattenedName first{"n.0000", std::vector<std::string>(2000, "key"),
                         std::vector<int64_t>(2000, -1)};
  raw.flatten = {first};
  for (int i = 1; i < 2000; ++i) {
    std::string fqn = std::to_string(i);
    raw.flatten.push_back({"n." + std::string(4 - fqn.size(), '0') + fqn, {}, {}});
  }
  ExpectDataLoss(raw.Build(), "torch metadata: vectors overlap other data");
  raw.flatten.resize(1);
  EXPECT_TRUE(DecodeMetadata(raw.Build()).ok());
}

}  // namespace
}  // namespace dcpkv
