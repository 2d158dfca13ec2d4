// Clock: the one seam through which ebats reads time.
//
// Wall time (WallMs, ms since the Unix epoch) is what due times, leases and
// result records store, because it is shared between processes. Steady time
// (SteadyTime) measures durations inside one process (timeouts, time_ms).
// Delay, backoff, lease and timeout logic takes a `const Clock&` and never
// calls std::chrono::*::now() directly, so tests can use FakeClock.
// SystemClock is stateless and thread-safe; FakeClock is not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

#include "ebats/export.h"

namespace ebats {

using WallMs = int64_t;  // milliseconds since 1970-01-01T00:00:00Z
using SteadyTime = std::chrono::steady_clock::time_point;

class EBATS_EXPORT Clock {
 public:
  virtual ~Clock() = default;
  virtual WallMs wall_now() const = 0;
  // Wall time in microseconds since the epoch: for a wait that must end as a
  // due millisecond begins, not up to one millisecond into it.
  virtual int64_t wall_now_us() const = 0;
  virtual SteadyTime steady_now() const = 0;
};

class EBATS_EXPORT SystemClock final : public Clock {
 public:
  WallMs wall_now() const override;
  int64_t wall_now_us() const override;
  SteadyTime steady_now() const override;
};

// A clock that moves only when told to. Starts at a fixed wall time.
class EBATS_EXPORT FakeClock final : public Clock {
 public:
  explicit FakeClock(WallMs start = 1'700'000'000'000) : wall_(start) {}
  WallMs wall_now() const override { return wall_; }
  int64_t wall_now_us() const override { return wall_ * 1000; }
  SteadyTime steady_now() const override { return SteadyTime(std::chrono::milliseconds(steady_ms_)); }
  void advance(std::chrono::milliseconds d) {
    wall_ += d.count();
    steady_ms_ += d.count();
  }

 private:
  WallMs wall_;
  int64_t steady_ms_ = 0;
};

}  // namespace ebats
