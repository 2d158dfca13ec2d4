// Wake-ups on the SQLite broker (broker/sqlite/sqlite_wake.h): a commit that
// adds work wakes the daemons subscribed to its lane and topic, and only them.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "broker/sqlite/sqlite_wake.h"
#include "ebats/broker.h"
#include "ebats/clock.h"
#include "support/broker_calls.h"
#include "support/temp_dir.h"

using namespace ebats;

namespace {

// True when `fd` has a datagram waiting (no waiting: the sender has sent it
// before its call returned).
bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

std::unique_ptr<Broker> open_ok(const std::string& db, const Clock& clock, const std::string& owner) {
  BrokerOptions options;
  options.url = "sqlite://" + db;
  options.owner = owner;
  auto broker = open_broker(options, clock);
  INFO(broker.status().to_string());
  REQUIRE(broker.ok());
  return std::move(*broker);
}

// A broker of `owner` listening for (lane, topic), as a daemon subscribes.
std::unique_ptr<Broker> subscribed(const std::string& db, const Clock& clock, const std::string& owner, Lane lane,
                                   const std::string& topic) {
  auto broker = open_ok(db, clock, owner);
  REQUIRE(broker->subscribe(lane, topic, 8).ok());
  return broker;
}

OutMsg task_for(const std::string& topic, const std::string& id, WallMs due_at, Lane lane = Lane::ntask) {
  OutMsg m;
  m.lane = lane;
  m.topic = topic;
  m.id = id;
  m.name = "noop";
  m.body = "{}";
  m.due_at = due_at;
  m.max_attempts = 3;
  return m;
}

// A socket file nobody listens on, as a killed daemon leaves: bound, then closed.
void leave_dead_socket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
  ::close(fd);
}

}  // namespace

TEST_CASE("sqlite wake: a commit wakes the daemons of its lane and topic, and no other", "[sqlite][wake]") {
  test::TempDir dir;
  SystemClock clock;
  const std::string db = dir.file("ebats.db");
  auto publisher = open_ok(db, clock, "host/publisher");
  auto demo = subscribed(db, clock, "host/ntask/demo", Lane::ntask, "demo");
  auto other = subscribed(db, clock, "host/ntask/other", Lane::ntask, "other");
  auto delayed = subscribed(db, clock, "host/dtask/demo", Lane::dtask, "demo");
  auto scheduler = subscribed(db, clock, "host/scheduler", Lane::events, "");
  CHECK(publisher->wake_fd() < 0);  // nothing subscribed: nothing to wake
  REQUIRE(demo->wake_fd() >= 0);
  CHECK(std::filesystem::is_socket(db + ".wake/ntask.demo." + std::to_string(::getpid())));
  CHECK(std::filesystem::is_socket(db + ".wake/events." + std::to_string(::getpid())));
  CHECK_FALSE(readable(demo->wake_fd()));

  const WallMs now = clock.wall_now();
  test::publish(*publisher, {task_for("demo", "t1", now)});
  CHECK(readable(demo->wake_fd()));
  CHECK_FALSE(readable(other->wake_fd()));
  CHECK_FALSE(readable(delayed->wake_fd()));
  CHECK_FALSE(readable(scheduler->wake_fd()));

  // A look at the table reads the wake-ups first: the socket is quiet again.
  auto claimed = demo->claim(Lane::ntask, "demo", 8);
  REQUIRE(claimed.ok());
  CHECK(claimed->size() == 1);
  CHECK_FALSE(readable(demo->wake_fd()));

  // A delayed task wakes the dtask worker (it learns the new due time), an event the scheduler.
  test::publish(*publisher, {task_for("demo", "t2", now + 60'000, Lane::dtask)});
  CHECK(readable(delayed->wake_fd()));
  CHECK_FALSE(readable(demo->wake_fd()));
  OutMsg event;
  event.lane = Lane::events;
  event.id = "e1";
  event.name = "order_paid";
  event.body = "{}";
  test::publish(*publisher, {event});
  CHECK(readable(scheduler->wake_fd()));
  CHECK_FALSE(readable(other->wake_fd()));

  // The same id again inserts nothing, and wakes nobody.
  (void)demo->claim(Lane::ntask, "demo", 8);
  test::publish(*publisher, {task_for("demo", "t1", now)});
  CHECK_FALSE(readable(demo->wake_fd()));
}

TEST_CASE("sqlite wake: a retry committed by a worker wakes the dtask worker, a replayed dead letter the ntask one",
          "[sqlite][wake]") {
  test::TempDir dir;
  SystemClock clock;
  const std::string db = dir.file("ebats.db");
  auto worker = subscribed(db, clock, "host/ntask/demo", Lane::ntask, "demo");
  auto delayed = subscribed(db, clock, "host/dtask/demo", Lane::dtask, "demo");
  auto ctl = open_ok(db, clock, "host/ebatsctl");
  const WallMs now = clock.wall_now();
  test::publish(*ctl, {task_for("demo", "t1", now)});
  auto claimed = worker->claim(Lane::ntask, "demo", 8);
  REQUIRE(claimed.ok());
  REQUIRE(claimed->size() == 1);

  Batch retry;
  Settle settle;
  settle.token = claimed->front().token;
  OutMsg again = task_for("demo", "t1", now + 5'000, Lane::dtask);
  again.attempt = 1;
  settle.then_publish.push_back(again);
  DeadLetter letter;
  letter.id = "t9";
  letter.kind = "task";
  letter.topic = "demo";
  letter.name = "noop";
  letter.reason = "failed";
  letter.body = "{}";
  letter.attempts = 1;
  retry.settle.push_back(settle);
  retry.dead.push_back(letter);
  test::commit_ok(*worker, retry);
  CHECK(readable(delayed->wake_fd()));
  CHECK_FALSE(readable(worker->wake_fd()));  // a dead letter is nobody's work

  auto dead = ctl->dead_letters().list(0);
  REQUIRE(dead.ok());
  REQUIRE(dead->size() == 1);
  REQUIRE(ctl->dead_letters().replay(dead->front().seq, now).ok());
  CHECK(readable(worker->wake_fd()));
}

TEST_CASE("sqlite wake: tasks a stopping worker releases wake the other workers of its topic", "[sqlite][wake]") {
  test::TempDir dir;
  SystemClock clock;
  const std::string db = dir.file("ebats.db");
  auto stopping = subscribed(db, clock, "host/ntask/demo", Lane::ntask, "demo");
  auto staying = subscribed(db, clock, "host/ntask/demo", Lane::ntask, "demo");
  auto ctl = open_ok(db, clock, "host/ebatsctl");
  test::publish(*ctl, {task_for("demo", "t1", clock.wall_now()), task_for("demo", "t2", clock.wall_now())});
  auto claimed = stopping->claim(Lane::ntask, "demo", 8);
  REQUIRE(claimed.ok());
  REQUIRE(claimed->size() == 2);
  (void)staying->claim(Lane::ntask, "demo", 8);  // finds nothing, and reads its wake-up
  REQUIRE_FALSE(readable(staying->wake_fd()));
  Batch release;
  for (const Delivery& d : *claimed) {
    Settle settle;
    settle.kind = Settle::Kind::release;
    settle.token = d.token;
    release.settle.push_back(settle);
  }
  test::commit_ok(*stopping, release);
  CHECK(readable(staying->wake_fd()));
  auto taken = staying->claim(Lane::ntask, "demo", 8);
  REQUIRE(taken.ok());
  CHECK(taken->size() == 2);
}

TEST_CASE("sqlite wake: a daemon's names go with it, and a dead one's leftover is cleared by the next wake-up",
          "[sqlite][wake]") {
  test::TempDir dir;
  SystemClock clock;
  const std::string db = dir.file("ebats.db");
  auto publisher = open_ok(db, clock, "host/publisher");
  const std::string folder = db + ".wake";
  {
    auto worker = subscribed(db, clock, "host/ntask/demo", Lane::ntask, "demo");
    CHECK(std::filesystem::exists(folder + "/ntask.demo." + std::to_string(::getpid())));
  }
  CHECK_FALSE(std::filesystem::exists(folder + "/ntask.demo." + std::to_string(::getpid())));

  const std::string leftover = folder + "/ntask.demo.999999999";
  leave_dead_socket(leftover);
  REQUIRE(std::filesystem::exists(leftover));
  test::publish(*publisher, {task_for("demo", "t1", clock.wall_now())});
  CHECK_FALSE(std::filesystem::exists(leftover));
}

TEST_CASE("sqlite wake: the wake folder takes the database's permissions", "[sqlite][wake]") {
  test::TempDir dir;
  SystemClock clock;
  const std::string db = dir.file("ebats.db");
  auto worker = open_ok(db, clock, "host/ntask/demo");
  REQUIRE(::chmod(db.c_str(), 0660) == 0);
  REQUIRE(worker->subscribe(Lane::ntask, "demo", 8).ok());
  struct stat folder {};
  REQUIRE(::stat((db + ".wake").c_str(), &folder) == 0);
  CHECK((folder.st_mode & 0777) == 0770);
  struct stat socket_file {};
  REQUIRE(::stat((db + ".wake/ntask.demo." + std::to_string(::getpid())).c_str(), &socket_file) == 0);
  CHECK((socket_file.st_mode & 0777) == 0660);
}

TEST_CASE("sqlite wake: a socket path too long for a sockaddr leaves the daemon polling, with a warning",
          "[sqlite][wake]") {
  test::TempDir dir;
  SystemClock clock;
  const std::string deep = dir.path() + "/" + std::string(90, 'd');
  std::filesystem::create_directories(deep);
  BrokerOptions options;
  options.url = "sqlite://" + deep + "/ebats.db";
  options.owner = "host/ntask/demo";
  std::string warned;
  options.on_event = [&](const BrokerEvent& e) { warned += e.message; };
  auto broker = open_broker(options, clock);
  REQUIRE(broker.ok());
  REQUIRE((*broker)->subscribe(Lane::ntask, "demo", 8).ok());
  CHECK((*broker)->wake_fd() < 0);
  CHECK_THAT(warned, Catch::Contains("no wake-ups") && Catch::Contains("longer than"));
}

TEST_CASE("sqlite wake: clearing a dead daemon's leftover leaves the live daemons' names alone", "[sqlite][wake]") {
  // A send that succeeded was taken for a failure when an earlier send had
  // left ECONNREFUSED in errno: the live daemon's name was unlinked with the
  // dead one's, and it was never woken again. Leftovers of several dead
  // daemons make one come before the live name in the folder's order.
  test::TempDir dir;
  SystemClock clock;
  const std::string db = dir.file("ebats.db");
  auto publisher = open_ok(db, clock, "host/publisher");
  auto worker = subscribed(db, clock, "host/ntask/demo", Lane::ntask, "demo");
  const std::string folder = db + ".wake";
  const std::string live = folder + "/ntask.demo." + std::to_string(::getpid());
  REQUIRE(std::filesystem::exists(live));
  for (int i = 0; i < 8; ++i) leave_dead_socket(folder + "/ntask.demo." + std::to_string(999999990 + i));
  test::publish(*publisher, {task_for("demo", "t1", clock.wall_now())});
  size_t left = 0;
  for (const auto& e : std::filesystem::directory_iterator(folder)) {
    left += e.path().filename().string().rfind("ntask.demo.99999999", 0) == 0 ? 1 : 0;
  }
  CHECK(left == 0);
  CHECK(std::filesystem::exists(live));
  // And it is still woken.
  test::publish(*publisher, {task_for("demo", "t2", clock.wall_now())});
  CHECK(std::filesystem::exists(live));
}
