// AmqpDeadLetters: the dead-letter store of the RabbitMQ backend, behind
// `ebatsctl dead`, on the stream <prefix>.dead.
//
// A stream keeps its entries in order and reads never consume them, so
// browsing loses and reorders nothing, and an entry's offset is its id. A
// stream cannot delete an entry: replay and purge append a tombstone that
// settles entries (by offset, or every offset up to one), after the
// replacement is confirmed. Every call reads the stream from its first entry
// up to what it held when the call began (O(entries), fine for dead letters;
// set a max-age policy on the stream to bound it). Replays and purges hold a
// lock (an exclusive queue, Topology::dead_lock_queue()) from before their
// read to after their tombstone, so two at once never settle or replay an
// entry twice; the second waits up to broker.amqp.confirm_timeout.
#pragma once

#include <cstdint>
#include <vector>

#include "broker/amqp/amqp_session.h"
#include "ebats/broker.h"

namespace ebats {
namespace amqp {

class DeadLetterLock;

class AmqpDeadLetters final : public DeadLetterStore {
 public:
  // REQUIRES: `session` outlives the store.
  explicit AmqpDeadLetters(AmqpSession& session) : session_(session) {}

  Result<std::vector<DeadLetterEntry>> list(uint32_t limit) override;
  Result<DeadLetterEntry> show(uint64_t seq) override;
  Status replay(uint64_t seq, WallMs now) override;
  Result<uint64_t> replay_all(WallMs now) override;
  Result<uint64_t> purge() override;
  Result<uint64_t> replay_selected(const std::vector<uint64_t>& seqs, WallMs now) override;
  Result<uint64_t> purge_selected(const std::vector<uint64_t>& seqs) override;

  // The I/O thread only: the live entries, oldest first, and the last offset read.
  struct Snapshot {
    std::vector<DeadLetterEntry> entries;
    bool empty_stream = true;
    uint64_t last_offset = 0;
  };
  Result<Snapshot> read_on_io();

 private:
  // The message that puts `entry` back (task: its topic's ntask lane, due
  // now, attempt 0; event: the events exchange). invalid_argument for raw bytes.
  Result<OutMsg> replacement(const DeadLetterEntry& entry, WallMs now) const;
  // The I/O thread only: replays the replayable ones of `entries` (their
  // replacements confirmed, then one tombstone for them); returns how many.
  Result<uint64_t> replay_on_io(const std::vector<DeadLetterEntry>& entries, WallMs now, const DeadLetterLock& lock);
  // The I/O thread only: a tombstone settling `offsets`, or all up to `upto`.
  Status tombstone_on_io(const std::vector<uint64_t>& offsets, uint64_t upto);
  // The I/O thread only: a purge of `count` entries, `offsets` or all up to
  // `upto` (one tombstone); 0 when there are none; refused once the lock is lost.
  Result<uint64_t> purge_on_io(const std::vector<uint64_t>& offsets, uint64_t upto, uint64_t count,
                               const DeadLetterLock& lock);
  // Runs settle(snapshot, lock) on the I/O thread with the lock held and the
  // stream read after it was taken: every replay and purge goes through here.
  template <class Settle>
  Result<uint64_t> settle_locked(Settle settle);

  AmqpSession& session_;
};

}  // namespace amqp
}  // namespace ebats
