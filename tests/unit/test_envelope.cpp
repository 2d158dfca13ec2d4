// The envelope wire format (docs/WIRE.md): round trips, every validation
// rule, the size limit, hostile input (deep nesting, bad UTF-8, truncation),
// history trimming on encode, normalize_params() and the name rules.
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <string>
#include <utility>
#include <vector>

#include "ebats/duration.h"
#include "ebats/envelope.h"

using ebats::decode_envelope;
using ebats::DecodeError;
using ebats::DecodeResult;
using ebats::encode_envelope;
using ebats::Envelope;
using ebats::EnvelopeKind;
using ebats::HistoryEntry;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

constexpr uint64_t kLimit = 1 << 20;
constexpr const char* kEventId = "0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a11";
constexpr const char* kTaskId = "0e45e837-9eab-5961-b27f-45b936a9303f";

// An envelope as an ordered list of top-level members with raw JSON values,
// so each test can change exactly one thing.
class Members {
 public:
  explicit Members(std::vector<std::pair<std::string, std::string>> kv) : kv_(std::move(kv)) {}
  Members& set(const std::string& key, const std::string& raw) {
    for (auto& [k, v] : kv_) {
      if (k == key) {
        v = raw;
        return *this;
      }
    }
    kv_.emplace_back(key, raw);
    return *this;
  }
  Members& add(const std::string& key, const std::string& raw) {  // even when present: duplicates
    kv_.emplace_back(key, raw);
    return *this;
  }
  Members& erase(const std::string& key) {
    for (auto it = kv_.begin(); it != kv_.end(); ++it) {
      if (it->first == key) {
        kv_.erase(it);
        break;
      }
    }
    return *this;
  }
  std::string json() const {
    std::string s = "{";
    for (const auto& [k, v] : kv_) {
      if (s.size() > 1) s += ',';
      s += '"' + k + "\":" + v;
    }
    return s + "}";
  }

 private:
  std::vector<std::pair<std::string, std::string>> kv_;
};

Members task_members() {
  return Members({{"v", "1"},
                  {"id", std::string("\"") + kTaskId + "\""},
                  {"kind", "\"task\""},
                  {"event", "\"order_create\""},
                  {"task", "\"closeOrder\""},
                  {"topic", "\"demo\""},
                  {"params", "{\"order_id\":10042}"},
                  {"created_at", "1732550400000"},
                  {"due_at", "1732550410000"},
                  {"attempt", "0"},
                  {"max_attempts", "6"}});
}

Members event_members() {
  return Members({{"v", "1"},
                  {"id", std::string("\"") + kEventId + "\""},
                  {"kind", "\"event\""},
                  {"event", "\"order_create\""},
                  {"params", "{\"order_id\":10042}"},
                  {"created_at", "1732550400000"}});
}

DecodeResult decode(const std::string& s) { return decode_envelope(s, kLimit); }

Envelope full_task() {
  Envelope e;
  e.id = kTaskId;
  e.kind = EnvelopeKind::task;
  e.event = "order_create";
  e.task = "closeOrder";
  e.topic = "demo";
  e.params = R"({"order_id":10042,"items":[1,2.5,"x\"y"],"nested":{"ok":true,"none":null}})";
  e.created_at = 1732550400000;
  e.due_at = 1732550410000;
  e.attempt = 2;
  e.max_attempts = 6;
  e.trace = "req-8c1f2b";
  e.parent = kEventId;
  e.timeout_ms = 30000;
  e.has_retry = true;
  e.backoff_ms = {5000, 300000, 600000, 3600000, 7800000};
  for (uint32_t a = 0; a < 2; ++a) {
    HistoryEntry h;
    h.attempt = a;
    h.status = "retry";
    h.started_at = 1732550410000 + a;
    h.finished_at = 1732550411000 + a;
    h.message = "warehouse busy \"again\"\n";
    h.host = "worker-1";
    h.pid = 4242 + a;
    e.history.push_back(h);
  }
  return e;
}

void check_same(const Envelope& a, const Envelope& b) {
  CHECK(a.v == b.v);
  CHECK(a.id == b.id);
  CHECK(a.kind == b.kind);
  CHECK(a.event == b.event);
  CHECK(a.task == b.task);
  CHECK(a.topic == b.topic);
  CHECK(a.params == b.params);
  CHECK(a.created_at == b.created_at);
  CHECK(a.due_at == b.due_at);
  CHECK(a.attempt == b.attempt);
  CHECK(a.max_attempts == b.max_attempts);
  CHECK(a.trace == b.trace);
  CHECK(a.parent == b.parent);
  CHECK(a.timeout_ms == b.timeout_ms);
  CHECK(a.has_retry == b.has_retry);
  CHECK(a.backoff_ms == b.backoff_ms);
  CHECK(a.jitter_pct == b.jitter_pct);
  REQUIRE(a.history.size() == b.history.size());
  for (size_t i = 0; i < a.history.size(); ++i) {
    CHECK(a.history[i].attempt == b.history[i].attempt);
    CHECK(a.history[i].status == b.history[i].status);
    CHECK(a.history[i].started_at == b.history[i].started_at);
    CHECK(a.history[i].finished_at == b.history[i].finished_at);
    CHECK(a.history[i].message == b.history[i].message);
    CHECK(a.history[i].host == b.history[i].host);
    CHECK(a.history[i].pid == b.history[i].pid);
  }
}

// Expects `json` to be refused as invalid with a detail that names `field`.
void check_invalid(const std::string& json, const std::string& field) {
  INFO(json);
  const DecodeResult r = decode(json);
  CHECK(r.error == DecodeError::invalid);
  CHECK_THAT(r.detail, StartsWith("field '" + field + "'"));
}

void check_malformed(const std::string& json) {
  const DecodeResult r = decode(json);
  CHECK(r.error == DecodeError::malformed);
  CHECK_FALSE(r.detail.empty());
}

}  // namespace

TEST_CASE("a task round-trips through encode and decode with every field", "[envelope]") {
  const Envelope e = full_task();
  const std::string wire = encode_envelope(e);
  const DecodeResult r = decode(wire);
  REQUIRE(r.ok());
  check_same(r.envelope, e);
  CHECK(encode_envelope(r.envelope) == wire);  // the encoding is canonical
}

TEST_CASE("an event round-trips and its encoding carries no task fields", "[envelope]") {
  Envelope e;
  e.id = kEventId;
  e.kind = EnvelopeKind::event;
  e.event = "order.paid:v2";
  e.params = "{}";
  e.created_at = 1732550400000;
  e.trace = "req-1";
  const std::string wire = encode_envelope(e);
  CHECK(wire == std::string(R"({"v":1,"id":")") + kEventId +
                    R"(","kind":"event","event":"order.paid:v2","params":{},"created_at":1732550400000,"trace":"req-1"})");
  const DecodeResult r = decode(wire);
  REQUIRE(r.ok());
  check_same(r.envelope, e);
}

TEST_CASE("a task without optional fields encodes without them", "[envelope]") {
  Envelope e;
  e.id = kTaskId;
  e.kind = EnvelopeKind::task;
  e.task = "closeOrder";
  e.topic = "demo";
  e.params = R"({"a":1})";
  e.created_at = 5;
  e.due_at = 6;
  e.attempt = 0;
  e.max_attempts = 1;
  const std::string wire = encode_envelope(e);
  CHECK(wire == std::string(R"({"v":1,"id":")") + kTaskId +
                    R"(","kind":"task","task":"closeOrder","topic":"demo","params":{"a":1},"created_at":5,)"
                    R"("due_at":6,"attempt":0,"max_attempts":1})");
  const DecodeResult r = decode(wire);
  REQUIRE(r.ok());
  check_same(r.envelope, e);
}

TEST_CASE("the architecture document's example task decodes", "[envelope]") {
  const std::string example =
      R"({"v": 1, "id": "0b7e4a52-9c1f-5d7e-8a34-2f6c1d9e0a11", "kind": "task",
 "event": "order_create", "task": "closeOrder", "topic": "demo", "params": {"order_id": 10042},
 "created_at": 1732550400000, "due_at": 1732550410000, "attempt": 0, "max_attempts": 6,
 "trace": "req-8c1f2b", "parent": "5f0c9a3e-1d2b-4c6a-9e8f-7a6b5c4d3e2f", "timeout_ms": 30000,
 "retry": {"backoff_ms": [5000, 300000, 600000, 3600000, 7800000]}, "history": []})";
  const DecodeResult r = decode(example);
  REQUIRE(r.ok());
  const Envelope& e = r.envelope;
  CHECK(e.id == "0b7e4a52-9c1f-5d7e-8a34-2f6c1d9e0a11");
  CHECK(e.kind == EnvelopeKind::task);
  CHECK(e.event == "order_create");
  CHECK(e.task == "closeOrder");
  CHECK(e.topic == "demo");
  CHECK(e.params == R"({"order_id":10042})");  // compact
  CHECK(e.created_at == 1732550400000);
  CHECK(e.due_at == 1732550410000);
  CHECK(e.attempt == 0);
  CHECK(e.max_attempts == 6);
  CHECK(e.trace == "req-8c1f2b");
  CHECK(e.parent == "5f0c9a3e-1d2b-4c6a-9e8f-7a6b5c4d3e2f");
  CHECK(e.timeout_ms == 30000);
  CHECK(e.has_retry);
  CHECK(e.backoff_ms == std::vector<int64_t>{5000, 300000, 600000, 3600000, 7800000});
  CHECK(e.history.empty());
}

TEST_CASE("params keep their numbers verbatim and lose only whitespace", "[envelope]") {
  const std::string params = R"({ "big" : 123456789012345678901234567890, "f": 1.10, "e": 1E+2, "neg": -0,
    "s": "\u00e9\ud83d\ude00\/" })";
  const DecodeResult r = decode(task_members().set("params", params).json());
  REQUIRE(r.ok());
  CHECK(r.envelope.params ==
        "{\"big\":123456789012345678901234567890,\"f\":1.10,\"e\":1E+2,\"neg\":-0,\"s\":\"\xC3\xA9\xF0\x9F\x98\x80/\"}");
}

TEST_CASE("unknown top-level members are not interpreted, and re-encoding carries them along", "[envelope]") {
  const DecodeResult r = decode(task_members()
                                    .set("x_future", R"({ "deep" : [[1, {"a":"b"}]], "n": 1.50 })")
                                    .set("another", "null")
                                    .set("big", "123456789012345678901234567890")
                                    .json());
  REQUIRE(r.ok());
  CHECK(r.envelope.task == "closeOrder");
  // Kept compact, numbers digit for digit, in the order they came.
  CHECK(r.envelope.unknown_members ==
        R"({"x_future":{"deep":[[1,{"a":"b"}]],"n":1.50},"another":null,"big":123456789012345678901234567890})");
  // A retry re-encodes the task: the members come back after the known ones.
  Envelope retry = r.envelope;
  retry.attempt = 1;
  const std::string encoded = encode_envelope(retry);
  CHECK(encoded.find(R"(,"x_future":{"deep":[[1,{"a":"b"}]],"n":1.50},"another":null,)") != std::string::npos);
  const DecodeResult again = decode(encoded);
  REQUIRE(again.ok());
  CHECK(again.envelope.attempt == 1);
  CHECK(again.envelope.unknown_members == r.envelope.unknown_members);
  CHECK(encode_envelope(again.envelope) == encoded);  // stable over any number of retries
}

TEST_CASE("an envelope without unknown members has none, and bad ones are never written", "[envelope]") {
  const DecodeResult r = decode(task_members().json());
  REQUIRE(r.ok());
  CHECK(r.envelope.unknown_members.empty());
  const std::string plain = encode_envelope(r.envelope);
  for (const char* junk : {"", "{}", "not json", "[1,2]", "{\"a\":", "{\"a\":1}}"}) {
    Envelope e = r.envelope;
    e.unknown_members = junk;
    INFO(junk);
    CHECK(encode_envelope(e) == plain);
  }
  Envelope e = r.envelope;
  e.unknown_members = " { \"x\" : 1 } ";  // set by a caller: compacted on the way out
  const DecodeResult back = decode(encode_envelope(e));
  REQUIRE(back.ok());
  CHECK(back.envelope.unknown_members == R"({"x":1})");
  // Members the envelope has anyway, and repeats, are left out: the result still decodes.
  e.unknown_members = R"({"id":"not-a-uuid","x":1,"params":{},"x":2,"y":[3]})";
  const DecodeResult filtered = decode(encode_envelope(e));
  REQUIRE(filtered.ok());
  CHECK(filtered.envelope.id == r.envelope.id);
  CHECK(filtered.envelope.unknown_members == R"({"x":1,"y":[3]})");
}

TEST_CASE("an unknown top-level member given twice is refused, as a known one is", "[envelope]") {
  const DecodeResult r = decode(task_members().set("x_future", "1").json());
  REQUIRE(r.ok());
  std::string twice = task_members().set("x_future", "1").json();
  twice.insert(twice.size() - 1, R"(,"x_future":{"a":2})");
  const DecodeResult refused = decode(twice);
  CHECK(refused.error == DecodeError::invalid);
  CHECK(refused.detail == "field 'x_future': appears more than once");
  // A newer version is still reported as such first.
  std::string newer = task_members().set("v", "2").set("x_future", "1").json();
  newer.insert(newer.size() - 1, R"(,"x_future":2)");
  CHECK(decode(newer).error == DecodeError::unsupported_version);
}

TEST_CASE("the version is checked before anything else", "[envelope]") {
  SECTION("v = 2 is an unsupported version") {
    const DecodeResult r = decode(task_members().set("v", "2").json());
    CHECK(r.error == DecodeError::unsupported_version);
    CHECK(r.detail == "version 2, this build speaks 1");
  }
  SECTION("even when the rest would not pass as version 1") {
    const DecodeResult r = decode(R"({"v":7,"shape":"different"})");
    CHECK(r.error == DecodeError::unsupported_version);
    CHECK(r.detail == "version 7, this build speaks 1");
  }
  SECTION("a huge version is still a version") {
    const DecodeResult r = decode(task_members().set("v", "18446744073709551615").json());
    CHECK(r.error == DecodeError::unsupported_version);
    CHECK(r.detail == "version 18446744073709551615, this build speaks 1");
  }
  SECTION("missing") { check_invalid(task_members().erase("v").json(), "v"); }
  SECTION("zero") { check_invalid(task_members().set("v", "0").json(), "v"); }
  SECTION("negative") { check_invalid(task_members().set("v", "-1").json(), "v"); }
  SECTION("a string") { check_invalid(task_members().set("v", "\"1\"").json(), "v"); }
  SECTION("a float") {
    const DecodeResult r = decode(task_members().set("v", "1.0").json());
    CHECK(r.error == DecodeError::invalid);
    CHECK(r.detail == "field 'v': expected the integer 1, found 1.0");
  }
}

TEST_CASE("every field rule is enforced", "[envelope]") {
  SECTION("id: required") { check_invalid(task_members().erase("id").json(), "id"); }
  SECTION("id: uppercase is refused") {
    check_invalid(task_members().set("id", "\"0B7E4A52-9C1F-4D7E-8A34-2F6C1D9E0A11\"").json(), "id");
  }
  SECTION("id: braces or missing dashes are refused") {
    check_invalid(task_members().set("id", "\"0b7e4a529c1f4d7e8a342f6c1d9e0a11\"").json(), "id");
  }
  SECTION("id: a number is refused") { check_invalid(task_members().set("id", "42").json(), "id"); }
  SECTION("kind: required") { check_invalid(task_members().erase("kind").json(), "kind"); }
  SECTION("kind: only event or task") {
    const DecodeResult r = decode(task_members().set("kind", "\"job\"").json());
    CHECK(r.error == DecodeError::invalid);
    CHECK(r.detail == "field 'kind': expected \"event\" or \"task\", found string \"job\"");
  }
  SECTION("event: required in an event") { check_invalid(event_members().erase("event").json(), "event"); }
  SECTION("event: optional in a task") {
    const DecodeResult r = decode(task_members().erase("event").json());
    REQUIRE(r.ok());
    CHECK(r.envelope.event.empty());
  }
  SECTION("event: pattern") { check_invalid(event_members().set("event", "\"order created\"").json(), "event"); }
  SECTION("event: empty") { check_invalid(event_members().set("event", "\"\"").json(), "event"); }
  SECTION("event: 128 characters pass, 129 do not") {
    CHECK(decode(event_members().set("event", '"' + std::string(128, 'e') + '"').json()).ok());
    check_invalid(event_members().set("event", '"' + std::string(129, 'e') + '"').json(), "event");
  }
  SECTION("event: checked in a task too") { check_invalid(task_members().set("event", "\"a/b\"").json(), "event"); }
  SECTION("task: required in a task") { check_invalid(task_members().erase("task").json(), "task"); }
  SECTION("task: pattern") { check_invalid(task_members().set("task", "\"close;rm -rf\"").json(), "task"); }
  SECTION("topic: required in a task") { check_invalid(task_members().erase("topic").json(), "topic"); }
  SECTION("topic: no dots") {
    const DecodeResult r = decode(task_members().set("topic", "\"a.b\"").json());
    CHECK(r.error == DecodeError::invalid);
    CHECK(r.detail == "field 'topic': expected a name matching [A-Za-z0-9_-]{1,64}, found string \"a.b\"");
  }
  SECTION("topic: 64 characters pass, 65 do not") {
    CHECK(decode(task_members().set("topic", '"' + std::string(64, 't') + '"').json()).ok());
    check_invalid(task_members().set("topic", '"' + std::string(65, 't') + '"').json(), "topic");
  }
  SECTION("params: required") { check_invalid(task_members().erase("params").json(), "params"); }
  SECTION("params: an array is refused") {
    const DecodeResult r = decode(task_members().set("params", "[1,2]").json());
    CHECK(r.error == DecodeError::invalid);
    CHECK(r.detail == "field 'params': expected an object, found array");
  }
  SECTION("params: a string is refused") { check_invalid(task_members().set("params", "\"{}\"").json(), "params"); }
  SECTION("params: null is refused") { check_invalid(task_members().set("params", "null").json(), "params"); }
  SECTION("params: twice is refused") { check_invalid(task_members().add("params", "{}").json(), "params"); }
  SECTION("created_at: required") { check_invalid(task_members().erase("created_at").json(), "created_at"); }
  SECTION("created_at: negative") { check_invalid(task_members().set("created_at", "-1").json(), "created_at"); }
  SECTION("created_at: fractional") { check_invalid(task_members().set("created_at", "1.5").json(), "created_at"); }
  SECTION("created_at: beyond int64") {
    check_invalid(task_members().set("created_at", "9223372036854775808").json(), "created_at");
  }
  SECTION("due_at: required in a task") { check_invalid(task_members().erase("due_at").json(), "due_at"); }
  SECTION("attempt: required in a task") { check_invalid(task_members().erase("attempt").json(), "attempt"); }
  SECTION("attempt: a string is refused with its type named") {
    const DecodeResult r = decode(task_members().set("attempt", "\"1\"").json());
    CHECK(r.error == DecodeError::invalid);
    CHECK(r.detail == "field 'attempt': expected an integer from 0 to 1000000, found string \"1\"");
  }
  SECTION("attempt: negative") { check_invalid(task_members().set("attempt", "-1").json(), "attempt"); }
  SECTION("attempt: 1000000 passes, 1000001 does not") {
    CHECK(decode(task_members().set("attempt", "1000000").json()).ok());
    check_invalid(task_members().set("attempt", "1000001").json(), "attempt");
  }
  SECTION("max_attempts: required in a task") {
    check_invalid(task_members().erase("max_attempts").json(), "max_attempts");
  }
  SECTION("max_attempts: at least 1") { check_invalid(task_members().set("max_attempts", "0").json(), "max_attempts"); }
  SECTION("max_attempts: fits 32 bits") {
    CHECK(decode(task_members().set("max_attempts", "4294967295").json()).ok());
    check_invalid(task_members().set("max_attempts", "4294967296").json(), "max_attempts");
  }
  SECTION("trace: 128 bytes pass, 129 do not") {
    CHECK(decode(task_members().set("trace", '"' + std::string(128, 'r') + '"').json()).ok());
    const DecodeResult r = decode(task_members().set("trace", '"' + std::string(129, 'r') + '"').json());
    CHECK(r.error == DecodeError::invalid);
    CHECK(r.detail == "field 'trace': 129 bytes, limit 128");
  }
  SECTION("trace: a number is refused") { check_invalid(event_members().set("trace", "7").json(), "trace"); }
  SECTION("parent: a UUID") { check_invalid(task_members().set("parent", "\"evt-1\"").json(), "parent"); }
  SECTION("timeout_ms: not negative") { check_invalid(task_members().set("timeout_ms", "-5").json(), "timeout_ms"); }
  SECTION("retry: an object") { check_invalid(task_members().set("retry", "[5000]").json(), "retry"); }
  SECTION("retry: backoff_ms required") { check_invalid(task_members().set("retry", "{}").json(), "retry.backoff_ms"); }
  SECTION("retry: other policies are not known to this build") {
    check_invalid(task_members().set("retry", R"({"backoff_ms":[1],"exp":{"base_ms":1}})").json(), "retry");
  }
  SECTION("retry: delays are non-negative integers") {
    check_invalid(task_members().set("retry", R"({"backoff_ms":[5000,-1]})").json(), "retry.backoff_ms[1]");
  }
  SECTION("retry: an empty list is kept") {
    const DecodeResult r = decode(task_members().set("retry", R"({"backoff_ms":[]})").json());
    REQUIRE(r.ok());
    CHECK(r.envelope.has_retry);
    CHECK(r.envelope.backoff_ms.empty());
  }
  SECTION("history: an array") { check_invalid(task_members().set("history", "{}").json(), "history"); }
  SECTION("history: of objects") { check_invalid(task_members().set("history", "[1]").json(), "history[0]"); }
  SECTION("history: attempt and status are required") {
    check_invalid(task_members().set("history", R"([{"attempt":0}])").json(), "history[0].status");
    check_invalid(task_members().set("history", R"([{"status":"retry"}])").json(), "history[0].attempt");
  }
  SECTION("history: field types") {
    check_invalid(task_members().set("history", R"([{"attempt":0,"status":"retry","pid":"12"}])").json(),
                  "history[0].pid");
  }
  SECTION("task-only fields are refused in an event") {
    for (const char* field : {"task", "topic", "due_at", "attempt", "max_attempts", "parent", "timeout_ms"}) {
      check_invalid(event_members().set(field, field == std::string("task") || field == std::string("topic")
                                                   ? "\"x\""
                                                   : "1")
                        .json(),
                    field);
    }
    check_invalid(event_members().set("retry", R"({"backoff_ms":[1]})").json(), "retry");
    check_invalid(event_members().set("history", "[]").json(), "history");
  }
  SECTION("a repeated member is refused") {
    const DecodeResult r = decode(task_members().add("attempt", "1").json());
    CHECK(r.error == DecodeError::invalid);
    CHECK(r.detail == "field 'attempt': appears more than once");
  }
}

TEST_CASE("durations and times in an envelope are bounded, so no worker arithmetic overflows", "[envelope]") {
  const std::string longest = std::to_string(ebats::kMaxDuration.count());
  const std::string too_long = std::to_string(ebats::kMaxDuration.count() + 1);
  const std::string latest = std::to_string(ebats::kMaxEpochMs);
  const std::string too_late = std::to_string(ebats::kMaxEpochMs + 1);
  SECTION("timeout_ms: 3650 days pass, one ms more does not") {
    CHECK(decode(task_members().set("timeout_ms", longest).json()).ok());
    check_invalid(task_members().set("timeout_ms", too_long).json(), "timeout_ms");
    check_invalid(task_members().set("timeout_ms", "9223372036854775807").json(), "timeout_ms");
  }
  SECTION("retry.backoff_ms: each delay at most 3650 days") {
    CHECK(decode(task_members().set("retry", "{\"backoff_ms\":[1," + longest + "]}").json()).ok());
    const DecodeResult r = decode(task_members().set("retry", "{\"backoff_ms\":[1," + too_long + "]}").json());
    CHECK(r.error == DecodeError::invalid);
    CHECK_THAT(r.detail, Catch::StartsWith("field 'retry.backoff_ms[1]': " + too_long + " ms is longer than"));
  }
  SECTION("due_at and created_at: at most the year 9999") {
    CHECK(decode(task_members().set("due_at", latest).json()).ok());
    check_invalid(task_members().set("due_at", too_late).json(), "due_at");
    check_invalid(task_members().set("created_at", "9223372036854775807").json(), "created_at");
  }
}

TEST_CASE("the size limit is checked before parsing", "[envelope]") {
  const std::string wire = encode_envelope(full_task());
  SECTION("exactly at the limit passes") { CHECK(decode_envelope(wire, wire.size()).ok()); }
  SECTION("one byte over is too large") {
    const DecodeResult r = decode_envelope(wire, wire.size() - 1);
    CHECK(r.error == DecodeError::too_large);
    CHECK(r.detail == std::to_string(wire.size()) + " bytes, limit " + std::to_string(wire.size() - 1));
  }
  SECTION("garbage over the limit is too large, not malformed") {
    const DecodeResult r = decode_envelope(std::string(101, '\xff'), 100);
    CHECK(r.error == DecodeError::too_large);
    CHECK(r.detail == "101 bytes, limit 100");
  }
}

TEST_CASE("malformed input is refused with the parser's offset and message", "[envelope]") {
  SECTION("a trailing comma") {
    const DecodeResult r = decode(R"({"v":1,})");
    CHECK(r.error == DecodeError::malformed);
    CHECK(r.detail == "offset 7: Missing a name for object member.");
  }
  SECTION("empty input") {
    const DecodeResult r = decode("");
    CHECK(r.error == DecodeError::malformed);
    CHECK(r.detail == "offset 0: The document is empty.");
  }
  SECTION("every truncation of a valid envelope") {
    const std::string wire = encode_envelope(full_task());
    for (size_t n = 0; n < wire.size(); ++n) {
      INFO("prefix of " << n << " bytes");
      check_malformed(wire.substr(0, n));
    }
  }
  SECTION("trailing garbage") { check_malformed(task_members().json() + " x"); }
  SECTION("two documents") { check_malformed(task_members().json() + task_members().json()); }
  SECTION("a NUL byte and junk after the document") {
    const DecodeResult r = decode(task_members().json() + std::string("\0junk", 5));
    CHECK(r.error == DecodeError::malformed);
    CHECK_THAT(r.detail, Contains("NUL byte"));
  }
  SECTION("a top-level array") {
    const DecodeResult r = decode("[1,2]");
    CHECK(r.error == DecodeError::malformed);
    CHECK(r.detail == "the top-level value is array, expected an object");
  }
  SECTION("a top-level string") { check_malformed("\"hello\""); }
  SECTION("a PHP serialize() payload") { check_malformed(R"(O:8:"stdClass":1:{s:1:"a";i:1;})"); }
  SECTION("a number too big for a double") { check_malformed(task_members().set("params", R"({"x":1e400})").json()); }
}

TEST_CASE("invalid UTF-8 anywhere is malformed", "[envelope]") {
  SECTION("a stray continuation byte in params") {
    const DecodeResult r = decode(task_members().set("params", "{\"s\":\"a\x80z\"}").json());
    CHECK(r.error == DecodeError::malformed);
    CHECK_THAT(r.detail, Contains("Invalid encoding in string."));
  }
  SECTION("an overlong encoding in trace") {
    check_malformed(task_members().set("trace", "\"\xC0\xAF\"").json());
  }
  SECTION("a UTF-8 encoded surrogate in a key") { check_malformed(task_members().set("\xED\xA0\x80", "1").json()); }
  SECTION("a code point above U+10FFFF") { check_malformed(task_members().set("trace", "\"\xF4\x90\x80\x80\"").json()); }
  SECTION("an escaped lone low surrogate in params") {
    const DecodeResult r = decode(task_members().set("params", R"({"s":"\udc00"})").json());
    CHECK(r.error == DecodeError::malformed);
    CHECK_THAT(r.detail, StartsWith("offset ") && Contains("surrogate"));
  }
  SECTION("an escaped lone high surrogate") { check_malformed(task_members().set("trace", R"("\ud800")").json()); }
  SECTION("an escaped pair is fine and stored as UTF-8") {
    const DecodeResult r = decode(task_members().set("trace", R"("\ud83d\ude00")").json());
    REQUIRE(r.ok());
    CHECK(r.envelope.trace == "\xF0\x9F\x98\x80");
  }
}

TEST_CASE("params nest at most 128 levels, and deeper input is refused without recursion", "[envelope]") {
  // A plugin reads params into a recursive DOM: 500,000 nested arrays used to
  // overflow its stack (three crashes, then a dead letter). Deeper than the
  // limit is malformed wherever it enters.
  auto arrays = [](size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); };
  auto refused = [](const std::string& json) {
    const DecodeResult r = decode(json);
    CHECK(r.error == DecodeError::malformed);
    CHECK_THAT(r.detail, Contains("nested deeper than 128 levels"));
  };
  SECTION("128 levels, params counted, are accepted and kept") {
    const std::string params = "{\"deep\":" + arrays(127) + "}";
    const DecodeResult r = decode(task_members().set("params", params).json());
    REQUIRE(r.ok());
    CHECK(r.envelope.params == params);
    CHECK(decode(encode_envelope(r.envelope)).ok());
    auto normalized = ebats::normalize_params(params, 1 << 20);
    REQUIRE(normalized.ok());
    CHECK(*normalized == params);
  }
  SECTION("129 levels are refused, at decode and at publish") {
    const std::string params = "{\"deep\":" + arrays(128) + "}";
    refused(task_members().set("params", params).json());
    auto normalized = ebats::normalize_params(params, 1 << 20);
    REQUIRE_FALSE(normalized.ok());
    CHECK_THAT(normalized.status().message(), Contains("nested deeper than 128 levels"));
  }
  SECTION("500,000 levels are refused quickly, in params, unknown and known members") {
    const std::string deep = arrays(500000);
    refused(task_members().set("params", "{\"d\":" + deep + "}").json());
    refused(task_members().set("x", deep).json());
    refused(task_members().set("history", deep).json());
    std::string objects;
    for (size_t i = 0; i < 100000; ++i) objects += "{\"a\":";
    objects += "1" + std::string(100000, '}');
    refused(task_members().set("params", objects).json());
  }
  SECTION("unbalanced it is malformed") { check_malformed(task_members().set("params", "{\"d\":" + std::string(1000, '[')).json()); }
}

TEST_CASE("encoding keeps the newest 10 history entries with messages cut to 512 bytes", "[envelope]") {
  Envelope e = full_task();
  e.history.clear();
  for (uint32_t a = 0; a < 15; ++a) {
    HistoryEntry h;
    h.attempt = a;
    h.status = "retry";
    h.message = "attempt " + std::to_string(a);
    e.history.push_back(h);
  }
  SECTION("history") {
    const DecodeResult r = decode(encode_envelope(e));
    REQUIRE(r.ok());
    REQUIRE(r.envelope.history.size() == ebats::kMaxHistory);
    CHECK(r.envelope.history.front().attempt == 5);
    CHECK(r.envelope.history.back().attempt == 14);
    CHECK(r.envelope.history.back().message == "attempt 14");
  }
  SECTION("a long ASCII message is cut at 512 bytes") {
    e.history.back().message = std::string(600, 'm');
    const DecodeResult r = decode(encode_envelope(e));
    REQUIRE(r.ok());
    CHECK(r.envelope.history.back().message == std::string(512, 'm'));
  }
  SECTION("a long message is cut at a character boundary") {
    std::string euros;
    for (int i = 0; i < 200; ++i) euros += "\xE2\x82\xAC";  // 3 bytes each, 600 in all
    e.history.back().message = euros;
    const DecodeResult r = decode(encode_envelope(e));
    REQUIRE(r.ok());
    CHECK(r.envelope.history.back().message == euros.substr(0, 510));
  }
  SECTION("invalid UTF-8 in a message becomes U+FFFD, so the envelope stays readable") {
    e.history.back().message = "bad \xFF byte";
    e.history.back().host = "h\xC3";
    const DecodeResult r = decode(encode_envelope(e));
    REQUIRE(r.ok());
    CHECK(r.envelope.history.back().message == "bad \xEF\xBF\xBD byte");
    CHECK(r.envelope.history.back().host == "h\xEF\xBF\xBD");
  }
  SECTION("decoding accepts a longer history as sent") {
    std::string history = "[";
    for (int a = 0; a < 12; ++a) history += std::string(a ? "," : "") + R"({"attempt":)" + std::to_string(a) + R"(,"status":"retry"})";
    history += "]";
    const DecodeResult r = decode(task_members().set("history", history).json());
    REQUIRE(r.ok());
    CHECK(r.envelope.history.size() == 12);
  }
}

TEST_CASE("encoding cleans invalid UTF-8 and escapes what JSON requires", "[envelope]") {
  Envelope e = full_task();
  e.trace = "t\"\\\n\x01\xFE";
  const std::string wire = encode_envelope(e);
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(wire.data(), wire.size());
  REQUIRE_FALSE(doc.HasParseError());
  const DecodeResult r = decode(wire);
  REQUIRE(r.ok());
  CHECK(r.envelope.trace == "t\"\\\n\x01\xEF\xBF\xBD");
}

TEST_CASE("single-byte corruptions of a valid envelope never crash the decoder", "[envelope]") {
  const std::string wire = encode_envelope(full_task());
  const char replacements[] = {'"', '{', '}', '[', ']', ',', ':', '\\', '0', '-', 'x', '\0', '\x80', '\xff'};
  size_t accepted = 0;
  for (size_t i = 0; i < wire.size(); ++i) {
    for (char c : replacements) {
      std::string bad = wire;
      bad[i] = c;
      const DecodeResult r = decode(bad);
      if (r.ok()) {
        ++accepted;
        // Whatever was accepted must encode to something that decodes again.
        CHECK(decode(encode_envelope(r.envelope)).ok());
      } else {
        CHECK_FALSE(r.detail.empty());
      }
    }
  }
  CHECK(accepted > 0);  // e.g. digits changed inside params
}

TEST_CASE("normalize_params compacts one JSON object and refuses everything else", "[envelope]") {
  SECTION("compacts and keeps numbers verbatim") {
    const auto r = ebats::normalize_params(" {\n \"order_id\" : 10042 , \"x\": [1.50, true] }\n", kLimit);
    REQUIRE(r.ok());
    CHECK(*r == R"({"order_id":10042,"x":[1.50,true]})");
  }
  SECTION("an array is not an object") {
    const auto r = ebats::normalize_params("[1]", kLimit);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ebats::StatusCode::invalid_argument);
    CHECK_THAT(r.status().message(), StartsWith("params: expected a JSON object, found array"));
  }
  SECTION("malformed JSON names the offset") {
    const auto r = ebats::normalize_params(R"({"a":})", kLimit);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ebats::StatusCode::invalid_argument);
    CHECK(r.status().message() == "params: offset 5: Invalid value.");
  }
  SECTION("trailing data is malformed") {
    CHECK(ebats::normalize_params("{} {}", kLimit).status().code() == ebats::StatusCode::invalid_argument);
  }
  SECTION("the size limit: at the limit passes, one over is too large") {
    const std::string p = R"({"k":"vvvv"})";
    CHECK(ebats::normalize_params(p, p.size()).ok());
    const auto r = ebats::normalize_params(p, p.size() - 1);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ebats::StatusCode::too_large);
    CHECK(r.status().message() == "params: 12 bytes, limit 11");
  }
  SECTION("whitespace does not count against the limit, up to four times it as given") {
    const std::string padded = "{" + std::string(3000, ' ') + "\"a\": 1}";  // compact: {"a":1}
    const auto r = ebats::normalize_params(padded, 2048);
    REQUIRE(r.ok());
    CHECK(*r == R"({"a":1})");
    const std::string huge = "{" + std::string(9000, ' ') + "\"a\": 1}";
    const auto refused = ebats::normalize_params(huge, 2048);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.status().code() == ebats::StatusCode::too_large);
    CHECK(refused.status().message() ==
          "params: 9008 bytes as given, whitespace included; limit 8192 as given and 2048 compacted");
  }
  SECTION("nesting past 128 levels is refused") {
    const std::string deep = "{\"d\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
    const auto r = ebats::normalize_params(deep, kLimit);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ebats::StatusCode::invalid_argument);
    CHECK(r.status().message() ==
          "params: offset 132: objects and arrays nested deeper than 128 levels (the limit for params)");
  }
  SECTION("invalid UTF-8 is refused") {
    CHECK(ebats::normalize_params("{\"a\":\"\xff\"}", kLimit).status().code() == ebats::StatusCode::invalid_argument);
  }
}

TEST_CASE("decode errors map to dead-letter reasons", "[envelope]") {
  CHECK(std::string(ebats::decode_error_reason(DecodeError::too_large)) == "too large");
  CHECK(std::string(ebats::decode_error_reason(DecodeError::malformed)) == "malformed");
  CHECK(std::string(ebats::decode_error_reason(DecodeError::unsupported_version)) == "unsupported version");
  CHECK(std::string(ebats::decode_error_reason(DecodeError::invalid)) == "invalid");
}

TEST_CASE("name rules", "[envelope]") {
  using ebats::is_valid_event_name;
  using ebats::is_valid_task_name;
  using ebats::is_valid_topic;
  CHECK(is_valid_event_name("order_create"));
  CHECK(is_valid_event_name("shop.order:paid-v2"));
  CHECK_FALSE(is_valid_event_name(""));
  CHECK_FALSE(is_valid_event_name("order paid"));
  CHECK_FALSE(is_valid_event_name("order/paid"));
  CHECK_FALSE(is_valid_event_name("caf\xC3\xA9"));
  CHECK(is_valid_event_name(std::string(128, 'a')));
  CHECK_FALSE(is_valid_event_name(std::string(129, 'a')));
  CHECK(is_valid_task_name("closeOrder"));
  CHECK_FALSE(is_valid_task_name("close$(id)"));
  CHECK_FALSE(is_valid_task_name(std::string("a\0b", 3)));
  CHECK(is_valid_topic("demo_1-x"));
  CHECK_FALSE(is_valid_topic("demo.1"));
  CHECK_FALSE(is_valid_topic("demo:1"));
  CHECK_FALSE(is_valid_topic(""));
  CHECK(is_valid_topic(std::string(64, 't')));
  CHECK_FALSE(is_valid_topic(std::string(65, 't')));
}

TEST_CASE("retry.jitter_pct: optional, 0 to 100, written only when not 0", "[envelope][backoff]") {
  Envelope e = full_task();
  e.jitter_pct = 20;
  const std::string json = encode_envelope(e);
  CHECK_THAT(json, Contains(R"("retry":{"backoff_ms":[5000,300000,600000,3600000,7800000],"jitter_pct":20})"));
  const DecodeResult back = decode(json);
  REQUIRE(back.ok());
  check_same(back.envelope, e);
  e.jitter_pct = 0;
  CHECK_THAT(encode_envelope(e), Contains(R"("retry":{"backoff_ms":[5000,300000,600000,3600000,7800000]})"));

  const DecodeResult zero = decode(task_members().set("retry", R"({"backoff_ms":[1],"jitter_pct":0})").json());
  REQUIRE(zero.ok());
  CHECK(zero.envelope.jitter_pct == 0);
  const DecodeResult full = decode(task_members().set("retry", R"({"jitter_pct":100,"backoff_ms":[1]})").json());
  REQUIRE(full.ok());
  CHECK(full.envelope.jitter_pct == 100);
  for (const char* bad : {"101", "-1", "20.5", "\"20%\"", "null", "4294967316"}) {
    INFO(bad);
    const std::string retry = std::string(R"({"backoff_ms":[1],"jitter_pct":)") + bad + "}";
    const DecodeResult r = decode(task_members().set("retry", retry).json());
    CHECK(r.error == DecodeError::invalid);
    CHECK_THAT(r.detail, StartsWith("field 'retry.jitter_pct': expected an integer from 0 to 100"));
  }
  check_invalid(task_members().set("retry", R"({"jitter_pct":20})").json(), "retry.backoff_ms");
}
