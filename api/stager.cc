// DefaultStager: a pool of staging buffers, one per tensor (or shard), reused while the state
// dict keeps its structure, so repeated async saves allocate nothing and memory stays bounded.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "dcpkv/async_save.h"
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

void NotePageableFallback() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::fprintf(stderr,
                 "dcpkv: pinned staging memory needs CUDA and a GPU, and this process has "
                 "neither; staging into pageable memory\n");
  });
}

}  // namespace

DefaultStager::DefaultStager(StagingOptions options, uint64_t max_bytes)
    : options_(options), max_bytes_(max_bytes) {}

DefaultStager::~DefaultStager() = default;

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
  closed_ = true;
  buffers_.clear();
  bytes_.clear();
}

StatusOr<FlatStateDict> DefaultStager::Stage(const FlatStateDict& state) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return FailedPreconditionError("the stager is closed");
  if (options_.use_pinned_memory && !PinnedMemoryAvailable()) NotePageableFallback();

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
      if (t->nbytes()) std::memcpy(dst, t->data(), t->nbytes());
      staged.emplace(fqn, Tensor::Wrap(t->dtype(), t->shape(), dst));
    } else if (const auto* st = std::get_if<ShardedTensor>(&value)) {
      ShardedTensor copy{st->dtype, st->global_shape, {}};
      for (const Shard& s : st->local_shards) {
        void* dst = buffers_.at(SlotKey(fqn, s.offsets))->data();
        if (s.tensor.nbytes()) std::memcpy(dst, s.tensor.data(), s.tensor.nbytes());
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
  return staged;
}

}  // namespace dcpkv
