// Checkpointer: runs the WAL checkpoints of one connection on a thread of its
// own.
//
// SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past
// 1000 pages: that commit then also copies the pages into the database file
// and fsyncs both files, and a daemon's loop (dispatching tasks, routing
// events) stands still meanwhile. A Checkpointer replaces it on the watched
// connection (sqlite3_wal_hook): past the same threshold the commit only wakes
// this thread, which runs a PASSIVE checkpoint on a connection of its own
// (never blocking writers or readers, as the automatic one). A checkpoint that
// fails or cannot finish (a reader still needs old frames) is simply tried
// again after the next commit, as SQLite's own would be.
//
// Lifetime: REQUIRES the watched connection to outlive the Checkpointer; the
// destructor unhooks it, then stops and joins the thread. Neither copyable
// nor movable (the hook holds its address).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "broker/sqlite/sqlite_connection.h"

namespace ebats {
namespace sqlite {

class Checkpointer {
 public:
  // Opens a second connection to `watched`'s file and starts the thread.
  // Errors (the connection, or a thread the system refuses) leave `watched`
  // with SQLite's automatic checkpoint, so the caller may go on without one.
  static Result<std::unique_ptr<Checkpointer>> start(Connection& watched, const SqliteConfig& config,
                                                     int threshold_pages = kDefaultThresholdPages);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Checkpoints completed so far (for tests and diagnostics).
  uint64_t completed() const;

  static constexpr int kDefaultThresholdPages = 1000;  // SQLite's own default

 private:
  Checkpointer(Connection& watched, std::unique_ptr<Connection> own, int threshold_pages);
  // The wal_hook: called by the watched connection after each commit.
  static int on_commit(void* self, sqlite3* db, const char* schema, int wal_pages);
  void run();

  Connection& watched_;
  std::unique_ptr<Connection> own_;
  const int threshold_pages_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool wanted_ = false;    // guarded by mutex_
  bool stopping_ = false;  // guarded by mutex_
  uint64_t completed_ = 0;  // guarded by mutex_
  std::thread thread_;     // last: started once everything above exists
};

}  // namespace sqlite
}  // namespace ebats
