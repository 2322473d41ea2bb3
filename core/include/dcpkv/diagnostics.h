// Diagnostics: what dcpkv has to report that is not the result of the call at hand.
//
// A call's own failure is its returned Status. Some outcomes have no caller to return to, or must
// not fail a call that did its job: a checkpoint committed, but the retention or garbage
// collection after it failed; deleting retired manifests on replicas failed; a database could not
// be closed cleanly in a destructor; a staging fallback; a deprecated entry point. These go to a
// DiagnosticSink, named in the options of the call or object that meets them (SaveOptions,
// CheckpointerOptions, ChunkStore and replica options). A library never writes to stderr itself.
//
// Thread safety: Report may be called from any thread, also concurrently (background uploads,
// replication); a sink must be thread-safe, must not block for long and must not call into dcpkv.
// A sink must outlive every object and call it was given to.
#ifndef DCPKV_DIAGNOSTICS_H_
#define DCPKV_DIAGNOSTICS_H_

#include <mutex>
#include <string_view>
#include <vector>

#include "dcpkv/export.h"
#include "dcpkv/status.h"

namespace dcpkv {

enum class DiagnosticSeverity : uint8_t {
  kInfo = 0,     // a fallback or a note (e.g. staging into pageable memory)
  kWarning = 1,  // something failed that the call's result does not show (housekeeping after a
                 // commit, a close in a destructor)
};

struct DCPKV_EXPORT Diagnostic {
  DiagnosticSeverity severity = DiagnosticSeverity::kWarning;
  // Where: "save of checkpoint \"step-100\"", "chunk store /ckpt/rank-00000", ...
  std::string_view where;
  // What happened. Never OK; for a note, the code says what kind (e.g. FAILED_PRECONDITION).
  const Status& status;
};

class DCPKV_EXPORT DiagnosticSink {
 public:
  virtual ~DiagnosticSink();
  virtual void Report(const Diagnostic& diagnostic) = 0;
};

// Writes each report as one line, "dcpkv: <where>: <CODE>: <message>", to stderr. What options
// default to when they name no sink.
DCPKV_EXPORT DiagnosticSink& StderrDiagnostics();

// Keeps every report, for a program (or a test) that looks at them after the call.
class DCPKV_EXPORT DiagnosticCollector final : public DiagnosticSink {
 public:
  struct Entry {
    DiagnosticSeverity severity;
    std::string where;
    Status status;
  };
  void Report(const Diagnostic& diagnostic) override;
  // The reports so far, oldest first.
  std::vector<Entry> entries() const;

 private:
  mutable std::mutex mu_;
  std::vector<Entry> entries_;
};

// Reports to `sink`, or to StderrDiagnostics() if it is null.
DCPKV_EXPORT void ReportDiagnostic(DiagnosticSink* sink, DiagnosticSeverity severity,
                                   std::string_view where, const Status& status);

}  // namespace dcpkv

#endif  // DCPKV_DIAGNOSTICS_H_
