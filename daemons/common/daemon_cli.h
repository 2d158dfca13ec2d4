// Command-line handling shared by the three daemons (Boost.Program_options):
// --config (default $EBATS_CONFIG), --topic (workers), --check-config,
// --help, --version, and the hidden --child mode a worker execs its children in.
#pragma once

#include <optional>
#include <string>

#include "daemon/logger.h"
#include "ebats/config.h"
#include "supervisor/worker_child.h"

namespace ebats {

enum class DaemonKind { scheduler, ntask_worker, dtask_worker };

struct DaemonArgs {
  std::string config_path;
  std::string topic;
  bool check_config = false;
  bool child = false;
  WorkerChildOptions child_options;
};

// Exit codes of every ebats program.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // could not go on (broker, I/O)
constexpr int kExitUsage = 2;    // bad command line or config

// Parses argv. Returns an exit code when the program should stop right away
// (--help, --version, a usage error), std::nullopt to go on.
std::optional<int> parse_daemon_args(int argc, char** argv, DaemonKind kind, DaemonArgs* out);

// Loads the config, printing every diagnostic to stderr. Null on errors.
std::shared_ptr<const Config> load_config_or_report(const std::string& path);

// --check-config: the config, and that every registered task (of `topic`, or
// of every topic when empty) has a handler among the plugins. Returns the exit code.
int run_config_check(const Config& config, const std::string& topic);

// argv for a worker child of this program.
std::vector<std::string> child_argv(const Config& config, const std::string& topic);

}  // namespace ebats
