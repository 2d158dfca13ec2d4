// The Broker contract, run against the backend under test (support/
// test_backend.h): SQLite by default, a real RabbitMQ node when ctest runs
// the "amqp" pass. Both backends must behave the same wherever the contract
// says so; where it leaves room (how early a delayed task may be handed out,
// what is counted in flight), the tests check the bound the contract gives.
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/envelope.h"
#include "envelope/task_message.h"
#include "support/broker_calls.h"
#include "support/queue_count_audit.h"
#include "support/temp_dir.h"
#include "support/test_backend.h"

using namespace ebats;
using std::chrono::milliseconds;

namespace {

constexpr int64_t kEarlyToleranceMs = 100;  // AMQP hands out tasks up to one delay unit (100 ms here) early

struct Fixture {
  test::TempDir dir;
  std::string prefix = test::unique_prefix();
  SystemClock clock;

  // On SQLite, whatever the test did, the queue counts still match the rows.
  ~Fixture() {
    if (test::amqp_backend() || !std::ifstream(dir.file("ebats.db"))) return;
    CHECK(test::queue_count_mismatches(dir.file("ebats.db")) == "");
  }

  std::unique_ptr<Broker> open(const std::string& owner = "testhost/ntask/demo") {
    auto broker = open_broker(test::test_broker_options(dir.file("ebats.db"), prefix, owner), clock);
    INFO(broker.status().to_string());
    REQUIRE(broker.ok());
    return std::move(broker).value();
  }

  OutMsg task(const std::string& topic, Lane lane, WallMs due_at, uint32_t attempt = 0, uint32_t max_attempts = 3,
              const std::string& id = "") {
    Envelope e;
    e.kind = EnvelopeKind::task;
    e.created_at = clock.wall_now();
    e.id = id.empty() ? new_uuid_v7(e.created_at) : id;
    e.task = "closeOrder";
    e.topic = topic;
    e.params = "{\"order_id\":1}";
    e.due_at = due_at;
    e.attempt = attempt;
    e.max_attempts = max_attempts;
    return task_message(e, lane);
  }

  OutMsg event(const std::string& name) {
    Envelope e;
    e.kind = EnvelopeKind::event;
    e.created_at = clock.wall_now();
    e.id = new_uuid_v7(e.created_at);
    e.event = name;
    OutMsg m;
    m.lane = Lane::events;
    m.id = e.id;
    m.name = name;
    m.body = encode_envelope(e);
    m.due_at = e.created_at;
    return m;
  }
};

using ebats::test::commit_ok;
using ebats::test::publish;

// Claims until `want` deliveries came or `timeout` passed (RabbitMQ delivers
// asynchronously); returns what came.
std::vector<Delivery> claim_until(Broker& broker, Lane lane, const std::string& topic, size_t want,
                                  milliseconds timeout = milliseconds(10'000)) {
  std::vector<Delivery> got;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (got.size() < want && std::chrono::steady_clock::now() < until) {
    auto claimed = broker.claim(lane, topic, static_cast<uint32_t>(want - got.size()));
    INFO(claimed.status().to_string());
    REQUIRE(claimed.ok());
    for (Delivery& d : *claimed) got.push_back(std::move(d));
    if (got.size() < want) std::this_thread::sleep_for(milliseconds(10));
  }
  return got;
}

// Nothing more arrives within `quiet`.
void expect_nothing(Broker& broker, Lane lane, const std::string& topic, milliseconds quiet = milliseconds(300)) {
  auto extra = claim_until(broker, lane, topic, 1, quiet);
  CHECK(extra.empty());
}

Settle ack(uint64_t token) {
  Settle s;
  s.token = token;
  return s;
}

Settle release(uint64_t token) {
  Settle s;
  s.kind = Settle::Kind::release;
  s.token = token;
  return s;
}

DeadLetter dead(const Delivery& d, const std::string& kind = "task") {
  DeadLetter dl;
  dl.id = d.id;
  dl.kind = kind;
  dl.topic = d.topic;
  dl.name = d.name;
  dl.reason = "failed";
  dl.error = "order 1 does not exist";
  dl.attempts = d.attempt + 1;
  dl.body = d.body;
  dl.first_seen = d.created_at;
  dl.dead_at = d.created_at + 5;
  return dl;
}

// A scheduler's routing of events: each one acked, with a task of topic demo
// and one of topic mail riding on its ack.
Batch fan_out(Fixture& f, const std::vector<Delivery>& events) {
  Batch b;
  for (const Delivery& d : events) {
    CHECK(d.lane == Lane::events);
    Settle s = ack(d.token);
    s.then_publish.push_back(f.task("demo", Lane::ntask, f.clock.wall_now()));
    s.then_publish.push_back(f.task("mail", Lane::ntask, f.clock.wall_now()));
    b.settle.push_back(s);
  }
  return b;
}

const QueueDepth* row(const std::vector<QueueDepth>& depths, QueueDepth::Row kind, const std::string& topic = "") {
  for (const QueueDepth& d : depths) {
    if (d.row == kind && (kind != QueueDepth::Row::topic || d.topic == topic)) return &d;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("conformance: published tasks are claimed once, and acknowledged ones are gone", "[conformance]") {
  Fixture f;
  auto producer = f.open("testhost/publisher");
  auto worker = f.open();
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  const WallMs now = f.clock.wall_now();
  std::vector<OutMsg> tasks{f.task("demo", Lane::ntask, now), f.task("demo", Lane::ntask, now),
                            f.task("demo", Lane::ntask, now)};
  publish(*producer, tasks);
  auto got = claim_until(*worker, Lane::ntask, "demo", 3);
  REQUIRE(got.size() == 3);
  std::vector<std::string> ids;
  for (const Delivery& d : got) {
    ids.push_back(d.id);
    CHECK(d.lane == Lane::ntask);
    CHECK(d.topic == "demo");
    CHECK(d.name == "closeOrder");
    CHECK(d.attempt == 0);
    CHECK(d.max_attempts == 3);
    CHECK(d.redeliveries == 0);
    CHECK(worker->alive(d.token));
  }
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> sent{tasks[0].id, tasks[1].id, tasks[2].id};
  std::sort(sent.begin(), sent.end());
  CHECK(ids == sent);
  Batch batch;
  for (const Delivery& d : got) batch.settle.push_back(ack(d.token));
  CHECK(commit_ok(*worker, batch).settled == 3);
  expect_nothing(*worker, Lane::ntask, "demo");
  // Another topic's queue is not ours.
  publish(*producer, {f.task("other", Lane::ntask, now)});
  expect_nothing(*worker, Lane::ntask, "demo");
}

TEST_CASE("conformance: a released task comes back with its attempt unchanged", "[conformance]") {
  Fixture f;
  auto worker = f.open();
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  publish(*worker, {f.task("demo", Lane::ntask, f.clock.wall_now(), 1, 4)});
  auto got = claim_until(*worker, Lane::ntask, "demo", 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].attempt == 1);
  Batch batch;
  batch.settle.push_back(release(got[0].token));
  CHECK(commit_ok(*worker, batch).settled == 1);
  auto again = claim_until(*worker, Lane::ntask, "demo", 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].id == got[0].id);
  CHECK(again[0].attempt == 1);  // a release is no attempt
  CHECK(again[0].redeliveries == 0);
}

TEST_CASE("conformance: a retry rides on its ack and is not handed out before it is due", "[conformance]") {
  Fixture f;
  auto worker = f.open();
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  REQUIRE(worker->subscribe(Lane::dtask, "demo", 10).ok());
  publish(*worker, {f.task("demo", Lane::ntask, f.clock.wall_now())});
  auto got = claim_until(*worker, Lane::ntask, "demo", 1);
  REQUIRE(got.size() == 1);
  const WallMs due = f.clock.wall_now() + 1'500;
  OutMsg retry = f.task("demo", Lane::dtask, due, 1, 3, got[0].id);
  Batch batch;
  Settle s = ack(got[0].token);
  s.then_publish.push_back(retry);
  batch.settle.push_back(s);
  CHECK(commit_ok(*worker, batch).settled == 1);
  auto retried = claim_until(*worker, Lane::dtask, "demo", 1, milliseconds(15'000));
  const WallMs arrived = f.clock.wall_now();
  REQUIRE(retried.size() == 1);
  CHECK(retried[0].id == got[0].id);
  CHECK(retried[0].attempt == 1);
  CHECK(retried[0].due_at == due);
  CHECK(arrived >= due - kEarlyToleranceMs);
  expect_nothing(*worker, Lane::ntask, "demo");
}

TEST_CASE("conformance: a dead letter rides on its ack, and list, show, replay and purge handle it", "[conformance]") {
  Fixture f;
  auto worker = f.open();
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  publish(*worker, {f.task("demo", Lane::ntask, f.clock.wall_now(), 2, 3), f.task("demo", Lane::ntask, f.clock.wall_now())});
  auto got = claim_until(*worker, Lane::ntask, "demo", 2);
  REQUIRE(got.size() == 2);
  Batch batch;
  for (const Delivery& d : got) {
    Settle s = ack(d.token);
    s.then_dead = dead(d);
    batch.settle.push_back(s);
  }
  CHECK(commit_ok(*worker, batch).settled == 2);
  expect_nothing(*worker, Lane::ntask, "demo");

  auto ctl = f.open("ebatsctl");
  auto letters = ctl->dead_letters().list(0);
  INFO(letters.status().to_string());
  REQUIRE(letters.ok());
  REQUIRE(letters->size() == 2);
  CHECK(letters->at(0).seq > letters->at(1).seq);  // newest first
  const DeadLetterEntry& newest = letters->at(0);
  CHECK(newest.letter.kind == "task");
  CHECK(newest.letter.topic == "demo");
  CHECK(newest.letter.name == "closeOrder");
  CHECK(newest.letter.reason == "failed");
  CHECK(newest.letter.error == "order 1 does not exist");
  auto shown = ctl->dead_letters().show(newest.seq);
  REQUIRE(shown.ok());
  CHECK(shown->letter.id == newest.letter.id);
  CHECK(shown->letter.body == newest.letter.body);
  CHECK(ctl->dead_letters().show(newest.seq + 1000).status().code() == StatusCode::not_found);
  // A limit keeps the newest.
  auto one = ctl->dead_letters().list(1);
  REQUIRE(one.ok());
  REQUIRE(one->size() == 1);
  CHECK(one->at(0).seq == newest.seq);

  // Replay: back on the ntask lane, due now, attempt 0, same id; the letter goes.
  REQUIRE(ctl->dead_letters().replay(newest.seq, f.clock.wall_now()).ok());
  auto replayed = claim_until(*worker, Lane::ntask, "demo", 1);
  REQUIRE(replayed.size() == 1);
  CHECK(replayed[0].id == newest.letter.id);
  CHECK(replayed[0].attempt == 0);
  auto left = ctl->dead_letters().list(0);
  REQUIRE(left.ok());
  REQUIRE(left->size() == 1);
  CHECK(left->at(0).seq == letters->at(1).seq);
  CHECK(ctl->dead_letters().replay(newest.seq, f.clock.wall_now()).code() == StatusCode::not_found);

  auto purged = ctl->dead_letters().purge();
  REQUIRE(purged.ok());
  CHECK(*purged == 1);
  auto none = ctl->dead_letters().list(0);
  REQUIRE(none.ok());
  CHECK(none->empty());
  purged = ctl->dead_letters().purge();
  REQUIRE(purged.ok());
  CHECK(*purged == 0);
}

TEST_CASE("conformance: replay_selected and purge_selected settle only the dead letters named", "[conformance]") {
  Fixture f;
  auto worker = f.open();
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  publish(*worker, {f.task("demo", Lane::ntask, f.clock.wall_now()), f.task("demo", Lane::ntask, f.clock.wall_now()),
                    f.task("demo", Lane::ntask, f.clock.wall_now())});
  auto got = claim_until(*worker, Lane::ntask, "demo", 3);
  REQUIRE(got.size() == 3);
  Batch batch;
  for (const Delivery& d : got) {
    Settle s = ack(d.token);
    s.then_dead = dead(d);
    batch.settle.push_back(s);
  }
  CHECK(commit_ok(*worker, batch).settled == 3);
  auto ctl = f.open("ebatsctl");
  auto letters = ctl->dead_letters().list(0);
  REQUIRE(letters.ok());
  REQUIRE(letters->size() == 3);
  const uint64_t a = letters->at(0).seq, b = letters->at(1).seq, c = letters->at(2).seq;

  // An id that does not exist is skipped, not an error.
  auto replayed = ctl->dead_letters().replay_selected({a, c + a + 1000}, f.clock.wall_now());
  INFO(replayed.status().to_string());
  REQUIRE(replayed.ok());
  CHECK(*replayed == 1);
  auto back = claim_until(*worker, Lane::ntask, "demo", 1);
  REQUIRE(back.size() == 1);
  CHECK(back[0].id == letters->at(0).letter.id);
  CHECK(back[0].attempt == 0);

  auto purged = ctl->dead_letters().purge_selected({c, a});  // a is gone already
  REQUIRE(purged.ok());
  CHECK(*purged == 1);
  auto left = ctl->dead_letters().list(0);
  REQUIRE(left.ok());
  REQUIRE(left->size() == 1);
  CHECK(left->at(0).seq == b);
  purged = ctl->dead_letters().purge_selected({});
  REQUIRE(purged.ok());
  CHECK(*purged == 0);
}

TEST_CASE("conformance: read_results returns a task's records and the newest rows, oldest first", "[conformance]") {
  Fixture f;
  auto broker = f.open();
  auto record = [&](const std::string& task_id, uint32_t attempt, const std::string& status) {
    ResultRecord r;
    r.topic = "demo";
    r.task_id = task_id;
    r.task = "closeOrder";
    r.params = "{}";
    r.status = status;
    r.attempt = attempt;
    r.message = status == "ok" ? "" : "boom";
    r.host = "h1";
    r.pid = 42;
    return r;
  };
  Batch batch;
  batch.results = {record("a", 0, "retry"), record("b", 0, "ok"), record("a", 1, "ok")};
  commit_ok(*broker, batch);
  ResultQuery of_a;
  of_a.task_id = "a";
  auto rows = broker->read_results(of_a);
  if (test::amqp_backend()) {
    // RabbitMQ keeps no results it could query, and says where they are.
    CHECK(rows.status().code() == StatusCode::unsupported);
    CHECK(rows.status().message().find("results") != std::string::npos);
    return;
  }
  INFO(rows.status().to_string());
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 2);
  CHECK(rows->at(0).record.attempt == 0);
  CHECK(rows->at(0).record.status == "retry");
  CHECK(rows->at(0).record.message == "boom");
  CHECK(rows->at(1).record.attempt == 1);
  CHECK(rows->at(1).record.host == "h1");
  CHECK(rows->at(1).record.pid == 42);
  CHECK(rows->at(0).seq < rows->at(1).seq);
  ResultQuery newest;
  newest.newest = 2;
  auto tail = broker->read_results(newest);
  REQUIRE(tail.ok());
  REQUIRE(tail->size() == 2);
  CHECK(tail->at(0).record.task_id == "b");
  CHECK(tail->at(1).record.task_id == "a");
  ResultQuery after;
  after.after_seq = tail->at(1).seq;
  auto none = broker->read_results(after);
  REQUIRE(none.ok());
  CHECK(none->empty());
}

TEST_CASE("conformance: dead-letter ids are never handed out again after a replay or a purge", "[conformance]") {
  // On SQLite the ids used to be max + 1: after the newest letters were
  // replayed or purged, an id noted earlier named another letter.
  Fixture f;
  auto worker = f.open();
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  auto ctl = f.open("ebatsctl");
  auto dead_letter_one = [&] {
    publish(*worker, {f.task("demo", Lane::ntask, f.clock.wall_now())});
    auto got = claim_until(*worker, Lane::ntask, "demo", 1);
    REQUIRE(got.size() == 1);
    Batch batch;
    Settle s = ack(got[0].token);
    s.then_dead = dead(got[0]);
    batch.settle.push_back(s);
    CHECK(commit_ok(*worker, batch).settled == 1);
    auto letters = ctl->dead_letters().list(1);
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 1);
    return letters->at(0).seq;
  };
  const uint64_t first = dead_letter_one();
  const uint64_t second = dead_letter_one();
  CHECK(second > first);
  REQUIRE(ctl->dead_letters().replay(second, f.clock.wall_now()).ok());
  REQUIRE(claim_until(*worker, Lane::ntask, "demo", 1).size() == 1);  // (the replayed task, left unsettled)
  const uint64_t third = dead_letter_one();
  CHECK(third > second);
  REQUIRE(ctl->dead_letters().purge().ok());
  const uint64_t fourth = dead_letter_one();
  CHECK(fourth > third);
  CHECK(ctl->dead_letters().show(second).status().code() == StatusCode::not_found);
}

TEST_CASE("conformance: replay --all replays events and tasks, and leaves raw bytes listed", "[conformance]") {
  Fixture f;
  auto worker = f.open();
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  REQUIRE(worker->subscribe(Lane::events, "", 10).ok());
  publish(*worker, {f.task("demo", Lane::ntask, f.clock.wall_now())});
  auto got = claim_until(*worker, Lane::ntask, "demo", 1);
  REQUIRE(got.size() == 1);
  Batch batch;
  Settle s = ack(got[0].token);
  s.then_dead = dead(got[0]);
  batch.settle.push_back(s);
  OutMsg ev = f.event("order_paied");
  DeadLetter dead_event;
  dead_event.id = ev.id;
  dead_event.kind = "event";
  dead_event.name = ev.name;
  dead_event.reason = "no registration for event order_paied";
  dead_event.body = ev.body;
  dead_event.dead_at = f.clock.wall_now();
  batch.dead.push_back(dead_event);
  DeadLetter raw;
  raw.id = new_uuid_v4();
  raw.kind = "raw";
  raw.reason = "malformed";
  raw.error = "offset 0: Invalid value.";
  raw.body = std::string("\xff\xfe not json", 11);
  raw.dead_at = f.clock.wall_now();
  batch.dead.push_back(raw);
  commit_ok(*worker, batch);

  auto ctl = f.open("ebatsctl");
  auto letters = ctl->dead_letters().list(0);
  REQUIRE(letters.ok());
  REQUIRE(letters->size() == 3);
  uint64_t raw_seq = 0;
  for (const auto& e : *letters) {
    if (e.letter.kind == "raw") raw_seq = e.seq;
  }
  CHECK(ctl->dead_letters().replay(raw_seq, f.clock.wall_now()).code() == StatusCode::invalid_argument);
  auto n = ctl->dead_letters().replay_all(f.clock.wall_now());
  INFO(n.status().to_string());
  REQUIRE(n.ok());
  CHECK(*n == 2);
  auto task_back = claim_until(*worker, Lane::ntask, "demo", 1);
  REQUIRE(task_back.size() == 1);
  CHECK(task_back[0].id == got[0].id);
  auto event_back = claim_until(*worker, Lane::events, "", 1);
  REQUIRE(event_back.size() == 1);
  CHECK(event_back[0].id == ev.id);
  CHECK(event_back[0].body == ev.body);
  auto left = ctl->dead_letters().list(0);
  REQUIRE(left.ok());
  REQUIRE(left->size() == 1);
  CHECK(left->at(0).letter.kind == "raw");
  CHECK(left->at(0).letter.body == raw.body);  // bytes unchanged
}

TEST_CASE("conformance: acknowledging some deliveries never settles others still held", "[conformance]") {
  // RabbitMQ acknowledges runs of the oldest deliveries with one `multiple`
  // ack: it must never reach a delivery that is still held.
  Fixture f;
  std::vector<std::string> expect_back;
  {
    auto worker = f.open();
    REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
    std::vector<OutMsg> tasks;
    for (int i = 0; i < 6; ++i) tasks.push_back(f.task("demo", Lane::ntask, f.clock.wall_now()));
    publish(*worker, tasks);
    auto got = claim_until(*worker, Lane::ntask, "demo", 6);
    REQUIRE(got.size() == 6);
    // Settle 1, 2 and 4, 5 (in two commits); 0 and 3 stay held.
    Batch first;
    first.settle.push_back(ack(got[1].token));
    first.settle.push_back(ack(got[2].token));
    CHECK(commit_ok(*worker, first).settled == 2);
    Batch second;
    second.settle.push_back(ack(got[5].token));
    second.settle.push_back(ack(got[4].token));
    CHECK(commit_ok(*worker, second).settled == 2);
    expect_back = {got[0].id, got[3].id};
  }  // the worker goes away holding 0 and 3
  auto next = f.open();
  REQUIRE(next->recover_previous_incarnation(Lane::ntask, "demo").ok());
  REQUIRE(next->subscribe(Lane::ntask, "demo", 10).ok());
  auto back = claim_until(*next, Lane::ntask, "demo", 2);
  std::vector<std::string> ids;
  for (const Delivery& d : back) ids.push_back(d.id);
  std::sort(ids.begin(), ids.end());
  std::sort(expect_back.begin(), expect_back.end());
  CHECK(ids == expect_back);
  expect_nothing(*next, Lane::ntask, "demo");
}

TEST_CASE("conformance: settling a delivery twice changes nothing the second time", "[conformance]") {
  Fixture f;
  auto worker = f.open();
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  publish(*worker, {f.task("demo", Lane::ntask, f.clock.wall_now())});
  auto got = claim_until(*worker, Lane::ntask, "demo", 1);
  REQUIRE(got.size() == 1);
  Batch first;
  first.settle.push_back(ack(got[0].token));
  CHECK(commit_ok(*worker, first).settled == 1);
  // A late duplicate settle must not publish what rides on it.
  Batch second;
  Settle s = ack(got[0].token);
  s.then_publish.push_back(f.task("demo", Lane::ntask, f.clock.wall_now()));
  second.settle.push_back(s);
  const CommitReport report = commit_ok(*worker, second);
  CHECK(report.settled == 0);
  CHECK(report.stale == 1);
  expect_nothing(*worker, Lane::ntask, "demo");
}

TEST_CASE("conformance: events fan out into tasks through claim_and_commit", "[conformance]") {
  Fixture f;
  auto producer = f.open("testhost/publisher");
  auto scheduler = f.open("testhost/scheduler");
  auto worker = f.open();
  REQUIRE(scheduler->setup({"demo", "mail"}).ok());
  REQUIRE(scheduler->subscribe(Lane::events, "", 64).ok());
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  REQUIRE(worker->subscribe(Lane::ntask, "mail", 10).ok());
  std::vector<OutMsg> events{f.event("order_paied"), f.event("order_paied")};
  publish(*producer, events);
  size_t routed = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (routed < 2 && std::chrono::steady_clock::now() < until) {
    auto n = scheduler->claim_and_commit(Lane::events, "", 512,
                                         [&](const std::vector<Delivery>& ds) { return fan_out(f, ds); });
    INFO(n.status().to_string());
    REQUIRE(n.ok());
    routed += *n;
    if (routed < 2) std::this_thread::sleep_for(milliseconds(10));
  }
  CHECK(routed == 2);
  CHECK(claim_until(*worker, Lane::ntask, "demo", 2).size() == 2);
  CHECK(claim_until(*worker, Lane::ntask, "mail", 2).size() == 2);
  // The events are gone: routing again finds nothing.
  auto n = scheduler->claim_and_commit(Lane::events, "", 512, [](const std::vector<Delivery>&) { return Batch(); });
  REQUIRE(n.ok());
  CHECK(*n == 0);
}

TEST_CASE("conformance: read_events and commit_routed route events and claim the caller's topic", "[conformance]") {
  Fixture f;
  auto producer = f.open("testhost/publisher");
  auto router = f.open("testhost/ntask/demo");
  auto other = f.open("testhost/ntask/mail");
  REQUIRE(router->setup({"demo", "mail"}).ok());
  REQUIRE(router->subscribe(Lane::events, "", 64).ok());
  REQUIRE(router->subscribe(Lane::ntask, "demo", 10).ok());
  REQUIRE(other->subscribe(Lane::ntask, "mail", 10).ok());
  auto route = [&](const std::vector<Delivery>& ds) { return fan_out(f, ds); };
  publish(*producer, {f.event("order_paied"), f.event("order_paied"), f.event("order_paied")});
  size_t routed = 0;
  std::vector<Delivery> claimed;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (routed < 3 && std::chrono::steady_clock::now() < until) {
    auto r = test::route_and_claim(*router, 512, route, "demo", 2);
    if (!test::amqp_backend() && r.events > 0) {
      // One transaction: the tasks just routed are claimed in it.
      CHECK(r.events == 3);
      CHECK(r.claimed.size() == 2);
    }
    CHECK(r.claimed.size() <= 2);
    routed += r.events;
    for (Delivery& d : r.claimed) claimed.push_back(std::move(d));
    if (routed < 3) std::this_thread::sleep_for(milliseconds(10));
  }
  CHECK(routed == 3);
  for (const Delivery& d : claimed) {
    CHECK(d.lane == Lane::ntask);
    CHECK(d.topic == "demo");
  }
  // The rest of the topic's tasks, claimed as any others; the other topic's,
  // left to its own worker.
  for (Delivery& d : claim_until(*router, Lane::ntask, "demo", 3 - claimed.size())) claimed.push_back(std::move(d));
  CHECK(claimed.size() == 3);
  expect_nothing(*router, Lane::ntask, "demo");
  CHECK(claim_until(*other, Lane::ntask, "mail", 3).size() == 3);
  // What commit_routed handed out is held like any claim: it settles.
  Batch settle;
  for (const Delivery& d : claimed) settle.settle.push_back(ack(d.token));
  const CommitReport report = commit_ok(*router, settle);
  CHECK(report.settled == 3);
  CHECK(report.stale == 0);

  SECTION("with claim_max 0 it only routes") {
    publish(*producer, {f.event("order_paied")});
    size_t more = 0;
    const auto later = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (more < 1 && std::chrono::steady_clock::now() < later) {
      auto r = test::route_and_claim(*router, 512, route, "demo", 0);
      CHECK(r.claimed.empty());
      more += r.events;
      if (more < 1) std::this_thread::sleep_for(milliseconds(10));
    }
    CHECK(more == 1);
    CHECK(claim_until(*router, Lane::ntask, "demo", 1).size() == 1);
  }
  SECTION("with no event waiting it claims what is queued") {
    publish(*producer, {f.task("demo", Lane::ntask, f.clock.wall_now())});
    std::vector<Delivery> got;
    const auto later = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (got.empty() && std::chrono::steady_clock::now() < later) {
      auto r = test::route_and_claim(*router, 512, route, "demo", 5);
      CHECK(r.events == 0);
      for (Delivery& d : r.claimed) got.push_back(std::move(d));
      if (got.empty()) std::this_thread::sleep_for(milliseconds(10));
    }
    CHECK(got.size() == 1);
  }
}

TEST_CASE("conformance: a task claimed and never settled comes back with one more attempt", "[conformance]") {
  Fixture f;
  std::string id;
  {
    auto worker = f.open();
    REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
    publish(*worker, {f.task("demo", Lane::ntask, f.clock.wall_now(), 0, 2)});
    auto got = claim_until(*worker, Lane::ntask, "demo", 1);
    REQUIRE(got.size() == 1);
    id = got[0].id;
  }  // the worker goes away holding it
  auto next = f.open();
  auto recovered = next->recover_previous_incarnation(Lane::ntask, "demo");
  REQUIRE(recovered.ok());
  REQUIRE(next->subscribe(Lane::ntask, "demo", 10).ok());
  auto again = claim_until(*next, Lane::ntask, "demo", 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].id == id);
  CHECK(again[0].attempt == 1);
  if (test::amqp_backend()) CHECK(again[0].redeliveries == 1);

  // Lost once more, it has no attempt left: handed out exhausted (AMQP), for
  // the caller to dead-letter as "worker lost", or dead-lettered by the lease
  // recovery (SQLite, "lease expired").
  next.reset();
  auto last = f.open();
  auto n = last->recover_previous_incarnation(Lane::ntask, "demo");
  REQUIRE(n.ok());
  REQUIRE(last->subscribe(Lane::ntask, "demo", 10).ok());
  if (test::amqp_backend()) {
    auto exhausted = claim_until(*last, Lane::ntask, "demo", 1);
    REQUIRE(exhausted.size() == 1);
    CHECK(exhausted[0].attempt == 2);
    CHECK(exhausted[0].attempt >= exhausted[0].max_attempts);
  } else {
    expect_nothing(*last, Lane::ntask, "demo");
    auto letters = last->dead_letters().list(0);
    REQUIRE(letters.ok());
    REQUIRE(letters->size() == 1);
    CHECK(letters->at(0).letter.reason == "lease expired");
  }
}

TEST_CASE("conformance: unclaimed deliveries are put back without costing an attempt when a broker closes",
          "[conformance]") {
  Fixture f;
  {
    auto producer = f.open("testhost/publisher");
    publish(*producer, {f.task("demo", Lane::ntask, f.clock.wall_now()), f.task("demo", Lane::ntask, f.clock.wall_now())});
    auto worker = f.open();
    REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
    std::this_thread::sleep_for(milliseconds(300));  // RabbitMQ has delivered them to this broker by now
  }
  auto worker = f.open();
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 10).ok());
  auto got = claim_until(*worker, Lane::ntask, "demo", 2);
  REQUIRE(got.size() == 2);
  for (const Delivery& d : got) CHECK(d.attempt == 0);
}

TEST_CASE("conformance: depths of an idle broker have the events row and every topic asked about, at zero",
          "[conformance]") {
  // A monitor reads the events row and its topics' rows: SQLite left out
  // whatever had no message (stats printed [] on a fresh database).
  Fixture f;
  auto broker = f.open();
  REQUIRE(broker->setup({"demo", "other"}).ok());
  auto depths = broker->depths({"demo", "other"}, DeadLetterCount::counted);
  INFO(depths.status().to_string());
  REQUIRE(depths.ok());
  const QueueDepth* events = row(*depths, QueueDepth::Row::events);
  REQUIRE(events != nullptr);
  CHECK(events->ready == 0);
  CHECK(events->dead == 0);
  for (const char* topic : {"demo", "other"}) {
    const QueueDepth* t = row(*depths, QueueDepth::Row::topic, topic);
    INFO(topic);
    REQUIRE(t != nullptr);
    CHECK(t->ready == 0);
    CHECK(t->delayed == 0);
    CHECK(t->dead == 0);
  }
}

TEST_CASE("conformance: depths count what is ready, delayed and dead", "[conformance]") {
  Fixture f;
  auto broker = f.open();
  const WallMs now = f.clock.wall_now();
  publish(*broker, {f.task("demo", Lane::ntask, now), f.task("demo", Lane::ntask, now),
                    f.task("demo", Lane::dtask, now + 60'000), f.event("order_paied")});
  Batch batch;
  DeadLetter dl;
  dl.id = new_uuid_v4();
  dl.kind = "task";
  dl.topic = "demo";
  dl.name = "closeOrder";
  dl.reason = "failed";
  dl.body = "{}";
  dl.dead_at = now;
  batch.dead.push_back(dl);
  commit_ok(*broker, batch);
  auto depths = broker->depths({"demo"}, DeadLetterCount::counted);
  INFO(depths.status().to_string());
  REQUIRE(depths.ok());
  const QueueDepth* demo = row(*depths, QueueDepth::Row::topic, "demo");
  REQUIRE(demo != nullptr);
  CHECK(demo->ready == 2);
  CHECK(demo->dead == 1);
  const QueueDepth* events = row(*depths, QueueDepth::Row::events);
  REQUIRE(events != nullptr);
  CHECK(events->ready == 1);
  // A delayed task is the topic's on SQLite; on RabbitMQ it waits in the delay
  // levels, which hold every topic's.
  uint64_t delayed = 0;
  for (const QueueDepth& d : *depths) delayed += d.delayed;
  CHECK(delayed == 1);
  if (test::amqp_backend()) {
    CHECK_FALSE(demo->leased_known);
    CHECK_FALSE(demo->done_known);
    REQUIRE(row(*depths, QueueDepth::Row::delay_levels) != nullptr);
  }
  // A poll every few seconds (the scheduler's metrics) skips what costs a read
  // of every dead letter: RabbitMQ's stream; SQLite counts them all the same.
  auto polled = broker->depths({"demo"}, DeadLetterCount::skipped_if_costly);
  REQUIRE(polled.ok());
  const QueueDepth* polled_demo = row(*polled, QueueDepth::Row::topic, "demo");
  REQUIRE(polled_demo != nullptr);
  CHECK(polled_demo->ready == 2);
  if (test::amqp_backend()) {
    for (const QueueDepth& d : *polled) CHECK_FALSE(d.dead_known);
  } else {
    CHECK(polled_demo->dead_known);
    CHECK(polled_demo->dead == 1);
  }
}
