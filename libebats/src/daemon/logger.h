// Logger: one line per event on stderr, for journald, a terminal or a collector.
//
// Text format: `<ts> <level> <daemon> msg key=value key="quoted value"`, where
// <ts> is RFC 3339 UTC with milliseconds (2026-12-06T09:45:21.123Z). Values
// are quoted when they contain spaces or quotes; control characters are
// escaped, so hostile task names cannot forge log lines. When stderr is the
// journal (JOURNAL_STREAM names the device and inode of stderr, as systemd
// sets it), the timestamp is left out (the journal keeps its own) and each
// line gets a `<N>` priority prefix instead.
// JSON format: one object per line, {"ts":…,"level":…,"daemon":…,"msg":…,
// then the fields as strings}, written with RapidJSON (invalid UTF-8 becomes
// U+FFFD); the `<N>` prefix is kept when stderr is the journal.
// A Logger is built in main() and passed by reference; it is thread-compatible
// (one line is one write(2), so lines from several processes never interleave).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace ebats {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };
enum class LogFormat { text, json };

struct LogOptions {
  LogLevel level = LogLevel::info;  // lines below it are not written
  LogFormat format = LogFormat::text;
};

using LogField = std::pair<std::string_view, std::string_view>;

// "debug", "info", "warn", "error" / "text", "json"; nullopt for anything else.
std::optional<LogLevel> parse_log_level(std::string_view s);
std::optional<LogFormat> parse_log_format(std::string_view s);
const char* log_level_name(LogLevel level);
const char* log_format_name(LogFormat format);

// True when stderr is the journal: $JOURNAL_STREAM is "<dev>:<inode>" of
// stderr (a child whose stderr was redirected elsewhere inherits the variable
// but not the stream, hence the comparison).
bool stderr_is_journal();

// `wall_ms` (ms since the epoch) as RFC 3339 UTC: "2026-12-06T09:45:21.123Z".
std::string format_log_time(int64_t wall_ms);

class Logger {
 public:
  // `component` names the process, e.g. "ntask-worker@demo".
  explicit Logger(std::string component, LogLevel min_level = LogLevel::info);
  Logger(std::string component, const LogOptions& options);

  void log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {}) const;
  void debug(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(LogLevel::debug, msg, f); }
  void info(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(LogLevel::info, msg, f); }
  void warn(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(LogLevel::warn, msg, f); }
  void error(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(LogLevel::error, msg, f); }

  bool enabled(LogLevel level) const { return level >= options_.level; }
  const std::string& component() const { return component_; }
  const LogOptions& options() const { return options_; }
  bool journal() const { return journal_; }

  // The line log() writes (newline included) for an event at `wall_ms`,
  // whatever the level filter says. Exposed for tests.
  std::string format(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields,
                     int64_t wall_ms) const;

 private:
  std::string component_;
  LogOptions options_;
  bool journal_;
};

// Appends `value` to `out`, quoted and escaped if needed (exposed for tests).
void append_log_value(std::string& out, std::string_view value);

}  // namespace ebats
