#include "nccl_comm.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "dcpkv/api/cuda_device.h"

namespace dcpkv::nccl {
namespace {

StatusCode CodeOf(ncclResult_t r) {
  switch (r) {
    case ncclSystemError:
    case ncclRemoteError: return StatusCode::kUnavailable;  // a peer or the network failed
    case ncclInvalidArgument: return StatusCode::kInvalidArgument;
    default: return StatusCode::kInternal;
  }
}

Status NcclError(std::string_view call, ncclResult_t r, ncclComm_t comm) {
  std::string message = "NCCL " + std::string(call) + ": " + ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') message += std::string(" (") + last + ")";
  return Status(CodeOf(r), message);
}

Status CudaCheck(cudaError_t e, std::string_view call) {
  if (e == cudaSuccess) return Status::Ok();
  cudaGetLastError();
  return cuda::CudaError(StatusCode::kInternal, call, e);
}

// Spins briefly (small operations finish in microseconds), then sleeps between polls.
class Backoff {
 public:
  void Pause() {
    if (++polls_ < 1000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

 private:
  int polls_ = 0;
};

std::string Millis(Clock::time_point deadline, Clock::time_point start) {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - start).count());
}

class NcclCollectives final : public DeviceCollectives {
 public:
  NcclCollectives(int rank, int size, int device, size_t capacity)
      : rank_(rank), size_(size), device_(device), capacity_(capacity) {}
  ~NcclCollectives() override;

  // Stream, event and buffers, then the communicator.
  Status Init(const std::string& unique_id, Clock::time_point deadline);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  size_t max_transfer_bytes() const override { return capacity_; }
  Status AllGather(const void* in, void* out, size_t bytes, Clock::time_point deadline) override;
  Status Broadcast(void* data, size_t bytes, int root, Clock::time_point deadline) override;
  Status SendRecv(const std::vector<SendOp>& sends, const std::vector<RecvOp>& recvs,
                  Clock::time_point deadline) override;
  void Abort() override;

 private:
  // Waits until the communicator has processed the last call (ncclInProgress -> done).
  Status WaitReady(std::string_view call, ncclResult_t r, Clock::time_point deadline);
  // Records the event after the enqueued work and polls it (and the communicator).
  Status WaitDone(std::string_view what, Clock::time_point deadline);
  Status CheckFits(size_t bytes) const {
    if (bytes <= capacity_) return Status::Ok();
    return InternalError("an NCCL operation of " + std::to_string(bytes) +
                         " bytes exceeds max_transfer_bytes " + std::to_string(capacity_));
  }
  Status ToDevice(void* device_ptr, size_t bytes) {
    if (bytes == 0) return Status::Ok();
    return CudaCheck(
        cudaMemcpyAsync(device_ptr, host_send_, bytes, cudaMemcpyHostToDevice, stream_),
        "cudaMemcpyAsync (host to device)");
  }
  Status ToHost(const void* device_ptr, size_t bytes) {
    if (bytes == 0) return Status::Ok();
    return CudaCheck(
        cudaMemcpyAsync(host_recv_, device_ptr, bytes, cudaMemcpyDeviceToHost, stream_),
        "cudaMemcpyAsync (device to host)");
  }

  const int rank_;
  const int size_;
  const int device_;
  const size_t capacity_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t done_ = nullptr;
  void* device_send_ = nullptr;
  void* device_recv_ = nullptr;
  char* host_send_ = nullptr;  // page-locked
  char* host_recv_ = nullptr;  // page-locked
  std::chrono::milliseconds init_time_{0};
};

NcclCollectives::~NcclCollectives() {
  cuda::DeviceGuard guard(device_);
  if (comm_ != nullptr) {
    // Flush and free the communicator; one that does not finalize in time is aborted.
    bool finalized = false;
    ncclResult_t r = ncclCommFinalize(comm_);
    if (r == ncclSuccess || r == ncclInProgress) {
      const auto deadline = Clock::now() + std::max(init_time_, std::chrono::milliseconds(10000));
      Backoff backoff;
      for (;;) {
        ncclResult_t state = ncclInProgress;
        if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
        if (state == ncclSuccess) {
          finalized = true;
          break;
        }
        if (state != ncclInProgress || Clock::now() > deadline) break;
        backoff.Pause();
      }
    }
    if (finalized) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    comm_ = nullptr;
  }
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (device_send_ != nullptr) cudaFree(device_send_);
  if (device_recv_ != nullptr) cudaFree(device_recv_);
  if (host_send_ != nullptr) cudaFreeHost(host_send_);
  if (host_recv_ != nullptr) cudaFreeHost(host_recv_);
  if (done_ != nullptr) cudaEventDestroy(done_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Status NcclCollectives::Init(const std::string& unique_id, Clock::time_point deadline) {
  const auto start = Clock::now();
  cuda::DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  DCPKV_RETURN_IF_ERROR(
      CudaCheck(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
  DCPKV_RETURN_IF_ERROR(
      CudaCheck(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate"));
  DCPKV_RETURN_IF_ERROR(CudaCheck(cudaMalloc(&device_send_, capacity_), "cudaMalloc"));
  DCPKV_RETURN_IF_ERROR(CudaCheck(cudaMalloc(&device_recv_, capacity_), "cudaMalloc"));
  void* p = nullptr;
  DCPKV_RETURN_IF_ERROR(
      CudaCheck(cudaHostAlloc(&p, capacity_, cudaHostAllocDefault), "cudaHostAlloc"));
  host_send_ = static_cast<char*>(p);
  DCPKV_RETURN_IF_ERROR(
      CudaCheck(cudaHostAlloc(&p, capacity_, cudaHostAllocDefault), "cudaHostAlloc"));
  host_recv_ = static_cast<char*>(p);

  if (unique_id.size() != sizeof(ncclUniqueId)) {
    return InvalidArgumentError("an NCCL unique id has " + std::to_string(sizeof(ncclUniqueId)) +
                                " bytes, not " + std::to_string(unique_id.size()));
  }
  ncclUniqueId id;
  std::memcpy(&id, unique_id.data(), sizeof(id));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    Status s = NcclError("ncclCommInitRankConfig", r, comm_);
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
    return s;
  }
  Status ready = WaitReady("ncclCommInitRankConfig", r, deadline);
  if (!ready.ok()) {
    if (ready.code() == StatusCode::kDeadlineExceeded) {
      ready = DeadlineExceededError(
          "the NCCL communicator of rank " + std::to_string(rank_) + " of " +
          std::to_string(size_) + " on cuda:" + std::to_string(device_) + " was not ready within " +
          Millis(deadline, start) + " ms: did every rank join?");
    }
    Abort();
    return ready;
  }
  init_time_ = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  return Status::Ok();
}

void NcclCollectives::Abort() {
  if (comm_ == nullptr) return;
  cuda::DeviceGuard guard(device_);
  ncclCommAbort(comm_);
  comm_ = nullptr;
}

Status NcclCollectives::WaitReady(std::string_view call, ncclResult_t r,
                                  Clock::time_point deadline) {
  if (r == ncclSuccess) return Status::Ok();
  if (r != ncclInProgress) return NcclError(call, r, comm_);
  Backoff backoff;
  for (;;) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t q = ncclCommGetAsyncError(comm_, &state);
    if (q != ncclSuccess) return NcclError("ncclCommGetAsyncError", q, comm_);
    if (state == ncclSuccess) return Status::Ok();
    if (state != ncclInProgress) return NcclError(call, state, comm_);
    if (Clock::now() > deadline) {
      return DeadlineExceededError("NCCL " + std::string(call) + " did not complete in time");
    }
    backoff.Pause();
  }
}

Status NcclCollectives::WaitDone(std::string_view what, Clock::time_point deadline) {
  DCPKV_RETURN_IF_ERROR(CudaCheck(cudaEventRecord(done_, stream_), "cudaEventRecord"));
  Backoff backoff;
  for (;;) {
    const cudaError_t e = cudaEventQuery(done_);
    if (e == cudaSuccess) return Status::Ok();
    if (e != cudaErrorNotReady) return CudaCheck(e, "cudaEventQuery");
    ncclResult_t state = ncclSuccess;
    const ncclResult_t q = ncclCommGetAsyncError(comm_, &state);
    if (q != ncclSuccess) return NcclError("ncclCommGetAsyncError", q, comm_);
    if (state != ncclSuccess && state != ncclInProgress) return NcclError(what, state, comm_);
    if (Clock::now() > deadline) {
      return DeadlineExceededError("NCCL " + std::string(what) + " on rank " +
                                   std::to_string(rank_) + " of " + std::to_string(size_) +
                                   " did not complete in time (a peer did not take part)");
    }
    backoff.Pause();
  }
}

Status NcclCollectives::AllGather(const void* in, void* out, size_t bytes,
                                  Clock::time_point deadline) {
  if (comm_ == nullptr) return AbortedError("the NCCL communicator was aborted");
  if (bytes == 0) return Status::Ok();
  DCPKV_RETURN_IF_ERROR(CheckFits(bytes * size_));
  cuda::DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  std::memcpy(host_send_, in, bytes);
  DCPKV_RETURN_IF_ERROR(ToDevice(device_send_, bytes));
  DCPKV_RETURN_IF_ERROR(WaitReady(
      "ncclAllGather", ncclAllGather(device_send_, device_recv_, bytes, ncclUint8, comm_, stream_),
      deadline));
  DCPKV_RETURN_IF_ERROR(ToHost(device_recv_, bytes * size_));
  DCPKV_RETURN_IF_ERROR(WaitDone("ncclAllGather", deadline));
  std::memcpy(out, host_recv_, bytes * size_);
  return Status::Ok();
}

Status NcclCollectives::Broadcast(void* data, size_t bytes, int root, Clock::time_point deadline) {
  if (comm_ == nullptr) return AbortedError("the NCCL communicator was aborted");
  if (bytes == 0) return Status::Ok();
  DCPKV_RETURN_IF_ERROR(CheckFits(bytes));
  cuda::DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  if (rank_ == root) {
    std::memcpy(host_send_, data, bytes);
    DCPKV_RETURN_IF_ERROR(ToDevice(device_send_, bytes));
  }
  DCPKV_RETURN_IF_ERROR(WaitReady(
      "ncclBroadcast",
      ncclBroadcast(device_send_, device_recv_, bytes, ncclUint8, root, comm_, stream_), deadline));
  DCPKV_RETURN_IF_ERROR(ToHost(device_recv_, bytes));
  DCPKV_RETURN_IF_ERROR(WaitDone("ncclBroadcast", deadline));
  std::memcpy(data, host_recv_, bytes);
  return Status::Ok();
}

Status NcclCollectives::SendRecv(const std::vector<SendOp>& sends, const std::vector<RecvOp>& recvs,
                                 Clock::time_point deadline) {
  if (comm_ == nullptr) return AbortedError("the NCCL communicator was aborted");
  size_t send_bytes = 0, recv_bytes = 0;
  for (const SendOp& s : sends) send_bytes += s.bytes;
  for (const RecvOp& r : recvs) recv_bytes += r.bytes;
  if (send_bytes == 0 && recv_bytes == 0) return Status::Ok();
  DCPKV_RETURN_IF_ERROR(CheckFits(send_bytes));
  DCPKV_RETURN_IF_ERROR(CheckFits(recv_bytes));
  cuda::DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  // Sends packed one after another into the send buffers, receives into the receive buffers.
  size_t off = 0;
  for (const SendOp& s : sends) {
    if (s.bytes > 0) std::memcpy(host_send_ + off, s.data, s.bytes);
    off += s.bytes;
  }
  DCPKV_RETURN_IF_ERROR(ToDevice(device_send_, send_bytes));
  ncclResult_t first = ncclGroupStart();
  if (first != ncclSuccess) return NcclError("ncclGroupStart", first, comm_);
  off = 0;
  for (const SendOp& s : sends) {
    if (s.bytes == 0) continue;
    const ncclResult_t r = ncclSend(static_cast<char*>(device_send_) + off, s.bytes, ncclUint8,
                                    s.peer, comm_, stream_);
    if (r != ncclSuccess && r != ncclInProgress && first == ncclSuccess) first = r;
    off += s.bytes;
  }
  off = 0;
  for (const RecvOp& rv : recvs) {
    if (rv.bytes == 0) continue;
    const ncclResult_t r = ncclRecv(static_cast<char*>(device_recv_) + off, rv.bytes, ncclUint8,
                                    rv.peer, comm_, stream_);
    if (r != ncclSuccess && r != ncclInProgress && first == ncclSuccess) first = r;
    off += rv.bytes;
  }
  const ncclResult_t ended = ncclGroupEnd();  // always, to close the group
  if (first != ncclSuccess) return NcclError("ncclSend/ncclRecv", first, comm_);
  DCPKV_RETURN_IF_ERROR(WaitReady("ncclGroupEnd", ended, deadline));
  DCPKV_RETURN_IF_ERROR(ToHost(device_recv_, recv_bytes));
  DCPKV_RETURN_IF_ERROR(WaitDone("ncclSend/ncclRecv", deadline));
  off = 0;
  for (const RecvOp& rv : recvs) {
    if (rv.bytes > 0) std::memcpy(rv.data, host_recv_ + off, rv.bytes);
    off += rv.bytes;
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> NewUniqueId() {
  ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) return NcclError("ncclGetUniqueId", r, nullptr);
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

StatusOr<int> CurrentDevice() {
  int device = 0;
  DCPKV_RETURN_IF_ERROR(CudaCheck(cudaGetDevice(&device), "cudaGetDevice"));
  return device;
}

StatusOr<std::unique_ptr<DeviceCollectives>> CreateNcclCollectives(const NcclCommOptions& options,
                                                                   Clock::time_point deadline) {
  auto comm = std::make_unique<NcclCollectives>(options.rank, options.size, options.device,
                                                options.max_transfer_bytes);
  DCPKV_RETURN_IF_ERROR(comm->Init(options.unique_id, deadline));
  return std::unique_ptr<DeviceCollectives>(std::move(comm));
}

}  // namespace dcpkv::nccl
