// ResultsPruner: retention of the SQLite results table (results.keep,
// results.keep_rows; docs/BROKER.md, "Retention").
//
// ebats-scheduler calls tick() once per turn of its loop. There is one
// scheduler per SQLite file (it holds a lock file), so one pruner. A tick
// does nothing until a round is due; then it deletes one batch of at most
// `batch_rows` of the oldest rows past the window in one short, unfsynced
// transaction (Broker::prune_results) and returns. While batches come back
// full, the next is due after `pause`, so the workers' commits and the
// scheduler's own routing get the write lock between batches; when one comes
// back short, the round is over and the next starts after `period`.
// Single-threaded, like the scheduler.
#pragma once

#include <chrono>
#include <cstdint>

#include "daemon/logger.h"
#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"

namespace ebats {

class ResultsPruner {
 public:
  struct Settings {
    int64_t keep_ms = 0;      // results.keep; 0 = no age bound
    uint64_t keep_rows = 0;   // results.keep_rows; 0 = no count bound
    uint32_t batch_rows = 2000;
    std::chrono::milliseconds pause{20};
    std::chrono::milliseconds period{10'000};
    bool enabled() const { return keep_ms > 0 || keep_rows > 0; }
  };
  // The config's retention on a sqlite:// broker (disabled on RabbitMQ, which
  // keeps no results table); the period is 10 s, or `keep` when shorter.
  static Settings settings_of(const Config& config);

  ResultsPruner(Settings settings, Broker& broker, const Clock& clock, const Logger& log);

  // Takes the retention of `config` (the scheduler's, which a reload may have
  // swapped): a changed results.keep or keep_rows applies from the next tick,
  // which starts a round. Cheap when nothing changed.
  void follow(const Config& config);

  // Prunes one batch if one is due. Returns the rows deleted (0 when none was
  // due or the pruner is disabled). An error is logged and the round given up
  // until the next period; the error is returned too.
  Result<uint32_t> tick();

  // When the next tick has work to do: the scheduler's loop sleeps no longer
  // (a full round deletes a batch per `pause`, idle or not). Far in the
  // future while the pruner is disabled.
  SteadyTime next_due() const { return settings_.enabled() ? next_ : SteadyTime::max(); }

  const Settings& settings() const { return settings_; }

 private:
  Settings settings_;
  Broker& broker_;
  const Clock& clock_;
  const Logger& log_;
  SteadyTime next_;            // when the next batch is due
  uint64_t round_rows_ = 0;    // deleted so far in this round
  uint32_t round_batches_ = 0;
  SteadyTime round_start_{};
};

}  // namespace ebats
