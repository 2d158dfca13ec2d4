#include "broker/sqlite/sqlite_connection.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <filesystem>
#include <thread>

#include "ebats/duration.h"

namespace ebats {
namespace sqlite {
namespace {

std::string os_error(int err) { return std::strerror(err); }

// Another connection holds a lock this one needs (any extended code of the two).
bool is_busy(int rc) { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }

std::string folder_of(const std::string& path) {
  std::string folder = std::filesystem::path(path).parent_path().string();
  return folder.empty() ? std::string(".") : folder;
}

// Checks what SQLite would only report as "unable to open database file":
// the folder must exist and be writable (WAL creates <db>-wal and <db>-shm next
// to the file), and an existing file must be readable and writable.
Status check_location(const std::string& path, bool create) {
  const std::string folder = folder_of(path);
  struct stat st {};
  if (stat(folder.c_str(), &st) != 0) {
    const int err = errno;
    return Status::io("cannot open database " + path + ": folder " + folder + " is not accessible (" +
                      os_error(err) + "); create it (mkdir -p " + folder +
                      ") or fix broker.url in the config");
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::io("cannot open database " + path + ": " + folder + " is not a folder; fix broker.url in the config");
  }
  if (access(folder.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    return Status::io("cannot open database " + path + ": folder " + folder + " is not writable (" + os_error(err) +
                      "); SQLite's WAL mode creates " + path + "-wal and " + path +
                      "-shm there. Fix the folder's permissions (e.g. chgrp ebats " + folder + " && chmod 0770 " +
                      folder + ") or run as a member of its group");
  }
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT && !create) {
      return Status::not_found("database " + path +
                               " does not exist; create it with `ebatsctl setup` (or start ebats-scheduler), or fix "
                               "broker.url in the config");
    }
    if (err != ENOENT) return Status::io("cannot open database " + path + ": " + os_error(err));
    return Status();
  }
  if (access(path.c_str(), R_OK | W_OK) != 0) {
    const int err = errno;
    return Status::io("cannot open database " + path + ": the file is not readable and writable by this user (" +
                      os_error(err) + "); fix its permissions (e.g. chgrp ebats " + path + " && chmod 0660 " + path +
                      ")");
  }
  return Status();
}

}  // namespace

int Connection::on_busy(void* self, int attempts) {
  // SQLite's own busy_timeout handler sleeps 1, 2, 5, 10 ... 100 ms in turn,
  // so a waiting daemon usually sleeps long past the moment the other one
  // releases the write lock; the scheduler and a worker contend for it all the
  // time. Poll in short steps instead: 100 us, then 1 ms after 10 ms of waiting.
  // The steady clock here only bounds a lock wait; no task timing reads it.
  auto* c = static_cast<Connection*>(self);
  const auto now = std::chrono::steady_clock::now();
  if (attempts == 0) c->busy_since_ = now;
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - c->busy_since_).count();
  if (waited >= c->busy_timeout_ms_) return 0;  // give up: SQLITE_BUSY
  std::this_thread::sleep_for(waited < 10 ? std::chrono::microseconds(100) : std::chrono::microseconds(1000));
  return 1;
}

Result<std::unique_ptr<Connection>> Connection::open(const std::string& path, const SqliteConfig& config,
                                                     bool create) {
  if (path.empty()) return Status::invalid("empty SQLite database path; expected a URL like sqlite:///var/lib/ebats/ebats.db");
  Status location = check_location(path, create);
  if (!location.ok()) return location;

  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (create) flags |= SQLITE_OPEN_CREATE;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  DbHandle db(raw);  // owns the handle even when the open failed
  if (rc != SQLITE_OK) {
    std::string message = "cannot open database " + path + ": " +
                          (raw != nullptr ? std::string(sqlite3_errmsg(raw)) : std::string(sqlite3_errstr(rc)));
    const int err = raw != nullptr ? sqlite3_system_errno(raw) : 0;
    if (err != 0) message += " (" + os_error(err) + ")";
    return Status::io(message + "; check that the folder exists and is writable by this user");
  }

  const int64_t busy_ms = config.busy_timeout_ms < 0 ? 0 : config.busy_timeout_ms;
  std::unique_ptr<Connection> connection(new Connection(std::move(db), path, busy_ms, config.synchronous_full, config.sync_progress));
  sqlite3_busy_handler(connection->db(), &Connection::on_busy, connection.get());

  // journal_mode returns the mode now in effect: anything but "wal" means the
  // file cannot be shared safely (e.g. a filesystem without shared memory).
  // Processes opening a new file at once (systemd starts the daemons
  // together) race to switch it to WAL. SQLite then returns SQLITE_BUSY to a
  // loser holding a shared lock at once, without its busy handler (waiting
  // could deadlock), so it is retried here, fresh, for up to busy_timeout.
  {
    auto stmt = connection->statement("PRAGMA journal_mode=WAL");
    if (!stmt.ok()) return stmt.status();
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_ms);
    std::chrono::milliseconds pause(1);
    for (;;) {
      StatementUse use(*stmt);
      const int step = use.step();
      if (step == SQLITE_ROW) {
        const std::string mode = use.bytes_column(0);
        if (mode != "wal") {
          return Status::io("database " + path + " cannot use WAL mode (journal_mode is '" + mode +
                            "'); put it on a local filesystem (WAL needs shared memory; never NFS)");
        }
        break;
      }
      if (!is_busy(step) || std::chrono::steady_clock::now() >= give_up) {
        return connection->error(step, "switching to WAL mode");
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
  }
  Status sync = connection->set_durable(true);
  if (!sync.ok()) return sync;
  Status temp = connection->exec("PRAGMA temp_store=MEMORY", "setting temp_store");
  if (!temp.ok()) return temp;
  // A WAL that once grew (a burst, a reader holding old frames) is cut back to
  // this size the next time it restarts, instead of keeping its peak for ever.
  const std::string wal_limit = "PRAGMA journal_size_limit=" + std::to_string(kWalSizeLimitBytes);
  Status limit = connection->exec(wal_limit.c_str(), "setting journal_size_limit");
  if (!limit.ok()) return limit;
  const std::string cache = "PRAGMA cache_size=-" + std::to_string(kPageCacheKiB);
  Status cached = connection->exec(cache.c_str(), "setting cache_size");
  if (!cached.ok()) return cached;
  return connection;
}

Result<sqlite3_stmt*> Connection::statement(const std::string& sql) {
  auto found = statements_.find(sql);
  if (found != statements_.end()) return found->second.get();
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size() + 1),
                                    SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  StatementHandle handle(raw);
  if (rc != SQLITE_OK) return error(rc, "preparing `" + sql + "`");
  if (raw == nullptr) return Status::internal("preparing `" + sql + "` produced no statement");
  statements_.emplace(sql, std::move(handle));
  return raw;
}

Status Connection::set_durable(bool durable) {
  if (durable == durable_) return Status();
  // NORMAL in WAL mode: no fsync at commit, but checkpoints still sync the WAL
  // before copying it and the database after, so earlier durable commits stay safe.
  const char* sql = durable && synchronous_full_ ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
  auto stmt = statement(sql);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  const int rc = use.step();
  if (rc != SQLITE_DONE) return error(rc, "setting PRAGMA synchronous");
  durable_ = durable;
  return Status();
}

Status Connection::exec(const char* sql, const char* what) {
  const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status() : error(rc, what);
}

Status Connection::error(int rc, const std::string& what) const {
  const int primary = rc & 0xff;
  if (is_busy(rc)) {
    return Status::busy("database " + path_ + " is locked by another process (waited " +
                        format_duration(Millis(busy_timeout_ms_)) + ") while " + what +
                        "; retry later, or raise broker.sqlite.busy_timeout");
  }
  const std::string detail = db_.get() != nullptr ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
  switch (primary) {
    case SQLITE_FULL:
      return Status::io("database " + path_ + ": disk full while " + what + "; free space on its filesystem");
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
      return Status::io("database " + path_ + " cannot be written while " + what + " (" + detail +
                        "); check the permissions of the file, its -wal/-shm files and its folder");
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::io("database " + path_ + " is damaged or not an SQLite database (" + detail + ") while " + what +
                        "; restore it from a backup or point broker.url at another file");
    case SQLITE_IOERR: {
      const int err = db_.get() != nullptr ? sqlite3_system_errno(db_.get()) : 0;
      return Status::io("database " + path_ + ": I/O error while " + what + " (" + detail +
                        (err != 0 ? ", " + os_error(err) : std::string()) + ")");
    }
    case SQLITE_CONSTRAINT:
      return Status::invalid("database " + path_ + ": constraint failed while " + what + " (" + detail + ")");
    default:
      return Status::io("database " + path_ + ": " + what + " failed: " + detail + " (SQLite code " +
                        std::to_string(rc) + ")");
  }
}

Transaction::~Transaction() {
  if (!open_) return;
  connection_.counts().clear();
  auto stmt = connection_.statement("ROLLBACK");
  if (!stmt.ok()) return;
  StatementUse use(*stmt);
  use.step();  // nothing useful to do with a failed rollback: SQLite rolls back on close too
}

Status Transaction::begin() {
  if (mode_ != Mode::deferred) {
    const bool fsync = mode_ == Mode::immediate || (mode_ == Mode::progress && connection_.sync_progress());
    Status durability = connection_.set_durable(fsync);
    if (!durability.ok()) return durability;
  }
  auto stmt = connection_.statement(mode_ == Mode::deferred ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE");
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  const int rc = use.step();
  if (rc != SQLITE_DONE) return connection_.error(rc, "starting a transaction");
  open_ = true;
  connection_.counts().clear();
  return Status();
}

Status Transaction::commit() {
  Status counted = connection_.counts().flush(connection_);
  if (!counted.ok()) return counted;
  auto stmt = connection_.statement("COMMIT");
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  const int rc = use.step();
  if (rc != SQLITE_DONE) return connection_.error(rc, "committing a transaction");  // still open: rolled back
  open_ = false;
  return Status();
}

Status run_to_completion(Connection& connection, StatementUse& use, const char* what) {
  for (;;) {
    const int rc = use.step();
    if (rc == SQLITE_DONE) return Status();
    if (rc != SQLITE_ROW) return connection.error(rc, what);
  }
}

}  // namespace sqlite
}  // namespace ebats
