#include "integration/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include <rapidjson/document.h>

#include "support/queue_count_audit.h"
#include "support/test_backend.h"

namespace ebats::test {
namespace fs = std::filesystem;

Daemon::Daemon(std::vector<std::string> argv, std::map<std::string, std::string> env, const std::string& log_path) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::setpgid(0, 0);  // a Ctrl-C at the test's terminal must not reach the daemons
    ::execv(args[0], args.data());
    ::_exit(127);
  }
}

Daemon::~Daemon() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void Daemon::signal(int sig) const {
  if (!reaped_) ::kill(pid_, sig);
}

bool Daemon::running() {
  if (reaped_) return false;
  int st;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    reaped_ = true;
    exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

int Daemon::wait(std::chrono::milliseconds timeout) {
  if (reaped_) return exit_code_;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      reaped_ = true;
      exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return exit_code_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

std::string plugin_dir_with(const std::vector<std::string>& files) {
  char tmpl[] = "/tmp/ebats-plugins-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  ::chmod(tmpl, 0755);
  for (const auto& f : files) {
    const std::string to = std::string(tmpl) + "/" + fs::path(f).filename().string();
    fs::copy_file(f, to);
    ::chmod(to.c_str(), 0755);
  }
  return tmpl;
}

TestSystem::TestSystem(const std::string& events_yaml, const std::string& workers_yaml, const std::string& extra,
                       const std::string& plugins_dir) {
  char tmpl[] = "/tmp/ebats-it-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  dir_ = tmpl;
  config_ = dir_ + "/ebats.yaml";
  record_ = dir_ + "/executions.txt";
  plugins_dir_ = plugins_dir;
  std::ofstream(config_) << broker_section() << plugins_line() << "\n"
                         << "results: {file: results.jsonl}\n"
                         << extra << "events:\n"
                         << events_yaml << "workers:\n"
                         << workers_yaml;
  auto p = Publisher::open(config_);
  INFO(p.status().message());
  REQUIRE(p.ok());
  publisher_ = std::move(p).value();
  clock_ = std::make_unique<SystemClock>();
  auto b = open_broker(broker_options(publisher_->config(), "test"), *clock_);
  REQUIRE(b.ok());
  broker_ = std::move(b).value();
}

std::string TestSystem::broker_section() {
  if (!amqp_backend()) return "broker:\n  url: sqlite://ebats.db\n  sqlite: {poll_interval: 20ms, lease: 5s}\n";
  prefix_ = unique_prefix();
  return "broker:\n  url: \"" + amqp_url() + "\"\n" + quick_amqp_yaml(prefix_);
}

std::string TestSystem::plugins_line() const {
  return "plugins: {dir: " + plugins_dir_ + (settings_.empty() ? "" : ", settings: " + settings_) + "}";
}

void TestSystem::set_plugin_settings(const std::string& settings_yaml) {
  const std::string old_line = plugins_line();
  settings_ = settings_yaml;
  edit_config(old_line, plugins_line());
}

void TestSystem::edit_config(const std::string& from, const std::string& to) {
  std::ifstream in(config_);
  std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = config.find(from);
  INFO("config: " << config);
  REQUIRE(at != std::string::npos);
  config.replace(at, from.size(), to);
  std::ofstream(config_) << config;
}

int TestSystem::run(std::vector<std::string> argv, std::string* output,
                    const std::map<std::string, std::string>& env) const {
  const std::string log = dir_ + "/run." + std::to_string(next_run_++) + ".log";
  Daemon d(std::move(argv), env, log);
  const int code = d.wait(std::chrono::seconds(60));
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  if (output) *output = ss.str();
  return code;
}

TestSystem::~TestSystem() {
  for (auto& d : daemons_) d->signal(SIGTERM);
  for (auto& d : daemons_) d->wait(std::chrono::seconds(20));
  daemons_.clear();
  // On SQLite, whatever the test did, the queue counts still match the rows.
  if (!amqp_backend() && fs::exists(dir_ + "/ebats.db")) CHECK(queue_count_mismatches(dir_ + "/ebats.db") == "");
  if (std::getenv("EBATS_KEEP_TEST_DIRS") == nullptr) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

Daemon& TestSystem::start(const std::string& name, std::vector<std::string> argv) {
  const std::string log = dir_ + "/" + name + "." + std::to_string(next_log_++) + ".log";
  argv.insert(argv.begin() + 1, {"--config", config_});
  daemons_.push_back(std::make_unique<Daemon>(std::move(argv),
                                              std::map<std::string, std::string>{{"EBATS_TEST_RECORD", record_}}, log));
  return *daemons_.back();
}

Daemon& TestSystem::start_scheduler() { return start("scheduler", {std::string(EBATS_BIN_DIR) + "/ebats-scheduler"}); }

Daemon& TestSystem::start_ntask(const std::string& topic) {
  return start("ntask", {std::string(EBATS_BIN_DIR) + "/ebats-ntask-worker", "--topic", topic});
}

Daemon& TestSystem::start_dtask(const std::string& topic) {
  return start("dtask", {std::string(EBATS_BIN_DIR) + "/ebats-dtask-worker", "--topic", topic});
}

void TestSystem::start_all(const std::string& topic) {
  start_scheduler();
  start_ntask(topic);
  start_dtask(topic);
}

std::vector<DeadLetterEntry> TestSystem::dead_letters() {
  auto letters = broker_->dead_letters().list(0);
  REQUIRE(letters.ok());
  return *letters;
}

std::vector<DeadLetterEntry> TestSystem::wait_for_dead_letters(size_t n) {
  REQUIRE(wait_until([&] {
    auto letters = broker_->dead_letters().list(0);
    return letters.ok() && letters->size() >= n;
  }));
  return dead_letters();
}

std::vector<QueueDepth> TestSystem::depths() {
  auto depths = broker_->depths(publisher_->config().topics(), DeadLetterCount::counted);
  INFO(depths.status().to_string());
  REQUIRE(depths.ok());
  return *depths;
}

uint64_t TestSystem::ready_tasks() {
  uint64_t n = 0;
  for (const QueueDepth& d : depths()) n += d.row == QueueDepth::Row::topic ? d.ready : 0;
  return n;
}

uint64_t TestSystem::unrouted_events() {
  uint64_t n = 0;
  for (const QueueDepth& d : depths()) n += d.row == QueueDepth::Row::events ? d.ready : 0;
  return n;
}

std::vector<Execution> TestSystem::executions() const {
  std::vector<Execution> out;
  std::ifstream in(record_);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    Execution e;
    if (ss >> e.id >> e.attempt >> e.task) out.push_back(e);
  }
  return out;
}

std::vector<std::map<std::string, std::string>> TestSystem::results() const {
  std::vector<std::map<std::string, std::string>> out;
  std::ifstream in(dir_ + "/results.jsonl");
  std::string line;
  // A last line without its newline is a write in flight (one write(2) per
  // batch is not atomic for a reader): it is read on the next call, whole.
  while (std::getline(in, line) && !in.eof()) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    if (d.HasParseError() || !d.IsObject()) {
      FAIL("results file holds a line that is not a JSON object: " << line);
    }
    std::map<std::string, std::string> row;
    for (auto& m : d.GetObject()) {
      if (m.value.IsString()) {
        row[m.name.GetString()] = m.value.GetString();
      } else if (m.value.IsInt64()) {
        row[m.name.GetString()] = std::to_string(m.value.GetInt64());
      }
    }
    out.push_back(std::move(row));
  }
  return out;
}

bool TestSystem::wait_until(const std::function<bool()>& done, std::chrono::seconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

int TestSystem::ebatsctl(const std::vector<std::string>& args, std::string* out) const {
  const std::string out_path = dir_ + "/ebatsctl.out";
  std::vector<std::string> argv{std::string(EBATS_BIN_DIR) + "/ebatsctl", "--config", config_};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargs;
  for (auto& a : argv) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::execv(cargs[0], cargs.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (out) {
    std::ifstream in(out_path);
    std::stringstream ss;
    ss << in.rdbuf();
    *out = ss.str();
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string TestSystem::log_of(const std::string& name) const {
  std::stringstream ss;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const std::string f = entry.path().filename().string();
    if (f.rfind(name, 0) == 0 && entry.path().extension() == ".log") {
      std::ifstream in(entry.path());
      ss << "--- " << f << "\n" << in.rdbuf();
    }
  }
  return ss.str();
}

double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace ebats::test
