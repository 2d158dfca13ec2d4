// Prometheus metrics of the running daemons: with $EBATS_METRICS_LISTEN (or
// --metrics-listen) at 127.0.0.1:0 each daemon logs the port it bound; a
// known run (20 tasks ok, 3 failing, 2 retried once, 2 unregistered events)
// shows in the counters exactly; junk requests leave the daemon running and
// serving, scrapes and tasks alike.
#include <unistd.h>

#include <csignal>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <optional>
#include <regex>
#include <string>

#include "integration/harness.h"
#include "support/http_exchange.h"
#include "support/scoped_env.h"
#include "support/test_backend.h"

using ebats::test::Daemon;
using ebats::test::http_exchange;
using ebats::test::TestSystem;
using ebats::test::ScopedEnv;

namespace {


std::string scrape(uint16_t port) { return http_exchange(port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"); }

// The value of the sample written exactly as `series` (name and labels), or -1.
double value_of(const std::string& text, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + key.size(), text.find('\n', at + key.size()) - at - key.size()));
}

// The port the daemon whose logs start with `name` said it listens on.
uint16_t metrics_port(const TestSystem& sys, const std::string& name) {
  static const std::regex re(R"(metrics listening.*address="?127\.0\.0\.1:(\d+))");
  std::smatch m;
  std::string log;
  REQUIRE(TestSystem::wait_until([&] {
    log = sys.log_of(name);
    return std::regex_search(log, m, re);
  }));
  return static_cast<uint16_t>(std::stoi(m[1]));
}

// Waits until the scrape of `port` shows `series` at `want`, and returns what it shows last.
double wait_for_value(uint16_t port, const std::string& series, double want) {
  double got = -1;
  TestSystem::wait_until([&] {
    got = value_of(scrape(port), series);
    return got == want;
  });
  return got;
}

}  // namespace

TEST_CASE("metrics: a scrape of each daemon counts a known run exactly, and junk requests disturb nothing",
          "[integration][metrics]") {
  TestSystem sys(
      "  ok_e:\n    - {task: record, topic: t}\n"
      "  fail_e:\n    - {task: fail, topic: t}\n"
      "  retry_e:\n    - {task: retry_once, topic: t, retry: {max: 3, backoff: [100ms]}}\n");
  ScopedEnv listen("EBATS_METRICS_LISTEN", "127.0.0.1:0");
  sys.start_all();
  const uint16_t scheduler = metrics_port(sys, "scheduler");
  const uint16_t ntask = metrics_port(sys, "ntask");
  const uint16_t dtask = metrics_port(sys, "dtask");
  CHECK(scheduler != ntask);
  CHECK(ntask != dtask);

  auto batch = sys.publisher().batch();
  for (int i = 0; i < 20; ++i) REQUIRE(batch.add_event("ok_e", "{\"i\":" + std::to_string(i) + "}").ok());
  for (int i = 0; i < 3; ++i) REQUIRE(batch.add_event("fail_e", "{}").ok());
  for (int i = 0; i < 2; ++i) REQUIRE(batch.add_event("retry_e", "{\"retry_after_ms\":50}").ok());
  for (int i = 0; i < 2; ++i) REQUIRE(batch.add_event("nobody_listens", "{}").ok());
  REQUIRE(batch.commit().ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= 27; }));  // 20 + 3 + 2 retry + 2 ok

  INFO(sys.log_of(""));
  CHECK(wait_for_value(scheduler, "ebats_events_received_total", 27) == 27);
  CHECK(wait_for_value(scheduler, "ebats_events_routed_total", 25) == 25);
  CHECK(wait_for_value(scheduler, "ebats_events_unregistered_total", 2) == 2);
  CHECK(wait_for_value(scheduler, "ebats_events_invalid_total", 0) == 0);
  CHECK(wait_for_value(scheduler, "ebats_event_tasks_published_total", 25) == 25);

  const std::string n = R"(lane="ntask",topic="t",task=)";
  CHECK(wait_for_value(ntask, "ebats_tasks_started_total{" + n + R"("record"})", 20) == 20);
  CHECK(wait_for_value(ntask, "ebats_tasks_started_total{" + n + R"("fail"})", 3) == 3);
  CHECK(wait_for_value(ntask, "ebats_tasks_started_total{" + n + R"("retry_once"})", 2) == 2);
  CHECK(wait_for_value(ntask, "ebats_tasks_finished_total{" + n + R"("record",status="ok"})", 20) == 20);
  CHECK(wait_for_value(ntask, "ebats_tasks_finished_total{" + n + R"("fail",status="failed"})", 3) == 3);
  CHECK(wait_for_value(ntask, "ebats_tasks_finished_total{" + n + R"("retry_once",status="retry"})", 2) == 2);
  CHECK(wait_for_value(ntask, "ebats_tasks_dead_lettered_total{" + n + R"("fail"})", 3) == 3);
  CHECK(wait_for_value(ntask, "ebats_task_duration_seconds_count{" + n + R"("record"})", 20) == 20);
  CHECK(wait_for_value(ntask, R"(ebats_task_queue_wait_seconds_count{lane="ntask",topic="t"})", 25) == 25);
  CHECK(wait_for_value(ntask, R"(ebats_children{state="busy"})", 0) == 0);
  CHECK(wait_for_value(ntask, R"(ebats_children{state="idle"})", 2) == 2);  // workers: t: {processes: 2}
  CHECK(value_of(scrape(ntask), R"(ebats_child_restarts_total{cause="died"})") == -1);  // none restarted

  const std::string d = R"(lane="dtask",topic="t",task="retry_once")";
  CHECK(wait_for_value(dtask, "ebats_tasks_started_total{" + d + "}", 2) == 2);
  CHECK(wait_for_value(dtask, "ebats_tasks_finished_total{" + d + R"(,status="ok"})", 2) == 2);
  CHECK(wait_for_value(dtask, R"(ebats_delay_lateness_seconds_count{topic="t"})", 2) == 2);
  CHECK(value_of(scrape(ntask), R"(ebats_delay_lateness_seconds_count{topic="t"})") == -1);  // dtask lane only

  // Commits were timed, each a histogram observation.
  CHECK(value_of(scrape(ntask), "ebats_broker_commit_duration_seconds_count") >= 1);
  CHECK(value_of(scrape(scheduler), "ebats_broker_commit_duration_seconds_count") >= 1);

  // Queue depths: the scheduler's view agrees with the broker's once settled.
  uint64_t dead = 0;
  for (const auto& row : sys.depths()) {
    if (row.row == ebats::QueueDepth::Row::topic && row.topic == "t") dead = row.dead;
  }
  CHECK(dead == 3);
  if (ebats::test::amqp_backend()) {
    // Counting RabbitMQ's dead letters reads their whole stream: the
    // scheduler's every-5-s poll leaves them out (ebatsctl stats counts them).
    CHECK(wait_for_value(scheduler, R"(ebats_queue_depth{topic="t",state="ready"})", 0) == 0);
    CHECK(value_of(scrape(scheduler), R"(ebats_queue_depth{topic="t",state="dead"})") == -1);
  } else {
    CHECK(wait_for_value(scheduler, R"(ebats_queue_depth{topic="t",state="dead"})", 3) == 3);
  }
  CHECK(wait_for_value(scheduler, R"(ebats_queue_depth{topic="t",state="ready"})", 0) == 0);

  // Junk: not HTTP, a 1 MB header, half a request and gone, a POST, another path.
  CHECK(http_exchange(ntask, "GARBAGE\r\n\r\n").rfind("HTTP/1.1 400", 0) == 0);
  CHECK(http_exchange(ntask, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(1 << 20, 'x') + "\r\n\r\n")
            .find("200 OK") == std::string::npos);
  CHECK(http_exchange(ntask, "GET /met", /*half_close=*/true).find("200 OK") == std::string::npos);
  CHECK(http_exchange(ntask, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").rfind("HTTP/1.1 405", 0) == 0);
  CHECK(http_exchange(ntask, "GET /other HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0) == 0);
  CHECK(http_exchange(scheduler, "\x01\x02\x03\r\n\r\n").rfind("HTTP/1.1 400", 0) == 0);

  // Still running, still counting.
  auto more = sys.publisher().batch();
  for (int i = 0; i < 5; ++i) REQUIRE(more.add_event("ok_e", "{\"more\":" + std::to_string(i) + "}").ok());
  REQUIRE(more.commit().ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= 32; }));
  CHECK(wait_for_value(ntask, "ebats_tasks_finished_total{" + n + R"("record",status="ok"})", 25) == 25);
  CHECK(wait_for_value(scheduler, "ebats_events_received_total", 32) == 32);
  const std::string text = scrape(ntask);
  CHECK(text.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(text.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
}

TEST_CASE("metrics: the config's metrics.listen starts the servers of the daemons it names, and only those",
          "[integration][metrics]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n", "  t: {processes: 1}\n",
                 "metrics: {listen: {scheduler: \"127.0.0.1:0\", ntask-worker@t: \"127.0.0.1:0\"}}\n");
  sys.start_scheduler();
  sys.start_ntask();
  const uint16_t scheduler = metrics_port(sys, "scheduler");
  const uint16_t ntask = metrics_port(sys, "ntask");
  REQUIRE(sys.publisher().publish("e", "{}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= 1; }));
  CHECK(wait_for_value(scheduler, "ebats_events_routed_total", 1) == 1);
  CHECK(wait_for_value(ntask, R"(ebats_tasks_finished_total{lane="ntask",topic="t",task="record",status="ok"})", 1) ==
        1);
  // Not listed: the dtask worker serves nothing and says nothing about it.
  sys.start_dtask();
  REQUIRE(TestSystem::wait_until([&] { return sys.log_of("dtask").find("ready") != std::string::npos; }));
  CHECK(sys.log_of("dtask").find("metrics listening") == std::string::npos);
}

TEST_CASE("metrics: a child that crashes counts as a restart, and a config with errors as a refused reload",
          "[integration][metrics]") {
  TestSystem sys("  crash:\n    - {task: segfault_once, topic: t, retry: {max: 3, backoff: [100ms]}}\n");
  ScopedEnv listen("EBATS_METRICS_LISTEN", "127.0.0.1:0");
  Daemon& scheduler_daemon = sys.start_scheduler();
  Daemon& ntask_daemon = sys.start_ntask();
  const uint16_t scheduler = metrics_port(sys, "scheduler");
  const uint16_t ntask = metrics_port(sys, "ntask");
  REQUIRE(sys.publisher().publish("crash", "{}").ok());
  INFO(sys.log_of(""));
  CHECK(wait_for_value(ntask, R"(ebats_tasks_finished_total{lane="ntask",topic="t",task="segfault_once",status="retry"})",
                       1) == 1);
  CHECK(wait_for_value(ntask, R"(ebats_child_restarts_total{cause="died"})", 1) == 1);
  CHECK(value_of(scrape(ntask), R"(ebats_child_restarts_total{cause="task_timeout"})") == -1);

  sys.edit_config("topic: t", "topic: \"not a topic!\"");
  scheduler_daemon.signal(SIGHUP);
  ntask_daemon.signal(SIGHUP);
  CHECK(wait_for_value(scheduler, R"(ebats_reloads_total{outcome="refused"})", 1) == 1);
  CHECK(wait_for_value(ntask, R"(ebats_reloads_total{outcome="refused"})", 1) == 1);
  CHECK(value_of(scrape(ntask), R"(ebats_reloads_total{outcome="ok"})") == -1);
  CHECK(scheduler_daemon.running());
  CHECK(ntask_daemon.running());
}

TEST_CASE("metrics: a --metrics-listen that is not HOST:PORT is a usage error", "[integration][metrics][sqlite]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  std::string out;
  CHECK(sys.run({std::string(EBATS_BIN_DIR) + "/ebats-scheduler", "--config", sys.config_path(), "--metrics-listen",
                 "9464"},
                &out) == 2);
  CHECK(out.find("--metrics-listen: '9464' is not HOST:PORT") != std::string::npos);
  CHECK(sys.run({std::string(EBATS_BIN_DIR) + "/ebats-ntask-worker", "--config", sys.config_path(), "--topic", "t"},
                &out, {{"EBATS_METRICS_LISTEN", "127.0.0.1:99999"}}) == 2);
  CHECK(out.find("$EBATS_METRICS_LISTEN") != std::string::npos);
}

TEST_CASE("metrics: a worker with route_events counts the events it routes, and a plain worker exports no such series",
          "[integration][metrics][sqlite]") {
  TestSystem sys("  ok_e:\n    - {task: record, topic: t}\n    - {task: noop, topic: u}\n",
                 "  t: {processes: 1, route_events: true}\n  u: {processes: 1}\n");
  ScopedEnv listen("EBATS_METRICS_LISTEN", "127.0.0.1:0");
  sys.start_ntask("t");  // routes; no scheduler
  const uint16_t routing = metrics_port(sys, "ntask");
  auto batch = sys.publisher().batch();
  for (int i = 0; i < 7; ++i) REQUIRE(batch.add_event("ok_e", "{\"i\":" + std::to_string(i) + "}").ok());
  REQUIRE(batch.add_event("nobody_listens", "{}").ok());
  REQUIRE(batch.commit().ok());
  INFO(sys.log_of(""));
  CHECK(wait_for_value(routing, "ebats_events_received_total", 8) == 8);
  CHECK(wait_for_value(routing, "ebats_events_routed_total", 7) == 7);
  CHECK(wait_for_value(routing, "ebats_events_unregistered_total", 1) == 1);
  CHECK(wait_for_value(routing, "ebats_event_tasks_published_total", 14) == 14);
  const std::string n = R"(lane="ntask",topic="t",task=)";
  CHECK(wait_for_value(routing, "ebats_tasks_finished_total{" + n + R"("record",status="ok"})", 7) == 7);
  // The worker of the other topic routes nothing and says nothing about routing.
  sys.start_ntask("u");
  REQUIRE(TestSystem::wait_until([&] { return sys.results().size() >= 14; }));
  uint16_t plain = 0;
  REQUIRE(TestSystem::wait_until([&] {
    static const std::regex re(R"(metrics listening.*address="?127\.0\.0\.1:(\d+))");
    const std::string log = sys.log_of("ntask");
    std::vector<uint16_t> ports;
    for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator(); ++it) {
      ports.push_back(static_cast<uint16_t>(std::stoi((*it)[1])));
    }
    if (ports.size() < 2) return false;
    plain = ports[0] == routing ? ports[1] : ports[0];
    return true;
  }));
  CHECK(value_of(scrape(plain), "ebats_events_received_total") == -1);
}
