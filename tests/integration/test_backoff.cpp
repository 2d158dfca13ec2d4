// Exponential backoff and jitter on the real daemons (both backends): each
// retry is due when the frozen policy says, counted from the end of the run
// before it, and never starts before it is due.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ebats/envelope.h"
#include "ebats/retry.h"
#include "integration/harness.h"

using ebats::test::TestSystem;

namespace {

using Row = std::map<std::string, std::string>;

int64_t num(const Row& r, const char* key) { return std::stoll(r.at(key)); }

// The result rows of each task, by attempt.
std::map<std::string, std::vector<Row>> rows_by_task(const std::vector<Row>& rows) {
  std::map<std::string, std::vector<Row>> by_task;
  for (const Row& r : rows) by_task[r.at("task_id")].push_back(r);
  for (auto& [id, list] : by_task) {
    std::sort(list.begin(), list.end(), [](const Row& a, const Row& b) { return num(a, "attempt") < num(b, "attempt"); });
  }
  return by_task;
}

}  // namespace

TEST_CASE("exponential backoff: retries are due 100ms, 200ms, 400ms, 400ms after the run before", "[integration][backoff]") {
  TestSystem sys(
      "  e:\n    - {task: retry_plain, topic: t, retry: {max: 4, backoff: {exponential: 100ms, max: 400ms}}}\n");
  sys.start_all();
  REQUIRE(sys.publisher().publish("e", "{}").ok());
  const auto letters = sys.wait_for_dead_letters(1);
  CHECK(letters.front().letter.reason == "retries exhausted");
  CHECK(letters.front().letter.attempts == 5);

  const std::vector<Row> rows = sys.results();
  REQUIRE(rows.size() == 5);
  const auto by_task = rows_by_task(rows);
  REQUIRE(by_task.size() == 1);
  const std::vector<Row>& runs = by_task.begin()->second;
  const std::vector<int64_t> delays = {100, 200, 400, 400};
  for (size_t k = 1; k < runs.size(); ++k) {
    INFO("attempt " << k << ": " << runs[k].at("status"));
    CHECK(num(runs[k], "attempt") == static_cast<int64_t>(k));
    // The due time is the policy's, exactly: no jitter was configured.
    CHECK(num(runs[k], "due_at") - num(runs[k - 1], "finished_at") == delays[k - 1]);
    // And the retry waited for it (lower bounds only).
    CHECK(num(runs[k], "started_at") >= num(runs[k], "due_at"));
    CHECK(num(runs[k], "started_at") - num(runs[k - 1], "finished_at") >= delays[k - 1]);
  }
  CHECK(runs.back().at("status") == "dead");
  // Without jitter the frozen policy is written as before: no jitter_pct member.
  CHECK(letters.front().letter.body.find("\"retry\":{\"backoff_ms\":[100,200,400]}") != std::string::npos);
}

TEST_CASE("jitter from defaults.retry: each retry's extra wait is the task's draw, within 0 to 50 percent",
          "[integration][backoff]") {
  TestSystem sys("  e:\n    - {task: retry_plain, topic: t}\n", "  t: {processes: 2}\n",
                 "defaults: {retry: {max: 3, backoff: {exponential: 200ms, max: 200ms, jitter: 50%}}}\n");
  sys.start_all();
  REQUIRE(sys.publisher().publish("e", "{\"n\":1}").ok());
  REQUIRE(sys.publisher().publish("e", "{\"n\":2}").ok());
  const auto letters = sys.wait_for_dead_letters(2);
  for (const auto& l : letters) {
    CHECK(l.letter.attempts == 4);
    // The policy travelled in each re-encoded envelope, jitter included.
    CHECK(l.letter.body.find("\"retry\":{\"backoff_ms\":[200],\"jitter_pct\":50}") != std::string::npos);
  }

  ebats::RetryPolicy policy;
  policy.max_retries = 3;
  policy.backoff_ms = {200};
  policy.jitter_pct = 50;
  const auto by_task = rows_by_task(sys.results());
  REQUIRE(by_task.size() == 2);
  for (const auto& [id, runs] : by_task) {
    REQUIRE(runs.size() == 4);
    for (size_t k = 1; k < runs.size(); ++k) {
      INFO("task " << id << " attempt " << k);
      const uint32_t retry = static_cast<uint32_t>(k - 1);
      const int64_t wait = num(runs[k], "due_at") - num(runs[k - 1], "finished_at");
      CHECK(wait == policy.jittered_delay_ms(retry, ebats::jitter_draw(id, retry)));
      CHECK(wait >= 200);
      CHECK(wait <= 300);
      CHECK(num(runs[k], "started_at") >= num(runs[k], "due_at"));
    }
  }
}
