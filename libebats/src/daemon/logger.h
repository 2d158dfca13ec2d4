// Logger: one line per event on stderr, for journald or a terminal.
//
// Format (text): `<level> <daemon>[<topic>] msg key=value key="quoted value"`.
// Values are quoted when they contain spaces or quotes; control characters
// are escaped, so hostile task names cannot forge log lines. When stderr is
// the journal (JOURNAL_STREAM set), each line gets a `<N>` priority prefix.
// A Logger is built in main() and passed by reference; it is thread-compatible
// (one line is one write(2), so lines from several processes never interleave).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace ebats {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

using LogField = std::pair<std::string_view, std::string_view>;

class Logger {
 public:
  // `component` names the process, e.g. "ntask-worker@demo".
  explicit Logger(std::string component, LogLevel min_level = LogLevel::info);

  void log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {}) const;
  void debug(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(LogLevel::debug, msg, f); }
  void info(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(LogLevel::info, msg, f); }
  void warn(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(LogLevel::warn, msg, f); }
  void error(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(LogLevel::error, msg, f); }

  const std::string& component() const { return component_; }

 private:
  std::string component_;
  LogLevel min_level_;
  bool journal_;
};

// Appends `value` to `out`, quoted and escaped if needed (exposed for tests).
void append_log_value(std::string& out, std::string_view value);

}  // namespace ebats
