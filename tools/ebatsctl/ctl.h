// ebatsctl: what the command groups share (common.cpp). Each group lives in a
// file of its own: main.cpp (publish, enqueue, stats, setup, the help),
// dead_commands.cpp (dead), task_commands.cpp (task show, results tail),
// config_commands.cpp (events, plugins).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"
#include "envelope/json_io.h"
#include "supervisor/plugin_probe.h"

namespace ebatsctl {

// Exit codes (docs/CLI.md).
constexpr int kOk = 0;
constexpr int kFailure = 1;
constexpr int kUsage = 2;
constexpr int kNotFound = 3;

struct Context {
  std::shared_ptr<const ebats::Config> config;
  ebats::SystemClock clock;
};

// "ebatsctl: MSG\nTry 'ebatsctl --help'." on stderr; returns kUsage.
int usage_error(const std::string& msg);
// The exit code of a failed status: not_found 3, invalid_argument and
// too_large 2, anything else 1.
int exit_code_of(const ebats::Status& s);
// Prints the status on stderr; returns exit_code_of(s).
int report(const ebats::Status& s);
// "2026-01-02T03:04:05Z", or "-" for 0.
std::string format_time(ebats::WallMs ms);

// Opens the config's broker. Only `setup` passes create: every other command
// finds a missing SQLite database an error (not_found, naming the path and
// `ebatsctl setup`) instead of creating an empty one and reporting zeros.
ebats::Result<std::unique_ptr<ebats::Broker>> open_broker(const Context& ctx, bool create = false);

// Parses a subcommand's own arguments: options in `opts`, the rest as
// positionals into `positional`. Returns the usage error, if any.
std::optional<int> parse_subcommand(const std::string& name, const std::vector<std::string>& argv,
                                    boost::program_options::options_description& opts,
                                    std::vector<std::string>* positional);

// Digits only, fitting uint64 ("-1", "+7" and " 7" are refused).
ebats::Result<uint64_t> parse_id(const std::string& s);

// One line of JSON made by `write`, printed on stdout.
void print_json(const std::function<void(ebats::json::Writer&)>& write);

// Loads the plugins of the config in a throwaway worker child
// (ebats-worker-child, ChildProgram::locate()), as --check-config does.
ebats::Result<ebats::PluginProbe> probe_plugins(const Context& ctx);

int cmd_dead(const Context& ctx, const std::vector<std::string>& argv);
int cmd_task(const Context& ctx, const std::vector<std::string>& argv);
int cmd_results(const Context& ctx, const std::vector<std::string>& argv);
int cmd_events(const Context& ctx, const std::vector<std::string>& argv);
int cmd_plugins(const Context& ctx, const std::vector<std::string>& argv);

}  // namespace ebatsctl
