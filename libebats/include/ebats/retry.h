// RetryPolicy and the decision taken after every execution of a task.
//
// A policy is "max retries" plus a backoff list; retry k (0 for the first
// retry) waits backoff[min(k, size-1)]. The default is the original Ebats
// policy: 5 retries at 5s, 5m, 10m, 1h, 2h10m, so max_attempts = 6.
// An exponential policy (config `backoff: {exponential: 1s, max: 1h}`) is the
// list base, 2 base, 4 base, ... capped at max, built once by
// exponential_backoff(). jitter_pct adds up to that share of the delay on top
// of it (only +: a retry never runs before the list's delay), drawn from a
// hash of the task id and the attempt, so a replayed completion gets the same
// due time and tasks that failed together spread out.
// decide_next_step() is a pure function of its inputs (no clock, no I/O), so
// tests drive it with values. All types here are plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ebats/clock.h"
#include "ebats/export.h"

namespace ebats {

// The largest jitter: 100 % lets a delay double.
constexpr uint32_t kMaxJitterPct = 100;

struct EBATS_EXPORT RetryPolicy {
  uint32_t max_retries = 5;
  std::vector<int64_t> backoff_ms{5'000, 300'000, 600'000, 3'600'000, 7'800'000};
  uint32_t jitter_pct = 0;  // 0 ... kMaxJitterPct: up to this % of the delay is added

  static RetryPolicy original() { return RetryPolicy{}; }
  // base, 2 base, 4 base, ... while below max_ms, then max_ms (the last value,
  // which delay_ms repeats). base_ms >= 1 and max_ms >= base_ms, as the config
  // loader checks; at most 64 values.
  static std::vector<int64_t> exponential_backoff(int64_t base_ms, int64_t max_ms);
  uint32_t max_attempts() const { return max_retries + 1; }
  // Delay before retry number `retry_index` (0-based). 0 when the list is empty.
  int64_t delay_ms(uint32_t retry_index) const;
  // delay_ms(retry_index) plus the jitter `draw` picks: an amount from 0 to
  // delay * jitter_pct / 100 (draw % (that + 1)). Never below delay_ms, never
  // above kMaxDuration (unless delay_ms already is).
  int64_t jittered_delay_ms(uint32_t retry_index, uint64_t draw) const;
  bool operator==(const RetryPolicy& o) const {
    return max_retries == o.max_retries && backoff_ms == o.backoff_ms && jitter_pct == o.jitter_pct;
  }
};

// The jitter draw of a task's attempt: a 64-bit hash of the task id and the
// attempt, the same in every process and on every backend.
EBATS_EXPORT uint64_t jitter_draw(std::string_view task_id, uint32_t attempt);

// What one execution of a handler came to, as reported by the child process
// (or the parent, for crashes and timeouts).
enum class Outcome : uint8_t {
  ok,          // handler returned EBATS_OK
  retry,       // handler asked for a retry (ebats::Retry / EBATS_RETRY)
  fail,        // permanent failure (ebats::Fail, other exceptions, unknown codes)
  no_handler,  // no loaded plugin registers this task name
  crashed,     // the child died while running it (signal or exit)
  timed_out,   // the child was killed after timeout + kill_after
  lease_lost,  // the worker lost the task's lease (crash recovery)
};
EBATS_EXPORT const char* outcome_name(Outcome o);

// Everything the decision needs about the task and the attempt just finished.
struct AttemptFacts {
  Outcome outcome = Outcome::ok;
  uint32_t attempt = 0;       // executions finished before this one (0 on the first run)
  uint32_t max_attempts = 6;  // 1 + retries allowed, frozen in the task
  RetryPolicy policy;         // frozen in the task
  std::optional<int64_t> retry_after_ms;  // handler override of the next delay (clamped to 7 days)
  std::optional<uint32_t> retry_limit;    // handler override: max retries from now on
  WallMs finished_at = 0;
  std::string message;                    // handler message or crash description
  std::string task;                       // task name, used in reasons
  std::string task_id;                    // task id: with attempt, picks the jitter (jitter_draw)
};

// Result status written to the result record.
enum class ResultStatus : uint8_t { ok, retry, failed, dead };
EBATS_EXPORT const char* result_status_name(ResultStatus s);

struct NextStep {
  enum class Action : uint8_t { ack, retry, dead_letter } action = Action::ack;
  ResultStatus status = ResultStatus::ok;
  WallMs retry_due_at = 0;        // when action == retry
  uint32_t next_attempt = 0;      // attempt value of the retried task
  uint32_t next_max_attempts = 0; // possibly lowered/raised by retry_limit
  std::string dead_reason;        // when action == dead_letter, e.g. "retries exhausted"
};

// The single place where ok/retry/fail/crash/timeout/no-handler outcomes turn
// into ack, retry (dtask lane, attempt+1, later due) or dead letter.
// - ok -> ack, status ok
// - fail -> dead letter "failed", status failed
// - no_handler -> dead letter "no handler for task <task>", status failed
// - retry / crashed / timed_out / lease_lost -> retry while attempt+1 < max_attempts
//   (status retry) after retry_after_ms if the handler gave one, else after
//   policy.jittered_delay_ms(attempt, jitter_draw(task_id, attempt)); else
//   dead letter "retries exhausted" / "crashed" / "timed out" / "lease expired"
//   (status dead)
EBATS_EXPORT NextStep decide_next_step(const AttemptFacts& facts);

}  // namespace ebats
