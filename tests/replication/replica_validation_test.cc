// Malformed requests through a raw gRPC stub: every one is INVALID_ARGUMENT, nothing is written
// and no directory is created, and the server keeps serving.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <random>

#include "dcpkv/core/hash.h"
#include "dcpkv/replication/replica.h"
#include "replication.grpc.pb.h"
#include "tests/replication/replica_test_util.h"
#include "tests/util/temp_dir.h"

namespace dcpkv::replication {
namespace {

namespace v1 = ::dcpkv::replication::v1;
using ::dcpkv::testing::TempDir;
using ::dcpkv::testing::TestRecord;
using ::testing::ElementsAre;

std::string HashHex(const std::string& bytes) {
  return HashToHex(HashBytes(bytes.data(), bytes.size()));
}

class ReplicaValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StatusOr<std::unique_ptr<ReplicaServer>> server =
        ReplicaServer::Start({.root = dir_.Sub("root")});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    channel_ = grpc::CreateChannel(testing::Loopback(*server_), grpc::InsecureChannelCredentials());
    stub_ = v1::ManifestReplica::NewStub(channel_);
  }

  grpc::Status Put(const std::string& ns, const std::string& id, const std::string& record,
                   const std::string* hash = nullptr) {
    v1::PutRequest request;
    request.set_namespace_(ns);
    request.set_checkpoint_id(id);
    request.set_record(record);
    request.set_record_xxh3_128(hash != nullptr ? *hash : HashHex(record));
    v1::PutResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub_->Put(&context, request, &response);
  }

  grpc::Status Get(const std::string& ns, const std::string& id, v1::GetResponse* response) {
    v1::GetRequest request;
    request.set_namespace_(ns);
    request.set_checkpoint_id(id);
    grpc::ClientContext context;
    return stub_->Get(&context, request, response);
  }

  grpc::Status List(const std::string& ns, v1::ListResponse* response) {
    v1::ListRequest request;
    request.set_namespace_(ns);
    grpc::ClientContext context;
    return stub_->List(&context, request, response);
  }

  grpc::Status Delete(const std::string& ns, const std::string& id) {
    v1::DeleteRequest request;
    request.set_namespace_(ns);
    request.set_checkpoint_id(id);
    v1::DeleteResponse response;
    grpc::ClientContext context;
    return stub_->Delete(&context, request, &response);
  }

  // Nothing was written: the root holds only its lock, and the test directory only the root.
  void ExpectNothingWritten() {
    EXPECT_THAT(testing::DirectoryEntries(dir_.Sub("root")), ElementsAre("LOCK"));
    EXPECT_THAT(testing::DirectoryEntries(dir_.path()), ElementsAre("root"));
  }

  TempDir dir_;
  std::unique_ptr<ReplicaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ManifestReplica::Stub> stub_;
};

std::vector<std::string> BadNamespaces() {
  return {"../x",   "",    std::string(200, 'a'),  "a b",
          "x/../y", "..",  std::string("a\0b", 3), "job\xff",
          "ns\n",   "a\\b"};
}

std::vector<std::string> BadIds() {
  return {"",
          "../x",
          "a/b",
          "latest",
          std::string(200, 's'),
          ".hidden",
          "-x",
          "step 1",
          std::string("s\0", 2)};
}

TEST_F(ReplicaValidationTest, BadNamespacesAreInvalidArgument) {
  const std::string record = EncodeManifestRecord(TestRecord("step-1"));
  for (const std::string& ns : BadNamespaces()) {
    EXPECT_EQ(Put(ns, "step-1", record).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ns;
    v1::GetResponse got;
    EXPECT_EQ(Get(ns, "step-1", &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ns;
    v1::ListResponse listed;
    EXPECT_EQ(List(ns, &listed).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ns;
    EXPECT_EQ(Delete(ns, "step-1").error_code(), grpc::StatusCode::INVALID_ARGUMENT) << ns;
  }
  ExpectNothingWritten();
}

TEST_F(ReplicaValidationTest, BadIdsAreInvalidArgument) {
  for (const std::string& id : BadIds()) {
    // The record cannot carry a bad id (EncodeManifestRecord requires a valid one).
    const std::string record = EncodeManifestRecord(TestRecord("step-1"));
    EXPECT_EQ(Put("job", id, record).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << id;
    v1::GetResponse got;
    EXPECT_EQ(Get("job", id, &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << id;
    EXPECT_EQ(Delete("job", id).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << id;
  }
  ExpectNothingWritten();
}

TEST_F(ReplicaValidationTest, BadRecordsAreInvalidArgument) {
  const std::string good = EncodeManifestRecord(TestRecord("step-1"));
  std::vector<std::pair<std::string, grpc::Status>> results;
  auto put = [&](const std::string& what, const std::string& id, const std::string& record,
                 const std::string* hash = nullptr) {
    results.emplace_back(what, Put("job", id, record, hash));
  };
  put("empty", "step-1", "");
  put("garbage", "step-1", "this is not a manifest record");
  put("another id's record", "step-2", good);
  const std::string payload = TestRecord("step-1").payload;
  const size_t payload_at = good.find(payload);
  ASSERT_NE(payload_at, std::string::npos);
  std::string flipped = good;
  flipped[payload_at + payload.size() / 2] ^= 0x01;  // the payload's checksum no longer matches
  put("payload checksum", "step-1", flipped);
  std::string truncated = good.substr(0, good.size() / 2);
  put("truncated", "step-1", truncated);
  const std::string wrong_hash = HashHex(good + "x");
  put("record hash", "step-1", good, &wrong_hash);
  const std::string no_hash;
  put("no record hash", "step-1", good, &no_hash);
  put("payload not metadata", "step-1",
      EncodeManifestRecord(ManifestRecord{"step-1", 1, "not a metadata"}));
  const Metadata other = testing::TestMetadata("step-9");
  put("metadata of another id", "step-1",
      EncodeManifestRecord(ManifestRecord{"step-1", 1, EncodeMetadata(other)}));
  for (const auto& [what, status] : results) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << what << ": " << status.error_message();
  }
  ExpectNothingWritten();

  // Random bytes.
  std::mt19937_64 random(42);
  for (int i = 0; i < 100; ++i) {
    std::string record(random() % 300, '\0');
    for (char& c : record) c = static_cast<char>(random());
    grpc::Status status = Put("job", "step-1", record);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << i << ": " << status.error_message();
  }
  ExpectNothingWritten();

  // Random damage to a good record: rejected, or (where it hit bytes no checksum covers, such as
  // the commit time or padding) a record that still validates. Never anything else.
  for (int i = 0; i < 200; ++i) {
    std::string record = good;
    for (int k = 0; k < 3; ++k) record[random() % record.size()] ^= static_cast<char>(random());
    grpc::Status status = Put("job", "step-1", record);
    EXPECT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        << i << ": " << status.error_code() << " " << status.error_message();
  }

  // The server still serves.
  ASSERT_TRUE(Put("job", "step-1", good).ok());
  v1::GetResponse got;
  ASSERT_TRUE(Get("job", "step-1", &got).ok());
  EXPECT_EQ(got.record(), good);
  EXPECT_EQ(got.record_xxh3_128(), HashHex(good));
}

TEST_F(ReplicaValidationTest, ReadsOfUnknownNamespacesCreateNothing) {
  v1::GetResponse got;
  EXPECT_EQ(Get("job", "step-1", &got).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::ListResponse listed;
  EXPECT_TRUE(List("job", &listed).ok());
  EXPECT_EQ(listed.checkpoint_ids_size(), 0);
  EXPECT_TRUE(Delete("job", "step-1").ok());
  ExpectNothingWritten();
}

TEST_F(ReplicaValidationTest, UndecodableMessageDoesNotStopTheServer) {
  grpc::GenericStub generic(channel_);
  const std::string garbage = "\xff\xff\xff\xff\x0f garbage";
  grpc::Slice slice(garbage);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  generic.UnaryCall(&context, "/dcpkv.replication.v1.ManifestReplica/Put", grpc::StubOptions(),
                    &request, &response, [&](grpc::Status s) {
                      std::lock_guard<std::mutex> lock(mu);
                      status = std::move(s);
                      done = true;
                      cv.notify_one();
                    });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; }));
  }
  EXPECT_FALSE(status.ok());
  ExpectNothingWritten();
  ASSERT_TRUE(Put("job", "step-1", EncodeManifestRecord(TestRecord("step-1"))).ok());
}

}  // namespace
}  // namespace dcpkv::replication
