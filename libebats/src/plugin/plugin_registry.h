// PluginRegistry: the task-handler plugins loaded from one directory.
//
// load_directory() checks the directory and every `*.so` file in it (owner,
// mode, no symlinks), dlopen()s exactly the file it checked, performs the ABI
// handshake of ebats/plugin.h, calls each plugin's init() and registers its
// tasks by name. A file that fails any step is refused with a PluginLoadError
// whose message names the file, the expected and found values and the fix;
// the other files still load (one bad plugin never stops the others).
//
// The registry owns the plugins' states: its destructor calls each plugin's
// shutdown(state), in reverse load order. Libraries are never dlclose()d (see
// plugin_registry.cpp). Move-only. Not thread-safe: a worker child uses it
// from its one thread.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ebats/config.h"
#include "ebats/plugin.h"

namespace ebats {

// Why one file (or the whole directory) was refused.
struct PluginLoadError {
  std::string file;     // the .so path, or the directory when all files were refused
  std::string message;  // complete: "<file>: abi_major 99, need 1: rebuild against ebats 1.x headers"
};

// A plugin that loaded. All strings are copies (nothing points into the .so).
struct PluginInfo {
  std::string file;                // full path of the .so
  std::string name, version;       // from the descriptor
  uint16_t abi_major = 0, abi_minor = 0;  // the EBATS_ABI_* it was built against
  std::vector<std::string> tasks;  // task names in descriptor order
};

// What the task runner needs to call one task's handler.
struct TaskHandler {
  ebats_handler_fn fn = nullptr;
  void* plugin_state = nullptr;  // what the plugin's init() stored (nullptr without init)
  std::string plugin;            // plugin name, for log lines
};

// The plugin whose init() or shutdown() runs on this thread, empty outside
// those calls: the host's log function names it, as the ABI gives these calls
// no task context.
std::string_view plugin_in_lifecycle_call();

class PluginRegistry {
 public:
  // Loads every regular `*.so` file directly in `dir` (not hidden, sorted by
  // name). `host` is handed to each init() and must outlive the registry;
  // each init() gets the settings of its plugin's name ("{}" when none).
  // Never fails as a whole: refusals are collected in errors().
  static PluginRegistry load_directory(const std::string& dir, const ebats_host* host,
                                       const PluginSettings& settings);

  PluginRegistry() = default;
  PluginRegistry(PluginRegistry&& other) noexcept;
  PluginRegistry& operator=(PluginRegistry&& other) noexcept;
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;
  // Calls shutdown(state) of every loaded plugin, newest first.
  ~PluginRegistry();

  // The handler registered for `task`, or nullptr if no plugin registers it.
  // The pointer is valid as long as the registry is.
  const TaskHandler* find(std::string_view task) const;
  // All registered task names, sorted.
  std::vector<std::string> task_names() const;
  // Loaded plugins in load order.
  const std::vector<PluginInfo>& plugins() const { return plugins_; }
  // Refusals in file order.
  const std::vector<PluginLoadError>& errors() const { return errors_; }

 private:
  struct Loaded {
    void (*shutdown)(void*) = nullptr;
    void* state = nullptr;
  };
  // Checks, loads and registers one file; a refusal goes to errors_.
  void load_file(int dir_fd, const std::string& dir, const std::string& name, const ebats_host* host,
                 const PluginSettings& settings);
  void refuse(const std::string& file, std::string why);
  void shutdown_all() noexcept;

  std::vector<PluginInfo> plugins_;
  std::vector<PluginLoadError> errors_;
  std::vector<Loaded> loaded_;  // parallel to plugins_
  std::map<std::string, TaskHandler, std::less<>> handlers_;
  std::map<std::string, std::string, std::less<>> task_files_;  // task name -> file that registered it
};

}  // namespace ebats
