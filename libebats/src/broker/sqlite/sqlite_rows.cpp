#include "broker/sqlite/sqlite_rows.h"

namespace ebats {
namespace sqlite {
namespace {

const std::string kInsertEvent =
    "INSERT INTO events (id, name, body, created_at, state) VALUES (?1, ?2, ?3, ?4, 'ready') "
    "ON CONFLICT (id) DO NOTHING";
const std::string kInsertTask =
    "INSERT INTO tasks (id, topic, task, lane, state, due_at, attempt, max_attempts, body, created_at, updated_at) "
    "VALUES (?1, ?2, ?3, ?4, 'ready', ?5, ?6, ?7, ?8, ?9, ?9) ON CONFLICT (id) DO NOTHING";
const std::string kInsertLeasedTask =
    "INSERT INTO tasks (id, topic, task, lane, state, due_at, attempt, max_attempts, body, created_at, updated_at, "
    "lease_owner, lease_until) VALUES (?1, ?2, ?3, ?4, 'leased', ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11) "
    "ON CONFLICT (id) DO NOTHING";
const std::string kInsertDeadLetter =
    "INSERT INTO dead_letters (id, kind, topic, name, reason, error, attempts, body, first_seen, dead_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const std::string kInsertResult =
    "INSERT INTO results (topic, task_id, task, params, time_ms, message, status, attempt, started_at, finished_at, "
    "trace, host, pid, due_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

// Runs an INSERT; returns how many rows it inserted (0 or 1).
// `what` + `id` name the row in an error message (built only on error).
Result<bool> run_insert(Connection& connection, StatementUse& use, const char* what, const std::string& id) {
  const int rc = use.step();
  if (rc != SQLITE_DONE) return connection.error(rc, what + id);
  return sqlite3_changes(connection.db()) > 0;
}

Status check_message(const OutMsg& msg) {
  if (msg.id.empty()) {
    return Status::invalid(std::string("cannot publish to the ") + lane_name(msg.lane) + " lane: the message has no id");
  }
  if (msg.lane != Lane::events && (msg.topic.empty() || msg.name.empty())) {
    return Status::invalid("cannot publish task " + msg.id + " to the " + lane_name(msg.lane) + " lane: its " +
                           (msg.topic.empty() ? "topic" : "task name") + " is empty");
  }
  return Status();
}

// Binds ?1..?9 of kInsertTask / kInsertLeasedTask.
void bind_task(StatementUse& use, const OutMsg& msg, WallMs now) {
  use.bind_text(1, msg.id)
      .bind_text(2, msg.topic)
      .bind_text(3, msg.name)
      .bind_text(4, task_lane_code(msg.lane))
      .bind(5, msg.due_at)
      .bind(6, msg.attempt)
      .bind(7, msg.max_attempts)
      .bind_blob(8, msg.body)
      .bind(9, now);
}

}  // namespace

const char* task_lane_code(Lane lane) { return lane == Lane::dtask ? "d" : "n"; }

Result<bool> insert_message(Connection& connection, const OutMsg& msg, WallMs now) {
  Status checked = check_message(msg);
  if (!checked.ok()) return checked;
  if (msg.lane == Lane::events) {
    auto stmt = connection.statement(kInsertEvent);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    use.bind_text(1, msg.id).bind_text(2, msg.name).bind_blob(3, msg.body).bind(4, now);
    auto inserted = run_insert(connection, use, "publishing event ", msg.id);
    if (inserted.ok() && *inserted) connection.counts().add("", ready_counter(Lane::events), 1);
    return inserted;
  }
  auto stmt = connection.statement(kInsertTask);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  bind_task(use, msg, now);
  auto inserted = run_insert(connection, use, "publishing task ", msg.id);
  if (inserted.ok() && *inserted) connection.counts().add(msg.topic, ready_counter(msg.lane), 1);
  return inserted;
}

Result<int64_t> insert_leased_task(Connection& connection, const OutMsg& msg, WallMs now, const std::string& owner,
                                   WallMs lease_until) {
  if (msg.lane == Lane::events) return Status::invalid("insert_leased_task: " + msg.id + " is an event");
  Status checked = check_message(msg);
  if (!checked.ok()) return checked;
  auto stmt = connection.statement(kInsertLeasedTask);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  bind_task(use, msg, now);
  use.bind_text(10, owner).bind(11, lease_until);
  auto inserted = run_insert(connection, use, "publishing task ", msg.id);
  if (!inserted.ok()) return inserted.status();
  // seq is the rowid. (RETURNING seq cost as much again as the insert itself,
  // per row, in a profile of the worker routing events: bench/notes.md.)
  return *inserted ? sqlite3_last_insert_rowid(connection.db()) : int64_t{0};
}

Status insert_dead_letter(Connection& connection, const DeadLetter& letter, WallMs now) {
  if (letter.kind != "event" && letter.kind != "task" && letter.kind != "raw") {
    return Status::invalid("dead letter " + letter.id + " has kind '" + letter.kind +
                           "'; expected event, task or raw");
  }
  auto stmt = connection.statement(kInsertDeadLetter);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  use.bind_text(1, letter.id)
      .bind_text(2, letter.kind)
      .bind_text(3, letter.topic)
      .bind_text(4, letter.name)
      .bind_text(5, letter.reason)
      .bind_text(6, letter.error)
      .bind(7, letter.attempts)
      .bind_blob(8, letter.body)
      .bind(9, letter.first_seen)
      .bind(10, letter.dead_at != 0 ? letter.dead_at : now);
  auto inserted = run_insert(connection, use, "writing dead letter ", letter.id);
  if (!inserted.ok()) return inserted.status();
  if (*inserted) connection.counts().add(letter.topic, kDeadCounter, 1);
  return Status();
}

Status insert_result(Connection& connection, const ResultRecord& record) {
  auto stmt = connection.statement(kInsertResult);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  use.bind_text(1, record.topic)
      .bind_text(2, record.task_id)
      .bind_text(3, record.task)
      .bind_text(4, record.params)
      .bind(5, record.time_ms)
      .bind_text(6, record.message)
      .bind_text(7, record.status)
      .bind(8, record.attempt)
      .bind(9, record.started_at)
      .bind(10, record.finished_at)
      .bind_text(11, record.trace)
      .bind_text(12, record.host)
      .bind(13, record.pid)
      .bind(14, record.due_at);
  auto inserted = run_insert(connection, use, "writing the result of task ", record.task_id);
  return inserted.ok() ? Status() : inserted.status();
}

}  // namespace sqlite
}  // namespace ebats
