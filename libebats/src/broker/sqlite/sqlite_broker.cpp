#include "broker/sqlite/sqlite_broker.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <random>

#include "broker/sqlite/sqlite_rows.h"
#include "broker/sqlite/sqlite_schema.h"

namespace ebats {
namespace sqlite {
namespace {

constexpr const char* kScheme = "sqlite://";

// --- claim ---------------------------------------------------------------
// The partial indexes tasks_due / events_ready serve both the probe and the
// claim; the ORDER BY follows the index (due_at, then rowid).
const std::string kAnyDueTask =
    "SELECT 1 FROM tasks WHERE state = 'ready' AND topic = ?1 AND lane = ?2 AND due_at <= ?3 LIMIT 1";
const std::string kClaimTasks =
    "UPDATE tasks SET state = 'leased', lease_owner = ?4, lease_until = ?5, updated_at = ?3 "
    "WHERE seq IN (SELECT seq FROM tasks WHERE state = 'ready' AND topic = ?1 AND lane = ?2 AND due_at <= ?7 "
    "ORDER BY due_at, seq LIMIT ?6) "
    "RETURNING seq, id, task, attempt, max_attempts, due_at, created_at, body";
const std::string kAnyReadyEvent = "SELECT 1 FROM events WHERE state = 'ready' LIMIT 1";
const std::string kClaimEvents =
    "UPDATE events SET state = 'leased', lease_owner = ?1, lease_until = ?2 "
    "WHERE seq IN (SELECT seq FROM events WHERE state = 'ready' ORDER BY seq LIMIT ?3) "
    "RETURNING seq, id, name, created_at, body";
// claim_and_commit() reads rows without leasing them and routes them outside
// any lock; its write transaction then deletes each row only if it is still
// 'ready' (kAckUnleased*), and publishes what rides on it only if it was.
const std::string kSelectTasks =
    "SELECT seq, id, task, attempt, max_attempts, due_at, created_at, body FROM tasks "
    "WHERE state = 'ready' AND topic = ?1 AND lane = ?2 AND due_at <= ?3 ORDER BY due_at, seq LIMIT ?4";
const std::string kSelectEvents =
    "SELECT seq, id, name, created_at, body FROM events WHERE state = 'ready' ORDER BY seq LIMIT ?1";
// The statements that take a task row out of 'ready' or put one back return
// its topic and lane, for the queue counts (sqlite_counts.h).
// ?4 is the settle's id (Settle::id): a row seq is handed out again once the
// newest row is deleted, so the seq alone may name another task or event by
// the time a late settle comes.
const std::string kSameId = " AND (?4 = '' OR id = ?4)";
const std::string kAckUnleasedTask =
    "DELETE FROM tasks WHERE seq = ?1 AND state = 'ready'" + kSameId + " RETURNING topic, lane";
const std::string kAckUnleasedEvent = "DELETE FROM events WHERE seq = ?1 AND state = 'ready'" + kSameId;
const std::string kNextDueTask =
    "SELECT due_at FROM tasks WHERE state = 'ready' AND topic = ?1 AND lane = ?2 ORDER BY due_at LIMIT 1";
const std::string kNextDueEvent = "SELECT created_at FROM events WHERE state = 'ready' ORDER BY seq LIMIT 1";

// --- settle / extend -----------------------------------------------------
const std::string kAckTask = "DELETE FROM tasks WHERE seq = ?1 AND state = 'leased' AND lease_owner = ?2" + kSameId;
const std::string kReleaseTask =
    "UPDATE tasks SET state = 'ready', lease_owner = NULL, lease_until = NULL, updated_at = ?3 "
    "WHERE seq = ?1 AND state = 'leased' AND lease_owner = ?2" + kSameId + " RETURNING topic, lane";
const std::string kAckEvent = "DELETE FROM events WHERE seq = ?1 AND state = 'leased' AND lease_owner = ?2" + kSameId;
const std::string kReleaseEvent =
    "UPDATE events SET state = 'ready', lease_owner = NULL, lease_until = NULL "
    "WHERE seq = ?1 AND state = 'leased' AND lease_owner = ?2" + kSameId;
const std::string kExtendTask =
    "UPDATE tasks SET lease_until = ?3 WHERE seq = ?1 AND state = 'leased' AND lease_owner = ?2";
const std::string kExtendEvent =
    "UPDATE events SET lease_until = ?3 WHERE seq = ?1 AND state = 'leased' AND lease_owner = ?2";

// --- recovery --------------------------------------------------------------
// Parameters: ?1 topic, ?2 lane, ?3 now; ?4 our owner (expired: leases of
// others only, see Broker::recover_expired()) or the previous incarnation's.
const std::string kExpiredTasks =
    "state = 'leased' AND topic = ?1 AND lane = ?2 AND lease_until < ?3 AND lease_owner <> ?4";
const std::string kPreviousTasks = "state = 'leased' AND topic = ?1 AND lane = ?2 AND lease_owner = ?4";
// The other incarnations holding leases under our owner prefix: ?1 topic, ?2
// lane, ?3 owner prefix + "/", ?4 our owner (events: ?1 prefix, ?2 ours).
const std::string kOtherTaskOwners =
    "SELECT DISTINCT lease_owner FROM tasks WHERE state = 'leased' AND topic = ?1 AND lane = ?2 "
    "AND substr(lease_owner, 1, length(?3)) = ?3 AND lease_owner <> ?4";
const std::string kOtherEventOwners =
    "SELECT DISTINCT lease_owner FROM events WHERE state = 'leased' AND substr(lease_owner, 1, length(?1)) = ?1 "
    "AND lease_owner <> ?2";

struct RecoverySql {
  std::string probe;
  std::string dead;    // exhausted rows → dead_letters
  std::string remove;  // exhausted rows go
  // The rest → ready, attempt + 1, due now, or still at their due time when
  // that is ahead (a dtask worker claims up to one poll interval early and
  // holds the task: never early, also after its crash).
  std::string retry;
};

RecoverySql task_recovery_sql(const std::string& where, const char* error_text) {
  const std::string exhausted = where + " AND attempt + 1 >= max_attempts";
  return RecoverySql{
      "SELECT 1 FROM tasks WHERE " + where + " LIMIT 1",
      "INSERT INTO dead_letters (id, kind, topic, name, reason, error, attempts, body, first_seen, dead_at) "
      "SELECT id, 'task', topic, task, 'lease expired', " +
          std::string(error_text) + ", attempt + 1, body, created_at, ?3 FROM tasks WHERE " + exhausted +
          " ORDER BY seq",
      "DELETE FROM tasks WHERE " + exhausted,
      "UPDATE tasks SET state = 'ready', lease_owner = NULL, lease_until = NULL, due_at = MAX(due_at, ?3), "
      "attempt = attempt + 1, last_error = 'lease expired', updated_at = ?3 WHERE " +
          where};
}

const RecoverySql kRecoverExpiredTasks =
    task_recovery_sql(kExpiredTasks, "'the lease of ' || lease_owner || ' expired at ' || lease_until");
const RecoverySql kRecoverPreviousTasks =
    task_recovery_sql(kPreviousTasks, "'worker ' || lease_owner || ' restarted while holding the lease'");
// Events: ?1 now; ?2 our owner (expired) or the previous incarnation's. They go back to ready.
const std::string kExpiredEvents = "state = 'leased' AND lease_until < ?1 AND lease_owner <> ?2";
const std::string kPreviousEvents = "state = 'leased' AND lease_owner = ?2";
const std::string kRecoverEventsSet = "UPDATE events SET state = 'ready', lease_owner = NULL, lease_until = NULL WHERE ";
const RecoverySql kRecoverExpiredEvents{"SELECT 1 FROM events WHERE " + kExpiredEvents + " LIMIT 1", "", "",
                                        kRecoverEventsSet + kExpiredEvents};
const RecoverySql kRecoverPreviousEvents{"SELECT 1 FROM events WHERE " + kPreviousEvents + " LIMIT 1", "", "",
                                         kRecoverEventsSet + kPreviousEvents};

// --- depths ----------------------------------------------------------------
// The queued rows and dead letters come from queue_counts (sqlite_counts.h).
// Only the ntask lane's ready tasks are split by count, into those due and
// those not yet due: the smaller part is counted on the partial index
// tasks_due (a range of entries, never rows of the table, whose bodies make a
// backlog of a million tasks a scan of a gigabyte), with a cap that grows
// until one part fits under it.
const std::string kQueueCounts = "SELECT topic, counter, n FROM queue_counts WHERE n <> 0";
const std::string kCountReadyUpTo =
    "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE state = 'ready' AND topic = ?1 AND lane = 'n' "
    "AND due_at > ?2 AND due_at <= ?3 LIMIT ?4)";
const std::string kLeasedDepths = "SELECT topic, count(*) FROM tasks WHERE state = 'leased' GROUP BY topic";
const std::string kDoneDepths = "SELECT topic, done FROM topic_totals";
const std::string kAddDone =
    "INSERT INTO topic_totals (topic, done) VALUES (?1, ?2) ON CONFLICT (topic) DO UPDATE SET done = done + excluded.done";
const std::string kLeasedEvents = "SELECT count(*) FROM events WHERE state = 'leased'";

// --- retention ---------------------------------------------------------------
// The oldest first, on the index results_time or the rowid; each DELETE stops
// after ?2 rows, so one transaction stays short. The newest row always stays:
// without AUTOINCREMENT a new row gets max(seq) + 1, so seq never goes back
// to a pruned row's value and readers that follow seq miss nothing.
const std::string kPruneResultsByAge =
    "DELETE FROM results WHERE seq IN (SELECT seq FROM results WHERE finished_at < ?1 "
    "AND seq < (SELECT max(seq) FROM results) ORDER BY finished_at LIMIT ?2)";
const std::string kNewestResult = "SELECT max(seq) FROM results";
const std::string kPruneResultsBySeq =
    "DELETE FROM results WHERE seq IN (SELECT seq FROM results WHERE seq <= ?1 ORDER BY seq LIMIT ?2)";

bool is_event_token(uint64_t token) { return (token & kEventTokenBit) != 0; }
int64_t row_of(uint64_t token) { return static_cast<int64_t>(token & ~kEventTokenBit); }

// "<pid>.<32 random bits>": pids are reused across reboots, the random part is not.
std::string incarnation_suffix() {
  unsigned bits = 0;
  try {
    std::random_device random;
    bits = static_cast<unsigned>(random());
  } catch (...) {  // no entropy source: the time still tells incarnations apart
    bits = static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%ld.%08x", static_cast<long>(getpid()), bits);
  return buffer;
}

// True when the incarnation that owns `owner` (prefix + "<pid>.<bits>", by
// incarnation_suffix()) may still run: another process of this host with its
// pid exists. A worker of the same topic and lane next to ours has our prefix,
// and its leases are its own; a pid taken over by another program only leaves
// the leases to expire. Our own process's earlier incarnations (a broker
// opened again) count as gone, as before.
bool incarnation_alive(const std::string& owner, size_t prefix_length) {
  const std::string suffix = owner.substr(std::min(prefix_length, owner.size()));
  char* end = nullptr;
  const long pid = std::strtol(suffix.c_str(), &end, 10);
  if (end == suffix.c_str() || *end != '.' || pid <= 0 || pid == static_cast<long>(getpid())) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

Transaction::Mode commit_mode(const Batch& batch) {
  const bool progress_only = !batch.settle.empty() && batch.publish.empty() && batch.dead.empty();
  return progress_only ? Transaction::Mode::progress : Transaction::Mode::immediate;
}

Result<std::string> path_from_url(const std::string& url) {
  const std::string scheme(kScheme);
  if (url.compare(0, scheme.size(), scheme) != 0) {
    return Status::invalid("broker URL '" + url + "' is not a sqlite:// URL; expected sqlite:///path/to/ebats.db");
  }
  std::string path = url.substr(scheme.size());
  if (path.empty()) {
    return Status::invalid("broker URL '" + url + "' names no database file; expected sqlite:///path/to/ebats.db");
  }
  return path;
}

Result<std::unique_ptr<SqliteBroker>> SqliteBroker::open(const BrokerOptions& options, const Clock& clock) {
  auto path = path_from_url(options.url);
  if (!path.ok()) return path.status();
  if (options.sqlite.lease_ms <= 0) {
    return Status::invalid("broker.sqlite.lease must be positive (got " + std::to_string(options.sqlite.lease_ms) +
                           "ms)");
  }
  auto connection = Connection::open(*path, options.sqlite, options.create);
  if (!connection.ok()) return connection.status();
  Status schema = ensure_schema(**connection, options.create);
  if (!schema.ok()) return schema;
  std::unique_ptr<SqliteBroker> broker(new SqliteBroker(std::move(*connection), options, clock));
  // Without a checkpoint thread SQLite's automatic checkpoint still runs:
  // slower commits now and then, nothing else changes.
  auto checkpointer = Checkpointer::start(*broker->connection_, options.sqlite);
  if (checkpointer.ok()) broker->checkpointer_ = std::move(checkpointer).value();
  return broker;
}

SqliteBroker::SqliteBroker(std::unique_ptr<Connection> connection, const BrokerOptions& options, const Clock& clock)
    : connection_(std::move(connection)),
      clock_(clock),
      lease_ms_(options.sqlite.lease_ms),
      read_budget_bytes_(options.read_budget_bytes),
      owner_prefix_(options.owner + "/"),
      owner_(owner_prefix_ + incarnation_suffix()),
      on_event_(options.on_event),
      waker_(connection_->path()),
      dead_letters_(*connection_, waker_) {}

Status SqliteBroker::subscribe(Lane lane, const std::string& topic, uint32_t) {
  if (lane == Lane::source) return Status::invalid(kSourcesNeedAmqp);
  Status status;
  if (wake_.fd() < 0) {
    auto listener = WakeListener::open(connection_->path());
    if (listener.ok()) {
      wake_ = std::move(listener).value();
    } else {
      status = listener.status();
    }
  }
  if (status.ok()) status = wake_.listen(lane, topic);
  if (status.ok()) subscriptions_.emplace_back(lane, topic);
  if (!status.ok()) {
    wake_ = WakeListener();
    if (on_event_) {
      on_event_({BrokerEvent::Level::warn, "no wake-ups: new work is found by polling (sqlite.poll_interval): " +
                                               status.message()});
    }
  }
  return Status();
}

void SqliteBroker::wake_written() {
  std::vector<std::pair<Lane, std::string>> woken;
  woken.swap(woken_);
  waker_.wake(std::move(woken));
}

template <class Bind>
Result<bool> SqliteBroker::any_row(const std::string& sql, Bind bind) {
  auto stmt = connection_->statement(sql);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  bind(use);
  const int rc = use.step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return connection_->error(rc, "probing for work");
}

Result<bool> SqliteBroker::anything_to_claim(Lane lane, const std::string& topic, WallMs due_by) {
  if (lane == Lane::events) return any_row(kAnyReadyEvent, [](StatementUse&) {});
  const char* lane_code = task_lane_code(lane);
  return any_row(kAnyDueTask,
                 [&](StatementUse& use) { use.bind_text(1, topic).bind_text(2, lane_code).bind(3, due_by); });
}

Result<std::vector<Delivery>> SqliteBroker::claim_ahead(Lane lane, const std::string& topic, uint32_t max,
                                                        int64_t lookahead_ms) {
  const WallMs now = clock_.wall_now();
  const WallMs due_by = now + std::max<int64_t>(lookahead_ms, 0);
  std::vector<Delivery> out;
  if (lane == Lane::source) return Status::invalid(kSourcesNeedAmqp);
  if (max == 0) return out;
  wake_.drain();  // before the look: a commit during it wakes the next one
  auto any = anything_to_claim(lane, topic, due_by);
  if (!any.ok()) return any.status();
  if (!*any) return out;
  Transaction txn(*connection_, Transaction::Mode::immediate_no_fsync);
  Status status = txn.begin();
  if (status.ok()) status = claim_rows(lane, topic, max, now, due_by, &out, Claim::leased);
  if (status.ok()) status = txn.commit();
  if (!status.ok()) return status;
  return out;
}

Result<size_t> SqliteBroker::claim_and_commit(Lane lane, const std::string& topic, uint32_t max,
                                              const RouteFn& route) {
  const WallMs now = clock_.wall_now();
  if (lane == Lane::source) return Status::invalid(kSourcesNeedAmqp);
  if (max == 0) return size_t{0};
  wake_.drain();  // before the look: a commit during it wakes the next one
  // Read and route without the write lock: the other daemons keep claiming
  // and committing meanwhile, and the lock is held only for the row changes.
  // One SELECT is one read transaction.
  std::vector<Delivery> read;
  Status status = claim_rows(lane, topic, max, now, now, &read, Claim::unleased);
  if (!status.ok()) return status;
  if (read.empty()) return size_t{0};
  const Batch batch = route(read);
  auto committed = commit_routed(std::move(read), batch, "", 0);
  if (!committed.ok()) return committed.status();
  return committed->events;
}

Result<std::vector<Delivery>> SqliteBroker::read_events(uint32_t max) {
  std::vector<Delivery> read;
  if (max == 0) return read;
  wake_.drain();  // before the look: a commit during it wakes the next one
  const WallMs now = clock_.wall_now();
  Status status = claim_rows(Lane::events, "", max, now, now, &read, Claim::unleased);
  if (!status.ok()) return status;
  return read;
}

Result<Broker::RoutedClaim> SqliteBroker::commit_routed(std::vector<Delivery> read, const Batch& routed,
                                                        const std::string& claim_topic, uint32_t claim_max) {
  RoutedClaim out;
  if (read.empty()) {
    if (claim_max == 0) return out;
    auto claimed = claim(Lane::ntask, claim_topic, claim_max);
    if (!claimed.ok()) return claimed.status();
    out.claimed = std::move(claimed).value();
    return out;
  }
  Transaction txn(*connection_, commit_mode(routed));
  Status status = txn.begin();
  CommitReport report;
  woken_.clear();
  const WallMs now = clock_.wall_now();
  // First what was queued before (oldest first), then, while room is left,
  // the routed tasks, inserted leased: no second write of their rows.
  if (status.ok() && claim_max > 0) {
    status = claim_task_rows(Lane::ntask, claim_topic, claim_max, now, now, &out.claimed, Claim::leased);
  }
  LeaseInserted lease{claim_topic, claim_max - std::min<size_t>(claim_max, out.claimed.size()), out.claimed};
  if (status.ok()) status = apply_batch(routed, now, &report, Claim::unleased, &lease);
  if (status.ok()) status = txn.commit();
  if (!status.ok()) return status;
  wake_written();
  out.events = read.size();
  return out;
}

Status SqliteBroker::claim_rows(Lane lane, const std::string& topic, uint32_t max, WallMs now, WallMs due_by,
                                std::vector<Delivery>* out, Claim claim) {
  return lane == Lane::events ? claim_event_rows(max, now, out, claim)
                              : claim_task_rows(lane, topic, max, now, due_by, out, claim);
}

Status SqliteBroker::claim_task_rows(Lane lane, const std::string& topic, uint32_t max, WallMs now, WallMs due_by,
                                     std::vector<Delivery>* out, Claim claim) {
  const bool lease = claim == Claim::leased;
  auto stmt = connection_->statement(lease ? kClaimTasks : kSelectTasks);
  if (!stmt.ok()) return stmt.status();
  {
    StatementUse use(*stmt);
    use.bind_text(1, topic).bind_text(2, task_lane_code(lane));
    if (lease) {
      use.bind(3, now).bind_text(4, owner_).bind(5, now + lease_ms_).bind(6, max).bind(7, due_by);
    } else {
      use.bind(3, due_by).bind(4, max);
    }
    uint64_t bytes = 0;
    int64_t claimed = 0;
    for (;;) {
      // An UPDATE … RETURNING has leased every row by its first step, so only
      // a plain read may stop early.
      if (!lease && bytes >= read_budget_bytes_) break;
      const int rc = use.step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return connection_->error(rc, "claiming tasks of topic " + topic);
      Delivery d;
      d.token = static_cast<uint64_t>(use.int_column(0));
      d.lane = lane;
      d.topic = topic;
      d.id = use.bytes_column(1);
      d.name = use.bytes_column(2);
      d.attempt = static_cast<uint32_t>(use.int_column(3));
      d.max_attempts = static_cast<uint32_t>(use.int_column(4));
      d.due_at = use.int_column(5);
      d.created_at = use.int_column(6);
      d.body = use.bytes_column(7);
      bytes += d.body.size();
      out->push_back(std::move(d));
      ++claimed;
    }
    if (lease) connection_->counts().add(topic, ready_counter(lane), -claimed);
  }
  // RETURNING does not promise an order.
  std::sort(out->begin(), out->end(), [](const Delivery& a, const Delivery& b) {
    return a.due_at != b.due_at ? a.due_at < b.due_at : a.token < b.token;
  });
  return Status();
}

Status SqliteBroker::claim_event_rows(uint32_t max, WallMs now, std::vector<Delivery>* out, Claim claim) {
  const bool lease = claim == Claim::leased;
  auto stmt = connection_->statement(lease ? kClaimEvents : kSelectEvents);
  if (!stmt.ok()) return stmt.status();
  {
    StatementUse use(*stmt);
    if (lease) {
      use.bind_text(1, owner_).bind(2, now + lease_ms_).bind(3, max);
    } else {
      use.bind(1, max);
    }
    uint64_t bytes = 0;
    int64_t claimed = 0;
    for (;;) {
      if (!lease && bytes >= read_budget_bytes_) break;  // see claim_task_rows()
      const int rc = use.step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return connection_->error(rc, "claiming events");
      Delivery d;
      d.token = static_cast<uint64_t>(use.int_column(0)) | kEventTokenBit;
      d.lane = Lane::events;
      d.id = use.bytes_column(1);
      d.name = use.bytes_column(2);
      d.created_at = use.int_column(3);
      d.due_at = d.created_at;
      d.body = use.bytes_column(4);
      bytes += d.body.size();
      out->push_back(std::move(d));
      ++claimed;
    }
    if (lease) connection_->counts().add("", ready_counter(Lane::events), -claimed);
  }
  std::sort(out->begin(), out->end(), [](const Delivery& a, const Delivery& b) { return a.token < b.token; });
  return Status();
}

Result<std::optional<WallMs>> SqliteBroker::next_due(Lane lane, const std::string& topic) {
  const bool events = lane == Lane::events;
  auto stmt = connection_->statement(events ? kNextDueEvent : kNextDueTask);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  if (!events) use.bind_text(1, topic).bind_text(2, task_lane_code(lane));
  const int rc = use.step();
  if (rc == SQLITE_DONE) return std::optional<WallMs>();
  if (rc != SQLITE_ROW) return connection_->error(rc, "reading the next due time");
  return std::optional<WallMs>(use.int_column(0));
}

Result<bool> SqliteBroker::apply_settle(const Settle& settle, WallMs now, Claim claim) {
  const bool event = is_event_token(settle.token);
  const bool ack = settle.kind == Settle::Kind::ack;
  if (claim == Claim::unleased && !ack) return true;  // never left 'ready'
  const std::string* sql;
  if (claim == Claim::unleased) {
    sql = event ? &kAckUnleasedEvent : &kAckUnleasedTask;
  } else {
    sql = event ? (ack ? &kAckEvent : &kReleaseEvent) : (ack ? &kAckTask : &kReleaseTask);
  }
  auto stmt = connection_->statement(*sql);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  use.bind(1, row_of(settle.token));
  if (claim == Claim::leased) use.bind_text(2, owner_);
  if (claim == Claim::leased && !event && !ack) use.bind(3, now);
  use.bind_text(4, settle.id);
  // An unleased ack takes a row out of 'ready', a release puts one back.
  const bool ready_changes = claim == Claim::unleased || !ack;
  const int64_t delta = claim == Claim::unleased ? -1 : 1;
  int rc = use.step();
  bool changed = false;
  if (!event && ready_changes) {  // RETURNING topic, lane: a row when it changed one
    changed = rc == SQLITE_ROW;
    if (changed) {
      connection_->counts().add(use.bytes_column(0), use.bytes_column(1), delta);  // a task's counter is its lane
      rc = use.step();
    }
  } else {
    changed = rc == SQLITE_DONE && sqlite3_changes(connection_->db()) > 0;
    if (changed && ready_changes) connection_->counts().add("", ready_counter(Lane::events), delta);
  }
  if (rc != SQLITE_DONE) return connection_->error(rc, ack ? "acknowledging a delivery" : "releasing a delivery");
  return changed;
}

Result<CommitReport> SqliteBroker::commit(const Batch& batch) {
  CommitReport report;
  if (batch.empty()) return report;
  Transaction txn(*connection_, commit_mode(batch));
  Status status = txn.begin();
  woken_.clear();
  if (status.ok()) status = apply_batch(batch, clock_.wall_now(), &report, Claim::leased);
  if (status.ok()) status = txn.commit();
  if (!status.ok()) return status;
  wake_written();
  return report;
}

Status SqliteBroker::publish_row(const OutMsg& msg, WallMs now, CommitReport* report, LeaseInserted* lease) {
  if (lease != nullptr && lease->room > 0 && msg.lane == Lane::ntask && msg.topic == lease->topic &&
      msg.due_at <= now) {
    auto seq = insert_leased_task(*connection_, msg, now, owner_, now + lease_ms_);
    if (!seq.ok()) return seq.status();
    if (*seq == 0) return Status();  // queued already
    ++report->published;
    --lease->room;
    Delivery d;
    d.token = static_cast<uint64_t>(*seq);
    d.lane = msg.lane;
    d.topic = msg.topic;
    d.id = msg.id;
    d.name = msg.name;
    d.body = msg.body;
    d.attempt = msg.attempt;
    d.max_attempts = msg.max_attempts;
    d.due_at = msg.due_at;
    d.created_at = now;
    lease->out.push_back(std::move(d));
    return Status();  // ours: nobody to wake
  }
  auto inserted = insert_message(*connection_, msg, now);
  if (!inserted.ok()) return inserted.status();
  if (*inserted) {
    ++report->published;
    woken_.emplace_back(msg.lane, msg.topic);
  }
  return Status();
}

Status SqliteBroker::apply_batch(const Batch& batch, WallMs now, CommitReport* report, Claim claim,
                                 LeaseInserted* lease) {
  // Settles first: a retry deletes the row before re-inserting the same id.
  bool released = false;
  for (const Settle& settle : batch.settle) {
    auto applied = apply_settle(settle, now, claim);
    if (!applied.ok()) return applied.status();
    if (!*applied) {
      ++report->stale;
      continue;
    }
    released = released || settle.kind == Settle::Kind::release;
    ++report->settled;
    for (const OutMsg& msg : settle.then_publish) {
      Status published = publish_row(msg, now, report, lease);
      if (!published.ok()) return published;
    }
    if (settle.then_dead) {
      Status status = insert_dead_letter(*connection_, *settle.then_dead, now);
      if (!status.ok()) return status;
    }
  }
  if (released) {
    // Back in the lanes they were claimed from, ours: another daemon of that
    // lane and topic (a worker that goes on while this one stops) takes them.
    woken_.insert(woken_.end(), subscriptions_.begin(), subscriptions_.end());
  }
  for (const OutMsg& msg : batch.publish) {
    Status published = publish_row(msg, now, report, lease);
    if (!published.ok()) return published;
  }
  for (const DeadLetter& letter : batch.dead) {
    Status status = insert_dead_letter(*connection_, letter, now);
    if (!status.ok()) return status;
  }
  for (const ResultRecord& record : batch.results) {
    Status status = insert_result(*connection_, record);
    if (!status.ok()) return status;
  }
  return add_done(batch.results);
}

Status SqliteBroker::add_done(const std::vector<ResultRecord>& results) {
  // Usually one topic per batch: a short list beats a map.
  std::vector<std::pair<const std::string*, int64_t>> done;
  for (const ResultRecord& record : results) {
    if (record.status != "ok") continue;
    auto same = std::find_if(done.begin(), done.end(), [&](const auto& d) { return *d.first == record.topic; });
    if (same == done.end()) {
      done.emplace_back(&record.topic, 1);
    } else {
      ++same->second;
    }
  }
  for (const auto& [topic, count] : done) {
    auto stmt = connection_->statement(kAddDone);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    use.bind_text(1, *topic).bind(2, count);
    Status status = run_to_completion(*connection_, use, "counting done tasks");
    if (!status.ok()) return status;
  }
  return Status();
}

Status SqliteBroker::extend(const std::vector<uint64_t>& tokens) {
  if (tokens.empty()) return Status();
  const WallMs until = clock_.wall_now() + lease_ms_;
  Transaction txn(*connection_, Transaction::Mode::immediate_no_fsync);
  Status status = txn.begin();
  if (!status.ok()) return status;
  for (uint64_t token : tokens) {
    auto stmt = connection_->statement(is_event_token(token) ? kExtendEvent : kExtendTask);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    use.bind(1, row_of(token)).bind_text(2, owner_).bind(3, until);
    status = run_to_completion(*connection_, use, "extending leases");
    if (!status.ok()) return status;
  }
  return txn.commit();
}

Result<uint32_t> SqliteBroker::recover_expired(Lane lane, const std::string& topic) {
  return recover(lane, topic, Recovery::expired);
}

Result<uint32_t> SqliteBroker::recover_previous_incarnation(Lane lane, const std::string& topic) {
  return recover(lane, topic, Recovery::previous_incarnation);
}

Result<uint32_t> SqliteBroker::recover(Lane lane, const std::string& topic, Recovery kind) {
  if (kind == Recovery::expired) return recover_leases(lane, topic, kind, owner_);  // all but ours
  // Each earlier incarnation whose process is gone, one by one.
  std::vector<std::string> owners;
  {
    auto stmt = connection_->statement(lane == Lane::events ? kOtherEventOwners : kOtherTaskOwners);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    if (lane == Lane::events) {
      use.bind_text(1, owner_prefix_).bind_text(2, owner_);
    } else {
      use.bind_text(1, topic).bind_text(2, task_lane_code(lane)).bind_text(3, owner_prefix_).bind_text(4, owner_);
    }
    for (;;) {
      const int rc = use.step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return connection_->error(rc, "listing earlier incarnations' leases");
      owners.push_back(use.bytes_column(0));
    }
  }
  uint32_t recovered = 0;
  for (const std::string& owner : owners) {
    if (incarnation_alive(owner, owner_prefix_.size())) continue;  // its leases are its own, or expire
    auto n = recover_leases(lane, topic, kind, owner);
    if (!n.ok()) return n.status();
    recovered += *n;
  }
  return recovered;
}

Result<uint32_t> SqliteBroker::recover_leases(Lane lane, const std::string& topic, Recovery kind,
                                              const std::string& owner) {
  const WallMs now = clock_.wall_now();
  const bool expired = kind == Recovery::expired;
  // The reaper runs often; only take the write lock when there is work.
  if (lane == Lane::events) {
    const RecoverySql& sql = expired ? kRecoverExpiredEvents : kRecoverPreviousEvents;
    auto any = any_row(sql.probe, [&](StatementUse& use) { bind_event_recovery(use, kind, now, owner); });
    if (!any.ok()) return any.status();
    if (!*any) return 0u;
  } else {
    const RecoverySql& sql = expired ? kRecoverExpiredTasks : kRecoverPreviousTasks;
    auto any =
        any_row(sql.probe, [&](StatementUse& use) { bind_task_recovery(use, lane, topic, now, owner); });
    if (!any.ok()) return any.status();
    if (!*any) return 0u;
  }
  Transaction txn(*connection_, Transaction::Mode::progress);
  Status status = txn.begin();
  if (!status.ok()) return status;
  auto recovered =
      lane == Lane::events ? recover_events(kind, now, owner) : recover_tasks(lane, topic, kind, now, owner);
  if (!recovered.ok()) return recovered.status();
  status = txn.commit();
  if (!status.ok()) return status;
  return *recovered;
}

void SqliteBroker::bind_task_recovery(StatementUse& use, Lane lane, const std::string& topic,
                                      WallMs now, const std::string& owner) const {
  use.bind_text(1, topic).bind_text(2, task_lane_code(lane)).bind(3, now).bind_text(4, owner);
}

void SqliteBroker::bind_event_recovery(StatementUse& use, Recovery kind, WallMs now, const std::string& owner) const {
  if (kind == Recovery::expired) use.bind(1, now);
  use.bind_text(2, owner);
}

Result<uint32_t> SqliteBroker::recover_tasks(Lane lane, const std::string& topic, Recovery kind, WallMs now,
                                             const std::string& owner) {
  const RecoverySql& sql = kind == Recovery::expired ? kRecoverExpiredTasks : kRecoverPreviousTasks;
  uint32_t recovered = 0;
  for (const std::string* text : {&sql.dead, &sql.remove, &sql.retry}) {
    auto stmt = connection_->statement(*text);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    bind_task_recovery(use, lane, topic, now, owner);
    Status status = run_to_completion(*connection_, use, "recovering leases");
    if (!status.ok()) return status;
    const int changes = sqlite3_changes(connection_->db());
    if (text != &sql.dead) recovered += static_cast<uint32_t>(changes);
    if (text == &sql.dead) connection_->counts().add(topic, kDeadCounter, changes);
    if (text == &sql.retry) connection_->counts().add(topic, ready_counter(lane), changes);  // back to 'ready'
  }
  return recovered;
}

Result<uint32_t> SqliteBroker::recover_events(Recovery kind, WallMs now, const std::string& owner) {
  const RecoverySql& sql = kind == Recovery::expired ? kRecoverExpiredEvents : kRecoverPreviousEvents;
  auto stmt = connection_->statement(sql.retry);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  bind_event_recovery(use, kind, now, owner);
  Status status = run_to_completion(*connection_, use, "recovering event leases");
  if (!status.ok()) return status;
  const int changes = sqlite3_changes(connection_->db());
  connection_->counts().add("", ready_counter(Lane::events), changes);
  return static_cast<uint32_t>(changes);
}

namespace {

const std::string kResultColumns =
    "SELECT seq, topic, task_id, task, params, time_ms, message, status, attempt, started_at, finished_at, trace, "
    "host, pid, due_at FROM results ";
// Newest first (the caller reverses): LIMIT -1 is no limit.
const std::string kResultsAfter = kResultColumns + "WHERE seq > ?1 ORDER BY seq DESC LIMIT ?2";
const std::string kResultsOfTask = kResultColumns + "WHERE task_id = ?3 AND seq > ?1 ORDER BY seq DESC LIMIT ?2";

}  // namespace

Result<std::vector<ResultRow>> SqliteBroker::read_results(const ResultQuery& query) {
  auto stmt = connection_->statement(query.task_id.empty() ? kResultsAfter : kResultsOfTask);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  use.bind(1, static_cast<int64_t>(query.after_seq)).bind(2, query.newest == 0 ? int64_t{-1} : int64_t{query.newest});
  if (!query.task_id.empty()) use.bind_text(3, query.task_id);
  std::vector<ResultRow> rows;
  for (;;) {
    const int rc = use.step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return connection_->error(rc, "reading results");
    ResultRow row;
    row.seq = static_cast<uint64_t>(use.int_column(0));
    ResultRecord& r = row.record;
    r.topic = use.bytes_column(1);
    r.task_id = use.bytes_column(2);
    r.task = use.bytes_column(3);
    r.params = use.bytes_column(4);
    r.time_ms = use.int_column(5);
    r.message = use.bytes_column(6);
    r.status = use.bytes_column(7);
    r.attempt = static_cast<uint32_t>(use.int_column(8));
    r.started_at = use.int_column(9);
    r.finished_at = use.int_column(10);
    r.trace = use.bytes_column(11);
    r.host = use.bytes_column(12);
    r.pid = use.int_column(13);
    r.due_at = use.int_column(14);
    rows.push_back(std::move(row));
  }
  return std::vector<ResultRow>(rows.rbegin(), rows.rend());
}

Result<uint32_t> SqliteBroker::prune_results(WallMs finished_before, uint64_t keep_newest, uint32_t max_rows) {
  if (max_rows == 0 || (finished_before <= 0 && keep_newest == 0)) return uint32_t{0};
  // Never fsynced: a prune lost in a power cut is done again by the next.
  Transaction txn(*connection_, Transaction::Mode::immediate_no_fsync);
  Status status = txn.begin();
  if (!status.ok()) return status.with_context("pruning results");
  uint32_t pruned = 0;
  if (finished_before > 0) {
    auto stmt = connection_->statement(kPruneResultsByAge);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    use.bind(1, finished_before).bind(2, max_rows);
    status = run_to_completion(*connection_, use, "pruning results by age");
    if (!status.ok()) return status;
    pruned += static_cast<uint32_t>(sqlite3_changes(connection_->db()));
  }
  if (keep_newest > 0 && pruned < max_rows) {
    int64_t newest = 0;
    {
      auto stmt = connection_->statement(kNewestResult);
      if (!stmt.ok()) return stmt.status();
      StatementUse use(*stmt);
      const int rc = use.step();
      if (rc != SQLITE_ROW) return connection_->error(rc, "reading the newest result");
      newest = use.int_column(0);  // NULL (no rows) reads as 0
    }
    if (static_cast<uint64_t>(std::max<int64_t>(newest, 0)) > keep_newest) {
      auto stmt = connection_->statement(kPruneResultsBySeq);
      if (!stmt.ok()) return stmt.status();
      StatementUse use(*stmt);
      use.bind(1, newest - static_cast<int64_t>(keep_newest)).bind(2, max_rows - pruned);
      status = run_to_completion(*connection_, use, "pruning results by count");
      if (!status.ok()) return status;
      pruned += static_cast<uint32_t>(sqlite3_changes(connection_->db()));
    }
  }
  status = txn.commit();
  if (!status.ok()) return status.with_context("pruning results");
  return pruned;
}

Result<uint64_t> SqliteBroker::count_due_tasks(const std::string& topic, uint64_t ready, WallMs now) {
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  constexpr int64_t kAlways = std::numeric_limits<int64_t>::min();
  // Count both parts up to a cap, four times larger each round, until one of
  // them is under it: the work is a few times the smaller part, not `ready`.
  auto count = [&](int64_t after, int64_t upto, int64_t cap) -> Result<uint64_t> {
    auto stmt = connection_->statement(kCountReadyUpTo);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    use.bind_text(1, topic).bind(2, after).bind(3, upto).bind(4, cap);
    const int rc = use.step();
    if (rc != SQLITE_ROW) return connection_->error(rc, "counting queued tasks");
    return static_cast<uint64_t>(use.int_column(0));
  };
  for (int64_t cap = 256;; cap *= 4) {
    auto due = count(kAlways, now, cap);
    if (!due.ok()) return due.status();
    if (*due < static_cast<uint64_t>(cap)) return std::min(*due, ready);
    auto later = count(now, kNever, cap);
    if (!later.ok()) return later.status();
    if (*later < static_cast<uint64_t>(cap)) return ready - std::min(*later, ready);
  }
}

Result<std::vector<QueueDepth>> SqliteBroker::depths(const std::vector<std::string>& topics, DeadLetterCount) {
  const WallMs now = clock_.wall_now();
  std::map<std::string, QueueDepth> by_topic;
  auto depth_of = [&](const std::string& topic) -> QueueDepth& {
    QueueDepth& d = by_topic[topic];
    d.topic = topic;
    if (topic.empty()) d.row = QueueDepth::Row::events;  // events and their dead letters
    return d;
  };
  // The events row and the topics asked about, zeros included, as on RabbitMQ.
  depth_of("");
  for (const std::string& topic : topics) depth_of(topic);
  // One read transaction: every count comes from the same snapshot.
  Transaction txn(*connection_, Transaction::Mode::deferred);
  Status status = txn.begin();
  if (!status.ok()) return status;
  // Ready tasks: due ones of the ntask lane are pending; the dtask lane's and
  // the ntask lane's not yet due are delayed.
  struct Counted {
    std::string topic;
    std::string counter;
    int64_t n;
  };
  std::vector<Counted> counted;
  {
    auto stmt = connection_->statement(kQueueCounts);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    for (;;) {
      const int rc = use.step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return connection_->error(rc, "reading the queue counts");
      counted.push_back(Counted{use.bytes_column(0), use.bytes_column(1), use.int_column(2)});
    }
  }
  for (const Counted& c : counted) {
    QueueDepth& d = depth_of(c.topic);
    const uint64_t n = static_cast<uint64_t>(std::max<int64_t>(c.n, 0));
    if (c.counter == kDeadCounter) {
      d.dead = n;
    } else if (c.counter == ready_counter(Lane::events)) {
      d.ready = n;  // the events channel, topic ""
    } else if (c.counter == ready_counter(Lane::dtask)) {
      d.delayed += n;
    } else {
      auto due = count_due_tasks(c.topic, n, now);
      if (!due.ok()) return due.status();
      d.ready += *due;
      d.delayed += n - *due;
    }
  }
  struct Query {
    const std::string* sql;
    void (*apply)(QueueDepth&, const StatementUse&);
  };
  const Query queries[] = {
      {&kLeasedDepths,
       [](QueueDepth& d, const StatementUse& use) { d.leased = static_cast<uint64_t>(use.int_column(1)); }},
      {&kDoneDepths, [](QueueDepth& d, const StatementUse& use) { d.done = static_cast<uint64_t>(use.int_column(1)); }},
  };
  for (const Query& query : queries) {
    auto stmt = connection_->statement(*query.sql);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    for (;;) {
      const int rc = use.step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return connection_->error(rc, "counting queue depths");
      query.apply(depth_of(use.bytes_column(0)), use);
    }
  }
  // Events held by the scheduler, on the events channel's row (topic "").
  {
    auto stmt = connection_->statement(kLeasedEvents);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    const int rc = use.step();
    if (rc != SQLITE_ROW) return connection_->error(rc, "counting leased events");
    const uint64_t leased = static_cast<uint64_t>(use.int_column(0));
    if (leased != 0) depth_of("").leased = leased;
  }
  status = txn.commit();
  if (!status.ok()) return status;
  std::vector<QueueDepth> out;
  out.reserve(by_topic.size());
  for (auto& entry : by_topic) out.push_back(std::move(entry.second));
  return out;
}

}  // namespace sqlite
}  // namespace ebats
