// The SQLite schema of the ebats database (docs/BROKER.md) and its creation.
//
// The schema version lives in PRAGMA user_version. ensure_schema() creates the
// tables on a new file, or migrates an older version, inside one BEGIN
// IMMEDIATE transaction, so several processes opening a fresh file at once
// create it exactly once.
#pragma once

#include "broker/sqlite/sqlite_connection.h"
#include "ebats/status.h"

namespace ebats {
namespace sqlite {

// 1: the first schema. 2: adds topic_totals (ok results per topic, kept by
// each commit, so `ebatsctl stats` needs no scan of results). 3: dead-letter
// ids never reused. 4: adds queue_counts (sqlite_counts.h), so `ebatsctl
// stats` needs no count of the queued rows either.
constexpr int kSchemaVersion = 4;

// OK when the database holds schema version kSchemaVersion afterwards: a new
// file gets the whole schema, an older version is migrated step by step.
// With !create, an empty database is an error (not_found) rather than created.
// A newer version than this build knows is `unsupported`.
Status ensure_schema(Connection& connection, bool create);

// Counts the queued rows and dead letters again into queue_counts
// (sqlite_counts.h), in one write transaction: what `ebatsctl setup` does
// after anything but ebats (the sqlite3 shell) changed those tables.
// REQUIRES: no transaction is open on `connection`.
Status recount_queues(Connection& connection);

}  // namespace sqlite
}  // namespace ebats
