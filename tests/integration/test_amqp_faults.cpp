// Faults on a real RabbitMQ node (no mocks): the broker stopped and started
// mid-run, every connection closed by force, publishing blocked by a memory
// alarm, the scheduler and a worker killed with SIGKILL. Each run publishes
// its events first, then counts, for every task the events fan out to, that
// it ran to success or was dead-lettered with a reason: lost tasks must be 0.
// Tasks take 20 ms, so a run lasts seconds and every fault lands mid-run (each
// test checks that work was left when its fault came). Runs beyond what the
// outcomes need (at-least-once) are allowed, counted and printed.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ebats/envelope.h"
#include "integration/harness.h"
#include "support/test_backend.h"

using ebats::test::TestSystem;
using namespace std::chrono_literals;

namespace {

const char* kEvents =
    "  e:\n"
    "    - {task: sleep, topic: t}\n"
    "    - {task: retry_once, topic: t, retry: {max: 5, backoff: [200ms]}}\n";
// Executions the outcomes need, per event: sleep once, retry_once twice.
constexpr size_t kRunsPerEvent = 3;
const char* kWorkers = "  t: {processes: 2}\n";

// Runs `rabbitmqctl ARGS...` against the test node; REQUIREs success.
void node_ctl(const TestSystem& sys, std::vector<std::string> args) {
  std::vector<std::string> argv{"/bin/bash", std::string(EBATS_SOURCE_DIR) + "/tests/amqp/rabbitmq-node.sh", "ctl",
                                ebats::test::amqp_node_dir()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  const int code = sys.run(argv, &out);
  INFO("rabbitmqctl " << args.front() << ": " << out);
  REQUIRE(code == 0);
}

struct Load {
  std::set<std::string> task_ids;  // every task the events fan out to
  size_t events = 0;
};

// Publishes `events` events (in batches) and returns the ids of their tasks.
Load publish_events(TestSystem& sys, int events) {
  Load load;
  for (int done = 0; done < events;) {
    auto batch = sys.publisher().batch();
    for (int i = 0; i < 500 && done < events; ++i, ++done) {
      auto id = batch.add_event("e", "{\"ms\":20}");
      REQUIRE(id.ok());
      load.task_ids.insert(ebats::task_uuid(*id, "e", "sleep", "t"));
      load.task_ids.insert(ebats::task_uuid(*id, "e", "retry_once", "t"));
    }
    REQUIRE(batch.commit().ok());
  }
  load.events = static_cast<size_t>(events);
  return load;
}

struct Tally {
  size_t finished = 0;      // tasks with an ok result
  size_t dead = 0;          // tasks dead-lettered
  size_t missing = 0;       // neither
  size_t duplicates = 0;    // executions beyond one per (task, attempt)
  size_t executions = 0;
  size_t extra = 0;         // executions beyond what the outcomes need
};

Tally tally(TestSystem& sys, const Load& load) {
  Tally t;
  std::set<std::string> ok;
  for (const auto& r : sys.results()) {
    if (r.at("status") == "ok") ok.insert(r.at("task_id"));
  }
  std::set<std::string> dead;
  for (const auto& e : sys.dead_letters()) dead.insert(e.letter.id);
  for (const auto& id : load.task_ids) {
    if (ok.count(id)) {
      ++t.finished;
    } else if (dead.count(id)) {
      ++t.dead;
    } else {
      ++t.missing;
    }
  }
  std::map<std::pair<std::string, uint32_t>, int> runs;
  for (const auto& e : sys.executions()) {
    ++t.executions;
    if (++runs[{e.id, e.attempt}] > 1) ++t.duplicates;
  }
  const size_t needed = kRunsPerEvent * load.events;
  t.extra = t.executions > needed ? t.executions - needed : 0;
  return t;
}

// Waits until every task finished or was dead-lettered, then reports.
Tally settle(TestSystem& sys, const Load& load, const char* fault) {
  Tally t;
  TestSystem::wait_until(
      [&] {
        t = tally(sys, load);
        return t.missing == 0;
      },
      180s);
  std::cout << "fault run '" << fault << "': " << load.task_ids.size() << " tasks, " << t.finished << " ok, "
            << t.dead << " dead-lettered, " << t.missing << " lost; " << t.executions << " executions, " << t.extra
            << " more than the outcomes need, " << t.duplicates << " of them repeating a (task, attempt)\n";
  INFO(sys.log_of("ntask") << sys.log_of("dtask") << sys.log_of("scheduler"));
  CHECK(t.missing == 0);
  for (const auto& e : sys.dead_letters()) {
    CHECK_FALSE(e.letter.reason.empty());
  }
  return t;
}

// The fault must come while work is left: fewer executions than a whole run needs.
void check_mid_run(TestSystem& sys, const Load& load) {
  INFO("the run was over before the fault; make the load bigger");
  CHECK(sys.executions().size() < kRunsPerEvent * load.events);
}

}  // namespace

TEST_CASE("RabbitMQ faults: the broker stopped and started mid-run loses no task", "[integration][amqp-only][faults]") {
  TestSystem sys(kEvents, kWorkers);
  const Load load = publish_events(sys, 2000);
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 300; }));
  node_ctl(sys, {"stop_app"});
  check_mid_run(sys, load);
  std::this_thread::sleep_for(3s);
  node_ctl(sys, {"start_app"});
  settle(sys, load, "stop_app/start_app");
  CHECK(sys.log_of("ntask").find("reconnecting") != std::string::npos);
}

TEST_CASE("RabbitMQ faults: connections closed by force, three times, lose no task",
          "[integration][amqp-only][faults]") {
  TestSystem sys(kEvents, kWorkers);
  const Load load = publish_events(sys, 2000);
  sys.start_all();
  for (size_t at : {300, 1000, 2000}) {
    REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= at; }));
    node_ctl(sys, {"close_all_connections", "ebats fault test"});
    check_mid_run(sys, load);
  }
  settle(sys, load, "close_all_connections x3");
  CHECK(sys.log_of("ntask").find("CONNECTION_FORCED") != std::string::npos);
}

TEST_CASE("RabbitMQ faults: a memory alarm longer than confirm_timeout blocks publishing, drops no connection, loses no task",
          "[integration][amqp-only][faults]") {
  TestSystem sys(kEvents, kWorkers);
  const Load load = publish_events(sys, 1500);
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 300; }));
  node_ctl(sys, {"set_vm_memory_high_watermark", "0.000001"});
  check_mid_run(sys, load);
  // Longer than confirm_timeout (10 s here): commits fail and are retried,
  // but the connections stay, so no task held meanwhile costs an attempt.
  std::this_thread::sleep_for(13s);
  node_ctl(sys, {"set_vm_memory_high_watermark", "0.8"});
  const Tally t = settle(sys, load, "memory alarm for 13 s");
  const std::string logs = sys.log_of("");
  CHECK(logs.find("blocks publishing") != std::string::npos);
  CHECK(logs.find("lost:") == std::string::npos);  // no connection dropped
  // Publishes already on their way when the alarm began are confirmed only
  // after it; the commit that gave up on them is retried: bounded repeats.
  CHECK(t.duplicates <= 2 * 1024);
}

TEST_CASE("RabbitMQ faults: a broker that stops answering (SIGSTOP) is found by heartbeats, and nothing is lost",
          "[integration][amqp-only][faults]") {
  // A frozen broker sends no RST and no FIN: only missing heartbeats (and
  // TCP_USER_TIMEOUT for unanswered writes) tell the daemons it is gone.
  TestSystem sys(kEvents, kWorkers);
  sys.edit_config("heartbeat: 5s", "heartbeat: 1s");
  const Load load = publish_events(sys, 1500);
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 300; }));
  std::ifstream pid_file(ebats::test::amqp_node_dir() + "/beam.pid");
  pid_t beam = 0;
  pid_file >> beam;
  REQUIRE(beam > 0);
  REQUIRE(::kill(beam, SIGSTOP) == 0);
  check_mid_run(sys, load);
  // rabbitmq-c notices inside a call ("heartbeat timeout"), ebats' I/O loop
  // between calls ("nothing from the broker for 2 s").
  const bool noticed = TestSystem::wait_until(
      [&] {
        const std::string log = sys.log_of("ntask");
        return log.find("heartbeat timeout") != std::string::npos ||
               log.find("nothing from the broker") != std::string::npos;
      },
      30s);
  REQUIRE(::kill(beam, SIGCONT) == 0);
  CHECK(noticed);
  settle(sys, load, "broker frozen with SIGSTOP");
}

TEST_CASE("RabbitMQ faults: the scheduler and a worker killed with SIGKILL mid-run lose no task",
          "[integration][amqp-only][faults]") {
  TestSystem sys(kEvents, kWorkers);
  const Load load = publish_events(sys, 2000);
  auto* scheduler = &sys.start_scheduler();
  auto* worker = &sys.start_ntask();
  sys.start_dtask();
  for (size_t at : {300, 1500}) {
    REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= at; }));
    scheduler->signal(SIGKILL);
    worker->signal(SIGKILL);
    check_mid_run(sys, load);
    scheduler->wait(10s);
    worker->wait(10s);
    scheduler = &sys.start_scheduler();
    worker = &sys.start_ntask();
  }
  const Tally t = settle(sys, load, "SIGKILL of scheduler and ntask worker x2");
  // Repeats are bounded by what the killed processes held: a batch of events
  // the scheduler routed but had not acknowledged (fanned out again, to the
  // same task ids), and the worker's prefetch.
  CHECK(t.extra <= 2 * (2 * 1024 + 2 * 512));
}
