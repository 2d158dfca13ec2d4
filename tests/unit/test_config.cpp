// load_config(): the YAML schema, defaults, path resolution and file:line:col diagnostics.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ebats/config.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using ebats::ConfigLoad;
using ebats::Registration;

namespace {

// A temporary folder, removed with everything in it.
using ebats::test::TempDir;

// The two required keys, on lines 1 and 2; tests append from line 3.
const std::string kRequired =
    "broker: {url: \"sqlite:///var/lib/ebats/ebats.db\"}\n"
    "plugins: {dir: /usr/lib/ebats/plugins}\n";

ConfigLoad load(const std::string& yaml) { return ebats::load_config_from_string(yaml, "/etc/ebats/t.yaml"); }

std::string all_errors(const ConfigLoad& l) { return l.error_text(); }

// Loads `yaml` (shown as "t.yaml") and returns its only error as text.
std::string only_error(const std::string& yaml) {
  const ConfigLoad l = ebats::load_config_from_string(yaml, "t.yaml");
  INFO("errors:\n" << all_errors(l));
  CHECK(l.config == nullptr);
  REQUIRE(l.errors.size() == 1);
  return l.errors[0].to_string();
}

const Registration& registration(const ebats::Config& c, const std::string& event, size_t i) {
  const std::vector<Registration>* list = c.registrations(event);
  REQUIRE(list != nullptr);
  REQUIRE(list->size() > i);
  return (*list)[i];
}

const std::vector<int64_t> kOriginalBackoff = {5'000, 300'000, 600'000, 3'600'000, 7'800'000};

}  // namespace

TEST_CASE("Diagnostic::to_string with and without a position", "[config]") {
  ebats::Diagnostic d;
  d.file = "config/ebats.yaml";
  d.line = 23;
  d.column = 7;
  d.message = "unknown key 'tiemout' (did you mean 'timeout'?)";
  CHECK(d.to_string() == "config/ebats.yaml:23:7: error: unknown key 'tiemout' (did you mean 'timeout'?)");
  d.severity = ebats::Diagnostic::Severity::warning;
  CHECK(d.to_string() == "config/ebats.yaml:23:7: warning: unknown key 'tiemout' (did you mean 'timeout'?)");
  d.severity = ebats::Diagnostic::Severity::error;
  d.line = 0;
  d.column = 0;
  d.message = "cannot read config file: No such file or directory";
  CHECK(d.to_string() == "config/ebats.yaml: error: cannot read config file: No such file or directory");
}

TEST_CASE("a minimal config gets every default", "[config]") {
  const ConfigLoad l = load(kRequired);
  INFO(all_errors(l));
  REQUIRE(l.errors.empty());
  REQUIRE(l.config != nullptr);
  const ebats::Config& c = *l.config;
  CHECK(c.path == "/etc/ebats/t.yaml");
  CHECK(c.broker_url == "sqlite:///var/lib/ebats/ebats.db");
  CHECK(c.sqlite_path() == "/var/lib/ebats/ebats.db");
  CHECK(c.plugins_dir == "/usr/lib/ebats/plugins");
  CHECK(c.results_file.empty());
  CHECK(c.sqlite.synchronous_full);
  CHECK_FALSE(c.sqlite.sync_progress);
  CHECK(c.sqlite.busy_timeout_ms == 5'000);
  CHECK(c.sqlite.poll_interval_ms == 50);
  CHECK(c.sqlite.lease_ms == 30'000);
  CHECK(c.sqlite.claim_batch == 1024);
  CHECK(c.max_message_bytes == 1'048'576);
  CHECK(c.result_message_bytes == 4'096);
  CHECK(c.default_timeout_ms == 60'000);
  CHECK(c.default_retry == ebats::RetryPolicy::original());
  CHECK(c.events.empty());
  CHECK(c.workers.empty());
  CHECK(c.registrations("order_create") == nullptr);
  const ebats::WorkerConfig w = c.worker("demo");
  CHECK(w.processes == 1);
  CHECK(w.prefetch == 0);
  CHECK(w.timeout_ms == 60'000);
  CHECK(w.kill_after_ms == 5'000);
  CHECK(w.drain_timeout_ms == 30'000);
}

TEST_CASE("the issue's example: delay, fan-out, retry policy, workers", "[config]") {
  const ConfigLoad l = load(
      "broker:  { url: \"sqlite:///var/lib/ebats/ebats.db\" }\n"
      "plugins: { dir: /usr/lib/ebats/plugins }\n"
      "results: { file: /var/log/ebats/results.jsonl }\n"
      "events:\n"
      "  order_create:\n"
      "    - { task: closeOrder, topic: demo, delay: 10s }\n"
      "  order_paied:\n"
      "    - { task: virtualShipping, topic: demo, retry: { max: 5, backoff: [5s, 5m, 10m, 1h, 2h10m] } }\n"
      "    - { task: sendReceipt, topic: demo, timeout: 20s }\n"
      "workers:\n"
      "  demo: { processes: 2 }\n");
  INFO(all_errors(l));
  REQUIRE(l.errors.empty());
  CHECK(l.warnings.empty());
  const ebats::Config& c = *l.config;
  CHECK(c.results_file == "/var/log/ebats/results.jsonl");
  REQUIRE(c.events.size() == 2);

  const Registration& close = registration(c, "order_create", 0);
  CHECK(close.task == "closeOrder");
  CHECK(close.topic == "demo");
  CHECK(close.delay_ms == 10'000);
  CHECK(close.timeout_ms == 0);
  CHECK(close.retry == ebats::RetryPolicy::original());

  REQUIRE(c.registrations("order_paied")->size() == 2);
  const Registration& ship = registration(c, "order_paied", 0);
  CHECK(ship.task == "virtualShipping");
  CHECK(ship.delay_ms == 0);
  CHECK(ship.retry.max_retries == 5);
  CHECK(ship.retry.backoff_ms == kOriginalBackoff);
  const Registration& receipt = registration(c, "order_paied", 1);
  CHECK(receipt.task == "sendReceipt");
  CHECK(receipt.timeout_ms == 20'000);

  CHECK(c.worker("demo").processes == 2);
  CHECK(c.worker("demo").timeout_ms == 60'000);
}

TEST_CASE("every optional key is read", "[config]") {
  const ConfigLoad l = load(
      "version: 1\n"
      "broker:\n"
      "  url: sqlite:///srv/db/e.db\n"
      "  sqlite: {synchronous: normal, sync_progress: true, busy_timeout: 2s, poll_interval: 10ms, lease: 1m,\n"
      "           claim_batch: 64}\n"
      "plugins:\n"
      "  dir: /opt/plugins/\n"
      "  settings: {shop: {db_dsn_file: /etc/ebats/shop.dsn, pool: [1, 2]}}\n"
      "limits: {max_message_bytes: 2MiB, result_message_bytes: 512B}\n"
      "defaults: {timeout: 45s, retry: {max: 3, backoff: [1s, 2s]}}\n"
      "events:\n"
      "  a.b:c-d_1: [{task: t.1, topic: web-1, timeout: 3s}]\n"
      "workers:\n"
      "  web-1: {processes: 4, prefetch: 8, timeout: 30s, kill_after: 2s, drain_timeout: 1m, route_events: true}\n"
      "  idle: {}\n");
  INFO(all_errors(l));
  REQUIRE(l.errors.empty());
  const ebats::Config& c = *l.config;
  CHECK(c.sqlite_path() == "/srv/db/e.db");
  CHECK_FALSE(c.sqlite.synchronous_full);
  CHECK(c.sqlite.sync_progress);
  CHECK(c.sqlite.busy_timeout_ms == 2'000);
  CHECK(c.sqlite.poll_interval_ms == 10);
  CHECK(c.sqlite.lease_ms == 60'000);
  CHECK(c.sqlite.claim_batch == 64);
  CHECK(c.plugins_dir == "/opt/plugins");
  CHECK(c.plugin_settings == ebats::PluginSettings{{"shop", R"({"db_dsn_file":"/etc/ebats/shop.dsn","pool":[1,2]})"}});
  CHECK(c.max_message_bytes == 2 * 1'048'576);
  CHECK(c.result_message_bytes == 512);
  CHECK(c.default_timeout_ms == 45'000);
  CHECK(c.default_retry.max_retries == 3);
  CHECK(c.default_retry.backoff_ms == std::vector<int64_t>{1'000, 2'000});
  const Registration& r = registration(c, "a.b:c-d_1", 0);
  CHECK(r.task == "t.1");
  CHECK(r.topic == "web-1");
  CHECK(r.timeout_ms == 3'000);
  CHECK(r.retry == c.default_retry);
  const ebats::WorkerConfig w = c.worker("web-1");
  CHECK(w.processes == 4);
  CHECK(w.prefetch == 8);
  CHECK(w.timeout_ms == 30'000);
  CHECK(w.kill_after_ms == 2'000);
  CHECK(w.drain_timeout_ms == 60'000);
  CHECK(w.route_events);
  CHECK_FALSE(c.worker("idle").route_events);
  // A workers entry without timeout inherits defaults.timeout; so does an unlisted topic.
  CHECK(c.worker("idle").timeout_ms == 45'000);
  CHECK(c.worker("idle").processes == 1);
  CHECK(c.worker("nope").timeout_ms == 45'000);
}

TEST_CASE("retry: max alone, backoff alone, max 0, and defaults.retry", "[config]") {
  SECTION("built-in default") {
    const ConfigLoad l = load(kRequired +
                              "events:\n"
                              "  e:\n"
                              "    - {task: none, topic: demo}\n"
                              "    - {task: max_only, topic: demo, retry: {max: 2}}\n"
                              "    - {task: backoff_only, topic: demo, retry: {backoff: [1s]}}\n"
                              "    - {task: never, topic: demo, retry: {max: 0}}\n"
                              "    - {task: long, topic: demo, retry: {max: 8, backoff: [1m, 2m]}}\n"
                              "workers: {demo: {}}\n");
    INFO(all_errors(l));
    REQUIRE(l.errors.empty());
    const ebats::Config& c = *l.config;
    CHECK(registration(c, "e", 0).retry == ebats::RetryPolicy::original());
    CHECK(registration(c, "e", 1).retry.max_retries == 2);
    CHECK(registration(c, "e", 1).retry.backoff_ms == kOriginalBackoff);
    CHECK(registration(c, "e", 2).retry.max_retries == 5);
    CHECK(registration(c, "e", 2).retry.backoff_ms == std::vector<int64_t>{1'000});
    CHECK(registration(c, "e", 3).retry.max_retries == 0);
    CHECK(registration(c, "e", 3).retry.max_attempts() == 1);
    const ebats::RetryPolicy& lng = registration(c, "e", 4).retry;
    CHECK(lng.max_retries == 8);
    CHECK(lng.delay_ms(0) == 60'000);
    CHECK(lng.delay_ms(7) == 120'000);  // the last value repeats
  }
  SECTION("defaults.retry replaces the built-in default") {
    const ConfigLoad l = load(kRequired +
                              "defaults: {retry: {max: 2, backoff: [7s]}}\n"
                              "events:\n"
                              "  e: [{task: a, topic: demo}, {task: b, topic: demo, retry: {max: 4}}]\n"
                              "workers: {demo: {}}\n");
    INFO(all_errors(l));
    REQUIRE(l.errors.empty());
    const ebats::Config& c = *l.config;
    CHECK(registration(c, "e", 0).retry.max_retries == 2);
    CHECK(registration(c, "e", 0).retry.backoff_ms == std::vector<int64_t>{7'000});
    CHECK(registration(c, "e", 1).retry.max_retries == 4);
    CHECK(registration(c, "e", 1).retry.backoff_ms == std::vector<int64_t>{7'000});
  }
}

TEST_CASE("relative paths are resolved against the config file's folder", "[config]") {
  TempDir dir;
  const fs::path file = dir.write("etc/ebats.yaml",
                                  "broker: {url: \"sqlite://../var/ebats.db\"}\n"
                                  "plugins: {dir: plugins}\n"
                                  "results: {file: ./log/results.jsonl}\n");
  const ConfigLoad l = ebats::load_config(file.string());
  INFO(all_errors(l));
  REQUIRE(l.errors.empty());
  const ebats::Config& c = *l.config;
  const std::string root = dir.path();
  CHECK(c.path == root + "/etc/ebats.yaml");
  CHECK(c.broker_url == "sqlite://" + root + "/var/ebats.db");
  CHECK(c.sqlite_path() == root + "/var/ebats.db");
  CHECK(c.plugins_dir == root + "/etc/plugins");
  CHECK(c.results_file == root + "/etc/log/results.jsonl");
}

TEST_CASE("a relative config path is made absolute from the working directory", "[config]") {
  const ConfigLoad l = ebats::load_config_from_string(kRequired + "results: {file: r.jsonl}\n", "conf/e.yaml");
  REQUIRE(l.errors.empty());
  const std::string cwd = fs::current_path().string();
  CHECK(l.config->path == cwd + "/conf/e.yaml");
  CHECK(l.config->results_file == cwd + "/conf/r.jsonl");
  CHECK(fs::path(l.config->path).is_absolute());
}

TEST_CASE("config/ebats.yaml from the repository loads and registers the article's tasks", "[config]") {
  const ConfigLoad l = ebats::load_config(std::string(EBATS_SOURCE_DIR) + "/config/ebats.yaml");
  INFO(all_errors(l));
  REQUIRE(l.errors.empty());
  CHECK(l.warnings.empty());
  const ebats::Config& c = *l.config;
  CHECK(c.broker_url == "sqlite:///var/lib/ebats/ebats.db");
  CHECK(c.plugins_dir == "/usr/lib/ebats/plugins");
  CHECK(c.results_file == "/var/log/ebats/results.jsonl");
  CHECK(c.events.size() == 3);
  const Registration& close = registration(c, "order_create", 0);
  CHECK(close.task == "closeOrder");
  CHECK(close.topic == "demo");
  CHECK(close.delay_ms == 10'000);
  REQUIRE(c.registrations("order_paied")->size() == 2);
  CHECK(registration(c, "order_paied", 0).task == "virtualShipping");
  CHECK(registration(c, "order_paied", 0).retry == ebats::RetryPolicy::original());
  CHECK(registration(c, "order_paied", 1).task == "sendReceipt");
  CHECK(registration(c, "order_sync", 0).task == "orderAsync");
  CHECK(c.worker("demo").processes == 2);
}

TEST_CASE("a missing file gives one diagnostic naming the path and the OS error", "[config]") {
  TempDir dir;
  const std::string path = dir.file("absent.yaml");
  const ConfigLoad l = ebats::load_config(path);
  CHECK(l.config == nullptr);
  REQUIRE(l.errors.size() == 1);
  CHECK(l.errors[0].to_string() == path + ": error: cannot read config file: No such file or directory");
  CHECK(l.error_text() == l.errors[0].to_string());

  const ConfigLoad folder = ebats::load_config(dir.path());
  REQUIRE(folder.errors.size() == 1);
  CHECK(folder.errors[0].to_string() == dir.path() + ": error: cannot read config file: Is a directory");
}

TEST_CASE("YAML syntax errors point at the parser's mark", "[config]") {
  // An unclosed list is noticed at the end of the input (line 4, column 1).
  CHECK(only_error(kRequired + "events: [1, 2\n") ==
        "t.yaml:4:1: error: invalid YAML: end of sequence flow not found");
  CHECK(only_error("broker: 1\n  plugins: 2\n") == "t.yaml:2:10: error: invalid YAML: illegal map value");
}

TEST_CASE("unknown keys at any level, with a did-you-mean hint", "[config]") {
  CHECK(only_error(kRequired +
                   "workers:\n"
                   "  demo:\n"
                   "    processes: 2\n"
                   "    tiemout: 30s\n") == "t.yaml:6:5: error: unknown key 'tiemout' (did you mean 'timeout'?)");
  CHECK(only_error(kRequired + "evnets: {}\n") == "t.yaml:3:1: error: unknown key 'evnets' (did you mean 'events'?)");
  CHECK(only_error("broker: {url: \"sqlite:///x.db\", sqlite: {lese: 1s}}\nplugins: {dir: /p}\n") ==
        "t.yaml:1:42: error: unknown key 'lese' (did you mean 'lease'?)");
  CHECK(only_error(kRequired + "events:\n  e: [{task: a, topic: demo, colour: red}]\nworkers: {demo: {}}\n") ==
        "t.yaml:4:30: error: unknown key 'colour' in events.e[0] (known keys: task, topic, delay, retry, timeout)");
  CHECK(only_error(kRequired + "defaults: {retry: {maks: 3}}\n") ==
        "t.yaml:3:20: error: unknown key 'maks' (did you mean 'max'?)");
  CHECK(only_error(kRequired + "logging: {}\n") ==
        "t.yaml:3:1: error: key 'logging' is not supported in this build yet; remove it (see docs/CONFIG.md)");
}

TEST_CASE("metrics.listen gives each named daemon its metrics address, and refuses other names and addresses",
          "[config]") {
  const ConfigLoad l = load(kRequired +
                            "metrics:\n  listen:\n    scheduler: \"127.0.0.1:9464\"\n"
                            "    \"ntask-worker@demo\": \"[::1]:9465\"\n    dtask-worker@demo: \":0\"\n");
  REQUIRE(l.errors.empty());
  REQUIRE(l.config->metrics_listen.size() == 3);
  CHECK(l.config->metrics_listen.at("scheduler") == "127.0.0.1:9464");
  CHECK(l.config->metrics_listen.at("ntask-worker@demo") == "[::1]:9465");
  CHECK(l.config->metrics_listen.at("dtask-worker@demo") == ":0");
  CHECK(load(kRequired + "metrics: {}\n").errors.empty());
  CHECK(only_error(kRequired + "metrics: {listen: {worker@demo: \"127.0.0.1:1\"}}\n") ==
        "t.yaml:3:20: error: metrics.listen: 'worker@demo' names no daemon; use scheduler, ntask-worker@TOPIC or "
        "dtask-worker@TOPIC");
  CHECK(only_error(kRequired + "metrics: {listen: {scheduler: \"9464\"}}\n") ==
        "t.yaml:3:31: error: metrics.listen.scheduler: '9464' is not HOST:PORT");
  CHECK(only_error(kRequired + "metrics: {lisen: {}}\n") == "t.yaml:3:11: error: unknown key 'lisen' (did you mean 'listen'?)");
}

TEST_CASE("duplicate keys are refused", "[config]") {
  CHECK(only_error(kRequired + "workers:\n  demo: {}\n  demo: {}\n") ==
        "t.yaml:5:3: error: workers: duplicate key 'demo' (first given at line 4); keep only one");
}

TEST_CASE("wrong types name the path, what was expected and what was found", "[config]") {
  CHECK(only_error("broker: sqlite:///x.db\nplugins: {dir: /p}\n") ==
        "t.yaml:1:9: error: broker: expected a map, found 'sqlite:///x.db'; e.g. broker: {url: "
        "\"sqlite:///var/lib/ebats/ebats.db\"}");
  CHECK(only_error(kRequired + "workers:\n  demo: {processes: two}\n") ==
        "t.yaml:4:21: error: workers.demo.processes: expected an integer from 1 to 256, found 'two'");
  CHECK(only_error(kRequired + "workers:\n  demo: {processes: 300}\n") ==
        "t.yaml:4:21: error: workers.demo.processes: expected an integer from 1 to 256, found '300'");
  CHECK(only_error(kRequired + "workers:\n  demo: {prefetch: [1]}\n") ==
        "t.yaml:4:20: error: workers.demo.prefetch: expected an integer from 0 to 100000, found a list");
  CHECK(only_error(kRequired + "plugins2: 1\n").find("unknown key 'plugins2' (did you mean 'plugins'?)") !=
        std::string::npos);
  CHECK(only_error("broker: {url: \"sqlite:///x.db\"}\nplugins: {dir: [a]}\n") ==
        "t.yaml:2:16: error: plugins.dir: expected a string, found a list");
  CHECK(only_error(kRequired + "plugins2: 1\n").rfind("t.yaml:3:1: error: ", 0) == 0);
  CHECK(only_error("broker: {url: \"sqlite:///x.db\"}\nplugins: {dir: /p, settings: [a]}\n") ==
        "t.yaml:2:30: error: plugins.settings: expected a map, found a list; e.g. settings: {shop: {db_dsn_file: "
        "/etc/ebats/shop.dsn}}");
  CHECK(only_error("broker: {url: \"sqlite:///x.db\"}\nplugins: {dir: /p, settings: {shop: [a]}}\n") ==
        "t.yaml:2:37: error: plugins.settings.shop: expected a map, found a list; e.g. settings: {shop: {key: "
        "value}}");
  CHECK(only_error("broker: {url: \"sqlite:///x.db\"}\nplugins:\n  dir: /p\n  settings:\n    shop: &x {k: [*x]}\n") ==
        "t.yaml:5:18: error: plugins.settings.shop: nested more than 64 levels deep (a recursive alias?)");
  CHECK(only_error("broker: {url: \"sqlite:///x.db\"}\nplugins:\n  dir: /p\n  settings:\n    shop: {a: 1, a: 2}\n") ==
        "t.yaml:5:18: error: plugins.settings.shop: key 'a' appears twice");
  CHECK(only_error("broker: {url: \"sqlite:///x.db\"}\nplugins:\n  dir: /p\n  settings:\n    shop: {blob: " +
                   std::string(40'000, 'x') + "}\n    mail: {blob: " + std::string(40'000, 'y') + "}\n") ==
        "t.yaml:6:11: error: plugins.settings.mail: the plugin settings take more than 64512 bytes as JSON (all "
        "plugins together); put large data in a file and give its path");
  CHECK(only_error("- a\n- b\n") ==
        "t.yaml:1:1: error: expected a map at the top level, found a list; e.g. broker: {url: "
        "\"sqlite:///var/lib/ebats/ebats.db\"}");
  CHECK(only_error(kRequired + "broker2: x\n").find("did you mean 'broker'") != std::string::npos);
  CHECK(only_error("broker: {url: \"sqlite:///x.db\", sqlite: {synchronous: off}}\nplugins: {dir: /p}\n") ==
        "t.yaml:1:55: error: broker.sqlite.synchronous: expected 'full' or 'normal', found 'off'");
  CHECK(only_error("broker: {url: \"sqlite:///x.db\", sqlite: {sync_progress: sometimes}}\nplugins: {dir: /p}\n") ==
        "t.yaml:1:57: error: broker.sqlite.sync_progress: expected true or false, found 'sometimes'");
  CHECK(only_error("broker: {url: \"sqlite:///x.db\", sqlite: {claim_batch: 0}}\nplugins: {dir: /p}\n") ==
        "t.yaml:1:55: error: broker.sqlite.claim_batch: expected an integer from 1 to 10000, found '0'");
  CHECK(only_error(kRequired + "limits: {max_message_bytes: 1MB}\n") ==
        "t.yaml:3:29: error: limits.max_message_bytes: invalid size '1MB': unknown unit 'MB' (use B, KiB, MiB "
        "or GiB; 1KiB = 1024B)");
  // A handler's message travels in one frame of max_message_bytes + 64 KiB.
  CHECK(only_error(kRequired + "limits: {max_message_bytes: 64KiB, result_message_bytes: 65537B}\n") ==
        "t.yaml:3:58: error: limits.result_message_bytes: 65537 bytes is more than limits.max_message_bytes (65536 "
        "bytes): a handler's message must fit in one message");
  CHECK(only_error(kRequired + "version: 2\n") ==
        "t.yaml:3:10: error: unsupported config version 2; this build reads version 1");
}

TEST_CASE("bad durations carry parse_duration's message", "[config]") {
  CHECK(only_error(kRequired +
                   "events:\n"
                   "  order_create:\n"
                   "    - {task: closeOrder, topic: demo, delay: 10}\n"
                   "workers: {demo: {}}\n") ==
        "t.yaml:5:46: error: events.order_create[0].delay: invalid duration '10': a number needs a unit (ms, s, m, "
        "h, d), e.g. 10s");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: [5s, 5m10h]}}\n") ==
        "t.yaml:3:34: error: defaults.retry.backoff[1]: invalid duration '5m10h': unit 'h' comes after the smaller "
        "unit 'm'; write the largest unit first, e.g. 2h10m");
  CHECK(only_error(kRequired + "workers: {demo: {timeout: 0s}}\n") ==
        "t.yaml:3:27: error: workers.demo.timeout: must be at least 1ms, found '0s'");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: []}}\n") ==
        "t.yaml:3:29: error: defaults.retry.backoff: the list is empty but max is 5; give at least one delay, e.g. "
        "[5s], or set max: 0");
}

TEST_CASE("registrations need task and topic with valid names", "[config]") {
  CHECK(only_error(kRequired + "events:\n  e:\n    - {task: a}\n") ==
        "t.yaml:5:7: error: events.e[0]: missing 'topic'; e.g. {task: closeOrder, topic: demo}");
  CHECK(only_error(kRequired + "events:\n  e:\n    - topic: demo\n      delay: 1s\nworkers: {demo: {}}\n") ==
        "t.yaml:5:7: error: events.e[0]: missing 'task'; e.g. {task: closeOrder, topic: demo}");
  CHECK(only_error(kRequired + "events:\n  \"bad event\": [{task: a, topic: demo}]\nworkers: {demo: {}}\n") ==
        "t.yaml:4:3: error: invalid event name 'bad event'; use 1 to 128 characters from A-Z a-z 0-9 _ . : -");
  CHECK(only_error(kRequired + "events:\n  e: [{task: a/b, topic: demo}]\nworkers: {demo: {}}\n") ==
        "t.yaml:4:14: error: invalid task name 'a/b'; use 1 to 128 characters from A-Z a-z 0-9 _ . : -");
  CHECK(only_error(kRequired + "events:\n  e: [{task: a, topic: de.mo}]\n") ==
        "t.yaml:4:24: error: invalid topic name 'de.mo'; use 1 to 64 characters from A-Z a-z 0-9 _ -");
  CHECK(only_error(kRequired + "events:\n  e: [{task: " + std::string(129, 'x') + ", topic: demo}]\n")
            .find("invalid task name") != std::string::npos);
  CHECK(only_error(kRequired + "workers:\n  \"a b\": {}\n") ==
        "t.yaml:4:3: error: invalid topic name 'a b' in workers; use 1 to 64 characters from A-Z a-z 0-9 _ -");
}

TEST_CASE("the same (event, task, topic) twice is an error but another topic is fine", "[config]") {
  CHECK(only_error(kRequired +
                   "events:\n"
                   "  e:\n"
                   "    - {task: a, topic: demo}\n"
                   "    - {task: a, topic: other}\n"
                   "    - {task: a, topic: demo, delay: 1s}\n"
                   "workers: {demo: {}, other: {}}\n") ==
        "t.yaml:7:7: error: task 'a' on topic 'demo' is registered twice for event 'e' (first at line 5); remove "
        "one, their task ids would collide");
}

TEST_CASE("events entries must be lists", "[config]") {
  CHECK(only_error(kRequired + "events:\n  e: {task: a, topic: demo}\n") ==
        "t.yaml:4:6: error: events.e: expected a list, found a map; e.g. e: [{task: closeOrder, topic: demo}]");
  CHECK(only_error(kRequired + "events:\n  e: [closeOrder]\n") ==
        "t.yaml:4:7: error: events.e[0]: expected a map, found 'closeOrder'; e.g. {task: closeOrder, topic: demo, "
        "delay: 10s}");
}

TEST_CASE("broker URL schemes and required keys", "[config]") {
  CHECK(only_error("broker: {url: \"amqp://ebats:secret@mq1:5672/ebats\"}\nplugins: {dir: /p}\n") ==
        "t.yaml:1:15: error: broker.url: the broker URL holds a password; remove it from the URL (user@host only) and "
        "put it in the file named by broker.password_file (mode 0600 or 0640) or in the environment variable "
        "EBATS_BROKER_PASSWORD");
  CHECK(only_error("broker: {url: \"amqp://ebats@mq1:port/ebats\"}\nplugins: {dir: /p}\n") ==
        "t.yaml:1:15: error: broker.url: broker URL is not a valid AMQP URL; expected amqp://user@host:5672/vhost or "
        "amqps://user@host:5671/vhost");
  CHECK(only_error("broker: {url: \"redis://x\"}\nplugins: {dir: /p}\n") ==
        "t.yaml:1:15: error: unsupported broker URL scheme 'redis://'; use sqlite:///var/lib/ebats/ebats.db, "
        "amqp://user@host:5672/vhost or amqps://user@host:5671/vhost");
  CHECK(only_error("broker: {url: /var/x.db}\nplugins: {dir: /p}\n").find("has no scheme") != std::string::npos);
  // A URL with its scheme mistyped may hold a password: it is never echoed.
  const std::string mistyped = only_error("broker: {url: \"ebats:secret@mq1:5672/ebats\"}\nplugins: {dir: /p}\n");
  CHECK(mistyped.find("has no scheme") != std::string::npos);
  CHECK(mistyped.find("secret") == std::string::npos);
  CHECK(only_error("broker: {url: \"sqlite://\"}\nplugins: {dir: /p}\n").find("names no database file") !=
        std::string::npos);
  CHECK(only_error("broker: {}\nplugins: {dir: /p}\n") ==
        "t.yaml:1:9: error: missing broker.url; add url: \"sqlite:///var/lib/ebats/ebats.db\"");
  CHECK(only_error("broker: {url: \"sqlite:///x.db\"}\nplugins:\n  settings: {}\n") ==
        "t.yaml:3:3: error: missing plugins.dir; add dir: /usr/lib/ebats/plugins");
  CHECK(only_error("plugins: {dir: /p}\n") ==
        "t.yaml:1:1: error: missing required key 'broker'; add broker: {url: \"sqlite:///var/lib/ebats/ebats.db\"}");
  CHECK(only_error("") ==
        "t.yaml: error: the file is empty; expected a map with at least broker.url and plugins.dir (see "
        "docs/CONFIG.md)");
}

TEST_CASE("every error of a file is reported, in file order", "[config]") {
  const ConfigLoad l = ebats::load_config_from_string(
      "broker: {url: \"mqtt://mq\"}\n"     // 1
      "plugins: {dir: /p}\n"                // 2
      "events:\n"                           // 3
      "  e:\n"                              // 4
      "    - {task: a, delay: 5x}\n"        // 5
      "workers:\n"                          // 6
      "  demo: {processes: two, tiemout: 1s}\n",  // 7
      "t.yaml");
  CHECK(l.config == nullptr);
  std::vector<std::string> lines;
  for (const ebats::Diagnostic& d : l.errors) lines.push_back(d.to_string());
  CHECK(lines == std::vector<std::string>{
                     "t.yaml:1:15: error: unsupported broker URL scheme 'mqtt://'; use sqlite:///var/lib/ebats/ebats.db, "
                     "amqp://user@host:5672/vhost or amqps://user@host:5671/vhost",
                     "t.yaml:5:7: error: events.e[0]: missing 'topic'; e.g. {task: closeOrder, topic: demo}",
                     "t.yaml:5:24: error: events.e[0].delay: invalid duration '5x': unknown unit 'x' (use ms, s, m, h "
                     "or d)",
                     "t.yaml:7:21: error: workers.demo.processes: expected an integer from 1 to 256, found 'two'",
                     "t.yaml:7:26: error: unknown key 'tiemout' (did you mean 'timeout'?)",
                 });
  CHECK(l.error_text().find('\n') != std::string::npos);
}

TEST_CASE("a topic without a workers entry is a warning, not an error", "[config]") {
  const ConfigLoad l = ebats::load_config_from_string(kRequired +
                                                          "events:\n"
                                                          "  e:\n"
                                                          "    - {task: a, topic: mail}\n"
                                                          "    - {task: b, topic: mail}\n",
                                                      "t.yaml");
  INFO(all_errors(l));
  REQUIRE(l.errors.empty());
  REQUIRE(l.config != nullptr);
  REQUIRE(l.warnings.size() == 1);
  CHECK(l.warnings[0].to_string() ==
        "t.yaml:5:7: warning: topic 'mail' (task 'a', event 'e') has no workers entry, so its tasks run only if a "
        "worker for it is started; add workers: {mail: {processes: 1}}");
  CHECK(l.config->registrations("e")->size() == 2);
}

TEST_CASE("an AMQP broker and its settings", "[config][amqp]") {
  const ConfigLoad l = load(
      "broker:\n"
      "  url: \"amqps://ebats@mq1.example:5671/shop\"\n"
      "  password_file: amqp.password\n"
      "  amqp:\n"
      "    prefix: shop-ebats\n"
      "    heartbeat: 10s\n"
      "    connect_timeout: 3s\n"
      "    confirm_timeout: 20s\n"
      "    consumer_timeout: 1h\n"
      "    delay_levels: 20\n"
      "    delay_unit: 100ms\n"
      "    delivery_limit: 0\n"
      "    results_max_age: 30d\n"
      "    reconnect: {min: 100ms, max: 5s}\n"
      "    tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client.key, verify_hostname: false}\n"
      "plugins: {dir: /p}\n"
      "events: {e: [{task: a, topic: demo, timeout: 50m}]}\n"
      "workers: {demo: {timeout: 10m, kill_after: 5s}}\n");
  INFO(all_errors(l));
  REQUIRE(l.config);
  const ebats::Config& c = *l.config;
  CHECK(c.is_amqp());
  CHECK(c.broker_url == "amqps://ebats@mq1.example:5671/shop");
  CHECK(c.broker_password_file == "/etc/ebats/amqp.password");
  CHECK(c.amqp.prefix == "shop-ebats");
  CHECK(c.amqp.heartbeat_ms == 10'000);
  CHECK(c.amqp.connect_timeout_ms == 3'000);
  CHECK(c.amqp.confirm_timeout_ms == 20'000);
  CHECK(c.amqp.consumer_timeout_ms == 3'600'000);
  CHECK(c.amqp.delay_levels == 20);
  CHECK(c.amqp.delay_unit_ms == 100);
  CHECK(c.amqp.delivery_limit == 0);
  CHECK(c.amqp.results_max_age_ms == 30 * 86'400'000LL);
  CHECK(c.amqp.reconnect_min_ms == 100);
  CHECK(c.amqp.reconnect_max_ms == 5'000);
  CHECK(c.amqp.tls.ca_file == "/etc/ebats/ca.pem");
  CHECK(c.amqp.tls.cert_file == "/etc/ebats/client.pem");
  CHECK(c.amqp.tls.key_file == "/etc/ebats/client.key");
  CHECK(c.amqp.tls.verify_peer);
  CHECK_FALSE(c.amqp.tls.verify_hostname);
  CHECK(c.topics() == std::vector<std::string>{"demo"});
}

TEST_CASE("AMQP settings that cannot work are errors", "[config][amqp]") {
  const std::string amqp = "broker:\n  url: \"amqp://ebats@mq1/ebats\"\n";
  CHECK(only_error(amqp + "  amqp: {heartbeat: 500ms}\nplugins: {dir: /p}\n") ==
        "t.yaml:3:21: error: broker.amqp.heartbeat: AMQP counts heartbeats in whole seconds; give at least 1s, or 0s "
        "to turn them off");
  CHECK(only_error(amqp + "  amqp: {tls: {cert_file: c.pem}}\nplugins: {dir: /p}\n") ==
        "t.yaml:3:15: error: broker.amqp.tls: cert_file and key_file go together; give both or neither");
  CHECK(only_error(amqp + "  amqp: {prefix: a.b}\nplugins: {dir: /p}\n") ==
        "t.yaml:3:18: error: broker.amqp.prefix 'a.b' is not a valid name prefix; use 1 to 64 characters from A-Z "
        "a-z 0-9 _ -");
  // A task must be killed before RabbitMQ's consumer_timeout closes its channel.
  CHECK(only_error(amqp + "plugins: {dir: /p}\nworkers:\n  demo: {timeout: 30m}\n") ==
        "t.yaml:5:9: error: workers.demo: timeout + kill_after (30m5s) must stay below broker.amqp.consumer_timeout "
        "(30m), RabbitMQ's consumer_timeout, or RabbitMQ closes the channel of a long task and every task it holds "
        "runs again; shorten the timeout or raise consumer_timeout in rabbitmq.conf and here");
  CHECK(only_error(amqp + "  amqp: {consumer_timeout: 1m}\nplugins: {dir: /p}\n"
                          "events: {e: [{task: a, topic: t, timeout: 1m}]}\nworkers: {t: {timeout: 10s}}\n") ==
        "t.yaml:5:43: error: events.e[0]: timeout + kill_after (1m5s) must stay below broker.amqp.consumer_timeout "
        "(1m), RabbitMQ's consumer_timeout, or RabbitMQ closes the channel of a long task and every task it holds "
        "runs again; shorten the timeout or raise consumer_timeout in rabbitmq.conf and here");
  // A delayed task waits in its worker for up to 1.5 x delay_unit before it is
  // due: that wait and the longest task must fit in consumer_timeout too.
  const std::string held_too_long = only_error(amqp + "  amqp: {delay_unit: 1h}\nplugins: {dir: /p}\n");
  CHECK_THAT(held_too_long, Catch::StartsWith("t.yaml:3:") &&
                                Catch::Contains("broker.amqp.delay_unit: a delayed task waits in its worker for up to "
                                                "1.5 x delay_unit (1h30m) before it is due, then runs for up to the "
                                                "longest timeout + kill_after (1m5s); together they must stay below "
                                                "broker.amqp.consumer_timeout (30m)"));
  {
    const ConfigLoad fits = load(amqp + "  amqp: {delay_unit: 10m}\nplugins: {dir: /p}\n");
    INFO(fits.error_text());
    REQUIRE(fits.config);
    CHECK(fits.config->longest_task_ms() == 65'000);
    CHECK(fits.config->amqp_max_unclaimed_ms() == (1'800'000 - 900'000 - 65'000) / 2);
  }
  {
    const ConfigLoad l = load(amqp + "plugins: {dir: /p}\nevents: {e: [{task: a, topic: t, timeout: 10m}]}\n"
                                     "workers: {t: {timeout: 10s, kill_after: 2s}, u: {timeout: 20s}}\n");
    INFO(l.error_text());
    REQUIRE(l.config);
    CHECK(l.config->longest_task_ms() == 602'000);  // the registration's own timeout + its topic's kill_after
  }
  // On RabbitMQ the scheduler routes the events; a worker cannot.
  CHECK(only_error(amqp + "plugins: {dir: /p}\nworkers:\n  demo: {route_events: true}\n") ==
        "t.yaml:5:10: error: workers.demo.route_events needs the SQLite broker (sqlite://): on RabbitMQ, "
        "ebats-scheduler routes the events");
  // The same timeouts are fine on SQLite, and AMQP keys there only draw a warning.
  const ConfigLoad l = load("broker: {url: \"sqlite:///x.db\", amqp: {heartbeat: 5s}}\nplugins: {dir: /p}\n"
                            "workers:\n  demo: {timeout: 30m}\n");
  REQUIRE(l.config);
  REQUIRE(l.warnings.size() == 1);
  CHECK_THAT(l.warnings[0].message, Catch::Contains("broker.amqp is ignored"));
}

TEST_CASE("config files: a size limit, one document, and 30,000 events in linear time", "[config]") {
  TempDir dir;
  SECTION("a file over 4 MiB is refused, and /dev/zero does not grow memory without bound") {
    const std::string big = dir.path() + "/big.yaml";
    {
      std::ofstream out(big);
      out << kRequired;
      for (int i = 0; i < 120'000; ++i) out << "# a comment line that pads the file out beyond the size limit\n";
    }
    const ConfigLoad l = ebats::load_config(big);
    CHECK(l.config == nullptr);
    CHECK_THAT(l.error_text(), Catch::Contains("larger than 4 MiB, the limit for a config file"));
    const ConfigLoad zero = ebats::load_config("/dev/zero");
    CHECK(zero.config == nullptr);
    CHECK_THAT(zero.error_text(), Catch::Contains("larger than 4 MiB"));
  }
  SECTION("a second YAML document is an error, not silently ignored") {
    CHECK_THAT(only_error(kRequired + "---\nevents: {e: [{task: t, topic: demo}]}\n"),
               Catch::Contains("t.yaml:4:1: error: a second YAML document (after ---) would be ignored"));
  }
  SECTION("30,000 events load, each with its registration (the key lookup used to be quadratic)") {
    std::string yaml = kRequired + "workers: {demo: {}}\nevents:\n";
    for (int i = 0; i < 30'000; ++i) yaml += "  e" + std::to_string(i) + ": [{task: t, topic: demo}]\n";
    const ConfigLoad l = load(yaml);
    INFO(l.error_text());
    REQUIRE(l.config != nullptr);
    CHECK(l.config->events.size() == 30'000);
    CHECK(l.config->registrations("e29999") != nullptr);
    // A repeated key is still found (the index keeps the first).
    CHECK_THAT(only_error(kRequired + "workers: {demo: {}}\nevents:\n  a: [{task: t, topic: demo}]\n"
                                      "  b: []\n  a: [{task: u, topic: demo}]\n"),
               Catch::Contains("duplicate key 'a' (first given at line 5)"));
  }
}

TEST_CASE("retry backoff: exponential with max and jitter, in defaults and registrations", "[config][backoff]") {
  const ConfigLoad l = load(kRequired +
                            "defaults: {retry: {max: 8, backoff: {exponential: 1s, max: 1h, jitter: 20%}}}\n"
                            "events:\n"
                            "  e:\n"
                            "    - {task: inherits, topic: demo}\n"
                            "    - {task: max_only, topic: demo, retry: {max: 3}}\n"
                            "    - {task: list, topic: demo, retry: {backoff: [1s]}}\n"
                            "    - {task: own, topic: demo, retry: {backoff: {exponential: 50ms, max: 300ms}}}\n"
                            "    - {task: full, topic: demo, retry: {backoff: {exponential: 2s, max: 2s, jitter: 100%}}}\n"
                            "workers: {demo: {}}\n");
  INFO(all_errors(l));
  REQUIRE(l.errors.empty());
  const ebats::Config& c = *l.config;
  CHECK(c.default_retry.max_retries == 8);
  CHECK(c.default_retry.backoff_ms == ebats::RetryPolicy::exponential_backoff(1'000, 3'600'000));
  CHECK(c.default_retry.jitter_pct == 20);
  CHECK(registration(c, "e", 0).retry == c.default_retry);
  CHECK(registration(c, "e", 1).retry.max_retries == 3);
  CHECK(registration(c, "e", 1).retry.backoff_ms == c.default_retry.backoff_ms);
  CHECK(registration(c, "e", 1).retry.jitter_pct == 20);
  // A list replaces the exponential policy, jitter included.
  CHECK(registration(c, "e", 2).retry.backoff_ms == std::vector<int64_t>{1'000});
  CHECK(registration(c, "e", 2).retry.jitter_pct == 0);
  CHECK(registration(c, "e", 2).retry.max_retries == 8);
  CHECK(registration(c, "e", 3).retry.backoff_ms == std::vector<int64_t>{50, 100, 200, 300});
  CHECK(registration(c, "e", 3).retry.jitter_pct == 0);
  CHECK(registration(c, "e", 4).retry.backoff_ms == std::vector<int64_t>{2'000});
  CHECK(registration(c, "e", 4).retry.jitter_pct == 100);
}

TEST_CASE("retry backoff: bad exponential maps are errors with file, line and column", "[config][backoff]") {
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: 1s, max: 1h, jitter: 150%}}}\n") ==
        "t.yaml:3:64: error: defaults.retry.backoff.jitter: 150% is more than 100% (which lets a delay double)");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: 1s, max: 1h, jitter: 20}}}\n") ==
        "t.yaml:3:64: error: defaults.retry.backoff.jitter: expected a whole percentage from 0% to 100%, such as "
        "20%, found '20'");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: 1s, max: 1h, jitter: -5%}}}\n") ==
        "t.yaml:3:64: error: defaults.retry.backoff.jitter: expected a whole percentage from 0% to 100%, such as "
        "20%, found '-5%'");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: 1m, max: 1s}}}\n") ==
        "t.yaml:3:52: error: defaults.retry.backoff.max: 1s is shorter than exponential (1m); the longest delay "
        "must be at least the first");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: 0s, max: 1s}}}\n") ==
        "t.yaml:3:43: error: defaults.retry.backoff.exponential: must be at least 1ms, found '0s'");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: -1s, max: 1s}}}\n")
            .rfind("t.yaml:3:43: error: defaults.retry.backoff.exponential: invalid duration '-1s'", 0) == 0);
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: 1s, max: 3651d}}}\n")
            .rfind("t.yaml:3:52: error: defaults.retry.backoff.max: invalid duration '3651d'", 0) == 0);
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: 1s}}}\n") ==
        "t.yaml:3:29: error: defaults.retry.backoff: missing max (the longest delay, where doubling stops); e.g. "
        "backoff: {exponential: 1s, max: 1h, jitter: 20%}");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {max: 1h}}}\n") ==
        "t.yaml:3:29: error: defaults.retry.backoff: missing exponential (the first delay); e.g. "
        "backoff: {exponential: 1s, max: 1h, jitter: 20%}");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: 1s, max: 1h, jiter: 20%}}}\n") ==
        "t.yaml:3:56: error: unknown key 'jiter' (did you mean 'jitter'?)");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: {exponential: 1s, max: 1h, factor: 3}}}\n") ==
        "t.yaml:3:56: error: unknown key 'factor' in defaults.retry.backoff (known keys: exponential, max, jitter)");
  CHECK(only_error(kRequired + "defaults: {retry: {backoff: 5s}}\n") ==
        "t.yaml:3:29: error: defaults.retry.backoff: expected a list, found '5s'; e.g. backoff: [5s, 5m, 10m, 1h, "
        "2h10m] or backoff: {exponential: 1s, max: 1h, jitter: 20%}");
  // exponential and jitter belong inside backoff.
  CHECK(only_error(kRequired + "events:\n  e:\n    - {task: a, topic: demo, retry: {exponential: 1s}}\n"
                               "workers: {demo: {}}\n") ==
        "t.yaml:5:38: error: events.e[0].retry: 'exponential' goes inside backoff; e.g. backoff: {exponential: 1s, "
        "max: 1h, jitter: 20%}");
}
