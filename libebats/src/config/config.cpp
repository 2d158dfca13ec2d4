// The plain methods of Config, Diagnostic and ConfigLoad (loading is in config_loader.cpp).
#include "ebats/config.h"

#include <algorithm>
#include <set>

namespace ebats {
namespace {
constexpr std::string_view kSqliteScheme = "sqlite://";
}  // namespace

std::string Diagnostic::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line);
    if (column > 0) out += ':' + std::to_string(column);
  }
  out += severity == Severity::error ? ": error: " : ": warning: ";
  out += message;
  return out;
}

WorkerConfig Config::worker(const std::string& topic) const {
  const auto it = workers.find(topic);
  if (it != workers.end()) return it->second;
  WorkerConfig defaults;
  defaults.timeout_ms = default_timeout_ms;
  return defaults;
}

std::string Config::sqlite_path() const {
  if (broker_url.compare(0, kSqliteScheme.size(), kSqliteScheme) != 0) return {};
  return broker_url.substr(kSqliteScheme.size());
}

bool Config::is_amqp() const {
  return broker_url.rfind("amqp://", 0) == 0 || broker_url.rfind("amqps://", 0) == 0;
}

std::vector<std::string> Config::topics() const {
  std::set<std::string> names;
  for (const auto& [topic, settings] : workers) names.insert(topic);
  for (const auto& [event, registrations] : events) {
    for (const Registration& r : registrations) names.insert(r.topic);
  }
  for (const auto& [name, source] : sources) {
    if (!source.topic.empty()) names.insert(source.topic);
  }
  return {names.begin(), names.end()};
}

int64_t Config::longest_task_ms() const {
  const WorkerConfig fallback = worker("");  // the defaults
  int64_t longest = fallback.timeout_ms + fallback.kill_after_ms;
  for (const std::string& topic : topics()) {
    const WorkerConfig w = worker(topic);
    longest = std::max(longest, w.timeout_ms + w.kill_after_ms);
  }
  for (const auto& [event, registrations] : events) {
    for (const Registration& r : registrations) {
      if (r.timeout_ms > 0) longest = std::max(longest, r.timeout_ms + worker(r.topic).kill_after_ms);
    }
  }
  return longest;
}

int64_t Config::amqp_max_unclaimed_ms() const {
  return std::max<int64_t>(1'000, (amqp.consumer_timeout_ms - amqp.hold_ms() - longest_task_ms()) / 2);
}

const std::vector<Registration>* Config::registrations(const std::string& event) const {
  const auto it = events.find(event);
  return it == events.end() ? nullptr : &it->second;
}

std::string ConfigLoad::error_text() const {
  std::string out;
  for (const Diagnostic& d : errors) {
    if (!out.empty()) out += '\n';
    out += d.to_string();
  }
  return out;
}

}  // namespace ebats
