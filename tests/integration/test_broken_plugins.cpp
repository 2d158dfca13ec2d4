// Broken plugins: refused with a clear message, without stopping the good
// ones; a plugin that crashes in init() keeps the worker up and loses nothing.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "integration/harness.h"

using ebats::test::TestSystem;
using ebats::test::plugin_dir_with;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {


}  // namespace

TEST_CASE("refused plugins are logged by file while the good ones run their tasks", "[integration]") {
  const std::string dir = plugin_dir_with({EBATS_TEST_PLUGIN_DIR "/test_tasks.so",
                                           EBATS_TEST_BAD_PLUGIN_DIR "/bad_abi.so",
                                           EBATS_TEST_BAD_PLUGIN_DIR "/missing_symbol.so"});
  {
    TestSystem sys("  e:\n    - {task: record, topic: t}\n", "  t: {processes: 1}\n", "", dir);
    sys.start_all();
    REQUIRE(sys.publisher().publish("e", "{}").ok());
    REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 1; }));
    const std::string log = sys.log_of("ntask");
    CHECK(log.find("bad_abi.so") != std::string::npos);
    CHECK(log.find("abi_major 99, need 1") != std::string::npos);
    CHECK(log.find("missing_symbol.so") != std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("a plugin crashing in init keeps the worker up, the tasks queued, until the plugin is fixed",
          "[integration]") {
  const std::string dir = plugin_dir_with({EBATS_TEST_CRASH_PLUGIN_DIR "/init_crash.so"});
  {
    TestSystem sys("  e:\n    - {task: record, topic: t}\n", "  t: {processes: 1}\n", "", dir);
    sys.start_scheduler();
    auto& worker = sys.start_ntask();
    REQUIRE(sys.publisher().publish("e", "{}").ok());
    REQUIRE(TestSystem::wait_until(
        [&] { return sys.log_of("ntask").find("child died before it was ready") != std::string::npos; }));
    CHECK(worker.running());
    CHECK(sys.executions().empty());
    // The task waits, pending, not lost and not dead-lettered.
    CHECK(sys.dead_letters().empty());
    // The operator replaces the broken plugin; the next child start loads the fix.
    fs::remove(dir + "/init_crash.so");
    fs::copy_file(EBATS_TEST_PLUGIN_DIR "/test_tasks.so", dir + "/test_tasks.so");
    ::chmod((dir + "/test_tasks.so").c_str(), 0755);
    REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 1; }, 90s));
    CHECK(worker.running());
  }
  fs::remove_all(dir);
}

TEST_CASE("a plugin hanging in init is killed after start_timeout and retried, the tasks queued", "[integration]") {
  // It used to stall the worker silently: no log line, its topic's tasks
  // pending for as long as the hang lasted.
  const std::string dir = plugin_dir_with({EBATS_TEST_CRASH_PLUGIN_DIR "/init_hangs.so"});
  {
    TestSystem sys("  e:\n    - {task: record, topic: t}\n", "  t: {processes: 1, start_timeout: 1s}\n", "", dir);
    sys.start_scheduler();
    auto& worker = sys.start_ntask();
    REQUIRE(sys.publisher().publish("e", "{}").ok());
    REQUIRE(TestSystem::wait_until([&] {
      const std::string log = sys.log_of("ntask");
      return log.find("child not ready in time: a plugin's init hangs?") != std::string::npos &&
             log.find("child died before it was ready") != std::string::npos;
    }));
    CHECK(sys.log_of("ntask").find("workers.t.start_timeout") != std::string::npos);
    CHECK(worker.running());
    CHECK(sys.executions().empty());
    CHECK(sys.dead_letters().empty());
    // The fixed plugin is loaded by the next child start.
    fs::remove(dir + "/init_hangs.so");
    fs::copy_file(EBATS_TEST_PLUGIN_DIR "/test_tasks.so", dir + "/test_tasks.so");
    ::chmod((dir + "/test_tasks.so").c_str(), 0755);
    REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 1; }, 90s));
    CHECK(worker.running());
  }
  fs::remove_all(dir);
}
