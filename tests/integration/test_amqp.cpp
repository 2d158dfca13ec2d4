// RabbitMQ only: what the SQLite backend has no counterpart for. The queue
// arguments, logins, TLS, foreign messages in ebats' queues, delays through
// the delay levels, heartbeats during long tasks, the results stream, and
// several schedulers. Run in the "amqp" pass against the private node.
#include <signal.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <thread>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "broker/amqp/amqp_broker.h"
#include "broker/amqp/amqp_connection.h"
#include "broker/amqp/amqp_url.h"
#include "ebats/envelope.h"
#include "envelope/task_message.h"
#include "integration/harness.h"
#include "support/test_backend.h"

using ebats::test::TestSystem;
using namespace std::chrono_literals;
namespace amqp = ebats::amqp;

namespace {

std::string bin(const std::string& program) { return std::string(EBATS_BIN_DIR) + "/" + program; }

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  return text;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A connection of a foreign producer, straight to the private node.
std::unique_ptr<amqp::AmqpConnection> foreign_connection() {
  auto endpoint = amqp::parse_amqp_url(ebats::test::amqp_url());
  REQUIRE(endpoint.ok());
  amqp::ConnectOptions o;
  o.endpoint = *endpoint;
  o.password = "guest";
  o.connection_name = "ebats test: foreign producer";
  auto c = amqp::AmqpConnection::open(o);
  INFO(c.status().to_string());
  REQUIRE(c.ok());
  REQUIRE((*c)->open_channel(1).ok());
  return std::move(c).value();
}

// Publishes `body` into `queue` through the default exchange, as any AMQP
// client could.
void publish_raw(amqp::AmqpConnection& c, const std::string& queue, const std::string& body,
                 const std::string& message_id = "") {
  amqp::OutMessage m;
  m.exchange = "";
  m.routing_key = queue;
  m.body = body;
  m.properties.message_id = message_id;
  m.properties.content_type = "application/json";
  m.mandatory = false;
  REQUIRE(c.publish(1, m).ok());
}

ebats::Envelope task_envelope(const std::string& task, const std::string& topic) {
  ebats::Envelope e;
  e.kind = ebats::EnvelopeKind::task;
  e.created_at = ebats::SystemClock().wall_now();
  e.id = ebats::new_uuid_v7(e.created_at);
  e.task = task;
  e.topic = topic;
  e.due_at = e.created_at;
  e.max_attempts = 3;
  return e;
}

// Runs the scheduler and the ntask worker of topic t until `done`, then stops them.
void stop_after(TestSystem& sys, const std::function<bool()>& done) {
  auto& scheduler = sys.start_scheduler();
  auto& worker = sys.start_ntask();
  REQUIRE(TestSystem::wait_until(done));
  for (auto* d : {&scheduler, &worker}) d->signal(SIGTERM);
  for (auto* d : {&scheduler, &worker}) CHECK(d->wait(20s) == 0);
}

}  // namespace

TEST_CASE("RabbitMQ: a queue that exists with other arguments stops a daemon with a clear error and exit 2",
          "[integration][amqp-only]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t, delay: 1s}\n");
  std::string out;
  REQUIRE(sys.ebatsctl({"setup"}, &out) == 0);
  CHECK(out.find("ready: on amqp://") != std::string::npos);
  CHECK(out.find("the delay levels, the dead letters, the results and 1 topic (t) exist") != std::string::npos);
  // Another delay unit means other TTLs on the delay-level queues.
  sys.edit_config("delay_unit: 100ms", "delay_unit: 200ms");
  CHECK(sys.run({bin("ebats-scheduler"), "--config", sys.config_path()}, &out) == 2);
  INFO(out);
  CHECK(out.find("queue '" + sys.prefix() + ".delay.00' exists with other arguments") != std::string::npos);
  CHECK(out.find("x-message-ttl") != std::string::npos);
  CHECK(sys.run({bin("ebats-dtask-worker"), "--config", sys.config_path(), "--topic", "t"}, &out) == 2);
  CHECK(out.find("x-message-ttl") != std::string::npos);
  // The ntask worker too: its retries go through the levels.
  CHECK(sys.run({bin("ebats-ntask-worker"), "--config", sys.config_path(), "--topic", "t"}, &out) == 2);
  CHECK(out.find("queue '" + sys.prefix() + ".delay.00' exists with other arguments") != std::string::npos);
  CHECK(sys.ebatsctl({"setup"}) == 2);
}

TEST_CASE("RabbitMQ: a wrong password or an unreachable broker is one clear line and a non-zero exit, not a hang",
          "[integration][amqp-only]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  const std::string where = amqp::parse_amqp_url(ebats::test::amqp_url())->display();
  const std::map<std::string, std::string> wrong{{"EBATS_BROKER_PASSWORD", "not-the-password"}};
  std::string out;
  CHECK(sys.run({bin("ebatsctl"), "--config", sys.config_path(), "stats"}, &out, wrong) == 1);
  INFO(out);
  CHECK(out.find("cannot log in to " + where) != std::string::npos);
  CHECK(out.find("ACCESS_REFUSED") != std::string::npos);
  CHECK(out.find("not-the-password") == std::string::npos);
  CHECK(sys.run({bin("ebats-ntask-worker"), "--config", sys.config_path(), "--topic", "t"}, &out, wrong) == 1);
  CHECK(out.find("cannot log in to " + where) != std::string::npos);
  CHECK(sys.run({bin("ebats-scheduler"), "--config", sys.config_path(), "--check-config"}, &out, wrong) == 1);
  CHECK(out.find("cannot log in") != std::string::npos);

  // Nothing listens on port 1.
  sys.edit_config(ebats::test::amqp_url(), "amqp://guest@127.0.0.1:1/");
  CHECK(sys.run({bin("ebats-scheduler"), "--config", sys.config_path(), "--check-config"}, &out) == 1);
  CHECK(out.find("cannot connect to amqp://guest@127.0.0.1:1/") != std::string::npos);
  CHECK(sys.run({bin("ebatsctl"), "--config", sys.config_path(), "publish", "e", "{}"}, &out) == 1);
  CHECK(out.find("cannot connect to amqp://guest@127.0.0.1:1/") != std::string::npos);

  // A password written into the URL is refused before anything connects.
  sys.edit_config("amqp://guest@127.0.0.1:1/", "amqp://guest:guest@127.0.0.1:1/");
  CHECK(sys.run({bin("ebats-scheduler"), "--config", sys.config_path(), "--check-config"}, &out) == 2);
  CHECK(out.find("EBATS_BROKER_PASSWORD") != std::string::npos);
  CHECK(out.find("guest:guest") == std::string::npos);
}

TEST_CASE("RabbitMQ over TLS: the broker's certificate is verified, a client certificate is offered",
          "[integration][amqp-only]") {
  const std::string node = ebats::test::amqp_node_dir();
  const std::string tls_port = read_text(node + "/tls_port");
  REQUIRE(!tls_port.empty());
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  const std::string url = "amqps://guest@localhost:" + tls_port + "/";
  sys.edit_config("\"" + ebats::test::amqp_url() + "\"", "\"" + url + "\"");
  std::string out;
  // No CA named: the system's trust store does not know the test CA.
  CHECK(sys.run({bin("ebatsctl"), "--config", sys.config_path(), "stats"}, &out) == 1);
  INFO(out);
  CHECK(out.find("cannot connect to " + url) != std::string::npos);
  CHECK(out.find("not signed by a CA in the system's trust store") != std::string::npos);
  // With the test CA (and a client certificate) it works end to end.
  sys.edit_config("  amqp: {", "  amqp: {tls: {ca_file: " + node + "/tls/ca.pem, cert_file: " + node +
                                   "/tls/client.pem, key_file: " + node + "/tls/client.key}, ");
  REQUIRE(sys.run({bin("ebatsctl"), "--config", sys.config_path(), "publish", "e", "{}"}, &out) == 0);
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 1; }));
  // A certificate for another name fails hostname verification.
  sys.edit_config(url, "amqps://guest@127.0.0.1:" + tls_port + "/");
  CHECK(sys.run({bin("ebatsctl"), "--config", sys.config_path(), "stats"}, &out) == 1);
  CHECK(out.find("not for host '127.0.0.1'") != std::string::npos);
}

TEST_CASE("RabbitMQ: foreign and broken messages in a task queue are dead-lettered with the reason, valid ones run",
          "[integration][amqp-only]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n", "  t: {processes: 1}\n",
                 "limits: {max_message_bytes: 4KiB}\n");
  sys.start_ntask();
  REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("ready") != std::string::npos; }));
  auto c = foreign_connection();
  const std::string queue = sys.prefix() + ".ntask.t";
  publish_raw(*c, queue, "this is not json");
  publish_raw(*c, queue, "{\"v\":1,\"pad\":\"" + std::string(5000, 'x') + "\"}");
  publish_raw(*c, queue, "{\"v\":2,\"id\":\"x\"}");
  ebats::Envelope other = task_envelope("record", "elsewhere");
  publish_raw(*c, queue, ebats::encode_envelope(other), other.id);
  ebats::Envelope forged = task_envelope("record", "t");
  forged.attempt = 9;
  publish_raw(*c, queue, ebats::encode_envelope(forged), forged.id);
  ebats::Envelope unknown = task_envelope("no_such_task", "t");
  publish_raw(*c, queue, ebats::encode_envelope(unknown), unknown.id);
  // A producer in another language that follows docs/WIRE.md: it runs.
  ebats::Envelope good = task_envelope("record", "t");
  publish_raw(*c, queue, ebats::encode_envelope(good), good.id);

  auto letters = sys.wait_for_dead_letters(6);
  std::multiset<std::string> reasons;
  for (const auto& e : letters) reasons.insert(e.letter.reason);
  INFO(sys.log_of("ntask"));
  CHECK(reasons.count("malformed") == 1);
  CHECK(reasons.count("too large") == 1);
  CHECK(reasons.count("unsupported version") == 1);
  CHECK(reasons.count("invalid") == 2);  // the wrong topic and the forged attempt count
  CHECK(reasons.count("no handler for task no_such_task") == 1);
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 1; }));
  CHECK(sys.executions()[0].id == good.id);
  CHECK(sys.log_of("ntask").find("stopped with an error") == std::string::npos);
}

TEST_CASE("RabbitMQ: a task retried through the same delay level again and again is never dropped",
          "[integration][amqp-only]") {
  // RabbitMQ drops a message that is dead-lettered in a cycle with its
  // x-death headers; ebats publishes every retry with fresh properties.
  // 300 ms is 3 units: each retry passes delay levels 1 and 0.
  TestSystem sys("  e:\n    - {task: retry_always, topic: t, retry: {max: 4}}\n");
  REQUIRE(sys.publisher().publish("e", "{\"retry_after_ms\":300}").ok());
  sys.start_all();
  auto letters = sys.wait_for_dead_letters(1);
  CHECK(letters[0].letter.reason == "retries exhausted");
  const auto ex = sys.executions();
  REQUIRE(ex.size() == 5);
  for (uint32_t i = 0; i < 5; ++i) CHECK(ex[i].attempt == i);
  // Each retry waited its 300 ms, never less.
  const auto results = sys.results();
  REQUIRE(results.size() == 5);
  for (size_t i = 1; i < results.size(); ++i) {
    CHECK(std::stoll(results[i].at("started_at")) - std::stoll(results[i - 1].at("finished_at")) >= 300);
  }
}

TEST_CASE("RabbitMQ: a delay longer than the delay levels hold goes round again and never runs early",
          "[integration][amqp-only]") {
  // 3 levels of 100 ms hold 700 ms at most; a 2 s delay takes three passes.
  TestSystem sys("  e:\n    - {task: record, topic: t, delay: 2s}\n");
  sys.edit_config("delay_levels: 10", "delay_levels: 3");
  REQUIRE(sys.publisher().publish("e", "{}").ok());
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() == 1; }));
  const auto result = sys.results()[0];
  CHECK(std::stoll(result.at("started_at")) >= std::stoll(result.at("due_at")));
  CHECK(sys.executions().size() == 1);
}

TEST_CASE("RabbitMQ: heartbeats flow while a task runs for three heartbeats, so it runs once",
          "[integration][amqp-only]") {
  TestSystem sys("  e:\n    - {task: sleep, topic: t}\n", "  t: {processes: 1}\n");
  sys.edit_config("heartbeat: 5s", "heartbeat: 1s");
  REQUIRE(sys.publisher().publish("e", "{\"ms\":3500}").ok());
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() == 1; }));
  CHECK(sys.results()[0].at("status") == "ok");
  CHECK(sys.executions().size() == 1);
  CHECK(sys.log_of("ntask").find("lost") == std::string::npos);
}

TEST_CASE("RabbitMQ: every result record is also published, and kept in the results stream when asked",
          "[integration][amqp-only]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n    - {task: fail, topic: t}\n");
  sys.edit_config("  amqp: {", "  amqp: {results_stream: true, ");
  auto batch = sys.publisher().batch();
  for (int i = 0; i < 20; ++i) REQUIRE(batch.add_event("e", "{\"n\":" + std::to_string(i) + "}").ok());
  REQUIRE(batch.commit().ok());
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() == 40; }));
  auto* broker = dynamic_cast<amqp::AmqpBroker*>(&sys.broker());
  REQUIRE(broker != nullptr);
  std::map<std::string, int> statuses;
  size_t records = 0;
  REQUIRE(TestSystem::wait_until([&] {
    ebats::Result<std::vector<amqp::StreamEntry>> entries = ebats::Status::internal("not read");
    broker->session().run(
        [&] { entries = broker->session().read_stream(sys.prefix() + ".results", sys.prefix() + ".results"); });
    REQUIRE(entries.ok());
    records = 0;
    statuses.clear();
    for (const auto& e : *entries) {
      CHECK(e.message.properties.content_type == "application/x-ndjson");
      std::istringstream lines(e.message.body);
      std::string line;
      while (std::getline(lines, line)) {
        ++records;
        statuses[line.find("\"status\":\"ok\"") != std::string::npos ? "ok" : "other"]++;
      }
    }
    return records >= 40;
  }));
  CHECK(records == 40);
  CHECK(statuses["ok"] == 20);
}

TEST_CASE("RabbitMQ: two schedulers share the events, and every task runs once", "[integration][amqp-only]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n    - {task: noop, topic: t}\n");
  sys.start_scheduler();
  sys.start_scheduler();
  sys.start_ntask();
  auto batch = sys.publisher().batch();
  for (int i = 0; i < 500; ++i) REQUIRE(batch.add_event("e", "{}").ok());
  REQUIRE(batch.commit().ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() == 1000; }));
  std::set<std::pair<std::string, uint32_t>> runs;
  for (const auto& e : sys.executions()) CHECK(runs.insert({e.id, e.attempt}).second);
  CHECK(sys.executions().size() == 1000);
  // Both took a share (prefetch 1024 each would let one take all; a batch is 512).
  CHECK(sys.log_of("scheduler").find("stopped with an error") == std::string::npos);
}

TEST_CASE("RabbitMQ: a worker whose queue is deleted under it declares it again and goes on",
          "[integration][amqp-only]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  sys.start_all();
  REQUIRE(sys.publisher().publish("e", "{}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 1; }));
  std::string out;
  const std::string script = std::string(EBATS_SOURCE_DIR) + "/tests/amqp/rabbitmq-node.sh";
  REQUIRE(sys.run({"/bin/bash", script, "ctl", ebats::test::amqp_node_dir(), "delete_queue",
                   sys.prefix() + ".ntask.t"},
                  &out) == 0);
  REQUIRE(TestSystem::wait_until([&] {
    return sys.log_of("ntask").find("cancelled the consumer") != std::string::npos;
  }));
  REQUIRE(sys.publisher().publish("e", "{}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 2; }));
}

TEST_CASE("RabbitMQ: a user whose permissions cover only the prefix's objects can do everything ebats does",
          "[integration][amqp-only]") {
  // docs/RABBITMQ.md: set_permissions -p VHOST USER '^P\.' '^P\.' '^P\.'.
  TestSystem sys("  e:\n    - {task: record, topic: t}\n    - {task: fail, topic: t}\n");
  const std::string vhost = "v" + sys.prefix();
  const std::string user = "u" + sys.prefix();
  const std::string script = std::string(EBATS_SOURCE_DIR) + "/tests/amqp/rabbitmq-node.sh";
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{"/bin/bash", script, "ctl", ebats::test::amqp_node_dir()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    const int code = sys.run(argv, &out);
    INFO(out);
    return code;
  };
  REQUIRE(ctl({"add_vhost", vhost}) == 0);
  REQUIRE(ctl({"add_user", user, "guest"}) == 0);  // the password the test processes have
  const std::string only_prefix = "^" + sys.prefix() + "\\.";
  REQUIRE(ctl({"set_permissions", "-p", vhost, user, only_prefix, only_prefix, only_prefix}) == 0);
  const std::string port = read_text(ebats::test::amqp_node_dir() + "/port");
  sys.edit_config(ebats::test::amqp_url(), "amqp://" + user + "@127.0.0.1:" + port + "/" + vhost);
  std::string out;
  REQUIRE(sys.ebatsctl({"setup"}, &out) == 0);
  REQUIRE(sys.ebatsctl({"publish", "e", "{\"n\":1}"}, &out) == 0);
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() == 2; }));
  std::string listed;
  REQUIRE(TestSystem::wait_until([&] {
    return sys.ebatsctl({"dead", "list"}, &listed) == 0 && listed.find("failed") != std::string::npos;
  }));
  REQUIRE(sys.ebatsctl({"dead", "replay", "--all"}, &out) == 0);
  CHECK(out.find("replayed 1") != std::string::npos);
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() == 3; }));
  CHECK(sys.ebatsctl({"stats"}, &out) == 0);
  CHECK(sys.ebatsctl({"dead", "purge"}, &out) == 0);
  for (const auto& d : {"scheduler", "ntask", "dtask"}) {
    CHECK(sys.log_of(d).find("ACCESS_REFUSED") == std::string::npos);
  }
  ctl({"delete_vhost", vhost});
  ctl({"delete_user", user});
}

TEST_CASE("RabbitMQ: two dead-letter replays at once replay each letter once", "[integration][amqp-only]") {
  // A stream cannot delete an entry: a replay publishes the replacements,
  // then a tombstone. Two replays that both read the stream before either
  // tombstone would each replay every letter; the lock (an exclusive queue)
  // makes the second read after the first is done.
  constexpr int kLetters = 30;
  TestSystem sys("  e:\n    - {task: fail, topic: t}\n");
  for (int i = 0; i < kLetters; ++i) REQUIRE(sys.publisher().publish("e", "{\"n\":" + std::to_string(i) + "}").ok());
  stop_after(sys, [&] { return sys.dead_letters().size() == kLetters; });  // the replayed tasks stay queued
  const std::vector<std::string> replay{bin("ebatsctl"), "--config", sys.config_path(), "dead", "replay", "--all"};
  for (int round = 0; round < 3; ++round) {
    // Two processes started one after the other, then both waited for: no
    // threads (Catch's assertions are not thread-safe).
    std::string logs[2], outs[2];
    for (int i = 0; i < 2; ++i) logs[i] = sys.dir() + "/replay." + std::to_string(round) + "." + std::to_string(i) + ".log";
    ebats::test::Daemon first(replay, {}, logs[0]);
    ebats::test::Daemon second(replay, {}, logs[1]);
    const int codes[2] = {first.wait(60s), second.wait(60s)};
    for (int i = 0; i < 2; ++i) outs[i] = read_all(logs[i]);
    INFO("round " << round << ": " << outs[0] << " | " << outs[1]);
    REQUIRE(codes[0] == 0);
    REQUIRE(codes[1] == 0);
    uint64_t replayed = 0;
    for (const std::string& out : outs) {
      REQUIRE(out.rfind("replayed ", 0) == 0);
      replayed += std::stoull(out.substr(9));
    }
    CHECK(replayed == (round == 0 ? kLetters : 0));
  }
  CHECK(sys.dead_letters().empty());
  // Every letter once in the task queue: 30 tasks, not 60.
  CHECK(TestSystem::wait_until([&] { return sys.ready_tasks() == kLetters; }));
  std::this_thread::sleep_for(500ms);
  CHECK(sys.ready_tasks() == kLetters);
}

TEST_CASE("RabbitMQ: a dead-letter replay waits for a lock another holds and then says who holds it",
          "[integration][amqp-only]") {
  TestSystem sys("  e:\n    - {task: fail, topic: t}\n");
  sys.edit_config("confirm_timeout: 10s", "confirm_timeout: 2s");
  REQUIRE(sys.publisher().publish("e", "{\"n\":1}").ok());
  stop_after(sys, [&] { return sys.dead_letters().size() == 1; });
  const std::string lock = sys.prefix() + ".dead.lock";
  {
    auto holder = foreign_connection();
    REQUIRE(holder->declare_exclusive(1, lock).ok());
    // A second connection cannot take it: RabbitMQ answers 405 RESOURCE_LOCKED.
    auto other = foreign_connection();
    CHECK(other->declare_exclusive(1, lock).code() == ebats::StatusCode::busy);
    std::string out;  // stdout and stderr
    const std::vector<std::string> ctl{bin("ebatsctl"), "--config", sys.config_path(), "dead"};
    auto with = [&](std::vector<std::string> argv, const std::string& arg) {
      argv.push_back(arg);
      return argv;
    };
    CHECK(sys.run(with(with(ctl, "replay"), "--all"), &out) == 1);
    CHECK(out.find("another process is replaying or purging these dead letters") != std::string::npos);
    CHECK(out.find("'" + lock + "'") != std::string::npos);
    CHECK(sys.run(with(ctl, "purge"), &out) == 1);
    CHECK(out.find("'" + lock + "'") != std::string::npos);
    CHECK(sys.dead_letters().size() == 1);  // nothing changed
  }  // the holder's connection closes: RabbitMQ deletes its exclusive queue
  std::string out;
  REQUIRE(sys.ebatsctl({"dead", "replay", "--all"}, &out) == 0);
  CHECK(out == "replayed 1 dead letter(s)\n");
  CHECK(sys.dead_letters().empty());
  // The lock is released when the replay is done, not held until the process ends.
  auto after = foreign_connection();
  CHECK(after->declare_exclusive(1, lock).ok());
}

TEST_CASE("RabbitMQ: a queue that takes the dead letters' lock name without being exclusive is a clear error",
          "[integration][amqp-only]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  std::string out;
  REQUIRE(sys.ebatsctl({"setup"}, &out) == 0);
  const std::string lock = sys.prefix() + ".dead.lock";
  auto c = foreign_connection();
  amqp::TopologySpec squatter;
  squatter.queues.push_back({lock, {}});  // durable, not exclusive
  REQUIRE(c->declare(1, squatter).ok());
  // RabbitMQ refuses it as if another connection held the lock (405); the
  // message says what to do in either case.
  sys.edit_config("confirm_timeout: 10s", "confirm_timeout: 1s");
  CHECK(sys.run({bin("ebatsctl"), "--config", sys.config_path(), "dead", "purge"}, &out) == 1);
  CHECK(out.find("'" + lock + "'") != std::string::npos);
  CHECK(out.find("a queue of that name that is not exclusive is in the way: delete it") != std::string::npos);
  // The refusal closed the channel of the declare; it was opened again.
  CHECK(c->declare_exclusive(1, lock).code() == ebats::StatusCode::busy);
  CHECK(c->inspect(1, lock).ok());
}

TEST_CASE("RabbitMQ: a task RabbitMQ dead-letters itself at its delivery limit is listed as delivery limit",
          "[integration][amqp-only]") {
  // broker.amqp.delivery_limit is the quorum queues' backstop: a message
  // returned more often (by consumers that are not ebats workers, which
  // dead-letter a task themselves first) goes to the dead letters through
  // RabbitMQ's own dead-lettering, with x-first-death-* headers and the
  // properties it was published with, an hour ago here.
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  sys.edit_config("reconnect: {min: 100ms, max: 1s}", "reconnect: {min: 100ms, max: 1s}, delivery_limit: 1");
  std::string out;
  REQUIRE(sys.ebatsctl({"setup"}, &out) == 0);
  const std::string queue = sys.prefix() + ".ntask.t";
  const int64_t now_s = ebats::SystemClock().wall_now() / 1000;
  {
    auto producer = foreign_connection();
    amqp::OutMessage m;
    m.routing_key = queue;
    m.body = ebats::encode_envelope(task_envelope("record", "t"));
    m.properties.type = "task";
    m.properties.timestamp = now_s - 3600;
    m.mandatory = false;
    REQUIRE(producer->publish(1, m).ok());
  }
  // Taken and returned unacknowledged (the consumer's connection closes) until RabbitMQ gives up on it.
  for (int i = 0; i < 5 && sys.dead_letters().empty(); ++i) {
    auto consumer = foreign_connection();
    auto tag = consumer->consume(1, queue, {});
    REQUIRE(tag.ok());
    bool got = false;
    for (int tries = 0; tries < 50 && !got; ++tries) {
      auto in = consumer->next(100);
      REQUIRE(in.ok());
      got = in->has_value() && (*in)->kind == amqp::Incoming::Kind::deliver;
    }
    if (!got) break;  // dead-lettered meanwhile
  }
  std::vector<ebats::DeadLetterEntry> dead;
  REQUIRE(TestSystem::wait_until([&] { return (dead = sys.dead_letters()).size() == 1; }, 30s));
  const ebats::DeadLetter& d = dead.front().letter;
  CHECK(d.reason == "delivery limit");
  CHECK_THAT(d.error, Catch::Contains("'" + queue + "'"));
  CHECK(d.kind == "task");
  CHECK(d.topic == "t");
  // Neither x-death nor x-delivery-count reaches the stream: the attempts are
  // the envelope's, the time the publish time.
  CHECK(d.attempts == 0);
  CHECK(d.dead_at == (now_s - 3600) * 1000);
  // It replays like any other: the task runs.
  REQUIRE(sys.ebatsctl({"dead", "replay", "--all"}, &out) == 0);
  sys.start_ntask();
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() == 1; }));
  CHECK(sys.results().front().at("status") == "ok");
}

TEST_CASE("RabbitMQ: an event published after its queue was deleted is kept: the queue is declared again",
          "[integration][amqp-only]") {
  // mandatory + basic.return: a publish no queue takes is no success. ebats
  // declares its queues again and sends it once more.
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  REQUIRE(sys.publisher().publish("e", "{\"n\":1}").ok());  // declares the events queue (once per connection)
  std::string out;
  const std::string script = std::string(EBATS_SOURCE_DIR) + "/tests/amqp/rabbitmq-node.sh";
  REQUIRE(sys.run({"/bin/bash", script, "ctl", ebats::test::amqp_node_dir(), "delete_queue", sys.prefix() + ".events"},
                  &out) == 0);
  // The same publisher, its declarations cached: the exchange routes to no queue now.
  auto id = sys.publisher().publish("e", "{\"n\":2}");
  INFO(id.status().to_string());
  REQUIRE(id.ok());
  sys.start_all();
  // The result line follows the execution: wait for it, then see that no other came.
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(sys.results().size() == 1);  // the first event went with the deleted queue; the second was kept
  CHECK(sys.executions().size() == 1);
}

TEST_CASE("RabbitMQ: result records go to the results exchange for whoever binds a queue, and nowhere else",
          "[integration][amqp-only]") {
  // The original's result callback: a consumer anywhere binds a queue of its
  // own to <prefix>.results (here: topic t only) and gets every host's records.
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  REQUIRE(sys.ebatsctl({"setup"}) == 0);
  auto c = foreign_connection();
  amqp::TopologySpec mine;
  mine.queues.push_back(amqp::QueueSpec{sys.prefix() + "-my-results", {amqp::Argument{"x-queue-type", true, "quorum", 0}}});
  mine.bindings.push_back(amqp::BindingSpec{false, sys.prefix() + "-my-results", sys.prefix() + ".results", "t"});
  REQUIRE(c->declare(1, mine).ok());
  auto batch = sys.publisher().batch();
  for (int i = 0; i < 30; ++i) REQUIRE(batch.add_event("e", "{\"n\":" + std::to_string(i) + "}").ok());
  REQUIRE(batch.commit().ok());
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() == 30; }));
  REQUIRE(c->qos(1, 100).ok());
  REQUIRE(c->consume(1, sys.prefix() + "-my-results", {}).ok());
  size_t records = 0;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (records < 30 && std::chrono::steady_clock::now() < until) {
    auto in = c->next(200);
    REQUIRE(in.ok());
    if (!in->has_value() || (*in)->kind != amqp::Incoming::Kind::deliver) continue;
    CHECK((*in)->routing_key == "t");
    records += static_cast<size_t>(std::count((*in)->body.begin(), (*in)->body.end(), '\n'));
    REQUIRE(c->ack(1, (*in)->delivery_tag, false).ok());
  }
  CHECK(records == 30);
  // No stream is made for them unless results_stream asks for it.
  std::string out;
  const std::string script = std::string(EBATS_SOURCE_DIR) + "/tests/amqp/rabbitmq-node.sh";
  REQUIRE(sys.run({"/bin/bash", script, "ctl", ebats::test::amqp_node_dir(), "-q", "list_queues", "name"}, &out) == 0);
  CHECK(out.find(sys.prefix() + ".results\n") == std::string::npos);
}

TEST_CASE("RabbitMQ: tasks that finish while an older one still runs are acknowledged anyway, and none runs twice",
          "[integration][amqp-only]") {
  // The first task runs long in one child; most of the 299 after it finish in
  // the other (a few may wait behind it in its child's pipeline). One
  // basic.ack with `multiple` cannot cover them while the first is
  // unacknowledged, so their acks wait, but not for the long task: once the
  // worker has nothing more to commit, every finished task is acknowledged.
  TestSystem sys("  e:\n    - {task: sleep, topic: t}\n");
  auto batch = sys.publisher().batch();
  REQUIRE(batch.add_event("e", "{\"ms\":600000}").ok());
  for (int i = 1; i < 300; ++i) REQUIRE(batch.add_event("e", "{\"ms\":" + std::to_string(i % 7) + "}").ok());
  REQUIRE(batch.commit().ok());
  sys.start_scheduler();
  ebats::test::Daemon& worker = sys.start_ntask();
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= 280; }));
  const std::string script = std::string(EBATS_SOURCE_DIR) + "/tests/amqp/rabbitmq-node.sh";
  const std::string queue = sys.prefix() + ".ntask.t";
  std::string unacked;
  size_t finished = 0;
  CHECK(TestSystem::wait_until([&] {
    finished = sys.results().size();
    std::string out;
    if (sys.run({"/bin/bash", script, "ctl", ebats::test::amqp_node_dir(), "-q", "list_queues", "name",
                 "messages_unacknowledged"},
                &out) != 0) {
      return false;
    }
    std::istringstream lines(out);
    for (std::string name, count; lines >> name >> count;) {
      if (name == queue) unacked = count;
    }
    return unacked == std::to_string(300 - finished) && sys.results().size() == finished;
  }));
  INFO("unacknowledged on " << queue << ": " << unacked << " with " << finished << " of 300 finished");
  // The long task stops (should_stop) and goes back as a retry; what finished
  // was acknowledged, so RabbitMQ hands none of it out again.
  worker.signal(SIGTERM);
  REQUIRE(worker.wait(60s) == 0);
  std::set<std::string> ids;
  for (const auto& e : sys.executions()) CHECK(ids.insert(e.id).second);
  CHECK(sys.executions().size() <= 300);
}
