// How ebats' messages look on RabbitMQ, both ways: what is published for an
// event, a task, a dead letter, result records and a tombstone, and what a
// delivery or a dead letter read back becomes. Real envelopes
// (encode_envelope), hand-built Incoming frames, no server.
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "broker/amqp/amqp_connection.h"
#include "broker/amqp/amqp_messages.h"
#include "broker/amqp/topology.h"
#include "ebats/broker.h"
#include "ebats/envelope.h"
#include "ebats/result.h"

using namespace ebats;
using namespace ebats::amqp;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

constexpr uint64_t kLimit = 1 << 20;
constexpr const char* kTaskId = "0e45e837-9eab-5961-b27f-45b936a9303f";
constexpr const char* kEventId = "0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a11";
constexpr WallMs kNow = 1'732'550'400'123;

Topology topology() {
  AmqpConfig c;
  c.prefix = "p";
  c.delay_levels = 24;
  c.delay_unit_ms = 1000;
  return Topology(c);
}

Envelope task_envelope(uint32_t attempt = 2) {
  Envelope e;
  e.id = kTaskId;
  e.kind = EnvelopeKind::task;
  e.event = "order_create";
  e.task = "closeOrder";
  e.topic = "demo";
  e.params = R"({"order_id":10042})";
  e.created_at = 1'732'550'400'000;
  e.due_at = 1'732'550'410'000;
  e.attempt = attempt;
  e.max_attempts = 6;
  return e;
}

Envelope event_envelope() {
  Envelope e;
  e.id = kEventId;
  e.kind = EnvelopeKind::event;
  e.event = "order_create";
  e.params = R"({"order_id":10042})";
  e.created_at = 1'732'550'400'000;
  return e;
}

// The encoded envelope, checked to decode, so a test never runs on bytes the
// codec would refuse anyway.
std::string encoded(const Envelope& e) {
  std::string body = encode_envelope(e);
  const DecodeResult r = decode_envelope(body, kLimit);
  INFO(r.detail);
  REQUIRE(r.ok());
  return body;
}

HeaderValue number_header(const std::string& key, int64_t value) {
  HeaderValue h;
  h.key = key;
  h.is_text = false;
  h.number = value;
  return h;
}

HeaderValue text_header(const std::string& key, const std::string& value) {
  HeaderValue h;
  h.key = key;
  h.is_text = true;
  h.text = value;
  return h;
}

Incoming delivery(const std::string& routing_key, const std::string& body, const std::string& message_id = "") {
  Incoming in;
  in.kind = Incoming::Kind::deliver;
  in.channel = 2;
  in.delivery_tag = 9;
  in.routing_key = routing_key;
  in.body = body;
  in.properties.message_id = message_id;
  in.properties.timestamp = 1'732'550'401;
  return in;
}

// What a consumer of the stream reads back of a published message.
Incoming as_received(const OutMessage& out) {
  Incoming in;
  in.kind = Incoming::Kind::deliver;
  in.exchange = out.exchange;
  in.routing_key = out.routing_key;
  in.body = out.body;
  in.properties = out.properties;
  return in;
}

std::string header_text(const MessageProperties& p, const std::string& key) {
  const HeaderValue* h = p.header(key);
  REQUIRE(h != nullptr);
  REQUIRE(h->is_text);
  return h->text;
}

int64_t header_number(const MessageProperties& p, const std::string& key) {
  const HeaderValue* h = p.header(key);
  REQUIRE(h != nullptr);
  REQUIRE_FALSE(h->is_text);
  return h->number;
}

std::vector<std::string> lines_of(const std::string& body) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < body.size()) {
    const size_t end = body.find('\n', start);
    REQUIRE(end != std::string::npos);  // every line ends with '\n'
    lines.push_back(body.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

ResultRecord result(const std::string& topic, int n, size_t message_bytes = 10) {
  ResultRecord r;
  r.topic = topic;
  r.task_id = kTaskId;
  r.task = "closeOrder";
  r.params = "{\"n\":" + std::to_string(n) + "}";
  r.message = std::string(message_bytes, 'm');
  r.status = "ok";
  r.started_at = kNow;
  r.finished_at = kNow + 5;
  return r;
}

DeadLetter dead_letter() {
  DeadLetter d;
  d.id = kTaskId;
  d.kind = "task";
  d.topic = "demo";
  d.name = "closeOrder";
  d.reason = "retries exhausted";
  d.error = "warehouse busy";
  d.attempts = 6;
  d.body = "{\"the\":\"body\"}";
  d.first_seen = 1'732'550'400'000;
  d.dead_at = 1'732'550'499'000;
  return d;
}

}  // namespace

// ------------------------------------------------------------- publishing

TEST_CASE("amqp messages: an event goes to the events exchange, keyed by its name", "[amqp][messages]") {
  const Topology t = topology();
  OutMsg m;
  m.lane = Lane::events;
  m.id = kEventId;
  m.name = "order_create";
  m.topic = "ignored";
  m.body = encoded(event_envelope());
  const OutMessage out = out_message(m, t, kNow);
  CHECK(out.exchange == "p.events");
  CHECK(out.routing_key == "order_create");
  CHECK(out.body == m.body);
  CHECK(out.mandatory);
  CHECK(out.properties.message_id == kEventId);
  CHECK(out.properties.type == "event");
  CHECK(out.properties.persistent);
  CHECK(out.properties.content_type == "application/json");
  CHECK(out.properties.timestamp == kNow / 1000);
  CHECK(out.properties.headers.empty());
}

TEST_CASE("amqp messages: a task goes to its lane: ntask by topic, dtask through the delay levels",
          "[amqp][messages]") {
  const Topology t = topology();
  OutMsg m;
  m.lane = Lane::ntask;
  m.topic = "demo";
  m.id = kTaskId;
  m.name = "closeOrder";
  m.body = encoded(task_envelope());
  m.due_at = kNow;

  SECTION("ntask") {
    const OutMessage out = out_message(m, t, kNow);
    CHECK(out.exchange == "p.ntask");
    CHECK(out.routing_key == "demo");
    CHECK(out.properties.type == "task");
    CHECK(out.properties.message_id == kTaskId);
    CHECK(out.properties.persistent);
    CHECK(out.properties.content_type == "application/json");
    CHECK(out.properties.headers.empty());
    CHECK(out.body == m.body);
  }
  SECTION("dtask due now: the dtask exchange") {
    m.lane = Lane::dtask;
    const OutMessage out = out_message(m, t, kNow);
    CHECK(out.exchange == "p.dtask");
    CHECK(out.routing_key == "demo");
    CHECK(out.properties.type == "task");
  }
  SECTION("dtask due in 2h10m: the delay levels, as task_route() says") {
    m.lane = Lane::dtask;
    m.due_at = kNow + 7'800'000;
    const OutMessage out = out_message(m, t, kNow);
    const Route expected = t.delay_route(7799, "demo");  // half a unit of slack: 7799 units and the rest held
    CHECK(out.exchange == expected.exchange);
    CHECK(out.exchange == "p.delay.12");
    CHECK(out.routing_key == expected.routing_key);
    CHECK(out.properties.type == "task");
    CHECK(out.properties.message_id == kTaskId);
    CHECK(out.properties.persistent);
    CHECK(out.properties.headers.empty());
  }
}

TEST_CASE("amqp messages: a dead letter carries what it is in x-ebats-* headers", "[amqp][messages]") {
  const Topology t = topology();
  const DeadLetter d = dead_letter();
  const OutMessage out = dead_letter_message(d, t);
  CHECK(out.exchange == "p.dead");
  CHECK(out.routing_key == "demo");
  CHECK(out.body == d.body);
  CHECK(out.properties.message_id == kTaskId);
  CHECK(out.properties.type == "dead");
  CHECK(out.properties.content_type == "application/json");
  CHECK(out.properties.persistent);
  CHECK(out.properties.timestamp == d.dead_at / 1000);
  const MessageProperties& p = out.properties;
  CHECK(header_text(p, kReasonHeader) == "retries exhausted");
  CHECK(header_text(p, kErrorHeader) == "warehouse busy");
  CHECK(header_text(p, kKindHeader) == "task");
  CHECK(header_text(p, kTopicHeader) == "demo");
  CHECK(header_text(p, kNameHeader) == "closeOrder");
  CHECK(header_number(p, kAttemptsHeader) == 6);
  CHECK(header_number(p, kFirstSeenHeader) == d.first_seen);
  CHECK(header_number(p, kDeadAtHeader) == d.dead_at);
}

TEST_CASE("amqp messages: dead letters without a topic or id, and raw bytes", "[amqp][messages]") {
  const Topology t = topology();
  DeadLetter d = dead_letter();
  d.kind = "raw";
  d.topic.clear();
  d.id.clear();
  d.body = std::string("\x00\xff garbage", 10);
  const OutMessage out = dead_letter_message(d, t);
  CHECK(out.routing_key == "_raw");
  CHECK(out.properties.content_type == "application/octet-stream");
  CHECK(is_valid_uuid(out.properties.message_id));
  CHECK(out.body == d.body);

  d.kind = "event";
  CHECK(dead_letter_message(d, t).routing_key == "_event");
  CHECK(dead_letter_message(d, t).properties.content_type == "application/json");
  // A fresh id each time.
  CHECK(dead_letter_message(d, t).properties.message_id != dead_letter_message(d, t).properties.message_id);
}

TEST_CASE("amqp messages: a long error, reason or name is cut to kMaxHeaderText, between characters",
          "[amqp][messages]") {
  const Topology t = topology();
  DeadLetter d = dead_letter();
  d.error = std::string(kMaxHeaderText, 'e') + "-the tail that is cut";
  d.reason = std::string(kMaxHeaderText + 1, 'r');
  d.name = std::string(kMaxHeaderText + 300, 'n');
  const OutMessage out = dead_letter_message(d, t);
  const std::string error = header_text(out.properties, kErrorHeader);
  CHECK(error.size() == kMaxHeaderText);
  CHECK(error == d.error.substr(0, kMaxHeaderText));
  CHECK(header_text(out.properties, kReasonHeader).size() == kMaxHeaderText);
  CHECK(header_text(out.properties, kNameHeader) == std::string(kMaxHeaderText, 'n'));
  CHECK(out.body == d.body);  // the body is never cut

  // A cut never splits a character: the header stays valid UTF-8.
  d.error = std::string(kMaxHeaderText - 1, 'e') + "\xc3\xa9";  // 'é' across the limit
  CHECK(header_text(dead_letter_message(d, t).properties, kErrorHeader) == std::string(kMaxHeaderText - 1, 'e'));

  // An error exactly at the limit is kept whole.
  d.error = std::string(kMaxHeaderText, 'x');
  CHECK(header_text(dead_letter_message(d, t).properties, kErrorHeader) == d.error);
}

TEST_CASE("amqp messages: a dead letter published and read back is the same dead letter", "[amqp][messages]") {
  const Topology t = topology();
  DeadLetter d = dead_letter();

  SECTION("a task's") {}
  SECTION("an event's, with no topic") {
    d.kind = "event";
    d.topic.clear();
    d.name = "order_create";
    d.attempts = 0;
  }
  SECTION("one with an empty reason and error") {
    d.reason.clear();
    d.error.clear();
  }
  const DeadLetter back = dead_letter_from_message(as_received(dead_letter_message(d, t)), kLimit);
  CHECK(back.id == d.id);
  CHECK(back.kind == d.kind);
  CHECK(back.topic == d.topic);
  CHECK(back.name == d.name);
  CHECK(back.reason == d.reason);
  CHECK(back.error == d.error);
  CHECK(back.attempts == d.attempts);
  CHECK(back.body == d.body);
  CHECK(back.first_seen == d.first_seen);
  CHECK(back.dead_at == d.dead_at);
}

TEST_CASE("amqp messages: result records go in messages of at most max_body bytes, one topic each, each once",
          "[amqp][messages]") {
  const Topology t = topology();
  std::vector<ResultRecord> records;
  // Runs of topics: a a a a a b b a, then an empty topic, then one record
  // longer than max_body.
  for (int i = 0; i < 5; ++i) records.push_back(result("a", i));
  records.push_back(result("b", 5));
  records.push_back(result("b", 6));
  records.push_back(result("a", 7));
  records.push_back(result("", 8));
  records.push_back(result("a", 9, 1000));
  const size_t line_bytes = result_to_json(records[0]).size() + 1;
  const size_t max_body = 2 * line_bytes + line_bytes / 2;  // two records fit, not three
  REQUIRE(result_to_json(records.back()).size() > max_body);

  const std::vector<OutMessage> messages = result_messages(records, t, max_body, kNow);
  std::vector<std::string> all_lines;
  std::set<std::string> ids;
  std::vector<std::string> keys;
  for (const OutMessage& m : messages) {
    INFO("message to '" << m.routing_key << "': " << m.body);
    CHECK(m.exchange == "p.results");
    CHECK(m.properties.type == "results");
    CHECK(m.properties.content_type == "application/x-ndjson");
    CHECK(m.properties.persistent);
    CHECK(m.properties.timestamp == kNow / 1000);
    CHECK(is_valid_uuid(m.properties.message_id));
    ids.insert(m.properties.message_id);
    keys.push_back(m.routing_key);
    const std::vector<std::string> lines = lines_of(m.body);
    REQUIRE_FALSE(lines.empty());
    if (lines.size() > 1) CHECK(m.body.size() <= max_body);  // only a lone record may be longer
    all_lines.insert(all_lines.end(), lines.begin(), lines.end());
  }
  CHECK(ids.size() == messages.size());

  // Every record exactly once, in order.
  std::vector<std::string> expected;
  for (const ResultRecord& r : records) expected.push_back(result_to_json(r));
  CHECK(all_lines == expected);

  // a a | a a | a | b b | a | _ | a(long): a new message only for a new topic
  // or a full one.
  CHECK(keys == std::vector<std::string>{"a", "a", "a", "b", "a", "_", "a"});
  REQUIRE(messages.size() == 7);
  CHECK(lines_of(messages[0].body).size() == 2);
  CHECK(lines_of(messages[2].body).size() == 1);
  CHECK(lines_of(messages[3].body).size() == 2);
  CHECK(lines_of(messages[6].body).size() == 1);
}

TEST_CASE("amqp messages: result_messages of no records is no message, and with a tiny max_body one per record",
          "[amqp][messages]") {
  const Topology t = topology();
  CHECK(result_messages({}, t, 4096, kNow).empty());
  const std::vector<ResultRecord> records = {result("a", 1), result("a", 2), result("a", 3)};
  const auto messages = result_messages(records, t, 1, kNow);
  REQUIRE(messages.size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(messages[i].body == result_to_json(records[i]) + "\n");
}

TEST_CASE("amqp messages: a tombstone read back settles what it was written with", "[amqp][messages]") {
  const Topology t = topology();

  SECTION("a list of offsets") {
    const std::vector<uint64_t> offsets = {3, 17, 42, std::numeric_limits<uint64_t>::max()};
    const OutMessage out = tombstone_message(offsets, 999, t);
    // Through the dead-letter exchange, into the stream bound to it with '#':
    // a user allowed only the prefix's objects may write it.
    CHECK(out.exchange == "p.dead");
    CHECK(out.routing_key == "_tombstone");
    CHECK(out.properties.type == kTombstoneType);
    CHECK(out.properties.persistent);
    CHECK(is_valid_uuid(out.properties.message_id));
    Tombstone back;
    REQUIRE(read_tombstone(as_received(out), &back));
    CHECK(back.offsets == offsets);
    CHECK_FALSE(back.has_upto);  // the list wins over upto
  }
  SECTION("everything up to an offset") {
    Tombstone back;
    back.offsets = {1, 2};  // overwritten by the read
    REQUIRE(read_tombstone(as_received(tombstone_message({}, 123456789012, t)), &back));
    CHECK(back.offsets.empty());
    CHECK(back.has_upto);
    CHECK(back.upto == 123456789012);
  }
  SECTION("upto 0") {
    Tombstone back;
    REQUIRE(read_tombstone(as_received(tombstone_message({}, 0, t)), &back));
    CHECK(back.has_upto);
    CHECK(back.upto == 0);
  }
}

TEST_CASE("amqp messages: read_tombstone() refuses other messages and settles nothing for a broken one",
          "[amqp][messages]") {
  const Topology t = topology();
  Tombstone untouched;
  untouched.upto = 77;
  Incoming dead = as_received(dead_letter_message(dead_letter(), t));
  CHECK_FALSE(read_tombstone(dead, &untouched));
  CHECK(untouched.upto == 77);

  Incoming broken = as_received(tombstone_message({5}, 0, t));
  broken.body = "{not json";
  Tombstone back;
  CHECK(read_tombstone(broken, &back));
  CHECK(back.offsets.empty());
  CHECK_FALSE(back.has_upto);

  broken.body = R"({"settled":[1,-2,"x",3],"upto":-1})";
  CHECK(read_tombstone(broken, &back));
  CHECK(back.offsets == std::vector<uint64_t>{1, 3});
  CHECK_FALSE(back.has_upto);
}

// ------------------------------------------------------------- receiving

TEST_CASE("amqp messages: a task delivery is read from its envelope", "[amqp][messages]") {
  const std::string body = encoded(task_envelope(2));
  Incoming in = delivery("demo", body, kTaskId);
  const Delivery d = delivery_from_message(Lane::ntask, "demo", in, 41, kLimit);
  CHECK(d.token == 41);
  CHECK(d.lane == Lane::ntask);
  CHECK(d.topic == "demo");
  CHECK(d.id == kTaskId);
  CHECK(d.name == "closeOrder");
  CHECK(d.body == body);
  CHECK(d.due_at == 1'732'550'410'000);
  CHECK(d.created_at == 1'732'550'400'000);
  CHECK(d.attempt == 2);
  CHECK(d.max_attempts == 6);
  CHECK(d.redeliveries == 0);
}

TEST_CASE("amqp messages: x-delivery-count adds the redeliveries to the envelope's attempt", "[amqp][messages]") {
  Incoming in = delivery("demo", encoded(task_envelope(2)), kTaskId);
  in.properties.headers.push_back(number_header(kDeliveryCountHeader, 3));
  Delivery d = delivery_from_message(Lane::dtask, "demo", in, 1, kLimit);
  CHECK(d.redeliveries == 3);
  CHECK(d.attempt == 5);
  CHECK(d.max_attempts == 6);
  CHECK(d.body == in.body);  // the body is not rewritten here (with_attempt() does that)

  in.properties.headers[0].number = -4;  // nonsense: no redeliveries
  d = delivery_from_message(Lane::dtask, "demo", in, 1, kLimit);
  CHECK(d.redeliveries == 0);
  CHECK(d.attempt == 2);

  in.properties.headers[0] = text_header(kDeliveryCountHeader, "3");  // not a number: ignored
  d = delivery_from_message(Lane::dtask, "demo", in, 1, kLimit);
  CHECK(d.redeliveries == 0);
  CHECK(d.attempt == 2);

  in.properties.headers[0] = number_header(kDeliveryCountHeader, std::numeric_limits<int64_t>::max());
  d = delivery_from_message(Lane::dtask, "demo", in, 1, kLimit);
  CHECK(d.redeliveries == std::numeric_limits<uint32_t>::max());
  CHECK(d.attempt == std::numeric_limits<uint32_t>::max());  // clamped, not wrapped round
}

TEST_CASE("amqp messages: bytes that are no task envelope are handed out as they are, to be dead-lettered",
          "[amqp][messages]") {
  std::string body = "this is not json";
  std::string message_id;
  SECTION("garbage, no message id: a fresh id") {}
  SECTION("garbage, a message id that is no UUID: a fresh id") { message_id = "order-7"; }
  SECTION("an event envelope on a task lane") { body = encoded(event_envelope()); }
  SECTION("a task envelope over the size limit") { body = encoded(task_envelope()) + std::string(64, ' '); }

  Incoming in = delivery("demo", body, message_id);
  in.properties.headers.push_back(number_header(kDeliveryCountHeader, 4));
  const uint64_t limit = encoded(task_envelope()).size();  // the last section's body is over it
  const Delivery d = delivery_from_message(Lane::ntask, "demo", in, 8, limit);
  CHECK(d.token == 8);
  CHECK(d.body == body);
  CHECK(d.attempt == 0);
  CHECK(d.max_attempts == 1);
  CHECK(d.redeliveries == 0);
  CHECK(d.name.empty());
  CHECK(is_valid_uuid(d.id));
  CHECK(d.id != message_id);
  CHECK(d.id != kTaskId);
}

TEST_CASE("amqp messages: garbage keeps a message id that is a valid UUID", "[amqp][messages]") {
  const Delivery d = delivery_from_message(Lane::dtask, "demo", delivery("demo", "{}", kEventId), 1, kLimit);
  CHECK(d.id == kEventId);
  CHECK(d.attempt == 0);
  CHECK(d.max_attempts == 1);
}

TEST_CASE("amqp messages: an event delivery is named by its routing key and not decoded", "[amqp][messages]") {
  Incoming in = delivery("order_create", "not even json", kEventId);
  in.properties.headers.push_back(number_header(kDeliveryCountHeader, 2));
  const Delivery d = delivery_from_message(Lane::events, "", in, 5, kLimit);
  CHECK(d.lane == Lane::events);
  CHECK(d.name == "order_create");
  CHECK(d.id == kEventId);
  CHECK(d.body == "not even json");
  CHECK(d.created_at == 1'732'550'401'000);
  CHECK(d.redeliveries == 2);
  CHECK(d.attempt == 0);
}

TEST_CASE("amqp messages: a message RabbitMQ dead-lettered itself is read from its envelope and x-first-death-*",
          "[amqp][messages]") {
  Incoming in = delivery("demo", encoded(task_envelope(1)), kTaskId);
  in.properties.type = "task";
  in.properties.headers.push_back(text_header(kFirstDeathReasonHeader, "delivery_limit"));
  in.properties.headers.push_back(text_header("x-first-death-queue", "p.ntask.demo"));
  in.properties.headers.push_back(number_header(kDeliveryCountHeader, 20));
  const DeadLetter d = dead_letter_from_message(in, kLimit);
  CHECK(d.reason == "delivery limit");
  CHECK_THAT(d.error, Contains("'p.ntask.demo'"));
  CHECK(d.kind == "task");
  CHECK(d.topic == "demo");
  CHECK(d.name == "closeOrder");
  CHECK(d.id == kTaskId);
  CHECK(d.attempts == 21);
  CHECK(d.first_seen == 1'732'550'400'000);
  CHECK(d.dead_at == 1'732'550'401'000);
  CHECK(d.body == in.body);
}

TEST_CASE("amqp messages: absurd timestamps and delivery counts saturate instead of wrapping round",
          "[amqp][messages]") {
  const int64_t max = std::numeric_limits<int64_t>::max();
  Incoming in = delivery("order_create", "x", kEventId);
  in.properties.timestamp = max;  // seconds, as any publisher may set them
  CHECK(delivery_from_message(Lane::events, "", in, 1, kLimit).created_at == max / 1000 * 1000);
  in.properties.timestamp = -max;
  CHECK(delivery_from_message(Lane::events, "", in, 1, kLimit).created_at == -(max / 1000 * 1000));

  Incoming dead = delivery("demo", encoded(task_envelope(3)), kTaskId);
  dead.properties.timestamp = max;
  dead.properties.headers.push_back(text_header(kFirstDeathReasonHeader, "delivery_limit"));
  dead.properties.headers.push_back(number_header(kDeliveryCountHeader, max));
  const DeadLetter d = dead_letter_from_message(dead, kLimit);
  CHECK(d.dead_at == max / 1000 * 1000);
  CHECK(d.attempts == std::numeric_limits<uint32_t>::max());
}

TEST_CASE("amqp messages: RabbitMQ's dead-letter reasons in ebats' words", "[amqp][messages]") {
  const std::vector<std::pair<std::string, std::string>> reasons = {{"delivery_limit", "delivery limit"},
                                                                    {"expired", "expired"},
                                                                    {"maxlen", "queue full"},
                                                                    {"rejected", "rejected"},
                                                                    {"", "dead-lettered by RabbitMQ"},
                                                                    {"something_new", "something_new"}};
  for (const auto& [rabbit, ebats_reason] : reasons) {
    Incoming in = delivery("order_create", encoded(event_envelope()), kEventId);
    if (!rabbit.empty()) in.properties.headers.push_back(text_header(kFirstDeathReasonHeader, rabbit));
    const DeadLetter d = dead_letter_from_message(in, kLimit);
    CHECK(d.reason == ebats_reason);
    CHECK(d.kind == "event");
    CHECK(d.name == "order_create");
    CHECK(d.topic.empty());
  }
}

TEST_CASE("amqp messages: raw bytes RabbitMQ dead-lettered are kind raw, with an id", "[amqp][messages]") {
  Incoming in = delivery("demo", "garbage", "");
  in.properties.headers.push_back(text_header(kFirstDeathReasonHeader, "delivery_limit"));
  DeadLetter d = dead_letter_from_message(in, kLimit);
  CHECK(d.kind == "raw");
  CHECK(d.reason == "delivery limit");
  CHECK(d.body == "garbage");
  CHECK(is_valid_uuid(d.id));
  CHECK(d.name.empty());

  in.properties.message_id = kEventId;
  d = dead_letter_from_message(in, kLimit);
  CHECK(d.id == kEventId);
}

TEST_CASE("amqp messages: with_attempt() rewrites a task envelope's attempt and nothing else", "[amqp][messages]") {
  Envelope e = task_envelope(2);
  e.trace = "req-1";
  const std::string body = encoded(e);

  const std::string five = with_attempt(body, 5, kLimit);
  const DecodeResult r = decode_envelope(five, kLimit);
  REQUIRE(r.ok());
  CHECK(r.envelope.attempt == 5);
  e.attempt = 5;
  CHECK(five == encode_envelope(e));  // every other field as it was

  CHECK(with_attempt(body, 2, kLimit) == body);  // the same attempt: the same bytes
  const std::string event = encoded(event_envelope());
  CHECK(with_attempt(event, 5, kLimit) == event);
  CHECK(with_attempt("garbage", 5, kLimit) == "garbage");
  CHECK(with_attempt(body, 5, body.size() - 1) == body);  // over the limit: left alone
}

TEST_CASE("amqp messages: result lines already encoded are cut between lines, each line exactly once",
          "[amqp][messages]") {
  const Topology t = topology();
  std::string jsonl;
  for (int i = 0; i < 50; ++i) jsonl += "{\"n\":" + std::to_string(i) + ",\"pad\":\"" + std::string(30, 'x') + "\"}\n";
  const std::vector<OutMessage> out = result_messages(jsonl, "demo", t, 200, 1'700'000'000'000);
  REQUIRE(out.size() > 1);
  std::string joined;
  for (const OutMessage& m : out) {
    CHECK(m.routing_key == "demo");
    CHECK(m.exchange == t.results_exchange());
    CHECK(m.properties.content_type == "application/x-ndjson");
    CHECK_FALSE(m.mandatory);  // for whoever listens; no queue bound is no failure
    CHECK(m.body.size() <= 200);
    CHECK(m.body.back() == '\n');  // whole lines only
    joined += m.body;
  }
  CHECK(joined == jsonl);
  // A line longer than the limit goes alone, whole.
  const std::string long_line = std::string(500, 'y') + "\n";
  const auto alone = result_messages("{}\n" + long_line + "{}\n", "demo", t, 200, 1'700'000'000'000);
  REQUIRE(alone.size() == 3);
  CHECK(alone[1].body == long_line);
  CHECK(result_messages(std::string(), "demo", t, 200, 0).empty());
}
