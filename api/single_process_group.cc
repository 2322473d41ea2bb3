// NewSingleProcessGroup: the group of one rank.
#include <atomic>

#include "dcpkv/process_group.h"

namespace dcpkv {
namespace {

class SingleProcessGroup final : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string_view backend() const override { return "single"; }
  bool supports_cpu() const override { return true; }
  std::chrono::milliseconds timeout() const override { return timeout_.load(); }
  void set_timeout(std::chrono::milliseconds timeout) override { timeout_.store(timeout); }

  StatusOr<std::vector<std::string>> Gather(std::string_view data, int root) override {
    DCPKV_RETURN_IF_ERROR(CheckRoot("Gather", root));
    return std::vector<std::string>{std::string(data)};
  }
  StatusOr<std::string> Scatter(const std::vector<std::string>& data, int root) override {
    DCPKV_RETURN_IF_ERROR(CheckRoot("Scatter", root));
    if (data.size() != 1) {
      return InvalidArgumentError("Scatter: root has " + std::to_string(data.size()) +
                                  " buffers for a group of 1 rank");
    }
    return data[0];
  }
  StatusOr<std::string> Broadcast(std::string_view data, int root) override {
    DCPKV_RETURN_IF_ERROR(CheckRoot("Broadcast", root));
    return std::string(data);
  }
  StatusOr<std::vector<std::string>> AllGather(std::string_view data) override {
    return std::vector<std::string>{std::string(data)};
  }
  Status Barrier() override { return Status::Ok(); }
  uint64_t bytes_sent() const override { return 0; }

 private:
  static Status CheckRoot(std::string_view op, int root) {
    if (root == 0) return Status::Ok();
    return InvalidArgumentError(std::string(op) + ": root " + std::to_string(root) +
                                " is not a rank of a group of 1");
  }

  std::atomic<std::chrono::milliseconds> timeout_{std::chrono::milliseconds(60000)};
};

}  // namespace

std::unique_ptr<ProcessGroup> NewSingleProcessGroup() {
  return std::make_unique<SingleProcessGroup>();
}

}  // namespace dcpkv
