// sqlite_limit: the physical-limit program of the benchmark (bench/run.sh).
//
// A bare program doing a task queue's row operations on one SQLite file, with
// nothing else around them: no daemons, no processes, no JSON, no plugins.
// It uses ebats' table shapes (tasks, results, events; copied, not linked, so
// that it stays a program with no ebats in it: libebats/src/broker/sqlite/
// sqlite_schema.cpp) and time-ordered ids as ebats makes them, WAL, and
// transactions of --batch rows:
//   1. insert --tasks task rows (one transaction per batch);
//   2. until the queue is empty: claim a batch with a lease
//      (UPDATE ... RETURNING, one transaction), then delete the claimed rows
//      and insert one result row each (one transaction).
// The rate is tasks / (time of 1 + time of 2): the most any SQLite-backed
// queue can do on this machine and disk with this durability, the yardstick
// ebats' end-to-end rate is divided by.
//
// With --commit-rate R, it then also times single durable commits, the floor
// of a pickup's publish (bench/run.sh, "pickup"): --commits rows inserted one
// per transaction, each fsynced (synchronous=FULL), into a table shaped like
// ebats' events (its id index and the partial index of ready events), on a
// fixed schedule of R a second, in the database the drain above has just
// used (so its WAL has grown and is rewritten from its start, as ebats'
// is after W1). It adds commit_rate, commits and commit_ms (min, p50, p99,
// max) to the JSON.
//
// Durability (--durability):
//   all       every commit fsynced (synchronous=FULL): the program the issue
//             describes;
//   promises  the inserts fsynced, claims and settles not: what ebats fsyncs by
//             default (docs/BROKER.md, "Durability"), so the same guarantees.
//
// Usage: sqlite_limit [--tasks N] [--batch N] [--dir DIR] [--synchronous full|normal]
//                     [--durability all|promises] [--commit-rate R --commits N]
//   Prints one JSON object on stdout (tasks, batch, seconds, tasks_per_s,
//   insert_per_s, drain_per_s) and a human summary on stderr. The database
//   lives in a fresh folder under DIR (default $TMPDIR or /tmp) and is removed.
//   --synchronous normal matches ebats' `broker.sqlite.synchronous: normal`
//   (no fsync per commit); the default is full, as in ebats.
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <memory>
#include <random>
#include <thread>
#include <string>
#include <vector>

namespace {

constexpr const char* kSchema = R"sql(
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
  pid         INTEGER NOT NULL
) STRICT;
CREATE INDEX results_task ON results(task_id);
CREATE INDEX results_time ON results(finished_at);
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
)sql";
constexpr const char* kInsertEvent =
    "INSERT INTO events (id, name, body, created_at) VALUES (?1, 'bench_pickup', ?2, ?3)";

constexpr const char* kInsertTask =
    "INSERT INTO tasks (id, topic, task, lane, state, due_at, attempt, max_attempts, body, created_at, updated_at) "
    "VALUES (?1, 'bench', 'noop', 'n', 'ready', ?2, 0, 6, ?3, ?2, ?2) ON CONFLICT (id) DO NOTHING";
constexpr const char* kClaimTasks =
    "UPDATE tasks SET state = 'leased', lease_owner = ?2, lease_until = ?3, updated_at = ?1 "
    "WHERE seq IN (SELECT seq FROM tasks WHERE state = 'ready' AND topic = 'bench' AND lane = 'n' AND due_at <= ?1 "
    "ORDER BY due_at, seq LIMIT ?4) "
    "RETURNING seq, id, task, attempt, max_attempts, due_at, created_at, body";
constexpr const char* kAckTask = "DELETE FROM tasks WHERE seq = ?1 AND state = 'leased' AND lease_owner = ?2";
constexpr const char* kInsertResult =
    "INSERT INTO results (topic, task_id, task, params, time_ms, message, status, attempt, started_at, finished_at, "
    "trace, host, pid) VALUES ('bench', ?1, 'noop', '{\"n\":1}', 0, '', 'ok', ?2, ?3, ?3, '', 'bench', ?4)";

struct Options {
  long tasks = 20000;
  long batch = 100;
  std::string dir;
  bool synchronous_full = true;
  bool fsync_progress = true;  // --durability all
  long commit_rate = 0;        // --commit-rate: single durable commits a second (0: none)
  long commits = 100;
};

// The value at percentile p of sorted, non-empty `v` (nearest rank, as
// bench_tool.py's percentile()).
double percentile(const std::vector<double>& v, double p) {
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

// Owns an open database; closes it on destruction.
struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;

// Owns a prepared statement; finalizes it on destruction.
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

[[noreturn]] void die(sqlite3* db, const std::string& what) {
  std::fprintf(stderr, "sqlite_limit: %s: %s\n", what.c_str(), db != nullptr ? sqlite3_errmsg(db) : "");
  std::exit(1);
}

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = std::string("running `") + sql + "`: " + (err != nullptr ? err : "?");
    sqlite3_free(err);
    std::fprintf(stderr, "sqlite_limit: %s\n", msg.c_str());
    std::exit(1);
  }
}

Stmt prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
    die(db, std::string("preparing `") + sql + "`");
  }
  return Stmt(s);
}

void step_done(sqlite3* db, sqlite3_stmt* s, const char* what) {
  if (sqlite3_step(s) != SQLITE_DONE) die(db, what);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A lowercase time-ordered UUID laid out like ebats' task ids (docs/WIRE.md
// §3): 48 bits of `ms`, version 8, the 12-bit counter of its event's v7 id,
// then random bits (RFC 9562 variant).
std::string uuid(int64_t ms, uint32_t counter, std::mt19937_64& rng) {
  static const char* hex = "0123456789abcdef";
  const uint64_t a = (static_cast<uint64_t>(ms) << 16) | (counter & 0x0fff), b = rng();
  char out[37];
  int k = 0;
  for (int i = 0; i < 32; ++i) {
    const uint64_t word = i < 16 ? a : b;
    int nibble = static_cast<int>((word >> ((15 - i % 16) * 4)) & 0xf);
    if (i == 12) nibble = 8;  // version 8 over the counter's top nibble, which is 0 here
    if (i == 16) nibble = 8 | (nibble & 3);
    if (i == 8 || i == 12 || i == 16 || i == 20) out[k++] = '-';
    out[k++] = hex[nibble];
  }
  out[k] = '\0';
  return out;
}

// A task body about the size of ebats' encoded envelope for a noop task.
std::string body_for(const std::string& id, int64_t now) {
  return "{\"v\":1,\"id\":\"" + id + "\",\"kind\":\"task\",\"event\":\"bench\",\"task\":\"noop\",\"topic\":\"bench\"," +
         "\"params\":{\"n\":1},\"created_at\":" + std::to_string(now) + ",\"due_at\":" + std::to_string(now) +
         ",\"attempt\":0,\"max_attempts\":6,\"parent\":\"" + id + "\",\"retry\":{\"backoff_ms\":[5000,300000]}}";
}

bool parse_long(const char* text, long* out) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v <= 0) return false;
  *out = v;
  return true;
}

int usage(const char* msg) {
  std::fprintf(stderr,
               "sqlite_limit: %s\nusage: sqlite_limit [--tasks N (20000)] [--batch N (100)] [--dir DIR ($TMPDIR or "
               "/tmp)] [--synchronous full|normal (full)] [--durability all|promises (all)] [--commit-rate R "
               "--commits N (100)]\n",
               msg);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  const char* tmp = std::getenv("TMPDIR");
  opt.dir = tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage(("missing value after " + arg).c_str());
    const char* value = argv[++i];
    if (arg == "--tasks") {
      if (!parse_long(value, &opt.tasks)) return usage("--tasks needs a positive integer");
    } else if (arg == "--batch") {
      if (!parse_long(value, &opt.batch)) return usage("--batch needs a positive integer");
    } else if (arg == "--dir") {
      opt.dir = value;
    } else if (arg == "--synchronous") {
      const std::string mode = value;
      if (mode != "full" && mode != "normal") return usage("--synchronous takes full or normal");
      opt.synchronous_full = mode == "full";
    } else if (arg == "--durability") {
      const std::string mode = value;
      if (mode != "all" && mode != "promises") return usage("--durability takes all or promises");
      opt.fsync_progress = mode == "all";
    } else if (arg == "--commit-rate") {
      if (!parse_long(value, &opt.commit_rate)) return usage("--commit-rate needs a positive integer");
    } else if (arg == "--commits") {
      if (!parse_long(value, &opt.commits)) return usage("--commits needs a positive integer");
    } else {
      return usage(("unknown argument " + arg).c_str());
    }
  }

  std::string folder = opt.dir + "/ebats-sqlite-limit.XXXXXX";
  if (mkdtemp(folder.data()) == nullptr) {
    std::fprintf(stderr, "sqlite_limit: cannot create a folder under %s: %s; pass --dir DIR\n", opt.dir.c_str(),
                 std::strerror(errno));
    return 1;
  }
  const std::string path = folder + "/limit.db";

  double seconds_insert = 0, seconds_drain = 0;
  long drained = 0;
  std::vector<double> commit_ms;
  {
    sqlite3* raw = nullptr;
    if (sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      std::fprintf(stderr, "sqlite_limit: opening %s: %s\n", path.c_str(),
                   raw != nullptr ? sqlite3_errmsg(raw) : "out of memory");
      sqlite3_close_v2(raw);
      return 1;
    }
    Db db(raw);
    exec(raw, "PRAGMA journal_mode=WAL");
    const char* durable = opt.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
    const char* progress = opt.fsync_progress ? durable : "PRAGMA synchronous=NORMAL";
    exec(raw, durable);
    exec(raw, "PRAGMA temp_store=MEMORY");
    exec(raw, kSchema);

    Stmt insert = prepare(raw, kInsertTask);
    Stmt claim = prepare(raw, kClaimTasks);
    Stmt ack = prepare(raw, kAckTask);
    Stmt result = prepare(raw, kInsertResult);
    Stmt begin = prepare(raw, "BEGIN IMMEDIATE");
    Stmt commit = prepare(raw, "COMMIT");

    std::mt19937_64 rng(42);
    std::vector<std::string> ids;
    std::vector<std::string> bodies;
    ids.reserve(static_cast<size_t>(opt.tasks));
    bodies.reserve(static_cast<size_t>(opt.tasks));
    const int64_t created = wall_ms();
    for (long i = 0; i < opt.tasks; ++i) {
      // As if the events were published at 100,000 a second, as `ebatsctl publish --jsonl` about does.
      ids.push_back(uuid(created + i / 100, static_cast<uint32_t>(i % 100), rng));
      bodies.push_back(body_for(ids.back(), created));
    }

    // 1. Insert, --batch rows per transaction.
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < opt.tasks;) {
      step_done(raw, begin.get(), "BEGIN IMMEDIATE");
      const int64_t now = wall_ms();
      for (long k = 0; k < opt.batch && i < opt.tasks; ++k, ++i) {
        const std::string& id = ids[static_cast<size_t>(i)];
        const std::string& body = bodies[static_cast<size_t>(i)];
        sqlite3_bind_text(insert.get(), 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
        sqlite3_bind_int64(insert.get(), 2, now);
        sqlite3_bind_blob(insert.get(), 3, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
        step_done(raw, insert.get(), "inserting a task");
      }
      step_done(raw, commit.get(), "COMMIT of an insert batch");
    }
    const auto t1 = std::chrono::steady_clock::now();

    // 2. Claim a batch with a lease; settle it: delete + one result row each.
    exec(raw, progress);
    const std::string owner = "bench/" + std::to_string(getpid());
    const int pid = static_cast<int>(getpid());
    std::vector<int64_t> seqs;
    std::vector<std::string> claimed_ids;
    std::vector<int64_t> attempts;
    for (;;) {
      seqs.clear();
      claimed_ids.clear();
      attempts.clear();
      const int64_t now = wall_ms();
      step_done(raw, begin.get(), "BEGIN IMMEDIATE");
      sqlite3_bind_int64(claim.get(), 1, now);
      sqlite3_bind_text(claim.get(), 2, owner.data(), static_cast<int>(owner.size()), SQLITE_STATIC);
      sqlite3_bind_int64(claim.get(), 3, now + 30000);
      sqlite3_bind_int64(claim.get(), 4, opt.batch);
      int rc;
      while ((rc = sqlite3_step(claim.get())) == SQLITE_ROW) {
        seqs.push_back(sqlite3_column_int64(claim.get(), 0));
        claimed_ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(claim.get(), 1)));
        attempts.push_back(sqlite3_column_int64(claim.get(), 3));
        (void)sqlite3_column_blob(claim.get(), 7);  // the body is read, as a worker would
      }
      if (rc != SQLITE_DONE) die(raw, "claiming tasks");
      sqlite3_reset(claim.get());
      sqlite3_clear_bindings(claim.get());
      step_done(raw, commit.get(), "COMMIT of a claim");
      if (seqs.empty()) break;

      const int64_t done = wall_ms();
      step_done(raw, begin.get(), "BEGIN IMMEDIATE");
      for (size_t k = 0; k < seqs.size(); ++k) {
        sqlite3_bind_int64(ack.get(), 1, seqs[k]);
        sqlite3_bind_text(ack.get(), 2, owner.data(), static_cast<int>(owner.size()), SQLITE_STATIC);
        step_done(raw, ack.get(), "deleting a task");
        if (sqlite3_changes(raw) != 1) die(raw, "deleting a claimed task found no row");
        sqlite3_bind_text(result.get(), 1, claimed_ids[k].data(), static_cast<int>(claimed_ids[k].size()),
                          SQLITE_STATIC);
        sqlite3_bind_int64(result.get(), 2, attempts[k]);
        sqlite3_bind_int64(result.get(), 3, done);
        sqlite3_bind_int(result.get(), 4, pid);
        step_done(raw, result.get(), "inserting a result");
      }
      step_done(raw, commit.get(), "COMMIT of a settle batch");
      drained += static_cast<long>(seqs.size());
    }
    const auto t2 = std::chrono::steady_clock::now();
    seconds_insert = std::chrono::duration<double>(t1 - t0).count();
    seconds_drain = std::chrono::duration<double>(t2 - t1).count();

    // 3. Single durable commits on a schedule (--commit-rate).
    if (opt.commit_rate > 0) {
      exec(raw, durable);
      Stmt event = prepare(raw, kInsertEvent);
      const std::string event_body(120, 'x');  // about a pickup event's envelope
      const auto interval = std::chrono::nanoseconds(1000000000L / opt.commit_rate);
      const auto start = std::chrono::steady_clock::now();
      for (long i = 0; i < opt.commits; ++i) {
        std::this_thread::sleep_until(start + i * interval);
        const int64_t now = wall_ms();
        const std::string id = uuid(now, static_cast<uint32_t>(i % 4096), rng);
        const auto a = std::chrono::steady_clock::now();
        step_done(raw, begin.get(), "BEGIN IMMEDIATE");
        sqlite3_bind_text(event.get(), 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
        sqlite3_bind_blob(event.get(), 2, event_body.data(), static_cast<int>(event_body.size()), SQLITE_STATIC);
        sqlite3_bind_int64(event.get(), 3, now);
        step_done(raw, event.get(), "inserting an event");
        step_done(raw, commit.get(), "COMMIT of one event");
        commit_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
      }
      std::sort(commit_ms.begin(), commit_ms.end());
    }
  }
  const std::string wal = path + "-wal", shm = path + "-shm";
  unlink(path.c_str());
  unlink(wal.c_str());
  unlink(shm.c_str());
  rmdir(folder.c_str());

  if (drained != opt.tasks) {
    std::fprintf(stderr, "sqlite_limit: drained %ld tasks, expected %ld\n", drained, opt.tasks);
    return 1;
  }
  const double tasks = static_cast<double>(opt.tasks);
  const double seconds = seconds_insert + seconds_drain;
  const char* mode = opt.synchronous_full ? "full" : "normal";
  const char* durability = opt.fsync_progress ? "all" : "promises";
  std::fprintf(stderr,
               "sqlite_limit: %ld tasks, transactions of %ld rows, WAL + synchronous=%s, durability %s: %.3fs, "
               "%.0f tasks/s (insert %.0f/s, claim+settle %.0f/s)\n",
               opt.tasks, opt.batch, mode, durability, seconds, tasks / seconds, tasks / seconds_insert,
               tasks / seconds_drain);
  std::printf(
      "{\"tasks\":%ld,\"batch\":%ld,\"synchronous\":\"%s\",\"durability\":\"%s\",\"seconds\":%.6f,"
      "\"tasks_per_s\":%.1f,\"insert_per_s\":%.1f,\"drain_per_s\":%.1f",
      opt.tasks, opt.batch, mode, durability, seconds, tasks / seconds, tasks / seconds_insert, tasks / seconds_drain);
  if (!commit_ms.empty()) {
    std::fprintf(stderr, "sqlite_limit: %ld single durable commits at %ld/s: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
                 opt.commits, opt.commit_rate, percentile(commit_ms, 50), percentile(commit_ms, 99), commit_ms.back());
    std::printf(",\"commit_rate\":%ld,\"commits\":%ld,\"commit_ms\":{\"min\":%.3f,\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
                opt.commit_rate, opt.commits, commit_ms.front(), percentile(commit_ms, 50), percentile(commit_ms, 99),
                commit_ms.back());
  }
  std::printf("}\n");
  return 0;
}
