// Retention with the real daemons (SQLite only: RabbitMQ keeps no results
// table): ebats-scheduler prunes results rows past results.keep, keeps the
// rest, and leaves the done counts, the dead letters and the results file
// alone.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "ebats/clock.h"
#include "integration/harness.h"

using ebats::test::TestSystem;

namespace {

// One integer from the test's database, on a connection of the test's own.
int64_t db_int(const TestSystem& sys, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2((sys.dir() + "/ebats.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_busy_timeout(db, 30'000);
  sqlite3_stmt* stmt = nullptr;
  INFO(sql << ": " << sqlite3_errmsg(db));
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  const int64_t value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

uint64_t done_of(TestSystem& sys, const std::string& topic) {
  for (const ebats::QueueDepth& d : sys.depths()) {
    if (d.topic == topic) return d.done;
  }
  return 0;
}

}  // namespace

TEST_CASE("retention: the scheduler prunes results older than results.keep and keeps the newer ones",
          "[integration][sqlite][retention]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  sys.edit_config("results: {file: results.jsonl}", "results: {file: results.jsonl, keep: 1h}");
  // 5000 results that finished two hours ago (more than one batch of the
  // pruner), and a dead letter as old.
  const ebats::WallMs now = ebats::SystemClock().wall_now();
  ebats::Batch old;
  for (int i = 0; i < 5000; ++i) {
    ebats::ResultRecord r;
    r.topic = "t";
    r.task_id = "old-" + std::to_string(i);
    r.task = "noop";
    r.params = "{}";
    r.status = "ok";
    r.started_at = now - 7'200'000;
    r.finished_at = now - 7'200'000;
    old.results.push_back(r);
  }
  ebats::DeadLetter dead;
  dead.id = "old-dead";
  dead.kind = "task";
  dead.topic = "t";
  dead.name = "noop";
  dead.reason = "failed";
  dead.body = "{}";
  dead.first_seen = now - 7'200'000;
  dead.dead_at = now - 7'200'000;
  old.dead.push_back(dead);
  REQUIRE(sys.broker().commit(old).ok());
  REQUIRE(done_of(sys, "t") == 5000);

  sys.start_all();
  auto batch = sys.publisher().batch();
  for (int i = 0; i < 200; ++i) REQUIRE(batch.add_event("e", "{\"i\":" + std::to_string(i) + "}").ok());
  REQUIRE(batch.commit().ok());
  INFO(sys.log_of(""));
  REQUIRE(TestSystem::wait_until([&] { return done_of(sys, "t") >= 5200; }));
  REQUIRE(TestSystem::wait_until(
      [&] { return db_int(sys, "SELECT count(*) FROM results WHERE task_id LIKE 'old-%'") == 0; }));
  // The 200 new results stay (finished within the hour), each once.
  CHECK(db_int(sys, "SELECT count(*) FROM results") == 200);
  CHECK(db_int(sys, "SELECT count(DISTINCT task_id) FROM results WHERE finished_at >= " + std::to_string(now)) == 200);
  // The done count and the dead letter do not depend on the rows kept.
  CHECK(done_of(sys, "t") == 5200);
  std::string stats;
  REQUIRE(sys.ebatsctl({"stats", "--json"}, &stats) == 0);
  CHECK_THAT(stats, Catch::Contains("{\"topic\":\"t\",\"pending\":0,\"delayed\":0,\"leased\":0,\"done\":5200,\"dead\":1}"));
  CHECK(sys.dead_letters().size() == 1);
  CHECK(sys.results().size() == 200);  // the file is logrotate's business
}

TEST_CASE("retention: with keep 1s every results row goes soon after its task, the results file keeps its lines",
          "[integration][sqlite][retention]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  sys.edit_config("results: {file: results.jsonl}", "results: {file: results.jsonl, keep: 1s}");
  sys.start_all();
  auto batch = sys.publisher().batch();
  for (int i = 0; i < 100; ++i) REQUIRE(batch.add_event("e", "{\"i\":" + std::to_string(i) + "}").ok());
  REQUIRE(batch.commit().ok());
  INFO(sys.log_of(""));
  REQUIRE(TestSystem::wait_until([&] { return done_of(sys, "t") >= 100; }));
  REQUIRE(TestSystem::wait_until([&] { return db_int(sys, "SELECT count(*) FROM results") == 0; }));
  CHECK(done_of(sys, "t") == 100);
  CHECK(sys.results().size() == 100);
  // Pruning goes on: a later task's row goes in turn.
  REQUIRE(sys.publisher().publish("e", "{\"late\":true}").ok());
  REQUIRE(TestSystem::wait_until([&] { return done_of(sys, "t") >= 101; }));
  REQUIRE(TestSystem::wait_until([&] { return db_int(sys, "SELECT count(*) FROM results") == 0; }));
  CHECK(sys.results().size() == 101);
}
