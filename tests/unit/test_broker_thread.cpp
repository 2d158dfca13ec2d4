// BrokerThread: broker calls run on its own thread, one at a time and in the
// order posted; their completions run on the owner's thread only when it
// asks; an exception in a call comes back out of its completion; destroying
// it runs what was posted. A real SQLite broker on a temporary file.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ebats/broker.h"
#include "ebats/clock.h"
#include "supervisor/broker_thread.h"
#include "support/temp_dir.h"

using namespace ebats;
using std::chrono::milliseconds;

namespace {

using ebats::test::TempDir;

std::unique_ptr<Broker> open_test_broker(const TempDir& folder, const Clock& clock) {
  BrokerOptions options;
  options.url = "sqlite://" + folder.file("q.db");
  options.owner = "testhost/ntask/demo";
  auto broker = open_broker(options, clock);
  INFO(broker.status().to_string());
  REQUIRE(broker.ok());
  return std::move(*broker);
}

std::unique_ptr<BrokerThread> start_thread(Broker& broker) {
  auto started = BrokerThread::start(broker);
  INFO(started.status().to_string());
  REQUIRE(started.ok());
  return std::move(*started);
}

// A broker on a temporary file and a BrokerThread over it.
struct Setup {
  TempDir folder;
  SystemClock clock;
  std::unique_ptr<Broker> broker = open_test_broker(folder, clock);
  std::unique_ptr<BrokerThread> thread = start_thread(*broker);
};

OutMsg task(const std::string& id, WallMs due_at) {
  OutMsg m;
  m.lane = Lane::ntask;
  m.topic = "demo";
  m.id = id;
  m.name = "closeOrder";
  m.body = "{}";
  m.due_at = due_at;
  m.max_attempts = 3;
  return m;
}

// Runs completions until `count` have run; waits at most 10 s in all (a bound on a hang, not a timing assertion).
size_t run_completions_until(BrokerThread& thread, size_t count) {
  size_t ran = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ran < count && std::chrono::steady_clock::now() < give_up) {
    thread.wait(milliseconds(100));
    ran += thread.run_completions();
  }
  return ran;
}

}  // namespace

TEST_CASE("broker thread: calls run off the owner's thread in order, and completions on the owner's",
          "[broker_thread]") {
  Setup setup;
  BrokerThread& thread = *setup.thread;

  const std::thread::id owner = std::this_thread::get_id();
  std::vector<int> call_order;            // written by the calls (one thread), read after they completed
  std::vector<int> completion_order;      // written by the completions (the owner)
  std::atomic<bool> a_call_ran_on_owner{false};
  bool a_completion_ran_elsewhere = false;
  for (int i = 0; i < 20; ++i) {
    thread.post([&, i](Broker& b) -> BrokerThread::Completion {
      if (std::this_thread::get_id() == owner) a_call_ran_on_owner = true;
      call_order.push_back(i);
      Batch batch;
      batch.publish.push_back(task("task-" + std::to_string(i), setup.clock.wall_now()));
      auto report = b.commit(batch);
      const bool ok = report.ok() && report->published == 1;
      return [&, i, ok] {
        if (std::this_thread::get_id() != owner) a_completion_ran_elsewhere = true;
        CHECK(ok);
        completion_order.push_back(i);
      };
    });
  }
  CHECK(thread.in_flight() == 20);
  CHECK(run_completions_until(thread, 20) == 20);
  CHECK(thread.in_flight() == 0);
  CHECK_FALSE(a_call_ran_on_owner);
  CHECK_FALSE(a_completion_ran_elsewhere);
  std::vector<int> expected;
  for (int i = 0; i < 20; ++i) expected.push_back(i);
  CHECK(call_order == expected);
  CHECK(completion_order == expected);

  // What the calls committed is in the database: one claim sees all 20.
  bool claimed_all = false;
  thread.post([&](Broker& b) -> BrokerThread::Completion {
    auto got = b.claim(Lane::ntask, "demo", 100);
    const bool all = got.ok() && got->size() == 20;
    return [&, all] { claimed_all = all; };
  });
  CHECK(run_completions_until(thread, 1) == 1);
  CHECK(claimed_all);
}

TEST_CASE("broker thread: completions wait until the owner runs them", "[broker_thread]") {
  Setup setup;
  BrokerThread& thread = *setup.thread;

  std::atomic<bool> call_ran{false};
  bool completion_ran = false;
  thread.post([&](Broker&) -> BrokerThread::Completion {
    call_ran = true;
    return [&] { completion_ran = true; };
  });
  REQUIRE(thread.wait(milliseconds(10'000)));  // readable: a completion is ready
  CHECK(call_ran);
  CHECK_FALSE(completion_ran);  // not before the owner asks
  CHECK(thread.run_completions() == 1);
  CHECK(completion_ran);
  CHECK(thread.run_completions() == 0);
  CHECK_FALSE(thread.wait(milliseconds(0)));  // nothing left: not readable
}

TEST_CASE("broker thread: an exception in a call is rethrown by its completion, the ones behind it kept",
          "[broker_thread]") {
  Setup setup;
  BrokerThread& thread = *setup.thread;

  bool behind_ran = false;
  std::atomic<bool> third_started{false};
  thread.post([](Broker&) -> BrokerThread::Completion { throw std::runtime_error("disk on fire"); });
  thread.post([&](Broker&) -> BrokerThread::Completion { return [&] { behind_ran = true; }; });
  // The thread queues a call's completion before it takes the next call: once
  // the third call runs, the first two completions wait together.
  thread.post([&](Broker&) -> BrokerThread::Completion {
    third_started = true;
    return nullptr;
  });
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!third_started && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(milliseconds(1));
  REQUIRE(third_started);
  CHECK_THROWS_WITH(thread.run_completions(), "disk on fire");
  // The completions behind the exception were not lost: they run next time.
  CHECK(run_completions_until(thread, 2) == 2);
  CHECK(behind_ran);
  CHECK(thread.in_flight() == 0);

  // The thread is still there for the next call.
  bool ran = false;
  thread.post([&](Broker&) -> BrokerThread::Completion { return [&] { ran = true; }; });
  CHECK(run_completions_until(thread, 1) == 1);
  CHECK(ran);
}

TEST_CASE("broker thread: destroying it runs every call posted so far", "[broker_thread]") {
  Setup setup;
  std::atomic<int> ran{0};
  for (int i = 0; i < 50; ++i) {
    setup.thread->post([&, i](Broker& b) -> BrokerThread::Completion {
      Batch batch;
      batch.publish.push_back(task("late-" + std::to_string(i), setup.clock.wall_now()));
      if (b.commit(batch).ok()) ++ran;
      return nullptr;
    });
  }
  setup.thread.reset();  // destroyed with (probably) most calls still queued
  CHECK(ran == 50);
  auto depths = setup.broker->depths({}, DeadLetterCount::counted);
  REQUIRE(depths.ok());
  REQUIRE(depths->size() == 2);  // the events row, then the topic
  CHECK(depths->front().row == QueueDepth::Row::events);
  CHECK(depths->back().ready == 50);
}
