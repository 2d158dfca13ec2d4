// Retention with the real daemons (SQLite only: RabbitMQ keeps no results
// table): ebats-scheduler prunes results rows past results.keep, keeps the
// rest, and leaves the done counts, the dead letters and the results file
// alone; and the shipped logrotate file rotates the results file under a
// running worker.
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
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

TEST_CASE("retention: with keep 1s every results row but the newest goes soon after its task, the file keeps its lines",
          "[integration][sqlite][retention]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  sys.edit_config("results: {file: results.jsonl}", "results: {file: results.jsonl, keep: 1s}");
  sys.start_all();
  auto batch = sys.publisher().batch();
  for (int i = 0; i < 100; ++i) REQUIRE(batch.add_event("e", "{\"i\":" + std::to_string(i) + "}").ok());
  REQUIRE(batch.commit().ok());
  INFO(sys.log_of(""));
  REQUIRE(TestSystem::wait_until([&] { return done_of(sys, "t") >= 100; }));
  // The newest row stays, so seq never goes back to a pruned row's value.
  REQUIRE(TestSystem::wait_until([&] { return db_int(sys, "SELECT count(*) FROM results") == 1; }));
  CHECK(done_of(sys, "t") == 100);
  CHECK(sys.results().size() == 100);
  const int64_t newest = db_int(sys, "SELECT max(seq) FROM results");
  CHECK(newest >= 100);
  // Pruning goes on: a later task's row gets the next seq, and the one before it goes.
  REQUIRE(sys.publisher().publish("e", "{\"late\":true}").ok());
  REQUIRE(TestSystem::wait_until([&] { return done_of(sys, "t") >= 101; }));
  REQUIRE(TestSystem::wait_until([&] {
    return db_int(sys, "SELECT count(*) FROM results WHERE seq <= " + std::to_string(newest)) == 0;
  }));
  CHECK(db_int(sys, "SELECT min(seq) FROM results") == newest + 1);
  CHECK(sys.results().size() == 101);
}

TEST_CASE("retention: config/logrotate.ebats rotates the results file and the worker goes on in a new one",
          "[integration][retention]") {
  const std::string logrotate = "/usr/sbin/logrotate";
  INFO("logrotate is not installed: scripts/install-deps.sh installs it");
  REQUIRE(access(logrotate.c_str(), X_OK) == 0);
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  sys.start_scheduler();
  ebats::test::Daemon& worker = sys.start_ntask();
  for (int i = 0; i < 20; ++i) REQUIRE(sys.publisher().publish("e", "{\"before\":" + std::to_string(i) + "}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= 20; }));

  // The shipped file, with this test's path, user and worker put in.
  std::ifstream shipped(std::string(EBATS_SOURCE_DIR) + "/config/logrotate.ebats");
  std::stringstream text;
  text << shipped.rdbuf();
  std::string conf = text.str();
  const passwd* user = getpwuid(geteuid());
  const group* grp = getgrgid(getegid());
  REQUIRE(user != nullptr);
  REQUIRE(grp != nullptr);
  const std::string owner = std::string(user->pw_name) + " " + grp->gr_name;
  const std::pair<std::string, std::string> edits[] = {
      {"/var/log/ebats/results.jsonl {", sys.dir() + "/results.jsonl {"},
      {"su ebats ebats", "su " + owner},
      {"create 0640 ebats ebats", "create 0640 " + owner},
      {"systemctl reload 'ebats-*-worker@*'", "kill -HUP " + std::to_string(worker.pid())},
  };
  for (const auto& [from, to] : edits) {
    const size_t at = conf.find(from);
    INFO("config/logrotate.ebats no longer holds: " << from);
    REQUIRE(at != std::string::npos);
    REQUIRE(conf.find(from, at + 1) == std::string::npos);
    conf.replace(at, from.size(), to);
  }
  const std::string conf_path = sys.dir() + "/logrotate.conf";
  std::ofstream(conf_path) << conf;
  std::string out;
  INFO(conf);
  REQUIRE(sys.run({logrotate, "-f", "-s", sys.dir() + "/logrotate.state", conf_path}, &out) == 0);
  INFO(out);

  // The old lines are in the rotated file (dateext, not compressed yet: delaycompress).
  std::string rotated;
  for (const auto& entry : std::filesystem::directory_iterator(sys.dir())) {
    if (entry.path().filename().string().rfind("results.jsonl-", 0) == 0) rotated = entry.path().string();
  }
  REQUIRE(!rotated.empty());
  std::ifstream old_file(rotated);
  size_t old_lines = 0;
  for (std::string line; std::getline(old_file, line);) {
    CHECK(line.find("\"before\"") != std::string::npos);
    ++old_lines;
  }
  CHECK(old_lines == 20);
  // The worker reopened the path: new lines go to the new file.
  REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("results file reopened") != std::string::npos; }));
  for (int i = 0; i < 10; ++i) REQUIRE(sys.publisher().publish("e", "{\"after\":" + std::to_string(i) + "}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= 10; }));
  CHECK(sys.results().size() == 10);
  std::ifstream new_file(sys.dir() + "/results.jsonl");
  for (std::string line; std::getline(new_file, line);) CHECK(line.find("\"after\"") != std::string::npos);
}

TEST_CASE("retention: results.keep added to the config applies when the scheduler reloads it",
          "[integration][sqlite][retention]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  const ebats::WallMs now = ebats::SystemClock().wall_now();
  ebats::Batch old;
  for (int i = 0; i < 10; ++i) {
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
  REQUIRE(sys.broker().commit(old).ok());
  ebats::test::Daemon& scheduler = sys.start_scheduler();
  sys.start_ntask();
  REQUIRE(sys.publisher().publish("e", "{\"first\":true}").ok());
  REQUIRE(TestSystem::wait_until([&] { return done_of(sys, "t") >= 11; }));
  // Without results.keep the old rows stay.
  CHECK(db_int(sys, "SELECT count(*) FROM results") == 11);

  sys.edit_config("results: {file: results.jsonl}", "results: {file: results.jsonl, keep: 1h}");
  scheduler.signal(SIGHUP);
  INFO(sys.log_of("scheduler"));
  REQUIRE(TestSystem::wait_until(
      [&] { return db_int(sys, "SELECT count(*) FROM results WHERE task_id LIKE 'old-%'") == 0; }));
  CHECK(sys.log_of("scheduler").find("results retention changed") != std::string::npos);
  CHECK(db_int(sys, "SELECT count(*) FROM results") == 1);
  CHECK(done_of(sys, "t") == 11);
}
