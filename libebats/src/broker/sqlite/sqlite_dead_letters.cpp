#include "broker/sqlite/sqlite_dead_letters.h"

#include <rapidjson/document.h>

#include <string>

#include "broker/dead_letter_errors.h"
#include "broker/sqlite/sqlite_rows.h"
#include "ebats/retry.h"

namespace ebats {
namespace sqlite {
namespace {

const std::string kColumns =
    "SELECT seq, id, kind, topic, name, reason, error, attempts, body, first_seen, dead_at FROM dead_letters ";
const std::string kList = kColumns + "ORDER BY seq DESC LIMIT ?1";
const std::string kShow = kColumns + "WHERE seq = ?1";
const std::string kReplayable = kColumns + "WHERE kind <> 'raw' ORDER BY seq";
const std::string kDelete = "DELETE FROM dead_letters WHERE seq = ?1 RETURNING topic";
const std::string kPurge = "DELETE FROM dead_letters";
const std::string kZeroDeadCounts = "UPDATE queue_counts SET n = 0 WHERE counter = 'dead'";

DeadLetterEntry read_entry(const StatementUse& use) {
  DeadLetterEntry entry;
  entry.seq = static_cast<uint64_t>(use.int_column(0));
  DeadLetter& d = entry.letter;
  d.id = use.bytes_column(1);
  d.kind = use.bytes_column(2);
  d.topic = use.bytes_column(3);
  d.name = use.bytes_column(4);
  d.reason = use.bytes_column(5);
  d.error = use.bytes_column(6);
  d.attempts = static_cast<uint32_t>(use.int_column(7));
  d.body = use.bytes_column(8);
  d.first_seen = use.int_column(9);
  d.dead_at = use.int_column(10);
  return entry;
}

// Runs a SELECT over dead letters; `bind` binds its parameters.
template <class Bind>
Result<std::vector<DeadLetterEntry>> select_entries(Connection& connection, const std::string& sql, Bind bind) {
  auto stmt = connection.statement(sql);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  bind(use);
  std::vector<DeadLetterEntry> entries;
  for (;;) {
    const int rc = use.step();
    if (rc == SQLITE_DONE) return entries;
    if (rc != SQLITE_ROW) return connection.error(rc, "reading dead letters");
    entries.push_back(read_entry(use));
  }
}

// max_attempts frozen in a task envelope; the default policy's when the body
// does not say (the row's attempt/max_attempts columns are authoritative for
// the worker, so the body itself stays byte for byte as it was).
uint32_t max_attempts_of(const std::string& body) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(body.data(), body.size());
  if (!doc.HasParseError() && doc.IsObject()) {
    auto found = doc.FindMember("max_attempts");
    if (found != doc.MemberEnd() && found->value.IsUint() && found->value.GetUint() >= 1) {
      return found->value.GetUint();
    }
  }
  return RetryPolicy{}.max_attempts();
}

}  // namespace

Result<std::vector<DeadLetterEntry>> DeadLetters::list(uint32_t limit) {
  const int64_t sql_limit = limit == 0 ? -1 : static_cast<int64_t>(limit);
  return select_entries(connection_, kList, [&](StatementUse& use) { use.bind(1, sql_limit); });
}

Result<DeadLetterEntry> DeadLetters::show(uint64_t seq) {
  auto found = select_entries(connection_, kShow, [&](StatementUse& use) { use.bind(1, static_cast<int64_t>(seq)); });
  if (!found.ok()) return found.status();
  if (found->empty()) return no_dead_letter(seq);
  return std::move(found->front());
}

Status DeadLetters::write_replacement(const DeadLetterEntry& entry, WallMs now) {
  const DeadLetter& d = entry.letter;
  const std::string number = std::to_string(entry.seq);
  if (d.kind == "raw") {
    return raw_dead_letter_not_replayable(entry);
  }
  OutMsg msg;
  msg.id = d.id;
  msg.name = d.name;
  msg.body = d.body;
  if (d.kind == "task") {
    if (d.topic.empty() || d.name.empty()) {
      return Status::invalid("dead letter " + number + " is a task without a topic or task name and cannot be replayed");
    }
    msg.lane = Lane::ntask;
    msg.topic = d.topic;
    msg.due_at = now;
    msg.attempt = 0;
    msg.max_attempts = max_attempts_of(d.body);
  } else {
    msg.lane = Lane::events;
  }
  // A task or event with the same id already queued is the replay done: the
  // insert is ignored and the dead letter goes.
  auto inserted = insert_message(connection_, msg, now);
  if (!inserted.ok()) return inserted.status();
  if (*inserted) written_.emplace_back(msg.lane, msg.topic);
  return Status();
}

Status DeadLetters::commit_and_wake(Transaction& txn) {
  std::vector<std::pair<Lane, std::string>> written;
  written.swap(written_);
  Status status = txn.commit();
  if (status.ok()) waker_.wake(written);
  return status;
}

Result<bool> DeadLetters::remove(uint64_t seq) {
  auto stmt = connection_.statement(kDelete);
  if (!stmt.ok()) return stmt.status();
  StatementUse use(*stmt);
  use.bind(1, static_cast<int64_t>(seq));
  int rc = use.step();
  const bool removed = rc == SQLITE_ROW;
  if (removed) {
    connection_.counts().add(use.bytes_column(0), kDeadCounter, -1);
    rc = use.step();
  }
  if (rc != SQLITE_DONE) return connection_.error(rc, "deleting a dead letter");
  return removed;
}

Status DeadLetters::replay(uint64_t seq, WallMs now) {
  Transaction txn(connection_, Transaction::Mode::immediate);
  written_.clear();
  Status status = txn.begin();
  if (!status.ok()) return status;
  auto found = show(seq);
  if (!found.ok()) return found.status();
  status = write_replacement(*found, now);
  if (!status.ok()) return status;
  auto removed = remove(seq);
  if (!removed.ok()) return removed.status();
  return commit_and_wake(txn);
}

Result<uint64_t> DeadLetters::replay_all(WallMs now) {
  Transaction txn(connection_, Transaction::Mode::immediate);
  written_.clear();
  Status status = txn.begin();
  if (!status.ok()) return status;
  auto entries = select_entries(connection_, kReplayable, [](StatementUse&) {});
  if (!entries.ok()) return entries.status();
  uint64_t replayed = 0;
  for (const DeadLetterEntry& entry : *entries) {
    status = write_replacement(entry, now);
    if (status.code() == StatusCode::invalid_argument) continue;  // not replayable: stays listed
    if (!status.ok()) return status;
    auto removed = remove(entry.seq);
    if (!removed.ok()) return removed.status();
    ++replayed;
  }
  status = commit_and_wake(txn);
  if (!status.ok()) return status;
  return replayed;
}

Result<uint64_t> DeadLetters::purge() {
  Transaction txn(connection_, Transaction::Mode::immediate);
  Status status = txn.begin();
  if (!status.ok()) return status;
  auto stmt = connection_.statement(kPurge);
  if (!stmt.ok()) return stmt.status();
  uint64_t removed = 0;
  {
    StatementUse use(*stmt);
    status = run_to_completion(connection_, use, "purging dead letters");
    if (!status.ok()) return status;
    removed = static_cast<uint64_t>(sqlite3_changes64(connection_.db()));
  }
  {
    auto zero = connection_.statement(kZeroDeadCounts);
    if (!zero.ok()) return zero.status();
    StatementUse use(*zero);
    status = run_to_completion(connection_, use, "counting dead letters");
    if (!status.ok()) return status;
  }
  status = txn.commit();
  if (!status.ok()) return status;
  return removed;
}

Result<uint64_t> DeadLetters::replay_selected(const std::vector<uint64_t>& seqs, WallMs now) {
  Transaction txn(connection_, Transaction::Mode::immediate);
  written_.clear();
  Status status = txn.begin();
  if (!status.ok()) return status;
  uint64_t replayed = 0;
  for (uint64_t seq : seqs) {
    auto entry = show(seq);
    if (entry.status().code() == StatusCode::not_found) continue;  // settled meanwhile
    if (!entry.ok()) return entry.status();
    status = write_replacement(*entry, now);
    if (status.code() == StatusCode::invalid_argument) continue;  // not replayable: stays listed
    if (!status.ok()) return status;
    auto removed = remove(seq);
    if (!removed.ok()) return removed.status();
    ++replayed;
  }
  status = commit_and_wake(txn);
  if (!status.ok()) return status;
  return replayed;
}

Result<uint64_t> DeadLetters::purge_selected(const std::vector<uint64_t>& seqs) {
  Transaction txn(connection_, Transaction::Mode::immediate);
  Status status = txn.begin();
  if (!status.ok()) return status;
  uint64_t removed = 0;
  for (uint64_t seq : seqs) {
    auto one = remove(seq);
    if (!one.ok()) return one.status();
    if (*one) ++removed;
  }
  status = txn.commit();
  if (!status.ok()) return status;
  return removed;
}

}  // namespace sqlite
}  // namespace ebats
