// DeadLetters: the dead-letter store of the SQLite backend (table
// dead_letters), behind `ebatsctl dead`.
//
// It shares its broker's connection and thread. Every replay or purge is one
// BEGIN IMMEDIATE transaction: the replacement row is written in the same
// commit that deletes the dead letter.
#pragma once

#include <cstdint>
#include <vector>

#include "broker/sqlite/sqlite_connection.h"
#include "broker/sqlite/sqlite_wake.h"
#include "ebats/broker.h"

namespace ebats {
namespace sqlite {

class DeadLetters final : public DeadLetterStore {
 public:
  // REQUIRES: `connection` and `waker` outlive this store. A replay wakes
  // the daemons of the lanes it wrote to (sqlite_wake.h).
  DeadLetters(Connection& connection, WakeSender& waker) : connection_(connection), waker_(waker) {}

  // Newest first; limit 0 lists every entry.
  Result<std::vector<DeadLetterEntry>> list(uint32_t limit) override;
  Result<DeadLetterEntry> show(uint64_t seq) override;
  Status replay(uint64_t seq, WallMs now) override;
  Result<uint64_t> replay_all(WallMs now) override;
  Result<uint64_t> purge() override;
  Result<uint64_t> replay_selected(const std::vector<uint64_t>& seqs, WallMs now) override;
  Result<uint64_t> purge_selected(const std::vector<uint64_t>& seqs) override;

 private:
  // Writes the replacement of `entry` (task → ntask lane, event → events
  // lane). REQUIRES: inside a write transaction.
  Status write_replacement(const DeadLetterEntry& entry, WallMs now);
  // Deletes dead letter `seq`; false when there was none.
  Result<bool> remove(uint64_t seq);
  // Commits `txn` and then wakes the daemons of what write_replacement() wrote.
  Status commit_and_wake(Transaction& txn);

  Connection& connection_;
  WakeSender& waker_;
  std::vector<std::pair<Lane, std::string>> written_;  // lanes written in the open transaction
};

}  // namespace sqlite
}  // namespace ebats
