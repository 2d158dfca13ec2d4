// Connection: one SQLite connection to the ebats database, with its cache of
// prepared statements and the mapping of SQLite errors to Status.
//
// open() applies the connection settings (WAL, synchronous, busy_timeout) and
// checks the folder first, so the common failures (missing or unwritable
// folder, unreadable file) get messages that say how to fix them. A Connection
// belongs to one thread (SQLITE_OPEN_NOMUTEX).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "broker/sqlite/sqlite_counts.h"
#include "broker/sqlite/sqlite_handle.h"
#include "ebats/config.h"
#include "ebats/status.h"

namespace ebats {
namespace sqlite {

class Connection {
 public:
  // Opens (and with `create`, creates) the database file at `path` and applies
  // the settings of `config`. Does not touch the schema (see sqlite_schema.h).
  // Errors: io_error for an unusable folder or file (naming the path, the OS
  // error and a fix), not_found when !create and the file is missing.
  // It also sets journal_size_limit to kWalSizeLimitBytes and the page
  // cache to kPageCacheKiB.
  static Result<std::unique_ptr<Connection>> open(const std::string& path, const SqliteConfig& config, bool create);
  static constexpr int64_t kWalSizeLimitBytes = int64_t{64} << 20;
  // SQLite's default is 2,000 KiB per connection. The hot pages of a queue
  // are few (the heads of the indexes, the pages a batch touches), and the
  // OS keeps the file's pages anyway, so a smaller cache costs a pread now
  // and then and saves each daemon most of those 2 MiB (bench/notes.md).
  static constexpr int kPageCacheKiB = 512;

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_.get(); }
  const std::string& path() const { return path_; }

  // The statement for `sql`, prepared on first use and cached for the life of
  // the connection. REQUIRES: the returned statement is used through one
  // StatementUse at a time.
  Result<sqlite3_stmt*> statement(const std::string& sql);

  // Runs one statement that returns no rows we need (DDL, pragmas), uncached.
  Status exec(const char* sql, const char* what);

  // Switches the fsync on commit off (durable = false: synchronous=NORMAL) or
  // back to the configured level (SqliteConfig::synchronous_full). A no-op
  // when already in that state. REQUIRES: no transaction is open.
  Status set_durable(bool durable);
  // SqliteConfig::sync_progress: whether Transaction::Mode::progress fsyncs.
  bool sync_progress() const { return sync_progress_; }

  // The changes to queue_counts made by the open write transaction, written
  // by its commit (sqlite_counts.h).
  CountDeltas& counts() { return counts_; }

  // The Status for SQLite result code `rc` from the operation `what`, e.g.
  // "database /var/lib/ebats/ebats.db is locked by another process (waited 5s)"
  // for SQLITE_BUSY.
  Status error(int rc, const std::string& what) const;

 private:
  // The busy handler: short polls until busy_timeout_ms_ has passed.
  static int on_busy(void* self, int attempts);
  Connection(DbHandle db, std::string path, int64_t busy_timeout_ms, bool synchronous_full, bool sync_progress)
      : db_(std::move(db)),
        path_(std::move(path)),
        busy_timeout_ms_(busy_timeout_ms),
        synchronous_full_(synchronous_full),
        sync_progress_(sync_progress) {}

  DbHandle db_;  // declared first: statements_ are finalized before the close
  std::string path_;
  int64_t busy_timeout_ms_;
  bool synchronous_full_;
  bool sync_progress_;
  bool durable_ = false;  // set by open()
  std::chrono::steady_clock::time_point busy_since_{};
  std::unordered_map<std::string, StatementHandle> statements_;
  CountDeltas counts_;
};

// A transaction on `connection`, rolled back on destruction unless commit()
// succeeded. Writers take the write lock up front (BEGIN IMMEDIATE), so the
// busy handler applies and a deferred read never has to upgrade; readers that
// need one snapshot use Mode::deferred. The writer modes differ in the fsync
// at commit (docs/BROKER.md, "Durability"):
//   immediate           fsynced (synchronous: full): what a caller was promised,
//                       like a publish, an enqueue, a replay;
//   progress            fsynced only with sync_progress: consumer progress
//                       (routing, completions, recoveries). A power loss can
//                       only roll it back, which hands its deliveries out again
//                       (repeated work, nothing lost), and the next fsynced
//                       commit of any process syncs the WAL, its frames included;
//   immediate_no_fsync  never fsynced: claims and lease extensions, whose loss
//                       only returns tasks to ready.
class Transaction {
 public:
  enum class Mode { immediate, progress, immediate_no_fsync, deferred };
  Transaction(Connection& connection, Mode mode) : connection_(connection), mode_(mode) {}
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // busy (the database stayed locked beyond busy_timeout) or io_error.
  Status begin();
  // Writes the connection's CountDeltas, then commits. Returns once the
  // transaction is durable (as synchronous allows).
  Status commit();

 private:
  Connection& connection_;
  Mode mode_;
  bool open_ = false;
};

// Runs `use.step()` until SQLITE_DONE, ignoring rows; returns the Status.
Status run_to_completion(Connection& connection, StatementUse& use, const char* what);

}  // namespace sqlite
}  // namespace ebats
