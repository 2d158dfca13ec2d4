// Retention of the SQLite results table (results.keep, results.keep_rows):
// Broker::prune_results on a real file driven by a FakeClock, and the
// scheduler's ResultsPruner, which runs it one batch at a time.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "daemon/logger.h"
#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"
#include "scheduler/results_pruner.h"
#include "support/broker_calls.h"
#include "support/temp_dir.h"

using namespace ebats;
using ebats::test::commit_ok;
using ebats::test::TempDir;
using std::chrono::milliseconds;

namespace {

std::unique_ptr<Broker> open_db(const std::string& path, const Clock& clock) {
  BrokerOptions options;
  options.url = "sqlite://" + path;
  options.owner = "testhost/scheduler";
  auto broker = open_broker(options, clock);
  INFO(broker.status().to_string());
  REQUIRE(broker.ok());
  return std::move(*broker);
}

ResultRecord result(const std::string& id, WallMs finished_at, const std::string& status = "ok") {
  ResultRecord r;
  r.topic = "demo";
  r.task_id = id;
  r.task = "closeOrder";
  r.params = "{\"order\":\"" + std::string(300, 'x') + "\"}";
  r.status = status;
  r.started_at = finished_at - 5;
  r.finished_at = finished_at;
  r.host = "testhost";
  return r;
}

void add_results(Broker& broker, const std::vector<ResultRecord>& records) {
  Batch batch;
  batch.results = records;
  commit_ok(broker, batch);
}

// One integer from the file, read on a connection of the test's own.
int64_t query_int(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  const int64_t value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

// The task ids left in results, oldest first.
std::vector<std::string> ids_left(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT task_id FROM results ORDER BY seq", -1, &stmt, nullptr) == SQLITE_OK);
  std::vector<std::string> ids;
  while (sqlite3_step(stmt) == SQLITE_ROW) ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return ids;
}

QueueDepth demo_depth(Broker& broker) {
  auto depths = broker.depths({}, DeadLetterCount::counted);
  REQUIRE(depths.ok());
  for (const QueueDepth& d : *depths) {
    if (d.topic == "demo") return d;
  }
  FAIL("no depth row for topic demo");
  return QueueDepth{};
}

uint32_t prune_ok(Broker& broker, WallMs before, uint64_t keep_newest, uint32_t max_rows) {
  auto pruned = broker.prune_results(before, keep_newest, max_rows);
  INFO(pruned.status().to_string());
  REQUIRE(pruned.ok());
  return *pruned;
}

}  // namespace

TEST_CASE("retention: prune_results deletes only rows finished before the cutoff, oldest first, in batches",
          "[retention][sqlite]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.file("ebats.db");
  auto broker = open_db(db, clock);
  const WallMs t0 = clock.wall_now();
  // Written out of finished_at order: the age bound goes by finished_at, not by seq.
  add_results(*broker, {result("r3", t0 + 3000), result("r0", t0), result("r1", t0 + 1000, "failed")});
  add_results(*broker, {result("r2", t0 + 2000), result("r4", t0 + 4000), result("r5", t0 + 5000)});
  DeadLetter dead;
  dead.id = "d1";
  dead.kind = "task";
  dead.topic = "demo";
  dead.reason = "failed";
  Batch with_dead;
  with_dead.dead = {dead};
  commit_ok(*broker, with_dead);
  const QueueDepth before = demo_depth(*broker);
  REQUIRE(before.done == 5);
  REQUIRE(before.dead == 1);

  // r0 .. r3 finished before t0 + 3500; two at a time, the oldest first.
  CHECK(prune_ok(*broker, t0 + 3500, 0, 2) == 2);
  CHECK(ids_left(db) == std::vector<std::string>{"r3", "r2", "r4", "r5"});
  CHECK(prune_ok(*broker, t0 + 3500, 0, 2) == 2);
  CHECK(ids_left(db) == std::vector<std::string>{"r4", "r5"});
  CHECK(prune_ok(*broker, t0 + 3500, 0, 2) == 0);
  CHECK(ids_left(db) == std::vector<std::string>{"r4", "r5"});
  // A row finished exactly at the cutoff stays.
  CHECK(prune_ok(*broker, t0 + 4000, 0, 100) == 0);
  // The newest row stays whatever its age, so the next row's seq is still
  // higher than every seq handed out before (readers follow seq).
  const int64_t newest = query_int(db, "SELECT max(seq) FROM results");
  CHECK(prune_ok(*broker, t0 + 10'000, 0, 100) == 1);
  CHECK(ids_left(db) == std::vector<std::string>{"r5"});
  add_results(*broker, {result("r6", t0 + 6000)});
  CHECK(query_int(db, "SELECT max(seq) FROM results") == newest + 1);

  // The done counts and the dead letters do not depend on the rows pruned.
  const QueueDepth after = demo_depth(*broker);
  CHECK(after.done == 6);
  CHECK(after.dead == 1);
  auto letters = broker->dead_letters().list(0);
  REQUIRE(letters.ok());
  CHECK(letters->size() == 1);
}

TEST_CASE("retention: prune_results with keep_newest keeps the newest rows written", "[retention][sqlite]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.file("ebats.db");
  auto broker = open_db(db, clock);
  const WallMs t0 = clock.wall_now();
  std::vector<ResultRecord> records;
  for (int i = 0; i < 10; ++i) records.push_back(result("r" + std::to_string(i), t0 + (10 - i)));  // newest finished_at first
  add_results(*broker, records);

  CHECK(prune_ok(*broker, 0, 3, 4) == 4);
  CHECK(ids_left(db).size() == 6);
  CHECK(prune_ok(*broker, 0, 3, 4) == 3);
  CHECK(ids_left(db) == std::vector<std::string>{"r7", "r8", "r9"});
  CHECK(prune_ok(*broker, 0, 3, 4) == 0);
  // Both bounds: the age bound first, then the count within what is left of the batch.
  add_results(*broker, {result("r10", t0 + 100), result("r11", t0 + 200)});
  CHECK(prune_ok(*broker, t0 + 5, 2, 100) == 3);  // r7 .. r9 by age (finished t0+1 .. t0+3)
  CHECK(ids_left(db) == std::vector<std::string>{"r10", "r11"});
  // Neither bound, or no room in the batch: nothing goes.
  CHECK(prune_ok(*broker, 0, 0, 100) == 0);
  CHECK(prune_ok(*broker, t0 + 1000, 1, 0) == 0);
  CHECK(ids_left(db).size() == 2);
  CHECK(demo_depth(*broker).done == 12);
}

TEST_CASE("retention: pages freed by pruning are reused, so the file does not grow when as many rows come back",
          "[retention][sqlite]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.file("ebats.db");
  auto broker = open_db(db, clock);
  auto fill = [&](int round) {
    for (int b = 0; b < 10; ++b) {
      std::vector<ResultRecord> records;
      for (int i = 0; i < 300; ++i) {
        records.push_back(result(std::to_string(round) + "-" + std::to_string(b) + "-" + std::to_string(i),
                                 clock.wall_now()));
      }
      add_results(*broker, records);
    }
  };
  fill(0);
  const int64_t pages = query_int(db, "PRAGMA page_count");
  REQUIRE(query_int(db, "PRAGMA freelist_count") < 10);
  clock.advance(milliseconds(1000));
  while (prune_ok(*broker, clock.wall_now(), 0, 500) > 0) {
  }
  CHECK(query_int(db, "SELECT count(*) FROM results") == 1);  // the newest always stays
  // The pages stay in the file, on the free list (no auto_vacuum)...
  CHECK(query_int(db, "PRAGMA page_count") == pages);
  const int64_t free_pages = query_int(db, "PRAGMA freelist_count");
  CHECK(free_pages > pages / 2);
  // ...and the next rows take them instead of growing the file.
  fill(1);
  CHECK(query_int(db, "SELECT count(*) FROM results") == 3001);
  CHECK(query_int(db, "PRAGMA page_count") <= pages + pages / 20);
  CHECK(query_int(db, "PRAGMA freelist_count") < free_pages / 10);
}

TEST_CASE("retention: the scheduler's pruner deletes one batch per tick, pauses between batches, then waits a period",
          "[retention][sqlite]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.file("ebats.db");
  auto broker = open_db(db, clock);
  const Logger log("test", LogLevel::error);
  const WallMs t0 = clock.wall_now();
  std::vector<ResultRecord> old;
  for (int i = 0; i < 7; ++i) old.push_back(result("old" + std::to_string(i), t0 - 7'200'000 + i));
  add_results(*broker, old);
  add_results(*broker, {result("new0", t0), result("new1", t0)});

  ResultsPruner::Settings settings;
  settings.keep_ms = 3'600'000;
  settings.batch_rows = 3;
  settings.pause = milliseconds(20);
  settings.period = milliseconds(10'000);
  ResultsPruner pruner(settings, *broker, clock, log);
  auto tick = [&] {
    auto n = pruner.tick();
    REQUIRE(n.ok());
    return *n;
  };
  CHECK(pruner.next_due() <= clock.steady_now());
  CHECK(tick() == 3);  // due at once
  CHECK(pruner.next_due() == clock.steady_now() + milliseconds(20));  // the scheduler sleeps no longer
  CHECK(tick() == 0);  // not before the pause
  CHECK(ids_left(db).size() == 6);
  clock.advance(milliseconds(20));
  CHECK(tick() == 3);
  clock.advance(milliseconds(20));
  CHECK(tick() == 1);  // a short batch ends the round
  CHECK(pruner.next_due() == clock.steady_now() + milliseconds(10'000));
  CHECK(ids_left(db) == std::vector<std::string>{"new0", "new1"});
  add_results(*broker, {result("late", t0 - 7'200'000), result("fresh", t0 + 10'000)});
  clock.advance(milliseconds(9'000));
  CHECK(tick() == 0);  // the next round waits a period
  CHECK(ids_left(db).size() == 4);
  clock.advance(milliseconds(1'000));
  CHECK(tick() == 1);
  // Rows age out as the clock moves on, all but the newest.
  clock.advance(milliseconds(3'600'001));
  CHECK(tick() == 2);
  CHECK(ids_left(db) == std::vector<std::string>{"fresh"});
  CHECK(demo_depth(*broker).done == 11);
}

TEST_CASE("retention: the pruner's settings come from results.keep and keep_rows, on SQLite only",
          "[retention][config]") {
  const std::string base = "plugins: {dir: /p}\n";
  auto settings = [&](const std::string& yaml) {
    const ConfigLoad l = load_config_from_string(base + yaml, "t.yaml");
    INFO(l.error_text());
    REQUIRE(l.config != nullptr);
    return ResultsPruner::settings_of(*l.config);
  };
  const ResultsPruner::Settings none = settings("broker: {url: \"sqlite:///x.db\"}\n");
  CHECK_FALSE(none.enabled());
  const ResultsPruner::Settings days = settings("broker: {url: \"sqlite:///x.db\"}\nresults: {keep: 14d}\n");
  CHECK(days.enabled());
  CHECK(days.keep_ms == 14 * 86'400'000LL);
  CHECK(days.keep_rows == 0);
  CHECK(days.period == milliseconds(10'000));
  const ResultsPruner::Settings short_window =
      settings("broker: {url: \"sqlite:///x.db\"}\nresults: {keep: 2s, keep_rows: 5000}\n");
  CHECK(short_window.period == milliseconds(2'000));  // a window shorter than the period shortens it
  CHECK(short_window.keep_rows == 5000);
  // RabbitMQ keeps no results table: nothing to prune there.
  CHECK_FALSE(settings("broker: {url: \"amqp://u@h/\"}\nresults: {keep: 14d}\n").enabled());
}

TEST_CASE("retention: results.keep and keep_rows are read, bad values refused at their line and column",
          "[retention][config]") {
  const std::string required = "broker: {url: \"sqlite:///x.db\"}\nplugins: {dir: /p}\n";
  auto only_error = [](const std::string& yaml) {
    const ConfigLoad l = load_config_from_string(yaml, "t.yaml");
    INFO(l.error_text());
    CHECK(l.config == nullptr);
    REQUIRE(l.errors.size() == 1);
    return l.errors[0].to_string();
  };
  {
    const ConfigLoad l = load_config_from_string(required + "results:\n  keep: 1d12h\n  keep_rows: 1000000\n", "t.yaml");
    INFO(l.error_text());
    REQUIRE(l.config != nullptr);
    CHECK(l.warnings.empty());
    CHECK(l.config->results_keep_ms == 36 * 3'600'000LL);
    CHECK(l.config->results_keep_rows == 1'000'000);
    CHECK(l.config->results_file.empty());
  }
  {
    const ConfigLoad l = load_config_from_string(required + "results: {file: r.jsonl}\n", "t.yaml");
    REQUIRE(l.config != nullptr);
    CHECK(l.config->results_keep_ms == 0);  // no bound: kept for ever
    CHECK(l.config->results_keep_rows == 0);
  }
  CHECK_THAT(only_error(required + "results:\n  keep: 500ms\n"),
             Catch::StartsWith("t.yaml:4:9: error: ") && Catch::Contains("1s"));
  CHECK_THAT(only_error(required + "results:\n  keep: 14\n"), Catch::StartsWith("t.yaml:4:9: error: "));
  CHECK_THAT(only_error(required + "results: {keep: -1d}\n"), Catch::StartsWith("t.yaml:3:17: error: "));
  CHECK_THAT(only_error(required + "results: {keep_rows: 0}\n"), Catch::StartsWith("t.yaml:3:22: error: "));
  CHECK_THAT(only_error(required + "results: {keep_rows: 10k}\n"), Catch::StartsWith("t.yaml:3:22: error: "));
  CHECK(only_error(required + "results: {kepe: 14d}\n") ==
        "t.yaml:3:11: error: unknown key 'kepe' (did you mean 'keep'?)");
  // On RabbitMQ there is no results table: accepted, with a warning.
  const ConfigLoad amqp =
      load_config_from_string("broker: {url: \"amqp://u@h/\"}\nplugins: {dir: /p}\nresults: {keep: 14d}\n", "t.yaml");
  REQUIRE(amqp.config != nullptr);
  REQUIRE(amqp.warnings.size() == 1);
  CHECK_THAT(amqp.warnings[0].to_string(),
             Catch::StartsWith("t.yaml:3:11: warning: results.keep is ignored") && Catch::Contains("results_max_age"));
}

TEST_CASE("retention: the pruner follows a reloaded config's results.keep from its next tick", "[retention][sqlite]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.file("ebats.db");
  auto broker = open_db(db, clock);
  const Logger log("test", LogLevel::error);
  auto config_of = [&](const std::string& results) {
    const ConfigLoad l = load_config_from_string(
        "broker: {url: \"sqlite://" + db + "\"}\nplugins: {dir: /p}\n" + results, "t.yaml");
    INFO(l.error_text());
    REQUIRE(l.config != nullptr);
    return l.config;
  };
  const auto first = config_of("results: {keep: 1d}\n");
  ResultsPruner pruner(ResultsPruner::settings_of(*first), *broker, clock, log);
  const WallMs t0 = clock.wall_now();
  add_results(*broker, {result("two-days", t0 - 2 * 86'400'000LL), result("two-hours", t0 - 7'200'000),
                        result("now", t0)});
  pruner.follow(*first);
  auto pruned = pruner.tick();
  REQUIRE(pruned.ok());
  CHECK(*pruned == 1);
  CHECK(ids_left(db) == std::vector<std::string>{"two-hours", "now"});
  // The same settings again change nothing: the round waits its period.
  const auto same = config_of("results: {keep: 1d}\n");
  pruner.follow(*same);
  pruned = pruner.tick();
  REQUIRE(pruned.ok());
  CHECK(*pruned == 0);
  // A shorter window applies at once.
  const auto shorter = config_of("results: {keep: 1h}\n");
  pruner.follow(*shorter);
  CHECK(pruner.settings().keep_ms == 3'600'000);
  pruned = pruner.tick();
  REQUIRE(pruned.ok());
  CHECK(*pruned == 1);
  CHECK(ids_left(db) == std::vector<std::string>{"now"});
  // No bound any more: nothing is pruned.
  const auto none = config_of("");
  pruner.follow(*none);
  CHECK_FALSE(pruner.settings().enabled());
  add_results(*broker, {result("old", t0 - 7'200'000), result("now2", t0)});
  clock.advance(milliseconds(60'000));
  pruned = pruner.tick();
  REQUIRE(pruned.ok());
  CHECK(*pruned == 0);
  CHECK(ids_left(db).size() == 3);
}
