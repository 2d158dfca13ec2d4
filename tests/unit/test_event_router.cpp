// EventRouter: the scheduler's fan-out decisions, driven with values.
#include <catch2/catch.hpp>

#include "ebats/envelope.h"
#include "scheduler/event_router.h"

using namespace ebats;

namespace {

std::shared_ptr<const Config> config_with(const std::string& events) {
  ConfigLoad load = load_config_from_string(
      "broker: {url: 'sqlite:///tmp/x.db'}\nplugins: {dir: /tmp}\nevents:\n" + events + "workers: {demo: {}}\n",
      "/tmp/router.yaml");
  INFO(load.error_text());
  REQUIRE(load.config);
  return load.config;
}

Delivery event_delivery(uint64_t token, const std::string& name, WallMs created_at, const std::string& id = "") {
  Envelope e;
  e.kind = EnvelopeKind::event;
  e.id = id.empty() ? new_uuid_v4() : id;
  e.event = name;
  e.params = R"({"order_id":1})";
  e.created_at = created_at;
  e.trace = "req-1";
  Delivery d;
  d.token = token;
  d.lane = Lane::events;
  d.id = e.id;
  d.name = name;
  d.body = encode_envelope(e);
  d.created_at = created_at;
  return d;
}

}  // namespace

TEST_CASE("router: one task per registration, delayed ones on the dtask lane", "[router]") {
  auto cfg = config_with(
      "  order_paied:\n    - {task: virtualShipping, topic: demo}\n"
      "    - {task: closeOrder, topic: demo, delay: 10s, retry: {max: 2, backoff: [1s]}}\n");
  const WallMs now = 1'700'000'000'000;
  RouteSummary sum;
  Batch b = route_events({event_delivery(7, "order_paied", now)}, *cfg, now, &sum);
  // The tasks ride on the event's ack: they are published only if the ack
  // takes effect, so an event routed twice is never fanned out twice.
  CHECK(b.publish.empty());
  REQUIRE(b.settle.size() == 1);
  CHECK(b.settle[0].token == 7);
  CHECK(b.settle[0].kind == Settle::Kind::ack);
  CHECK_FALSE(b.settle[0].then_dead.has_value());
  const std::vector<OutMsg>& tasks = b.settle[0].then_publish;
  REQUIRE(tasks.size() == 2);
  CHECK(tasks[0].lane == Lane::ntask);
  CHECK(tasks[0].due_at == now);
  CHECK(tasks[1].lane == Lane::dtask);
  CHECK(tasks[1].due_at == now + 10'000);
  CHECK(tasks[1].max_attempts == 3);
  CHECK(sum.tasks == 2);

  DecodeResult t = decode_envelope(tasks[1].body, 1 << 20);
  REQUIRE(t.ok());
  CHECK(t.envelope.kind == EnvelopeKind::task);
  CHECK(t.envelope.task == "closeOrder");
  CHECK(t.envelope.params == R"({"order_id":1})");
  CHECK(t.envelope.trace == "req-1");
  CHECK(t.envelope.backoff_ms == std::vector<int64_t>{1000});
}

TEST_CASE("router: the same event routed twice yields the same task ids", "[router]") {
  auto cfg = config_with("  e:\n    - {task: a, topic: demo}\n    - {task: b, topic: demo}\n");
  const std::string id = new_uuid_v4();
  Batch first = route_events({event_delivery(1, "e", 1000, id)}, *cfg, 1000, nullptr);
  Batch again = route_events({event_delivery(2, "e", 1000, id)}, *cfg, 5000, nullptr);
  REQUIRE(first.settle.size() == 1);
  REQUIRE(again.settle.size() == 1);
  const auto& a = first.settle[0].then_publish;
  const auto& b = again.settle[0].then_publish;
  REQUIRE(a.size() == 2);
  REQUIRE(b.size() == 2);
  CHECK(a[0].id == b[0].id);
  CHECK(a[1].id == b[1].id);
  CHECK(a[0].id != a[1].id);
}

TEST_CASE("router: an unregistered event is dead-lettered with its name in the reason", "[router]") {
  auto cfg = config_with("  known:\n    - {task: a, topic: demo}\n");
  RouteSummary sum;
  Batch b = route_events({event_delivery(3, "order_refunded", 1000)}, *cfg, 2000, &sum);
  CHECK(b.publish.empty());
  REQUIRE(b.settle.size() == 1);
  CHECK(b.settle[0].then_publish.empty());
  REQUIRE(b.settle[0].then_dead.has_value());
  CHECK(b.settle[0].then_dead->reason == "no registration for event order_refunded");
  CHECK(b.settle[0].then_dead->kind == "event");
  CHECK(sum.unroutable == 1);
  CHECK(sum.unknown_events == std::vector<std::string>{"order_refunded"});
}

TEST_CASE("router: bytes that are no envelope are dead-lettered raw with the parser's reason", "[router]") {
  auto cfg = config_with("  e:\n    - {task: a, topic: demo}\n");
  Delivery d;
  d.token = 9;
  d.id = "x";
  d.body = "{\"v\":1,";
  RouteSummary sum;
  Batch b = route_events({d}, *cfg, 1000, &sum);
  REQUIRE(b.settle.size() == 1);
  REQUIRE(b.settle[0].then_dead.has_value());
  CHECK(b.settle[0].then_dead->reason == "malformed");
  CHECK(b.settle[0].then_dead->kind == "raw");
  CHECK(b.settle[0].then_dead->body == d.body);
  CHECK_FALSE(b.settle[0].then_dead->error.empty());
  CHECK(sum.invalid == 1);
}

TEST_CASE("router: an event stamped far in the future counts its delay from now", "[router]") {
  auto cfg = config_with("  e:\n    - {task: a, topic: demo, delay: 1s}\n");
  const WallMs now = 1'000'000;
  Batch b = route_events({event_delivery(1, "e", now + kMaxEventClockSkewMs + 1)}, *cfg, now, nullptr);
  REQUIRE(b.settle.size() == 1);
  REQUIRE(b.settle[0].then_publish.size() == 1);
  CHECK(b.settle[0].then_publish[0].due_at == now + 1000);
}
