// `sources` (custom schedulers): the config they are read from, and the pure
// routing of upstream messages into tasks, events and dead letters
// (route_source_messages). The daemons with a real RabbitMQ and foreign
// producers: tests/clients/test_sources.py.
#include <catch2/catch.hpp>
#include <string>

#include "ebats/config.h"
#include "ebats/envelope.h"
#include "scheduler/source_router.h"

using namespace ebats;

namespace {

const std::string kAmqpHead =
    "version: 1\n"
    "broker: {url: \"amqp://ebats@127.0.0.1:5672/\"}\n"
    "plugins: {dir: /usr/lib/ebats/plugins}\n"
    "events: {order_sync: [{task: orderAsync, topic: demo}]}\n"
    "workers: {demo: {}}\n";

const std::string kArticleSource =
    "sources:\n"
    "  shzf_order_paied:\n"
    "    exchange: {name: order_fanout, type: topic}\n"
    "    bindings: [\"*.*.WAIT_SELLER_SEND_GOODS\"]\n"
    "    task: {name: orderAsync, topic: demo}\n";

ConfigLoad load(const std::string& yaml) { return load_config_from_string(yaml, "/etc/ebats/t.yaml"); }

std::string errors_of(const std::string& yaml) {
  const ConfigLoad l = load(yaml);
  CHECK(l.config == nullptr);
  return l.error_text();
}

Delivery message(std::string body, std::string routing_key = "shzf.order.WAIT_SELLER_SEND_GOODS") {
  Delivery d;
  d.lane = Lane::source;
  d.token = 7;
  d.topic = "shzf_order_paied";
  d.name = std::move(routing_key);
  d.body = std::move(body);
  return d;
}

}  // namespace

TEST_CASE("sources: the article's custom scheduler loads from YAML", "[config][sources]") {
  const ConfigLoad l = load(kAmqpHead + kArticleSource +
                            "  order_sync_feed:\n"
                            "    exchange: {name: order_sync_fanout, type: fanout}\n"
                            "    event: order_sync\n"
                            "    params: {routing_key: _key, headers: {x-shop: _shop, x-region: _region}}\n");
  INFO(l.error_text());
  REQUIRE(l.config != nullptr);
  REQUIRE(l.config->sources.size() == 2);
  const SourceConfig& s = l.config->sources.at("shzf_order_paied");
  CHECK(s.exchange == "order_fanout");
  CHECK(s.exchange_type == "topic");
  CHECK(s.bindings == std::vector<std::string>{"*.*.WAIT_SELLER_SEND_GOODS"});
  CHECK(s.task == "orderAsync");
  CHECK(s.topic == "demo");
  CHECK(s.event.empty());
  const SourceConfig& f = l.config->sources.at("order_sync_feed");
  CHECK(f.bindings == std::vector<std::string>{""});  // fanout: one binding, no key
  CHECK(f.event == "order_sync");
  CHECK(f.routing_key_param == "_key");
  CHECK(f.header_params == std::map<std::string, std::string>{{"x-region", "_region"}, {"x-shop", "_shop"}});
}

TEST_CASE("sources: mistakes are config errors that say what to do", "[config][sources]") {
  // SQLite has no upstream exchanges: --check-config says so.
  CHECK_THAT(errors_of("version: 1\nbroker: {url: \"sqlite:///var/lib/ebats/ebats.db\"}\n"
                       "plugins: {dir: /usr/lib/ebats/plugins}\n" + kArticleSource),
             Catch::Contains("sources need an amqp:// or amqps:// broker"));
  const std::string head = kAmqpHead + "sources:\n  s1:\n";
  CHECK_THAT(errors_of(head + "    exchange: {name: x, type: topic}\n    bindings: ['#']\n"
                              "    task: {name: t, topic: demo}\n    event: order_sync\n"),
             Catch::Contains("give either task:") && Catch::Contains("not both"));
  CHECK_THAT(errors_of(head + "    exchange: {name: x, type: topic}\n    bindings: ['#']\n"),
             Catch::Contains("not neither"));
  CHECK_THAT(errors_of(head + "    exchange: {name: x, type: topic}\n    bindings: ['#']\n    event: nope\n"),
             Catch::Contains("event 'nope' has no registration under events:"));
  CHECK_THAT(errors_of(head + "    exchange: {name: x, type: headers}\n    bindings: ['#']\n"
                              "    task: {name: t, topic: demo}\n"),
             Catch::Contains("unsupported exchange type 'headers'; use topic, direct or fanout"));
  CHECK_THAT(errors_of(head + "    exchange: {name: x, type: topic}\n    task: {name: t, topic: demo}\n"),
             Catch::Contains("missing bindings"));
  CHECK_THAT(errors_of(head + "    exchange: {name: x}\n    bindings: []\n    task: {name: t, topic: demo}\n"),
             Catch::Contains("no binding key"));
  CHECK_THAT(errors_of(head + "    exchange: {name: x}\n    bindings: ['#']\n    task: {name: t}\n"),
             Catch::Contains("missing 'topic'"));
  CHECK_THAT(errors_of(head + "    exchange: {name: amq.topic}\n    bindings: ['#']\n    task: {name: t, topic: demo}\n"),
             Catch::Contains("invalid exchange name 'amq.topic'"));
  CHECK_THAT(errors_of(head + "    exchange: {name: x}\n    bindings: ['#']\n    task: {name: t, topic: demo}\n"
                              "    params: {routing_key: _k, headers: {x-a: _k}}\n"),
             Catch::Contains("params member '_k' is named twice"));
  CHECK_THAT(errors_of(kAmqpHead + "sources:\n  ebats.mine:\n    exchange: {name: x}\n    bindings: ['#']\n"
                                   "    task: {name: t, topic: demo}\n"),
             Catch::Contains("starts with 'ebats.'"));
}

TEST_CASE("sources: each upstream message becomes a task with the body as its params", "[sources]") {
  const ConfigLoad l = load(kAmqpHead + kArticleSource +
                            "    params: {routing_key: _routing_key, headers: {x-shop: _shop}}\n");
  INFO(l.error_text());
  REQUIRE(l.config != nullptr);
  const SourceConfig& source = l.config->sources.at("shzf_order_paied");
  Delivery with_id = message(R"({ "order_id": "FB138020392193312", "amount": 12.50 })");
  with_id.id = "0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a11";
  with_id.headers_json = {{"x-shop", "\"shzf\""}, {"x-other", "7"}};
  Delivery without_id = message(R"({})");
  without_id.token = 8;
  SourceSummary sum;
  const Batch b = route_source_messages(source, {with_id, without_id}, *l.config, 1'000'000, &sum);
  CHECK(sum.messages == 2);
  CHECK(sum.published == 2);
  REQUIRE(b.settle.size() == 2);
  CHECK(b.settle[0].token == 7);
  CHECK(b.settle[0].kind == Settle::Kind::ack);
  REQUIRE(b.settle[0].then_publish.size() == 1);
  const OutMsg& m = b.settle[0].then_publish[0];
  CHECK(m.lane == Lane::ntask);
  CHECK(m.topic == "demo");
  // A message id that is a UUID gives the task id: a redelivered message is the same task.
  CHECK(m.id == task_uuid(with_id.id, "shzf_order_paied", "orderAsync", "demo"));
  DecodeResult e = decode_envelope(m.body, 1 << 20);
  REQUIRE(e.ok());
  CHECK(e.envelope.task == "orderAsync");
  CHECK(e.envelope.due_at == 1'000'000);
  // The body's members byte for byte (12.50 stays 12.50), then the named routing key and header.
  CHECK(e.envelope.params ==
        R"({"order_id":"FB138020392193312","amount":12.50,"_routing_key":"shzf.order.WAIT_SELLER_SEND_GOODS","_shop":"shzf"})");
  DecodeResult empty = decode_envelope(b.settle[1].then_publish.at(0).body, 1 << 20);
  REQUIRE(empty.ok());
  CHECK(empty.envelope.params == R"({"_routing_key":"shzf.order.WAIT_SELLER_SEND_GOODS"})");
  CHECK(is_valid_uuid(empty.envelope.id));
}

TEST_CASE("sources: a message id that is a UUID in capitals gives the same stable task id", "[sources]") {
  // UUID text is case-insensitive (RFC 9562); some upstream systems write
  // capitals. Such an id made a new task id per delivery, so a message
  // redelivered after a crash became a second, different task.
  const ConfigLoad l = load(kAmqpHead + kArticleSource);
  INFO(l.error_text());
  REQUIRE(l.config != nullptr);
  const SourceConfig& source = l.config->sources.at("shzf_order_paied");
  Delivery upper = message(R"({"order_id":1})");
  upper.id = "0B7E4A52-9C1F-4D7E-8A34-2F6C1D9E0A11";
  SourceSummary first, again;
  const Batch a = route_source_messages(source, {upper}, *l.config, 1'000'000, &first);
  const Batch b = route_source_messages(source, {upper}, *l.config, 2'000'000, &again);
  REQUIRE(a.settle.size() == 1);
  REQUIRE(b.settle.size() == 1);
  REQUIRE(a.settle[0].then_publish.size() == 1);
  REQUIRE(b.settle[0].then_publish.size() == 1);
  CHECK(a.settle[0].then_publish[0].id ==
        task_uuid("0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a11", "shzf_order_paied", "orderAsync", "demo"));
  CHECK(b.settle[0].then_publish[0].id == a.settle[0].then_publish[0].id);
}

TEST_CASE("sources: a body that cannot be params is dead-lettered with the reason and its raw bytes",
          "[sources]") {
  const ConfigLoad l = load(kAmqpHead + "limits: {max_message_bytes: 1KiB}\n" + kArticleSource +
                            "    params: {routing_key: _routing_key}\n");
  INFO(l.error_text());
  REQUIRE(l.config != nullptr);
  const SourceConfig& source = l.config->sources.at("shzf_order_paied");
  struct Case {
    std::string body, reason, detail;
  };
  const std::vector<Case> cases = {
      {"not json", "malformed", "not usable as params"},
      {"[1,2]", "malformed", "params must be one JSON object"},
      {"\"text\"", "malformed", "params must be one JSON object"},
      {"{\"pad\":\"" + std::string(2000, 'x') + "\"}", "too large", "limit 1024"},
      {R"({"_routing_key":"mine"})", "invalid", "already has member '_routing_key'"},
  };
  for (const Case& c : cases) {
    INFO(c.body.substr(0, 40));
    SourceSummary sum;
    const Batch b = route_source_messages(source, {message(c.body)}, *l.config, 5'000, &sum);
    CHECK(sum.dead == 1);
    REQUIRE(b.settle.size() == 1);
    CHECK(b.settle[0].then_publish.empty());
    REQUIRE(b.settle[0].then_dead.has_value());
    const DeadLetter& dl = *b.settle[0].then_dead;
    CHECK(dl.kind == "raw");
    CHECK(dl.reason == c.reason);
    CHECK_THAT(dl.error, Catch::Contains(c.detail) && Catch::Contains("source 'shzf_order_paied'") &&
                             Catch::Contains("routing key 'shzf.order.WAIT_SELLER_SEND_GOODS'"));
    CHECK(dl.body == c.body);
    CHECK(dl.topic == "demo");
    CHECK(is_valid_uuid(dl.id));
  }
}

TEST_CASE("sources: a source with event: publishes an event for the events' registrations", "[sources]") {
  const ConfigLoad l = load(kAmqpHead + "sources:\n  feed:\n    exchange: {name: f, type: fanout}\n"
                                        "    event: order_sync\n");
  INFO(l.error_text());
  REQUIRE(l.config != nullptr);
  const Batch b = route_source_messages(l.config->sources.at("feed"), {message(R"({"order_id":1})", "")},
                                        *l.config, 5'000, nullptr);
  REQUIRE(b.settle.size() == 1);
  REQUIRE(b.settle[0].then_publish.size() == 1);
  const OutMsg& m = b.settle[0].then_publish[0];
  CHECK(m.lane == Lane::events);
  CHECK(m.name == "order_sync");
  DecodeResult e = decode_envelope(m.body, 1 << 20);
  REQUIRE(e.ok());
  CHECK(e.envelope.kind == EnvelopeKind::event);
  CHECK(e.envelope.params == R"({"order_id":1})");
  CHECK(l.config->topics() == std::vector<std::string>{"demo"});
}
