// Command-line handling shared by the three daemons (Boost.Program_options):
// --config (default $EBATS_CONFIG), --topic (workers), --check-config,
// --log-level, --log-format, --metrics-listen, --help, --version.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/logger.h"
#include "ebats/config.h"

namespace ebats {

enum class DaemonKind { scheduler, ntask_worker, dtask_worker };

struct DaemonArgs {
  std::string config_path;
  std::string topic;
  LogOptions log;  // --log-level, --log-format (default $EBATS_LOG_LEVEL, $EBATS_LOG_FORMAT, then info, text)
  std::string metrics_listen;  // --metrics-listen HOST:PORT (default $EBATS_METRICS_LISTEN); empty: no metrics server
  bool check_config = false;
};

// Exit codes of every ebats program.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // could not go on (broker, I/O)
constexpr int kExitUsage = 2;    // bad command line or config

// Parses argv. Returns an exit code when the program should stop right away
// (--help, --version, a usage error), std::nullopt to go on.
std::optional<int> parse_daemon_args(int argc, char** argv, DaemonKind kind, DaemonArgs* out);

// Loads the config, printing every diagnostic to stderr (as `file:line:col:
// error: ...` lines; through `log` when it writes JSON, so a collector's
// stream stays JSON). Null on errors.
std::shared_ptr<const Config> load_config_or_report(const std::string& path, const Logger* log = nullptr);

// --check-config: the config, and that every registered task (of `topic`, or
// of every topic when empty) has a handler among the plugins. Returns the exit code.
int run_config_check(const Config& config, const std::string& topic);

// Appends to a child's argv the options that make it log as `log` does
// (level, format, and the daemon name its lines carry).
void add_child_log_args(std::vector<std::string>* argv, const Logger& log);
// The same for an argv built per config. REQUIRES: `log` outlives *make.
void add_child_log_args(std::function<std::vector<std::string>(const Config&)>* make, const Logger& log);

}  // namespace ebats
