// ebatsctl, complete (issue 10, part 7): a missing database is an error that
// `setup` fixes, enqueue warns about a task no plugin handles, dead letters
// are filtered, replayed and purged by filter with --dry-run, task show,
// results tail, events, plugins, and the help and docs/CLI.md agree.
#include <rapidjson/document.h>
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "ebats/envelope.h"
#include "integration/harness.h"
#include "support/test_backend.h"

using ebats::test::TestSystem;
using namespace std::chrono_literals;

namespace {

const std::string kCtl = std::string(EBATS_BIN_DIR) + "/ebatsctl";

// Runs ebatsctl with the test's config; `out` gets stdout and stderr.
int ctl_all(const TestSystem& sys, std::vector<std::string> args, std::string* out) {
  args.insert(args.begin(), {kCtl, "--config", sys.config_path()});
  return sys.run(std::move(args), out);
}

rapidjson::Document parse(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text);
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

// A dead letter holding a valid envelope, dead `age_ms` ago.
ebats::DeadLetter dead_task(const std::string& task, const std::string& topic, const std::string& reason,
                            int64_t age_ms = 0) {
  ebats::SystemClock clock;
  ebats::Envelope e;
  e.kind = ebats::EnvelopeKind::task;
  e.created_at = clock.wall_now() - age_ms;
  e.id = ebats::new_uuid_v7(e.created_at);
  e.task = task;
  e.topic = topic;
  e.params = "{}";
  e.due_at = e.created_at;
  e.max_attempts = 3;
  ebats::DeadLetter d;
  d.id = e.id;
  d.kind = "task";
  d.topic = topic;
  d.name = task;
  d.reason = reason;
  d.error = "boom";
  d.attempts = 3;
  d.body = ebats::encode_envelope(e);
  d.first_seen = e.created_at;
  d.dead_at = e.created_at;
  return d;
}

ebats::DeadLetter dead_event(const std::string& event) {
  ebats::SystemClock clock;
  ebats::Envelope e;
  e.kind = ebats::EnvelopeKind::event;
  e.created_at = clock.wall_now();
  e.id = ebats::new_uuid_v7(e.created_at);
  e.event = event;
  e.params = "{}";
  ebats::DeadLetter d;
  d.id = e.id;
  d.kind = "event";
  d.name = event;
  d.reason = "no registration for event " + event;
  d.body = ebats::encode_envelope(e);
  d.first_seen = e.created_at;
  d.dead_at = e.created_at;
  return d;
}

// The ids of `dead list --json` with `filters`.
std::set<uint64_t> listed(const TestSystem& sys, std::vector<std::string> filters) {
  std::vector<std::string> args = {"dead", "list", "--json"};
  args.insert(args.end(), filters.begin(), filters.end());
  std::string out;
  REQUIRE(sys.ebatsctl(args, &out) == 0);
  const rapidjson::Document doc = parse(out);
  REQUIRE(doc.IsArray());
  std::set<uint64_t> ids;
  for (const auto& v : doc.GetArray()) ids.insert(v["id"].GetUint64());
  return ids;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("ebatsctl refuses a SQLite database that does not exist, naming it, and setup creates it",
          "[integration][sqlite]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  sys.edit_config("url: sqlite://ebats.db", "url: sqlite://ebtas.db");  // a typo
  const std::string missing = sys.dir() + "/ebtas.db";
  std::string out;
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"stats"}, {"dead", "list"}, {"dead", "purge"}, {"task", "show", "x"}, {"results", "tail"}}) {
    INFO(args[0]);
    CHECK(ctl_all(sys, args, &out) == 3);
    CHECK(out.find(missing + " does not exist") != std::string::npos);
    CHECK(out.find("ebatsctl setup") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(missing));
  }
  REQUIRE(ctl_all(sys, {"setup"}, &out) == 0);
  CHECK(out == "ready: database " + missing + " is set up\n");
  CHECK(std::filesystem::exists(missing));
  CHECK(ctl_all(sys, {"stats"}, &out) == 0);
  CHECK(ctl_all(sys, {"dead", "list"}, &out) == 0);
  CHECK(out.find("no dead letters") != std::string::npos);
}

TEST_CASE("ebatsctl setup counts the queued rows again after a writer that is not ebats changed them",
          "[integration][sqlite]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  std::string out;
  REQUIRE(ctl_all(sys, {"enqueue", "t", "noop", "{\"n\":1}"}, &out) == 0);
  REQUIRE(ctl_all(sys, {"enqueue", "t", "noop", "{\"n\":2}"}, &out) == 0);
  // Pending and delayed of topic t: the queued tasks that stats counts.
  auto queued_on_t = [&] {
    std::string json;
    REQUIRE(sys.ebatsctl({"stats", "--json"}, &json) == 0);
    rapidjson::Document d;
    d.Parse(json.c_str());
    REQUIRE(d.IsArray());
    for (const auto& row : d.GetArray()) {
      if (std::string(row["topic"].GetString()) == "t") return row["pending"].GetInt64() + row["delayed"].GetInt64();
    }
    FAIL("no row for topic t in " << json);
    return int64_t{-1};
  };
  CHECK(queued_on_t() == 2);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2((sys.dir() + "/ebats.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  CHECK(sqlite3_exec(db, "DELETE FROM tasks WHERE seq = (SELECT min(seq) FROM tasks)", nullptr, nullptr, nullptr) ==
        SQLITE_OK);
  sqlite3_close(db);
  CHECK(queued_on_t() == 2);  // stats reads the counts the commits keep, which did not see that
  REQUIRE(ctl_all(sys, {"setup"}, &out) == 0);
  CHECK(queued_on_t() == 1);
}

TEST_CASE("ebatsctl enqueue warns about a task no plugin handles and still enqueues it", "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  std::string out;
  REQUIRE(ctl_all(sys, {"enqueue", "t", "shipToMars", "{}"}, &out) == 0);
  CHECK(out.find("warning: no plugin in " EBATS_TEST_PLUGIN_DIR " handles task 'shipToMars'") != std::string::npos);
  REQUIRE(ctl_all(sys, {"enqueue", "t", "noop", "{}"}, &out) == 0);
  CHECK(out.find("warning") == std::string::npos);
  CHECK(TestSystem::wait_until([&] { return sys.ready_tasks() == 2; }));
}

TEST_CASE("ebatsctl enqueue --jsonl creates one task per line and stops at a bad one, saying so", "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  const std::string input = sys.dir() + "/tasks.jsonl";
  std::ofstream(input) << "{\"n\":1}\n\n{\"n\":2}\n{\"n\":3}\n";
  std::string out;
  REQUIRE(sys.run({"/bin/sh", "-c", kCtl + " --config " + sys.config_path() + " enqueue t noop --jsonl < " + input},
                  &out) == 0);
  CHECK(out.find("published 3 tasks from 4 lines") != std::string::npos);
  CHECK(TestSystem::wait_until([&] { return sys.ready_tasks() == 3; }));
  std::ofstream(input) << "{\"n\":4}\n[5]\n{\"n\":6}\n";
  REQUIRE(sys.run({"/bin/sh", "-c", kCtl + " --config " + sys.config_path() + " enqueue t noop --jsonl < " + input},
                  &out) == 2);
  CHECK(out.find("1 task published (line 1); line 2 not published") != std::string::npos);
  CHECK(TestSystem::wait_until([&] { return sys.ready_tasks() == 4; }));
  CHECK(sys.ebatsctl({"enqueue", "t", "noop", "{}", "--jsonl"}) == 2);
}

TEST_CASE("ebatsctl publish and enqueue refuse a bad name or trace as a usage error before reading any line",
          "[integration]") {
  // With --jsonl they were checked with the first line: an empty input
  // exited 0, and a bad argument was reported as line 1's fault.
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  const std::string empty = sys.dir() + "/empty.jsonl";
  const std::string lines = sys.dir() + "/lines.jsonl";
  std::ofstream(empty) << "";
  std::ofstream(lines) << "{\"n\":1}\n{\"n\":2}\n";
  const std::string trace129(129, 'x');
  struct Case {
    std::string args;
    std::string says;
  };
  const Case cases[] = {
      {"publish 'bad name!' --jsonl", "invalid event name 'bad name!'"},
      {"publish e --trace " + trace129 + " --jsonl", "trace is longer than 128 bytes"},
      {"enqueue 'bad topic' noop --jsonl", "invalid topic 'bad topic'"},
      {"enqueue t 'bad/task' --jsonl", "invalid task name 'bad/task'"},
      {"enqueue t noop --trace " + trace129 + " --jsonl", "trace is longer than 128 bytes"},
  };
  for (const Case& c : cases) {
    for (const std::string& input : {empty, lines}) {
      std::string out;
      const std::string cmd = kCtl + " --config " + sys.config_path() + " " + c.args + " < " + input;
      INFO(cmd);
      CHECK(sys.run({"/bin/sh", "-c", cmd}, &out) == 2);
      INFO(out);
      CHECK(out.find(c.says) != std::string::npos);
      CHECK(out.find("line") == std::string::npos);
      CHECK(out.find("warning") == std::string::npos);  // no plugin was loaded to check the task
    }
  }
  // Standard input closed: read as empty, not waited on (the stop signals'
  // descriptor took its number, and the command hung until a signal).
  {
    std::string closed;
    const std::string cmd = kCtl + " --config " + sys.config_path() + " publish e --jsonl <&-";
    INFO(cmd);
    CHECK(sys.run({"/bin/sh", "-c", cmd}, &closed) == 0);
    CHECK(closed.find("published 0 events from 0 lines") != std::string::npos);
  }
  // One task with a trace too long was published, then dead-lettered unrun.
  std::string out;
  CHECK(ctl_all(sys, {"enqueue", "t", "noop", "{}", "--trace", trace129}, &out) == 2);
  CHECK(sys.ready_tasks() == 0);
}

TEST_CASE("ebatsctl dead list filters by event, task, topic, kind, reason and time", "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  ebats::Batch batch;
  batch.dead = {dead_task("a", "t", "failed"), dead_task("b", "u", "retries exhausted"),
                dead_task("a", "u", "failed", 2 * 3600 * 1000), dead_event("e1")};
  REQUIRE(sys.broker().commit(batch).ok());
  const auto all = sys.wait_for_dead_letters(4);
  REQUIRE(all.size() == 4);
  std::map<std::string, uint64_t> id;  // "a/t", "b/u", "a/u", "e1"
  for (const auto& e : all) id[e.letter.kind == "event" ? e.letter.name : e.letter.name + "/" + e.letter.topic] = e.seq;
  REQUIRE(id.size() == 4);

  CHECK(listed(sys, {}) == std::set<uint64_t>{id["a/t"], id["b/u"], id["a/u"], id["e1"]});
  CHECK(listed(sys, {"--task", "a"}) == std::set<uint64_t>{id["a/t"], id["a/u"]});
  CHECK(listed(sys, {"--task", "e1"}).empty());  // an event is no task
  CHECK(listed(sys, {"--event", "e1"}) == std::set<uint64_t>{id["e1"]});
  CHECK(listed(sys, {"--topic", "u"}) == std::set<uint64_t>{id["b/u"], id["a/u"]});
  CHECK(listed(sys, {"--kind", "event"}) == std::set<uint64_t>{id["e1"]});
  CHECK(listed(sys, {"--reason", "exhausted"}) == std::set<uint64_t>{id["b/u"]});
  CHECK(listed(sys, {"--older-than", "1h"}) == std::set<uint64_t>{id["a/u"]});
  CHECK(listed(sys, {"--since", "1h", "--task", "a"}) == std::set<uint64_t>{id["a/t"]});
  CHECK(listed(sys, {"--task", "a", "--limit", "1"}).size() == 1);
  CHECK(sys.ebatsctl({"dead", "list", "--kind", "letter"}) == 2);
  CHECK(sys.ebatsctl({"dead", "list", "--since", "yesterday"}) == 2);
  CHECK(sys.ebatsctl({"dead", "list", "--topic"}) == 2);  // a missing value
}

TEST_CASE("ebatsctl dead replay and purge of a filtered set count what they do, and --dry-run changes nothing",
          "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  ebats::Batch batch;
  batch.dead = {dead_task("a", "t", "failed"), dead_task("b", "u", "failed"), dead_task("a", "t", "failed"),
                dead_event("e1")};
  REQUIRE(sys.broker().commit(batch).ok());
  REQUIRE(sys.wait_for_dead_letters(4).size() == 4);
  std::string out;

  REQUIRE(sys.ebatsctl({"dead", "purge", "--topic", "u", "--dry-run"}, &out) == 0);
  CHECK(out.find("would purge 1 dead letter(s); --dry-run: nothing changed") != std::string::npos);
  CHECK(listed(sys, {}).size() == 4);
  REQUIRE(sys.ebatsctl({"dead", "purge", "--topic", "u"}, &out) == 0);
  CHECK(out == "purged 1 dead letter(s)\n");
  CHECK(listed(sys, {}).size() == 3);
  CHECK(listed(sys, {"--topic", "u"}).empty());

  const std::set<uint64_t> of_a = listed(sys, {"--task", "a"});
  REQUIRE(of_a.size() == 2);
  REQUIRE(sys.ebatsctl({"dead", "replay", "--task", "a", "--dry-run", "--json"}, &out) == 0);
  const rapidjson::Document dry = parse(out);
  CHECK(dry["dry_run"].GetBool());
  CHECK(dry["count"].GetUint64() == 2);
  std::set<uint64_t> dry_ids;
  for (const auto& v : dry["ids"].GetArray()) dry_ids.insert(v.GetUint64());
  CHECK(dry_ids == of_a);
  CHECK(sys.ready_tasks() == 0);
  CHECK(listed(sys, {}).size() == 3);

  REQUIRE(sys.ebatsctl({"dead", "replay", "--task", "a"}, &out) == 0);
  CHECK(out == "replayed 2 dead letter(s)\n");
  CHECK(listed(sys, {}).size() == 1);  // the event stays
  CHECK(TestSystem::wait_until([&] { return sys.ready_tasks() == 2; }));

  CHECK(sys.ebatsctl({"dead", "replay"}) == 2);               // nothing picked
  CHECK(sys.ebatsctl({"dead", "replay", "1", "--task", "a"}) == 2);  // IDs or filters
  CHECK(sys.ebatsctl({"dead", "show", "1", "--task", "a"}) == 2);
  CHECK(sys.ebatsctl({"dead", "list", "--dry-run"}) == 2);
  REQUIRE(sys.ebatsctl({"dead", "purge", "--json"}, &out) == 0);
  CHECK(out == "{\"dry_run\":false,\"count\":1}\n");
  CHECK(listed(sys, {}).empty());
}

TEST_CASE("ebatsctl dead replay and purge refuse --limit, and a list of IDs is checked before any is replayed",
          "[integration]") {
  // "dead purge --limit 1" purged every dead letter: --limit is no filter.
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  ebats::Batch batch;
  batch.dead = {dead_task("a", "t", "failed"), dead_task("b", "t", "failed"), dead_task("c", "t", "failed")};
  REQUIRE(sys.broker().commit(batch).ok());
  REQUIRE(sys.wait_for_dead_letters(3).size() == 3);
  std::string out;
  CHECK(sys.ebatsctl({"dead", "purge", "--limit", "1"}, &out) == 2);
  CHECK(sys.ebatsctl({"dead", "replay", "--all", "--limit", "1"}, &out) == 2);
  CHECK(listed(sys, {}).size() == 3);
  const std::set<uint64_t> ids = listed(sys, {});
  const std::string first = std::to_string(*ids.begin());
  // A malformed ID among them: nothing is replayed.
  CHECK(sys.ebatsctl({"dead", "replay", first, "abc"}, &out) == 2);
  CHECK(listed(sys, {}).size() == 3);
  // One that is not there: those before it are replayed, and --json says how many.
  CHECK(sys.ebatsctl({"dead", "replay", first, "999999", "--json"}, &out) == 3);
  CHECK(out == "{\"dry_run\":false,\"count\":1}\n");
  CHECK(listed(sys, {}).size() == 2);
  CHECK(TestSystem::wait_until([&] { return sys.ready_tasks() == 1; }));
}

TEST_CASE("ebatsctl task show lists every attempt with where it ran, and the dead letter", "[integration]") {
  TestSystem sys("  e:\n    - {task: retry_once, topic: t}\n    - {task: fail, topic: t}\n");
  std::string retried_id, failed_id;
  REQUIRE(sys.ebatsctl({"enqueue", "t", "retry_once", "{}"}, &retried_id) == 0);
  REQUIRE(sys.ebatsctl({"enqueue", "t", "fail", "{}"}, &failed_id) == 0);
  retried_id.pop_back();  // the newline
  failed_id.pop_back();
  sys.start_all();
  REQUIRE(sys.wait_for_dead_letters(1).size() == 1);
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 3; }));  // 2 + 1
  std::string out;
  CHECK(sys.ebatsctl({"task", "show", "0190d1b2-0000-7000-8000-000000000000"}) == 3);
  CHECK(sys.ebatsctl({"task", "show"}) == 2);

  REQUIRE(sys.ebatsctl({"task", "show", failed_id, "--json"}, &out) == 0);
  rapidjson::Document doc = parse(out);
  CHECK(std::string(doc["task_id"].GetString()) == failed_id);
  REQUIRE(doc["dead_letters"].Size() == 1);
  const uint64_t dead_id = sys.dead_letters().at(0).seq;
  CHECK(doc["dead_letters"][0].GetUint64() == dead_id);
  if (ebats::test::amqp_backend()) {
    CHECK(doc["results"].IsNull());  // RabbitMQ keeps no results to read
    REQUIRE(sys.ebatsctl({"task", "show", failed_id}, &out) == 0);
    CHECK(out.find("not kept by RabbitMQ") != std::string::npos);
    CHECK(out.find("ebatsctl dead show " + std::to_string(dead_id)) != std::string::npos);
    CHECK(sys.ebatsctl({"task", "show", retried_id}) == 3);  // neither a result nor a dead letter to show
    REQUIRE(ctl_all(sys, {"results", "tail"}, &out) == 1);    // nothing to tail: it says where results go
    CHECK(out.find("RabbitMQ keeps no results table") != std::string::npos);
    CHECK(out.find(sys.prefix()) != std::string::npos);  // the results exchange, by name
    return;
  }
  REQUIRE(doc["results"].Size() == 1);
  const std::string status = doc["results"][0]["status"].GetString();
  CHECK((status == "failed" || status == "dead"));

  // SQLite remembers every attempt: the retry, then the success, with host and child pid.
  REQUIRE(TestSystem::wait_until([&] {
    std::string o;
    return sys.ebatsctl({"task", "show", retried_id, "--json"}, &o) == 0 && parse(o)["results"].Size() == 2;
  }));
  REQUIRE(sys.ebatsctl({"task", "show", retried_id, "--json"}, &out) == 0);
  doc = parse(out);
  CHECK(doc["dead_letters"].Size() == 0);
  const auto& results = doc["results"];
  CHECK(std::string(results[0]["status"].GetString()) == "retry");
  CHECK(results[0]["attempt"].GetUint() == 0);
  CHECK(std::string(results[1]["status"].GetString()) == "ok");
  CHECK(results[1]["attempt"].GetUint() == 1);
  CHECK(results[1]["pid"].GetInt64() > 0);
  CHECK(std::string(results[1]["host"].GetString()).size() > 0);
  REQUIRE(sys.ebatsctl({"task", "show", retried_id}, &out) == 0);
  CHECK(out.find("task:        retry_once") != std::string::npos);
  CHECK(out.find("last status: ok") != std::string::npos);
  CHECK(out.find("attempts:    2") != std::string::npos);
}

TEST_CASE("ebatsctl results tail prints the newest results and --follow the new ones until SIGTERM",
          "[integration][sqlite]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  std::string first, out;
  REQUIRE(sys.ebatsctl({"enqueue", "t", "noop", "{}"}, &first) == 0);
  first.pop_back();
  sys.start_ntask();
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 1; }));
  REQUIRE(TestSystem::wait_until([&] {
    std::string o;
    return sys.ebatsctl({"results", "tail", "--json"}, &o) == 0 && o.find(first) != std::string::npos;
  }));
  REQUIRE(sys.ebatsctl({"results", "tail"}, &out) == 0);
  CHECK(out.find("TASK ID") != std::string::npos);
  CHECK(out.find(first) != std::string::npos);
  REQUIRE(sys.ebatsctl({"results", "tail", "--lines", "0"}, &out) == 0);
  CHECK(out.empty());

  const std::string log = sys.dir() + "/tail.log";
  ebats::test::Daemon tail({kCtl, "--config", sys.config_path(), "results", "tail", "--lines", "0", "--follow",
                            "--json"},
                           {}, log);
  // The tail starts following from the newest result it sees when it has
  // started, which the test cannot observe: a task run before that (a
  // woken worker runs one within milliseconds) is "from before". So tasks
  // are enqueued one by one until one shows up; from then on every one must.
  std::vector<std::string> sent;
  auto printed = [&](const std::string& id) { return slurp(log).find(id) != std::string::npos; };
  for (int i = 0; i < 50 && std::none_of(sent.begin(), sent.end(), printed); ++i) {
    std::string id;
    REQUIRE(sys.ebatsctl({"enqueue", "t", "noop", "{}"}, &id) == 0);
    id.pop_back();
    sent.push_back(id);
    TestSystem::wait_until([&] { return printed(id); }, 1s);
  }
  REQUIRE(std::any_of(sent.begin(), sent.end(), printed));
  std::string next;
  REQUIRE(sys.ebatsctl({"enqueue", "t", "noop", "{}"}, &next) == 0);
  next.pop_back();
  REQUIRE(TestSystem::wait_until([&] { return printed(next); }));
  CHECK_FALSE(printed(first));  // --lines 0: nothing from before
  const rapidjson::Document line = parse(slurp(log).substr(0, slurp(log).find('\n')));
  CHECK(std::find(sent.begin(), sent.end(), std::string(line["task_id"].GetString())) != sent.end());
  tail.signal(SIGTERM);
  CHECK(tail.wait(60s) == 0);
}

TEST_CASE("ebatsctl events shows each registration and whether a plugin handles it, plugins what is loaded",
          "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n    - {task: shipToMars, topic: t, delay: 5s}\n");
  std::string out;
  REQUIRE(sys.ebatsctl({"events", "--json"}, &out) == 0);
  const rapidjson::Document doc = parse(out);
  REQUIRE(doc.Size() == 2);
  std::map<std::string, bool> handled;
  for (const auto& r : doc.GetArray()) {
    CHECK(std::string(r["event"].GetString()) == "e");
    CHECK(std::string(r["topic"].GetString()) == "t");
    handled[r["task"].GetString()] = r["handled"].GetBool();
  }
  CHECK(handled == std::map<std::string, bool>{{"noop", true}, {"shipToMars", false}});
  REQUIRE(sys.ebatsctl({"events"}, &out) == 0);
  CHECK(out.find("shipToMars") != std::string::npos);
  CHECK(out.find("5s") != std::string::npos);

  REQUIRE(sys.ebatsctl({"plugins", "--json"}, &out) == 0);
  const rapidjson::Document plugins = parse(out);
  std::set<std::string> names, tasks;
  for (const auto& p : plugins["plugins"].GetArray()) {
    names.insert(p["name"].GetString());
    if (std::string(p["name"].GetString()) == "test_tasks") {
      CHECK(std::string(p["version"].GetString()) == "1.0.0");
      CHECK(std::string(p["abi"].GetString()).rfind("1.", 0) == 0);
      CHECK(std::string(p["file"].GetString()).find(EBATS_TEST_PLUGIN_DIR) == 0);
    }
  }
  for (const auto& t : plugins["tasks"].GetArray()) tasks.insert(t.GetString());
  CHECK(names.count("test_tasks") == 1);
  CHECK(tasks.count("noop") == 1);
  CHECK(tasks.count("shipToMars") == 0);
  CHECK(plugins["refused"].Size() == 0);
  REQUIRE(sys.ebatsctl({"plugins"}, &out) == 0);
  CHECK(out.find("test_tasks") != std::string::npos);
  CHECK(out.find("1.0.0") != std::string::npos);
  CHECK(sys.ebatsctl({"plugins", "--yaml"}) == 2);
}

TEST_CASE("ebatsctl --help and docs/CLI.md list the same commands with the same options", "[integration][sqlite]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  std::string help;
  REQUIRE(sys.run({kCtl, "--help"}, &help) == 0);
  // The help's command lines: two spaces, then the usage.
  std::set<std::string> from_help;
  std::istringstream hs(help);
  bool in_commands = false;
  for (std::string line; std::getline(hs, line);) {
    if (line == "Commands:") {
      in_commands = true;
    } else if (line.empty()) {
      in_commands = false;
    } else if (in_commands && line.rfind("  ", 0) == 0 && line.rfind("   ", 0) != 0) {
      from_help.insert(line.substr(2));
    }
  }
  // docs/CLI.md's block of "ebatsctl [--config FILE] <usage>" lines (a "<" comment after three spaces aside).
  std::set<std::string> from_docs;
  std::istringstream ds(slurp(std::string(EBATS_SOURCE_DIR) + "/docs/CLI.md"));
  const std::string prefix = "ebatsctl [--config FILE] ";
  for (std::string line; std::getline(ds, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::string usage = line.substr(prefix.size());
    const size_t comment = usage.find("   <");
    if (comment != std::string::npos) usage.resize(comment);
    from_docs.insert(usage);
  }
  CHECK(from_help.size() >= 14);
  CHECK(from_help == from_docs);
  // Every option the help names is explained in CLI.md, outside the block of usage lines.
  std::string prose;
  std::istringstream ps(slurp(std::string(EBATS_SOURCE_DIR) + "/docs/CLI.md"));
  for (std::string line; std::getline(ps, line);) {
    if (line.rfind(prefix, 0) != 0) prose += line + "\n";
  }
  const std::regex option("--[a-z][a-z-]*");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), option); it != std::sregex_iterator(); ++it) {
    const std::regex word(it->str() + "(?![a-z-])");
    INFO(it->str());
    CHECK(std::regex_search(prose, word));
  }
}

TEST_CASE("daemons: --check-config exits 2 on a config with errors, as each daemon's --help says", "[integration][sqlite]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  const std::string bad = sys.dir() + "/bad.yaml";
  std::ofstream(bad) << "broker: {url: 'sqlite://x.db'}\nplugins: {dir: /tmp}\nevents:\n  e:\n    - {task: noop}\n";
  for (const std::string program : {"ebats-scheduler", "ebats-ntask-worker", "ebats-dtask-worker"}) {
    INFO(program);
    const std::string path = std::string(EBATS_BIN_DIR) + "/" + program;
    std::vector<std::string> argv = {path, "--config", bad, "--check-config"};
    if (program != "ebats-scheduler") argv.insert(argv.end(), {"--topic", "t"});
    std::string out;
    CHECK(sys.run(argv, &out) == 2);
    CHECK(out.find(bad + ":5:") != std::string::npos);
    REQUIRE(sys.run({path, "--help"}, &out) == 0);
    const std::string help = std::regex_replace(out, std::regex("\\s+"), " ");  // the help wraps lines
    CHECK(help.find("2 (the config has errors)") != std::string::npos);
  }
  const std::string docs = slurp(std::string(EBATS_SOURCE_DIR) + "/docs/CLI.md");
  CHECK(docs.find("2 when the config itself has errors") != std::string::npos);
}
