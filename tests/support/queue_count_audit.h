// Checks the SQLite backend's queue_counts (libebats/src/broker/sqlite/
// sqlite_counts.h) against the rows they count, so every test that leaves a
// database behind also proves that no commit path forgot its count.
#pragma once

#include <sqlite3.h>

#include <string>

namespace ebats {
namespace test {

// "" when every count in queue_counts equals a count of the rows in the
// database at `path`; otherwise a line per (topic, counter) that differs,
// "topic/counter: kept K, rows R". A database that cannot be read, or has no
// queue_counts table, is reported the same way.
inline std::string queue_count_mismatches(const std::string& path) {
  static const char* const kSql = R"sql(
WITH actual(topic, counter, n) AS (
  SELECT topic, lane, count(*) FROM tasks WHERE state = 'ready' GROUP BY topic, lane
  UNION ALL SELECT '', 'e', count(*) FROM events WHERE state = 'ready' HAVING count(*) > 0
  UNION ALL SELECT topic, 'dead', count(*) FROM dead_letters GROUP BY topic),
kept AS (SELECT topic, counter, n FROM queue_counts WHERE n <> 0)
SELECT a.topic, a.counter, coalesce(k.n, 0), a.n FROM actual a LEFT JOIN kept k USING (topic, counter)
  WHERE a.n <> coalesce(k.n, 0)
UNION ALL
SELECT k.topic, k.counter, k.n, 0 FROM kept k
  WHERE NOT EXISTS (SELECT 1 FROM actual a WHERE a.topic = k.topic AND a.counter = k.counter)
)sql";
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    out = path + ": " + sqlite3_errmsg(db) + "\n";
    sqlite3_close(db);
    return out;
  }
  sqlite3_busy_timeout(db, 10'000);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, kSql, -1, &stmt, nullptr) != SQLITE_OK) {
    out = path + ": " + sqlite3_errmsg(db) + "\n";
  } else {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      auto text = [&](int i) { return std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, i))); };
      out += text(0) + "/" + text(1) + ": kept " + text(2) + ", rows " + text(3) + "\n";
    }
    if (rc != SQLITE_DONE) out += path + ": " + sqlite3_errmsg(db) + "\n";
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

}  // namespace test
}  // namespace ebats
