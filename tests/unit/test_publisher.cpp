// The producer APIs (C++ Publisher and the C functions for FFI) on a real SQLite file.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "ebats/broker.h"
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
