// TaskRunner: the host function table and one handler call per run().
#include "plugin/task_runner.h"

#include <atomic>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <string_view>

namespace ebats {
namespace {

constexpr uint64_t kMaxRetryAfterMs = uint64_t{7} * 24 * 3'600'000;  // 7 days, as decide_next_step clamps
constexpr size_t kMaxLogMessageBytes = 16 * 1024;                    // longer log messages are cut

// Everything the host functions may touch during one handler call; reached
// through ctx->host_data.
struct CallState {
  const Logger* log = nullptr;  // null: format_plugin_log_line() lines
  const TaskHandler* handler = nullptr;
  const TaskRequest* request = nullptr;
  const Clock* clock = nullptr;
  const std::atomic<bool>* stop_flag = nullptr;
  size_t message_limit_bytes = 0;
  std::optional<std::string> message;
  std::optional<int64_t> retry_after_ms;
  std::optional<uint32_t> retry_limit;
};

CallState* call_state(const ebats_task_ctx* ctx) {
  return ctx == nullptr ? nullptr : static_cast<CallState*>(ctx->host_data);
}

const char* level_name(int level) {
  switch (level) {
    case EBATS_LOG_DEBUG: return "debug";
    case EBATS_LOG_INFO: return "info";
    case EBATS_LOG_WARN: return "warn";
    case EBATS_LOG_ERROR: return "error";
    default: return nullptr;
  }
}

// The Logger of lines logged outside a task (init(), shutdown(), a plugin's
// own threads); set by TaskRunner::OutsideTaskLog.
std::atomic<const Logger*> g_outside_task_log{nullptr};

LogLevel plugin_log_level(int level) {
  switch (level) {
    case EBATS_LOG_DEBUG: return LogLevel::debug;
    case EBATS_LOG_WARN: return LogLevel::warn;
    case EBATS_LOG_ERROR: return LogLevel::error;
    default: return LogLevel::info;  // EBATS_LOG_INFO and levels this host does not know
  }
}

// The plugin's text, cut at kMaxLogMessageBytes like format_plugin_log_line() does.
std::string cut_log_message(std::string_view text) {
  if (text.size() <= kMaxLogMessageBytes) return std::string(text);
  return truncate_utf8(text, kMaxLogMessageBytes) + "...(truncated)";
}

// One write(2) per line, so lines of concurrent children do not interleave.
void write_stderr_line(const std::string& line) {
  std::string out = line + "\n";
  const char* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to report a failing stderr
    p += n;
    left -= static_cast<size_t>(n);
  }
}

// --- the host functions (ebats_host), all noexcept towards the plugin ---

void host_log(const ebats_task_ctx* ctx, int level, const char* msg) noexcept {
  try {
    const std::string_view text = msg == nullptr ? std::string_view() : std::string_view(msg);
    const CallState* s = call_state(ctx);
    if (s == nullptr) {
      // Outside a task: from init() or shutdown() the registry names the
      // plugin; from a plugin's own thread nothing does.
      const std::string_view plugin = plugin_in_lifecycle_call();
      if (const Logger* log = g_outside_task_log.load(); log != nullptr) {
        const LogLevel l = plugin_log_level(level);
        if (log->enabled(l)) log->log(l, cut_log_message(text), {{"plugin", plugin.empty() ? "-" : plugin}});
        return;
      }
      write_stderr_line(format_plugin_log_line(plugin.empty() ? "-" : plugin, "-", "-", level, text));
      return;
    }
    if (s->log != nullptr) {
      const LogLevel l = plugin_log_level(level);
      if (!s->log->enabled(l)) return;
      s->log->log(l, cut_log_message(text), {{"plugin", s->handler->plugin},
                                             {"task", s->request->name},
                                             {"id", s->request->id},
                                             {"topic", s->request->topic}});
      return;
    }
    write_stderr_line(format_plugin_log_line(s->handler->plugin, s->request->name, s->request->id, level, text));
  } catch (...) {
    // Out of memory while logging: drop the line rather than fail the task.
  }
}

void host_set_result_message(const ebats_task_ctx* ctx, const char* msg, size_t len) noexcept {
  CallState* s = call_state(ctx);
  if (s == nullptr) return;
  try {
    const std::string_view text = msg == nullptr ? std::string_view() : std::string_view(msg, len);
    s->message = truncate_utf8(text, s->message_limit_bytes);
  } catch (...) {
    s->message.reset();
  }
}

void host_retry_after(const ebats_task_ctx* ctx, uint64_t delay_ms) noexcept {
  if (CallState* s = call_state(ctx)) s->retry_after_ms = static_cast<int64_t>(std::min(delay_ms, kMaxRetryAfterMs));
}

void host_retry_limit(const ebats_task_ctx* ctx, uint32_t max_retries) noexcept {
  if (CallState* s = call_state(ctx)) s->retry_limit = max_retries;
}

int host_should_stop(const ebats_task_ctx* ctx) noexcept {
  const CallState* s = call_state(ctx);
  if (s == nullptr) return 0;
  if (s->stop_flag != nullptr && s->stop_flag->load(std::memory_order_relaxed)) return 1;
  if (s->request->deadline_ms > 0 && s->clock->wall_now() >= s->request->deadline_ms) return 1;
  return 0;
}

// Constant data, not state: every per-call fact lives in CallState.
const ebats_host kHostTable = {
    sizeof(ebats_host), EBATS_ABI_MAJOR,  EBATS_ABI_MINOR, host_log, host_set_result_message,
    host_retry_after,   host_retry_limit, host_should_stop,
};

}  // namespace

std::string truncate_utf8(std::string_view text, size_t limit) {
  if (text.size() <= limit) return std::string(text);
  size_t cut = limit;
  // text[cut] is the first byte left out; if it continues a sequence, the
  // sequence it belongs to is left out whole.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut));
}

std::string format_plugin_log_line(std::string_view plugin, std::string_view task, std::string_view id, int level,
                                   std::string_view msg) {
  std::string line;
  line.reserve(64 + plugin.size() + task.size() + id.size() + std::min(msg.size(), kMaxLogMessageBytes));
  line += "plugin=";
  line += plugin;
  line += " task=";
  line += task;
  line += " id=";
  line += id;
  line += " level=";
  if (const char* name = level_name(level)) {
    line += name;
  } else {
    line += std::to_string(level);
  }
  line += " msg=\"";
  const bool cut = msg.size() > kMaxLogMessageBytes;
  for (unsigned char c : cut ? msg.substr(0, kMaxLogMessageBytes) : msg) {
    switch (c) {
      case '"': line += "\\\""; break;
      case '\\': line += "\\\\"; break;
      case '\n': line += "\\n"; break;
      case '\r': line += "\\r"; break;
      case '\t': line += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          line += buf;
        } else {
          line += static_cast<char>(c);
        }
    }
  }
  if (cut) line += "...(truncated)";
  line += '"';
  return line;
}

TaskRunner::TaskRunner(const std::string& plugin_dir, const PluginSettings& settings, const Clock& clock,
                       const std::atomic<bool>* stop_flag, size_t message_limit_bytes, const Logger* log)
    : clock_(&clock),
      stop_flag_(stop_flag),
      message_limit_bytes_(message_limit_bytes),
      log_(log),
      outside_task_log_(log),
      registry_(PluginRegistry::load_directory(plugin_dir, &kHostTable, settings)) {}

TaskRunner::OutsideTaskLog::OutsideTaskLog(const Logger* log) : log_(log) {
  if (log_ != nullptr) g_outside_task_log.store(log_);
}

TaskRunner::OutsideTaskLog::~OutsideTaskLog() {
  if (log_ != nullptr) {
    const Logger* expected = log_;
    g_outside_task_log.compare_exchange_strong(expected, nullptr);
  }
}

TaskRunResult TaskRunner::run(const TaskRequest& request) {
  TaskRunResult result;
  try {
    const TaskHandler* handler = registry_.find(request.name);
    if (handler == nullptr) {
      result.outcome = Outcome::no_handler;
      result.message = "no handler for task " + request.name;
      return result;
    }

    CallState state;
    state.log = log_;
    state.handler = handler;
    state.request = &request;
    state.clock = clock_;
    state.stop_flag = stop_flag_;
    state.message_limit_bytes = message_limit_bytes_;

    static const std::string kEmptyParams = "{}";
    const std::string& params = request.params.empty() ? kEmptyParams : request.params;
    ebats_task_ctx ctx{};
    ctx.struct_size = sizeof(ebats_task_ctx);
    ctx.id = request.id.c_str();
    ctx.name = request.name.c_str();
    ctx.topic = request.topic.c_str();
    ctx.trace = request.trace.empty() ? nullptr : request.trace.c_str();
    ctx.params = params.c_str();  // std::string guarantees params[params_len] == '\0'
    ctx.params_len = params.size();
    ctx.attempt = request.attempt;
    ctx.max_attempts = request.max_attempts;
    ctx.deadline_ms = request.deadline_ms;
    ctx.host_data = &state;

    int rc = EBATS_FAIL;
    std::optional<std::string> escaped;  // what escaped the plugin, if anything
    try {
      rc = handler->fn(&ctx, handler->plugin_state);
    } catch (const std::exception& e) {
      escaped = std::string("exception escaped the plugin: ") + e.what();
    } catch (...) {
      escaped = "unknown exception escaped the plugin";
    }

    if (escaped) {
      result.outcome = Outcome::fail;
      result.message = truncate_utf8(*escaped, message_limit_bytes_);
      return result;
    }
    if (state.message) result.message = std::move(*state.message);
    if (rc == EBATS_OK) {
      result.outcome = Outcome::ok;
    } else if (rc == EBATS_RETRY) {
      result.outcome = Outcome::retry;
      result.retry_after_ms = state.retry_after_ms;
      result.retry_limit = state.retry_limit;
    } else {
      result.outcome = Outcome::fail;
      if (!state.message) result.message = "handler returned " + std::to_string(rc);
    }
    return result;
  } catch (...) {
    // Only allocation failures get here; report something rather than throw.
    result = TaskRunResult{};
    result.outcome = Outcome::fail;
    result.message = "internal error while running the task (out of memory?)";
    return result;
  }
}

}  // namespace ebats
