// DefaultStager: a pool of staging buffers, one per tensor (or shard), reused while the state
// dict keeps its structure, so repeated async saves allocate nothing and memory stays bounded.
// CUDA tensors are copied into their buffers on the stager's device streams.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "dcpkv/api/cuda_device.h"
#include "dcpkv/api/cuda_staging.h"
#include "dcpkv/async_save.h"
#include "dcpkv/core/strided.h"
#include "pinned_memory.h"

namespace dcpkv {

class DefaultStager::Buffer {
 public:
  // Shared memory is a memfd mapping; otherwise heap memory. With `pinned`, the memory is also
  // page-locked for fast device copies when CUDA and a GPU are available (else left pageable).
  static StatusOr<std::unique_ptr<Buffer>> Allocate(uint64_t bytes, bool shared, bool pinned) {
    auto b = std::unique_ptr<Buffer>(new Buffer(bytes));
    if (bytes == 0) return b;
    if (shared) {
      int fd = memfd_create("dcpkv-staging", MFD_CLOEXEC);
      if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
        if (fd >= 0) close(fd);
        return ResourceExhaustedError("cannot create " + std::to_string(bytes) +
                                      " bytes of shared staging memory");
      }
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      b->fd_ = fd;
      if (p == MAP_FAILED) {
        return ResourceExhaustedError("cannot map " + std::to_string(bytes) +
                                      " bytes of shared staging memory");
      }
      b->data_ = p;
      b->registered_ = pinned && RegisterPinned(p, bytes);
    } else {
      if (pinned) b->data_ = AllocatePinned(bytes);
      b->pinned_ = b->data_ != nullptr;
      if (b->data_ == nullptr) b->data_ = std::malloc(bytes);
      if (b->data_ == nullptr) {
        return ResourceExhaustedError("cannot allocate " + std::to_string(bytes) +
                                      " bytes of staging memory");
      }
    }
    return b;
  }
  ~Buffer() {
    if (registered_) UnregisterPinned(data_);
    if (fd_ >= 0) {
      if (data_ != nullptr) munmap(data_, bytes_);
      close(fd_);
    } else if (pinned_) {
      FreePinned(data_);
    } else {
      std::free(data_);
    }
  }
  void* data() const { return data_; }
  uint64_t bytes() const { return bytes_; }

 private:
  explicit Buffer(uint64_t bytes) : bytes_(bytes) {}
  uint64_t bytes_;
  void* data_ = nullptr;
  int fd_ = -1;
  bool pinned_ = false;      // from AllocatePinned
  bool registered_ = false;  // shared mapping page-locked with RegisterPinned
};

namespace {

std::string SlotKey(const std::string& fqn, const Shape& offsets) {
  return fqn + "@" + ShapeToString(offsets);
}

void NotePageableFallback(DiagnosticSink* diagnostics) {
  static std::once_flag once;
  std::call_once(once, [diagnostics] {
    ReportDiagnostic(diagnostics, DiagnosticSeverity::kInfo, "staging",
                     FailedPreconditionError("pinned staging memory needs CUDA and a GPU, and "
                                             "this process has neither; staging into pageable "
                                             "memory"));
  });
}

// Fails if some CUDA tensor of `state` is on a device this process cannot use.
Status CheckDevices(const FlatStateDict& state, bool* any_cuda) {
  *any_cuda = false;
  for (const auto& [fqn, value] : state) {
    if (const auto* t = std::get_if<Tensor>(&value)) {
      *any_cuda |= t->is_cuda();
      DCPKV_RETURN_IF_ERROR(cuda::CheckTensor(*t, "tensor \"" + fqn + "\""));
    } else if (const auto* st = std::get_if<ShardedTensor>(&value)) {
      for (const Shard& s : st->local_shards) {
        *any_cuda |= s.tensor.is_cuda();
        DCPKV_RETURN_IF_ERROR(cuda::CheckTensor(
            s.tensor, "tensor \"" + fqn + "\" (shard at " + ShapeToString(s.offsets) + ")"));
      }
    }
  }
  return Status::Ok();
}

}  // namespace

DefaultStager::DefaultStager(StagingOptions options, uint64_t max_bytes)
    : options_(options), max_bytes_(max_bytes) {}

DefaultStager::~DefaultStager() {
  std::lock_guard<std::mutex> lock(mu_);
  WaitForCopies().IgnoreError();
}

Status DefaultStager::WaitForCopies() {
  if (!copies_pending_) return Status::Ok();
  copies_pending_ = false;
  return streams_->SynchronizeAll().WithContext("staging copies of CUDA tensors");
}

bool DefaultStager::should_synchronize_after_execute() const {
  std::lock_guard<std::mutex> lock(mu_);
  return copies_pending_;
}

Status DefaultStager::SynchronizeStaging() {
  std::lock_guard<std::mutex> lock(mu_);
  return WaitForCopies();
}

Status DefaultStager::CopyOut(const Tensor& t, void* dst) {
  if (t.nbytes() == 0) return Status::Ok();
  if (!t.is_cuda()) {
    if (t.is_contiguous()) {
      std::memcpy(dst, t.data(), t.nbytes());
    } else {
      GatherBytes(t.data(), LayoutOf(t), 0, t.nbytes(), dst);  // staged contiguous
    }
    return Status::Ok();
  }
  if (streams_ == nullptr) streams_ = std::make_unique<cuda::StreamSet>();
  DCPKV_ASSIGN_OR_RETURN(cuda::CopyStream * stream, streams_->Get(t.device().index));
  copies_pending_ = true;
  if (t.is_contiguous()) return stream->CopyToHost(dst, t.data(), t.nbytes());
  return stream->CopyPitchedToHost(dst, t.data(), PlanPackingCopies(t));  // staged packed
}

uint64_t DefaultStager::bytes_reserved() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = 0;
  for (const auto& [key, b] : buffers_) total += b->bytes();
  for (const auto& [key, b] : bytes_) total += b.data.capacity();
  return total;
}

uint64_t DefaultStager::allocations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return allocations_;
}

bool DefaultStager::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

void DefaultStager::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  WaitForCopies().IgnoreError();  // the buffers may still be copies' destinations
  closed_ = true;
  buffers_.clear();
  bytes_.clear();
}

StatusOr<FlatStateDict> DefaultStager::Stage(const FlatStateDict& state) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return FailedPreconditionError("the stager is closed");
  bool any_cuda = false;
  DCPKV_RETURN_IF_ERROR(CheckDevices(state, &any_cuda));
  DCPKV_RETURN_IF_ERROR(WaitForCopies());  // of the last Stage, into the buffers reused now
  if (options_.use_pinned_memory && !PinnedMemoryAvailable())
    NotePageableFallback(options_.diagnostics);
  if (any_cuda && streams_ != nullptr) streams_->Begin();

  // What this state needs: one buffer per dense tensor or local shard.
  std::map<std::string, uint64_t> wanted;
  uint64_t total = 0;
  for (const auto& [fqn, value] : state) {
    if (const auto* t = std::get_if<Tensor>(&value)) {
      wanted[SlotKey(fqn, {})] = t->nbytes();
      total += t->nbytes();
    } else if (const auto* st = std::get_if<ShardedTensor>(&value)) {
      for (const Shard& s : st->local_shards) {
        wanted[SlotKey(fqn, s.offsets)] = s.tensor.nbytes();
        total += s.tensor.nbytes();
      }
    } else {
      total += std::get<Bytes*>(value)->data.size();
    }
  }
  if (max_bytes_ != 0 && total > max_bytes_) {
    return ResourceExhaustedError("staging needs " + std::to_string(total) +
                                  " bytes; the stager's limit is " + std::to_string(max_bytes_));
  }
  // Keep buffers whose size still fits, drop the rest, allocate what is missing.
  std::map<std::string, std::unique_ptr<Buffer>> next;
  for (const auto& [key, bytes] : wanted) {
    auto it = buffers_.find(key);
    if (it != buffers_.end() && it->second->bytes() == bytes) {
      next[key] = std::move(it->second);
      continue;
    }
    if (it != buffers_.end()) it->second.reset();  // free before allocating its replacement
    StatusOr<std::unique_ptr<Buffer>> buffer =
        Buffer::Allocate(bytes, options_.use_shared_memory, options_.use_pinned_memory);
    if (!buffer.ok()) {
      buffers_.clear();  // partly moved into `next`: start the pool afresh next time
      return buffer.status();
    }
    next[key] = std::move(buffer).value();
    ++allocations_;
  }
  buffers_ = std::move(next);

  FlatStateDict staged;
  std::map<std::string, Bytes> next_bytes;
  for (const auto& [fqn, value] : state) {
    if (const auto* t = std::get_if<Tensor>(&value)) {
      void* dst = buffers_.at(SlotKey(fqn, {}))->data();
      Status copied = CopyOut(*t, dst);
      if (!copied.ok()) {
        WaitForCopies().IgnoreError();
        return copied.WithContext("staging tensor \"" + fqn + "\"");
      }
      staged.emplace(fqn, Tensor::Wrap(t->dtype(), t->shape(), dst));
    } else if (const auto* st = std::get_if<ShardedTensor>(&value)) {
      ShardedTensor copy{st->dtype, st->global_shape, {}};
      for (const Shard& s : st->local_shards) {
        void* dst = buffers_.at(SlotKey(fqn, s.offsets))->data();
        Status copied = CopyOut(s.tensor, dst);
        if (!copied.ok()) {
          WaitForCopies().IgnoreError();
          return copied.WithContext("staging tensor \"" + fqn + "\"");
        }
        copy.local_shards.push_back(
            Shard{s.offsets, Tensor::Wrap(st->dtype, s.tensor.shape(), dst)});
      }
      staged.emplace(fqn, std::move(copy));
    } else {
      auto old = bytes_.find(fqn);
      Bytes& b = next_bytes[fqn];
      if (old != bytes_.end()) b = std::move(old->second);  // reuse its capacity
      b.data.assign(std::get<Bytes*>(value)->data);
    }
  }
  bytes_ = std::move(next_bytes);
  for (auto& [fqn, b] : bytes_) staged.emplace(fqn, &b);
  if (!options_.use_non_blocking_copy) DCPKV_RETURN_IF_ERROR(WaitForCopies());
  return staged;
}

}  // namespace dcpkv
