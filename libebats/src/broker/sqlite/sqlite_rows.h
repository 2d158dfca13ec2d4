// Row writers shared by the SQLite broker and its dead-letter store.
//
// Each function runs one cached statement of `connection`. REQUIRES: the
// caller holds a write transaction (Transaction::Mode::immediate), so a batch
// of rows costs one commit. Queued rows and dead letters are added to the
// connection's CountDeltas (sqlite_counts.h).
#pragma once

#include <string>

#include "broker/sqlite/sqlite_connection.h"
#include "ebats/broker.h"
#include "ebats/result.h"

namespace ebats {
namespace sqlite {

// 'n' for Lane::ntask, 'd' for Lane::dtask. REQUIRES: lane is a task lane.
const char* task_lane_code(Lane lane);

// Inserts an event (events lane) or a ready task (ntask/dtask lane), created
// now. Returns false, inserting nothing, when a message with the same id is
// already queued (publishing is idempotent by id). invalid_argument for a
// message that lacks its id, or a task that lacks its topic or name.
Result<bool> insert_message(Connection& connection, const OutMsg& msg, WallMs now);

// Inserts a ntask/dtask task already leased to `owner` until `lease_until`,
// for a caller that runs it at once (Broker::commit_routed). Returns its
// row seq, or 0, inserting nothing, when a task with the same id is already
// queued. Errors as insert_message().
Result<int64_t> insert_leased_task(Connection& connection, const OutMsg& msg, WallMs now, const std::string& owner,
                                   WallMs lease_until);

// Appends a dead letter; dead_at 0 means now. invalid_argument for an unknown kind.
Status insert_dead_letter(Connection& connection, const DeadLetter& letter, WallMs now);

// Appends a result record to the results table.
Status insert_result(Connection& connection, const ResultRecord& record);

}  // namespace sqlite
}  // namespace ebats
