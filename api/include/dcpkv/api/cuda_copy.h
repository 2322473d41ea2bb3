// Copies between host and device memory on dedicated CUDA streams. Not installed: api/ and its
// tests only.
//
// A CopyStream is one stream of its own on one device, created non-blocking so that the copies
// it runs overlap the caller's work on the legacy default stream. WaitForDefaultStream makes
// its later copies wait for the work already enqueued on that default stream (the work that
// produced a tensor being saved, say), without making the default stream wait for the copies.
// An Event marks the copies enqueued before it; waiting for it, or synchronizing the stream,
// is how the host learns that a copy is complete.
//
// Without CUDA (in the build or on the machine) Create fails with FAILED_PRECONDITION (see
// cuda_device.h); nothing here aborts. Every call switches to the stream's device for its
// duration and restores the caller's current device.
//
// Thread safety: a CopyStream and an Event are used by one thread at a time.
#ifndef DCPKV_API_CUDA_COPY_H_
#define DCPKV_API_CUDA_COPY_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "dcpkv/core/strided.h"
#include "dcpkv/status.h"

namespace dcpkv::cuda {

class Event {
 public:
  Event() = default;
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  bool valid() const { return event_ != nullptr; }
  // Blocks until the marked copies are complete. OK for an invalid (empty) event.
  Status Wait();
  // True if the marked copies are complete.
  StatusOr<bool> Done();

 private:
  friend class CopyStream;
  Event(void* event, int device) : event_(event), device_(device) {}
  void Reset();

  void* event_ = nullptr;  // cudaEvent_t
  int device_ = 0;
};

class CopyStream {
 public:
  // A new stream on CUDA device `device`.
  static StatusOr<std::unique_ptr<CopyStream>> Create(int device);
  // Waits for the stream's copies, then destroys it.
  ~CopyStream();
  CopyStream(const CopyStream&) = delete;
  CopyStream& operator=(const CopyStream&) = delete;

  int device() const { return device_; }
  // Later copies on this stream wait for the work enqueued on the device's legacy default
  // stream so far.
  Status WaitForDefaultStream();
  // Enqueue copies of `bytes` bytes. Host memory should be page-locked for the copy to be
  // asynchronous (pageable memory works, but the call may block until the copy is done).
  Status CopyToHost(void* host, const void* device_ptr, size_t bytes);
  Status CopyToDevice(void* device_ptr, const void* host, size_t bytes);
  // Enqueue copies between strided blocks: each of `copies` (PlanPitchedCopies, offsets
  // relative to the bases) as one cudaMemcpy2DAsync (cudaMemcpyAsync for a single row).
  Status CopyPitchedToHost(void* host_base, const void* device_base,
                           const std::vector<PitchedCopy>& copies);
  Status CopyPitchedToDevice(void* device_base, const void* host_base,
                             const std::vector<PitchedCopy>& copies);
  // An event after every copy enqueued so far.
  StatusOr<Event> Record();
  // Blocks until every copy enqueued so far is complete.
  Status Synchronize();

 private:
  Status CopyPitched(void* dst_base, const void* src_base, const std::vector<PitchedCopy>& copies,
                     bool to_device);
  CopyStream(void* stream, void* start, int device)
      : stream_(stream), default_done_(start), device_(device) {}

  // Unused in a build without CUDA, where no CopyStream is ever made.
  [[maybe_unused]] void* stream_;        // cudaStream_t
  [[maybe_unused]] void* default_done_;  // cudaEvent_t recorded on the legacy default stream
  int device_;
};

// Device memory for tests and benchmarks. DeviceMalloc fails with FAILED_PRECONDITION without
// CUDA, RESOURCE_EXHAUSTED when the device is full.
StatusOr<void*> DeviceMalloc(int device, size_t bytes);
void DeviceFree(int device, void* device_ptr);
// Synchronous copies (cudaMemcpy) for tests and benchmarks.
Status CopyToDeviceSync(int device, void* device_ptr, const void* host, size_t bytes);
Status CopyToHostSync(int device, void* host, const void* device_ptr, size_t bytes);

}  // namespace dcpkv::cuda

#endif  // DCPKV_API_CUDA_COPY_H_
