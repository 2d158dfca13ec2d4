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

constexpr int kSchemaVersion = 1;

// OK when the database holds schema version kSchemaVersion afterwards.
// With !create, an empty database is an error (not_found) rather than created.
// A newer version than this build knows is `unsupported`.
Status ensure_schema(Connection& connection, bool create);

}  // namespace sqlite
}  // namespace ebats
