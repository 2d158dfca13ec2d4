// RetryPolicy delays and the ack / retry / dead-letter decision after an attempt.
#include "ebats/retry.h"

#include <algorithm>

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
                                               : facts.policy.delay_ms(facts.attempt);
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
