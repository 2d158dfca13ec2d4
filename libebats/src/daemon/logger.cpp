#include "daemon/logger.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace ebats {
namespace {

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "info";
}

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

}  // namespace

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
    : component_(std::move(component)), min_level_(min_level), journal_(std::getenv("JOURNAL_STREAM") != nullptr) {}

void Logger::log(LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) const {
  if (level < min_level_) return;
  std::string line;
  line.reserve(128);
  if (journal_) {
    line.push_back('<');
    line.push_back(static_cast<char>('0' + journal_priority(level)));
    line.push_back('>');
  }
  line.append(level_name(level));
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
  line.push_back('\n');
  // One write(2) per line: lines of several processes never interleave.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace ebats
