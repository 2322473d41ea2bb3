// What the dcpkv CLI prints: every command's result as aligned text for people or as one JSON
// document for scripts (--json). The JSON shapes are stable and documented in docs/cli.md.
#ifndef DCPKV_INSPECT_REPORT_H_
#define DCPKV_INSPECT_REPORT_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "dcpkv/inspect/diff.h"
#include "dcpkv/inspect/safetensors_io.h"
#include "dcpkv/inspect/stats.h"
#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/verify.h"
#include "dcpkv/metadata.h"
#include "dcpkv/store/gc.h"

namespace dcpkv::inspect {

enum class OutputFormat { kText, kJson };

void PrintListing(const StoreView& view, OutputFormat format, std::ostream& out);
void PrintShow(const Metadata& metadata, OutputFormat format, std::ostream& out);
void PrintStats(const std::string& checkpoint_id, const std::vector<TensorStats>& stats,
                OutputFormat format, std::ostream& out);
void PrintVerify(const VerifyReport& report, OutputFormat format, std::ostream& out);
void PrintDiff(const DiffReport& report, OutputFormat format, std::ostream& out);
void PrintExport(const ExportSummary& summary, const std::string& path, OutputFormat format,
                 std::ostream& out);
void PrintImport(const Metadata& metadata, OutputFormat format, std::ostream& out);
void PrintGc(const GcReport& report, OutputFormat format, std::ostream& out);
void PrintRecover(const std::vector<std::string>& restored, const std::vector<std::string>& present,
                  const std::string& from, OutputFormat format, std::ostream& out);
void PrintRemove(const RemoveReport& report, OutputFormat format, std::ostream& out);

// "2026-11-29 17:25:57 UTC" (seconds precision; "-" for 0).
std::string HumanTime(int64_t unix_micros);
// RFC 3339 with microseconds: "2026-11-29T17:25:57.123456Z".
std::string Rfc3339Time(int64_t unix_micros);

// A one-line progress bar on a terminal: label, bar, percentage, bytes and rate, redrawn at most
// ten times a second. Does nothing when disabled.
class ProgressBar {
 public:
  ProgressBar(std::string label, bool enabled);
  ~ProgressBar();  // Finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void Update(uint64_t done, uint64_t total);
  // Draws the final state and ends the line.
  void Finish();
  // A callback that updates this bar.
  ProgressCallback Callback();

 private:
  void Draw(uint64_t done, uint64_t total);

  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  bool finished_ = false;
  int64_t start_ns_ = 0;
  int64_t last_draw_ns_ = 0;
  uint64_t done_ = 0;
  uint64_t total_ = 0;
};

}  // namespace dcpkv::inspect

#endif  // DCPKV_INSPECT_REPORT_H_
