// The SQLite broker on a temporary file, driven by a FakeClock: claims, due
// times, leases and their recovery, settles, dead letters, depths, open errors.
#include <sqlite3.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <iterator>
#include <functional>
#include <fstream>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "broker/sqlite/sqlite_schema.h"
#include "ebats/broker.h"
#include "ebats/clock.h"
#include "support/broker_calls.h"
#include "support/queue_count_audit.h"
#include "support/temp_dir.h"

using namespace ebats;
using std::chrono::milliseconds;

namespace {

constexpr int64_t kLeaseMs = 30'000;

using ebats::test::TempDir;

BrokerOptions options_for(const std::string& db_path, const std::string& owner = "testhost/ntask/demo") {
  BrokerOptions options;
  options.url = "sqlite://" + db_path;
  options.owner = owner;
  options.sqlite.lease_ms = kLeaseMs;
  return options;
}

std::unique_ptr<Broker> open_ok(const BrokerOptions& options, const Clock& clock) {
  auto broker = open_broker(options, clock);
  INFO(broker.status().to_string());
  REQUIRE(broker.ok());
  return std::move(*broker);
}

OutMsg task(const std::string& id, WallMs due_at, Lane lane = Lane::ntask, uint32_t attempt = 0,
            uint32_t max_attempts = 3) {
  OutMsg m;
  m.lane = lane;
  m.topic = "demo";
  m.id = id;
  m.name = "closeOrder";
  m.body = "{\"id\":\"" + id + "\",\"max_attempts\":" + std::to_string(max_attempts) + "}";
  m.due_at = due_at;
  m.attempt = attempt;
  m.max_attempts = max_attempts;
  return m;
}

OutMsg event(const std::string& id, const std::string& name = "order_create") {
  OutMsg m;
  m.lane = Lane::events;
  m.id = id;
  m.name = name;
  m.body = "{\"id\":\"" + id + "\"}";
  return m;
}

using ebats::test::commit_ok;
using ebats::test::publish;

std::vector<Delivery> claim_ok(Broker& broker, Lane lane, uint32_t max, const std::string& topic = "demo") {
  auto claimed = broker.claim(lane, topic, max);
  INFO(claimed.status().to_string());
  REQUIRE(claimed.ok());
  return *claimed;
}

Settle ack(uint64_t token) {
  Settle s;
  s.kind = Settle::Kind::ack;
  s.token = token;
  return s;
}

std::vector<std::string> ids_of(const std::vector<Delivery>& deliveries) {
  std::vector<std::string> ids;
  for (const Delivery& d : deliveries) ids.push_back(d.id);
  return ids;
}

QueueDepth depth_of(Broker& broker, const std::string& topic) {
  auto depths = broker.depths({}, DeadLetterCount::counted);
  REQUIRE(depths.ok());
  for (const QueueDepth& d : *depths) {
    if (d.topic == topic) return d;
  }
  QueueDepth none;
  none.topic = topic;
  return none;
}

DeadLetter raw_dead_letter(const std::string& id) {
  DeadLetter d;
  d.id = id;
  d.kind = "raw";
  d.reason = "malformed";
  d.error = "offset 3: Invalid value.";
  d.body = std::string("{\"x\x01", 4);
  return d;
}

}  // namespace

TEST_CASE("sqlite broker: publish, claim and ack round trip", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  const WallMs now = clock.wall_now();
  publish(*broker, {task("t1", now), task("t2", now - 5), task("t3", now, Lane::ntask, 2, 6)});

  auto claimed = claim_ok(*broker, Lane::ntask, 10);
  REQUIRE(ids_of(claimed) == std::vector<std::string>{"t2", "t1", "t3"});  // by due_at, then publish order
  const Delivery& t3 = claimed[2];
  CHECK(t3.lane == Lane::ntask);
  CHECK(t3.topic == "demo");
  CHECK(t3.name == "closeOrder");
  CHECK(t3.body == task("t3", now, Lane::ntask, 2, 6).body);
  CHECK(t3.attempt == 2);
  CHECK(t3.max_attempts == 6);
  CHECK(t3.due_at == now);
  CHECK(t3.created_at == now);

  // Everything is leased: nothing more to claim, and the other lane is empty.
  CHECK(claim_ok(*broker, Lane::ntask, 10).empty());
  CHECK(claim_ok(*broker, Lane::dtask, 10).empty());
  CHECK(depth_of(*broker, "demo").leased == 3);

  Batch done;
  for (const Delivery& d : claimed) {
    done.settle.push_back(ack(d.token));
    ResultRecord r;
    r.topic = "demo";
    r.task_id = d.id;
    r.task = d.name;
    r.params = "{}";
    r.status = "ok";
    r.host = "testhost";
    done.results.push_back(r);
  }
  const CommitReport report = commit_ok(*broker, done);
  CHECK(report.settled == 3);
  CHECK(report.stale == 0);
  const QueueDepth depth = depth_of(*broker, "demo");
  CHECK(depth.leased == 0);
  CHECK(depth.ready == 0);
  CHECK(depth.done == 3);
  CHECK(claim_ok(*broker, Lane::ntask, 10).empty());
}

TEST_CASE("sqlite broker: claim honours max and the topic", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  OutMsg other = task("mail-1", clock.wall_now());
  other.topic = "mail";
  publish(*broker, {task("a", clock.wall_now()), task("b", clock.wall_now()), task("c", clock.wall_now()), other});
  CHECK(ids_of(claim_ok(*broker, Lane::ntask, 2)) == std::vector<std::string>{"a", "b"});
  CHECK(ids_of(claim_ok(*broker, Lane::ntask, 2)) == std::vector<std::string>{"c"});
  CHECK(ids_of(claim_ok(*broker, Lane::ntask, 2, "mail")) == std::vector<std::string>{"mail-1"});
  CHECK(claim_ok(*broker, Lane::ntask, 0, "mail").empty());
}

TEST_CASE("sqlite broker: a task is never claimed before its due time", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  const WallMs due = clock.wall_now() + 10'000;
  publish(*broker, {task("later", due, Lane::dtask)});

  auto next = broker->next_due(Lane::dtask, "demo");
  REQUIRE(next.ok());
  REQUIRE(next->has_value());
  CHECK(**next == due);
  CHECK(depth_of(*broker, "demo").delayed == 1);
  CHECK(claim_ok(*broker, Lane::dtask, 10).empty());
  // A due task next to it is claimed alone.
  publish(*broker, {task("now", clock.wall_now(), Lane::dtask)});
  CHECK(ids_of(claim_ok(*broker, Lane::dtask, 10)) == std::vector<std::string>{"now"});
  clock.advance(milliseconds(9'999));
  CHECK(claim_ok(*broker, Lane::dtask, 10).empty());
  clock.advance(milliseconds(1));
  auto claimed = claim_ok(*broker, Lane::dtask, 10);
  REQUIRE(ids_of(claimed) == std::vector<std::string>{"later"});
  CHECK(claimed[0].due_at == due);
  // Leased rows have no next due time.
  next = broker->next_due(Lane::dtask, "demo");
  REQUIRE(next.ok());
  CHECK_FALSE(next->has_value());
}

TEST_CASE("sqlite broker: events are claimed, acked and released", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db", "testhost/scheduler"), clock);
  publish(*broker, {event("e1"), event("e2", "order_paied")});
  auto next = broker->next_due(Lane::events, "");
  REQUIRE(next.ok());
  CHECK(next->value_or(0) == clock.wall_now());

  auto claimed = claim_ok(*broker, Lane::events, 10, "ignored");
  REQUIRE(ids_of(claimed) == std::vector<std::string>{"e1", "e2"});
  CHECK(claimed[1].name == "order_paied");
  CHECK(claimed[1].body == "{\"id\":\"e2\"}");
  CHECK(claim_ok(*broker, Lane::events, 10).empty());

  Batch batch;
  batch.settle.push_back(ack(claimed[0].token));
  Settle release;
  release.kind = Settle::Kind::release;
  release.token = claimed[1].token;
  batch.settle.push_back(release);
  CHECK(commit_ok(*broker, batch).settled == 2);
  CHECK(ids_of(claim_ok(*broker, Lane::events, 10)) == std::vector<std::string>{"e2"});
  // Tokens of events and tasks never collide: the task table is untouched.
  publish(*broker, {task("t1", clock.wall_now())});
  CHECK(claim_ok(*broker, Lane::ntask, 10).size() == 1);
}

TEST_CASE("sqlite broker: publishing the same id twice is ignored", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  Batch batch;
  batch.publish = {task("dup", clock.wall_now()), event("ev")};
  CHECK(commit_ok(*broker, batch).published == 2);
  OutMsg changed = task("dup", clock.wall_now());
  changed.body = "{\"other\":true}";
  batch.publish = {changed, event("ev"), task("new", clock.wall_now())};
  CHECK(commit_ok(*broker, batch).published == 1);
  auto claimed = claim_ok(*broker, Lane::ntask, 10);
  REQUIRE(ids_of(claimed) == std::vector<std::string>{"dup", "new"});
  CHECK(claimed[0].body == task("dup", 0).body);  // the first publish wins
  CHECK(claim_ok(*broker, Lane::events, 10).size() == 1);
}

TEST_CASE("sqlite broker: a failing batch changes nothing", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  publish(*broker, {task("t1", clock.wall_now())});
  auto claimed = claim_ok(*broker, Lane::ntask, 1);
  REQUIRE(claimed.size() == 1);

  Batch batch;
  batch.settle.push_back(ack(claimed[0].token));
  batch.publish.push_back(task("ok", clock.wall_now()));
  OutMsg no_topic = task("bad", clock.wall_now());
  no_topic.topic.clear();
  batch.publish.push_back(no_topic);
  auto report = broker->commit(batch);
  REQUIRE_FALSE(report.ok());
  CHECK(report.status().code() == StatusCode::invalid_argument);
  CHECK_THAT(report.status().message(), Catch::Contains("task bad") && Catch::Contains("topic is empty"));

  // The ack was rolled back with the rest: the task is still leased, "ok" was not published.
  const QueueDepth depth = depth_of(*broker, "demo");
  CHECK(depth.leased == 1);
  CHECK(depth.ready == 0);
  CHECK(commit_ok(*broker, Batch{{}, {}, {}, {ack(claimed[0].token)}, {}}).settled == 1);
}

TEST_CASE("sqlite broker: retry = ack plus the same id on the dtask lane", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  publish(*broker, {task("t1", clock.wall_now())});
  auto claimed = claim_ok(*broker, Lane::ntask, 1);
  REQUIRE(claimed.size() == 1);

  Settle retry = ack(claimed[0].token);
  retry.then_publish.push_back(task("t1", clock.wall_now() + 5'000, Lane::dtask, 1, 3));
  Batch batch;
  batch.settle.push_back(retry);
  const CommitReport report = commit_ok(*broker, batch);
  CHECK(report.settled == 1);
  CHECK(report.published == 1);

  CHECK(claim_ok(*broker, Lane::ntask, 10).empty());
  CHECK(claim_ok(*broker, Lane::dtask, 10).empty());  // not due yet
  clock.advance(milliseconds(5'000));
  auto again = claim_ok(*broker, Lane::dtask, 10);
  REQUIRE(ids_of(again) == std::vector<std::string>{"t1"});
  CHECK(again[0].attempt == 1);
  CHECK(again[0].lane == Lane::dtask);
}

TEST_CASE("sqlite broker: release puts a task back with its attempt unchanged", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  publish(*broker, {task("t1", clock.wall_now(), Lane::ntask, 1, 3)});
  auto claimed = claim_ok(*broker, Lane::ntask, 1);
  REQUIRE(claimed.size() == 1);
  Settle release;
  release.kind = Settle::Kind::release;
  release.token = claimed[0].token;
  CHECK(commit_ok(*broker, Batch{{}, {}, {}, {release}, {}}).settled == 1);
  auto again = claim_ok(*broker, Lane::ntask, 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].attempt == 1);
  // Releasing a delivery that is not leased any more is stale.
  CHECK(commit_ok(*broker, Batch{{}, {}, {}, {release, release}, {}}).settled == 1);
  CHECK(commit_ok(*broker, Batch{{}, {}, {}, {release}, {}}).stale == 1);
}

TEST_CASE("sqlite broker: an expired lease is recovered with attempt + 1", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  auto other = open_ok(options_for(dir.path() + "/ebats.db", "host-b/ntask/demo"), clock);
  publish(*broker, {task("t1", clock.wall_now())});
  REQUIRE(claim_ok(*broker, Lane::ntask, 1).size() == 1);

  clock.advance(milliseconds(kLeaseMs));
  auto recovered = other->recover_expired(Lane::ntask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 0);  // the lease holds until its last millisecond
  recovered = other->recover_expired(Lane::dtask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 0);  // other lane

  clock.advance(milliseconds(1));
  recovered = other->recover_expired(Lane::ntask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 1);
  auto again = claim_ok(*broker, Lane::ntask, 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].id == "t1");
  CHECK(again[0].attempt == 1);
  CHECK(again[0].due_at == clock.wall_now());
}

TEST_CASE("sqlite broker: a holder never recovers its own lapsed lease: it extends it again", "[sqlite][broker]") {
  // A worker whose lease lapsed while the database was locked longer than the
  // lease still runs the task: had its own reaper put the task back, it
  // would have claimed and run it a second time beside the first.
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  publish(*broker, {task("t1", clock.wall_now()), event("e1")});
  auto tasks = claim_ok(*broker, Lane::ntask, 1);
  auto events = claim_ok(*broker, Lane::events, 1);
  REQUIRE(tasks.size() == 1);
  REQUIRE(events.size() == 1);
  clock.advance(milliseconds(3 * kLeaseMs));
  CHECK(*broker->recover_expired(Lane::ntask, "demo") == 0);
  CHECK(*broker->recover_expired(Lane::events, "") == 0);
  CHECK(claim_ok(*broker, Lane::ntask, 10).empty());  // not handed out again
  CHECK(depth_of(*broker, "demo").leased == 1);
  // The late extension takes: the lease is current again, for others too.
  REQUIRE(broker->extend({tasks[0].token, events[0].token}).ok());
  auto other = open_ok(options_for(dir.path() + "/ebats.db", "host-b/ntask/demo"), clock);
  CHECK(*other->recover_expired(Lane::ntask, "demo") == 0);
  CHECK(*other->recover_expired(Lane::events, "") == 0);
  // And its settle counts.
  CHECK(commit_ok(*broker, Batch{{}, {}, {}, {ack(tasks[0].token)}, {}}).settled == 1);
}

TEST_CASE("sqlite broker: extend keeps a lease alive", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  auto other = open_ok(options_for(dir.path() + "/ebats.db", "host-b/ntask/demo"), clock);
  publish(*broker, {task("t1", clock.wall_now()), event("e1")});
  auto tasks = claim_ok(*broker, Lane::ntask, 1);
  auto events = claim_ok(*broker, Lane::events, 1);
  REQUIRE(tasks.size() == 1);
  REQUIRE(events.size() == 1);

  clock.advance(milliseconds(kLeaseMs - 1'000));
  REQUIRE(broker->extend({tasks[0].token, events[0].token}).ok());
  clock.advance(milliseconds(2'000));  // past the first lease, within the extended one
  CHECK(*other->recover_expired(Lane::ntask, "demo") == 0);
  CHECK(*other->recover_expired(Lane::events, "") == 0);
  clock.advance(milliseconds(kLeaseMs));
  CHECK(*other->recover_expired(Lane::ntask, "demo") == 1);
  CHECK(*other->recover_expired(Lane::events, "") == 1);
  auto event_again = claim_ok(*broker, Lane::events, 1);
  REQUIRE(event_again.size() == 1);
  CHECK(event_again[0].attempt == 0);  // events are not counted
}

TEST_CASE("sqlite broker: an exhausted expired lease becomes a dead letter", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  auto other = open_ok(options_for(dir.path() + "/ebats.db", "host-b/dtask/demo"), clock);
  const OutMsg last_try = task("t1", clock.wall_now(), Lane::dtask, 1, 2);
  publish(*broker, {last_try});
  REQUIRE(claim_ok(*broker, Lane::dtask, 1).size() == 1);
  clock.advance(milliseconds(kLeaseMs + 1));
  auto recovered = other->recover_expired(Lane::dtask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 1);

  CHECK(claim_ok(*broker, Lane::dtask, 10).empty());
  auto listed = broker->dead_letters().list(10);
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  const DeadLetter& d = listed->front().letter;
  CHECK(d.id == "t1");
  CHECK(d.kind == "task");
  CHECK(d.topic == "demo");
  CHECK(d.name == "closeOrder");
  CHECK(d.reason == "lease expired");
  CHECK_THAT(d.error, Catch::Contains("testhost/ntask/demo/"));
  CHECK(d.attempts == 2);
  CHECK(d.body == last_try.body);
  CHECK(d.dead_at == clock.wall_now());
  const QueueDepth depth = depth_of(*broker, "demo");
  CHECK(depth.dead == 1);
  CHECK(depth.leased == 0);
}

TEST_CASE("sqlite broker: a stale ack after recovery does not duplicate the retry", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  auto slow = open_ok(options_for(db, "host-a/ntask/demo"), clock);
  auto other = open_ok(options_for(db, "host-b/ntask/demo"), clock);
  publish(*slow, {task("t1", clock.wall_now())});
  auto held = claim_ok(*slow, Lane::ntask, 1);
  REQUIRE(held.size() == 1);

  clock.advance(milliseconds(kLeaseMs + 1));
  REQUIRE(*other->recover_expired(Lane::ntask, "demo") == 1);
  auto reclaimed = claim_ok(*other, Lane::ntask, 1);
  REQUIRE(reclaimed.size() == 1);

  // The slow worker finally finishes and asks for a retry: its lease is gone.
  Settle retry = ack(held[0].token);
  retry.then_publish.push_back(task("t1", clock.wall_now(), Lane::dtask, 1, 3));
  DeadLetter never;
  never.id = "t1";
  never.kind = "task";
  never.reason = "failed";
  Settle dead = ack(held[0].token);
  dead.then_dead = never;
  const CommitReport report = commit_ok(*slow, Batch{{}, {}, {}, {retry, dead}, {}});
  CHECK(report.stale == 2);
  CHECK(report.settled == 0);
  CHECK(report.published == 0);
  CHECK(claim_ok(*other, Lane::dtask, 10).empty());
  auto listed = other->dead_letters().list(0);
  REQUIRE(listed.ok());
  CHECK(listed->empty());
  // The current holder's ack still counts.
  CHECK(commit_ok(*other, Batch{{}, {}, {}, {ack(reclaimed[0].token)}, {}}).settled == 1);
}

TEST_CASE("sqlite broker: a late settle does not settle another task that got the same row seq", "[sqlite][broker]") {
  // The row seq is handed out again once the newest row is gone: a worker
  // whose lease lapsed, and which then claimed a new task under the old seq,
  // deleted the new task's row with the old task's ack.
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  auto slow = open_ok(options_for(db, "host/ntask/demo"), clock);
  auto other = open_ok(options_for(db, "host/ntask/other"), clock);
  publish(*slow, {task("a", clock.wall_now())});
  auto a = claim_ok(*slow, Lane::ntask, 1);
  REQUIRE(a.size() == 1);
  clock.advance(milliseconds(kLeaseMs + 1));  // its lease lapses unnoticed
  REQUIRE(other->recover_expired(Lane::ntask, "demo").ok());
  auto again = claim_ok(*other, Lane::ntask, 1);
  REQUIRE(again.size() == 1);
  Settle done = ack(again[0].token);
  done.id = again[0].id;
  REQUIRE(commit_ok(*other, Batch{{}, {}, {}, {done}, {}}).settled == 1);  // the table is empty now
  publish(*slow, {task("b", clock.wall_now())});
  auto b = claim_ok(*slow, Lane::ntask, 1);
  REQUIRE(b.size() == 1);
  REQUIRE(b[0].token == a[0].token);  // the same seq, another task
  Settle late = ack(a[0].token);
  late.id = a[0].id;
  const CommitReport report = commit_ok(*slow, Batch{{}, {}, {}, {late}, {}});
  CHECK(report.settled == 0);
  CHECK(report.stale == 1);
  CHECK(depth_of(*slow, "demo").leased == 1);  // b is still there, leased
  Settle mine = ack(b[0].token);
  mine.id = b[0].id;
  CHECK(commit_ok(*slow, Batch{{}, {}, {}, {mine}, {}}).settled == 1);
}

TEST_CASE("sqlite broker: a restarted worker recovers its previous incarnation's leases", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  const WallMs now = clock.wall_now();
  auto before = open_ok(options_for(db, "host/ntask/demo"), clock);
  auto similar = open_ok(options_for(db, "host/ntask/demo2"), clock);
  publish(*before, {task("mine", now), task("theirs", now), task("last", now, Lane::ntask, 2, 3)});
  REQUIRE(claim_ok(*before, Lane::ntask, 1).size() == 1);    // mine
  REQUIRE(claim_ok(*similar, Lane::ntask, 1).size() == 1);   // theirs: another worker, similar name
  REQUIRE(claim_ok(*before, Lane::ntask, 1).size() == 1);    // last: exhausted on recovery
  before.reset();  // crashed; its leases are still held

  auto after = open_ok(options_for(db, "host/ntask/demo"), clock);
  auto recovered = after->recover_previous_incarnation(Lane::ntask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 2);
  auto again = claim_ok(*after, Lane::ntask, 10);
  REQUIRE(ids_of(again) == std::vector<std::string>{"mine"});
  CHECK(again[0].attempt == 1);
  // Its own leases and the other worker's are left alone.
  recovered = after->recover_previous_incarnation(Lane::ntask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 0);
  CHECK(depth_of(*after, "demo").leased == 2);
  auto dead = after->dead_letters().list(0);
  REQUIRE(dead.ok());
  REQUIRE(dead->size() == 1);
  CHECK(dead->front().letter.id == "last");
  CHECK(dead->front().letter.reason == "lease expired");
}

TEST_CASE("sqlite broker: a task claimed ahead keeps its due time when a restarted worker recovers it",
          "[sqlite][broker]") {
  // A dtask worker claims what comes due within one poll interval and holds
  // it until then. Recovery made such a task due at once: a worker restarted
  // within that interval after a crash ran it early.
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  const WallMs due = clock.wall_now() + 40;
  auto before = open_ok(options_for(db, "host/dtask/demo"), clock);
  publish(*before, {task("soon", due, Lane::dtask)});
  auto ahead = before->claim_ahead(Lane::dtask, "demo", 10, 50);
  REQUIRE(ahead.ok());
  REQUIRE(ids_of(*ahead) == std::vector<std::string>{"soon"});
  before.reset();  // crashed before it came due

  auto after = open_ok(options_for(db, "host/dtask/demo"), clock);
  auto recovered = after->recover_previous_incarnation(Lane::dtask, "demo");
  REQUIRE(recovered.ok());
  REQUIRE(*recovered == 1);
  CHECK(claim_ok(*after, Lane::dtask, 10).empty());  // not due yet
  auto next = after->next_due(Lane::dtask, "demo");
  REQUIRE(next.ok());
  REQUIRE(next->has_value());
  CHECK(**next == due);
  clock.advance(milliseconds(40));
  auto again = claim_ok(*after, Lane::dtask, 10);
  REQUIRE(ids_of(again) == std::vector<std::string>{"soon"});
  CHECK(again[0].due_at == due);
  CHECK(again[0].attempt == 1);
}

TEST_CASE("sqlite broker: a restarted worker leaves the leases of a running worker of its topic alone",
          "[sqlite][broker]") {
  // Two workers of one topic and lane on one host share the owner prefix: the
  // restarted one took the other's live leases, so their tasks ran twice (or
  // were dead-lettered on their last attempt while they ran).
  TempDir dir;
  SystemClock clock;
  const std::string db = dir.path() + "/ebats.db";
  const WallMs now = clock.wall_now();
  {
    auto publisher = open_ok(options_for(db, "host/publisher"), clock);
    publish(*publisher, {task("a", now), task("b", now)});
  }
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t sibling = ::fork();
  REQUIRE(sibling >= 0);
  if (sibling == 0) {  // the running sibling: holds both leases until killed
    ::close(ready[0]);
    auto b = open_broker(options_for(db, "host/ntask/demo"), clock);
    if (!b.ok()) ::_exit(1);
    auto claimed = (*b)->claim(Lane::ntask, "demo", 10);
    if (!claimed.ok() || claimed->size() != 2) ::_exit(2);
    if (::write(ready[1], "x", 1) != 1) ::_exit(3);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  ::close(ready[0]);
  auto restarted = open_ok(options_for(db, "host/ntask/demo"), clock);
  auto recovered = restarted->recover_previous_incarnation(Lane::ntask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 0);
  CHECK(depth_of(*restarted, "demo").leased == 2);
  // Once it is gone, its leases are the restarted worker's to take back.
  ::kill(sibling, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(sibling, &status, 0) == sibling);
  recovered = restarted->recover_previous_incarnation(Lane::ntask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 2);
  CHECK(claim_ok(*restarted, Lane::ntask, 10).size() == 2);
}

TEST_CASE("sqlite broker: a restarted scheduler gets its leased events back", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  auto before = open_ok(options_for(db, "host/scheduler"), clock);
  publish(*before, {event("e1"), event("e2")});
  REQUIRE(claim_ok(*before, Lane::events, 10).size() == 2);
  before.reset();

  auto after = open_ok(options_for(db, "host/scheduler"), clock);
  CHECK(claim_ok(*after, Lane::events, 10).empty());
  auto recovered = after->recover_previous_incarnation(Lane::events, "");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 2);
  auto again = claim_ok(*after, Lane::events, 10);
  CHECK(ids_of(again) == std::vector<std::string>{"e1", "e2"});
  recovered = after->recover_previous_incarnation(Lane::events, "");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 0);  // its own leases stay
}

TEST_CASE("sqlite broker: dead letters list, show, replay and purge", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  DeadLetter failed;
  failed.id = "task-1";
  failed.kind = "task";
  failed.topic = "demo";
  failed.name = "closeOrder";
  failed.reason = "retries exhausted";
  failed.error = "boom";
  failed.attempts = 6;
  failed.body = "{\"id\":\"task-1\",\"attempt\":5,\"max_attempts\":6}";
  failed.first_seen = clock.wall_now() - 1000;
  DeadLetter unknown;
  unknown.id = "event-1";
  unknown.kind = "event";
  unknown.name = "order_unknown";
  unknown.reason = "no registration";
  unknown.body = "{\"id\":\"event-1\"}";
  Batch batch;
  batch.dead = {failed, unknown, raw_dead_letter("raw-1")};
  commit_ok(*broker, batch);
  DeadLetterStore& store = broker->dead_letters();

  auto listed = store.list(0);
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 3);
  CHECK((*listed)[0].letter.id == "raw-1");  // newest first
  CHECK((*listed)[2].letter.id == "task-1");
  CHECK((*listed)[2].letter.error == "boom");
  CHECK((*listed)[2].letter.attempts == 6);
  CHECK((*listed)[2].letter.first_seen == clock.wall_now() - 1000);
  CHECK((*listed)[2].letter.dead_at == clock.wall_now());
  CHECK((*listed)[0].letter.body == raw_dead_letter("raw-1").body);  // bytes unchanged
  auto limited = store.list(2);
  REQUIRE(limited.ok());
  CHECK(limited->size() == 2);
  const uint64_t task_seq = (*listed)[2].seq;
  const uint64_t event_seq = (*listed)[1].seq;
  const uint64_t raw_seq = (*listed)[0].seq;

  auto shown = store.show(task_seq);
  REQUIRE(shown.ok());
  CHECK(shown->letter.reason == "retries exhausted");
  auto missing = store.show(9999);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::not_found);
  CHECK(missing.status().message() == "no dead letter with id 9999");
  CHECK(store.replay(9999, clock.wall_now()).code() == StatusCode::not_found);

  Status raw = store.replay(raw_seq, clock.wall_now());
  CHECK(raw.code() == StatusCode::invalid_argument);
  CHECK_THAT(raw.message(), Catch::StartsWith("dead letter " + std::to_string(raw_seq) +
                                              " holds raw bytes (reason: malformed) and cannot be replayed"));

  clock.advance(milliseconds(500));
  REQUIRE(store.replay(task_seq, clock.wall_now()).ok());
  auto replayed = claim_ok(*broker, Lane::ntask, 10);
  REQUIRE(replayed.size() == 1);
  CHECK(replayed[0].id == "task-1");
  CHECK(replayed[0].attempt == 0);
  CHECK(replayed[0].max_attempts == 6);  // from the envelope
  CHECK(replayed[0].body == failed.body);
  CHECK(replayed[0].due_at == clock.wall_now());
  CHECK(store.show(task_seq).status().code() == StatusCode::not_found);

  auto all = store.replay_all(clock.wall_now());
  REQUIRE(all.ok());
  CHECK(*all == 1);  // the event; raw bytes stay
  auto events = claim_ok(*broker, Lane::events, 10);
  REQUIRE(ids_of(events) == std::vector<std::string>{"event-1"});
  CHECK(events[0].name == "order_unknown");
  listed = store.list(0);
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK(listed->front().seq == raw_seq);
  (void)event_seq;

  auto purged = store.purge();
  REQUIRE(purged.ok());
  CHECK(*purged == 1);
  listed = store.list(0);
  REQUIRE(listed.ok());
  CHECK(listed->empty());
}

TEST_CASE("sqlite broker: settle then_dead writes the dead letter with the ack", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  publish(*broker, {task("t1", clock.wall_now())});
  auto claimed = claim_ok(*broker, Lane::ntask, 1);
  REQUIRE(claimed.size() == 1);
  Settle dead = ack(claimed[0].token);
  DeadLetter letter;
  letter.id = "t1";
  letter.kind = "task";
  letter.topic = "demo";
  letter.name = "closeOrder";
  letter.reason = "failed";
  letter.body = claimed[0].body;
  dead.then_dead = letter;
  CHECK(commit_ok(*broker, Batch{{}, {}, {}, {dead}, {}}).settled == 1);
  const QueueDepth depth = depth_of(*broker, "demo");
  CHECK(depth.dead == 1);
  CHECK(depth.leased == 0);
}

TEST_CASE("sqlite broker: depths per topic", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  const WallMs now = clock.wall_now();
  OutMsg mail = task("m1", now);
  mail.topic = "mail";
  publish(*broker, {task("ready1", now), task("ready2", now), task("later", now + 60'000),
                    task("retry", now, Lane::dtask), task("leased", now - 1), mail, event("e1")});
  REQUIRE(claim_ok(*broker, Lane::ntask, 1).size() == 1);  // "leased"
  ResultRecord ok;
  ok.topic = "demo";
  ok.status = "ok";
  ResultRecord failed = ok;
  failed.status = "failed";
  DeadLetter dead;
  dead.id = "x";
  dead.kind = "task";
  dead.topic = "archive";
  dead.reason = "failed";
  Batch batch;
  batch.results = {ok, ok, failed};
  batch.dead = {dead, raw_dead_letter("r")};
  commit_ok(*broker, batch);

  auto depths = broker->depths({}, DeadLetterCount::counted);
  REQUIRE(depths.ok());
  std::vector<std::string> topics;
  for (const QueueDepth& d : *depths) topics.push_back(d.topic);
  CHECK(topics == std::vector<std::string>{"", "archive", "demo", "mail"});
  const QueueDepth demo = depth_of(*broker, "demo");
  CHECK(demo.ready == 2);
  CHECK(demo.delayed == 2);  // due later + waiting in the dtask lane
  CHECK(demo.leased == 1);
  CHECK(demo.done == 2);
  CHECK(demo.dead == 0);
  CHECK(depth_of(*broker, "mail").ready == 1);
  CHECK(depth_of(*broker, "archive").dead == 1);
  const QueueDepth events = depth_of(*broker, "");  // the events channel and topic-less dead letters
  CHECK(events.ready == 1);
  CHECK(events.dead == 1);
}

TEST_CASE("sqlite broker: the queue counts follow every path that adds or takes queued rows",
          "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  auto broker = open_ok(options_for(db), clock);
  auto audit = [&](const char* step) {
    INFO("after " << step);
    CHECK(test::queue_count_mismatches(db) == "");
  };
  const WallMs now = clock.wall_now();
  OutMsg mail = task("m1", now);
  mail.topic = "mail";
  publish(*broker, {task("t1", now), task("t2", now), task("t3", now), task("later", now + 60'000),
                    task("d1", now, Lane::dtask), mail, event("e1"), event("e2"), event("e3")});
  publish(*broker, {task("t1", now)});  // a duplicate id inserts nothing and counts nothing
  audit("publishing");

  auto claimed = claim_ok(*broker, Lane::ntask, 2);
  REQUIRE(claimed.size() == 2);
  audit("a claim");
  Batch released;
  Settle back;
  back.kind = Settle::Kind::release;
  back.token = claimed[0].token;
  released.settle = {back, ack(claimed[1].token)};
  commit_ok(*broker, released);
  audit("a release and an ack");

  Batch failing;  // rolled back: a publish, then a settle of a token that was never claimed
  failing.publish = {task("t9", now)};
  failing.dead = {raw_dead_letter("r0")};
  failing.dead.back().kind = "bogus";
  CHECK_FALSE(broker->commit(failing).ok());
  audit("a failing batch");

  auto routed = broker->claim_and_commit(Lane::events, "", 2, [&](const std::vector<Delivery>& events) {
    Batch b;
    for (const Delivery& e : events) {
      Settle done = ack(e.token);
      done.then_publish = {task("of-" + e.id, now)};
      b.settle.push_back(done);
    }
    b.settle.back().then_publish.clear();
    b.settle.back().then_dead = raw_dead_letter("unroutable");
    return b;
  });
  REQUIRE(routed.ok());
  CHECK(*routed == 2);
  audit("routing events");
  auto event_claimed = claim_ok(*broker, Lane::events, 1, "");
  REQUIRE(event_claimed.size() == 1);
  Batch event_back;
  Settle event_release;
  event_release.kind = Settle::Kind::release;
  event_release.token = event_claimed[0].token;
  event_back.settle = {event_release};
  commit_ok(*broker, event_back);
  audit("releasing an event");

  // A retry: ack plus the same id on the dtask lane.
  auto to_retry = claim_ok(*broker, Lane::ntask, 1);
  REQUIRE(to_retry.size() == 1);
  Settle retry = ack(to_retry[0].token);
  retry.then_publish = {task(to_retry[0].id, now + 1'000, Lane::dtask, 1)};
  Batch retried;
  retried.settle = {retry};
  commit_ok(*broker, retried);
  audit("a retry");

  // Leases that expire: one task goes back to ready, one (exhausted) to the dead letters.
  publish(*broker, {task("last-try", now, Lane::ntask, 2, 3)});
  REQUIRE(claim_ok(*broker, Lane::ntask, 10).size() == 3);
  REQUIRE(claim_ok(*broker, Lane::events, 10, "").size() == 1);
  clock.advance(milliseconds(kLeaseMs + 1));
  auto reaper = open_ok(options_for(db, "testhost/ntask/reaper"), clock);  // the holder leaves its own
  auto recovered = reaper->recover_expired(Lane::ntask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 3);
  recovered = reaper->recover_expired(Lane::events, "");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 1);
  audit("recovering expired leases");
  {
    auto restarted = open_ok(options_for(db), clock);  // another incarnation of the same owner
    REQUIRE(claim_ok(*broker, Lane::ntask, 1).size() == 1);
    recovered = restarted->recover_previous_incarnation(Lane::ntask, "demo");
    REQUIRE(recovered.ok());
    CHECK(*recovered == 1);
  }
  audit("recovering a previous incarnation's leases");

  DeadLetterStore& store = broker->dead_letters();
  auto letters = store.list(0);
  REQUIRE(letters.ok());
  REQUIRE(letters->size() == 2);  // "unroutable" (raw) and "last-try"
  REQUIRE(store.replay((*letters)[0].seq, clock.wall_now()).ok());  // last-try, the newest
  audit("a replay");
  Batch more_dead;
  more_dead.dead = {raw_dead_letter("r1"), raw_dead_letter("r2"), raw_dead_letter("r3")};
  commit_ok(*broker, more_dead);
  letters = store.list(0);
  REQUIRE(letters.ok());
  auto purged = store.purge_selected({(*letters)[0].seq, (*letters)[0].seq, 999'999});
  REQUIRE(purged.ok());
  CHECK(*purged == 1);
  audit("purging selected dead letters");
  auto all = store.replay_all(clock.wall_now());
  REQUIRE(all.ok());
  auto emptied = store.purge();
  REQUIRE(emptied.ok());
  CHECK(*emptied == 3);
  audit("purging every dead letter");

  // Tasks taken the scheduler's way: read, then deleted if still ready.
  auto taken = broker->claim_and_commit(Lane::ntask, "demo", 1, [&](const std::vector<Delivery>& tasks) {
    Batch b;
    for (const Delivery& t : tasks) b.settle.push_back(ack(t.token));
    return b;
  });
  REQUIRE(taken.ok());
  CHECK(*taken == 1);
  audit("taking a task with claim_and_commit");

  const QueueDepth demo = depth_of(*broker, "demo");
  CHECK(demo.ready + demo.delayed + demo.leased > 0);
  CHECK(depth_of(*broker, "").dead == 0);
}

TEST_CASE("sqlite broker: recount (ebatsctl setup) counts the queued rows again after a writer that is not ebats changed them",
          "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  auto broker = open_ok(options_for(db), clock);
  publish(*broker, {task("t1", clock.wall_now()), task("t2", clock.wall_now()), event("e1")});
  Batch dead;
  dead.dead = {raw_dead_letter("r1")};
  commit_ok(*broker, dead);
  {
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
    CHECK(sqlite3_exec(raw, "DELETE FROM tasks WHERE id = 't1'; DELETE FROM dead_letters", nullptr, nullptr,
                       nullptr) == SQLITE_OK);
    sqlite3_close(raw);
  }
  const QueueDepth stale = depth_of(*broker, "demo");
  CHECK(stale.ready + stale.delayed == 2);  // the counts do not know
  const std::string mismatches = test::queue_count_mismatches(db);
  CHECK(mismatches.find("demo/n: kept 2, rows 1\n") != std::string::npos);
  CHECK(mismatches.find("/dead: kept 1, rows 0\n") != std::string::npos);
  REQUIRE(broker->setup({"demo"}).ok());  // a daemon's start: declares, counts nothing
  CHECK(test::queue_count_mismatches(db) != "");
  REQUIRE(broker->recount().ok());  // ebatsctl setup's
  CHECK(test::queue_count_mismatches(db) == "");
  CHECK(depth_of(*broker, "demo").ready == 1);
  CHECK(depth_of(*broker, "demo").delayed == 0);
  CHECK(depth_of(*broker, "").ready == 1);
  CHECK(depth_of(*broker, "").dead == 0);
}

TEST_CASE("sqlite broker: depths split ready tasks into due and delayed whichever part is larger",
          "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  auto broker = open_ok(options_for(db), clock);
  const WallMs now = clock.wall_now();
  // Parts around the first caps (256, 1024): all due, all later, and mixed both ways.
  struct Case {
    const char* topic;
    int due, later;
  };
  const Case cases[] = {{"due", 1500, 0}, {"later", 0, 1500}, {"mostly-due", 1300, 255}, {"mostly-later", 257, 1100},
                        {"even", 700, 700}};
  int n = 0;
  for (const Case& c : cases) {
    std::vector<OutMsg> tasks;
    for (int i = 0; i < c.due + c.later; ++i) {
      OutMsg t = task("x" + std::to_string(n++), i < c.due ? now - i : now + 1 + i);
      t.topic = c.topic;
      tasks.push_back(std::move(t));
    }
    publish(*broker, tasks);
  }
  for (const Case& c : cases) {
    INFO(c.topic);
    const QueueDepth d = depth_of(*broker, c.topic);
    CHECK(d.ready == static_cast<uint64_t>(c.due));
    CHECK(d.delayed == static_cast<uint64_t>(c.later));
  }
  clock.advance(milliseconds(2'000));  // now every task is due
  CHECK(depth_of(*broker, "even").ready == 1400);
  CHECK(depth_of(*broker, "even").delayed == 0);
  CHECK(test::queue_count_mismatches(db) == "");
}

namespace {

// Every table's columns (name, type, NOT NULL, primary key, default) and every
// index (name, table, columns, partial or not) of `db`, one line each, sorted.
std::vector<std::string> schema_lines(sqlite3* db) {
  std::vector<std::string> lines;
  auto rows = [&](const std::string& sql, const std::function<void(sqlite3_stmt*)>& each) {
    sqlite3_stmt* stmt = nullptr;
    INFO(sql);
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
    while (sqlite3_step(stmt) == SQLITE_ROW) each(stmt);
    sqlite3_finalize(stmt);
  };
  auto text = [](sqlite3_stmt* stmt, int i) {
    const unsigned char* t = sqlite3_column_text(stmt, i);
    return t != nullptr ? std::string(reinterpret_cast<const char*>(t)) : std::string("NULL");
  };
  std::vector<std::string> tables;
  rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
       [&](sqlite3_stmt* st) { tables.push_back(text(st, 0)); });
  for (const std::string& table : tables) {
    rows("PRAGMA table_info(" + table + ")", [&](sqlite3_stmt* st) {
      lines.push_back("column " + table + "." + text(st, 1) + " " + text(st, 2) + " notnull=" + text(st, 3) +
                      " default=" + text(st, 4) + " pk=" + text(st, 5));
    });
    rows("PRAGMA index_list(" + table + ")", [&](sqlite3_stmt* st) {
      if (text(st, 3) != "c") return;  // indexes of constraints (UNIQUE, PRIMARY KEY) show as columns above
      std::string line = "index " + text(st, 1) + " on " + table + " partial=" + text(st, 4) + " (";
      rows("PRAGMA index_info(" + text(st, 1) + ")", [&](sqlite3_stmt* col) { line += text(col, 2) + " "; });
      lines.push_back(line + ")");
    });
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

}  // namespace

TEST_CASE("docs: the schema shown in docs/BROKER.md is the schema ebats creates", "[sqlite][docs]") {
  std::ifstream in(std::string(EBATS_SOURCE_DIR) + "/docs/BROKER.md");
  REQUIRE(in);
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t section = doc.find("\n## Schema");
  REQUIRE(section != std::string::npos);
  const size_t begin = doc.find("```sql\n", section);
  REQUIRE(begin != std::string::npos);
  const size_t end = doc.find("```", begin + 7);
  REQUIRE(end != std::string::npos);
  const std::string shown = doc.substr(begin + 7, end - begin - 7);

  sqlite3* documented = nullptr;
  REQUIRE(sqlite3_open(":memory:", &documented) == SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(documented, shown.c_str(), nullptr, nullptr, &error);
  INFO((error != nullptr ? error : ""));
  CHECK(rc == SQLITE_OK);
  sqlite3_free(error);

  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  open_ok(options_for(db), clock);
  sqlite3* created = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &created) == SQLITE_OK);
  CHECK(schema_lines(documented) == schema_lines(created));
  sqlite3_close(created);
  sqlite3_close(documented);
}

TEST_CASE("sqlite broker: rows survive closing and reopening the file", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  {
    auto broker = open_ok(options_for(db), clock);
    publish(*broker, {task("t1", clock.wall_now()), event("e1")});
    Batch batch;
    batch.dead = {raw_dead_letter("r1")};
    commit_ok(*broker, batch);
  }
  BrokerOptions reopen = options_for(db);
  reopen.create = false;
  auto broker = open_ok(reopen, clock);
  CHECK(ids_of(claim_ok(*broker, Lane::ntask, 10)) == std::vector<std::string>{"t1"});
  CHECK(ids_of(claim_ok(*broker, Lane::events, 10)) == std::vector<std::string>{"e1"});
  auto dead = broker->dead_letters().list(0);
  REQUIRE(dead.ok());
  CHECK(dead->size() == 1);
}

TEST_CASE("sqlite broker: a version 1 database is migrated on open, done counts taken from its results",
          "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/ebats.db";
  ResultRecord ok;
  ok.topic = "demo";
  ok.status = "ok";
  ResultRecord mail = ok;
  mail.topic = "mail";
  ResultRecord failed = ok;
  failed.status = "failed";
  {
    auto broker = open_ok(options_for(db), clock);
    Batch batch;
    batch.results = {ok, ok, ok, mail, failed};
    commit_ok(*broker, batch);
    // Queued rows and a dead letter, for the queue counts version 4 adds.
    publish(*broker, {task("due", clock.wall_now()), task("later", clock.wall_now() + 60'000),
                      task("retry", clock.wall_now(), Lane::dtask), event("e1")});
    Batch dead;
    dead.dead = {raw_dead_letter("r")};
    commit_ok(*broker, dead);
  }
  {
    // Back to version 1 as it was: results, no topic_totals, no queue_counts.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
    CHECK(sqlite3_exec(raw, "DROP TABLE topic_totals; DROP TABLE queue_counts; PRAGMA user_version = 1", nullptr,
                       nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
  }
  BrokerOptions reopen = options_for(db);
  reopen.create = false;  // migrating is not creating
  auto broker = open_ok(reopen, clock);
  CHECK(depth_of(*broker, "demo").done == 3);
  CHECK(depth_of(*broker, "mail").done == 1);
  CHECK(depth_of(*broker, "demo").ready == 1);
  CHECK(depth_of(*broker, "demo").delayed == 2);
  CHECK(depth_of(*broker, "").ready == 1);
  CHECK(depth_of(*broker, "").dead == 1);
  CHECK(test::queue_count_mismatches(db) == "");
  Batch more;
  more.results = {ok, failed};
  commit_ok(*broker, more);
  CHECK(depth_of(*broker, "demo").done == 4);
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  CHECK(sqlite3_column_int(stmt, 0) == sqlite::kSchemaVersion);
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
}

TEST_CASE("sqlite broker: open errors say what to fix", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  SECTION("missing folder") {
    const std::string db = dir.path() + "/missing/ebats.db";
    auto broker = open_broker(options_for(db), clock);
    REQUIRE_FALSE(broker.ok());
    CHECK(broker.status().code() == StatusCode::io_error);
    CHECK_THAT(broker.status().message(), Catch::Contains(db) && Catch::Contains("No such file or directory") &&
                                              Catch::Contains("mkdir -p " + dir.path() + "/missing"));
  }
  SECTION("unwritable folder") {
    if (geteuid() == 0) return;  // root writes anywhere
    const std::string locked = dir.path() + "/locked";
    REQUIRE(mkdir(locked.c_str(), 0500) == 0);
    auto broker = open_broker(options_for(locked + "/ebats.db"), clock);
    REQUIRE_FALSE(broker.ok());
    CHECK(broker.status().code() == StatusCode::io_error);
    CHECK_THAT(broker.status().message(), Catch::Contains(locked + "/ebats.db") &&
                                              Catch::Contains("Permission denied") && Catch::Contains("permissions"));
  }
  SECTION("missing file without create") {
    BrokerOptions options = options_for(dir.path() + "/none.db");
    options.create = false;
    auto broker = open_broker(options, clock);
    REQUIRE_FALSE(broker.ok());
    CHECK(broker.status().code() == StatusCode::not_found);
    CHECK_THAT(broker.status().message(), Catch::Contains("none.db") && Catch::Contains("ebatsctl setup"));
  }
  SECTION("not a database") {
    const std::string db = dir.path() + "/garbage.db";
    FILE* f = fopen(db.c_str(), "w");
    REQUIRE(f != nullptr);
    fputs("this is not an SQLite database, just some text long enough to fill a header ......", f);
    fclose(f);
    auto broker = open_broker(options_for(db), clock);
    REQUIRE_FALSE(broker.ok());
    CHECK(broker.status().code() == StatusCode::io_error);
    CHECK_THAT(broker.status().message(), Catch::Contains(db));
  }
  SECTION("schema from a newer ebats") {
    const std::string db = dir.path() + "/newer.db";
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw, "PRAGMA user_version = 99", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
    auto broker = open_broker(options_for(db), clock);
    REQUIRE_FALSE(broker.ok());
    CHECK(broker.status().code() == StatusCode::unsupported);
    CHECK_THAT(broker.status().message(), Catch::Contains("schema version 99") && Catch::Contains("upgrade ebats"));
  }
  SECTION("unknown scheme, credentials not echoed") {
    BrokerOptions options;
    options.url = "mqtt://ebats:secret@mq1:1883/ebats";
    auto broker = open_broker(options, clock);
    REQUIRE_FALSE(broker.ok());
    CHECK(broker.status().code() == StatusCode::unsupported);
    CHECK_THAT(broker.status().message(), Catch::Contains("'mqtt://'") && Catch::Contains("sqlite:///"));
    CHECK_THAT(broker.status().message(), !Catch::Contains("secret"));
  }
  SECTION("a password in an AMQP URL is refused, and not echoed") {
    BrokerOptions options;
    options.url = "amqp://ebats:secret@mq1:5672/ebats";
    auto broker = open_broker(options, clock);
    REQUIRE_FALSE(broker.ok());
    CHECK(broker.status().code() == StatusCode::invalid_argument);
    CHECK_THAT(broker.status().message(), Catch::Contains("password_file") && Catch::Contains("EBATS_BROKER_PASSWORD"));
    CHECK_THAT(broker.status().message(), !Catch::Contains("secret"));
  }
  SECTION("no scheme or no path") {
    BrokerOptions options;
    options.url = "/var/lib/ebats/ebats.db";
    CHECK(open_broker(options, clock).status().code() == StatusCode::invalid_argument);
    options.url = "ebats:secret@mq1:5672/ebats";  // a scheme mistyped away: the password is not echoed
    CHECK_THAT(open_broker(options, clock).status().message(), !Catch::Contains("secret"));
    options.url = "sqlite://";
    auto broker = open_broker(options, clock);
    CHECK(broker.status().code() == StatusCode::invalid_argument);
    CHECK_THAT(broker.status().message(), Catch::Contains("names no database file"));
  }
}

TEST_CASE("sqlite broker: lane names", "[sqlite][broker]") {
  CHECK(std::string(lane_name(Lane::events)) == "events");
  CHECK(std::string(lane_name(Lane::ntask)) == "ntask");
  CHECK(std::string(lane_name(Lane::dtask)) == "dtask");
}

// Throughput of the hot path (not an assertion; run with "[.bench]").
TEST_CASE("sqlite broker: claim + commit throughput", "[.bench]") {
  TempDir dir;
  SystemClock clock;
  auto broker = open_ok(options_for(dir.path() + "/ebats.db"), clock);
  constexpr int kTasks = 20'000;
  for (uint32_t batch_size : {100u, 256u}) {
    const auto enqueue_start = std::chrono::steady_clock::now();
    for (int i = 0; i < kTasks; i += static_cast<int>(batch_size)) {
      Batch batch;
      for (int j = i; j < i + static_cast<int>(batch_size) && j < kTasks; ++j) {
        OutMsg m = task(std::to_string(batch_size) + "-" + std::to_string(j), clock.wall_now());
        m.body.resize(300, ' ');
        batch.publish.push_back(std::move(m));
      }
      commit_ok(*broker, batch);
    }
    const auto drain_start = std::chrono::steady_clock::now();
    int drained = 0;
    for (;;) {
      auto claimed = claim_ok(*broker, Lane::ntask, batch_size);
      if (claimed.empty()) break;
      Batch done;
      for (const Delivery& d : claimed) {
        done.settle.push_back(ack(d.token));
        ResultRecord r;
        r.topic = d.topic;
        r.task_id = d.id;
        r.task = d.name;
        r.params = "{\"order_id\":1}";
        r.status = "ok";
        r.host = "bench";
        done.results.push_back(r);
      }
      drained += static_cast<int>(commit_ok(*broker, done).settled);
    }
    const auto end = std::chrono::steady_clock::now();
    REQUIRE(drained == kTasks);
    const double enqueue_s = std::chrono::duration<double>(drain_start - enqueue_start).count();
    const double drain_s = std::chrono::duration<double>(end - drain_start).count();
    std::cout << "batch " << batch_size << ": enqueue " << static_cast<int>(kTasks / enqueue_s) << " tasks/s, claim+ack+result "
              << static_cast<int>(kTasks / drain_s) << " tasks/s\n";
  }
}

TEST_CASE("sqlite broker: claim_and_commit routes events and acks them in one transaction", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/q.db", "testhost/scheduler"), clock);
  publish(*broker, {event("e1"), event("e2"), event("e3")});
  std::vector<std::string> seen;
  auto handled = broker->claim_and_commit(Lane::events, "", 2, [&](const std::vector<Delivery>& events) {
    Batch b;
    for (const auto& e : events) {
      seen.push_back(e.id);
      b.publish.push_back(task("task-of-" + e.id, clock.wall_now()));
      b.settle.push_back(ack(e.token));
    }
    return b;
  });
  REQUIRE(handled.ok());
  CHECK(*handled == 2);
  CHECK(seen == std::vector<std::string>{"e1", "e2"});
  // The routed events are gone and their tasks are there; the third waits.
  CHECK(ids_of(claim_ok(*broker, Lane::ntask, 10)) == std::vector<std::string>{"task-of-e1", "task-of-e2"});
  CHECK(ids_of(claim_ok(*broker, Lane::events, 10, "")) == std::vector<std::string>{"e3"});
}

TEST_CASE("sqlite broker: two claim_and_commit routing the same event fan it out once", "[sqlite][broker]") {
  // Routing runs outside the write lock, so two schedulers can read the same
  // event; only the one whose ack finds the row still there publishes.
  TempDir dir;
  FakeClock clock;
  auto first = open_ok(options_for(dir.path() + "/q.db", "host-a/scheduler"), clock);
  auto second = open_ok(options_for(dir.path() + "/q.db", "host-b/scheduler"), clock);
  publish(*first, {event("e1")});
  auto fan_out = [&](const std::vector<Delivery>& events, const std::string& prefix) {
    Batch b;
    for (const auto& e : events) {
      Settle s = ack(e.token);
      s.then_publish.push_back(task(prefix + "-a-" + e.id, clock.wall_now()));
      s.then_publish.push_back(task(prefix + "-b-" + e.id, clock.wall_now()));
      b.settle.push_back(std::move(s));
    }
    return b;
  };
  size_t second_handled = 0;
  auto handled = first->claim_and_commit(Lane::events, "", 10, [&](const std::vector<Delivery>& events) {
    // While the first routes, the second reads, routes and commits e1.
    auto other = second->claim_and_commit(Lane::events, "", 10, [&](const std::vector<Delivery>& mine) {
      return fan_out(mine, "second");
    });
    REQUIRE(other.ok());
    second_handled = *other;
    return fan_out(events, "first");
  });
  REQUIRE(handled.ok());
  CHECK(*handled == 1);
  CHECK(second_handled == 1);
  CHECK(ids_of(claim_ok(*first, Lane::ntask, 10)) == std::vector<std::string>{"second-a-e1", "second-b-e1"});
  CHECK(claim_ok(*first, Lane::events, 10, "").empty());
}

TEST_CASE("sqlite broker: commit_routed claims what was queued first and leases the routed tasks it has room for",
          "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  const std::string db = dir.path() + "/q.db";
  auto broker = open_ok(options_for(db), clock);
  const WallMs now = clock.wall_now();
  OutMsg mail = task("mail-e0", now);
  mail.topic = "mail";
  publish(*broker, {task("old-1", now), task("old-2", now), event("e1"), event("e2"), event("e3")});
  auto route = [&](const std::vector<Delivery>& events) {
    Batch b;
    for (const auto& e : events) {
      Settle s = ack(e.token);
      s.then_publish.push_back(task("of-" + e.id, now));
      OutMsg later = task("later-" + e.id, now + 60'000);  // not due: stays queued
      s.then_publish.push_back(later);
      OutMsg other = task("mail-" + e.id, now);  // another topic's
      other.topic = "mail";
      s.then_publish.push_back(other);
      b.settle.push_back(std::move(s));
    }
    return b;
  };
  auto r = ebats::test::route_and_claim(*broker, 512, route, "demo", 4);
  CHECK(r.events == 3);
  // Oldest first: the two queued before, then the routed ones while room lasts.
  CHECK(ids_of(r.claimed) == std::vector<std::string>{"old-1", "old-2", "of-e1", "of-e2"});
  for (const Delivery& d : r.claimed) {
    CHECK(d.lane == Lane::ntask);
    CHECK(d.topic == "demo");
    CHECK(d.name == "closeOrder");
    CHECK(d.max_attempts == 3);
    CHECK_FALSE(d.body.empty());
  }
  CHECK(test::queue_count_mismatches(db) == "");
  // The rest are queued as the scheduler would have left them.
  const auto rest = claim_ok(*broker, Lane::ntask, 10);
  CHECK(ids_of(rest) == std::vector<std::string>{"of-e3"});
  CHECK(ids_of(claim_ok(*broker, Lane::ntask, 10, "mail")) ==
        std::vector<std::string>{"mail-e1", "mail-e2", "mail-e3"});
  CHECK(claim_ok(*broker, Lane::events, 10, "").empty());
  // What it leased is held like any claim: extended, and settled by its token and id.
  std::vector<uint64_t> tokens;
  for (const Delivery& d : r.claimed) tokens.push_back(d.token);
  REQUIRE(broker->extend(tokens).ok());
  Batch done;
  std::vector<Delivery> held_now = r.claimed;
  held_now.insert(held_now.end(), rest.begin(), rest.end());
  for (const Delivery& d : held_now) {
    Settle s = ack(d.token);
    s.id = d.id;
    done.settle.push_back(s);
  }
  CHECK(commit_ok(*broker, done).settled == 5);
  CHECK(test::queue_count_mismatches(db) == "");
  // Another worker of the topic recovers such leases once they expire, as any others.
  publish(*broker, {event("e4")});
  auto held = ebats::test::route_and_claim(*broker, 512, route, "demo", 1);
  REQUIRE(ids_of(held.claimed) == std::vector<std::string>{"of-e4"});
  auto other = open_ok(options_for(db, "otherhost/ntask/demo"), clock);
  clock.advance(std::chrono::milliseconds(kLeaseMs + 1));
  auto recovered = other->recover_expired(Lane::ntask, "demo");
  REQUIRE(recovered.ok());
  CHECK(*recovered == 1);
  auto again = claim_ok(*other, Lane::ntask, 10);
  CHECK(ids_of(again) == std::vector<std::string>{"of-e4"});
  CHECK(again.front().attempt == 1);
  CHECK(test::queue_count_mismatches(db) == "");
}

namespace {

// A scheduler's broker whose claim_and_commit reads at most `budget` bytes.
std::unique_ptr<Broker> open_with_read_budget(const TempDir& dir, const Clock& clock, uint64_t budget) {
  BrokerOptions options = options_for(dir.path() + "/q.db", "testhost/scheduler");
  options.read_budget_bytes = budget;
  return open_ok(options, clock);
}

// One claim_and_commit that routes (acks) whatever it reads; returns the ids.
std::vector<std::string> route_what_is_read(Broker& broker) {
  std::vector<std::string> ids;
  auto handled = broker.claim_and_commit(Lane::events, "", 10, [&](const std::vector<Delivery>& events) {
    Batch b;
    for (const auto& e : events) {
      ids.push_back(e.id);
      b.settle.push_back(ack(e.token));
    }
    return b;
  });
  REQUIRE(handled.ok());
  CHECK(*handled == ids.size());
  return ids;
}

OutMsg event_of_size(const std::string& id, size_t bytes) {
  OutMsg e = event(id);
  e.body = std::string(bytes, 'x');
  return e;
}

}  // namespace

TEST_CASE("sqlite broker: claim_and_commit stops reading once the bodies reach the read budget", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_with_read_budget(dir, clock, 1000);
  publish(*broker, {event_of_size("e1", 600), event_of_size("e2", 600), event_of_size("e3", 600),
                    event_of_size("e4", 600)});
  // 600 bytes are below the budget, 1200 reach it: two per read, then none.
  CHECK(route_what_is_read(*broker) == std::vector<std::string>{"e1", "e2"});
  CHECK(route_what_is_read(*broker) == std::vector<std::string>{"e3", "e4"});
  CHECK(route_what_is_read(*broker).empty());
}

TEST_CASE("sqlite broker: a single message larger than the read budget is still read", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_with_read_budget(dir, clock, 100);
  publish(*broker, {event_of_size("huge", 5000), event("small")});
  CHECK(route_what_is_read(*broker) == std::vector<std::string>{"huge"});  // never stuck behind it
  CHECK(route_what_is_read(*broker) == std::vector<std::string>{"small"});
}

TEST_CASE("sqlite broker: a failing claim_and_commit leaves the events ready and publishes nothing",
          "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/q.db", "testhost/scheduler"), clock);
  publish(*broker, {event("e1")});
  auto handled = broker->claim_and_commit(Lane::events, "", 10, [&](const std::vector<Delivery>& events) {
    Batch b;
    b.publish.push_back(task("fine", clock.wall_now()));
    b.publish.push_back(task("", clock.wall_now()));  // no id: the insert fails
    b.settle.push_back(ack(events.front().token));
    return b;
  });
  CHECK_FALSE(handled.ok());
  CHECK(claim_ok(*broker, Lane::ntask, 10).empty());
  CHECK(ids_of(claim_ok(*broker, Lane::events, 10, "")) == std::vector<std::string>{"e1"});
  // e1 is leased by the claim above, so nothing is ready: the route is not called.
  bool called = false;
  auto none = broker->claim_and_commit(Lane::events, "", 10, [&](const std::vector<Delivery>&) {
    called = true;
    return Batch();
  });
  REQUIRE(none.ok());
  CHECK(*none == 0);
  CHECK_FALSE(called);
}

TEST_CASE("sqlite broker: claim_ahead takes tasks due within the lookahead, and no later ones", "[sqlite][broker]") {
  TempDir dir;
  FakeClock clock;
  auto broker = open_ok(options_for(dir.path() + "/q.db"), clock);
  const WallMs now = clock.wall_now();
  publish(*broker, {task("soon", now + 30, Lane::dtask), task("later", now + 80, Lane::dtask)});
  CHECK(claim_ok(*broker, Lane::dtask, 10).empty());  // claim() takes nothing not yet due
  auto ahead = broker->claim_ahead(Lane::dtask, "demo", 10, 50);
  REQUIRE(ahead.ok());
  CHECK(ids_of(*ahead) == std::vector<std::string>{"soon"});
  CHECK(ahead->front().due_at == now + 30);  // the caller starts it at its due time
}
