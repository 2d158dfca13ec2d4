// Checkpointer: WAL checkpoints run on its thread once the watched connection's
// commits push the WAL past the threshold, and never below it.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "broker/sqlite/sqlite_checkpointer.h"
#include "broker/sqlite/sqlite_connection.h"
#include "support/temp_dir.h"

using namespace ebats;
using namespace ebats::sqlite;

namespace {

using ebats::test::TempDir;

// Commits one row of `bytes` bytes through `connection`.
void commit_row(Connection& connection, size_t bytes) {
  Transaction txn(connection, Transaction::Mode::immediate_no_fsync);
  REQUIRE(txn.begin().ok());
  auto stmt = connection.statement("INSERT INTO filler (body) VALUES (?1)");
  REQUIRE(stmt.ok());
  const std::string body(bytes, 'x');  // bound without a copy: must outlive the step
  StatementUse use(*stmt);
  use.bind_text(1, body);
  REQUIRE(run_to_completion(connection, use, "inserting filler").ok());
  REQUIRE(txn.commit().ok());
}

// Waits up to 10 s (never a timing assertion: only a bound on a hang) for `done`.
template <class Done>
bool eventually(Done done) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace

TEST_CASE("checkpointer: commits past the threshold are checkpointed on its thread", "[sqlite][checkpointer]") {
  TempDir folder;
  SqliteConfig config;
  auto watched = Connection::open(folder.file("q.db"), config, true);
  REQUIRE(watched.ok());
  REQUIRE((*watched)->exec("CREATE TABLE filler (body TEXT)", "creating a table").ok());
  auto checkpointer = Checkpointer::start(**watched, config, /*threshold_pages=*/8);
  REQUIRE(checkpointer.ok());

  commit_row(**watched, 100);  // one or two pages: below the threshold
  CHECK((*checkpointer)->completed() == 0);

  for (int i = 0; i < 4; ++i) commit_row(**watched, 16 * 1024);  // four overflow chains of 4+ pages
  CHECK(eventually([&] { return (*checkpointer)->completed() > 0; }));

  // The rows are in the database file: a fresh reader sees them all.
  auto reader = Connection::open(folder.file("q.db"), config, false);
  REQUIRE(reader.ok());
  auto count = (*reader)->statement("SELECT count(*) FROM filler");
  REQUIRE(count.ok());
  StatementUse use(*count);
  REQUIRE(use.step() == SQLITE_ROW);
  CHECK(use.int_column(0) == 5);
}

TEST_CASE("checkpointer: stopping it hands checkpoints back to SQLite", "[sqlite][checkpointer]") {
  TempDir folder;
  SqliteConfig config;
  auto watched = Connection::open(folder.file("q.db"), config, true);
  REQUIRE(watched.ok());
  REQUIRE((*watched)->exec("CREATE TABLE filler (body TEXT)", "creating a table").ok());
  {
    auto checkpointer = Checkpointer::start(**watched, config, 8);
    REQUIRE(checkpointer.ok());
  }  // destroyed: unhooked and joined
  // Commits after it is gone must not call into it (ASan would see a
  // use-after-free); SQLite's automatic checkpoint is back.
  for (int i = 0; i < 4; ++i) commit_row(**watched, 16 * 1024);
  int wal_frames = -1, copied = -1;
  REQUIRE(sqlite3_wal_checkpoint_v2((*watched)->db(), "main", SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied) ==
          SQLITE_OK);
  CHECK(wal_frames >= 0);
}

TEST_CASE("a WAL that grew is cut back to journal_size_limit when it restarts", "[sqlite]") {
  // It used to keep its peak size for ever (103 MB after 200,000 tasks).
  TempDir dir;
  const std::string path = dir.path() + "/wal.db";
  auto opened = Connection::open(path, SqliteConfig{}, true);
  REQUIRE(opened.ok());
  Connection& c = **opened;
  REQUIRE(c.exec("CREATE TABLE filler (body TEXT)", "creating filler").ok());
  // One burst larger than the limit, in a single transaction.
  {
    Transaction txn(c, Transaction::Mode::immediate_no_fsync);
    REQUIRE(txn.begin().ok());
    REQUIRE(c.exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80) "
                   "INSERT INTO filler (body) SELECT randomblob(1048576) FROM n",
                   "inserting a burst")
                .ok());
    REQUIRE(txn.commit().ok());
  }
  const auto wal_bytes = [&] { return static_cast<int64_t>(std::filesystem::file_size(path + "-wal")); };
  REQUIRE(wal_bytes() > Connection::kWalSizeLimitBytes);
  // Everything checkpointed, no reader: the next write restarts the WAL.
  REQUIRE(c.exec("PRAGMA wal_checkpoint(PASSIVE)", "checkpointing").ok());
  commit_row(c, 100);
  CHECK(wal_bytes() <= Connection::kWalSizeLimitBytes);
}
