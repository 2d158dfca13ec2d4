// TaskRunner: runs one task at a time through the loaded plugins' handlers.
//
// Lives in the worker child. It owns the PluginRegistry, offers the plugins
// the host function table of ebats/plugin.h and turns a handler's return code
// and host calls into a TaskRunResult. The host functions reach the state of
// the running call through ctx->host_data; the only process-wide state is the
// Logger of lines logged outside a task (see the constructor).
// Not thread-safe (one task at a time on one thread, as the ABI promises).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "daemon/logger.h"
#include "ebats/clock.h"
#include "ebats/plugin.h"
#include "ebats/retry.h"
#include "plugin/plugin_registry.h"

namespace ebats {

// One execution of a task, as the child received it.
struct TaskRequest {
  std::string id, name, topic, trace, params;  // params: a JSON object ("{}" if empty); trace may be empty
  uint32_t attempt = 0, max_attempts = 1;
  int64_t deadline_ms = 0;  // wall ms of the soft timeout; 0 = none
};

// What the execution came to.
struct TaskRunResult {
  Outcome outcome = Outcome::ok;  // ok | retry | fail | no_handler
  std::string message;            // the handler's message (truncated to the limit) or why it failed
  std::optional<int64_t> retry_after_ms;  // only with Outcome::retry, when the handler asked; <= 7 days
  std::optional<uint32_t> retry_limit;    // only with Outcome::retry, when the handler asked
};

class TaskRunner {
 public:
  // Loads the plugins of `plugin_dir`, passing each init() its plugin's settings
  // (refusals are in registry().errors()). `stop_flag` is the child's flag that
  // the parent's soft stop sets (may be null); `message_limit_bytes` bounds result
  // messages. `log`, when given, writes the plugins' log lines (with the
  // fields plugin, task, id and topic; the plugin alone outside a task);
  // without it they are written as format_plugin_log_line() lines.
  // REQUIRES: `clock`, `*stop_flag` and `*log` outlive the runner; one runner
  // with a `log` at a time (lines logged outside a task reach it through a
  // process-wide pointer, as the ABI gives them no context).
  TaskRunner(const std::string& plugin_dir, const PluginSettings& settings, const Clock& clock,
             const std::atomic<bool>* stop_flag, size_t message_limit_bytes, const Logger* log = nullptr);
  TaskRunner(const TaskRunner&) = delete;
  TaskRunner& operator=(const TaskRunner&) = delete;

  const PluginRegistry& registry() const { return registry_; }

  // Runs the handler registered for request.name. Never throws: exceptions
  // escaping a plugin become Outcome::fail.
  TaskRunResult run(const TaskRequest& request);

 private:
  // Points the out-of-task log lines at the runner's Logger for as long as
  // the plugins are loaded (declared before registry_, so shutdown() lines
  // still reach it).
  class OutsideTaskLog {
   public:
    explicit OutsideTaskLog(const Logger* log);
    ~OutsideTaskLog();
    OutsideTaskLog(const OutsideTaskLog&) = delete;
    OutsideTaskLog& operator=(const OutsideTaskLog&) = delete;

   private:
    const Logger* log_;
  };

  const Clock* clock_;
  const std::atomic<bool>* stop_flag_;
  size_t message_limit_bytes_;
  const Logger* log_;
  OutsideTaskLog outside_task_log_;
  PluginRegistry registry_;
};

// Helpers of the host functions, exposed for tests.
// The longest prefix of `text` of at most `limit` bytes that does not end
// inside a UTF-8 sequence.
std::string truncate_utf8(std::string_view text, size_t limit);
// `plugin=<p> task=<t> id=<i> level=<l> msg="<escaped>"` (no newline); control
// characters, '"' and '\' in msg are escaped.
std::string format_plugin_log_line(std::string_view plugin, std::string_view task, std::string_view id, int level,
                                   std::string_view msg);

}  // namespace ebats
