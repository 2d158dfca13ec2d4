// The results file on a full disk: the worker stops taking tasks, commits
// every result to the broker meanwhile, and once the file can be written
// again puts every held record in it, each once and whole, and goes on.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "integration/harness.h"

using ebats::test::TestSystem;
using namespace std::chrono_literals;

namespace {

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("a results file that cannot be written stops the worker taking tasks, and no record is lost or cut",
          "[integration]") {
  constexpr int kPrefetch = 4;
  TestSystem sys("  fast:\n    - {task: record, topic: t}\n  slow:\n    - {task: sleep, topic: t}\n",
                 "  t: {processes: 2, prefetch: " + std::to_string(kPrefetch) + "}\n");
  const std::string results = sys.dir() + "/results.jsonl";
  sys.start_scheduler();
  auto& worker = sys.start_ntask();
  for (int i = 0; i < 10; ++i) REQUIRE(sys.publisher().publish("fast", "{\"i\":" + std::to_string(i) + "}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= 10; }));

  // The disk fills: the results path now names /dev/full (every write ENOSPC).
  const std::string full = sys.dir() + "/full-link";
  REQUIRE(::symlink("/dev/full", full.c_str()) == 0);
  REQUIRE(std::rename(full.c_str(), results.c_str()) == 0);
  worker.signal(SIGHUP);
  REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("results file reopened") != std::string::npos; }));
  constexpr int kSlow = 100;
  for (int i = 0; i < kSlow; ++i) {
    REQUIRE(sys.publisher().publish("slow", "{\"ms\":20,\"i\":" + std::to_string(i) + "}").ok());
  }
  REQUIRE(TestSystem::wait_until(
      [&] { return sys.log_of("ntask").find("results file cannot be written") != std::string::npos; }));
  // 100 tasks of 20 ms on 2 children take about a second when they run;
  // blocked, only what the worker held when the write failed runs.
  std::this_thread::sleep_for(1500ms);
  const size_t ran_while_full = sys.executions().size() - 10;
  INFO(sys.log_of("ntask"));
  CHECK(ran_while_full <= 2 * kPrefetch);

  // Space again: a regular file is back at the path.
  const std::string fresh = sys.dir() + "/fresh.jsonl";
  std::ofstream(fresh).flush();
  REQUIRE(std::rename(fresh.c_str(), results.c_str()) == 0);
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 10 + kSlow; }));
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= kSlow; }));
  std::this_thread::sleep_for(300ms);  // room for any duplicate line to show up

  const auto rows = sys.results();  // FAILs on a line that is not a whole JSON object
  std::set<std::string> ids;
  for (const auto& r : rows) ids.insert(r.at("task_id"));
  CHECK(rows.size() == static_cast<size_t>(kSlow));
  CHECK(ids.size() == static_cast<size_t>(kSlow));
  CHECK(sys.executions().size() == static_cast<size_t>(10 + kSlow));
  const std::string log = sys.log_of("ntask");
  CHECK(occurrences(log, "results file cannot be written") == 1);
  CHECK(occurrences(log, "results file written again") == 1);
}
