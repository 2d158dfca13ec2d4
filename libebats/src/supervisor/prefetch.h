// How many tasks a worker holds (claimed, queued or running in a child):
// automatic_prefetch() when workers.<topic>.prefetch is 0 (automatic),
// configured_prefetch() when it is a number.
//
// Two caps, the smaller wins, never below 2 per child:
//   time:  about kTargetHeldUs of work per child, from the measured run time
//          of a task, so tiny tasks are claimed in big batches (few
//          transactions) and slow ones are not leased by the hundred while
//          they wait;
//   bytes: about kHeldBytesBudget of task bodies in all, from the largest body
//          of the latest claim, so a queue of 1 MiB messages is not held by
//          the thousand.
// Before anything is measured: an ntask worker starts at 2 per child; a dtask
// worker, whose claims are bounded by due time already, at the upper bound,
// so a burst of delayed tasks is claimed ahead of its due time; both assume
// bodies of max_message_bytes until a claim shows their size. Pure function.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace ebats {

constexpr double kTargetHeldUs = 100'000;                 // work held per child, in time
constexpr uint64_t kHeldBytesBudget = uint64_t{64} << 20;  // task bodies held by one worker

struct PrefetchInputs {
  size_t processes = 1;
  size_t upper_bound = 1;          // min(claim_batch, 512 per child), at least 2 per child
  bool delayed_lane = false;       // the dtask worker
  double avg_task_us = 0;          // moving average of a task's run time; 0 = not measured yet
  uint64_t body_bytes = 0;         // largest body of the latest claim; 0 = not measured yet
  uint64_t max_message_bytes = 1;  // limits.max_message_bytes
};

// Bodies a worker may hold within kHeldBytesBudget: from the largest body of
// the latest claim, or max_message_bytes before any claim.
inline size_t held_within_byte_budget(uint64_t body_bytes, uint64_t max_message_bytes) {
  const uint64_t body = std::max<uint64_t>(1, body_bytes > 0 ? body_bytes : max_message_bytes);
  return static_cast<size_t>(std::min<uint64_t>(kHeldBytesBudget / body, std::numeric_limits<size_t>::max()));
}

inline size_t automatic_prefetch(const PrefetchInputs& in) {
  const size_t floor = 2 * in.processes;
  size_t by_time = in.upper_bound;
  if (in.avg_task_us > 0) {
    by_time = static_cast<size_t>(kTargetHeldUs / std::max(1.0, in.avg_task_us)) * in.processes;
  } else if (!in.delayed_lane) {
    by_time = floor;
  }
  const size_t by_bytes = held_within_byte_budget(in.body_bytes, in.max_message_bytes);
  return std::max(floor, std::min({by_time, by_bytes, in.upper_bound}));
}

// A prefetch set by hand: `configured` tasks, but never more bodies than the
// byte budget holds (a queue of 1 MiB messages is not held by the thousand
// because the count was chosen for small ones), and never so few that a child
// goes without work: at least min(configured, processes).
inline size_t configured_prefetch(size_t configured, size_t processes, uint64_t body_bytes,
                                  uint64_t max_message_bytes) {
  const size_t floor = std::max<size_t>(1, std::min(configured, processes));
  return std::max(floor, std::min(configured, held_within_byte_budget(body_bytes, max_message_bytes)));
}

}  // namespace ebats
