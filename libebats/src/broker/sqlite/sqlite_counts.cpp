#include "broker/sqlite/sqlite_counts.h"

#include <algorithm>

#include "broker/sqlite/sqlite_connection.h"
#include "broker/sqlite/sqlite_rows.h"

namespace ebats {
namespace sqlite {
namespace {

const std::string kAddCount =
    "INSERT INTO queue_counts (topic, counter, n) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (topic, counter) DO UPDATE SET n = n + excluded.n";

}  // namespace

const char* ready_counter(Lane lane) { return lane == Lane::events ? "e" : task_lane_code(lane); }

void CountDeltas::add(const std::string& topic, std::string_view counter, int64_t delta) {
  if (delta == 0) return;
  auto same = std::find_if(entries_.begin(), entries_.end(),
                           [&](const Entry& e) { return e.topic == topic && e.counter == counter; });
  if (same == entries_.end()) {
    entries_.push_back(Entry{topic, std::string(counter), delta});
  } else {
    same->delta += delta;
  }
}

Status CountDeltas::flush(Connection& connection) {
  std::vector<Entry> entries;
  entries.swap(entries_);
  for (const Entry& e : entries) {
    if (e.delta == 0) continue;
    auto stmt = connection.statement(kAddCount);
    if (!stmt.ok()) return stmt.status();
    StatementUse use(*stmt);
    use.bind_text(1, e.topic).bind_text(2, e.counter).bind(3, e.delta);
    Status status = run_to_completion(connection, use, "counting queued rows");
    if (!status.ok()) return status;
  }
  return Status();
}

}  // namespace sqlite
}  // namespace ebats
