// PutStream, the second version's Put: records larger than one message, the token and the
// announced size checked before the record is held, pieces that do not add up, and clients
// meeting a replica of the first version.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/core/hash.h"
#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/replication/replica.h"
#include "replication.grpc.pb.h"
#include "tests/replication/replica_test_util.h"
#include "tests/util/temp_dir.h"

namespace dcpkv::replication {
namespace {

namespace v1 = ::dcpkv::replication::v1;
using ::dcpkv::testing::TempDir;
using ::dcpkv::testing::TestRecord;
using ::testing::HasSubstr;

std::string HashHex(const std::string& bytes) {
  return HashToHex(HashBytes(bytes.data(), bytes.size()));
}

// A record of checkpoint `id` of at least `bytes` bytes, as a world of 1,000 ranks makes it:
// tensors of 1,000 shards each. A manifest larger than one message.
ManifestRecord LargeRecord(const std::string& id, size_t bytes) {
  Metadata md = testing::TestMetadata(id);
  md.world_size = 1000;
  int entries = 0;
  const auto add = [&](int n) {
    for (int k = 0; k < n; ++k, ++entries) {
      EntryMetadata entry{DType::kFloat32, {16000}, {}};
      for (int r = 0; r < 1000; ++r) {
        entry.shards.push_back(SavedShard{{uint64_t(r) * 16}, {16}, r, 64, 1, {}});
      }
      md.entries["layers." + std::to_string(entries) + ".w"] = std::move(entry);
    }
  };
  add(10);
  std::string payload = EncodeMetadata(md);
  while (payload.size() < bytes) {  // as many entries again as the bytes missing take
    add(static_cast<int>((bytes - payload.size()) / (payload.size() / entries + 1)) + 1);
    payload = EncodeMetadata(md);
  }
  return ManifestRecord{id, md.committed_unix_micros, payload};
}

class ReplicaStreamTest : public ::testing::Test {
 protected:
  void Start(ReplicaServerOptions o = {}) {
    o.root = dir_.Sub("root");
    StatusOr<std::unique_ptr<ReplicaServer>> server = ReplicaServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);
    args.SetMaxReceiveMessageSize(-1);
    channel_ = grpc::CreateCustomChannel(testing::Loopback(*server_),
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = v1::ManifestReplica::NewStub(channel_);
  }

  // A PutStream whose first piece announces `announced` bytes of `record` and carries
  // `first_bytes` of them; `more` pieces follow, each of `piece` bytes of the rest, cycling.
  struct Stream {
    grpc::ClientContext context;
    v1::PutResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::PutPiece>> writer;
    size_t written = 0;  // record bytes the writes took
  };
  std::unique_ptr<Stream> Open(const std::string& ns, const std::string& id, uint64_t announced,
                               const std::string& hash, const std::string& first_data,
                               const std::string& token = "") {
    auto s = std::make_unique<Stream>();
    s->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!token.empty()) s->context.AddMetadata("authorization", "Bearer " + token);
    s->writer = stub_->PutStream(&s->context, &s->response);
    v1::PutPiece piece;
    piece.set_namespace_(ns);
    piece.set_checkpoint_id(id);
    piece.set_record_size(announced);
    piece.set_record_xxh3_128(hash);
    piece.set_data(first_data);
    if (s->writer->Write(piece)) s->written += first_data.size();
    return s;
  }
  static bool Write(Stream& s, const std::string& data) {
    v1::PutPiece piece;
    piece.set_data(data);
    if (!s.writer->Write(piece)) return false;
    s.written += data.size();
    return true;
  }
  static grpc::Status Close(Stream& s) {
    s.writer->WritesDone();
    return s.writer->Finish();
  }

  TempDir dir_;
  std::unique_ptr<ReplicaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ManifestReplica::Stub> stub_;
};

// A 6 MiB manifest, over the 4 MiB request limit, replicates in pieces and reads back whole; the
// same record in one Put request is refused by the limit.
TEST_F(ReplicaStreamTest, ARecordLargerThanOneRequestReplicatesInPieces) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const ManifestRecord record = LargeRecord("step-1", size_t{6} << 20);
  ReplicaClientOptions options;
  options.deadline =
      std::chrono::seconds(120);  // not a timing test (and sanitizer builds are slow)
  StatusOr<std::unique_ptr<ReplicaClient>> client =
      ReplicaClient::Connect(testing::Loopback(*server_), options);
  ASSERT_TRUE(client.ok()) << client.status();
  Status put = (*client)->Put("job", record);
  ASSERT_TRUE(put.ok()) << put;
  StatusOr<ManifestRecord> got = (*client)->Get("job", "step-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(testing::SameRecord(*got, record));

  v1::PutRequest request;
  request.set_namespace_("job");
  request.set_checkpoint_id("step-2");
  request.set_record(EncodeManifestRecord(LargeRecord("step-2", size_t{6} << 20)));
  request.set_record_xxh3_128(HashHex(request.record()));
  v1::PutResponse response;
  grpc::ClientContext context;
  const grpc::Status unary = stub_->Put(&context, request, &response);
  EXPECT_EQ(unary.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << unary.error_message();
  // The small records of the first version's clients still go in one request.
  const std::string small = EncodeManifestRecord(TestRecord("step-3"));
  request.set_checkpoint_id("step-3");
  request.set_record(small);
  request.set_record_xxh3_128(HashHex(small));
  grpc::ClientContext context3;
  EXPECT_TRUE(stub_->Put(&context3, request, &response).ok());
  EXPECT_THAT(*(*client)->List("job"), ::testing::ElementsAre("step-1", "step-3"));
}

// Without the token, a stream is refused before its body is read: the writes stop long before
// the 64 MiB announced have been sent.
TEST_F(ReplicaStreamTest, AStreamWithoutTheTokenIsRefusedBeforeItsBodyIsRead) {
  ReplicaServerOptions o;
  o.token = "s3cret-token-0123456789";
  ASSERT_NO_FATAL_FAILURE(Start(o));
  const std::string mib(size_t{1} << 20, 'x');
  std::unique_ptr<Stream> s = Open("job", "step-1", uint64_t{64} << 20, HashHex("x"), mib);
  while (s->written < (size_t{64} << 20) && Write(*s, mib)) {
  }
  const grpc::Status status = Close(*s);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  EXPECT_LT(s->written, size_t{16} << 20) << "the replica read on after refusing the call";
}

// The unary calls are checked from their headers too: a Put or Get without the token is
// UNAUTHENTICATED (with it, the first version's Put is served), and a method the replica does not
// know is UNIMPLEMENTED, naming it.
TEST_F(ReplicaStreamTest, UnaryCallsAreCheckedBeforeTheirRequestIsRead) {
  ReplicaServerOptions o;
  o.token = "s3cret-token-0123456789";
  ASSERT_NO_FATAL_FAILURE(Start(o));
  const std::string record = EncodeManifestRecord(TestRecord("step-1"));
  v1::PutRequest put;
  put.set_namespace_("job");
  put.set_checkpoint_id("step-1");
  put.set_record(record);
  put.set_record_xxh3_128(HashHex(record));
  v1::PutResponse put_response;
  grpc::ClientContext stranger;
  grpc::Status status = stub_->Put(&stranger, put, &put_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  grpc::ClientContext with_token;
  with_token.AddMetadata("authorization", "Bearer " + o.token);
  status = stub_->Put(&with_token, put, &put_response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  v1::GetRequest get;
  get.set_namespace_("job");
  get.set_checkpoint_id("step-1");
  v1::GetResponse get_response;
  grpc::ClientContext stranger_get;
  status = stub_->Get(&stranger_get, get, &get_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  EXPECT_EQ(get_response.record(), "");

  grpc::GenericStub generic(channel_);
  grpc::ClientContext unknown;
  grpc::Slice body("x", 1);
  grpc::ByteBuffer request(&body, 1), response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&unknown, "/dcpkv.replication.v1.ManifestReplica/Compact", grpc::StubOptions(),
                    &request, &response, [&](grpc::Status s) { done.set_value(s); });
  status = done.get_future().get();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(status.error_message(), HasSubstr("ManifestReplica/Compact"));
}

// Announced sizes are checked against the record limit, and against what every stream holds
// together, before a byte is held.
TEST_F(ReplicaStreamTest, AnnouncedSizesOverTheLimitsAreRefused) {
  ReplicaServerOptions o;
  o.limits.max_record_bytes = uint64_t{1} << 20;
  o.limits.put_stream_bytes = uint64_t{2} << 20;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  const std::string record = EncodeManifestRecord(TestRecord("step-1"));
  {
    std::unique_ptr<Stream> big = Open("job", "step-1", (uint64_t{1} << 20) + 1, "h", "");
    const grpc::Status status = Close(*big);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(status.error_message(), HasSubstr("over the replica's limit"));
  }
  // Two streams hold 1 MiB each (their first piece arrived), a third does not fit.
  std::unique_ptr<Stream> a = Open("job", "step-a", uint64_t{1} << 20, "h", "x");
  std::unique_ptr<Stream> b = Open("job", "step-b", uint64_t{1} << 20, "h", "x");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // both read by the server
  std::unique_ptr<Stream> c = Open("job", "step-1", record.size(), HashHex(record), record);
  grpc::Status status = Close(*c);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("try again later"));
  // Ended (short of what they announced), they give their bytes back.
  EXPECT_EQ(Close(*a).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Close(*b).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  std::unique_ptr<Stream> d = Open("job", "step-1", record.size(), HashHex(record), record);
  status = Close(*d);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(ReplicaStreamTest, PiecesThatDoNotAddUpAreInvalid) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::string record = EncodeManifestRecord(TestRecord("step-1"));
  const std::string hash = HashHex(record);
  struct Case {
    const char* what;
    std::function<std::unique_ptr<Stream>()> run;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"more than announced", [&] { return Open("job", "step-1", 10, hash, record); },
       "more bytes arrived"},
      {"fewer than announced",
       [&] { return Open("job", "step-1", record.size() + 1, hash, record); }, "bytes arrived of"},
      {"nothing announced", [&] { return Open("job", "step-1", 0, hash, ""); }, "empty"},
      {"a bad namespace", [&] { return Open("../x", "step-1", record.size(), hash, record); },
       "namespace"},
      {"a bad id", [&] { return Open("job", "a/b", record.size(), hash, record); }, "a/b"},
      {"a wrong hash", [&] { return Open("job", "step-1", record.size(), HashHex("x"), record); },
       "XXH3-128"},
      {"another id's record", [&] { return Open("job", "step-2", record.size(), hash, record); },
       "names checkpoint"},
  };
  for (const Case& c : cases) {
    std::unique_ptr<Stream> s = c.run();
    const grpc::Status status = Close(*s);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_THAT(status.error_message(), HasSubstr(c.says)) << c.what;
  }
  // A stream with no piece at all.
  {
    Stream s;
    s.writer = stub_->PutStream(&s.context, &s.response);
    const grpc::Status status = Close(s);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  }
  v1::ListRequest list;
  list.set_namespace_("job");
  v1::ListResponse listed;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->List(&context, list, &listed).ok());
  EXPECT_EQ(listed.checkpoint_ids_size(), 0) << "a refused stream stored something";
}

// A replica of the protocol's first version: Put, Get, List and Delete, no PutStream (gRPC
// answers UNIMPLEMENTED for it).
class FirstVersionReplica final : public v1::ManifestReplica::CallbackService {
 public:
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context, const v1::PutRequest* request,
                                v1::PutResponse*) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      records_[request->checkpoint_id()] = request->record();
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  std::map<std::string, std::string> records() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> records_;
};

TEST(ReplicaStreamCompatibilityTest, AClientPutsOnAReplicaOfTheFirstVersion) {
  FirstVersionReplica service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  StatusOr<std::unique_ptr<ReplicaClient>> client =
      ReplicaClient::Connect("127.0.0.1:" + std::to_string(port), {});
  ASSERT_TRUE(client.ok()) << client.status();
  // A small record goes in one Put anyway; a record of more than one piece is refused as a
  // stream (UNIMPLEMENTED) and then sent in one Put.
  const ManifestRecord small = TestRecord("step-1");
  const ManifestRecord large = LargeRecord("step-2", size_t{3} << 20);
  for (const ManifestRecord* record : {&small, &large}) {
    Status put = (*client)->Put("job", *record);
    EXPECT_TRUE(put.ok()) << record->checkpoint_id << ": " << put;
  }
  std::map<std::string, std::string> records = service.records();
  ASSERT_EQ(records.count("step-1"), 1u);
  ASSERT_EQ(records.count("step-2"), 1u);
  EXPECT_EQ(records["step-1"], EncodeManifestRecord(small));
  EXPECT_EQ(records["step-2"], EncodeManifestRecord(large));
  server->Shutdown();
}

}  // namespace
}  // namespace dcpkv::replication
