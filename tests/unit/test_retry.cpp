// RetryPolicy delays and decide_next_step(): every outcome, handler overrides, exhaustion.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "ebats/clock.h"
#include "ebats/duration.h"
#include "ebats/retry.h"

using ebats::AttemptFacts;
using ebats::NextStep;
using ebats::Outcome;
using ebats::ResultStatus;
using ebats::RetryPolicy;

namespace {

constexpr int64_t kSecond = 1'000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr ebats::WallMs kFinished = 1'700'000'000'000;

AttemptFacts facts_for(Outcome outcome, uint32_t attempt) {
  AttemptFacts f;
  f.outcome = outcome;
  f.attempt = attempt;
  f.max_attempts = 6;
  f.finished_at = kFinished;
  f.task = "virtualShipping";
  return f;
}

}  // namespace

TEST_CASE("the original policy is 5 retries at 5s, 5m, 10m, 1h, 2h10m", "[retry]") {
  const RetryPolicy p = RetryPolicy::original();
  CHECK(p.max_retries == 5);
  CHECK(p.max_attempts() == 6);
  CHECK(p.delay_ms(0) == 5 * kSecond);
  CHECK(p.delay_ms(1) == 5 * kMinute);
  CHECK(p.delay_ms(2) == 10 * kMinute);
  CHECK(p.delay_ms(3) == kHour);
  CHECK(p.delay_ms(4) == 2 * kHour + 10 * kMinute);
  CHECK(p == RetryPolicy{});
}

TEST_CASE("delay_ms repeats the last backoff value and is 0 for an empty list", "[retry]") {
  RetryPolicy p;
  p.max_retries = 10;
  p.backoff_ms = {1'000, 2'000};
  CHECK(p.delay_ms(0) == 1'000);
  CHECK(p.delay_ms(1) == 2'000);
  CHECK(p.delay_ms(2) == 2'000);
  CHECK(p.delay_ms(UINT32_MAX) == 2'000);
  p.backoff_ms.clear();
  CHECK(p.delay_ms(0) == 0);
  CHECK(p.delay_ms(7) == 0);
}

TEST_CASE("outcome and result status names", "[retry]") {
  CHECK(std::string(ebats::outcome_name(Outcome::ok)) == "ok");
  CHECK(std::string(ebats::outcome_name(Outcome::retry)) == "retry");
  CHECK(std::string(ebats::outcome_name(Outcome::fail)) == "fail");
  CHECK(std::string(ebats::outcome_name(Outcome::no_handler)) == "no_handler");
  CHECK(std::string(ebats::outcome_name(Outcome::crashed)) == "crashed");
  CHECK(std::string(ebats::outcome_name(Outcome::timed_out)) == "timed_out");
  CHECK(std::string(ebats::outcome_name(Outcome::lease_lost)) == "lease_lost");
  CHECK(std::string(ebats::result_status_name(ResultStatus::ok)) == "ok");
  CHECK(std::string(ebats::result_status_name(ResultStatus::retry)) == "retry");
  CHECK(std::string(ebats::result_status_name(ResultStatus::failed)) == "failed");
  CHECK(std::string(ebats::result_status_name(ResultStatus::dead)) == "dead");
}

TEST_CASE("ok is acked on any attempt", "[retry]") {
  for (uint32_t attempt : {0u, 3u, 5u}) {
    const NextStep s = ebats::decide_next_step(facts_for(Outcome::ok, attempt));
    CHECK(s.action == NextStep::Action::ack);
    CHECK(s.status == ResultStatus::ok);
    CHECK(s.dead_reason.empty());
  }
}

TEST_CASE("fail and no_handler are dead-lettered at once with status failed", "[retry]") {
  const NextStep failed = ebats::decide_next_step(facts_for(Outcome::fail, 0));
  CHECK(failed.action == NextStep::Action::dead_letter);
  CHECK(failed.status == ResultStatus::failed);
  CHECK(failed.dead_reason == "failed");

  const NextStep missing = ebats::decide_next_step(facts_for(Outcome::no_handler, 0));
  CHECK(missing.action == NextStep::Action::dead_letter);
  CHECK(missing.status == ResultStatus::failed);
  CHECK(missing.dead_reason == "no handler for task virtualShipping");
}

TEST_CASE("retryable outcomes retry at the policy delay while attempts remain", "[retry]") {
  for (Outcome o : {Outcome::retry, Outcome::crashed, Outcome::timed_out, Outcome::lease_lost}) {
    INFO(ebats::outcome_name(o));
    const NextStep first = ebats::decide_next_step(facts_for(o, 0));
    CHECK(first.action == NextStep::Action::retry);
    CHECK(first.status == ResultStatus::retry);
    CHECK(first.retry_due_at == kFinished + 5 * kSecond);
    CHECK(first.next_attempt == 1);
    CHECK(first.next_max_attempts == 6);

    const NextStep fifth = ebats::decide_next_step(facts_for(o, 4));  // 5th execution failed
    CHECK(fifth.action == NextStep::Action::retry);
    CHECK(fifth.retry_due_at == kFinished + 2 * kHour + 10 * kMinute);
    CHECK(fifth.next_attempt == 5);
  }
}

TEST_CASE("retryable outcomes are dead-lettered once attempts are exhausted, each with its reason", "[retry]") {
  const std::vector<std::pair<Outcome, const char*>> cases = {{Outcome::retry, "retries exhausted"},
                                                              {Outcome::crashed, "crashed"},
                                                              {Outcome::timed_out, "timed out"},
                                                              {Outcome::lease_lost, "lease expired"}};
  for (const auto& [outcome, reason] : cases) {
    INFO(ebats::outcome_name(outcome));
    const NextStep s = ebats::decide_next_step(facts_for(outcome, 5));  // 6th of 6 attempts
    CHECK(s.action == NextStep::Action::dead_letter);
    CHECK(s.status == ResultStatus::dead);
    CHECK(s.dead_reason == reason);
  }
}

TEST_CASE("max_attempts 1 (max: 0) never retries", "[retry]") {
  AttemptFacts f = facts_for(Outcome::retry, 0);
  f.max_attempts = 1;
  f.policy.max_retries = 0;
  const NextStep s = ebats::decide_next_step(f);
  CHECK(s.action == NextStep::Action::dead_letter);
  CHECK(s.dead_reason == "retries exhausted");
}

TEST_CASE("retry_after replaces the policy delay and is clamped to [0, 7 days]", "[retry]") {
  AttemptFacts f = facts_for(Outcome::retry, 2);
  f.retry_after_ms = 1'234;
  CHECK(ebats::decide_next_step(f).retry_due_at == kFinished + 1'234);
  f.retry_after_ms = 0;
  CHECK(ebats::decide_next_step(f).retry_due_at == kFinished);
  f.retry_after_ms = -50;
  CHECK(ebats::decide_next_step(f).retry_due_at == kFinished);
  f.retry_after_ms = 30 * 24 * kHour;
  CHECK(ebats::decide_next_step(f).retry_due_at == kFinished + 7 * 24 * kHour);
  // retry_after does not grant an attempt beyond max_attempts.
  f.attempt = 5;
  CHECK(ebats::decide_next_step(f).action == NextStep::Action::dead_letter);
}

TEST_CASE("retry_limit sets max_attempts to n + 1, never below attempt + 1", "[retry]") {
  AttemptFacts f = facts_for(Outcome::retry, 0);
  f.retry_limit = 2;  // 2 retries -> 3 attempts
  NextStep s = ebats::decide_next_step(f);
  CHECK(s.action == NextStep::Action::retry);
  CHECK(s.next_max_attempts == 3);
  f.attempt = 1;
  CHECK(ebats::decide_next_step(f).action == NextStep::Action::retry);
  f.attempt = 2;  // third execution: 2 + 1 < 3 is false
  s = ebats::decide_next_step(f);
  CHECK(s.action == NextStep::Action::dead_letter);
  CHECK(s.dead_reason == "retries exhausted");
  CHECK(s.next_max_attempts == 3);

  // A limit below what was already used stops here, without going under attempt + 1.
  f.attempt = 4;
  f.retry_limit = 1;
  s = ebats::decide_next_step(f);
  CHECK(s.action == NextStep::Action::dead_letter);
  CHECK(s.next_max_attempts == 5);

  // A limit may also raise the allowance beyond the frozen max_attempts.
  f.attempt = 5;
  f.retry_limit = 10;
  s = ebats::decide_next_step(f);
  CHECK(s.action == NextStep::Action::retry);
  CHECK(s.next_max_attempts == 11);
  CHECK(s.retry_due_at == kFinished + 2 * kHour + 10 * kMinute);  // last backoff value repeats

  // retry_limit(0): no more retries.
  f.attempt = 0;
  f.retry_limit = 0;
  s = ebats::decide_next_step(f);
  CHECK(s.action == NextStep::Action::dead_letter);
  CHECK(s.next_max_attempts == 1);

  f.retry_limit = UINT32_MAX;  // no overflow
  CHECK(ebats::decide_next_step(f).next_max_attempts == UINT32_MAX);
}

TEST_CASE("retry schedule with a fake clock: 5s, 5m, 10m, 1h, 2h10m, then dead letter", "[retry]") {
  ebats::FakeClock clock;
  const ebats::WallMs created_at = clock.wall_now();
  const std::vector<int64_t> expected_gaps = {5 * kSecond, 5 * kMinute, 10 * kMinute, kHour,
                                              2 * kHour + 10 * kMinute};
  AttemptFacts task = facts_for(Outcome::retry, 0);
  task.max_attempts = RetryPolicy::original().max_attempts();
  std::vector<int64_t> gaps;
  std::vector<ebats::WallMs> started;
  for (int execution = 0; execution < 10; ++execution) {
    started.push_back(clock.wall_now());
    clock.advance(std::chrono::milliseconds(250));  // the handler runs, then asks for a retry
    task.finished_at = clock.wall_now();
    const NextStep step = ebats::decide_next_step(task);
    if (step.action != NextStep::Action::retry) {
      CHECK(step.action == NextStep::Action::dead_letter);
      CHECK(step.status == ResultStatus::dead);
      CHECK(step.dead_reason == "retries exhausted");
      break;
    }
    gaps.push_back(step.retry_due_at - task.finished_at);
    REQUIRE(step.retry_due_at >= clock.wall_now());
    clock.advance(std::chrono::milliseconds(step.retry_due_at - clock.wall_now()));  // the task becomes due
    task.attempt = step.next_attempt;
    task.max_attempts = step.next_max_attempts;
  }
  CHECK(gaps == expected_gaps);
  CHECK(started.size() == 6);  // 1 run + 5 retries
  CHECK(task.attempt == 5);
  // Total wall time from creation to the dead letter: the backoff sum plus 6 runs of 250ms.
  CHECK(clock.wall_now() - created_at == 5 * kSecond + 5 * kMinute + 10 * kMinute + kHour +
                                            2 * kHour + 10 * kMinute + 6 * 250);
}

TEST_CASE("exponential_backoff doubles from the base and ends at max, which repeats", "[retry][backoff]") {
  using V = std::vector<int64_t>;
  CHECK(RetryPolicy::exponential_backoff(kSecond, kHour) ==
        V{1'000, 2'000, 4'000, 8'000, 16'000, 32'000, 64'000, 128'000, 256'000, 512'000, 1'024'000, 2'048'000, kHour});
  CHECK(RetryPolicy::exponential_backoff(50, 400) == V{50, 100, 200, 400});
  CHECK(RetryPolicy::exponential_backoff(50, 300) == V{50, 100, 200, 300});
  CHECK(RetryPolicy::exponential_backoff(5 * kSecond, 5 * kSecond) == V{5 * kSecond});
  // The widest range stays short and ends at the longest duration.
  const V widest = RetryPolicy::exponential_backoff(1, ebats::kMaxDuration.count());
  CHECK(widest.size() == 40);
  CHECK(widest.back() == ebats::kMaxDuration.count());
  CHECK(std::is_sorted(widest.begin(), widest.end()));

  RetryPolicy p;
  p.max_retries = 100;
  p.backoff_ms = RetryPolicy::exponential_backoff(kSecond, kMinute);
  CHECK(p.delay_ms(0) == kSecond);
  CHECK(p.delay_ms(5) == 32 * kSecond);
  CHECK(p.delay_ms(6) == kMinute);
  CHECK(p.delay_ms(99) == kMinute);
}

TEST_CASE("jitter only adds, up to jitter_pct of the delay, and stays within kMaxDuration", "[retry][backoff]") {
  RetryPolicy p;
  p.backoff_ms = {10'000};
  CHECK(p.jittered_delay_ms(0, 123'456'789) == 10'000);  // jitter 0: the list's delay, whatever the draw
  p.jitter_pct = 20;
  CHECK(p.jittered_delay_ms(0, 0) == 10'000);
  CHECK(p.jittered_delay_ms(0, 2'000) == 12'000);         // draw % 2001: the top of the range
  CHECK(p.jittered_delay_ms(0, 2'001) == 10'000);
  CHECK(p.jittered_delay_ms(0, UINT64_MAX) == 10'000 + static_cast<int64_t>(UINT64_MAX % 2'001));
  p.jitter_pct = 100;
  CHECK(p.jittered_delay_ms(0, 10'000) == 20'000);
  p.backoff_ms = {0};
  CHECK(p.jittered_delay_ms(0, 99) == 0);  // nothing to spread
  p.backoff_ms = {};
  CHECK(p.jittered_delay_ms(3, 99) == 0);

  const int64_t longest = ebats::kMaxDuration.count();
  p.backoff_ms = {longest - 10};
  for (uint64_t draw : {uint64_t{0}, uint64_t{5}, uint64_t{11}, uint64_t{1} << 40, UINT64_MAX}) {
    const int64_t d = p.jittered_delay_ms(0, draw);
    CHECK(d >= longest - 10);
    CHECK(d <= longest);
  }
  p.backoff_ms = {longest};
  CHECK(p.jittered_delay_ms(0, 12'345) == longest);

  // Over many draws: never below the delay, never above delay * 1.2, and spread over the range.
  p.jitter_pct = 20;
  p.backoff_ms = {1'000};
  int64_t lowest = INT64_MAX;
  int64_t highest = 0;
  for (uint32_t i = 0; i < 10'000; ++i) {
    const int64_t d = p.jittered_delay_ms(0, ebats::jitter_draw("task-" + std::to_string(i), 0));
    REQUIRE(d >= 1'000);
    REQUIRE(d <= 1'200);
    lowest = std::min(lowest, d);
    highest = std::max(highest, d);
  }
  CHECK(lowest < 1'010);
  CHECK(highest > 1'190);
}

TEST_CASE("jitter_draw is a pure function of the task id and the attempt", "[retry][backoff]") {
  const std::string id = "0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a11";
  CHECK(ebats::jitter_draw(id, 3) == ebats::jitter_draw(id, 3));
  CHECK(ebats::jitter_draw(id, 3) != ebats::jitter_draw(id, 4));
  CHECK(ebats::jitter_draw(id, 0) != ebats::jitter_draw("0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a12", 0));
  // Ids that differ in one character land in different halves about half the time.
  int high = 0;
  for (int i = 0; i < 1'000; ++i) {
    if (ebats::jitter_draw("task-" + std::to_string(i), 0) >> 63) ++high;
  }
  CHECK(high > 400);
  CHECK(high < 600);
}

TEST_CASE("decide_next_step applies the policy's jitter, and retry_after gets none", "[retry][backoff]") {
  AttemptFacts f = facts_for(Outcome::retry, 2);
  f.max_attempts = 9;
  f.policy.max_retries = 8;
  f.policy.backoff_ms = RetryPolicy::exponential_backoff(kSecond, kHour);
  f.policy.jitter_pct = 20;
  bool some_jitter = false;
  for (int i = 0; i < 200; ++i) {
    f.task_id = "task-" + std::to_string(i);
    const NextStep s = ebats::decide_next_step(f);
    REQUIRE(s.action == NextStep::Action::retry);
    const int64_t wait = s.retry_due_at - kFinished;
    CHECK(wait == f.policy.jittered_delay_ms(2, ebats::jitter_draw(f.task_id, 2)));
    CHECK(wait >= 4 * kSecond);
    CHECK(wait <= 4 * kSecond + 800);
    some_jitter |= wait != 4 * kSecond;
    CHECK(ebats::decide_next_step(f).retry_due_at == s.retry_due_at);  // the same completion, the same due time
  }
  CHECK(some_jitter);
  f.retry_after_ms = 1'234;
  CHECK(ebats::decide_next_step(f).retry_due_at == kFinished + 1'234);
}
