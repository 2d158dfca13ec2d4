// Which commits the SQLite backend fsyncs: the transaction modes against the
// PRAGMA synchronous they run under, and which batches count as progress.
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <string>

#include "broker/sqlite/sqlite_broker.h"
#include "broker/sqlite/sqlite_connection.h"
#include "support/temp_dir.h"

using namespace ebats;
using namespace ebats::sqlite;

namespace {

constexpr int64_t kNormal = 1;  // PRAGMA synchronous values
constexpr int64_t kFull = 2;

using ebats::test::TempDir;

// The value a one-row PRAGMA query answers.
int64_t pragma(Connection& connection, const std::string& query) {
  auto stmt = connection.statement(query);
  REQUIRE(stmt.ok());
  StatementUse use(*stmt);
  REQUIRE(use.step() == SQLITE_ROW);
  return use.int_column(0);
}

// The PRAGMA synchronous in effect inside a transaction of `mode`.
int64_t synchronous_inside(Connection& connection, Transaction::Mode mode) {
  Transaction txn(connection, mode);
  REQUIRE(txn.begin().ok());
  auto stmt = connection.statement("PRAGMA synchronous");
  REQUIRE(stmt.ok());
  StatementUse use(*stmt);
  REQUIRE(use.step() == SQLITE_ROW);
  const int64_t level = use.int_column(0);
  REQUIRE(txn.commit().ok());
  return level;
}

std::unique_ptr<Connection> open_with(const TempDir& db, bool synchronous_full, bool sync_progress) {
  SqliteConfig config;
  config.synchronous_full = synchronous_full;
  config.sync_progress = sync_progress;
  auto connection = Connection::open(db.file("q.db"), config, true);
  REQUIRE(connection.ok());
  return std::move(connection).value();
}

}  // namespace

TEST_CASE("sqlite durability: by default promises are fsynced and progress is not", "[sqlite][durability]") {
  TempDir db;
  auto connection = open_with(db, true, false);
  CHECK(synchronous_inside(*connection, Transaction::Mode::immediate) == kFull);
  CHECK(synchronous_inside(*connection, Transaction::Mode::progress) == kNormal);
  CHECK(synchronous_inside(*connection, Transaction::Mode::immediate_no_fsync) == kNormal);
  // Switching back and forth on one connection keeps following the mode.
  CHECK(synchronous_inside(*connection, Transaction::Mode::immediate) == kFull);
}

TEST_CASE("sqlite durability: sync_progress fsyncs progress too, but not claims", "[sqlite][durability]") {
  TempDir db;
  auto connection = open_with(db, true, true);
  CHECK(synchronous_inside(*connection, Transaction::Mode::immediate) == kFull);
  CHECK(synchronous_inside(*connection, Transaction::Mode::progress) == kFull);
  CHECK(synchronous_inside(*connection, Transaction::Mode::immediate_no_fsync) == kNormal);
}

TEST_CASE("sqlite durability: synchronous normal fsyncs nothing at commit", "[sqlite][durability]") {
  TempDir db;
  auto connection = open_with(db, false, true);
  CHECK(synchronous_inside(*connection, Transaction::Mode::immediate) == kNormal);
  CHECK(synchronous_inside(*connection, Transaction::Mode::progress) == kNormal);
}

TEST_CASE("sqlite durability: only a batch that just settles deliveries is progress", "[sqlite][durability]") {
  Settle retry;
  retry.token = 1;
  retry.then_publish.push_back(OutMsg{});  // rides on the settle: progress
  Batch worker;
  worker.settle.push_back(retry);
  worker.results.push_back(ResultRecord{});
  CHECK(commit_mode(worker) == Transaction::Mode::progress);

  Batch publish;  // a producer's publish: durable on return
  publish.publish.push_back(OutMsg{});
  CHECK(commit_mode(publish) == Transaction::Mode::immediate);

  Batch mixed = worker;  // a settle plus a publish of its own: durable
  mixed.publish.push_back(OutMsg{});
  CHECK(commit_mode(mixed) == Transaction::Mode::immediate);

  Batch dead = worker;  // a dead letter of its own: durable
  dead.dead.push_back(DeadLetter{});
  CHECK(commit_mode(dead) == Transaction::Mode::immediate);
}

TEST_CASE("sqlite connection: the settings docs/BROKER.md lists are the ones in effect", "[sqlite][docs]") {
  TempDir db;
  auto connection = open_with(db, true, false);
  CHECK(pragma(*connection, "PRAGMA cache_size") == -Connection::kPageCacheKiB);
  CHECK(pragma(*connection, "PRAGMA journal_size_limit") == Connection::kWalSizeLimitBytes);
  CHECK(pragma(*connection, "PRAGMA temp_store") == 2);  // MEMORY
  std::ifstream in(std::string(EBATS_SOURCE_DIR) + "/docs/BROKER.md");
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(doc, Catch::Contains("`PRAGMA cache_size=-" + std::to_string(Connection::kPageCacheKiB) + "`"));
  CHECK_THAT(doc, Catch::Contains("`PRAGMA temp_store=MEMORY`"));
  CHECK_THAT(doc, Catch::Contains("`journal_size_limit` to " + std::to_string(Connection::kWalSizeLimitBytes >> 20) + " MiB"));
}
