// libFuzzer target: load_config_from_string() on any text (the YAML config, docs/CONFIG.md).
//
// Beyond "no crash, no sanitizer report, no exception" (the loader promises
// never to throw):
//  - a config comes back exactly when there is no error;
//  - every diagnostic names the file and has a message;
//  - what a loaded config holds obeys the rules the loader checks: event,
//    task and topic names are valid, delays and timeouts lie in
//    [0, kMaxDuration], retry limits and worker counts are at least 1.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ebats/config.h"
#include "ebats/duration.h"
#include "ebats/envelope.h"
#include "fuzz_check.h"

namespace {

constexpr const char* kPath = "/fuzz/ebats.yaml";  // never read: the text comes from the fuzzer

bool is_duration(int64_t ms) { return ms >= 0 && ms <= ebats::kMaxDuration.count(); }

void check_diagnostic(const ebats::Diagnostic& d) {
  FUZZ_CHECK(d.file == kPath);
  FUZZ_CHECK(!d.message.empty());
  FUZZ_CHECK(d.line >= 0 && d.column >= 0);
  FUZZ_CHECK(d.to_string().find(kPath) == 0);
}

void check_config(const ebats::Config& c) {
  FUZZ_CHECK(c.path == kPath);
  FUZZ_CHECK(!c.broker_url.empty());
  FUZZ_CHECK(is_duration(c.default_timeout_ms));
  for (const auto& [event, registrations] : c.events) {
    FUZZ_CHECK(ebats::is_valid_event_name(event));
    for (const ebats::Registration& r : registrations) {
      FUZZ_CHECK(ebats::is_valid_task_name(r.task));
      FUZZ_CHECK(ebats::is_valid_topic(r.topic));
      FUZZ_CHECK(is_duration(r.delay_ms));
      FUZZ_CHECK(is_duration(r.timeout_ms));
      FUZZ_CHECK(r.retry.jitter_pct <= ebats::kMaxJitterPct);
      for (int64_t ms : r.retry.backoff_ms) FUZZ_CHECK(is_duration(ms));
    }
  }
  for (const auto& [topic, w] : c.workers) {
    FUZZ_CHECK(ebats::is_valid_topic(topic));
    FUZZ_CHECK(w.processes >= 1);
    FUZZ_CHECK(is_duration(w.timeout_ms) && is_duration(w.kill_after_ms));
    FUZZ_CHECK(is_duration(w.drain_timeout_ms) && is_duration(w.start_timeout_ms));
  }
  for (const std::string& topic : c.topics()) FUZZ_CHECK(ebats::is_valid_topic(topic));
  size_t settings_bytes = 0;
  for (const auto& [plugin, json] : c.plugin_settings) settings_bytes += plugin.size() + json.size();
  FUZZ_CHECK(settings_bytes <= ebats::kMaxPluginSettingsBytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  const ebats::ConfigLoad load = ebats::load_config_from_string(yaml, kPath);
  FUZZ_CHECK((load.config != nullptr) == load.errors.empty());
  for (const ebats::Diagnostic& d : load.errors) check_diagnostic(d);
  for (const ebats::Diagnostic& d : load.warnings) check_diagnostic(d);
  if (load.config) check_config(*load.config);
  FUZZ_CHECK(load.errors.empty() || !load.error_text().empty());
  return 0;
}
