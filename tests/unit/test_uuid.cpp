// UUIDs: v5 against RFC 9562's published example on the code path task ids
// use, task id stability and order, and v4 uniqueness across threads and fork().
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ebats/envelope.h"
#include "envelope/uuid_v5.h"

namespace {

constexpr const char* kDnsNamespace = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
constexpr const char* kEventId = "0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a11";

char version_of(const std::string& u) { return u.at(14); }
bool has_rfc_variant(const std::string& u) {
  const char c = u.at(19);
  return c == '8' || c == '9' || c == 'a' || c == 'b';
}

}  // namespace

TEST_CASE("uuid_v5 reproduces RFC 9562's example", "[uuid]") {
  // RFC 9562, Appendix A.4: v5 of "www.example.com" in the DNS namespace.
  CHECK(ebats::uuid_v5(kDnsNamespace, "www.example.com") == "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}

TEST_CASE("uuid_v5 refuses a namespace that is not a lowercase UUID", "[uuid]") {
  CHECK(ebats::uuid_v5("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "x").empty());
  CHECK(ebats::uuid_v5("not-a-uuid", "x").empty());
}

TEST_CASE("task ids are v8: the event id's first 64 bits, then v5 bits over event id, event, task and topic",
          "[uuid]") {
  const std::string id = ebats::task_uuid(kEventId, "order_create", "closeOrder", "demo");
  const std::string v5 =
      ebats::uuid_v5(ebats::kEbatsUuidNamespace, std::string(kEventId) + "\norder_create\ncloseOrder\ndemo");
  CHECK(id.substr(0, 14) == std::string(kEventId).substr(0, 14));  // 64 bits of the event id...
  CHECK(id.substr(15, 3) == std::string(kEventId).substr(15, 3));  // ...past its version nibble
  CHECK(id.substr(18) == v5.substr(18));                           // the last 64 bits of the v5
  // Pinned (computed independently with Python's uuid module, docs/WIRE.md
  // §3): a change here changes every task id on the wire.
  CHECK(id == "0b7e4a52-9c1f-8d7e-b27f-45b936a9303f");
  CHECK(ebats::is_valid_uuid(id));
  CHECK(version_of(id) == '8');
  CHECK(has_rfc_variant(id));
}

TEST_CASE("task ids are deterministic and differ per event, task and topic", "[uuid]") {
  const std::string base = ebats::task_uuid(kEventId, "order_create", "closeOrder", "demo");
  CHECK(ebats::task_uuid(kEventId, "order_create", "closeOrder", "demo") == base);
  std::set<std::string> ids{base};
  ids.insert(ebats::task_uuid(kEventId, "order_create", "sendReceipt", "demo"));
  ids.insert(ebats::task_uuid(kEventId, "order_create", "closeOrder", "billing"));
  ids.insert(ebats::task_uuid(kEventId, "order_paid", "closeOrder", "demo"));
  ids.insert(ebats::task_uuid("5f0c9a3e-1d2b-4c6a-9e8f-7a6b5c4d3e2f", "order_create", "closeOrder", "demo"));
  // The separator keeps ("ab","c") apart from ("a","bc").
  ids.insert(ebats::task_uuid(kEventId, "order_create", "closeOrde", "rdemo"));
  CHECK(ids.size() == 6);
  CHECK(ebats::task_uuid(kEventId, "order_create", "sendReceipt", "demo") == "0b7e4a52-9c1f-8d7e-8d42-242bf94dd634");
}

TEST_CASE("task ids of later v7 events sort later, within a millisecond too", "[uuid]") {
  const ebats::WallMs t = 1'732'550'400'123;
  const std::string early = ebats::new_uuid_v7(t);
  const std::string same_ms = ebats::new_uuid_v7(t);  // the counter: later in the same millisecond
  const std::string late = ebats::new_uuid_v7(t + 1);
  for (const char* task : {"a", "b", "closeOrder", "sendReceipt"}) {
    const std::string from_early = ebats::task_uuid(early, "order_paied", task, "demo");
    CHECK(from_early.substr(0, 13) == "0193640d-187b");
    for (const std::string& later : {same_ms, late}) {
      CHECK(from_early < ebats::task_uuid(later, "order_paied", "a", "demo"));
      CHECK(from_early < ebats::task_uuid(later, "order_paied", "z", "demo"));
    }
  }
  CHECK(ebats::task_uuid("0193640d-187b-7a3c-9e8f-7a6b5c4d3e2f", "order_create", "closeOrder", "demo") ==
        "0193640d-187b-8a3c-8631-ea34d0c3f1c4");
}

TEST_CASE("v4 ids are valid, random-version and unique across threads", "[uuid]") {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<std::string>> drawn(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&drawn, t] {
      for (int i = 0; i < kPerThread; ++i) drawn[t].push_back(ebats::new_uuid_v4());
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> all;
  for (const auto& ids : drawn) {
    for (const auto& id : ids) {
      REQUIRE(ebats::is_valid_uuid(id));
      REQUIRE(version_of(id) == '4');
      REQUIRE(has_rfc_variant(id));
      all.insert(id);
    }
  }
  CHECK(all.size() == static_cast<size_t>(kThreads * kPerThread));
}

namespace {

// Forks; the child makes one id with `make` and hands it back through a pipe,
// while the parent makes its own next one. Returns {child's, parent's}.
std::pair<std::string, std::string> ids_across_fork(const std::function<std::string()>& make) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const std::string id = make();
    const ssize_t n = write(fds[1], id.data(), id.size());
    _exit(n == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  close(fds[1]);
  const std::string parent_next = make();
  std::string child_id(36, '\0');
  size_t got = 0;
  while (got < child_id.size()) {
    const ssize_t n = read(fds[0], &child_id[got], child_id.size() - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(got == child_id.size());
  return {child_id, parent_next};
}

}  // namespace

TEST_CASE("a forked child does not repeat its parent's v4 ids", "[uuid]") {
  (void)ebats::new_uuid_v4();  // the generator of this thread is now seeded
  const auto [child_id, parent_next] = ids_across_fork([] { return ebats::new_uuid_v4(); });
  CHECK(ebats::is_valid_uuid(child_id));
  CHECK(child_id != parent_next);
}

TEST_CASE("a forked child does not repeat its parent's v7 ids of the same millisecond", "[uuid]") {
  // Same millisecond, same counter (copied into the child): only the random
  // bits, drawn from the source v4 ids share, can tell the two ids apart.
  const ebats::WallMs now = 1'800'000'000'000;
  (void)ebats::new_uuid_v4();
  (void)ebats::new_uuid_v7(now);
  const auto [child_id, parent_next] = ids_across_fork([now] { return ebats::new_uuid_v7(now); });
  CHECK(ebats::is_valid_uuid(child_id));
  CHECK(child_id.substr(0, 19) == parent_next.substr(0, 19));  // time, version and counter alike
  CHECK(child_id != parent_next);
}

TEST_CASE("is_valid_uuid accepts only lowercase 8-4-4-4-12", "[uuid]") {
  CHECK(ebats::is_valid_uuid(kEventId));
  CHECK(ebats::is_valid_uuid("00000000-0000-0000-0000-000000000000"));
  CHECK_FALSE(ebats::is_valid_uuid("0B7E4A52-9C1F-4D7E-8A34-2F6C1D9E0A11"));
  CHECK_FALSE(ebats::is_valid_uuid("0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a1"));
  CHECK_FALSE(ebats::is_valid_uuid("0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a111"));
  CHECK_FALSE(ebats::is_valid_uuid("0b7e4a529c1f-4d7e-8a34-2f6c1d9e0a11-"));
  CHECK_FALSE(ebats::is_valid_uuid("{0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a}"));
  CHECK_FALSE(ebats::is_valid_uuid("0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a1g"));
  CHECK_FALSE(ebats::is_valid_uuid(""));
}

TEST_CASE("v7 ids are valid, carry their millisecond and sort by time", "[uuid]") {
  const ebats::WallMs t = 1'732'550'400'123;  // 0x0193640d187b
  const std::string a = ebats::new_uuid_v7(t);
  const std::string b = ebats::new_uuid_v7(t + 1);
  const std::string c = ebats::new_uuid_v7(t);
  CHECK(ebats::is_valid_uuid(a));
  CHECK(a.substr(0, 13) == "0193640d-187b");  // the 48-bit timestamp, big-endian
  CHECK(a[14] == '7');                        // version 7
  CHECK(std::string("89ab").find(a[19]) != std::string::npos);  // RFC 9562 variant
  CHECK(a < b);                               // later ids sort later
  CHECK(a != c);                              // the same millisecond still differs
}

TEST_CASE("v7 ids of one thread sort in the order made within a millisecond, past the counter's end too",
          "[uuid]") {
  const ebats::WallMs t = 1'732'550'400'777;
  std::vector<std::string> ids;
  for (int i = 0; i < 5000; ++i) ids.push_back(ebats::new_uuid_v7(t));
  // The first 4096 carry counters 0..4095 and sort in order; the rest hold
  // the counter at 4095 and stay unique through their random bits.
  for (size_t i = 1; i < 4096; ++i) REQUIRE(ids[i - 1] < ids[i]);
  CHECK(ids[0].substr(14, 4) == "7000");
  CHECK(ids[4095].substr(14, 4) == "7fff");
  CHECK(ids[4999].substr(14, 4) == "7fff");
  CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
  // A new millisecond starts the counter again.
  CHECK(ebats::new_uuid_v7(t + 1).substr(14, 4) == "7000");
}
