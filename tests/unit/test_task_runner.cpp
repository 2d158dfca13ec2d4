// TaskRunner and the C++ SDK: return codes and exceptions become outcomes,
// host functions (message, retry hints, should_stop, log) behave as promised.
// Crashing and hanging tasks are not run in-process (the worker tests do that).
#include <atomic>
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ebats/clock.h"
#include "plugin/task_runner.h"

using ebats::FakeClock;
using ebats::Outcome;
using ebats::TaskRequest;
using ebats::TaskRunner;
using ebats::TaskRunResult;

namespace {

const std::string kGoodDir = EBATS_TEST_PLUGIN_DIR;
const std::string kRawDir = std::string(EBATS_BINARY_DIR) + "/tests/plugins/raw";
constexpr int64_t kSevenDaysMs = int64_t{7} * 24 * 3'600'000;

TaskRequest request(const std::string& task, const std::string& params = "{}", uint32_t attempt = 0) {
  TaskRequest r;
  r.id = "0b7f4c7e-9a51-4d8e-8a6f-2f1f2d1f9c11";
  r.name = task;
  r.topic = "default";
  r.params = params;
  r.attempt = attempt;
  r.max_attempts = 6;
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A temporary file path, removed at scope exit.
class TempFile {
 public:
  TempFile() {
    char tmpl[] = "/tmp/ebats-runner-test-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path_ = tmpl;
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Redirects fd 2 into a temp file while alive; text() restores it and returns what was written.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    const int fd = ::open(file_.path().c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    REQUIRE(fd >= 0);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~StderrCapture() { restore(); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  std::string text() {
    restore();
    return read_file(file_.path());
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }
  TempFile file_;
  int saved_ = -1;
};

struct Fixture {
  FakeClock clock;
  std::atomic<bool> stop{false};
  TaskRunner runner{kGoodDir, ebats::PluginSettings{}, clock, &stop, 1024};
};

}  // namespace

TEST_CASE("runner: loads the good plugins", "[plugin]") {
  Fixture f;
  CHECK(f.runner.registry().errors().empty());
  CHECK(f.runner.registry().plugins().size() == 2);
}

TEST_CASE("runner: a handler that returns normally is ok, and every execution is recorded", "[plugin]") {
  Fixture f;
  TempFile record;
  REQUIRE(::setenv("EBATS_TEST_RECORD", record.path().c_str(), 1) == 0);
  const TaskRunResult first = f.runner.run(request("noop"));
  const TaskRunResult second = f.runner.run(request("record", "{}", 3));
  ::unsetenv("EBATS_TEST_RECORD");
  CHECK(first.outcome == Outcome::ok);
  CHECK(first.message.empty());
  CHECK_FALSE(first.retry_after_ms.has_value());
  CHECK(second.outcome == Outcome::ok);
  CHECK(read_file(record.path()) ==
        "0b7f4c7e-9a51-4d8e-8a6f-2f1f2d1f9c11 0 noop\n"
        "0b7f4c7e-9a51-4d8e-8a6f-2f1f2d1f9c11 3 record\n");
}

TEST_CASE("runner: the handler sees every field of the request", "[plugin]") {
  Fixture f;
  TaskRequest r = request("describe", R"({"a":1})", 2);
  r.topic = "shop";
  SECTION("with a trace") {
    r.trace = "trace-42";
    const TaskRunResult res = f.runner.run(r);
    CHECK(res.outcome == Outcome::ok);
    CHECK(res.message == r.id + "|describe|shop|trace-42|2/6|{\"a\":1}");
  }
  SECTION("without a trace, and empty params become {}") {
    r.params.clear();
    const TaskRunResult res = f.runner.run(r);
    CHECK(res.message == r.id + "|describe|shop||2/6|{}");
  }
}

TEST_CASE("runner: ebats::Retry carries its delay, max_retries and message", "[plugin]") {
  Fixture f;
  SECTION("delay from params on the first attempt, ok afterwards") {
    const TaskRunResult res = f.runner.run(request("retry_once", R"({"retry_after_ms":750})"));
    CHECK(res.outcome == Outcome::retry);
    CHECK(res.message == "not yet");
    CHECK(res.retry_after_ms == std::optional<int64_t>(750));
    CHECK_FALSE(res.retry_limit.has_value());
    CHECK(f.runner.run(request("retry_once", R"({"retry_after_ms":750})", 1)).outcome == Outcome::ok);
  }
  SECTION("default delay") {
    CHECK(f.runner.run(request("retry_once")).retry_after_ms == std::optional<int64_t>(200));
  }
  SECTION("delay and max_retries") {
    const TaskRunResult res = f.runner.run(request("retry_limited"));
    CHECK(res.outcome == Outcome::retry);
    CHECK(res.message == "limited");
    CHECK(res.retry_after_ms == std::optional<int64_t>(1500));
    CHECK(res.retry_limit == std::optional<uint32_t>(2));
  }
  SECTION("no delay: the registration's backoff applies") {
    const TaskRunResult res = f.runner.run(request("retry_plain"));
    CHECK(res.outcome == Outcome::retry);
    CHECK(res.message == "no delay");
    CHECK_FALSE(res.retry_after_ms.has_value());
    CHECK_FALSE(res.retry_limit.has_value());
  }
}

TEST_CASE("runner: ebats::Fail and other exceptions fail the task with their message", "[plugin]") {
  Fixture f;
  const TaskRunResult fail = f.runner.run(request("fail"));
  CHECK(fail.outcome == Outcome::fail);
  CHECK(fail.message == "permanent failure");
  const TaskRunResult thrown = f.runner.run(request("throw"));
  CHECK(thrown.outcome == Outcome::fail);
  CHECK(thrown.message == "boom");
}

TEST_CASE("runner: params that are not JSON make Task::params() fail the task", "[plugin]") {
  Fixture f;
  const TaskRunResult res = f.runner.run(request("message", "not json"));
  CHECK(res.outcome == Outcome::fail);
  CHECK_THAT(res.message, Catch::StartsWith("params are not valid JSON"));
}

TEST_CASE("runner: an unknown task has no handler", "[plugin]") {
  Fixture f;
  const TaskRunResult res = f.runner.run(request("closeOrder"));
  CHECK(res.outcome == Outcome::no_handler);
  CHECK(res.message == "no handler for task closeOrder");
}

TEST_CASE("runner: the result message is copied and truncated at a UTF-8 boundary", "[plugin]") {
  FakeClock clock;
  // "hello " + three 2-byte characters = 12 bytes.
  const std::string params = R"({"name":"ééé"})";
  SECTION("within the limit") {
    TaskRunner runner(kGoodDir, ebats::PluginSettings{}, clock, nullptr, 12);
    CHECK(runner.run(request("message", params)).message == "hello ééé");
  }
  SECTION("the limit falls between characters") {
    TaskRunner runner(kGoodDir, ebats::PluginSettings{}, clock, nullptr, 10);
    CHECK(runner.run(request("message", params)).message == "hello éé");
  }
  SECTION("the limit falls inside a character") {
    TaskRunner runner(kGoodDir, ebats::PluginSettings{}, clock, nullptr, 9);
    CHECK(runner.run(request("message", params)).message == "hello é");
  }
  SECTION("the C plugin's message") {
    TaskRunner runner(kGoodDir, ebats::PluginSettings{}, clock, nullptr, 1024);
    const TaskRunResult res = runner.run(request("c_echo", R"({"order_id":7})"));
    CHECK(res.outcome == Outcome::ok);
    CHECK(res.message == R"({"order_id":7})");
  }
}

TEST_CASE("runner: truncate_utf8 never splits a character", "[plugin]") {
  using ebats::truncate_utf8;
  CHECK(truncate_utf8("abc", 5) == "abc");
  CHECK(truncate_utf8("abc", 0).empty());
  const std::string euro = "a\xE2\x82\xAC";  // 'a' + 3-byte €
  CHECK(truncate_utf8(euro, 4) == euro);
  CHECK(truncate_utf8(euro, 3) == "a");
  CHECK(truncate_utf8(euro, 2) == "a");
  const std::string emoji = "\xF0\x9F\x98\x80z";  // 4-byte 😀 + 'z'
  CHECK(truncate_utf8(emoji, 4) == "\xF0\x9F\x98\x80");
  CHECK(truncate_utf8(emoji, 3).empty());
}

TEST_CASE("runner: should_stop after the deadline (FakeClock) and when the stop flag is set", "[plugin]") {
  Fixture f;
  TaskRequest r = request("check_stop");
  SECTION("no deadline") {
    CHECK(f.runner.run(r).message == "stop=0");
  }
  SECTION("deadline") {
    r.deadline_ms = f.clock.wall_now() + 1000;
    CHECK(f.runner.run(r).message == "stop=0");
    f.clock.advance(std::chrono::milliseconds(999));
    CHECK(f.runner.run(r).message == "stop=0");
    f.clock.advance(std::chrono::milliseconds(1));
    CHECK(f.runner.run(r).message == "stop=1");
  }
  SECTION("stop flag") {
    f.stop = true;
    CHECK(f.runner.run(r).message == "stop=1");
    f.stop = false;
    CHECK(f.runner.run(r).message == "stop=0");
  }
  SECTION("a cooperative task returns early with a retry") {
    TaskRequest sleep = request("sleep", R"({"ms":600000})");
    sleep.deadline_ms = f.clock.wall_now() - 1;
    const TaskRunResult res = f.runner.run(sleep);
    CHECK(res.outcome == Outcome::retry);
    CHECK(res.message == "stopped");
  }
}

TEST_CASE("runner: plugin log lines go to stderr, attributed and escaped", "[plugin]") {
  Fixture f;
  StderrCapture capture;
  const TaskRunResult res = f.runner.run(request("log", R"({"text":"a \"b\"\nc\u0001"})"));
  const std::string err = capture.text();
  CHECK(res.outcome == Outcome::ok);
  CHECK(err ==
        "plugin=test_tasks task=log id=0b7f4c7e-9a51-4d8e-8a6f-2f1f2d1f9c11 level=warn "
        "msg=\"a \\\"b\\\"\\nc\\x01\"\n");
}

TEST_CASE("runner: format_plugin_log_line escapes control characters and names unknown levels", "[plugin]") {
  CHECK(ebats::format_plugin_log_line("p", "t", "i", EBATS_LOG_ERROR, "x\ty\\z\r\x7f") ==
        "plugin=p task=t id=i level=error msg=\"x\\ty\\\\z\\r\\x7f\"");
  CHECK(ebats::format_plugin_log_line("p", "t", "i", 9, "") == "plugin=p task=t id=i level=9 msg=\"\"");
}

TEST_CASE("runner: plugins without the SDK: return codes, retry hints, escaping exceptions", "[plugin]") {
  FakeClock clock;
  TaskRunner runner(kRawDir, ebats::PluginSettings{}, clock, nullptr, 1024);
  REQUIRE(runner.registry().find("raw_throw_std") != nullptr);
  SECTION("std::exception escaping the C ABI") {
    const TaskRunResult res = runner.run(request("raw_throw_std"));
    CHECK(res.outcome == Outcome::fail);
    CHECK(res.message == "exception escaped the plugin: raw boom");
  }
  SECTION("anything else escaping the C ABI") {
    const TaskRunResult res = runner.run(request("raw_throw_int"));
    CHECK(res.outcome == Outcome::fail);
    CHECK(res.message == "unknown exception escaped the plugin");
  }
  SECTION("an unknown return code is a failure") {
    const TaskRunResult res = runner.run(request("raw_return_9"));
    CHECK(res.outcome == Outcome::fail);
    CHECK(res.message == "handler returned 9");
  }
  SECTION("retry_after is clamped to 7 days; retry_limit is passed on") {
    const TaskRunResult res = runner.run(request("raw_retry_hints"));
    CHECK(res.outcome == Outcome::retry);
    CHECK(res.retry_after_ms == std::optional<int64_t>(kSevenDaysMs));
    CHECK(res.retry_limit == std::optional<uint32_t>(4));
  }
  SECTION("retry hints are dropped when the handler succeeds") {
    const TaskRunResult res = runner.run(request("raw_ok_after_hints"));
    CHECK(res.outcome == Outcome::ok);
    CHECK_FALSE(res.retry_after_ms.has_value());
  }
  SECTION("the settings reach EBATS_PLUGIN_INIT") {
    TaskRunner with_config(kRawDir, {{"init_order", R"({"x":1})"}}, clock, nullptr, 1024);
    CHECK(with_config.run(request("init_order_config")).message == R"(config={"x":1})");
  }
}

TEST_CASE("runner: the example shop plugins (C++ and C) do what docs/PLUGINS.md says", "[plugin]") {
  FakeClock clock;
  TaskRunner runner(std::string(EBATS_BINARY_DIR) + "/plugins", ebats::PluginSettings{}, clock, nullptr, 1024);
  INFO((runner.registry().errors().empty() ? std::string() : runner.registry().errors()[0].message));
  REQUIRE(runner.registry().errors().empty());
  CHECK(runner.registry().task_names() ==
        std::vector<std::string>{"closeOrder", "closeOrderC", "orderAsync", "sendReceipt", "virtualShipping"});

  CHECK(runner.run(request("closeOrder", R"({"order_id":42})")).message == "order 42 closed");
  CHECK(runner.run(request("closeOrderC", R"({"order_id":42})")).message == "order 42 closed");
  CHECK(runner.run(request("orderAsync", R"({"order_id":"A-7"})")).message == "synced order A-7");
  CHECK(runner.run(request("sendReceipt", R"({"order_id":42})")).outcome == Outcome::ok);

  const std::string busy = R"({"order_id":42,"warehouse_busy":true})";
  const TaskRunResult first = runner.run(request("virtualShipping", busy, 0));
  CHECK(first.outcome == Outcome::retry);
  CHECK(first.message == "warehouse busy");
  CHECK(first.retry_after_ms == std::optional<int64_t>(2000));
  const TaskRunResult second = runner.run(request("virtualShipping", busy, 1));
  CHECK(second.outcome == Outcome::ok);
  CHECK(second.message == "shipped order 42");

  for (const char* task : {"closeOrder", "closeOrderC", "virtualShipping", "orderAsync", "sendReceipt"}) {
    INFO(task);
    const TaskRunResult res = runner.run(request(task, R"({"customer":1})"));
    CHECK(res.outcome == Outcome::fail);
    CHECK(res.message == "order_id missing");
  }
}
