// Several processes on one SQLite file: forked claimers never run a task twice
// while leases hold, and a writer locked out beyond busy_timeout gets `busy`.
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ebats/broker.h"
#include "ebats/clock.h"
#include "support/temp_dir.h"

using namespace ebats;

namespace {

using ebats::test::TempDir;

BrokerOptions options_for(const std::string& db, const std::string& owner) {
  BrokerOptions options;
  options.url = "sqlite://" + db;
  options.owner = owner;
  options.sqlite.lease_ms = 10 * 60 * 1000;  // holds for the whole test
  options.sqlite.busy_timeout_ms = 30'000;
  return options;
}

// Exit codes of a claimer child, so the parent can say what went wrong.
enum ChildExit { kDone = 0, kOpenFailed = 10, kClaimFailed, kCommitFailed, kStaleAck, kRecovered, kWriteFailed, kThrew };

// Claims and acks until nothing is ready, appending each claimed id to
// `out_path` before the ack. Also runs the lease reaper, which must find
// nothing while leases hold. Runs in a forked child: returns an exit code,
// never throws.
int run_claimer(const std::string& db, const std::string& out_path, int index) {
  try {
    SystemClock clock;
    auto broker = open_broker(options_for(db, "testhost/ntask/demo-" + std::to_string(index)), clock);
    if (!broker.ok()) return kOpenFailed;
    std::FILE* out = std::fopen(out_path.c_str(), "w");
    if (out == nullptr) return kWriteFailed;
    for (;;) {
      auto recovered = (*broker)->recover_expired(Lane::ntask, "demo");
      if (!recovered.ok()) return kClaimFailed;
      if (*recovered != 0) return kRecovered;
      auto claimed = (*broker)->claim(Lane::ntask, "demo", 16);
      if (!claimed.ok()) return kClaimFailed;
      if (claimed->empty()) break;  // everything was due at fork time: nothing ready is left
      Batch batch;
      for (const Delivery& d : *claimed) {
        if (std::fprintf(out, "%s\n", d.id.c_str()) < 0) return kWriteFailed;
        Settle settle;
        settle.token = d.token;
        batch.settle.push_back(settle);
      }
      if (std::fflush(out) != 0) return kWriteFailed;
      auto report = (*broker)->commit(batch);
      if (!report.ok()) return kCommitFailed;
      if (report->stale != 0) return kStaleAck;
    }
    return std::fclose(out) == 0 ? kDone : kWriteFailed;
  } catch (...) {
    return kThrew;
  }
}

}  // namespace

TEST_CASE("sqlite broker: processes claiming one file never run a task twice", "[sqlite][broker]") {
  constexpr int kTasks = 2000;
  constexpr int kChildren = 3;
  TempDir dir;
  const std::string db = dir.path() + "/ebats.db";
  {
    SystemClock clock;
    auto broker = open_broker(options_for(db, "testhost/ebatsctl"), clock);
    REQUIRE(broker.ok());
    Batch batch;
    for (int i = 0; i < kTasks; ++i) {
      OutMsg m;
      m.lane = Lane::ntask;
      m.topic = "demo";
      m.id = "task-" + std::to_string(i);
      m.name = "noop";
      m.body = "{}";
      m.due_at = clock.wall_now();
      m.max_attempts = 1;
      batch.publish.push_back(m);
    }
    auto report = (*broker)->commit(batch);
    REQUIRE(report.ok());
    REQUIRE(report->published == kTasks);
  }  // closed before fork: children open their own connections

  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    const std::string out = dir.path() + "/claimed-" + std::to_string(i);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) _exit(run_claimer(db, out, i));
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    INFO("child exit code " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << " (see ChildExit)");
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == kDone);
  }

  std::map<std::string, int> times_claimed;
  for (int i = 0; i < kChildren; ++i) {
    std::ifstream in(dir.path() + "/claimed-" + std::to_string(i));
    int lines = 0;
    for (std::string id; std::getline(in, id);) {
      ++times_claimed[id];
      ++lines;
    }
    INFO("child " << i << " claimed " << lines);
    CHECK(lines <= kTasks);
  }
  CHECK(times_claimed.size() == static_cast<size_t>(kTasks));  // none missing
  int duplicates = 0;
  for (const auto& entry : times_claimed) {
    if (entry.second != 1) ++duplicates;
  }
  CHECK(duplicates == 0);

  FakeClock clock;
  auto broker = open_broker(options_for(db, "testhost/ebatsctl"), clock);
  REQUIRE(broker.ok());
  auto depths = (*broker)->depths({}, DeadLetterCount::counted);
  REQUIRE(depths.ok());
  for (const QueueDepth& d : *depths) {
    CHECK(d.ready == 0);
    CHECK(d.leased == 0);
  }
}

TEST_CASE("sqlite broker: a database locked beyond busy_timeout is reported busy", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  BrokerOptions options = options_for(db, "testhost/ntask/demo");
  options.sqlite.busy_timeout_ms = 100;
  auto opened = open_broker(options, clock);
  REQUIRE(opened.ok());
  Broker& broker = **opened;
  OutMsg m;
  m.lane = Lane::ntask;
  m.topic = "demo";
  m.id = "t1";
  m.name = "noop";
  m.body = "{}";
  m.due_at = clock.wall_now();
  Batch batch;
  batch.publish.push_back(m);
  REQUIRE(broker.commit(batch).ok());

  // Another process (here: another connection) holds the write lock.
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> other(raw, &sqlite3_close);
  REQUIRE(sqlite3_exec(other.get(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);

  m.id = "t2";
  batch.publish = {m};
  auto report = broker.commit(batch);
  REQUIRE_FALSE(report.ok());
  CHECK(report.status().code() == StatusCode::busy);
  CHECK_THAT(report.status().message(),
             Catch::StartsWith("database " + db + " is locked by another process (waited 100ms)"));
  auto claimed = broker.claim(Lane::ntask, "demo", 10);
  CHECK(claimed.status().code() == StatusCode::busy);

  // Readers are not blocked by a writer in WAL mode.
  auto next = broker.next_due(Lane::ntask, "demo");
  REQUIRE(next.ok());
  CHECK(next->has_value());
  CHECK(broker.depths({}, DeadLetterCount::counted).ok());

  REQUIRE(sqlite3_exec(other.get(), "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
  report = broker.commit(batch);
  REQUIRE(report.ok());
  CHECK(report->published == 1);
  claimed = broker.claim(Lane::ntask, "demo", 10);
  REQUIRE(claimed.ok());
  CHECK(claimed->size() == 2);
}

// systemd starts the three daemons together, often on a file that does not
// exist yet: each of them must open it, whichever switches it to WAL first.
TEST_CASE("sqlite broker: processes opening a new database at once all get it", "[sqlite][broker]") {
  constexpr int kProcesses = 8;
  constexpr int kRounds = 15;
  for (int round = 0; round < kRounds; ++round) {
    TempDir dir;
    const std::string db = dir.path() + "/ebats.db";
    int go[2];
    REQUIRE(pipe(go) == 0);
    std::vector<pid_t> children;
    for (int i = 0; i < kProcesses; ++i) {
      const pid_t pid = fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        ::close(go[1]);
        char c;
        (void)!::read(go[0], &c, 1);  // released together: EOF when the parent closes its end
        SystemClock clock;
        BrokerOptions options = options_for(db, "testhost/ntask/p" + std::to_string(i));
        options.sqlite.busy_timeout_ms = 5'000;
        auto broker = open_broker(options, clock);
        if (!broker.ok()) {
          std::fprintf(stderr, "child %d: %s\n", i, broker.status().message().c_str());
          ::_exit(1);
        }
        ::_exit((*broker)->depths({}, DeadLetterCount::counted).ok() ? 0 : 2);
      }
      children.push_back(pid);
    }
    ::close(go[0]);
    ::close(go[1]);
    int failed = 0;
    for (pid_t pid : children) {
      int status = 0;
      REQUIRE(waitpid(pid, &status, 0) == pid);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
    INFO("round " << round);
    CHECK(failed == 0);
  }
}
