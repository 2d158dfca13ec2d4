#include "daemon/logger.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "envelope/json_io.h"

namespace ebats {
namespace {

// syslog priorities as journald reads them from a "<N>" prefix.
int journal_priority(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return 7;
    case LogLevel::info: return 6;
    case LogLevel::warn: return 4;
    case LogLevel::error: return 3;
  }
  return 6;
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (unsigned char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) return true;
  }
  return false;
}

// Keys of the JSON object that the logger writes itself; a field of the same
// name is written as "field.<key>" so no object has a key twice.
bool reserved_json_key(std::string_view key) {
  return key == "ts" || key == "level" || key == "daemon" || key == "msg";
}

int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::optional<LogLevel> parse_log_level(std::string_view s) {
  for (LogLevel l : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error}) {
    if (s == log_level_name(l)) return l;
  }
  return std::nullopt;
}

std::optional<LogFormat> parse_log_format(std::string_view s) {
  for (LogFormat f : {LogFormat::text, LogFormat::json}) {
    if (s == log_format_name(f)) return f;
  }
  return std::nullopt;
}

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "info";
}

const char* log_format_name(LogFormat format) {
  return format == LogFormat::json ? "json" : "text";
}

bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr || *env == '\0') return false;
  uintmax_t dev = 0, ino = 0;
  char tail = 0;
  if (std::sscanf(env, "%ju:%ju%c", &dev, &ino, &tail) != 2) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<uintmax_t>(st.st_dev) == dev && static_cast<uintmax_t>(st.st_ino) == ino;
}

std::string format_log_time(int64_t wall_ms) {
  int64_t secs = wall_ms / 1000;
  int64_t ms = wall_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm {};
  ::gmtime_r(&t, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

void append_log_value(std::string& out, std::string_view value) {
  if (!needs_quotes(value)) {
    out.append(value);
    return;
  }
  out.push_back('"');
  for (unsigned char c : value) {
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out.append(buf);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

Logger::Logger(std::string component, LogLevel min_level)
    : Logger(std::move(component), LogOptions{min_level, LogFormat::text}) {}

Logger::Logger(std::string component, const LogOptions& options)
    : component_(std::move(component)), options_(options), journal_(stderr_is_journal()) {}

std::string Logger::format(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields,
                           int64_t wall_ms) const {
  std::string line;
  line.reserve(160);
  if (journal_) {
    line.push_back('<');
    line.push_back(static_cast<char>('0' + journal_priority(level)));
    line.push_back('>');
  }
  if (options_.format == LogFormat::json) {
    json::StringSink sink(&line);
    json::Writer w(sink);
    w.StartObject();
    w.Key("ts");
    json::write_string(w, format_log_time(wall_ms));
    w.Key("level");
    w.String(log_level_name(level));
    w.Key("daemon");
    json::write_string(w, component_);
    w.Key("msg");
    json::write_string(w, msg);
    for (const auto& [key, value] : fields) {
      if (reserved_json_key(key)) {
        json::write_string(w, "field." + std::string(key));
      } else {
        json::write_string(w, key);
      }
      json::write_string(w, value);
    }
    w.EndObject();
  } else {
    if (!journal_) {
      line.append(format_log_time(wall_ms));
      line.push_back(' ');
    }
    line.append(log_level_name(level));
    line.push_back(' ');
    line.append(component_);
    line.push_back(' ');
    append_log_value(line, msg);
    for (const auto& [key, value] : fields) {
      line.push_back(' ');
      line.append(key);
      line.push_back('=');
      append_log_value(line, value);
    }
  }
  line.push_back('\n');
  return line;
}

void Logger::log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) const {
  if (!enabled(level)) return;
  const std::string line = format(level, msg, fields, wall_now_ms());
  // One write(2) per line: lines of several processes never interleave.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to report a failing stderr
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace ebats
