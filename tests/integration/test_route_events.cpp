// workers.<topic>.route_events (SQLite): an ntask worker that routes the
// events itself, with no ebats-scheduler running, and claims its topic's
// tasks in the same commit (Broker::read_events, commit_routed). The real daemons, as in
// test_end_to_end.cpp; no test asserts on how long something took.
#include <signal.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <thread>

#include "integration/harness.h"

using ebats::QueueDepth;
using ebats::test::TestSystem;
using namespace std::chrono_literals;

namespace {

uint64_t ready_of(TestSystem& sys, const std::string& topic) {
  for (const QueueDepth& d : sys.depths()) {
    if (d.row == QueueDepth::Row::topic && d.topic == topic) return d.ready;
  }
  return 0;
}

// The share of one CPU that process `pid` used over `window` (user + system).
double cpu_used_in(pid_t pid, std::chrono::milliseconds window) {
  const double before = ebats::test::cpu_seconds(pid);
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(window);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return (ebats::test::cpu_seconds(pid) - before) / wall;
}

std::set<std::string> ok_ids_of(TestSystem& sys, const std::string& task) {
  std::set<std::string> ids;
  for (const auto& r : sys.results()) {
    if (r.at("task") == task && r.at("status") == "ok") ids.insert(r.at("task_id"));
  }
  return ids;
}

}  // namespace

TEST_CASE("SQLite route_events: the worker routes every event itself and runs its topic's tasks once",
          "[integration][sqlite]") {
  TestSystem sys("  order_paied:\n    - {task: record, topic: t}\n    - {task: noop, topic: u}\n",
                 "  t: {processes: 2, route_events: true}\n  u: {processes: 1}\n");
  auto batch = sys.publisher().batch();
  for (int i = 0; i < 500; ++i) {
    REQUIRE(batch.add_event("order_paied", "{\"order_id\":" + std::to_string(i) + "}").ok());
  }
  REQUIRE(batch.add_event("unknown_event", "{}").ok());
  REQUIRE(batch.commit().ok());
  sys.start_ntask("t");  // and no scheduler
  REQUIRE(TestSystem::wait_until([&] { return ok_ids_of(sys, "record").size() >= 500; }));
  std::this_thread::sleep_for(300ms);  // room for any duplicate to show up
  const auto ex = sys.executions();
  std::set<std::string> ran;
  for (const auto& e : ex) ran.insert(e.id);
  INFO(sys.log_of("ntask"));
  CHECK(ran.size() == 500);
  CHECK(ex.size() == 500);  // none twice
  CHECK(ok_ids_of(sys, "record").size() == 500);
  // The other topic's tasks were routed and wait for their own worker.
  CHECK(sys.unrouted_events() == 0);
  CHECK(ready_of(sys, "u") == 500);
  // An event nobody registered is dead-lettered with its reason, and logged.
  const auto letters = sys.wait_for_dead_letters(1);
  CHECK(letters.size() == 1);
  CHECK(letters.front().letter.reason == "no registration for event unknown_event");
  CHECK(sys.log_of("ntask").find("unknown_event") != std::string::npos);
  CHECK(sys.log_of("ntask").find("route_events=yes") != std::string::npos);
  // The other topic's worker, an ordinary one, takes them.
  sys.start_ntask("u");
  REQUIRE(TestSystem::wait_until([&] { return ok_ids_of(sys, "noop").size() >= 500; }));
  CHECK(ok_ids_of(sys, "noop").size() == 500);
}

TEST_CASE("SQLite route_events: events are routed while every child is busy and no claim may happen",
          "[integration][sqlite]") {
  // prefetch 1: with its one task running the worker holds all it may, so
  // only a route-only look can route the second event.
  TestSystem sys("  slow:\n    - {task: sleep, topic: t}\n  other:\n    - {task: noop, topic: u}\n",
                 "  t: {processes: 1, prefetch: 1, route_events: true, drain_timeout: 3s}\n"
                 "  u: {processes: 1}\n");
  auto& worker = sys.start_ntask("t");
  REQUIRE(sys.publisher().publish("slow", "{\"ms\":120000}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 1; }));  // it runs
  REQUIRE(sys.publisher().publish("other", "{}").ok());
  REQUIRE(TestSystem::wait_until([&] { return ready_of(sys, "u") == 1; }));
  INFO(sys.log_of("ntask"));
  CHECK(sys.unrouted_events() == 0);
  CHECK(ok_ids_of(sys, "sleep").empty());  // still running: the routing did not wait for it
  // Watching for events while it cannot claim, it still sleeps between them.
  CHECK(cpu_used_in(worker.pid(), 1200ms) < 0.5);
  // Stopping, it routes no more and does not spin on the wake-up it leaves unread.
  worker.signal(SIGTERM);
  REQUIRE(sys.publisher().publish("other", "{\"late\":1}").ok());
  CHECK(cpu_used_in(worker.pid(), 1200ms) < 0.5);
  CHECK(worker.wait(30s) == 0);  // the sleep task gets the soft stop at drain_timeout and asks for a retry
  CHECK(sys.unrouted_events() == 1);  // left for the next start
}

TEST_CASE("SQLite route_events: kill -9 of a worker that routes events loses no event and no task",
          "[integration][sqlite]") {
  TestSystem sys("  e:\n    - {task: sleep, topic: t}\n", "  t: {processes: 2, route_events: true}\n");
  auto batch = sys.publisher().batch();
  for (int i = 0; i < 300; ++i) REQUIRE(batch.add_event("e", "{\"ms\":5}").ok());
  REQUIRE(batch.commit().ok());
  auto& first = sys.start_ntask();
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 60; }));
  first.signal(SIGKILL);
  REQUIRE(first.wait(10s) == 128 + SIGKILL);
  CHECK(sys.executions().size() < 300);
  sys.start_ntask();  // the replacement recovers the killed worker's leases and routes the rest
  sys.start_dtask();
  REQUIRE(TestSystem::wait_until([&] { return ok_ids_of(sys, "sleep").size() == 300; }));
  const auto ex = sys.executions();
  std::set<std::string> ran;
  for (const auto& e : ex) ran.insert(e.id);
  CHECK(ran.size() == 300);
  WARN("executions " << ex.size() << " for 300 tasks: " << ex.size() - ran.size() << " re-run after kill -9");
  CHECK(ex.size() - ran.size() <= 300 - 60);
  CHECK(sys.unrouted_events() == 0);
  CHECK(sys.dead_letters().empty());
}
