// Reload (SIGHUP, `systemctl reload`): the daemons read the config file
// again; workers replace their children one at a time, so a plugin deployed
// by rename runs from then on, and no task is lost or run twice on the way.
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "integration/harness.h"

using ebats::test::TestSystem;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// A fresh plugin folder (mode 0755) with the test plugin and version 1 of versioned.so.
std::string versioned_plugin_dir() {
  const std::string dir = ebats::test::plugin_dir_with(
      {EBATS_TEST_PLUGIN_DIR "/test_tasks.so", EBATS_TEST_VERSIONED_PLUGIN_DIR "/versioned_v1.so"});
  fs::rename(dir + "/versioned_v1.so", dir + "/versioned.so");
  return dir;
}

// Deploy by rename, as docs/OPERATIONS.md says: a complete file, then one rename over the old.
void deploy(const std::string& from, const std::string& dir, const std::string& name) {
  const std::string tmp = dir + "/." + name + ".new";
  fs::copy_file(from, tmp);
  ::chmod(tmp.c_str(), 0644);
  fs::rename(tmp, dir + "/" + name);
}

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

int duplicates(const std::vector<ebats::test::Execution>& ex) {
  std::map<std::pair<std::string, uint32_t>, int> runs;
  for (const auto& e : ex) runs[{e.id, e.attempt}]++;
  int d = 0;
  for (const auto& [k, v] : runs) d += v - 1;
  return d;
}

}  // namespace

TEST_CASE("a reload rolls the children onto a plugin deployed by rename, losing and repeating no task",
          "[integration]") {
  const std::string dir = versioned_plugin_dir();
  {
    TestSystem sys("  v:\n    - {task: versioned, topic: t}\n", "  t: {processes: 2}\n", "", dir);
    sys.start_scheduler();
    auto& worker = sys.start_ntask();
    constexpr int kDuring = 600;
    std::atomic<int> published{0};
    std::thread producer([&] {
      for (int i = 0; i < kDuring; ++i) {
        if (!sys.publisher().publish("v", "{\"i\":" + std::to_string(i) + "}").ok()) return;
        published++;
        std::this_thread::sleep_for(2ms);
      }
    });
    REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 100; }));
    deploy(EBATS_TEST_VERSIONED_PLUGIN_DIR "/versioned_v2.so", dir, "versioned.so");
    worker.signal(SIGHUP);
    REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("children replaced") != std::string::npos; }));
    producer.join();
    REQUIRE(published == kDuring);
    // Published once every child runs the new version: all of them answer "version 2".
    ebats::EventOptions after;
    after.trace = "after";
    for (int i = 0; i < 50; ++i) REQUIRE(sys.publisher().publish("v", "{}", after).ok());
    REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= kDuring + 50u; }));
    std::this_thread::sleep_for(300ms);  // room for any duplicate to show up

    const auto ex = sys.executions();
    const auto rows = sys.results();
    INFO(sys.log_of("ntask"));
    CHECK(ex.size() == kDuring + 50u);
    CHECK(duplicates(ex) == 0);
    CHECK(rows.size() == kDuring + 50u);
    std::map<std::string, int> by_message;
    int after_on_v2 = 0;
    for (const auto& r : rows) {
      by_message[r.at("message")]++;
      if (r.count("trace") && r.at("trace") == "after" && r.at("message") == "version 2") ++after_on_v2;
    }
    CHECK(by_message["version 1"] > 0);
    CHECK(by_message["version 2"] > 0);
    CHECK(by_message["version 1"] + by_message["version 2"] == kDuring + 50);
    CHECK(after_on_v2 == 50);
    CHECK(sys.dead_letters().empty());
    CHECK(worker.running());
  }
  fs::remove_all(dir);
}

TEST_CASE("a reload of a broken config keeps the running one, a storm of reloads loses nothing, and the scheduler "
          "routes a newly registered event",
          "[integration]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n", "  t: {processes: 2}\n");
  auto& scheduler = sys.start_scheduler();
  auto& worker = sys.start_ntask();
  // SIGHUP before a daemon has set up its signals would end it, as for any program.
  REQUIRE(TestSystem::wait_until([&] {
    return sys.log_of("ntask").find(" ready ") != std::string::npos &&
           sys.log_of("scheduler").find(" ready ") != std::string::npos;
  }));
  std::string good;
  {
    std::ifstream in(sys.config_path());
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::ofstream(sys.config_path()) << "events: [this is: not, a config\n";
  worker.signal(SIGHUP);
  scheduler.signal(SIGHUP);
  REQUIRE(TestSystem::wait_until([&] {
    return sys.log_of("ntask").find("reload refused") != std::string::npos &&
           sys.log_of("scheduler").find("reload refused") != std::string::npos;
  }));
  for (int i = 0; i < 20; ++i) REQUIRE(sys.publisher().publish("e", "{}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 20; }));

  // The good file back, with one more event; then 100 reloads in about a second while tasks flow.
  std::ofstream(sys.config_path()) << good;
  sys.edit_config("  e:\n", "  late:\n    - {task: record, topic: t}\n  e:\n");
  std::thread producer([&] {
    for (int i = 0; i < 200; ++i) {
      if (!sys.publisher().publish("e", "{}").ok()) return;
      std::this_thread::sleep_for(5ms);
    }
  });
  for (int i = 0; i < 100; ++i) {
    worker.signal(SIGHUP);
    scheduler.signal(SIGHUP);
    std::this_thread::sleep_for(10ms);
  }
  producer.join();
  REQUIRE(TestSystem::wait_until([&] { return sys.log_of("scheduler").find("config reloaded") != std::string::npos; }));
  for (int i = 0; i < 10; ++i) REQUIRE(sys.publisher().publish("late", "{}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 230; }));
  REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("children replaced") != std::string::npos; }));
  std::this_thread::sleep_for(300ms);

  const auto ex = sys.executions();
  INFO(sys.log_of(""));
  CHECK(ex.size() == 230);
  CHECK(duplicates(ex) == 0);
  CHECK(sys.dead_letters().empty());
  CHECK(worker.running());
  CHECK(scheduler.running());
  // Said once per reload that failed, not once per task.
  CHECK(occurrences(sys.log_of("ntask"), "reload refused") == 1);
}

TEST_CASE("a reload whose new children cannot run a registered task keeps the old children and config",
          "[integration]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n", "  t: {processes: 2}\n");
  sys.start_scheduler();
  auto& worker = sys.start_ntask();
  for (int i = 0; i < 10; ++i) REQUIRE(sys.publisher().publish("e", "{}").ok());
  // (executions prove the worker is ready: its signals are set up)
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 10; }));
  sys.edit_config("  e:\n", "  other:\n    - {task: nobodyHandlesThis, topic: t}\n  e:\n");
  worker.signal(SIGHUP);
  REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("reload abandoned") != std::string::npos; }));
  for (int i = 0; i < 10; ++i) REQUIRE(sys.publisher().publish("e", "{}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 20; }));
  INFO(sys.log_of("ntask"));
  CHECK(sys.log_of("ntask").find("nobodyHandlesThis") != std::string::npos);
  CHECK(worker.running());
  CHECK(sys.dead_letters().empty());
  CHECK(duplicates(sys.executions()) == 0);
}

TEST_CASE("a truncated plugin deployed by rename makes the reload abandon its roll, and the old children go on",
          "[integration]") {
  const std::string dir = versioned_plugin_dir();
  {
    TestSystem sys("  e:\n    - {task: record, topic: t}\n", "  t: {processes: 2}\n", "", dir);
    sys.start_scheduler();
    auto& worker = sys.start_ntask();
    for (int i = 0; i < 10; ++i) REQUIRE(sys.publisher().publish("e", "{}").ok());
    REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 10; }));
    // A copy cut short (the first 4 KiB), then renamed into place by a deploy
    // that did not check. (Truncating the file in place instead would kill the
    // running children, which map it, with SIGBUS: OPERATIONS.md says never to.)
    {
      std::ifstream in(EBATS_TEST_PLUGIN_DIR "/test_tasks.so", std::ios::binary);
      std::string head(4096, '\0');
      in.read(head.data(), static_cast<std::streamsize>(head.size()));
      std::ofstream(dir + "/.test_tasks.so.new", std::ios::binary).write(head.data(), in.gcount());
      ::chmod((dir + "/.test_tasks.so.new").c_str(), 0644);
      fs::rename(dir + "/.test_tasks.so.new", dir + "/test_tasks.so");
    }
    worker.signal(SIGHUP);
    REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("reload abandoned") != std::string::npos; }));
    for (int i = 0; i < 10; ++i) REQUIRE(sys.publisher().publish("e", "{}").ok());
    REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 20; }));
    INFO(sys.log_of("ntask"));
    CHECK(sys.log_of("ntask").find("test_tasks.so") != std::string::npos);  // the refusal names the file
    CHECK(worker.running());
    CHECK(sys.dead_letters().empty());
    CHECK(duplicates(sys.executions()) == 0);
  }
  fs::remove_all(dir);
}

TEST_CASE("a roll abandoned after an old child died during it leaves as many children as processes",
          "[integration]") {
  // The old child's slot started again with the new config and went with the
  // refused children: the worker was left with none, its topic stalled.
  const std::string dir = ebats::test::plugin_dir_with({EBATS_TEST_PLUGIN_DIR "/test_tasks.so"});
  {
    TestSystem sys("  e:\n    - {task: record, topic: t}\n  crash:\n    - {task: segfault_once, topic: t}\n",
                   "  t: {processes: 1, start_timeout: 3s}\n", "", dir);
    sys.start_scheduler();
    auto& worker = sys.start_ntask();
    auto records = [&] {
      size_t n = 0;
      for (const auto& e : sys.executions()) n += e.task == "record" ? 1 : 0;
      return n;
    };
    REQUIRE(sys.publisher().publish("e", "{}").ok());
    REQUIRE(TestSystem::wait_until([&] { return records() == 1; }));
    // A plugin whose init hangs: the roll's new child never becomes ready.
    deploy(EBATS_TEST_CRASH_PLUGIN_DIR "/init_hangs.so", dir, "init_hangs.so");
    worker.signal(SIGHUP);
    REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("config reloaded") != std::string::npos; }));
    // The old child crashes during the roll; its slot starts a child of the new config, which hangs too.
    REQUIRE(sys.publisher().publish("crash", "{}").ok());
    REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("reload abandoned") != std::string::npos; }));
    fs::remove(dir + "/init_hangs.so");
    for (int i = 0; i < 3; ++i) REQUIRE(sys.publisher().publish("e", "{}").ok());
    INFO(sys.log_of("ntask"));
    CHECK(TestSystem::wait_until([&] { return records() == 4; }, 90s));
    CHECK(worker.running());
    CHECK(duplicates(sys.executions()) == 0);
  }
  fs::remove_all(dir);
}
