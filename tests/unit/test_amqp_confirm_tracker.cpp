// ConfirmTracker driven with scripted frames, as the AMQP I/O thread feeds it:
// publishes, basic.ack / basic.nack (single and `multiple`, in and out of
// order, duplicated, unknown), basic.return before the ack of the same
// message, and reset() after a channel reopen.
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "broker/amqp/confirm_tracker.h"

using ebats::amqp::ConfirmTracker;

namespace {

using Outcome = ConfirmTracker::Outcome;

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::confirmed:
      return "confirmed";
    case Outcome::nacked:
      return "nacked";
    case Outcome::returned:
      return "returned";
  }
  return "?";
}

// "c1 confirmed, c2 nacked, ...": one line a failed CHECK prints whole.
std::string describe(const std::vector<ConfirmTracker::Settled>& settled) {
  std::string out;
  for (const ConfirmTracker::Settled& s : settled) {
    if (!out.empty()) out += ", ";
    out += "c" + std::to_string(s.cookie) + " " + outcome_name(s.outcome);
  }
  return out;
}

// Publishes message ids m1..mN with cookies 1..N; checks they get tags 1..N.
void publish_n(ConfirmTracker& t, uint64_t n) {
  for (uint64_t i = 1; i <= n; ++i) {
    const uint64_t tag = t.on_publish("m" + std::to_string(i), i);
    REQUIRE(tag == i);
  }
}

}  // namespace

TEST_CASE("amqp confirms: a fresh tracker has nothing outstanding or settled", "[amqp][confirms]") {
  ConfirmTracker t;
  CHECK(t.outstanding() == 0);
  CHECK(t.last_tag() == 0);
  CHECK(t.take_settled().empty());
}

TEST_CASE("amqp confirms: publishes are tagged 1, 2, 3 and each ack settles its own publish", "[amqp][confirms]") {
  ConfirmTracker t;
  CHECK(t.on_publish("a", 100) == 1);
  CHECK(t.on_publish("b", 200) == 2);
  CHECK(t.on_publish("c", 300) == 3);
  CHECK(t.last_tag() == 3);
  CHECK(t.outstanding() == 3);
  CHECK(t.take_settled().empty());  // nothing acked yet

  t.on_ack(1, false);
  CHECK(t.outstanding() == 2);
  CHECK(describe(t.take_settled()) == "c100 confirmed");
  CHECK(t.take_settled().empty());  // taken once only

  t.on_ack(2, false);
  CHECK(t.outstanding() == 1);
  t.on_ack(3, false);
  CHECK(t.outstanding() == 0);
  const auto settled = t.take_settled();
  CHECK(describe(settled) == "c200 confirmed, c300 confirmed");
  for (const auto& s : settled) CHECK(s.detail.empty());
  CHECK(t.take_settled().empty());
}

TEST_CASE("amqp confirms: a multiple ack settles every unsettled tag up to it, none beyond", "[amqp][confirms]") {
  ConfirmTracker t;
  publish_n(t, 5);
  t.on_ack(3, true);
  CHECK(describe(t.take_settled()) == "c1 confirmed, c2 confirmed, c3 confirmed");
  CHECK(t.outstanding() == 2);

  t.on_ack(5, true);
  CHECK(describe(t.take_settled()) == "c4 confirmed, c5 confirmed");
  CHECK(t.outstanding() == 0);
}

TEST_CASE("amqp confirms: a multiple ack skips tags already settled singly", "[amqp][confirms]") {
  ConfirmTracker t;
  publish_n(t, 4);
  t.on_ack(2, false);
  t.on_nack(3, false);
  t.on_ack(4, true);  // covers 1 and 4; 2 and 3 are settled already
  CHECK(describe(t.take_settled()) == "c1 confirmed, c2 confirmed, c3 nacked, c4 confirmed");
  CHECK(t.outstanding() == 0);
}

TEST_CASE("amqp confirms: acks out of order settle the right publishes, handed out in tag order",
          "[amqp][confirms]") {
  ConfirmTracker t;
  publish_n(t, 4);

  SECTION("taken after each ack: each settles alone") {
    t.on_ack(3, false);
    CHECK(describe(t.take_settled()) == "c3 confirmed");
    CHECK(t.outstanding() == 3);
    t.on_ack(1, false);
    CHECK(describe(t.take_settled()) == "c1 confirmed");
    t.on_nack(4, false);
    CHECK(describe(t.take_settled()) == "c4 nacked");
    t.on_ack(2, false);
    CHECK(describe(t.take_settled()) == "c2 confirmed");
    CHECK(t.outstanding() == 0);
  }
  SECTION("taken once after all of them: in tag order, not ack order") {
    t.on_ack(3, false);
    t.on_nack(4, false);
    t.on_ack(1, false);
    t.on_ack(2, false);
    CHECK(describe(t.take_settled()) == "c1 confirmed, c2 confirmed, c3 confirmed, c4 nacked");
  }
  SECTION("a multiple ack after a later single ack settles only what is left below it") {
    t.on_ack(4, false);
    t.on_ack(3, true);
    CHECK(describe(t.take_settled()) == "c1 confirmed, c2 confirmed, c3 confirmed, c4 confirmed");
    CHECK(t.outstanding() == 0);
  }
}

TEST_CASE("amqp confirms: a nack fails its publish, a multiple nack every unsettled one up to it",
          "[amqp][confirms]") {
  ConfirmTracker t;
  publish_n(t, 5);
  t.on_nack(2, false);
  auto settled = t.take_settled();
  REQUIRE(settled.size() == 1);
  CHECK(settled[0].cookie == 2);
  CHECK(settled[0].outcome == Outcome::nacked);
  CHECK_THAT(settled[0].detail, Catch::Matchers::Contains("basic.nack"));
  CHECK(t.outstanding() == 4);

  t.on_ack(1, false);
  t.on_nack(4, true);  // 3 and 4; 1 and 2 are settled already, 5 is beyond
  CHECK(describe(t.take_settled()) == "c1 confirmed, c3 nacked, c4 nacked");
  CHECK(t.outstanding() == 1);
  t.on_ack(5, false);
  CHECK(describe(t.take_settled()) == "c5 confirmed");
}

TEST_CASE("amqp confirms: a basic.return before the ack fails the publish as returned, with the reason",
          "[amqp][confirms]") {
  ConfirmTracker t;
  t.on_publish("lost", 1);
  t.on_publish("kept", 2);
  t.on_return("lost", "312 NO_ROUTE");
  CHECK(t.outstanding() == 2);      // a return settles nothing by itself
  CHECK(t.take_settled().empty());  // the ack that follows does

  t.on_ack(2, true);  // RabbitMQ acks a returned mandatory message too
  const auto settled = t.take_settled();
  REQUIRE(settled.size() == 2);
  CHECK(settled[0].cookie == 1);
  CHECK(settled[0].outcome == Outcome::returned);
  CHECK(settled[0].detail == "312 NO_ROUTE");
  CHECK(settled[1].cookie == 2);
  CHECK(settled[1].outcome == Outcome::confirmed);
  CHECK(settled[1].detail.empty());
}

TEST_CASE("amqp confirms: a returned publish stays returned when a nack follows instead of an ack",
          "[amqp][confirms]") {
  ConfirmTracker t;
  t.on_publish("x", 7);
  t.on_return("x", "312 NO_ROUTE");
  t.on_nack(1, false);
  const auto settled = t.take_settled();
  REQUIRE(settled.size() == 1);
  CHECK(settled[0].outcome == Outcome::returned);
  CHECK(settled[0].detail == "312 NO_ROUTE");
}

TEST_CASE("amqp confirms: with two unsettled publishes of one message id, a return fails the oldest",
          "[amqp][confirms]") {
  ConfirmTracker t;
  t.on_publish("same", 1);
  t.on_publish("other", 2);
  t.on_publish("same", 3);

  SECTION("one return") {
    t.on_return("same", "312 NO_ROUTE");
    t.on_ack(3, true);
    CHECK(describe(t.take_settled()) == "c1 returned, c2 confirmed, c3 confirmed");
  }
  SECTION("two returns: both, oldest first") {
    t.on_return("same", "first");
    t.on_return("same", "second");
    t.on_ack(3, true);
    const auto settled = t.take_settled();
    CHECK(describe(settled) == "c1 returned, c2 confirmed, c3 returned");
    REQUIRE(settled.size() == 3);
    CHECK(settled[0].detail == "first");
    CHECK(settled[2].detail == "second");
  }
  SECTION("the oldest already settled: the return goes to the unsettled one") {
    t.on_ack(1, false);
    t.on_return("same", "312 NO_ROUTE");
    t.on_ack(3, true);
    CHECK(describe(t.take_settled()) == "c1 confirmed, c2 confirmed, c3 returned");
  }
}

TEST_CASE("amqp confirms: a return matching no unsettled publish is ignored", "[amqp][confirms]") {
  ConfirmTracker t;
  t.on_publish("a", 1);
  t.on_return("nobody", "312 NO_ROUTE");
  t.on_return("", "312 NO_ROUTE");  // a return without a message id
  CHECK(t.outstanding() == 1);
  CHECK(t.take_settled().empty());
  t.on_ack(1, false);
  CHECK(describe(t.take_settled()) == "c1 confirmed");

  // Nor is it remembered for a publish of that id that comes later.
  t.on_publish("nobody", 2);
  t.on_ack(2, false);
  CHECK(describe(t.take_settled()) == "c2 confirmed");
}

TEST_CASE("amqp confirms: duplicate and unknown tags change nothing", "[amqp][confirms]") {
  ConfirmTracker t;
  publish_n(t, 3);
  t.on_ack(1, false);
  CHECK(describe(t.take_settled()) == "c1 confirmed");

  t.on_ack(1, false);   // again
  t.on_nack(1, false);  // again, as a nack
  t.on_ack(9, false);   // never sent
  t.on_nack(9, false);  // never sent
  t.on_ack(0, false);   // no publish has tag 0
  CHECK(t.take_settled().empty());
  CHECK(t.outstanding() == 2);

  t.on_ack(2, true);
  t.on_ack(2, true);  // a duplicate multiple ack
  CHECK(describe(t.take_settled()) == "c2 confirmed");
  CHECK(t.outstanding() == 1);

  t.on_ack(9, true);  // a multiple ack beyond every tag settles what is left, once
  CHECK(describe(t.take_settled()) == "c3 confirmed");
  CHECK(t.outstanding() == 0);
}

TEST_CASE("amqp confirms: reset() after a channel reopen returns the unsettled cookies and restarts tags at 1",
          "[amqp][confirms]") {
  ConfirmTracker t;
  CHECK(t.reset().empty());  // nothing to forget

  t.on_publish("a", 10);
  t.on_publish("b", 11);
  t.on_publish("c", 12);
  t.on_return("c", "312 NO_ROUTE");  // returned but not yet acked: still unsettled
  t.on_ack(1, false);

  const std::vector<uint64_t> forgotten = t.reset();
  CHECK(forgotten == std::vector<uint64_t>{11, 12});
  CHECK(t.outstanding() == 0);
  CHECK(t.last_tag() == 0);

  // The new channel numbers its publishes from 1 again.
  CHECK(t.on_publish("d", 20) == 1);
  CHECK(t.on_publish("c", 21) == 2);
  CHECK(t.last_tag() == 2);

  // The ack that settled before the reset is still handed out, first.
  t.on_ack(2, false);
  CHECK(describe(t.take_settled()) == "c10 confirmed, c21 confirmed");

  // The forgotten return does not stick to a later publish of that id ("c"
  // was confirmed above), and tags of the old channel mean the new ones.
  t.on_ack(1, false);
  CHECK(describe(t.take_settled()) == "c20 confirmed");
  CHECK(t.outstanding() == 0);
  CHECK(t.reset().empty());
}

TEST_CASE("amqp confirms: take_settled() hands out settles from before a reset ahead of later ones",
          "[amqp][confirms]") {
  ConfirmTracker t;
  publish_n(t, 3);
  t.on_ack(3, false);  // settled before the reset, tag 3
  t.reset();           // forgets 1 and 2
  t.on_publish("n1", 31);
  t.on_publish("n2", 32);
  t.on_ack(2, false);
  t.on_ack(1, false);
  CHECK(describe(t.take_settled()) == "c3 confirmed, c31 confirmed, c32 confirmed");
  CHECK(t.take_settled().empty());
}

TEST_CASE("amqp confirms: outstanding() counts publishes until their ack, not their return", "[amqp][confirms]") {
  ConfirmTracker t;
  for (uint64_t i = 1; i <= 100; ++i) t.on_publish("m" + std::to_string(i % 7), i);
  CHECK(t.outstanding() == 100);
  t.on_return("m3", "312 NO_ROUTE");
  CHECK(t.outstanding() == 100);
  t.on_ack(40, true);
  CHECK(t.outstanding() == 60);
  t.on_nack(50, false);
  CHECK(t.outstanding() == 59);
  t.on_ack(100, true);
  CHECK(t.outstanding() == 0);

  const auto settled = t.take_settled();
  REQUIRE(settled.size() == 100);
  size_t returned = 0, nacked = 0;
  for (size_t i = 0; i < settled.size(); ++i) {
    CHECK(settled[i].cookie == i + 1);  // every publish once, in tag order
    if (settled[i].outcome == Outcome::returned) ++returned;
    if (settled[i].outcome == Outcome::nacked) ++nacked;
  }
  CHECK(returned == 1);
  CHECK(settled[2].outcome == Outcome::returned);  // the oldest "m3" is cookie 3
  CHECK(nacked == 1);
  CHECK(settled[49].outcome == Outcome::nacked);
}
