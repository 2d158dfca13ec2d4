// RetryPolicy delays and the ack / retry / dead-letter decision after an attempt.
#include "ebats/retry.h"

#include <algorithm>

#include "ebats/duration.h"

namespace ebats {
namespace {

constexpr int64_t kMaxRetryAfterMs = int64_t{7} * 24 * 3'600'000;  // 7 days

// The attempts allowed from now on: the frozen value, or the handler's
// retry_limit(n) as n + 1, never below the attempts already made (attempt + 1).
uint32_t effective_max_attempts(const AttemptFacts& facts) {
  if (!facts.retry_limit) return facts.max_attempts;
  const uint64_t wanted = uint64_t{*facts.retry_limit} + 1;
  const uint64_t floor = uint64_t{facts.attempt} + 1;
  const uint64_t chosen = std::max(wanted, floor);
  return static_cast<uint32_t>(std::min<uint64_t>(chosen, UINT32_MAX));
}

// Why a retryable outcome is dead-lettered once the attempts are used up.
const char* exhausted_reason(Outcome o) {
  switch (o) {
    case Outcome::crashed: return "crashed";
    case Outcome::timed_out: return "timed out";
    case Outcome::lease_lost: return "lease expired";
    default: return "retries exhausted";
  }
}

}  // namespace

int64_t RetryPolicy::delay_ms(uint32_t retry_index) const {
  if (backoff_ms.empty()) return 0;
  const size_t i = std::min<size_t>(retry_index, backoff_ms.size() - 1);
  return std::max<int64_t>(0, backoff_ms[i]);
}

std::vector<int64_t> RetryPolicy::exponential_backoff(int64_t base_ms, int64_t max_ms) {
  base_ms = std::max<int64_t>(base_ms, 1);
  max_ms = std::max(max_ms, base_ms);
  std::vector<int64_t> list;
  // Doubling from >= 1 ms passes any int64 max_ms within 63 steps.
  for (int64_t d = base_ms; d < max_ms; d *= 2) {
    list.push_back(d);
    if (d > max_ms / 2) break;
  }
  list.push_back(max_ms);
  return list;
}

int64_t RetryPolicy::jittered_delay_ms(uint32_t retry_index, uint64_t draw) const {
  const int64_t delay = delay_ms(retry_index);
  const int64_t longest = kMaxDuration.count();
  if (jitter_pct == 0 || delay >= longest) return delay;
  const uint64_t pct = std::min(jitter_pct, kMaxJitterPct);
  // delay < kMaxDuration, so delay * 100 and delay + span stay far from overflowing.
  const uint64_t span = static_cast<uint64_t>(delay) * pct / 100;
  const int64_t extra = static_cast<int64_t>(draw % (span + 1));
  return std::min(delay + extra, longest);
}

uint64_t jitter_draw(std::string_view task_id, uint32_t attempt) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a over the id's bytes
  for (const char c : task_id) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  // splitmix64's finalizer over the hash and the attempt: every bit of both
  // moves about half of the result's bits.
  uint64_t z = h + 0x9e3779b97f4a7c15ull * (uint64_t{attempt} + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::ok: return "ok";
    case Outcome::retry: return "retry";
    case Outcome::fail: return "fail";
    case Outcome::no_handler: return "no_handler";
    case Outcome::crashed: return "crashed";
    case Outcome::timed_out: return "timed_out";
    case Outcome::lease_lost: return "lease_lost";
  }
  return "unknown";
}

const char* result_status_name(ResultStatus s) {
  switch (s) {
    case ResultStatus::ok: return "ok";
    case ResultStatus::retry: return "retry";
    case ResultStatus::failed: return "failed";
    case ResultStatus::dead: return "dead";
  }
  return "unknown";
}

NextStep decide_next_step(const AttemptFacts& facts) {
  NextStep step;
  step.next_attempt = facts.attempt + 1;
  step.next_max_attempts = effective_max_attempts(facts);
  switch (facts.outcome) {
    case Outcome::ok:
      step.action = NextStep::Action::ack;
      step.status = ResultStatus::ok;
      return step;
    case Outcome::fail:
      step.action = NextStep::Action::dead_letter;
      step.status = ResultStatus::failed;
      step.dead_reason = "failed";
      return step;
    case Outcome::no_handler:
      step.action = NextStep::Action::dead_letter;
      step.status = ResultStatus::failed;
      step.dead_reason = "no handler for task " + facts.task;
      return step;
    case Outcome::retry:
    case Outcome::crashed:
    case Outcome::timed_out:
    case Outcome::lease_lost:
      break;
  }
  if (uint64_t{facts.attempt} + 1 < step.next_max_attempts) {
    const int64_t delay = facts.retry_after_ms ? std::clamp<int64_t>(*facts.retry_after_ms, 0, kMaxRetryAfterMs)
                                               : facts.policy.jittered_delay_ms(
                                                     facts.attempt, jitter_draw(facts.task_id, facts.attempt));
    step.action = NextStep::Action::retry;
    step.status = ResultStatus::retry;
    step.retry_due_at = facts.finished_at + delay;
    return step;
  }
  step.action = NextStep::Action::dead_letter;
  step.status = ResultStatus::dead;
  step.dead_reason = exhausted_reason(facts.outcome);
  return step;
}

}  // namespace ebats
