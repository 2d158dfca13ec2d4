// The daemons' Logger: the text and JSON line formats, timestamps, journal
// detection, level filtering, and the plugins' log lines written through it.
#include <fcntl.h>
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/logger.h"
#include "ebats/clock.h"
#include "plugin/task_runner.h"
#include "support/scoped_env.h"

using ebats::LogFormat;
using ebats::Logger;
using ebats::LogLevel;
using ebats::LogOptions;
using ebats::test::ScopedEnv;

namespace {

constexpr int64_t kSomeTime = 1796549121123;  // 2026-12-06T09:25:21.123Z

const std::regex kTimestamp(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");


// Redirects fd 2 into a temp file while alive; text() restores it and returns what was written.
class StderrCapture {
 public:
  StderrCapture() {
    char tmpl[] = "/tmp/ebats-logger-test-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    path_ = tmpl;
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~StderrCapture() {
    restore();
    ::unlink(path_.c_str());
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  std::string text() {
    restore();
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }
  std::string path_;
  int saved_ = -1;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// Parses one line (without its newline) as a JSON object, strictly (UTF-8 validated).
rapidjson::Document parse_object(const std::string& line) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(line.c_str(), line.size());
  INFO(line);
  REQUIRE_FALSE(d.HasParseError());
  REQUIRE(d.IsObject());
  return d;
}

std::string member(const rapidjson::Document& d, const char* key) {
  INFO(key);
  REQUIRE(d.HasMember(key));
  REQUIRE(d[key].IsString());
  return std::string(d[key].GetString(), d[key].GetStringLength());
}

std::string stat_of_stderr() {
  struct stat st {};
  REQUIRE(::fstat(STDERR_FILENO, &st) == 0);
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

}  // namespace

TEST_CASE("logger: timestamps are RFC 3339 UTC with milliseconds", "[logger]") {
  CHECK(ebats::format_log_time(0) == "1970-01-01T00:00:00.000Z");
  CHECK(ebats::format_log_time(kSomeTime) == "2026-12-06T09:25:21.123Z");
  CHECK(ebats::format_log_time(951782400007) == "2000-02-29T00:00:00.007Z");
  CHECK(ebats::format_log_time(-1) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("logger: levels and formats parse from their names only", "[logger]") {
  CHECK(ebats::parse_log_level("debug") == LogLevel::debug);
  CHECK(ebats::parse_log_level("info") == LogLevel::info);
  CHECK(ebats::parse_log_level("warn") == LogLevel::warn);
  CHECK(ebats::parse_log_level("error") == LogLevel::error);
  CHECK_FALSE(ebats::parse_log_level("warning"));
  CHECK_FALSE(ebats::parse_log_level("INFO"));
  CHECK_FALSE(ebats::parse_log_level(""));
  CHECK(ebats::parse_log_format("text") == LogFormat::text);
  CHECK(ebats::parse_log_format("json") == LogFormat::json);
  CHECK_FALSE(ebats::parse_log_format("JSON"));
  CHECK_FALSE(ebats::parse_log_format("logfmt"));
  for (LogLevel l : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error}) {
    CHECK(ebats::parse_log_level(ebats::log_level_name(l)) == l);
  }
}

TEST_CASE("logger: text lines start with a timestamp when stderr is not the journal", "[logger]") {
  const ScopedEnv no_journal("JOURNAL_STREAM", nullptr);
  const Logger log("ntask-worker@demo");
  CHECK_FALSE(log.journal());
  const std::string line =
      log.format(LogLevel::warn, "task dead-lettered", {{"task", "send mail"}, {"id", "a\"b\nc\x01"}}, kSomeTime);
  CHECK(line ==
        "2026-12-06T09:25:21.123Z warn ntask-worker@demo \"task dead-lettered\" task=\"send mail\" "
        "id=\"a\\\"b\\nc\\x01\"\n");
}

TEST_CASE("logger: journal detection compares JOURNAL_STREAM with stderr's device and inode", "[logger]") {
  SECTION("stderr is the stream JOURNAL_STREAM names: priority prefix, no timestamp") {
    StderrCapture capture;  // a known stderr to name
    const ScopedEnv journal("JOURNAL_STREAM", stat_of_stderr().c_str());
    CHECK(ebats::stderr_is_journal());
    const Logger log("scheduler");
    capture.text();
    CHECK(log.journal());
    CHECK(log.format(LogLevel::warn, "x", {}, kSomeTime) == "<4>warn scheduler x\n");
    CHECK(log.format(LogLevel::error, "x", {}, kSomeTime) == "<3>error scheduler x\n");
    CHECK(log.format(LogLevel::debug, "x", {}, kSomeTime) == "<7>debug scheduler x\n");
  }
  SECTION("inherited but redirected elsewhere: timestamps") {
    const ScopedEnv journal("JOURNAL_STREAM", "8:123456789");
    CHECK_FALSE(ebats::stderr_is_journal());
    const Logger log("scheduler");
    CHECK_FALSE(log.journal());
    CHECK(log.format(LogLevel::info, "x", {}, kSomeTime) == "2026-12-06T09:25:21.123Z info scheduler x\n");
  }
  SECTION("not a dev:inode pair") {
    const ScopedEnv journal("JOURNAL_STREAM", "yes");
    CHECK_FALSE(ebats::stderr_is_journal());
  }
}

TEST_CASE("logger: JSON lines are one valid object with ts, level, daemon, msg and the fields", "[logger]") {
  const ScopedEnv no_journal("JOURNAL_STREAM", nullptr);
  const Logger log("ntask-worker@demo", LogOptions{LogLevel::info, LogFormat::json});
  const std::string hostile = std::string("a\"b\\c\nd\te\x01\x1f\x7f", 12) + "\xff\xfe" + "\xc3\xa9";
  const std::string line = log.format(LogLevel::error, "task dead-lettered\n",
                                      {{"task", "shop.close"}, {"id", hostile}, {"level", "fake"}, {"msg", "m"}},
                                      kSomeTime);
  REQUIRE(line.back() == '\n');
  const std::string body = line.substr(0, line.size() - 1);
  // No control character stays raw: one line is one object.
  for (unsigned char c : body) CHECK(c >= 0x20);
  const rapidjson::Document d = parse_object(body);
  CHECK(member(d, "ts") == "2026-12-06T09:25:21.123Z");
  CHECK(member(d, "level") == "error");
  CHECK(member(d, "daemon") == "ntask-worker@demo");
  CHECK(member(d, "msg") == "task dead-lettered\n");
  CHECK(member(d, "task") == "shop.close");
  // Invalid UTF-8 becomes U+FFFD; the rest comes back byte for byte.
  CHECK(member(d, "id") == std::string("a\"b\\c\nd\te\x01\x1f\x7f", 12) + "\xef\xbf\xbd\xef\xbf\xbd\xc3\xa9");
  // Fields named like the logger's own keys do not make a second "level" or "msg".
  CHECK(member(d, "field.level") == "fake");
  CHECK(member(d, "field.msg") == "m");
  CHECK(d.MemberCount() == 8);
}

TEST_CASE("logger: lines below the level are not written, the others are, one write each", "[logger]") {
  const ScopedEnv no_journal("JOURNAL_STREAM", nullptr);
  StderrCapture capture;
  const Logger log("dtask-worker@t", LogOptions{LogLevel::warn, LogFormat::json});
  CHECK_FALSE(log.enabled(LogLevel::info));
  CHECK(log.enabled(LogLevel::error));
  log.debug("d");
  log.info("i", {{"k", "v"}});
  log.warn("w", {{"k", "v"}});
  log.error("e");
  const std::vector<std::string> lines = lines_of(capture.text());
  REQUIRE(lines.size() == 2);
  const rapidjson::Document w = parse_object(lines[0]);
  CHECK(member(w, "msg") == "w");
  CHECK(member(w, "k") == "v");
  CHECK(std::regex_match(member(w, "ts"), kTimestamp));
  CHECK(member(parse_object(lines[1]), "level") == "error");
}

TEST_CASE("logger: plugin lines name the plugin, and in a task its id, task and topic", "[logger][plugin]") {
  const ScopedEnv no_journal("JOURNAL_STREAM", nullptr);
  ebats::FakeClock clock;
  StderrCapture capture;
  const Logger log("ntask-worker@default", LogOptions{LogLevel::info, LogFormat::json});
  {
    // init_fails.so logs from init() (no task context) and refuses to start.
    ebats::TaskRunner bad(EBATS_TEST_BAD_PLUGIN_DIR, ebats::PluginSettings{}, clock, nullptr, 1024, &log);
  }
  {
    ebats::TaskRunner runner(EBATS_TEST_PLUGIN_DIR, ebats::PluginSettings{}, clock, nullptr, 1024, &log);
    ebats::TaskRequest r;
    r.id = "0b7f4c7e-9a51-4d8e-8a6f-2f1f2d1f9c11";
    r.name = "log";
    r.topic = "default";
    r.params = R"({"text":"careful\nnow"})";
    CHECK(runner.run(r).outcome == ebats::Outcome::ok);
  }
  bool init_seen = false, task_seen = false;
  for (const std::string& line : lines_of(capture.text())) {
    const rapidjson::Document d = parse_object(line);
    if (member(d, "msg") == "init_fails: refusing to start on purpose") {
      init_seen = true;
      CHECK(member(d, "plugin") == "init_fails");
      CHECK(member(d, "level") == "error");
    }
    if (member(d, "msg") == "careful\nnow") {
      task_seen = true;
      CHECK(member(d, "plugin") == "test_tasks");
      CHECK(member(d, "task") == "log");
      CHECK(member(d, "id") == "0b7f4c7e-9a51-4d8e-8a6f-2f1f2d1f9c11");
      CHECK(member(d, "topic") == "default");
      CHECK(member(d, "level") == "warn");
      CHECK(member(d, "daemon") == "ntask-worker@default");
    }
  }
  CHECK(init_seen);
  CHECK(task_seen);
}

TEST_CASE("logger: without a Logger, init() lines still name their plugin", "[logger][plugin]") {
  ebats::FakeClock clock;
  StderrCapture capture;
  { ebats::TaskRunner bad(EBATS_TEST_BAD_PLUGIN_DIR, ebats::PluginSettings{}, clock, nullptr, 1024); }
  CHECK_THAT(capture.text(), Catch::Contains("plugin=init_fails task=- id=- level=error "
                                             "msg=\"init_fails: refusing to start on purpose\""));
}
