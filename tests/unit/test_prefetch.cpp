// automatic_prefetch(): the time cap, the byte cap, the floor and the start;
// configured_prefetch(): the count set by hand, under the same byte cap.
#include <catch2/catch.hpp>

#include "supervisor/prefetch.h"

using ebats::automatic_prefetch;
using ebats::PrefetchInputs;

namespace {

// Two children, claims of up to 1024, the default 1 MiB message limit.
PrefetchInputs two_children() {
  PrefetchInputs in;
  in.processes = 2;
  in.upper_bound = 1024;
  in.max_message_bytes = 1 << 20;
  return in;
}

}  // namespace

TEST_CASE("prefetch: tiny tasks with small bodies are held up to the upper bound", "[prefetch]") {
  PrefetchInputs in = two_children();
  in.avg_task_us = 3;
  in.body_bytes = 400;
  CHECK(automatic_prefetch(in) == 1024);
}

TEST_CASE("prefetch: about 100 ms of work per child, never below 2 per child", "[prefetch]") {
  PrefetchInputs in = two_children();
  in.body_bytes = 400;
  in.avg_task_us = 1'000;  // 1 ms: 100 per child
  CHECK(automatic_prefetch(in) == 200);
  in.avg_task_us = 50'000;  // 50 ms: 2 per child
  CHECK(automatic_prefetch(in) == 4);
  in.avg_task_us = 5'000'000;  // 5 s: still 2 per child, so both keep working
  CHECK(automatic_prefetch(in) == 4);
}

TEST_CASE("prefetch: large bodies cap what is held at about 64 MiB", "[prefetch]") {
  PrefetchInputs in = two_children();
  in.avg_task_us = 3;
  in.body_bytes = 1 << 20;  // 1 MiB each
  CHECK(automatic_prefetch(in) == 64);
  in.body_bytes = 256 << 10;  // 256 KiB each
  CHECK(automatic_prefetch(in) == 256);
  in.body_bytes = 100 << 20;  // larger than the budget: the floor still lets both children work
  CHECK(automatic_prefetch(in) == 4);
}

TEST_CASE("prefetch: before anything is measured ntask starts small, dtask claims ahead", "[prefetch]") {
  PrefetchInputs ntask = two_children();
  CHECK(automatic_prefetch(ntask) == 4);
  PrefetchInputs dtask = two_children();
  dtask.delayed_lane = true;
  // Bodies not measured yet count as max_message_bytes: 64 MiB / 1 MiB.
  CHECK(automatic_prefetch(dtask) == 64);
  dtask.body_bytes = 400;  // after one claim: bounded by the upper bound only
  CHECK(automatic_prefetch(dtask) == 1024);
}

TEST_CASE("prefetch: a count set by hand holds, under the same 64 MiB byte cap, one per child at least",
          "[prefetch]") {
  using ebats::configured_prefetch;
  CHECK(configured_prefetch(5000, 2, 400, 1 << 20) == 5000);        // small bodies: the count
  CHECK(configured_prefetch(5000, 2, 1 << 20, 1 << 20) == 64);      // 1 MiB bodies: 64 MiB of them
  CHECK(configured_prefetch(5000, 2, 0, 1 << 20) == 64);            // before a claim: max_message_bytes
  CHECK(configured_prefetch(5000, 2, 0, 4 << 10) == 5000);          // small message limit: the count
  CHECK(configured_prefetch(1, 2, 400, 1 << 20) == 1);              // one at a time stays one at a time
  CHECK(configured_prefetch(10, 1, 200 << 20, 256 << 20) == 1);     // bodies over the budget: still one
  CHECK(configured_prefetch(16, 8, 10 << 20, 16 << 20) == 8);       // 6 fit the budget, but 8 children want one each
  CHECK(configured_prefetch(4, 8, 10 << 20, 16 << 20) == 4);        // never more than the count set
}
