// PollBackoff: how long a poller waits before it looks for work again.
//
// After a look that found work the next one comes soon (`floor`); every look
// that finds nothing doubles the wait, up to `ceiling` (the configured
// poll_interval). So work that arrives in pieces, like tasks the scheduler
// commits batch by batch, is picked up within about a millisecond, while an
// idle daemon still looks only once per poll_interval: about log2(ceiling /
// floor) extra looks after each burst. A new PollBackoff starts at `floor`, so
// a daemon starting on a full queue does not sleep a whole interval first.
// A value type; no clock inside: the caller adds the wait to its own now.
#pragma once

#include <algorithm>
#include <chrono>

namespace ebats {

class PollBackoff {
 public:
  using milliseconds = std::chrono::milliseconds;

  // REQUIRES: 0 < floor <= ceiling (a smaller ceiling is raised to floor).
  explicit PollBackoff(milliseconds ceiling, milliseconds floor = milliseconds(1))
      : floor_(floor), ceiling_(std::max(ceiling, floor)), wait_(floor) {}

  // Records the outcome of a look and returns how long to wait before the next.
  milliseconds after_look(bool found_work) {
    wait_ = found_work ? floor_ : std::min(ceiling_, wait_ * 2);
    return wait_;
  }

 private:
  milliseconds floor_;
  milliseconds ceiling_;
  milliseconds wait_;
};

}  // namespace ebats
