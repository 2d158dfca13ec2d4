// The command lines: clear errors and the right exit codes for bad input.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "integration/harness.h"

using ebats::test::TestSystem;
using namespace std::chrono_literals;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a daemon to completion; returns its exit code and its output.
int run_daemon(const TestSystem& sys, std::vector<std::string> argv, std::string* output) {
  return sys.run(std::move(argv), output);
}

}  // namespace

TEST_CASE("the --check-config option passes with handlers for every task and fails naming the missing one", "[integration]") {
  TestSystem good("  e:\n    - {task: noop, topic: t}\n");
  std::string out;
  CHECK(run_daemon(good, {EBATS_BIN_DIR "/ebats-scheduler", "--config", good.config_path(), "--check-config"}, &out) ==
        0);
  CHECK(out.find("ok") != std::string::npos);

  TestSystem missing("  e:\n    - {task: noop, topic: t}\n    - {task: shipToMars, topic: t}\n");
  CHECK(run_daemon(missing, {EBATS_BIN_DIR "/ebats-ntask-worker", "--config", missing.config_path(), "--topic", "t",
                             "--check-config"},
                   &out) == 1);
  CHECK(out.find("'shipToMars'") != std::string::npos);
  CHECK(out.find("no plugin") != std::string::npos);
}

TEST_CASE("plugin settings that no loaded plugin uses are warned about, by --check-config and by the worker",
          "[integration]") {
  TestSystem sys("  e:\n    - {task: settings, topic: t}\n");
  sys.set_plugin_settings("{test_tasks: {a: 1}, test_taks: {a: 2}}");  // the second is a typo
  std::string out;
  CHECK(run_daemon(sys, {EBATS_BIN_DIR "/ebats-ntask-worker", "--config", sys.config_path(), "--topic", "t",
                         "--check-config"},
                   &out) == 0);  // a warning, not an error
  CHECK(out.find("warning: plugins.settings.test_taks: no plugin named 'test_taks' was loaded") != std::string::npos);
  CHECK(out.find("plugins.settings.test_tasks:") == std::string::npos);
  CHECK(out.find("test_c, test_tasks") != std::string::npos);  // what was loaded, to compare with
  sys.start_ntask();
  REQUIRE(TestSystem::wait_until([&] { return sys.log_of("ntask").find("plugin settings unused") != std::string::npos; }));
  const std::string log = sys.log_of("ntask");
  CHECK(log.find("settings=plugins.settings.test_taks") != std::string::npos);
  CHECK(log.find("settings=plugins.settings.test_tasks ") == std::string::npos);
}

TEST_CASE("a config with errors stops a daemon with exit 2 and file:line:col", "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  const std::string bad = sys.dir() + "/bad.yaml";
  std::ofstream(bad) << "broker: {url: 'sqlite://x.db'}\nplugins: {dir: /tmp}\nevents:\n  e:\n    - {task: noop}\n";
  std::string out;
  CHECK(run_daemon(sys, {EBATS_BIN_DIR "/ebats-scheduler", "--config", bad}, &out) == 2);
  CHECK(out.find(bad + ":5:") != std::string::npos);
  CHECK(out.find("topic") != std::string::npos);
}

TEST_CASE("a database in a folder that cannot be created is a clear error, exit 1", "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  const std::string cfg = sys.dir() + "/unwritable.yaml";
  std::ofstream(sys.dir() + "/afile") << "x";
  std::ofstream(cfg) << "broker: {url: 'sqlite://" << sys.dir() << "/afile/sub/q.db'}\nplugins: {dir: "
                     << EBATS_TEST_PLUGIN_DIR << "}\nevents:\n  e:\n    - {task: noop, topic: t}\nworkers: {t: {}}\n";
  std::string out;
  CHECK(run_daemon(sys, {EBATS_BIN_DIR "/ebats-ntask-worker", "--config", cfg, "--topic", "t"}, &out) == 1);
  CHECK(out.find(sys.dir() + "/afile/sub/q.db") != std::string::npos);
}

TEST_CASE("a second scheduler on the same database is refused", "[integration][sqlite]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  auto& first = sys.start_scheduler();
  REQUIRE(TestSystem::wait_until([&] { return sys.log_of("scheduler").find("ready") != std::string::npos; }));
  std::string out;
  CHECK(run_daemon(sys, {EBATS_BIN_DIR "/ebats-scheduler", "--config", sys.config_path()}, &out) == 1);
  CHECK(out.find("another ebats-scheduler") != std::string::npos);
  CHECK(first.running());
}

TEST_CASE("ebatsctl: bad JSON and unknown commands are usage errors, missing dead letters are not found",
          "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  CHECK(sys.ebatsctl({"publish", "e", "{not json"}) == 2);
  CHECK(sys.ebatsctl({"publish", "e", "[1]"}) == 2);
  CHECK(sys.ebatsctl({"frobnicate"}) == 2);
  CHECK(sys.ebatsctl({"enqueue", "t", "noop", "{}", "--delay", "10"}) == 2);  // a bare number is ambiguous
  CHECK(sys.ebatsctl({"dead", "show", "12345"}) == 3);
  // Numbers are digits only and fit: "-1" used to wrap to 2^64-1, 2^32 to 0 (all).
  CHECK(sys.ebatsctl({"dead", "show", "-1"}) == 2);
  CHECK(sys.ebatsctl({"dead", "list", "--limit", "-1"}) == 2);
  CHECK(sys.ebatsctl({"dead", "list", "--limit", "4294967296"}) == 2);
  CHECK(sys.ebatsctl({"dead", "list", "--limit", "4294967295"}) == 0);
  std::string out;
  REQUIRE(sys.ebatsctl({"publish", "e", "{\"a\":1}"}, &out) == 0);
  CHECK(out.size() == 37);  // a UUID and a newline
  REQUIRE(sys.ebatsctl({"stats", "--json"}, &out) == 0);
  // No scheduler runs: the event waits in the events row.
  CHECK(out.find("{\"topic\":\"\",\"row\":\"events\",\"pending\":1,") != std::string::npos);
}

TEST_CASE("ebatsctl publish --jsonl publishes one event per line in batches", "[integration]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  const std::string input = sys.dir() + "/events.jsonl";
  {
    std::ofstream f(input);
    for (int i = 0; i < 2500; ++i) f << "{\"i\":" << i << "}\n";
  }
  const std::string cmd = std::string(EBATS_BIN_DIR) + "/ebatsctl --config " + sys.config_path() +
                          " publish e --jsonl < " + input + " > " + sys.dir() + "/out.txt 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  sys.start_all();
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() >= 2500; }));
  std::set<std::string> ids;
  for (const auto& e : sys.executions()) ids.insert(e.id);
  CHECK(ids.size() == 2500);
}

TEST_CASE("every program answers --help and --version and EBATS_CONFIG stands in for --config", "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  for (const char* program : {"ebats-scheduler", "ebats-ntask-worker", "ebats-dtask-worker", "ebatsctl"}) {
    const std::string bin = std::string(EBATS_BIN_DIR) + "/" + program;
    const std::string out = sys.dir() + "/help.txt";
    INFO(program);
    CHECK(std::system((bin + " --help > " + out + " 2>&1").c_str()) == 0);
    CHECK(read_file(out).find("--config") != std::string::npos);
    CHECK(std::system((bin + " --version > " + out + " 2>&1").c_str()) == 0);
    CHECK(read_file(out).find(program) == 0);
  }
  const std::string out = sys.dir() + "/stats.txt";
  const std::string cmd = "EBATS_CONFIG=" + sys.config_path() + " " + EBATS_BIN_DIR + "/ebatsctl stats > " + out;
  CHECK(std::system(cmd.c_str()) == 0);
  CHECK(read_file(out).find("TOPIC") != std::string::npos);
  const std::string none = "env -u EBATS_CONFIG " + std::string(EBATS_BIN_DIR) + "/ebats-scheduler > " + out + " 2>&1";
  CHECK(WEXITSTATUS(std::system(none.c_str())) == 2);
  CHECK(read_file(out).find("EBATS_CONFIG") != std::string::npos);
}

TEST_CASE("ebatsctl dead show/list --json and stats --json are valid JSON whatever the stored bytes", "[integration]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  ebats::DeadLetter letter;
  letter.id = "raw-1";
  letter.kind = "raw";
  letter.reason = "malformed";
  letter.error = "a \"quote\",\na newline and a tab\t";
  letter.body = std::string("{\"v\":1,\xff\xfe\x01", 10);  // invalid UTF-8 and a control byte
  ebats::Batch batch;
  batch.dead.push_back(letter);
  REQUIRE(sys.broker().commit(batch).ok());

  auto parse = [](const std::string& text) {
    rapidjson::Document d;
    d.Parse<rapidjson::kParseValidateEncodingFlag>(text.c_str());
    INFO(text);
    REQUIRE_FALSE(d.HasParseError());
    return d;
  };
  std::string out;
  REQUIRE(sys.ebatsctl({"dead", "list", "--json"}, &out) == 0);
  rapidjson::Document listed = parse(out);
  REQUIRE(listed.IsArray());
  REQUIRE(listed.Size() == 1);
  CHECK(std::string(listed[0]["message_id"].GetString()) == "raw-1");
  CHECK_FALSE(listed[0].HasMember("body"));
  const std::string id = std::to_string(listed[0]["id"].GetUint64());

  REQUIRE(sys.ebatsctl({"dead", "show", id, "--json"}, &out) == 0);
  rapidjson::Document shown = parse(out);
  REQUIRE(shown.IsObject());
  CHECK(std::string(shown["error"].GetString()) == letter.error);
  CHECK(std::string(shown["reason"].GetString()) == "malformed");
  CHECK(std::string(shown["body"].GetString()).find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
  CHECK(std::to_string(shown["id"].GetUint64()) == id);

  REQUIRE(sys.ebatsctl({"stats", "--json"}, &out) == 0);
  rapidjson::Document stats = parse(out);
  REQUIRE(stats.IsArray());
  // The raw dead letter has no topic: it is counted in the events row.
  bool counted = false;
  for (const auto& row : stats.GetArray()) {
    if (row.HasMember("row") && std::string(row["row"].GetString()) == "events") {
      CHECK(std::string(row["topic"].GetString()).empty());
      CHECK(row["dead"].GetUint64() == 1);
      counted = true;
    }
  }
  CHECK(counted);
}

TEST_CASE("a deleted database file stops the daemons with a clear message, exit 1", "[integration][sqlite]") {
  // They used to go on with the unlinked file while producers wrote to a new
  // one at the same path, which nobody read, without a log line.
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  auto& scheduler = sys.start_scheduler();
  auto& ntask = sys.start_ntask();
  REQUIRE(sys.publisher().publish("e", "{}").ok());
  REQUIRE(TestSystem::wait_until([&] { return sys.executions().size() == 1; }));
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(sys.dir() + "/ebats.db" + suffix);
  CHECK(scheduler.wait(30s) == 1);
  CHECK(ntask.wait(30s) == 1);
  for (const char* name : {"scheduler", "ntask"}) {
    INFO(sys.log_of(name));
    CHECK(sys.log_of(name).find("ebats.db was deleted while this daemon had it open") != std::string::npos);
  }
}

namespace {

// ebatsctl run with a pipe as its stdin, which the test writes to and closes
// when it chooses; stdout and stderr go to files.
class PipedCtl {
 public:
  PipedCtl(const TestSystem& sys, std::vector<std::string> args, const std::string& name)
      : out_(sys.dir() + "/" + name + ".out"), err_(sys.dir() + "/" + name + ".err") {
    std::vector<std::string> argv{std::string(EBATS_BIN_DIR) + "/ebatsctl", "--config", sys.config_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargs;
    for (auto& a : argv) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(fds[0], 0);
      ::close(fds[0]);
      ::close(fds[1]);
      int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out, 1);
      ::dup2(err, 2);
      ::execv(cargs[0], cargs.data());
      ::_exit(127);
    }
    ::close(fds[0]);
    write_fd_ = fds[1];
  }
  ~PipedCtl() {
    close_stdin();
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  void write(const std::string& text) {
    REQUIRE(::write(write_fd_, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  }
  void close_stdin() {
    if (write_fd_ >= 0) ::close(write_fd_);
    write_fd_ = -1;
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  bool running() {
    if (reaped_) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) != pid_) return true;
    reaped_ = true;
    code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  // The exit code once it ended (REQUIREs that it does, within a generous minute).
  int wait() {
    REQUIRE(TestSystem::wait_until([&] { return !running(); }));
    return code_;
  }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  int write_fd_ = -1;
  bool reaped_ = false;
  int code_ = -1;
};

}  // namespace

TEST_CASE("ebatsctl publish --jsonl stops at a bad line after publishing every line before it and says so exactly",
          "[integration][sqlite]") {
  // It used to print "1000 events published before line 1500" while 1499 were stored.
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  const std::string input = sys.dir() + "/bad.jsonl";
  {
    std::ofstream f(input);
    for (int i = 1; i <= 1499; ++i) f << "{\"n\":" << i << "}\n";
    f << "{bad\n{\"n\":1501}\n";
  }
  const std::string out = sys.dir() + "/bad.out", err = sys.dir() + "/bad.err";
  const std::string cmd = std::string(EBATS_BIN_DIR) + "/ebatsctl --config " + sys.config_path() +
                          " publish e --jsonl < " + input + " > " + out + " 2> " + err;
  const int st = std::system(cmd.c_str());
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 2);  // bad input is a usage error
  INFO(read_file(err));
  CHECK(read_file(out) == "1499\n");
  CHECK(read_file(err).find("1499 events published (lines 1-1499); line 1500 not published: ") != std::string::npos);
  CHECK(sys.unrouted_events() == 1499);
}

TEST_CASE("ebatsctl publish --jsonl commits a slow producer's lines while its stdin stays open",
          "[integration][sqlite]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  PipedCtl ctl(sys, {"publish", "e", "--jsonl"}, "slow");
  ctl.write("{\"i\":1}\n{\"i\":2}\n{\"i\":3}\n");
  // Not a batch of 1000 and no end of input: the time-based flush commits them.
  CHECK(TestSystem::wait_until([&] { return sys.unrouted_events() == 3; }, 30s));
  CHECK(ctl.running());
  ctl.write("{\"i\":4}\n");
  ctl.close_stdin();
  CHECK(ctl.wait() == 0);
  CHECK(ctl.out() == "4\n");
  CHECK(sys.unrouted_events() == 4);
}

TEST_CASE("ebatsctl publish --jsonl stopped by SIGTERM commits what it read and reports the count stored",
          "[integration][sqlite]") {
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  PipedCtl ctl(sys, {"publish", "e", "--jsonl"}, "term");
  for (int i = 1; i <= 5; ++i) ctl.write("{\"i\":" + std::to_string(i) + "}\n");
  REQUIRE(TestSystem::wait_until([&] { return sys.unrouted_events() == 5; }, 30s));
  ctl.write("{\"i\":6}\n{\"i\":7}\n{\"i\":");  // two more lines and half of one: the signal may come before or after they are read
  ctl.signal(SIGTERM);
  CHECK(ctl.wait() == 143);
  INFO(ctl.err());
  const std::string out = ctl.out();
  REQUIRE_FALSE(out.empty());
  const uint64_t reported = std::stoull(out);
  CHECK(reported >= 5);
  CHECK(reported <= 7);
  CHECK(sys.unrouted_events() == reported);
  CHECK(ctl.err().find(std::to_string(reported) + " events published (lines 1-" + std::to_string(reported) +
                       "); stopped by SIGTERM: nothing after line " + std::to_string(reported) + " was published") !=
        std::string::npos);
}

TEST_CASE("ebatsctl publish --jsonl --id-from and --id-base make re-publishing the same lines idempotent",
          "[integration][sqlite]") {
  // No scheduler runs, so the events stay in the events table, where an id
  // already there is not stored again.
  TestSystem sys("  e:\n    - {task: record, topic: t}\n");
  auto publish = [&](const std::vector<std::string>& args, const std::string& lines, std::string* out) {
    const std::string input = sys.dir() + "/in.jsonl";
    std::ofstream(input) << lines;
    const std::string out_path = sys.dir() + "/id.out", err_path = sys.dir() + "/id.err";
    std::string cmd = std::string(EBATS_BIN_DIR) + "/ebatsctl --config " + sys.config_path() + " publish e --jsonl";
    for (const auto& a : args) cmd += " " + a;
    cmd += " < " + input + " > " + out_path + " 2> " + err_path;
    const int st = std::system(cmd.c_str());
    *out = read_file(out_path) + read_file(err_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  auto orders = [](int from, int to) {
    std::string s;
    for (int i = from; i <= to; ++i) s += "{\"order_id\":" + std::to_string(i) + ",\"sku\":\"x\"}\n";
    return s;
  };
  std::string out;
  REQUIRE(publish({"--id-from", "order_id"}, orders(1, 100), &out) == 0);
  CHECK(sys.unrouted_events() == 100);
  // The first 100 again (as after a crash) and 50 new ones: 150 events in all.
  REQUIRE(publish({"--id-from", "order_id"}, orders(1, 150), &out) == 0);
  CHECK(sys.unrouted_events() == 150);
  // A string with the same digits is the same key.
  REQUIRE(publish({"--id-from", "order_id"}, "{\"order_id\":\"150\"}\n", &out) == 0);
  CHECK(sys.unrouted_events() == 150);
  // A line without the field stops there, like a bad line.
  CHECK(publish({"--id-from", "order_id"}, orders(151, 152) + "{\"sku\":\"y\"}\n" + orders(153, 153), &out) == 2);
  CHECK(out.find("2 events published (lines 1-2); line 3 not published: params have no field 'order_id'") !=
        std::string::npos);
  CHECK(sys.unrouted_events() == 152);

  // --id-base: line N's id is UUIDv5(base, N), whatever the line holds.
  const std::string base = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
  REQUIRE(publish({"--id-base", base}, orders(1000, 1009), &out) == 0);
  CHECK(sys.unrouted_events() == 162);
  REQUIRE(publish({"--id-base", base}, orders(1000, 1014), &out) == 0);
  CHECK(sys.unrouted_events() == 167);
  CHECK(publish({"--id-base", "not-a-uuid"}, orders(1, 1), &out) == 2);
  CHECK(publish({"--id", base}, orders(1, 1), &out) == 2);  // one id for many lines is refused
  CHECK(sys.unrouted_events() == 167);
}
