#include "dcpkv/inspect/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "tests/tools/safetensors_check.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

extern char** environ;

namespace dcpkv::inspect {
namespace {

using testing::Python3;
using testing::RunSafetensorsCheck;

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A tensor to write and the bytes it holds.
struct TestTensor {
  SafetensorsTensor meta;
  std::vector<uint8_t> bytes;
};

TestTensor MakeTensor(std::string name, DType dtype, Shape shape, uint64_t seed) {
  TestTensor t;
  t.meta.name = std::move(name);
  t.meta.dtype = dtype;
  t.meta.shape = std::move(shape);
  uint64_t elements = 1;
  for (uint64_t d : t.meta.shape) elements *= d;
  t.bytes = testing::RandomBytes(elements * ElementSize(dtype), seed);
  if (dtype == DType::kBool) {
    for (uint8_t& b : t.bytes) b &= 1;
  }
  return t;
}

// Writes `tensors` to `path`, appending their concatenated data in pieces whose sizes cycle
// through `pieces`, so that pieces straddle tensor boundaries.
Status WriteTensors(const std::string& path, const std::vector<TestTensor>& tensors,
                    const std::map<std::string, std::string>& metadata = {},
                    const std::vector<size_t>& pieces = {1, 7, 1000, size_t{5} << 20}) {
  std::vector<SafetensorsTensor> metas;
  std::vector<uint8_t> data;
  for (const TestTensor& t : tensors) {
    metas.push_back(t.meta);
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                         SafetensorsWriter::Create(path, metas, metadata));
  for (size_t pos = 0, i = 0; pos < data.size(); ++i) {
    const size_t n = std::min(pieces[i % pieces.size()], data.size() - pos);
    DCPKV_RETURN_IF_ERROR(writer->Append(data.data() + pos, n));
    pos += n;
  }
  return writer->Finish();
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteWholeFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file from its parts: the length (by default json's), the JSON, `data_size`
// bytes of data.
std::string RawFile(std::string_view json, size_t data_size,
                    std::optional<uint64_t> length = std::nullopt) {
  const uint64_t n = length.value_or(json.size());
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  out += json;
  out.append(data_size, '\x5a');
  return out;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<uint8_t> ReadTensor(const SafetensorsReader& reader, const SafetensorsTensor& t) {
  std::vector<uint8_t> out(t.end - t.begin);
  Status s = reader.Read(t, 0, out.data(), out.size());
  EXPECT_TRUE(s.ok()) << t.name << ": " << s;
  return out;
}

// ---- dtype names ----------------------------------------------------------------------------

TEST(SafetensorsDTypeTest, NamesRoundTrip) {
  for (DType dtype : kAllDTypes) {
    std::string_view name = SafetensorsDTypeName(dtype);
    const bool unnamed = dtype == DType::kComplex32 || dtype == DType::kComplex128 ||
                         dtype == DType::kFloat8E4M3Fnuz || dtype == DType::kFloat8E5M2Fnuz;
    ASSERT_EQ(name.empty(), unnamed) << DTypeName(dtype);
    if (unnamed) continue;
    const DType expected = dtype == DType::kBytes ? DType::kUInt8 : dtype;
    EXPECT_EQ(DTypeFromSafetensorsName(name), expected) << name;
  }
  EXPECT_EQ(SafetensorsDTypeName(DType::kBFloat16), "BF16");
  EXPECT_EQ(SafetensorsDTypeName(DType::kFloat8E4M3), "F8_E4M3");
  EXPECT_EQ(SafetensorsDTypeName(DType::kFloat8E5M2), "F8_E5M2");
  EXPECT_EQ(SafetensorsDTypeName(DType::kBool), "BOOL");
  EXPECT_EQ(DTypeFromSafetensorsName("U16"), DType::kUInt16);
  EXPECT_EQ(DTypeFromSafetensorsName("C64"), DType::kComplex64);
  EXPECT_EQ(DTypeFromSafetensorsName("C128"), std::nullopt);
  EXPECT_EQ(DTypeFromSafetensorsName("f32"), std::nullopt);
}

// ---- writer and reader round trip -------------------------------------------------------------

std::vector<TestTensor> EveryKindOfTensor() {
  std::vector<TestTensor> tensors;
  for (DType dtype : kAllDTypes) {
    if (SafetensorsDTypeName(dtype).empty()) continue;  // no safetensors dtype: refused below
    Shape shape = dtype == DType::kBytes ? Shape{15} : Shape{3, 5};
    tensors.push_back(MakeTensor("t." + std::string(DTypeName(dtype)), dtype, shape,
                                 static_cast<uint64_t>(dtype)));
  }
  tensors.push_back(MakeTensor("scalar", DType::kFloat64, {}, 100));
  tensors.push_back(MakeTensor("empty", DType::kFloat32, {0, 4}, 101));
  tensors.push_back(MakeTensor("big", DType::kUInt8, {(size_t{6} << 20) + 3}, 102));
  tensors.push_back(MakeTensor("after_big", DType::kInt16, {2, 1, 3}, 103));
  return tensors;
}

TEST(SafetensorsTest, RoundTripEveryKindOfTensor) {
  testing::TempDir dir;
  const std::string path = dir.Sub("model.safetensors");
  const std::vector<TestTensor> tensors = EveryKindOfTensor();
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"step", "12"}};
  ASSERT_TRUE(WriteTensors(path, tensors, metadata).ok());

  StatusOr<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->metadata(), metadata);
  const std::vector<SafetensorsTensor>& read = (*reader)->tensors();
  ASSERT_EQ(read.size(), tensors.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsTensor& t = read[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, tensors[i].meta.name);
    EXPECT_EQ(t.dtype, tensors[i].meta.dtype);
    EXPECT_EQ(t.shape, tensors[i].meta.shape);
    EXPECT_EQ(t.begin, offset);
    offset += tensors[i].bytes.size();
    EXPECT_EQ(t.end, offset);
    EXPECT_EQ(ReadTensor(**reader, t), tensors[i].bytes);
  }

  // A read of part of a tensor.
  const SafetensorsTensor& f32 = read[1];
  ASSERT_EQ(f32.dtype, DType::kFloat32);
  uint8_t part[5];
  ASSERT_TRUE((*reader)->Read(f32, 9, part, sizeof(part)).ok());
  EXPECT_EQ(std::memcmp(part, tensors[1].bytes.data() + 9, sizeof(part)), 0);
}

TEST(SafetensorsTest, WriterReportsOffsetsAndFileSize) {
  testing::TempDir dir;
  const std::string path = dir.Sub("w.safetensors");
  std::vector<SafetensorsTensor> metas = {{"a", DType::kFloat32, {2, 3}, 77, 99},
                                          {"b", DType::kBytes, {5}, 0, 0},
                                          {"c", DType::kInt64, {}, 0, 0}};
  StatusOr<std::unique_ptr<SafetensorsWriter>> writer = SafetensorsWriter::Create(path, metas, {});
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<SafetensorsTensor>& laid_out = (*writer)->tensors();
  ASSERT_EQ(laid_out.size(), 3u);
  EXPECT_EQ(laid_out[0].begin, 0u);
  EXPECT_EQ(laid_out[0].end, 24u);
  EXPECT_EQ(laid_out[1].begin, 24u);
  EXPECT_EQ(laid_out[1].end, 29u);
  EXPECT_EQ(laid_out[1].dtype, DType::kBytes);
  EXPECT_EQ(laid_out[2].begin, 29u);
  EXPECT_EQ(laid_out[2].end, 37u);
  const std::vector<uint8_t> data = testing::RandomBytes(37, 5);
  ASSERT_TRUE((*writer)->Append(data.data(), data.size()).ok());
  ASSERT_TRUE((*writer)->Finish().ok());
  EXPECT_EQ(std::filesystem::file_size(path), (*writer)->file_size());
}

TEST(SafetensorsTest, HeaderIsPaddedJsonWithMetadataAndBytesEntries) {
  testing::TempDir dir;
  const std::string path = dir.Sub("h.safetensors");
  std::vector<TestTensor> tensors = {MakeTensor("w", DType::kFloat32, {3}, 1),
                                     MakeTensor("rng", DType::kBytes, {9}, 2),
                                     MakeTensor("cfg", DType::kBytes, {4}, 3)};
  ASSERT_TRUE(WriteTensors(path, tensors, {{"k", "v"}}).ok());
  const std::string file = ReadWholeFile(path);
  ASSERT_GE(file.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<uint8_t>(file[i])} << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(file.size(), 8 + n + 3 * 4 + 9 + 4);
  const std::string header = file.substr(8, n);
  EXPECT_THAT(header, StartsWith("{\"__metadata__\":{"));
  EXPECT_THAT(header, HasSubstr("\"k\":\"v\""));
  EXPECT_THAT(header, HasSubstr(R"("dcpkv.bytes_entries":"[\"rng\",\"cfg\"]")"));
  EXPECT_THAT(header, HasSubstr(R"("rng":{"dtype":"U8","shape":[9],"data_offsets":[12,21]})"));
  EXPECT_THAT(header, HasSubstr(R"("w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]})"));
  const size_t close = header.find_last_of('}');
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos) << header;
  EXPECT_LT(header.size() - close - 1, 8u);

  StatusOr<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->metadata(), (std::map<std::string, std::string>{{"k", "v"}}));
  ASSERT_EQ((*reader)->tensors().size(), 3u);
  EXPECT_EQ((*reader)->tensors()[0].dtype, DType::kFloat32);
  EXPECT_EQ((*reader)->tensors()[1].dtype, DType::kBytes);
  EXPECT_EQ((*reader)->tensors()[2].dtype, DType::kBytes);
}

TEST(SafetensorsTest, NoMetadataObjectWhenEmpty) {
  testing::TempDir dir;
  const std::string path = dir.Sub("m.safetensors");
  ASSERT_TRUE(WriteTensors(path, {MakeTensor("x", DType::kInt8, {2}, 1)}).ok());
  EXPECT_THAT(ReadWholeFile(path), ::testing::Not(HasSubstr("__metadata__")));
}

TEST(SafetensorsTest, FileWithNoTensors) {
  testing::TempDir dir;
  const std::string path = dir.Sub("none.safetensors");
  ASSERT_TRUE(WriteTensors(path, {}).ok());
  EXPECT_EQ(ReadWholeFile(path), RawFile("{}      ", 0));
  StatusOr<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE((*reader)->tensors().empty());
  EXPECT_TRUE((*reader)->metadata().empty());
}

// ---- writer life cycle ----------------------------------------------------------------------

TEST(SafetensorsWriterTest, FileAppearsOnlyAfterFinish) {
  testing::TempDir dir;
  const std::string path = dir.Sub("late.safetensors");
  ASSERT_TRUE(WriteTensors(path, {MakeTensor("old", DType::kUInt8, {1}, 1)}).ok());
  const std::string old_file = ReadWholeFile(path);

  StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(path, {{"x", DType::kInt32, {4}}}, {});
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<uint8_t> data = testing::RandomBytes(16, 1);
  ASSERT_TRUE((*writer)->Append(data.data(), 16).ok());
  std::vector<std::string> names = ListDir(dir.path());
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "late.safetensors");
  EXPECT_THAT(names[1], StartsWith("late.safetensors.tmp"));
  EXPECT_EQ(ReadWholeFile(path), old_file);

  ASSERT_TRUE((*writer)->Finish().ok());
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"late.safetensors"});
  StatusOr<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_EQ((*reader)->tensors().size(), 1u);
  EXPECT_EQ(ReadTensor(**reader, (*reader)->tensors()[0]), data);
}

TEST(SafetensorsWriterTest, DestroyedWithoutFinishLeavesNoFiles) {
  testing::TempDir dir;
  {
    StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
        SafetensorsWriter::Create(dir.Sub("a.safetensors"), {{"x", DType::kInt32, {4}}}, {});
    ASSERT_TRUE(writer.ok()) << writer.status();
    const uint8_t byte = 1;
    ASSERT_TRUE((*writer)->Append(&byte, 1).ok());
    EXPECT_EQ(ListDir(dir.path()).size(), 1u);
  }
  {
    // Finish fails for lack of data; the writer is then dropped.
    StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
        SafetensorsWriter::Create(dir.Sub("b.safetensors"), {{"x", DType::kInt32, {4}}}, {});
    ASSERT_TRUE(writer.ok()) << writer.status();
    EXPECT_FALSE((*writer)->Finish().ok());
  }
  EXPECT_TRUE(ListDir(dir.path()).empty());
}

TEST(SafetensorsWriterTest, AppendPastTheEndFails) {
  testing::TempDir dir;
  const std::string path = dir.Sub("p.safetensors");
  StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(path, {{"x", DType::kFloat64, {1}}}, {});
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<uint8_t> data = testing::RandomBytes(9, 1);
  Status s = (*writer)->Append(data.data(), 9);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(path));
  ASSERT_TRUE((*writer)->Append(data.data(), 8).ok());
  EXPECT_EQ((*writer)->Append(data.data(), 1).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE((*writer)->Append(data.data(), 0).ok());
  ASSERT_TRUE((*writer)->Finish().ok());
  EXPECT_EQ((*writer)->Append(data.data(), 0).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*writer)->Finish().code(), StatusCode::kFailedPrecondition);
}

TEST(SafetensorsWriterTest, FinishBeforeAllDataFails) {
  testing::TempDir dir;
  const std::string path = dir.Sub("f.safetensors");
  StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(path, {{"x", DType::kInt16, {3}}}, {});
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<uint8_t> data = testing::RandomBytes(6, 1);
  ASSERT_TRUE((*writer)->Append(data.data(), 5).ok());
  Status s = (*writer)->Finish();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("5 of 6"));
  EXPECT_FALSE(std::filesystem::exists(path));
  // Not fatal: the rest can still be appended.
  ASSERT_TRUE((*writer)->Append(data.data() + 5, 1).ok());
  ASSERT_TRUE((*writer)->Finish().ok());
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(SafetensorsWriterTest, CreateRejectsBadLists) {
  testing::TempDir dir;
  const std::string path = dir.Sub("bad.safetensors");
  const uint64_t big = uint64_t{1} << 62;
  struct Case {
    std::vector<SafetensorsTensor> tensors;
    std::map<std::string, std::string> metadata;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"a", DType::kInt8, {1}}, {"a", DType::kInt8, {1}}}, {}, "duplicate tensor name \"a\""},
      {{{"", DType::kInt8, {1}}}, {}, "empty tensor name"},
      {{{"__metadata__", DType::kInt8, {1}}}, {}, "__metadata__ is reserved"},
      {{{"a", static_cast<DType>(99), {1}}}, {}, "invalid dtype 99"},
      {{{"a", DType::kBytes, {2, 2}}}, {}, "bytes entries are 1-d"},
      {{{"a", DType::kBytes, {}}}, {}, "bytes entries are 1-d"},
      {{{"a", DType::kInt8, {big, big}}}, {}, "overflows"},
      {{{"a", DType::kInt64, {big}}}, {}, "overflows"},
      {{{"a", DType::kUInt8, {big * 3}}, {"b", DType::kUInt8, {big * 3}}}, {}, "overflows"},
      {{{"a", DType::kInt8, {1}}}, {{kSafetensorsBytesEntriesKey, "[]"}}, "reserved"},
      {{{"bad\xff", DType::kInt8, {1}}}, {}, "UTF-8"},
      {{{"c", DType::kComplex128, {2}}}, {}, "\"c\" is complex128, which the safetensors"},
  };
  for (const Case& c : cases) {
    StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
        SafetensorsWriter::Create(path, c.tensors, c.metadata);
    ASSERT_FALSE(writer.ok()) << c.message;
    EXPECT_EQ(writer.status().code(), StatusCode::kInvalidArgument) << writer.status();
    EXPECT_THAT(writer.status().message(), HasSubstr(c.message));
    EXPECT_THAT(writer.status().message(), HasSubstr(path));
  }
  EXPECT_TRUE(ListDir(dir.path()).empty());
}

TEST(SafetensorsWriterTest, CreateInMissingDirectoryIsIOError) {
  testing::TempDir dir;
  const std::string path = dir.Sub("no/such/dir/x.safetensors");
  StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(path, {{"a", DType::kInt8, {1}}}, {});
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), StatusCode::kIOError) << writer.status();
  EXPECT_THAT(writer.status().message(), HasSubstr(path));
  EXPECT_THAT(writer.status().message(), HasSubstr("No such file or directory"));
}

// ---- reader -----------------------------------------------------------------------------------

TEST(SafetensorsReaderTest, AcceptsAnyKeyOrderAndUnpaddedHeader) {
  testing::TempDir dir;
  const std::string path = dir.Sub("r.safetensors");
  const std::string json = R"({"b":{"dtype":"I32","shape":[2],"data_offsets":[3,11]},)"
                           R"("__metadata__":{"dcpkv.bytes_entries":"[\"a\"]","x":"y"},)"
                           R"("z":{"dtype":"F16","shape":[0],"data_offsets":[3,3]},)"
                           R"("a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})";
  WriteWholeFile(path, RawFile(json, 11));
  StatusOr<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->metadata(), (std::map<std::string, std::string>{{"x", "y"}}));
  const std::vector<SafetensorsTensor>& t = (*reader)->tensors();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].name, "a");
  EXPECT_EQ(t[0].dtype, DType::kBytes);
  EXPECT_EQ(t[1].name, "z");
  EXPECT_EQ(t[1].dtype, DType::kFloat16);
  EXPECT_EQ(t[2].name, "b");
  EXPECT_EQ(t[2].dtype, DType::kInt32);
  EXPECT_EQ(t[2].shape, Shape{2});
  EXPECT_EQ(ReadTensor(**reader, t[2]), std::vector<uint8_t>(8, 0x5a));
}

TEST(SafetensorsReaderTest, ReadOutsideTheTensorFails) {
  testing::TempDir dir;
  const std::string path = dir.Sub("o.safetensors");
  ASSERT_TRUE(WriteTensors(path, {MakeTensor("a", DType::kInt32, {2}, 1),
                                  MakeTensor("b", DType::kInt32, {2}, 2)})
                  .ok());
  StatusOr<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const SafetensorsTensor& a = (*reader)->tensors()[0];
  uint8_t buf[16];
  EXPECT_TRUE((*reader)->Read(a, 8, buf, 0).ok());
  EXPECT_EQ((*reader)->Read(a, 4, buf, 5).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*reader)->Read(a, 9, buf, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*reader)->Read(a, std::numeric_limits<uint64_t>::max(), buf, 2).code(),
            StatusCode::kInvalidArgument);
  SafetensorsTensor foreign = a;
  foreign.end = 1000;
  EXPECT_EQ((*reader)->Read(foreign, 0, buf, 1).code(), StatusCode::kInvalidArgument);
}

TEST(SafetensorsReaderTest, FileTruncatedAfterOpenIsDataLoss) {
  testing::TempDir dir;
  const std::string path = dir.Sub("t.safetensors");
  ASSERT_TRUE(WriteTensors(path, {MakeTensor("a", DType::kFloat64, {4}, 1)}).ok());
  StatusOr<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 10);
  uint8_t buf[32];
  Status s = (*reader)->Read((*reader)->tensors()[0], 0, buf, 32);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("truncated"));
  EXPECT_TRUE((*reader)->Read((*reader)->tensors()[0], 0, buf, 20).ok());
}

TEST(SafetensorsReaderTest, MissingFileIsNotFound) {
  testing::TempDir dir;
  EXPECT_EQ(SafetensorsReader::Open(dir.Sub("nope")).status().code(), StatusCode::kNotFound);
}

struct MalformedCase {
  std::string label;
  std::string file;
  StatusCode code;
  std::string message;
};

std::string OneTensor(std::string_view entry) { return "{\"t\":" + std::string(entry) + "}"; }

std::vector<MalformedCase> MalformedCases() {
  const std::string f32x2 = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string a_then_b = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)";
  const std::string max = std::to_string(std::numeric_limits<uint64_t>::max());
  return {
      {"ShorterThanLength", "abc", StatusCode::kDataLoss, "truncated"},
      {"HeaderLengthHuge", RawFile("{}", 0, uint64_t{1} << 40), StatusCode::kInvalidArgument,
       "exceeds the limit"},
      {"HeaderLengthMax", RawFile("{}", 0, std::numeric_limits<uint64_t>::max()),
       StatusCode::kInvalidArgument, "exceeds the limit"},
      {"HeaderLengthBeyondFile", RawFile("{}", 10, 100), StatusCode::kDataLoss, "beyond the end"},
      {"InvalidJson", RawFile(R"({"t": {"dtype")", 0), StatusCode::kInvalidArgument,
       "not valid JSON"},
      {"EmptyHeader", RawFile("", 0), StatusCode::kInvalidArgument, "not valid JSON"},
      {"InvalidUtf8", RawFile("{\"\xff\":1}", 0), StatusCode::kInvalidArgument, "not valid JSON"},
      {"HeaderNotObject", RawFile("[1, 2]", 0), StatusCode::kInvalidArgument,
       "header is not a JSON object"},
      {"EntryNotObject", RawFile(R"({"t": 5})", 0), StatusCode::kInvalidArgument,
       "tensor \"t\": entry is not a JSON object"},
      {"EmptyName", RawFile(R"({"": {"dtype":"U8","shape":[0],"data_offsets":[0,0]}})", 0),
       StatusCode::kInvalidArgument, "empty tensor name"},
      {"MissingDType", RawFile(OneTensor(R"({"shape":[2],"data_offsets":[0,8]})"), 8),
       StatusCode::kInvalidArgument, "tensor \"t\": missing string field \"dtype\""},
      {"NonStringDType", RawFile(OneTensor(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), 8),
       StatusCode::kInvalidArgument, "\"dtype\""},
      {"UnknownDType", RawFile(OneTensor(R"({"dtype":"C128","shape":[2],"data_offsets":[0,4]})"), 4),
       StatusCode::kInvalidArgument, "tensor \"t\": dtype C128 is not supported"},
      {"MissingShape", RawFile(OneTensor(R"({"dtype":"F32","data_offsets":[0,8]})"), 8),
       StatusCode::kInvalidArgument, "\"shape\""},
      {"NegativeShape",
       RawFile(OneTensor(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), 8),
       StatusCode::kInvalidArgument, "non-negative integers"},
      {"FractionalShape",
       RawFile(OneTensor(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), 8),
       StatusCode::kInvalidArgument, "non-negative integers"},
      {"ShapeNotArray", RawFile(OneTensor(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), 8),
       StatusCode::kInvalidArgument, "\"shape\" is not an array"},
      {"MissingOffsets", RawFile(OneTensor(R"({"dtype":"F32","shape":[2]})"), 8),
       StatusCode::kInvalidArgument, "\"data_offsets\""},
      {"ThreeOffsets",
       RawFile(OneTensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), 8),
       StatusCode::kInvalidArgument, "\"data_offsets\" is not an array of 2"},
      {"NegativeOffset",
       RawFile(OneTensor(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), 8),
       StatusCode::kInvalidArgument, "\"data_offsets\""},
      {"OffsetsBeyond64Bits",
       RawFile(OneTensor(R"({"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]})"),
               1),
       StatusCode::kInvalidArgument, "\"data_offsets\""},
      {"OffsetsReversed",
       RawFile(OneTensor(R"({"dtype":"U8","shape":[1],"data_offsets":[1,0]})"), 1),
       StatusCode::kInvalidArgument, "end before they begin"},
      {"OffsetsMaxMismatch",
       RawFile(OneTensor(R"({"dtype":"U8","shape":[1],"data_offsets":[0,)" + max + "]}"), 1),
       StatusCode::kInvalidArgument, "needs 1 bytes"},
      {"OffsetsMaxUnreadable",
       RawFile(
           OneTensor(R"({"dtype":"U8","shape":[)" + max + R"(],"data_offsets":[0,)" + max + "]}"),
           1),
       StatusCode::kDataLoss, "truncated"},
      {"ElementCountOverflow",
       RawFile(OneTensor(R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]})"),
               0),
       StatusCode::kInvalidArgument, "overflows"},
      {"ByteSizeOverflow",
       RawFile(OneTensor(R"({"dtype":"I64","shape":[2305843009213693952],"data_offsets":[0,0]})"),
               0),
       StatusCode::kInvalidArgument, "overflows"},
      {"ShapeOffsetsMismatch",
       RawFile(OneTensor(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,20]})"), 20),
       StatusCode::kInvalidArgument, "tensor \"t\": F32 shape [2, 3] needs 24 bytes"},
      {"Overlap",
       RawFile(a_then_b + R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       StatusCode::kInvalidArgument, "tensor \"b\" data_offsets overlap after tensor \"a\""},
      {"Gap", RawFile(a_then_b + R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", 20),
       StatusCode::kInvalidArgument, "gap in data before tensor \"b\""},
      {"NotFromZero",
       RawFile(OneTensor(R"({"dtype":"F32","shape":[2],"data_offsets":[4,12]})"), 12),
       StatusCode::kInvalidArgument, "gap in data before tensor \"t\""},
      {"TrailingBytes", RawFile(OneTensor(f32x2), 12), StatusCode::kInvalidArgument,
       "4 trailing bytes"},
      {"TrailingBytesNoTensors", RawFile("{}", 1), StatusCode::kInvalidArgument,
       "1 trailing bytes"},
      {"TruncatedData", RawFile(OneTensor(f32x2), 5), StatusCode::kDataLoss, "truncated"},
      {"MetadataNotObject", RawFile(R"({"__metadata__":["x"],"t":)" + f32x2 + "}", 8),
       StatusCode::kInvalidArgument, "__metadata__ is not a JSON object"},
      {"MetadataValueNotString", RawFile(R"({"__metadata__":{"k":1},"t":)" + f32x2 + "}", 8),
       StatusCode::kInvalidArgument, "value of \"k\" is not a string"},
      {"BytesEntriesNotArray",
       RawFile(R"({"__metadata__":{"dcpkv.bytes_entries":"t"},"t":)" + f32x2 + "}", 8),
       StatusCode::kInvalidArgument, "dcpkv.bytes_entries is not a JSON array"},
      {"BytesEntryMissing",
       RawFile(R"({"__metadata__":{"dcpkv.bytes_entries":"[\"q\"]"},"t":)" + f32x2 + "}", 8),
       StatusCode::kInvalidArgument, "names missing tensor \"q\""},
      {"BytesEntryNotU8",
       RawFile(R"({"__metadata__":{"dcpkv.bytes_entries":"[\"t\"]"},"t":)" + f32x2 + "}", 8),
       StatusCode::kInvalidArgument, "tensor \"t\", which is not a 1-d U8 tensor"},
      {"BytesEntryNot1d",
       RawFile(R"({"__metadata__":{"dcpkv.bytes_entries":"[\"t\"]"},)"
               R"("t":{"dtype":"U8","shape":[2,1],"data_offsets":[0,2]}})",
               2),
       StatusCode::kInvalidArgument, "not a 1-d U8 tensor"},
  };
}

class SafetensorsMalformedTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(SafetensorsMalformedTest, IsRejected) {
  const MalformedCase& c = GetParam();
  testing::TempDir dir;
  const std::string path = dir.Sub("bad.safetensors");
  WriteWholeFile(path, c.file);
  StatusOr<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::Open(path);
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), c.code) << reader.status();
  EXPECT_THAT(reader.status().message(), HasSubstr(c.message));
  EXPECT_THAT(reader.status().message(), StartsWith(path + ": "));
}

INSTANTIATE_TEST_SUITE_P(Cases, SafetensorsMalformedTest, ::testing::ValuesIn(MalformedCases()),
                         [](const auto& info) { return info.param.label; });

// ---- independent check with numpy --------------------------------------------------------------

class SafetensorsIndependentCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Python3().empty()) GTEST_SKIP() << "no python3 found by CMake";
    tensors_.push_back(MakeTensor("layer.0.weight", DType::kFloat32, {3, 4}, 1));
    TestTensor f64 = MakeTensor("f64", DType::kFloat64, {6}, 2);
    const double values[] = {1.5, std::nan(""), -0.0, HUGE_VAL, -1e300, 3.0};
    std::memcpy(f64.bytes.data(), values, sizeof(values));
    tensors_.push_back(std::move(f64));
    tensors_.push_back(MakeTensor("i64", DType::kInt64, {2, 2}, 3));
    tensors_.push_back(MakeTensor("bf16", DType::kBFloat16, {6}, 4));
    tensors_.push_back(MakeTensor("f8.e4m3", DType::kFloat8E4M3, {2, 2}, 5));
    tensors_.push_back(MakeTensor("f8.e5m2", DType::kFloat8E5M2, {3}, 6));
    tensors_.push_back(MakeTensor("mask", DType::kBool, {7}, 7));
    tensors_.push_back(MakeTensor("scalar", DType::kFloat32, {}, 8));
    tensors_.push_back(MakeTensor("empty", DType::kInt32, {0, 3}, 9));
    tensors_.push_back(MakeTensor("f16", DType::kFloat16, {5}, 10));
    tensors_.push_back(MakeTensor("i8", DType::kInt8, {3}, 11));
    tensors_.push_back(MakeTensor("i16", DType::kInt16, {3}, 12));
    tensors_.push_back(MakeTensor("i32", DType::kInt32, {1, 3}, 13));
    tensors_.push_back(MakeTensor("u8", DType::kUInt8, {2, 3, 1}, 14));
    tensors_.push_back(MakeTensor("rng_state", DType::kBytes, {10}, 15));
    file_ = dir_.Sub("model.safetensors");
    ASSERT_TRUE(WriteTensors(file_, tensors_, metadata_).ok());
  }

  // Writes expected/<i>.bin and expected.json; returns the latter's path.
  std::string WriteExpected() {
    std::filesystem::create_directories(dir_.Sub("expected"));
    std::string json = "{\"tensors\": [\n";
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const TestTensor& t = tensors_[i];
      const std::string file = "expected/" + std::to_string(i) + ".bin";
      WriteWholeFile(dir_.Sub(file), std::string_view(reinterpret_cast<const char*>(t.bytes.data()),
                                                      t.bytes.size()));
      std::string shape = "[";
      for (size_t d = 0; d < t.meta.shape.size(); ++d) {
        shape += (d ? ", " : "") + std::to_string(t.meta.shape[d]);
      }
      json += std::string(i ? ",\n" : "") + "  {\"name\": \"" + t.meta.name + "\", \"dtype\": \"" +
              std::string(SafetensorsDTypeName(t.meta.dtype)) + "\", \"shape\": " + shape +
              "], \"file\": \"" + file +
              "\", \"bytes_entry\": " + (t.meta.dtype == DType::kBytes ? "true" : "false") + "}";
    }
    json += "\n], \"metadata\": {\"format\": \"pt\", \"note\": \"\\u00e9t\\u00e9\"}}\n";
    const std::string path = dir_.Sub("expected.json");
    WriteWholeFile(path, json);
    return path;
  }

  testing::TempDir dir_;
  std::vector<TestTensor> tensors_;
  std::map<std::string, std::string> metadata_ = {{"format", "pt"}, {"note", "\xc3\xa9t\xc3\xa9"}};
  std::string file_;
};

TEST_F(SafetensorsIndependentCheckTest, NumpyReaderAgrees) {
  const std::string expected = WriteExpected();
  const int rc = RunSafetensorsCheck(file_, expected);
  if (rc == testing::kNumpyMissing) GTEST_SKIP() << "numpy is not available to " << Python3();
  EXPECT_EQ(rc, 0) << "safetensors_check.py found problems (see its output above)";
}

TEST_F(SafetensorsIndependentCheckTest, NumpyReaderDetectsAWrongByte) {
  const std::string expected = WriteExpected();
  // Change one byte of the expected bf16 data: the check must now fail.
  const std::string bin = dir_.Sub("expected/3.bin");
  std::string bytes = ReadWholeFile(bin);
  ASSERT_EQ(bytes.size(), 12u);
  bytes[5] = static_cast<char>(bytes[5] ^ 0x10);
  WriteWholeFile(bin, bytes);
  const int rc = RunSafetensorsCheck(file_, expected);
  if (rc == testing::kNumpyMissing) GTEST_SKIP() << "numpy is not available to " << Python3();
  EXPECT_EQ(rc, 1);
}

}  // namespace
}  // namespace dcpkv::inspect
