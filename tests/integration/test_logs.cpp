// The daemons' logs as a collector reads them: with --log-format json (or
// $EBATS_LOG_FORMAT) every line a worker and its children write is one JSON
// object; lines about a task carry its id, task name and topic, and a plugin's
// init() lines name the plugin. --log-level drops the less severe lines.
#include <rapidjson/document.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "integration/harness.h"
#include "support/scoped_env.h"

using ebats::test::TestSystem;
using ebats::test::plugin_dir_with;
namespace fs = std::filesystem;
using ebats::test::ScopedEnv;

namespace {



// The lines of `log` that log_of() did not add (its "--- file" headers).
std::vector<std::string> log_lines(const std::string& log) {
  std::vector<std::string> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("--- ", 0) == 0) continue;
    out.push_back(line);
  }
  return out;
}

rapidjson::Document parse_object(const std::string& line) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(line.c_str(), line.size());
  INFO(line);
  REQUIRE_FALSE(d.HasParseError());
  REQUIRE(d.IsObject());
  return d;
}

std::string member(const rapidjson::Document& d, const char* key) {
  if (!d.HasMember(key) || !d[key].IsString()) return "<missing>";
  return std::string(d[key].GetString(), d[key].GetStringLength());
}

}  // namespace

TEST_CASE("a worker logging JSON writes only JSON lines and names the task and the plugin", "[integration]") {
  const std::string dir =
      plugin_dir_with({EBATS_TEST_PLUGIN_DIR "/test_tasks.so", EBATS_TEST_BAD_PLUGIN_DIR "/init_fails.so"});
  {
    const ScopedEnv json("EBATS_LOG_FORMAT", "json");
    TestSystem sys("  e:\n    - {task: fail, topic: t}\n", "  t: {processes: 1}\n", "", dir);
    sys.start_all();
    REQUIRE(sys.publisher().publish("e", R"({"secret":"do-not-log-me"})").ok());
    const auto dead = sys.wait_for_dead_letters(1);
    const std::string id = dead.front().letter.id;
    const std::string log = sys.log_of("ntask");
    INFO(log);
    bool dead_lettered = false, init_line = false;
    for (const std::string& line : log_lines(log)) {
      const rapidjson::Document d = parse_object(line);
      CHECK(member(d, "daemon") == "ntask-worker@t");
      CHECK(member(d, "ts") != "<missing>");
      CHECK(line.find("do-not-log-me") == std::string::npos);
      if (member(d, "msg") == "task dead-lettered") {
        dead_lettered = true;
        CHECK(member(d, "id") == id);
        CHECK(member(d, "task") == "fail");
        CHECK(member(d, "topic") == "t");
        CHECK(member(d, "level") == "warn");
      }
      if (member(d, "msg") == "init_fails: refusing to start on purpose") {
        init_line = true;
        CHECK(member(d, "plugin") == "init_fails");
        CHECK(member(d, "level") == "error");
      }
    }
    CHECK(dead_lettered);
    CHECK(init_line);
    for (const std::string& line : log_lines(sys.log_of("scheduler"))) parse_object(line);
  }
  fs::remove_all(dir);
}

TEST_CASE("daemons: --log-level and --log-format on the command line, and bad values refused", "[integration]") {
  // Topic u has a registration no plugin handles: its worker logs why and exits 1 at start.
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n  g:\n    - {task: nobody_handles_this, topic: u}\n");
  const std::string worker = std::string(EBATS_BIN_DIR) + "/ebats-ntask-worker";
  std::string out;
  SECTION("json at info: the warnings and the refusal (error), each a JSON line") {
    REQUIRE(sys.run({worker, "--config", sys.config_path(), "--topic", "u", "--log-format", "json"}, &out) == 1);
    INFO(out);
    bool warn = false, error = false;
    for (const std::string& line : log_lines(out)) {
      const rapidjson::Document d = parse_object(line);
      warn = warn || member(d, "level") == "warn";
      error = error || member(d, "level") == "error";
    }
    CHECK(warn);
    CHECK(error);
  }
  SECTION("the command line's level with the environment's format: only error lines, as JSON") {
    REQUIRE(sys.run({worker, "--config", sys.config_path(), "--topic", "u", "--log-level", "error"}, &out,
                    {{"EBATS_LOG_FORMAT", "json"}, {"JOURNAL_STREAM", "0:0"}}) == 1);
    INFO(out);
    const std::vector<std::string> lines = log_lines(out);
    REQUIRE_FALSE(lines.empty());
    for (const std::string& line : lines) CHECK(member(parse_object(line), "level") == "error");
  }
  SECTION("text: timestamped when stderr is not the journal") {
    REQUIRE(sys.run({worker, "--config", sys.config_path(), "--topic", "u", "--log-format", "text"}, &out,
                    {{"EBATS_LOG_FORMAT", "json"}, {"JOURNAL_STREAM", "0:0"}}) == 1);
    INFO(out);
    const std::vector<std::string> lines = log_lines(out);
    REQUIRE_FALSE(lines.empty());
    for (const std::string& line : lines) {
      if (line.rfind(sys.config_path() + ":", 0) == 0) continue;  // the config's diagnostics, as a compiler writes them
      CHECK(line.size() > 25);
      CHECK(line.substr(0, 2) == "20");
      CHECK(line.substr(10, 1) == "T");
      CHECK(line.substr(23, 2) == "Z ");
    }
  }
  SECTION("unknown values are usage errors") {
    CHECK(sys.run({worker, "--config", sys.config_path(), "--topic", "t", "--log-format", "xml"}, &out) == 2);
    CHECK_THAT(out, Catch::Contains("--log-format") && Catch::Contains("text, json"));
    CHECK(sys.run({worker, "--config", sys.config_path(), "--topic", "t"}, &out, {{"EBATS_LOG_LEVEL", "loud"}}) == 2);
    CHECK_THAT(out, Catch::Contains("$EBATS_LOG_LEVEL"));
  }
}
