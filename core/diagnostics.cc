#include "dcpkv/diagnostics.h"

#include <cstdio>
#include <string>

namespace dcpkv {

DiagnosticSink::~DiagnosticSink() = default;

namespace {

class StderrSink final : public DiagnosticSink {
 public:
  void Report(const Diagnostic& d) override {
    std::string line = "dcpkv: ";
    line += d.where;
    line += ": ";
    line += d.status.ToString();
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);  // one write: lines do not interleave
  }
};

}  // namespace

DiagnosticSink& StderrDiagnostics() {
  static StderrSink* const sink = new StderrSink();
  return *sink;
}

void DiagnosticCollector::Report(const Diagnostic& d) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.push_back({d.severity, std::string(d.where), d.status});
}

std::vector<DiagnosticCollector::Entry> DiagnosticCollector::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_;
}

void ReportDiagnostic(DiagnosticSink* sink, DiagnosticSeverity severity, std::string_view where,
                      const Status& status) {
  if (status.ok()) return;
  (sink != nullptr ? *sink : StderrDiagnostics()).Report({severity, where, status});
}

}  // namespace dcpkv
