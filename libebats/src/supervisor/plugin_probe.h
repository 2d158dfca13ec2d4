// probe_plugins: loads the plugin dir in a throwaway child process (the same
// child a worker runs) and reports which tasks it offers and which files were
// refused. A plugin that crashes in init() cannot take the caller down.
#pragma once

#include <string>
#include <vector>

#include "ebats/config.h"
#include "ebats/status.h"
#include "supervisor/child_program.h"
#include "supervisor/frame.h"

namespace ebats {

// What the probe child loaded: its READY report.
using PluginProbe = ReadyReport;

// The names in `settings` that no loaded plugin carries: a typo there leaves
// the plugin it meant with {} (warned about, not an error).
std::vector<std::string> unused_plugin_settings(const PluginSettings& settings,
                                                const std::vector<std::string>& loaded);

// The registrations of `topic` (every topic when empty) whose task is not in
// `tasks` (what the loaded plugins handle), each described for a message:
// "event 'order_paied' registers task 'closeOrder' (topic demo)", or
// "source 'q' makes task 'x' (topic demo)". A worker refuses to take tasks
// of its topic while any is unhandled; --check-config reports them.
std::vector<std::string> unhandled_registrations(const Config& config, const std::string& topic,
                                                 const std::vector<std::string>& tasks);

// Starts `program` (ebats-worker-child) with `args`, e.g. {"--plugins-dir", dir};
// `settings` go to the plugins' init() as a worker's would.
Result<PluginProbe> probe_plugins(const ChildProgram& program, const std::vector<std::string>& args,
                                  const PluginSettings& settings);

}  // namespace ebats
