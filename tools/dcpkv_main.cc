// dcpkv: inspect, verify and convert the checkpoints of a dcpkv store. Only flag parsing lives
// here; every command is library code in tools/inspect with its own tests.
//
// Exit codes: 0 success; 1 `verify` found problems; 2 bad usage; 3 the command failed (missing
// store, unknown checkpoint, I/O error, ...).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/inspect/diff.h"
#include "dcpkv/inspect/report.h"
#include "dcpkv/inspect/safetensors_io.h"
#include "dcpkv/inspect/stats.h"
#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/verify.h"
#include "dcpkv/replication/replica.h"
#include "dcpkv/replication/replicator.h"
#include "dcpkv/replication/serve.h"
#include "dcpkv/store/gc.h"
#include "dcpkv/store/writer_lease.h"

namespace dcpkv::inspect {
namespace {

constexpr int kExitProblems = 1;
constexpr int kExitUsage = 2;
constexpr int kExitFailed = 3;

struct Flags {
  // serve / recover / rm: replicas
  std::string listen = "127.0.0.1:0";
  std::string from;
  std::string ns;
  std::string tls_cert, tls_key, tls_ca, client_ca, tls_server_name;
  std::string token_file;
  size_t max_message_bytes = replication::kDefaultMaxMessageBytes;
  int64_t connection_idle_seconds = 120;
  int max_connections = replication::ReplicaServerLimits{}.max_connections;
  int max_connections_per_address = replication::ReplicaServerLimits{}.max_connections_per_address;
  std::vector<std::string> replicas;
  std::string root;
  std::string checkpoint;
  std::vector<std::string> checkpoints;
  std::vector<std::string> fqns;
  std::string a, b;
  std::string format = "safetensors";
  std::string output;
  std::string file;
  uint64_t head = 0;
  int threads = 0;
  bool json = false;
  bool no_progress = false;
};

int Fail(const Status& status) {
  std::cerr << "dcpkv: error: " << status.ToString() << "\n";
  return kExitFailed;
}

OutputFormat FormatOf(const Flags& f) { return f.json ? OutputFormat::kJson : OutputFormat::kText; }

bool ShowProgress(const Flags& f) { return !f.no_progress && ::isatty(STDERR_FILENO) == 1; }

StatusOr<std::unique_ptr<StoreView>> OpenView(const Flags& f) { return StoreView::Open(f.root); }

int RunLs(const Flags& f) {
  auto view = OpenView(f);
  if (!view.ok()) return Fail(view.status());
  PrintListing(**view, FormatOf(f), std::cout);
  return 0;
}

int RunShow(const Flags& f) {
  auto view = OpenView(f);
  if (!view.ok()) return Fail(view.status());
  auto listing = (*view)->Resolve(f.checkpoint);
  if (!listing.ok()) return Fail(listing.status());
  auto md = (*view)->ReadMetadata((*listing)->checkpoint_id);
  if (!md.ok()) return Fail(md.status());
  PrintShow(*md, FormatOf(f), std::cout);
  return 0;
}

int RunStats(const Flags& f) {
  auto view = OpenView(f);
  if (!view.ok()) return Fail(view.status());
  ProgressBar bar("stats", ShowProgress(f));
  auto stats = ComputeStats(**view, f.checkpoint, f.fqns, f.head, bar.Callback());
  bar.Finish();
  if (!stats.ok()) return Fail(stats.status());
  auto listing = (*view)->Resolve(f.checkpoint);
  if (!listing.ok()) return Fail(listing.status());
  PrintStats((*listing)->checkpoint_id, *stats, FormatOf(f), std::cout);
  return 0;
}

int RunVerify(const Flags& f) {
  auto view = OpenView(f);
  if (!view.ok()) return Fail(view.status());
  ProgressBar bar("verify", ShowProgress(f));
  VerifyOptions options;
  options.threads = f.threads;
  options.progress = bar.Callback();
  auto report = VerifyCheckpoints(**view, f.checkpoints, options);
  bar.Finish();
  if (!report.ok()) return Fail(report.status());
  PrintVerify(*report, FormatOf(f), std::cout);
  return report->ok() ? 0 : kExitProblems;
}

int RunDiff(const Flags& f) {
  auto view = OpenView(f);
  if (!view.ok()) return Fail(view.status());
  ProgressBar bar("diff", ShowProgress(f));
  auto report = DiffCheckpoints(**view, f.a, f.b, bar.Callback());
  bar.Finish();
  if (!report.ok()) return Fail(report.status());
  PrintDiff(*report, FormatOf(f), std::cout);
  return 0;
}

int RunExport(const Flags& f) {
  auto view = OpenView(f);
  if (!view.ok()) return Fail(view.status());
  ProgressBar bar("export", ShowProgress(f));
  auto summary = ExportSafetensors(**view, f.checkpoint, f.output, bar.Callback());
  bar.Finish();
  if (!summary.ok()) return Fail(summary.status());
  PrintExport(*summary, f.output, FormatOf(f), std::cout);
  return 0;
}

int RunImport(const Flags& f) {
  ProgressBar bar("import", ShowProgress(f));
  auto md = ImportSafetensors(f.file, f.root, f.checkpoint, bar.Callback());
  bar.Finish();
  if (!md.ok()) return Fail(md.status());
  PrintImport(*md, FormatOf(f), std::cout);
  return 0;
}

// The token in `path` (surrounding whitespace trimmed); empty path: no token.
StatusOr<std::string> ReadToken(const std::string& path) {
  if (path.empty()) return std::string();
  std::ifstream in(path);
  if (!in) return InvalidArgumentError("cannot read token file " + path);
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t b = token.find_first_not_of(" \t\r\n"), e = token.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) return InvalidArgumentError("token file " + path + " is empty");
  return token.substr(b, e - b + 1);
}

int RunRm(const Flags& f) {
  std::vector<std::string> ids;
  {  // "latest" names the newest committed checkpoint (read-only view, closed before deleting)
    auto view = OpenView(f);
    if (!view.ok()) return Fail(view.status());
    for (const std::string& id : f.checkpoints) {
      if (id != "latest") {
        ids.push_back(id);
        continue;
      }
      auto listing = (*view)->Resolve(id);
      if (!listing.ok()) return Fail(listing.status());
      ids.push_back((*listing)->checkpoint_id);
    }
  }
  auto report = RemoveCheckpoints(f.root, ids);
  if (!report.ok()) return Fail(report.status());
  PrintRemove(*report, FormatOf(f), std::cout);
  if (f.replicas.empty()) return 0;
  // The job replicated its manifests: delete them there too.
  replication::ReplicatorOptions o;
  o.ns = f.ns;
  o.targets = f.replicas;
  o.client.tls_ca_file = f.tls_ca;
  o.client.tls_cert_file = f.tls_cert;
  o.client.tls_key_file = f.tls_key;
  o.client.tls_server_name = f.tls_server_name;
  StatusOr<std::string> token = ReadToken(f.token_file);
  if (!token.ok()) return Fail(token.status());
  o.client.token = *token;
  auto replicas = replication::GrpcManifestReplication::Create(o);
  if (!replicas.ok()) return Fail(replicas.status());
  Status deleted = (*replicas)->OnDelete(report->removed_ids);
  if (!deleted.ok()) return Fail(deleted);
  return 0;
}

int RunGc(const Flags& f) {
  auto view = OpenView(f);  // a clear error for a root that is not a store
  if (!view.ok()) return Fail(view.status());
  view->reset();
  auto report = CollectGarbage(f.root);
  if (!report.ok()) return Fail(report.status());
  PrintGc(*report, FormatOf(f), std::cout);
  return 0;
}

int RunServe(const Flags& f) {
  replication::ReplicaServerOptions o;
  o.root = f.root;
  o.listen = f.listen;
  o.tls_cert_file = f.tls_cert;
  o.tls_key_file = f.tls_key;
  o.client_ca_file = f.client_ca;
  o.max_message_bytes = f.max_message_bytes;
  o.limits.connection_idle = std::chrono::seconds(f.connection_idle_seconds);
  o.limits.max_connections = f.max_connections;
  o.limits.max_connections_per_address = f.max_connections_per_address;
  StatusOr<std::string> token = ReadToken(f.token_file);
  if (!token.ok()) return Fail(token.status());
  o.token = *token;
  Status served = replication::ServeUntilSignalled(o, std::cout);
  return served.ok() ? 0 : Fail(served);
}

int RunRecover(const Flags& f) {
  replication::ReplicaClientOptions o;
  o.tls_ca_file = f.tls_ca;
  o.tls_cert_file = f.tls_cert;
  o.tls_key_file = f.tls_key;
  o.tls_server_name = f.tls_server_name;
  StatusOr<std::string> token = ReadToken(f.token_file);
  if (!token.ok()) return Fail(token.status());
  o.token = *token;
  auto report = replication::RecoverManifests(f.root, f.from, f.ns, o);
  if (!report.ok()) return Fail(report.status());
  PrintRecover(report->restored, report->present, f.from, FormatOf(f), std::cout);
  return 0;
}

// A count: decimal digits only. CLI11 would take "-1" as 2^64-1 and "010" as octal, and its
// NonNegativeNumber check prints DBL_MAX in full when it fails.
CLI::Validator CountValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) {
          return "expected a count (0, 1, 2, ...), got \"" + value + "\"";
        }
        value.erase(0, std::min(value.find_first_not_of('0'), value.size() - 1));
        return "";
      },
      "");
}

// Usage errors name the command whose --help tells more.
std::string FailureMessage(const CLI::App* app, const CLI::Error& e) {
  std::string command = "dcpkv";
  for (const CLI::App* sub : app->get_subcommands()) command += " " + sub->get_name();
  return "dcpkv: error: " + std::string(e.what()) + "\nRun `" + command +
         " --help` for more information.\n";
}

// Returns the exit code of the command, after making sure its output reached stdout: a report
// cut short (a full disk, say) is a failure, not a success.
int Flushed(int code) {
  std::cout.flush();
  if (!std::cout.good()) {
    std::cerr << "dcpkv: error: writing the output failed (stdout)\n";
    return kExitFailed;
  }
  return code;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "dcpkv: inspect, verify and convert the checkpoints of a dcpkv store.\n"
      "Every command opens the store read-only (import excepted) and may run while a job is "
      "saving to it.\nCheckpoint ids may be given as \"latest\". Exit codes: 0 success, 1 "
      "verify found problems, 2 bad usage, 3 failure.",
      "dcpkv"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Help for every command");
  app.failure_message(FailureMessage);
  Flags f;
  auto add_root = [&](CLI::App* cmd) {
    cmd->add_option("ROOT", f.root, "Store root (the directory holding rank-NNNNN databases)")
        ->required();
  };
  auto add_json = [&](CLI::App* cmd) {
    cmd->add_flag("--json", f.json, "Print one JSON document (shape in docs/cli.md)");
  };
  auto add_progress = [&](CLI::App* cmd) {
    cmd->add_flag("--no-progress", f.no_progress,
                  "No progress bar (one is drawn on stderr when it is a terminal)");
  };

  CLI::App* ls = app.add_subcommand(
      "ls", "List every checkpoint: id, commit time, world size, tensors, bytes, state");
  add_root(ls);
  add_json(ls);

  CLI::App* show = app.add_subcommand(
      "show", "One line per fqn: dtype, global shape, shards, chunks, bytes, ranks");
  add_root(show);
  show->add_option("CKPT", f.checkpoint, "Checkpoint id or \"latest\"")->required();
  add_json(show);

  CLI::App* stats = app.add_subcommand(
      "stats", "Per tensor: min, max, mean, std, NaN/Inf and zero counts, first values");
  add_root(stats);
  stats->add_option("CKPT", f.checkpoint, "Checkpoint id or \"latest\"")->required();
  stats->add_option("FQN", f.fqns, "Tensors to examine (default: all)");
  stats->add_option("--head", f.head, "Also print the first N values of each tensor")
      ->type_name("N")
      ->transform(CountValidator());
  add_json(stats);
  add_progress(stats);

  CLI::App* verify = app.add_subcommand(
      "verify",
      "Read every chunk of every rank: checksums, FlatBuffers, coverage of every tensor; "
      "exit 1 if any problem");
  add_root(verify);
  verify->add_option("CKPT", f.checkpoints, "Checkpoints to verify (default: all)");
  verify->add_option("--threads", f.threads, "Threads reading chunks (default: 4)")
      ->type_name("N")
      ->check(CLI::Range(1, 256));
  add_json(verify);
  add_progress(verify);

  CLI::App* diff = app.add_subcommand(
      "diff", "Tensors added, removed, changed (with max absolute difference), unchanged");
  add_root(diff);
  diff->add_option("A", f.a, "Checkpoint id or \"latest\"")->required();
  diff->add_option("B", f.b, "Checkpoint id or \"latest\"")->required();
  add_json(diff);
  add_progress(diff);

  CLI::App* exp = app.add_subcommand(
      "export", "Write one consolidated file of a checkpoint, assembled from all ranks' shards");
  add_root(exp);
  exp->add_option("CKPT", f.checkpoint, "Checkpoint id or \"latest\"")->required();
  exp->add_option("--format", f.format, "Output format")
      ->check(CLI::IsMember({"safetensors"}))
      ->capture_default_str();
  exp->add_option("-o,--output", f.output, "File to write (replaced atomically)")->required();
  add_json(exp);
  add_progress(exp);

  CLI::App* imp = app.add_subcommand(
      "import", "Save the tensors of a safetensors file as a single-rank checkpoint");
  imp->add_option("FILE", f.file, "safetensors file")->required()->check(CLI::ExistingFile);
  add_root(imp);
  imp->add_option("CKPT", f.checkpoint, "Id of the checkpoint to create")->required();
  add_json(imp);
  add_progress(imp);

  auto add_client_tls = [&](CLI::App* cmd) {
    cmd->add_option("--tls-ca", f.tls_ca, "CA certificate (PEM) to verify the replica with")
        ->check(CLI::ExistingFile);
    cmd->add_option("--tls-cert", f.tls_cert, "Client certificate (PEM) for mTLS")
        ->check(CLI::ExistingFile);
    cmd->add_option("--tls-key", f.tls_key, "Client private key (PEM) for mTLS")
        ->check(CLI::ExistingFile);
    cmd->add_option("--tls-server-name", f.tls_server_name,
                    "Name to check the replica's certificate against (default: the host)");
    cmd->add_option("--token-file", f.token_file, "File holding the bearer token")
        ->check(CLI::ExistingFile);
  };

  CLI::App* rm = app.add_subcommand(
      "rm",
      "Delete checkpoints (data newer checkpoints refer to stays); then collect garbage. Needs "
      "the store not to be open by a running job");
  add_root(rm);
  rm->add_option("CKPT", f.checkpoints, "Checkpoints to delete")->required();
  rm->add_option("--replica", f.replicas, "Also delete the manifests on this replica (repeatable)");
  rm->add_option("--namespace", f.ns, "The job's namespace on the replicas");
  add_client_tls(rm);
  add_json(rm);

  CLI::App* serve = app.add_subcommand(
      "serve",
      "Run a manifest replica: keeps the manifests jobs replicate to it in its own store; prints "
      "the address it bound; stops cleanly on SIGTERM or SIGINT");
  serve->add_option("--root", f.root, "Directory of the replica's own store")->required();
  serve->add_option("--listen", f.listen, "Address to bind (loopback unless told otherwise)")
      ->capture_default_str();
  serve->add_option("--tls-cert", f.tls_cert, "Server certificate chain (PEM)")
      ->check(CLI::ExistingFile);
  serve->add_option("--tls-key", f.tls_key, "Server private key (PEM)")->check(CLI::ExistingFile);
  serve->add_option("--client-ca", f.client_ca, "Require client certificates signed by this CA")
      ->check(CLI::ExistingFile);
  serve->add_option("--token-file", f.token_file, "Require this bearer token on every call")
      ->check(CLI::ExistingFile);
  serve
      ->add_option("--max-message-bytes", f.max_message_bytes,
                   "Largest request accepted, in bytes (a manifest record is a few KiB per rank)")
      ->capture_default_str();
  serve
      ->add_option("--idle-timeout", f.connection_idle_seconds,
                   "Close a connection with no call in flight for this many seconds")
      ->capture_default_str();
  serve
      ->add_option("--max-connections", f.max_connections,
                   "Connections open at once (plaintext servers); past it new ones are closed")
      ->capture_default_str();
  serve
      ->add_option("--max-connections-per-address", f.max_connections_per_address,
                   "Of those, from one client address (IPv4, or IPv6 /64)")
      ->capture_default_str();

  CLI::App* recover = app.add_subcommand(
      "recover", "Restore manifests the store lacks (coordinator database lost) from a replica");
  add_root(recover);
  recover->add_option("--from", f.from, "Replica address, HOST:PORT")->required();
  recover->add_option("--namespace", f.ns, "The job's namespace on the replica")->required();
  add_client_tls(recover);
  add_json(recover);

  CLI::App* gc = app.add_subcommand(
      "gc",
      "Reclaim data no committed checkpoint refers to: deleted checkpoints and saves that "
      "crashed before committing. Needs the store not to be open by a running job");
  add_root(gc);
  add_json(gc);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Without a command, the first word is a misspelt one: say so rather than "A subcommand is
    // required".
    if (app.get_subcommands().empty()) {
      for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg.empty() || arg[0] == '-') continue;
        std::cerr << "dcpkv: error: unknown command \"" << arg
                  << "\" (commands: ls, show, stats, verify, diff, export, import, rm, gc, serve, "
                     "recover)\n"
                  << "Run `dcpkv --help` for more information.\n";
        return kExitUsage;
      }
    }
    app.exit(e);
    return kExitUsage;
  }
  if (ls->parsed()) return Flushed(RunLs(f));
  if (show->parsed()) return Flushed(RunShow(f));
  if (stats->parsed()) return Flushed(RunStats(f));
  if (verify->parsed()) return Flushed(RunVerify(f));
  if (diff->parsed()) return Flushed(RunDiff(f));
  if (exp->parsed()) return Flushed(RunExport(f));
  // The commands that write take the root's writer lease as maintenance commands of their own:
  // refused while a job holds the root, waited for by a job that starts meanwhile.
  for (CLI::App* writes : {imp, rm, gc, recover}) {
    if (writes->parsed()) SetMaintenanceIdentity(writes->get_name());
  }
  if (imp->parsed()) return Flushed(RunImport(f));
  if (rm->parsed()) return Flushed(RunRm(f));
  if (gc->parsed()) return Flushed(RunGc(f));
  if (serve->parsed()) return Flushed(RunServe(f));
  if (recover->parsed()) return Flushed(RunRecover(f));
  return kExitUsage;
}

}  // namespace
}  // namespace dcpkv::inspect

int main(int argc, char** argv) { return dcpkv::inspect::Main(argc, argv); }
