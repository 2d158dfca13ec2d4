#include "broker/sqlite/sqlite_schema.h"

#include <string>

namespace ebats {
namespace sqlite {
namespace {

// Version 1, as it was created; later versions migrate from it. Tokens handed
// out by claim() are the seq of a tasks row, or the seq of an events row with
// kEventTokenBit set (sqlite_broker.cpp).
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE events (
  seq         INTEGER PRIMARY KEY,
  id          TEXT    NOT NULL UNIQUE,
  name        TEXT    NOT NULL,
  body        BLOB    NOT NULL,
  created_at  INTEGER NOT NULL,
  state       TEXT    NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'leased')),
  lease_until INTEGER,
  lease_owner TEXT
) STRICT;
CREATE INDEX events_ready  ON events(seq) WHERE state = 'ready';
CREATE INDEX events_leases ON events(lease_until) WHERE state = 'leased';

CREATE TABLE tasks (
  seq          INTEGER PRIMARY KEY,
  id           TEXT    NOT NULL UNIQUE,
  topic        TEXT    NOT NULL,
  task         TEXT    NOT NULL,
  lane         TEXT    NOT NULL CHECK (lane IN ('n', 'd')),
  state        TEXT    NOT NULL CHECK (state IN ('ready', 'leased')),
  due_at       INTEGER NOT NULL,
  lease_until  INTEGER,
  lease_owner  TEXT,
  attempt      INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  body         BLOB    NOT NULL,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  last_error   TEXT
) STRICT;
CREATE INDEX tasks_due    ON tasks(topic, lane, due_at) WHERE state = 'ready';
CREATE INDEX tasks_leases ON tasks(topic, lane, lease_until) WHERE state = 'leased';

CREATE TABLE dead_letters (
  seq        INTEGER PRIMARY KEY,
  id         TEXT    NOT NULL,
  kind       TEXT    NOT NULL CHECK (kind IN ('event', 'task', 'raw')),
  topic      TEXT    NOT NULL DEFAULT '',
  name       TEXT    NOT NULL DEFAULT '',
  reason     TEXT    NOT NULL,
  error      TEXT    NOT NULL DEFAULT '',
  attempts   INTEGER NOT NULL DEFAULT 0,
  body       BLOB    NOT NULL,
  first_seen INTEGER NOT NULL,
  dead_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX dl_reason ON dead_letters(reason, dead_at);
CREATE INDEX dl_id     ON dead_letters(id);

CREATE TABLE results (
  seq         INTEGER PRIMARY KEY,
  topic       TEXT    NOT NULL,
  task_id     TEXT    NOT NULL,
  task        TEXT    NOT NULL,
  params      TEXT    NOT NULL,
  time_ms     INTEGER NOT NULL,
  message     TEXT    NOT NULL,
  status      TEXT    NOT NULL,
  attempt     INTEGER NOT NULL,
  started_at  INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  trace       TEXT    NOT NULL,
  host        TEXT    NOT NULL,
  pid         INTEGER NOT NULL,
  due_at      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX results_task ON results(task_id);
CREATE INDEX results_time ON results(finished_at);

PRAGMA user_version = 1;
)sql";

// Version 2: the count of ok results per topic, kept by every commit that
// writes results (sqlite_broker.cpp), starting from what results holds.
constexpr const char* kMigrateTo2 = R"sql(
CREATE TABLE topic_totals (
  topic TEXT    PRIMARY KEY,
  done  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO topic_totals (topic, done) SELECT topic, count(*) FROM results WHERE status = 'ok' GROUP BY topic;
PRAGMA user_version = 2;
)sql";

// Version 3: dead-letter ids (seq) are never reused. Without AUTOINCREMENT
// SQLite hands out max(seq) + 1, so after a purge or a replay of the newest
// letters an id noted earlier named another letter. The table is rebuilt
// with AUTOINCREMENT, its rows and ids kept.
constexpr const char* kMigrateTo3 = R"sql(
CREATE TABLE dead_letters_v3 (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  id         TEXT    NOT NULL,
  kind       TEXT    NOT NULL CHECK (kind IN ('event', 'task', 'raw')),
  topic      TEXT    NOT NULL DEFAULT '',
  name       TEXT    NOT NULL DEFAULT '',
  reason     TEXT    NOT NULL,
  error      TEXT    NOT NULL DEFAULT '',
  attempts   INTEGER NOT NULL DEFAULT 0,
  body       BLOB    NOT NULL,
  first_seen INTEGER NOT NULL,
  dead_at    INTEGER NOT NULL
) STRICT;
INSERT INTO dead_letters_v3 SELECT * FROM dead_letters;
DROP TABLE dead_letters;
ALTER TABLE dead_letters_v3 RENAME TO dead_letters;
CREATE INDEX dl_reason ON dead_letters(reason, dead_at);
CREATE INDEX dl_id     ON dead_letters(id);
PRAGMA user_version = 3;
)sql";

// Version 4: queue_counts (sqlite_counts.h), the rows each queue holds, kept
// by every commit that changes them, starting from what the tables hold.
const std::string kCountQueuedRows = R"sql(
INSERT INTO queue_counts (topic, counter, n)
  SELECT topic, lane, count(*) FROM tasks WHERE state = 'ready' GROUP BY topic, lane;
INSERT INTO queue_counts (topic, counter, n)
  SELECT '', 'e', count(*) FROM events WHERE state = 'ready' HAVING count(*) > 0;
INSERT INTO queue_counts (topic, counter, n)
  SELECT topic, 'dead', count(*) FROM dead_letters GROUP BY topic;
)sql";
const std::string kMigrateTo4 = R"sql(
CREATE TABLE queue_counts (
  topic   TEXT    NOT NULL,
  counter TEXT    NOT NULL CHECK (counter IN ('n', 'd', 'e', 'dead')),
  n       INTEGER NOT NULL,
  PRIMARY KEY (topic, counter)
) STRICT, WITHOUT ROWID;
)sql" + kCountQueuedRows + "PRAGMA user_version = 4;\n";
const std::string kRecount = "DELETE FROM queue_counts;\n" + kCountQueuedRows;

Result<int> read_user_version(Connection& connection) {
  auto stmt = connection.statement("PRAGMA user_version");
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  const int rc = use.step();
  if (rc != SQLITE_ROW) return connection.error(rc, "reading the schema version");
  return static_cast<int>(use.int_column(0));
}

Status check_version(const Connection& connection, int version) {
  if (version > kSchemaVersion) {
    return Status::error(StatusCode::unsupported,
                         "database " + connection.path() + " has schema version " + std::to_string(version) +
                             " but this ebats knows versions up to " + std::to_string(kSchemaVersion) +
                             "; upgrade ebats on this host");
  }
  return Status();
}

}  // namespace

Status recount_queues(Connection& connection) {
  Transaction txn(connection, Transaction::Mode::immediate);
  Status status = txn.begin();
  if (status.ok()) status = connection.exec(kRecount.c_str(), "recounting the queued rows");
  if (status.ok()) status = txn.commit();
  return status;
}

Status ensure_schema(Connection& connection, bool create) {
  // Cheap check first: an up-to-date database needs no write lock.
  auto version = read_user_version(connection);
  if (!version.ok()) return version.status();
  if (*version == kSchemaVersion) return Status();
  Status newer = check_version(connection, *version);
  if (!newer.ok()) return newer;
  if (*version == 0 && !create) {  // an older schema is migrated whatever `create` says
    return Status::not_found("database " + connection.path() + " has no ebats schema (user_version " +
                             std::to_string(*version) + "); create it with `ebatsctl setup`");
  }

  Transaction txn(connection, Transaction::Mode::immediate);
  Status begun = txn.begin();
  if (!begun.ok()) return begun.with_context(*version == 0 ? "creating the ebats schema" : "migrating the ebats schema");
  version = read_user_version(connection);  // another process may have won the race
  if (!version.ok()) return version.status();
  if (*version == kSchemaVersion) return Status();
  newer = check_version(connection, *version);
  if (!newer.ok()) return newer;
  if (*version == 0) {
    Status created = connection.exec(kSchemaV1, "creating the ebats schema");
    if (!created.ok()) return created;
  }
  if (*version < 2) {
    Status migrated = connection.exec(kMigrateTo2, "migrating the ebats schema to version 2");
    if (!migrated.ok()) return migrated;
  }
  if (*version < 3) {
    Status migrated = connection.exec(kMigrateTo3, "migrating the ebats schema to version 3");
    if (!migrated.ok()) return migrated;
  }
  if (*version < 4) {
    Status migrated = connection.exec(kMigrateTo4.c_str(), "migrating the ebats schema to version 4");
    if (!migrated.ok()) return migrated;
  }
  return txn.commit();
}

}  // namespace sqlite
}  // namespace ebats
