// Queue counts: how many rows each queue of the SQLite backend holds, kept in
// the table queue_counts by the transactions that change those rows, so that
// depths() (`ebatsctl stats`) reads a row per topic instead of counting every
// queued row (a million of them took SQLite 0.07 s).
//
// The counters (column `counter`), per topic:
//   'n', 'd'  tasks in state 'ready' of the ntask and dtask lanes, due or not;
//   'e'       ready events (topic '');
//   'dead'    dead letters (those of events and raw bytes under topic '').
// Leased rows are not counted here: there are only as many as the workers
// hold, and depths() counts them on their index.
//
// Whoever changes such rows adds the change to its Connection's CountDeltas;
// Transaction::commit() writes the deltas inside the transaction, one upsert
// per (topic, counter), just before COMMIT, and a rollback drops them. The
// counts therefore move in the same commit as the rows they count, and a
// crash can never leave one without the other.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ebats/broker.h"
#include "ebats/status.h"

namespace ebats {
namespace sqlite {

class Connection;

constexpr const char* kDeadCounter = "dead";

// The counter of the ready rows of `lane`: "e", or the task lane's code
// (task_lane_code(): "n" or "d", as in tasks.lane). REQUIRES: lane is
// events, ntask or dtask.
const char* ready_counter(Lane lane);

class CountDeltas {
 public:
  // Adds `delta` to the count of (topic, counter); `counter` is one of the
  // names above.
  void add(const std::string& topic, std::string_view counter, int64_t delta);
  // Writes the deltas as upserts into queue_counts and forgets them.
  // REQUIRES: inside the write transaction whose row changes they count.
  Status flush(Connection& connection);
  // Forgets the deltas (the transaction rolled back).
  void clear() { entries_.clear(); }

 private:
  struct Entry {
    std::string topic;
    std::string counter;
    int64_t delta;
  };
  std::vector<Entry> entries_;  // a transaction touches a topic or two: a short list beats a map
};

}  // namespace sqlite
}  // namespace ebats
