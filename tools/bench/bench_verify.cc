// verify: `dcpkv verify` of the run's checkpoint (inspect::VerifyCheckpoints over a fresh
// StoreView, every rank's database read by one process, as the command does) against one reader
// scanning every rank's raw file; both cold.
#include <vector>

#include "baselines.h"
#include "benchmarks.h"
#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/verify.h"
#include "io_steps.h"
#include "page_cache.h"
#include "stats.h"

namespace dcpkv::bench {

StatusOr<std::vector<Result>> RunVerify(BenchContext& ctx) {
  const Config& c = ctx.config;
  Workspace& ws = ctx.workspace;
  DCPKV_ASSIGN_OR_RETURN(const std::string id, SavedCheckpoint(ctx));
  DCPKV_RETURN_IF_ERROR(EnsureRawFiles(ctx));
  std::vector<char> buffer(size_t{64} << 20, 1);  // touched: no page faults while timed
  uint64_t raw_bytes = 0;
  auto raw_scan = [&](int) -> StatusOr<double> {
    DCPKV_RETURN_IF_ERROR(DropPageCache(ws.path()));
    return TimeOnRanks(1, [&](const Rank&) -> Status {
      raw_bytes = 0;
      for (int rank = 0; rank < c.world; ++rank) {
        DCPKV_RETURN_IF_ERROR(RawScan(ws.RawFile(rank), buffer, &raw_bytes));
      }
      return Status::Ok();
    });
  };
  uint64_t verified_bytes = 0;
  auto verify = [&](int) -> StatusOr<double> {
    DCPKV_RETURN_IF_ERROR(DropPageCache(ws.path()));
    return TimeOnRanks(1, [&](const Rank&) -> Status {
      DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<inspect::StoreView> view,
                             inspect::StoreView::Open(ws.StoreRoot()));
      inspect::VerifyOptions options;
      options.threads = c.read_threads;
      DCPKV_ASSIGN_OR_RETURN(inspect::VerifyReport report,
                             inspect::VerifyCheckpoints(*view, {id}, options));
      if (!report.ok()) {
        return DataLossError("verify of " + id + ": " +
                             inspect::DescribeProblem(report.problems.front()));
      }
      verified_bytes = report.bytes;
      return Status::Ok();
    });
  };
  DCPKV_ASSIGN_OR_RETURN(PairedRuns runs, Interleave(c.repetitions, raw_scan, verify));
  const uint64_t total = RunShape(c).total_bytes();
  if (ProcessRank() == 0 && (verified_bytes != total || raw_bytes != total)) {
    return InternalError("verify read " + std::to_string(verified_bytes) + " bytes and the raw " +
                         "scan " + std::to_string(raw_bytes) + ", of " + std::to_string(total));
  }
  Result r = MakeResult("verify", total, runs.measured, "raw_scan", runs.baseline);
  r.note =
      "cold VerifyCheckpoints (dcpkv verify; --read-threads threads, 0: its default) of every "
      "rank's chunks from one process vs one cold read() of every rank's raw file";
  return std::vector<Result>{r};
}

}  // namespace dcpkv::bench
