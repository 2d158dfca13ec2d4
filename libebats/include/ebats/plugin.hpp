// ebats C++ plugin SDK: write task handlers in ordinary C++ on top of the C ABI
// of ebats/plugin.h.
//
// Header-only and compiled into the plugin (it needs only plugin.h and the
// standard library; Task::params() also needs RapidJSON, which the
// ebats::plugin_sdk CMake target provides). Nothing here links against
// libebats, and no C++ type or exception crosses into the host:
//
//   #include <ebats/plugin.hpp>
//   static void close_order(ebats::Task& t) {
//     const auto& p = t.params();
//     if (!p.HasMember("order_id")) throw ebats::Fail("order_id missing");       // -> EBATS_FAIL
//     if (db_busy()) throw ebats::Retry(std::chrono::seconds(30), "db busy");     // -> EBATS_RETRY
//     t.message("closed");                                                       // -> EBATS_OK
//   }
//   EBATS_PLUGIN("shop", "1.0.0", {"closeOrder", close_order},
//                {"noop", [](ebats::Task&) {}});
//
// Handlers are any callable `void(ebats::Task&)`. Returning normally means
// EBATS_OK. One trampoline turns what a handler throws into the C result:
//   ebats::Retry       -> EBATS_RETRY (+ retry_after / retry_limit) with why() as message
//   ebats::Fail        -> EBATS_FAIL with why() as message
//   std::exception     -> EBATS_FAIL with what() as message
//   anything else      -> EBATS_FAIL "unknown exception"
//
// Optional init hook, at most one per plugin (place it before EBATS_PLUGIN):
//   static bool setup(const ebats_host* host, std::string_view config_json) { ...; return true; }
//   EBATS_PLUGIN_INIT(setup)
// Returning false (or throwing) refuses the plugin.
//
// Build the plugin with -fvisibility=hidden (CMake: CXX_VISIBILITY_PRESET
// hidden); EBATS_PLUGIN exports only ebats_plugin_entry. Use EBATS_PLUGIN in
// exactly one source file of a plugin.
//
// Threads: the host calls handlers one at a time on one thread; a Task is
// valid only during its handler call.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ebats/plugin.h"

#if defined(__has_include)
#if __has_include(<rapidjson/document.h>)
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#define EBATS_PLUGIN_SDK_HAS_RAPIDJSON 1
#endif
#endif

// Everything declared below stays inside the plugin even if the plugin was
// not built with -fvisibility=hidden: two plugins never share SDK symbols.
#pragma GCC visibility push(hidden)

namespace ebats {

// Thrown by a handler: "try again later". Without a delay, the task
// registration's backoff applies.
class Retry : public std::exception {
 public:
  explicit Retry(std::string why) : why_(std::move(why)) {}
  Retry(std::chrono::milliseconds delay, std::string why) : why_(std::move(why)), delay_(delay) {}
  // Allow at most `n` retries in all for this task (the original's
  // RetryException count). Returns *this: `throw Retry(5s, "busy").max_retries(3);`
  Retry& max_retries(uint32_t n) {
    max_retries_ = n;
    return *this;
  }
  const char* what() const noexcept override { return why_.c_str(); }
  const std::string& why() const { return why_; }
  const std::optional<std::chrono::milliseconds>& delay() const { return delay_; }
  const std::optional<uint32_t>& max_retries() const { return max_retries_; }

 private:
  std::string why_;
  std::optional<std::chrono::milliseconds> delay_;
  std::optional<uint32_t> max_retries_;
};

// Thrown by a handler: permanent failure, no retry (the original's TaskException).
class Fail : public std::exception {
 public:
  explicit Fail(std::string why) : why_(std::move(why)) {}
  const char* what() const noexcept override { return why_.c_str(); }
  const std::string& why() const { return why_; }

 private:
  std::string why_;
};

enum class LogLevel : int {
  debug = EBATS_LOG_DEBUG,
  info = EBATS_LOG_INFO,
  warn = EBATS_LOG_WARN,
  error = EBATS_LOG_ERROR,
};

// One task execution: a view of the host's ebats_task_ctx plus the host
// services. Valid only during the handler call. Not copyable.
class Task {
 public:
  Task(const ebats_task_ctx* ctx, const ebats_host* host) : ctx_(ctx), host_(host) {}
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  // The task UUID: the same on every attempt, so use it as the idempotency key.
  std::string_view id() const { return view(ctx_->id); }
  std::string_view name() const { return view(ctx_->name); }
  std::string_view topic() const { return view(ctx_->topic); }
  std::string_view trace() const { return view(ctx_->trace); }  // empty when the task has none
  uint32_t attempt() const { return ctx_->attempt; }            // 0 on the first execution
  uint32_t max_attempts() const { return ctx_->max_attempts; }  // 1 + retries allowed
  int64_t deadline_ms() const { return ctx_->deadline_ms; }     // wall ms of the soft timeout
  // The params JSON object as text.
  std::string_view params_json() const {
    return ctx_->params == nullptr ? std::string_view("{}") : std::string_view(ctx_->params, ctx_->params_len);
  }

#ifdef EBATS_PLUGIN_SDK_HAS_RAPIDJSON
  // The params, parsed on the first call. Throws ebats::Fail if they are not
  // valid JSON (the host only sends JSON objects, so this means a bug).
  const rapidjson::Document& params() {
    if (!params_) {
      auto doc = std::make_unique<rapidjson::Document>();
      const std::string_view text = params_json();
      doc->Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
      if (doc->HasParseError()) {
        throw Fail(std::string("params are not valid JSON: offset ") + std::to_string(doc->GetErrorOffset()) + ": " +
                   rapidjson::GetParseError_En(doc->GetParseError()));
      }
      params_ = std::move(doc);
    }
    return *params_;
  }
#endif

  // Sets the result message of this execution (the host copies and may truncate it).
  void message(std::string_view text) { host_->set_result_message(ctx_, text.data(), text.size()); }
  // True once the soft timeout passed or the worker is shutting down: finish
  // soon (throw Retry to be run again later).
  bool should_stop() const { return host_->should_stop(ctx_) != 0; }
  // A log line attributed to the plugin and this task.
  void log(LogLevel level, std::string_view text) {
    const std::string line(text);  // the C ABI wants a NUL-terminated string
    host_->log(ctx_, static_cast<int>(level), line.c_str());
  }
  void log(int level, std::string_view text) { log(static_cast<LogLevel>(level), text); }

  // The raw C handles, for calls the SDK does not wrap.
  const ebats_task_ctx* handle() const { return ctx_; }
  const ebats_host* host() const { return host_; }

 private:
  static std::string_view view(const char* s) { return s == nullptr ? std::string_view() : std::string_view(s); }

  const ebats_task_ctx* ctx_;
  const ebats_host* host_;
#ifdef EBATS_PLUGIN_SDK_HAS_RAPIDJSON
  std::unique_ptr<rapidjson::Document> params_;
#endif
};

// Implementation details of EBATS_PLUGIN; not part of the SDK's interface.
namespace plugin_detail {

using InitFn = bool (*)(const ebats_host* host, std::string_view config_json);

// One {"task", callable} entry of EBATS_PLUGIN.
struct TaskEntry {
  std::string name;
  std::function<void(Task&)> fn;
};

// The plugin's table, descriptor and handlers. Built once, on the first call
// of ebats_plugin_entry(), and never changed or freed afterwards.
class Registration {
 public:
  Registration(const char* name, const char* version, std::initializer_list<TaskEntry> tasks, InitFn user_init_fn,
               ebats_handler_fn trampoline_fn, int (*init_fn)(const ebats_host*, const char*, size_t, void**),
               void (*shutdown_fn)(void*))
      : name_(name), version_(version), entries_(tasks), user_init_(user_init_fn) {
    defs_.reserve(entries_.size());
    for (const TaskEntry& e : entries_) defs_.push_back(ebats_task_def{e.name.c_str(), trampoline_fn});
    descriptor_ = ebats_plugin{sizeof(ebats_plugin), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, name_.c_str(), version_.c_str(),
                               defs_.data(), defs_.size(), init_fn, shutdown_fn};
  }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

  const ebats_plugin* descriptor() const { return &descriptor_; }
  InitFn user_init() const { return user_init_; }
  const TaskEntry* find(const char* task) const {
    if (task == nullptr) return nullptr;
    for (const TaskEntry& e : entries_) {
      if (e.name == task) return &e;
    }
    return nullptr;
  }

 private:
  std::string name_, version_;
  std::vector<TaskEntry> entries_;
  std::vector<ebats_task_def> defs_;
  InitFn user_init_;
  ebats_plugin descriptor_{};
};

// Per-process plugin state, created by init() and freed by shutdown().
struct State {
  const ebats_host* host;
  const Registration* registration;
};

// The host functions this SDK calls; a host older than that is refused.
constexpr size_t kHostFieldsNeeded = offsetof(ebats_host, should_stop) + sizeof(ebats_host::should_stop);

inline void log_outside_task(const ebats_host* host, const std::string& text) {
  if (host != nullptr && host->log != nullptr) host->log(nullptr, EBATS_LOG_ERROR, text.c_str());
}

inline int init(const Registration& reg, const ebats_host* host, const char* config, size_t len,
                void** plugin_state) noexcept {
  if (host == nullptr || plugin_state == nullptr) return 1;
  if (host->abi_major != EBATS_ABI_MAJOR || host->struct_size < kHostFieldsNeeded) return 2;
  try {
    auto state = std::make_unique<State>(State{host, &reg});
    if (InitFn user = reg.user_init()) {
      const std::string_view cfg = config == nullptr ? std::string_view("{}") : std::string_view(config, len);
      if (!user(host, cfg)) return 3;
    }
    *plugin_state = state.release();
    return 0;
  } catch (const std::exception& e) {
    try {
      log_outside_task(host, std::string("plugin init failed: ") + e.what());
    } catch (...) {
    }
    return 4;
  } catch (...) {
    log_outside_task(host, "plugin init failed: unknown exception");
    return 4;
  }
}

inline void shutdown(void* plugin_state) noexcept { delete static_cast<State*>(plugin_state); }

// Sets the message without allocating, so it is safe inside a catch block.
inline void set_message(const ebats_host* host, const ebats_task_ctx* ctx, const char* text) noexcept {
  host->set_result_message(ctx, text, std::strlen(text));
}

// The one handler of every task: finds the callable by ctx->name, runs it and
// turns whatever it throws into the C result. Nothing escapes.
inline int run_task(const ebats_task_ctx* ctx, void* plugin_state) noexcept {
  const auto* state = static_cast<const State*>(plugin_state);
  if (ctx == nullptr || state == nullptr) return EBATS_FAIL;
  const ebats_host* host = state->host;
  try {
    const TaskEntry* entry = state->registration->find(ctx->name);
    if (entry == nullptr) {
      set_message(host, ctx, "the plugin has no callable for this task name");
      return EBATS_FAIL;
    }
    Task task(ctx, host);
    entry->fn(task);
    return EBATS_OK;
  } catch (const Retry& r) {
    if (r.delay()) {
      const int64_t ms = r.delay()->count();
      host->retry_after(ctx, ms < 0 ? 0 : static_cast<uint64_t>(ms));
    }
    if (r.max_retries()) host->retry_limit(ctx, *r.max_retries());
    set_message(host, ctx, r.what());
    return EBATS_RETRY;
  } catch (const Fail& f) {
    set_message(host, ctx, f.what());
    return EBATS_FAIL;
  } catch (const std::exception& e) {
    set_message(host, ctx, e.what());
    return EBATS_FAIL;
  } catch (...) {
    set_message(host, ctx, "unknown exception");
    return EBATS_FAIL;
  }
}

// EBATS_PLUGIN_INIT support: the user hook is found by argument-dependent
// lookup when EBATS_PLUGIN's code is instantiated, so a plugin without the
// hook gets the fallback below.
struct InitHookTag {};
template <class Tag>
InitFn user_init_hook(Tag) {
  return nullptr;
}
template <class Tag>
InitFn find_user_init_hook() {
  return user_init_hook(Tag{});
}

}  // namespace plugin_detail
}  // namespace ebats

#pragma GCC visibility pop

// Optional: `bool fn(const ebats_host*, std::string_view config_json)`, called
// once per worker child before any handler. Place it before EBATS_PLUGIN.
#define EBATS_PLUGIN_INIT(FN)                                                           \
  namespace ebats {                                                                     \
  namespace plugin_detail {                                                             \
  [[maybe_unused]] static InitFn user_init_hook(InitHookTag) { return (FN); }           \
  }                                                                                     \
  }

// EBATS_PLUGIN("name", "version", {"task", callable}, ...): the plugin's task
// table, descriptor and its one exported symbol, ebats_plugin_entry().
// Use at namespace (global) scope, once per plugin.
#define EBATS_PLUGIN(NAME, VERSION, ...)                                                                    \
  namespace {                                                                                               \
  const ::ebats::plugin_detail::Registration& ebats_plugin_registration();                                 \
  int ebats_plugin_init_(const ebats_host* host, const char* config, size_t len, void** plugin_state) {    \
    return ::ebats::plugin_detail::init(ebats_plugin_registration(), host, config, len, plugin_state);     \
  }                                                                                                         \
  const ::ebats::plugin_detail::Registration& ebats_plugin_registration() {                                \
    static const ::ebats::plugin_detail::Registration registration(                                        \
        NAME, VERSION, {__VA_ARGS__},                                                                       \
        ::ebats::plugin_detail::find_user_init_hook<::ebats::plugin_detail::InitHookTag>(),                 \
        &::ebats::plugin_detail::run_task, &ebats_plugin_init_, &::ebats::plugin_detail::shutdown);        \
    return registration;                                                                                    \
  }                                                                                                         \
  }                                                                                                         \
  extern "C" EBATS_PLUGIN_EXPORT const ebats_plugin* ebats_plugin_entry(void) {                             \
    try {                                                                                                   \
      return ebats_plugin_registration().descriptor();                                                      \
    } catch (...) {                                                                                         \
      return nullptr;                                                                                       \
    }                                                                                                       \
  }
