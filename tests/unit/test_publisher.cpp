// The producer APIs (C++ Publisher and the C functions for FFI) on a real SQLite file.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "ebats/broker.h"
#include "ebats/duration.h"
#include "ebats/envelope.h"
#include "ebats/publisher.h"
#include "ebats/publisher_c.h"

using namespace ebats;

namespace {

struct TempConfig {
  TempConfig() {
    char tmpl[] = "/tmp/ebats-pub-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    path = dir + "/ebats.yaml";
    std::ofstream(path) << "broker: {url: 'sqlite://q.db'}\nplugins: {dir: /tmp}\n"
                           "limits: {max_message_bytes: 2KiB}\n"
                           "events:\n  order_paied:\n    - {task: virtualShipping, topic: demo}\n"
                           "workers: {demo: {}}\n";
  }
  ~TempConfig() { std::filesystem::remove_all(dir); }
  std::unique_ptr<Broker> broker() {
    BrokerOptions bo;
    bo.url = "sqlite://" + dir + "/q.db";
    auto b = open_broker(bo, clock);
    REQUIRE(b.ok());
    return std::move(b).value();
  }
  std::string dir, path;
  SystemClock clock;
};

}  // namespace

TEST_CASE("C API: publish an event and enqueue a delayed task, both durable on return", "[publisher]") {
  TempConfig t;
  ebats_publisher* p = nullptr;
  char* err = nullptr;
  REQUIRE(ebats_publisher_open(t.path.c_str(), &p, &err) == 0);
  char id[37] = {0};
  const std::string json = R"({"order_id": 10042})";
  REQUIRE(ebats_publish_event(p, "order_paied", json.data(), json.size(), id, &err) == 0);
  CHECK(is_valid_uuid(id));
  char tid[37] = {0};
  REQUIRE(ebats_enqueue_task(p, "demo", "closeOrder", json.data(), json.size(), 60'000, tid, &err) == 0);
  ebats_publisher_close(p);

  auto b = t.broker();
  auto events = b->claim(Lane::events, "", 10);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 1);
  CHECK(events->front().id == id);
  DecodeResult e = decode_envelope(events->front().body, 1 << 20);
  REQUIRE(e.ok());
  CHECK(e.envelope.params == R"({"order_id":10042})");
  // The task is on the dtask lane and not due for a minute.
  auto due = b->next_due(Lane::dtask, "demo");
  REQUIRE(due.ok());
  REQUIRE(due->has_value());
  CHECK(**due >= t.clock.wall_now() + 50'000);
  auto none = b->claim(Lane::dtask, "demo", 10);
  REQUIRE(none.ok());
  CHECK(none->empty());
}

TEST_CASE("C API: errors come back as messages, nothing is published", "[publisher]") {
  TempConfig t;
  ebats_publisher* p = nullptr;
  char* err = nullptr;
  CHECK(ebats_publisher_open("/nonexistent/ebats.yaml", &p, &err) == -1);
  REQUIRE(err != nullptr);
  CHECK(std::string(err).find("/nonexistent/ebats.yaml") != std::string::npos);
  ebats_free_error(err);
  err = nullptr;

  REQUIRE(ebats_publisher_open(t.path.c_str(), &p, &err) == 0);
  const std::string bad = R"({"order_id": )";
  CHECK(ebats_publish_event(p, "order_paied", bad.data(), bad.size(), nullptr, &err) == -1);
  REQUIRE(err != nullptr);
  CHECK(std::string(err).find("order_paied") != std::string::npos);
  ebats_free_error(err);
  err = nullptr;
  const std::string arr = "[1,2]";
  CHECK(ebats_publish_event(p, "order_paied", arr.data(), arr.size(), nullptr, &err) == -1);
  ebats_free_error(err);
  err = nullptr;
  const std::string big = "{\"pad\":\"" + std::string(4096, 'x') + "\"}";
  CHECK(ebats_publish_event(p, "order_paied", big.data(), big.size(), nullptr, &err) == -1);
  ebats_free_error(err);
  err = nullptr;
  CHECK(ebats_publish_event(p, "bad name!", "{}", 2, nullptr, &err) == -1);
  ebats_free_error(err);
  ebats_publisher_close(p);

  auto b = t.broker();
  auto events = b->claim(Lane::events, "", 10);
  REQUIRE(events.ok());
  CHECK(events->empty());
}

TEST_CASE("Publisher: a batch commits together and a caller id makes publishing idempotent", "[publisher]") {
  TempConfig t;
  auto p = Publisher::open(t.path);
  REQUIRE(p.ok());
  EventOptions o;
  o.id = new_uuid_v4();
  REQUIRE((*p)->publish("order_paied", "{}", o).ok());
  REQUIRE((*p)->publish("order_paied", "{}", o).ok());  // same id: still one event
  auto batch = (*p)->batch();
  for (int i = 0; i < 10; ++i) REQUIRE(batch.add_event("order_paied", "{\"i\":" + std::to_string(i) + "}").ok());
  CHECK_FALSE(batch.add_event("order_paied", "not json").ok());  // refused, not staged
  CHECK(batch.size() == 10);
  REQUIRE(batch.commit().ok());
  auto b = t.broker();
  auto events = b->claim(Lane::events, "", 100);
  REQUIRE(events.ok());
  CHECK(events->size() == 11);
}

namespace {

// The message behind errptr, freed; "" when there was none.
std::string take_error(char*& err) {
  std::string text = err ? err : "";
  ebats_free_error(err);
  err = nullptr;
  return text;
}

}  // namespace

TEST_CASE("C API: version calls", "[publisher]") {
  REQUIRE(ebats_version() != nullptr);
  CHECK(std::regex_match(std::string(ebats_version()), std::regex(R"(\d+\.\d+\.\d+)")));
  CHECK(ebats_c_api_version() == EBATS_C_API_VERSION);
  CHECK(ebats_c_api_version() >= 1);
}

TEST_CASE("C API: options give an event id, a trace and a task delay, and misuse is refused by name",
          "[publisher]") {
  TempConfig t;
  ebats_publisher* p = nullptr;
  char* err = nullptr;
  REQUIRE(ebats_publisher_open(t.path.c_str(), &p, &err) == 0);
  ebats_options* o = ebats_options_new();
  REQUIRE(o != nullptr);
  const std::string event_id = new_uuid_v4();
  REQUIRE(ebats_options_set_event_id(o, event_id.c_str(), &err) == 0);
  REQUIRE(ebats_options_set_trace_id(o, "req-7", &err) == 0);
  char id[37] = {0};
  REQUIRE(ebats_publish_event_opts(p, "order_paied", "{}", 2, o, id, &err) == 0);
  CHECK(std::string(id) == event_id);
  // The same id again: still one event (idempotent re-publishing).
  REQUIRE(ebats_publish_event_opts(p, "order_paied", "{}", 2, o, id, &err) == 0);

  // An event id on a task, a delay on an event: refused, saying why and where.
  CHECK(ebats_enqueue_task_opts(p, "demo", "closeOrder", "{}", 2, o, id, &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_enqueue_task: ") && Catch::Contains("event id"));
  REQUIRE(ebats_options_set_event_id(o, nullptr, &err) == 0);
  REQUIRE(ebats_options_set_delay_ms(o, 60'000, &err) == 0);
  CHECK(ebats_publish_event_opts(p, "order_paied", "{}", 2, o, id, &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_publish_event: ") && Catch::Contains("no delay"));
  // A malformed event id is refused when used.
  REQUIRE(ebats_options_set_delay_ms(o, 0, &err) == 0);
  REQUIRE(ebats_options_set_event_id(o, "not-a-uuid", &err) == 0);
  CHECK(ebats_publish_event_opts(p, "order_paied", "{}", 2, o, id, &err) == -1);
  CHECK_THAT(take_error(err), Catch::Contains("invalid event id 'not-a-uuid'"));
  REQUIRE(ebats_options_set_event_id(o, "", &err) == 0);

  // A delayed task with a trace.
  REQUIRE(ebats_options_set_delay_ms(o, 60'000, &err) == 0);
  char tid[37] = {0};
  REQUIRE(ebats_enqueue_task_opts(p, "demo", "closeOrder", "{}", 2, o, tid, &err) == 0);
  ebats_options_free(o);
  ebats_publisher_close(p);

  auto b = t.broker();
  auto events = b->claim(Lane::events, "", 10);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 1);
  DecodeResult e = decode_envelope(events->front().body, 1 << 20);
  REQUIRE(e.ok());
  CHECK(e.envelope.id == event_id);
  CHECK(e.envelope.trace == "req-7");
  auto due = b->next_due(Lane::dtask, "demo");
  REQUIRE(due.ok());
  REQUIRE(due->has_value());
  CHECK(**due >= t.clock.wall_now() + 50'000);
}

TEST_CASE("C API: a batch adds checked messages and commits them together", "[publisher]") {
  TempConfig t;
  ebats_publisher* p = nullptr;
  char* err = nullptr;
  REQUIRE(ebats_publisher_open(t.path.c_str(), &p, &err) == 0);
  ebats_batch* batch = ebats_batch_new(p);
  REQUIRE(batch != nullptr);
  CHECK(ebats_batch_size(batch) == 0);
  REQUIRE(ebats_batch_commit(batch, &err) == 0);  // empty: nothing to do
  char ids[3][37] = {};
  REQUIRE(ebats_batch_add_event(batch, "order_paied", R"({"order_id":1})", 14, nullptr, ids[0], &err) == 0);
  REQUIRE(ebats_batch_add_event(batch, "order_paied", R"({"order_id":2})", 14, nullptr, ids[1], &err) == 0);
  REQUIRE(ebats_batch_add_task(batch, "demo", "closeOrder", R"({"order_id":1})", 14, nullptr, ids[2], &err) == 0);
  for (const auto& id : ids) CHECK(is_valid_uuid(id));
  // A refused message leaves the batch as it was, and names itself.
  CHECK(ebats_batch_add_event(batch, "order_paied", "[1]", 3, nullptr, nullptr, &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_batch_add_event: ") && Catch::Contains("order_paied"));
  CHECK(ebats_batch_add_task(batch, "bad topic!", "closeOrder", "{}", 2, nullptr, nullptr, &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_batch_add_task: ") && Catch::Contains("bad topic!"));
  CHECK(ebats_batch_size(batch) == 3);

  // Nothing is published before the commit.
  auto b = t.broker();
  auto before = b->claim(Lane::events, "", 10);
  REQUIRE(before.ok());
  CHECK(before->empty());
  REQUIRE(ebats_batch_commit(batch, &err) == 0);
  CHECK(ebats_batch_size(batch) == 0);
  ebats_batch_free(batch);
  ebats_publisher_close(p);

  auto events = b->claim(Lane::events, "", 10);
  REQUIRE(events.ok());
  CHECK(events->size() == 2);
  auto tasks = b->claim(Lane::ntask, "demo", 10);
  REQUIRE(tasks.ok());
  REQUIRE(tasks->size() == 1);
  CHECK(tasks->front().id == ids[2]);
}

TEST_CASE("C API: NULL handles and arguments are errors, not crashes", "[publisher]") {
  char* err = nullptr;
  ebats_publisher* p = nullptr;
  CHECK(ebats_publisher_open(nullptr, &p, &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_publisher_open: "));
  CHECK(ebats_publish_event(nullptr, "e", "{}", 2, nullptr, &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_publish_event: "));
  CHECK(ebats_enqueue_task(nullptr, "t", "x", "{}", 2, 0, nullptr, &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_enqueue_task: "));
  CHECK(ebats_batch_new(nullptr) == nullptr);
  CHECK(ebats_batch_add_event(nullptr, "e", "{}", 2, nullptr, nullptr, &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_batch_add_event: "));
  CHECK(ebats_batch_commit(nullptr, &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_batch_commit: "));
  CHECK(ebats_batch_size(nullptr) == 0);
  CHECK(ebats_options_set_trace_id(nullptr, "x", &err) == -1);
  CHECK_THAT(take_error(err), Catch::StartsWith("ebats_options_set_trace_id: "));
  // errptr may be NULL; the free and close calls take NULL.
  CHECK(ebats_publish_event(nullptr, "e", "{}", 2, nullptr, nullptr) == -1);
  ebats_free_error(nullptr);
  ebats_publisher_close(nullptr);
  ebats_batch_free(nullptr);
  ebats_options_free(nullptr);
}

TEST_CASE("C++ and C APIs: a delay longer than 10 years is refused, nothing stored", "[publisher]") {
  // It used to store a negative due_at (now + delay overflowed), and the task
  // was dead-lettered "invalid" without running.
  TempConfig t;
  auto p = Publisher::open(t.path);
  REQUIRE(p.ok());
  TaskOptions o;
  o.delay = kMaxDuration;
  CHECK((*p)->enqueue_task("demo", "closeOrder", "{}", o).ok());
  o.delay = kMaxDuration + std::chrono::milliseconds(1);
  auto refused = (*p)->enqueue_task("demo", "closeOrder", "{}", o);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.status().message(), Catch::Contains("longer than the maximum of 3650d (10 years)"));

  ebats_publisher* c = nullptr;
  char* err = nullptr;
  REQUIRE(ebats_publisher_open(t.path.c_str(), &c, &err) == 0);
  CHECK(ebats_enqueue_task(c, "demo", "closeOrder", "{}", 2, UINT64_MAX, nullptr, &err) == -1);
  CHECK_THAT(take_error(err), Catch::Contains("delay"));
  CHECK(ebats_enqueue_task(c, "demo", "closeOrder", "{}", 2, uint64_t{9223372036854775807u}, nullptr, &err) == -1);
  CHECK_THAT(take_error(err), Catch::Contains("longer than the maximum"));
  ebats_publisher_close(c);

  auto b = t.broker();
  auto due = b->next_due(Lane::dtask, "demo");
  REQUIRE(due.ok());
  REQUIRE(due->has_value());
  CHECK(**due > t.clock.wall_now());  // only the 10-year task, due in the future
}

TEST_CASE("Publisher: an event whose task would pass the size limit is refused at publish", "[publisher]") {
  // The event fitted and was accepted; its task, with ids, names and the
  // retry policy added, did not, and was dead-lettered "too large" unrun.
  TempConfig t;  // limit 2 KiB; order_paied -> virtualShipping@demo
  auto p = Publisher::open(t.path);
  REQUIRE(p.ok());
  const std::string fits_event_only = "{\"pad\":\"" + std::string(1800, 'x') + "\"}";
  auto refused = (*p)->publish("order_paied", fits_event_only);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == StatusCode::too_large);
  CHECK_THAT(refused.status().message(),
             Catch::Contains("its task virtualShipping on topic demo would be") && Catch::Contains("limit 2048"));
  // An event no registration turns into tasks is only measured itself.
  CHECK((*p)->publish("not_registered", fits_event_only).ok());
  const std::string small = "{\"pad\":\"" + std::string(1200, 'x') + "\"}";
  CHECK((*p)->publish("order_paied", small).ok());
  auto b = t.broker();
  auto events = b->claim(Lane::events, "", 10);
  REQUIRE(events.ok());
  CHECK(events->size() == 2);
}
