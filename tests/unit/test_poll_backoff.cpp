// PollBackoff: soon after work, doubling while idle, capped at the poll interval.
#include <catch2/catch.hpp>

#include "core/poll_backoff.h"

using ebats::PollBackoff;
using std::chrono::milliseconds;

TEST_CASE("poll backoff: looks again at the floor after work, doubles while idle up to the ceiling", "[poll]") {
  PollBackoff backoff(milliseconds(50));
  CHECK(backoff.after_look(true) == milliseconds(1));
  CHECK(backoff.after_look(false) == milliseconds(2));
  CHECK(backoff.after_look(false) == milliseconds(4));
  CHECK(backoff.after_look(false) == milliseconds(8));
  CHECK(backoff.after_look(false) == milliseconds(16));
  CHECK(backoff.after_look(false) == milliseconds(32));
  CHECK(backoff.after_look(false) == milliseconds(50));
  CHECK(backoff.after_look(false) == milliseconds(50));
  // Work again: straight back to the floor.
  CHECK(backoff.after_look(true) == milliseconds(1));
  CHECK(backoff.after_look(false) == milliseconds(2));
}

TEST_CASE("poll backoff: a fresh poller that finds nothing backs off from the floor", "[poll]") {
  PollBackoff backoff(milliseconds(5), milliseconds(2));
  CHECK(backoff.after_look(false) == milliseconds(4));
  CHECK(backoff.after_look(false) == milliseconds(5));
}

TEST_CASE("poll backoff: a ceiling below the floor is raised to the floor", "[poll]") {
  PollBackoff backoff(milliseconds(0), milliseconds(3));
  CHECK(backoff.after_look(false) == milliseconds(3));
  CHECK(backoff.after_look(true) == milliseconds(3));
}
