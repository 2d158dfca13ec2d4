// docs/LIMITS.md stays true: each row that names a constant in its third
// column has its bold number compared with that constant (compiled in where
// a header exposes it, read from the source file where it is private to one),
// and where it is cheap, with what the code does at the limit and one past it.
#include <unistd.h>

#include <algorithm>
#include <sys/un.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "config/yaml_json.h"
#include "ebats/config.h"
#include "ebats/duration.h"
#include "ebats/envelope.h"
#include "ebats/plugin.h"
#include "envelope/json_io.h"
#include "scheduler/event_router.h"
#include "supervisor/frame.h"
#include "supervisor/worker_child.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& rel) {
  std::ifstream in(fs::path(EBATS_SOURCE_DIR) / rel);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(' ');
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(' ') - b + 1);
}

// The rows of every table of docs/LIMITS.md, split into cells.
std::vector<std::vector<std::string>> limit_rows() {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(slurp("docs/LIMITS.md"));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("| ", 0) != 0 || line.rfind("|---", 0) == 0) continue;
    std::vector<std::string> cells;
    size_t start = 1;
    for (size_t bar = line.find('|', start); bar != std::string::npos; bar = line.find('|', start)) {
      cells.push_back(trim(line.substr(start, bar - start)));
      start = bar + 1;
    }
    if (cells.size() >= 3) rows.push_back(cells);
  }
  return rows;
}

// The first row whose third column ("In the code", "Where") starts with `name`.
std::vector<std::string> row_of(const std::string& name) {
  for (const auto& cells : limit_rows()) {
    if (cells[2].rfind("`" + name + "`", 0) == 0) return cells;
  }
  FAIL("docs/LIMITS.md has no row naming `" << name << "` in its third column");
  return {};
}

// The bold number of a row's value column, in bytes, milliseconds or units.
uint64_t bold_value(const std::vector<std::string>& cells) {
  static const std::regex bold(R"(\*\*([0-9][0-9,]*) ?(B|KiB|MiB|GiB|ms|s|m|h|d)?\*\*)");
  std::smatch m;
  INFO("row: " << cells[0] << " | " << cells[1]);
  REQUIRE(std::regex_search(cells[1], m, bold));
  std::string digits = m[1].str();
  digits.erase(std::remove(digits.begin(), digits.end(), ','), digits.end());
  uint64_t v = std::stoull(digits);
  const std::string unit = m[2].str();
  if (unit == "KiB") v <<= 10;
  if (unit == "MiB") v <<= 20;
  if (unit == "GiB") v <<= 30;
  if (unit == "s") v *= 1000;
  if (unit == "m") v *= 60'000;
  if (unit == "h") v *= 3'600'000;
  if (unit == "d") v *= 86'400'000;
  return v;
}

uint64_t documented(const std::string& name) { return bold_value(row_of(name)); }

// Evaluates the integer expressions constants are written with:
// "4096", "16 * 1024", "size_t{4} << 20", "int64_t{7} * 24 * 3'600'000".
class Expr {
 public:
  explicit Expr(std::string text) {
    text.erase(std::remove(text.begin(), text.end(), '\''), text.end());
    text = std::regex_replace(text, std::regex(R"(\w+\{(\d+)\})"), "$1");  // int64_t{7} -> 7
    text = std::regex_replace(text, std::regex(R"((\d+)(?:ull|ul|u|ll|l))"), "$1");
    s_ = text;
  }
  uint64_t value() {
    const uint64_t v = shift();
    skip();
    if (p_ != s_.size()) FAIL("cannot evaluate '" << s_ << "'");
    return v;
  }

 private:
  void skip() {
    while (p_ < s_.size() && s_[p_] == ' ') ++p_;
  }
  bool eat(const std::string& op) {
    skip();
    if (s_.compare(p_, op.size(), op) != 0) return false;
    p_ += op.size();
    return true;
  }
  uint64_t shift() {
    uint64_t v = sum();
    while (eat("<<")) v <<= sum();
    return v;
  }
  uint64_t sum() {
    uint64_t v = product();
    while (eat("+")) v += product();
    return v;
  }
  uint64_t product() {
    uint64_t v = atom();
    while (eat("*")) v *= atom();
    return v;
  }
  uint64_t atom() {
    if (eat("(")) {
      const uint64_t v = shift();
      if (!eat(")")) FAIL("unbalanced '" << s_ << "'");
      return v;
    }
    skip();
    const size_t start = p_;
    while (p_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[p_]))) ++p_;
    if (start == p_) FAIL("cannot evaluate '" << s_ << "' at " << p_);
    return std::stoull(s_.substr(start, p_ - start));
  }
  std::string s_;
  size_t p_ = 0;
};

// The value of `constexpr T name = EXPR;` in a source file.
uint64_t source_constant(const std::string& rel, const std::string& name) {
  const std::string text = slurp(rel);
  std::smatch m;
  INFO(rel << ": " << name);
  REQUIRE(std::regex_search(text, m, std::regex("constexpr [\\w:]+ " + name + " = ([^;]+);")));
  return Expr(m[1].str()).value();
}

// The first capture of `pattern` in a source file, as a number.
uint64_t source_number(const std::string& rel, const std::string& pattern) {
  const std::string text = slurp(rel);
  std::smatch m;
  INFO(rel << ": " << pattern);
  REQUIRE(std::regex_search(text, m, std::regex(pattern)));
  return std::stoull(m[1].str());
}

bool config_loads(const std::string& yaml) {
  const std::string full = yaml.find("broker:") == std::string::npos
                               ? "broker: {url: \"sqlite:///tmp/ebats-limits.db\"}\n" + yaml
                               : yaml;
  const ebats::ConfigLoad load =
      ebats::load_config_from_string(full + "\nplugins: {dir: /tmp}\n", "/tmp/ebats-limits.yaml");
  return load.errors.empty();
}

// `template` with N in place of "{}" loads, and with N + 1 does not.
void check_config_maximum(const std::string& yaml_template, uint64_t n) {
  const auto with = [&](uint64_t v) {
    std::string y = yaml_template;
    y.replace(y.find("{}"), 2, std::to_string(v));
    return y;
  };
  INFO(with(n));
  CHECK(config_loads(with(n)));
  CHECK_FALSE(config_loads(with(n + 1)));
}

std::string nested(size_t depth) {
  std::string s;
  for (size_t i = 1; i < depth; ++i) s += "{\"a\":";
  s += "{}";
  for (size_t i = 1; i < depth; ++i) s += "}";
  return s;
}

}  // namespace

TEST_CASE("limits doc: message sizes match the code", "[docs][limits]") {
  CHECK(documented("Config::max_message_bytes") == ebats::Config{}.max_message_bytes);

  const uint64_t smallest = documented("kMinMessageBytes");
  CHECK(smallest == source_constant("libebats/src/config/config_loader.cpp", "kMinMessageBytes"));
  CHECK(config_loads("limits: {max_message_bytes: " + std::to_string(smallest) + "B}"));
  CHECK_FALSE(config_loads("limits: {max_message_bytes: " + std::to_string(smallest - 1) + "B}"));

  // task_overhead_bound(): "return 1024 + 24 * reg.retry.backoff_ms.size();"
  const std::vector<std::string> row = row_of("task_overhead_bound");
  const std::string publisher = "libebats/src/publisher/publisher.cpp";
  const std::string bound = R"(task_overhead_bound\(const Registration& reg\) \{ return (\d+) \+ (\d+) \*)";
  CHECK(bold_value(row) == source_number(publisher, bound));
  const std::string text = slurp(publisher);
  std::smatch m;
  REQUIRE(std::regex_search(text, m, std::regex(bound)));
  CHECK_THAT(row[1], Catch::Contains("+ " + m[2].str() + " B per backoff entry"));
}

TEST_CASE("limits doc: params nesting matches kMaxParamsNesting and the publisher's check", "[docs][limits]") {
  const uint64_t depth = documented("kMaxParamsNesting");
  CHECK(depth == ebats::json::kMaxParamsNesting);
  CHECK(ebats::normalize_params(nested(depth), 1 << 20).ok());
  CHECK_FALSE(ebats::normalize_params(nested(depth + 1), 1 << 20).ok());
}

TEST_CASE("limits doc: name lengths and the trace match the code", "[docs][limits]") {
  const size_t name = documented("is_valid_event_name");
  CHECK(ebats::is_valid_event_name(std::string(name, 'a')));
  CHECK_FALSE(ebats::is_valid_event_name(std::string(name + 1, 'a')));
  CHECK(ebats::is_valid_task_name(std::string(name, 'a')));
  CHECK_FALSE(ebats::is_valid_task_name(std::string(name + 1, 'a')));
  const size_t topic = documented("is_valid_topic");
  CHECK(ebats::is_valid_topic(std::string(topic, 'a')));
  CHECK_FALSE(ebats::is_valid_topic(std::string(topic + 1, 'a')));

  CHECK(documented("parse_source_bindings") ==
        source_number("libebats/src/config/config_loader.cpp", R"(key->size\(\) > (\d+))"));
  CHECK(documented("kMaxTraceBytes") == source_constant("libebats/src/envelope/envelope_fields.cpp", "kMaxTraceBytes"));
  CHECK(documented("kMaxHistory") == ebats::kMaxHistory);
  CHECK(documented("kMaxHistoryMessage") == ebats::kMaxHistoryMessage);
}

TEST_CASE("limits doc: the config file's size and ranges match the loader", "[docs][limits]") {
  const uint64_t file_limit = documented("kMaxConfigBytes");
  CHECK(file_limit == source_constant("libebats/src/config/config_loader.cpp", "kMaxConfigBytes"));
  {
    // A valid config padded with a comment to exactly the limit loads; one byte more is refused.
    ebats::test::TempDir dir;
    std::string yaml = "broker: {url: \"sqlite:///tmp/ebats-limits.db\"}\nplugins: {dir: /tmp}\n#";
    yaml.append(file_limit - yaml.size() - 1, 'x');
    yaml += "\n";
    REQUIRE(yaml.size() == file_limit);
    const ebats::ConfigLoad at = ebats::load_config(dir.write("at.yaml", yaml));
    CHECK(at.errors.empty());
    const ebats::ConfigLoad past = ebats::load_config(dir.write("past.yaml", yaml + "\n"));
    REQUIRE(past.errors.size() == 1);
    CHECK_THAT(past.errors[0].message, Catch::Contains("larger than"));
  }
  CHECK(documented("kMaxPluginSettingsBytes") == ebats::kMaxPluginSettingsBytes);
  CHECK(documented("kMaxYamlJsonDepth") == ebats::kMaxYamlJsonDepth);

  const std::string loader = "libebats/src/config/config_loader.cpp";
  const uint64_t retries = documented("kMaxRetries");
  CHECK(retries == source_constant(loader, "kMaxRetries"));
  check_config_maximum("defaults: {retry: {max: {}}}", retries);
  const uint64_t processes = documented("kMaxProcesses");
  CHECK(processes == source_constant(loader, "kMaxProcesses"));
  check_config_maximum("workers: {demo: {processes: {}}}", processes);
  const uint64_t prefetch = documented("kMaxPrefetch");
  CHECK(prefetch == source_constant(loader, "kMaxPrefetch"));
  check_config_maximum("workers: {demo: {prefetch: {}}}", prefetch);
  const uint64_t batch = documented("kMaxClaimBatch");
  CHECK(batch == source_constant(loader, "kMaxClaimBatch"));
  check_config_maximum("broker: {url: \"sqlite:///tmp/ebats-limits.db\", sqlite: {claim_batch: {}}}", batch);
  const uint64_t levels = documented("kMaxDelayLevels");
  CHECK(levels == source_constant(loader, "kMaxDelayLevels"));
  check_config_maximum("broker: {url: \"amqp://ebats@localhost:5672/\", amqp: {delay_levels: {}}}", levels);
  CHECK(documented("kMaxJitterPct") == ebats::kMaxJitterPct);
  CHECK(config_loads("defaults: {retry: {backoff: {exponential: 1s, max: 1h, jitter: " +
                     std::to_string(ebats::kMaxJitterPct) + "%}}}"));
  CHECK_FALSE(config_loads("defaults: {retry: {backoff: {exponential: 1s, max: 1h, jitter: " +
                           std::to_string(ebats::kMaxJitterPct + 1) + "%}}}"));
  const uint64_t deliveries = documented("kMaxDeliveryLimit");
  CHECK(deliveries == source_constant(loader, "kMaxDeliveryLimit"));
  check_config_maximum("broker: {url: \"amqp://ebats@localhost:5672/\", amqp: {delivery_limit: {}}}", deliveries);
  const uint64_t keep_rows = documented("kMaxResultsKeepRows");
  CHECK(keep_rows == source_constant(loader, "kMaxResultsKeepRows"));
  check_config_maximum("results: {keep_rows: {}}", keep_rows);
  CHECK_FALSE(config_loads("results: {keep_rows: 0}"));
  const uint64_t keep_ms = documented("kMinResultsKeepMs");
  CHECK(keep_ms == source_constant(loader, "kMinResultsKeepMs"));
  CHECK(config_loads("results: {keep: " + std::to_string(keep_ms) + "ms}"));
  CHECK_FALSE(config_loads("results: {keep: " + std::to_string(keep_ms - 1) + "ms}"));
}

TEST_CASE("limits doc: durations match kMaxDuration and the clamps", "[docs][limits]") {
  const uint64_t longest = documented("kMaxDuration");
  CHECK(longest == static_cast<uint64_t>(ebats::kMaxDuration.count()));
  CHECK(ebats::parse_duration(ebats::format_duration(ebats::Millis(longest))).ok());
  CHECK_FALSE(ebats::parse_duration(ebats::format_duration(ebats::Millis(longest + 1))).ok());

  const uint64_t retry_after = documented("kMaxRetryAfterMs");
  CHECK(retry_after == source_constant("libebats/src/config/retry.cpp", "kMaxRetryAfterMs"));
  CHECK(retry_after == source_constant("libebats/src/plugin/task_runner.cpp", "kMaxRetryAfterMs"));
  CHECK(documented("WorkerConfig::start_timeout_ms") == static_cast<uint64_t>(ebats::WorkerConfig{}.start_timeout_ms));
  CHECK(documented("kMaxEventClockSkewMs") == static_cast<uint64_t>(ebats::kMaxEventClockSkewMs));
}

TEST_CASE("limits doc: the child frame limit is max_message_bytes plus the documented margin", "[docs][limits]") {
  const uint64_t margin = documented("kFrameMarginBytes");
  CHECK(margin == ebats::kFrameMarginBytes);  // the worker (parent) and daemon_cli (the child's --max-frame) use it
  CHECK(ebats::WorkerChildOptions{}.max_frame_bytes == ebats::Config{}.max_message_bytes + margin);

  // The length counts the type byte and the payload: a frame of exactly the limit passes.
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::string frames;
  ebats::FieldWriter(frames, ebats::FrameType::result).str(std::string(95, 'x')).finish();  // 1 + 4 + 95 = 100
  ebats::FieldWriter(frames, ebats::FrameType::result).str(std::string(96, 'x')).finish();  // 101
  REQUIRE(ebats::write_all(fds[1], frames));
  ::close(fds[1]);
  ebats::FrameBuffer in(100);
  while (in.read_from(fds[0]) > 0) {
  }
  ::close(fds[0]);
  CHECK(in.next().has_value());
  CHECK_FALSE(in.next().has_value());
  CHECK(in.oversized());
}

TEST_CASE("limits doc: worker, plugin and ebatsctl bounds match the code", "[docs][limits]") {
  CHECK(documented("Config::result_message_bytes") == ebats::Config{}.result_message_bytes);
  const std::string worker = "libebats/src/supervisor/worker.cpp";
  CHECK(documented("kMaxResultParams") == source_constant(worker, "kMaxResultParams"));
  CHECK(documented("kMaxHeaderText") ==
        source_constant("libebats/src/broker/amqp/amqp_messages.h", "kMaxHeaderText"));
  CHECK(documented("kMaxLogMessageBytes") ==
        source_constant("libebats/src/plugin/task_runner.cpp", "kMaxLogMessageBytes"));
  CHECK(documented("kMaxAutoHeldPerChild") == source_constant(worker, "kMaxAutoHeldPerChild"));
  CHECK(documented("kMaxTasksPerPlugin") ==
        source_constant("libebats/src/plugin/plugin_registry.cpp", "kMaxTasksPerPlugin"));
  CHECK(documented("kDeadListRows") == source_constant("tools/ebatsctl/dead_commands.cpp", "kDeadListRows"));

  // The loader's kV1DescriptorSize is this expression; the docs say it is sizeof(ebats_plugin).
  const size_t v1 = offsetof(ebats_plugin, shutdown) + sizeof(ebats_plugin::shutdown);
  CHECK(documented("kV1DescriptorSize") == v1);
  CHECK(v1 == sizeof(ebats_plugin));
  const std::string refusal = "descriptor struct_size 8, need at least " + std::to_string(v1);
  CHECK_THAT(slurp("docs/PLUGINS.md"), Catch::Contains(refusal));
  CHECK_THAT(slurp("libebats/src/plugin/plugin_registry.cpp"),
             Catch::Contains("offsetof(ebats_plugin, shutdown) + sizeof(ebats_plugin::shutdown)"));
}

TEST_CASE("limits doc: the wake-up bounds match the code", "[docs][limits]") {
  const std::string wake = "libebats/src/broker/sqlite/sqlite_wake.cpp";
  CHECK_THAT(slurp(wake), Catch::Contains("kMaxWakePathBytes = sizeof(sockaddr_un::sun_path) - 1;"));
  CHECK(documented("kMaxWakePathBytes") == sizeof(sockaddr_un::sun_path) - 1);
  CHECK(documented("kSignalledLookEvery") ==
        source_number("libebats/src/supervisor/worker.cpp", R"(constexpr milliseconds kSignalledLookEvery\{(\d+)\};)"));
  CHECK_THAT(slurp("libebats/src/scheduler/scheduler.cpp"),
             Catch::Contains("std::max(poll_interval, std::chrono::milliseconds(1000))"));
}

TEST_CASE("limits doc: the metrics server's bounds match the code", "[docs][limits]") {
  const std::string server = "libebats/src/metrics/http_server.cpp";
  CHECK(documented("kHeaderLimit") == source_constant(server, "kHeaderLimit"));
  CHECK(documented("kBodyLimit") == source_constant(server, "kBodyLimit"));
  CHECK(documented("kRequestTimeout") == 1000 * source_number(server, R"(kRequestTimeout\{(\d+)\})"));
  CHECK(documented("kMaxConnections") == source_constant(server, "kMaxConnections"));
  CHECK(documented("kMaxSeriesPerFamily") ==
        source_constant("libebats/src/metrics/registry.cpp", "kMaxSeriesPerFamily"));
}

TEST_CASE("limits doc: the lease recovery bound follows from the worker's renewal and scan intervals",
          "[docs][limits]") {
  std::vector<std::string> row;
  for (const auto& cells : limit_rows()) {
    if (cells[0].rfind("A killed SQLite worker", 0) == 0) row = cells;
  }
  REQUIRE_FALSE(row.empty());
  const std::string worker = "libebats/src/supervisor/worker.cpp";
  const uint64_t renew = source_number(worker, R"(next_extend_ = now \+ lease_ / (\d+);)");
  const uint64_t scan = source_number(worker, R"(next_recover_ = now \+ lease_ / (\d+);)");
  CHECK_THAT(row[1], Catch::Contains("every `lease`/" + std::to_string(renew)));
  CHECK_THAT(row[1], Catch::Contains("every `lease`/" + std::to_string(scan)));
  // Renewed just before the kill: it runs out `lease` later; a scan may have
  // run just before that, and the next comes lease/scan later.
  REQUIRE(scan == 2);
  CHECK_THAT(row[1], Catch::Contains("1.5 × `broker.sqlite.lease`"));
  CHECK_THAT(row[1], Catch::Contains("(45 s with the default 30 s)"));
  CHECK(ebats::SqliteConfig{}.lease_ms == 30'000);
}
