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
#include "ebats/broker.h"

namespace ebats {
namespace sqlite {

class DeadLetters final : public DeadLetterStore {
 public:
  // REQUIRES: `connection` outlives this store.
  explicit DeadLetters(Connection& connection) : connection_(connection) {}

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
  Status remove(uint64_t seq);

  Connection& connection_;
};

}  // namespace sqlite
}  // namespace ebats
