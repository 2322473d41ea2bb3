// The NCCL backend of ProcessGroup: the plan exchange of save and load over NCCL, between ranks
// that each drive one CUDA device (DCP's NCCL process group).
//
// Rendezvous is the gloo backend's (gloo_process_group.h): a TcpStoreServer on
// master_addr:master_port, started by rank 0's group, a launcher or a test. Rank 0 publishes
// its NCCL unique id there and every rank reads it, then each rank creates a non-blocking NCCL
// communicator on its device and polls it, so that a rank that never joins is a
// DEADLINE_EXCEEDED (the communicator aborted), not a hang.
//
//   dcpkv::NcclProcessGroupOptions options;
//   options.rank = rank;
//   options.world_size = world_size;
//   options.master_addr = "10.0.0.1";
//   options.device = local_rank;
//   auto group = dcpkv::CreateNcclProcessGroup(options);   // or CreateNcclProcessGroupFromEnv()
//
// Collectives carry byte buffers as DCP's do over NCCL: each buffer is copied to this rank's
// device, moved by NCCL, and copied back to host memory. Sizes travel first (8-byte
// little-endian headers), then the payloads: Gather and Scatter as grouped ncclSend/ncclRecv
// with the root, Broadcast as ncclBroadcast, AllGather as an ncclAllGather of the payloads
// padded to the largest, Barrier as an all-gather of one byte. A payload larger than
// max_transfer_bytes (per rank and operation) moves in several rounds, through device and
// page-locked host buffers of that size that the group allocates once. Every call waits at
// most timeout() in all, polling the communicator; a call that fails or times out aborts the
// communicator (ncclCommAbort), and later calls fail with ABORTED (process_group.h).
// bytes_sent() counts the bytes this rank hands to NCCL as its own: its all-gather
// contributions (padding included), its sends, and what it broadcasts as root.
//
// A job that saves asynchronously needs a CPU group as well: async_save refuses an NCCL group
// (its background collectives would share the communicator with training). Create both on one
// rendezvous server under different prefixes, e.g. a gloo group with options.prefix "ckpt"
// and an NCCL group, and pass the gloo group to AsyncSave; see docs/gpu.md.
//
// Thread safety: as ProcessGroup. Each call makes options.device current for its duration and
// restores the caller's current device.
#ifndef DCPKV_NCCL_PROCESS_GROUP_H_
#define DCPKV_NCCL_PROCESS_GROUP_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "dcpkv/export.h"
#include "dcpkv/gloo_process_group.h"
#include "dcpkv/process_group.h"
#include "dcpkv/status.h"

namespace dcpkv {

struct DCPKV_EXPORT NcclProcessGroupOptions {
  // This process's rank in [0, world_size). Default: 0.
  int rank = 0;
  // Number of ranks (and of devices: one per rank). Default: 1.
  int world_size = 1;
  // Address of the rendezvous server. Default: "127.0.0.1".
  std::string master_addr = "127.0.0.1";
  // Port of the rendezvous server. Default: 29500.
  int master_port = 29500;
  // Longest wait of the rendezvous, of the communicator's creation and of each collective.
  // Default: 60 s.
  std::chrono::milliseconds timeout{60000};
  // Namespace of this group's rendezvous keys (as for gloo). Default: "".
  std::string prefix;
  // A server running in this process to rendezvous at instead of master_addr:master_port.
  // Default: null.
  std::shared_ptr<TcpStoreServer> server;
  // Without `server`: whether rank 0 starts the server. Default: true.
  bool start_server = true;
  // The protocol of the server when this rank does not start it (as for gloo). Default: kDcpkv.
  RendezvousProtocol server_protocol = RendezvousProtocol::kDcpkv;
  // This rank's CUDA device; -1: the calling thread's current device. Default: -1.
  int device = -1;
  // Largest number of bytes one NCCL operation moves per rank; the size of the group's device
  // and page-locked host buffers (two of each). The same on every rank; at least 64 and at
  // least world_size. Default: 16 MiB.
  uint64_t max_transfer_bytes = uint64_t{16} << 20;
};

// True if this build of dcpkv has the NCCL backend (DCPKV_WITH_NCCL).
DCPKV_EXPORT bool NcclBackendBuilt();

// Joins an NCCL group and returns once the communicator of every rank is ready.
// Errors: INVALID_ARGUMENT for bad options (or ranks that disagree on max_transfer_bytes);
// FAILED_PRECONDITION if this build has no NCCL or the process has no usable CUDA device (the
// message says which); UNAVAILABLE if the rendezvous server cannot be reached or NCCL fails;
// DEADLINE_EXCEEDED if some rank did not join in time.
DCPKV_EXPORT StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclProcessGroup(
    const NcclProcessGroupOptions& options);

// Options from the torchrun environment, as GlooProcessGroupOptionsFromEnv reads them (agent
// store, key scope), with device = LOCAL_RANK when set (else -1).
DCPKV_EXPORT StatusOr<NcclProcessGroupOptions> NcclProcessGroupOptionsFromEnv(
    std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

// CreateNcclProcessGroup(NcclProcessGroupOptionsFromEnv(timeout)).
DCPKV_EXPORT StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclProcessGroupFromEnv(
    std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

}  // namespace dcpkv

#endif  // DCPKV_NCCL_PROCESS_GROUP_H_
