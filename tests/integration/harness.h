// TestSystem: a real ebats installation in a temporary folder for one test —
// a config file, a broker of its own (a SQLite database, or on the "amqp"
// pass a name prefix on the private RabbitMQ node), the three real daemons as
// processes and the test plugins. Tasks of the test plugin append "<id> <attempt> <task>"
// to a record file, so tests count executions, losses and duplicates exactly.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ebats/broker.h"
#include "ebats/publisher.h"

namespace ebats::test {

struct Execution {
  std::string id;
  uint32_t attempt = 0;
  std::string task;
};

class Daemon {
 public:
  Daemon(std::vector<std::string> argv, std::map<std::string, std::string> env, const std::string& log_path);
  ~Daemon();  // SIGKILL if still running
  pid_t pid() const { return pid_; }
  void signal(int sig) const;
  // Waits for exit; returns the exit status (or 128+signal). -1 on timeout.
  int wait(std::chrono::milliseconds timeout);
  bool running();

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
};

// CPU seconds (user + system) a live process has used so far.
double cpu_seconds(pid_t pid);

// A fresh plugin folder under /tmp (mode 0755) holding copies of `files`
// (mode 0755); the caller removes it.
std::string plugin_dir_with(const std::vector<std::string>& files);

class TestSystem {
 public:
  // `events_yaml` is the body of the events: section, `workers_yaml` of workers:.
  TestSystem(const std::string& events_yaml, const std::string& workers_yaml = "  t: {processes: 2}\n",
             const std::string& extra_yaml = "", const std::string& plugins_dir = EBATS_TEST_PLUGIN_DIR);
  ~TestSystem();

  const std::string& dir() const { return dir_; }
  const std::string& config_path() const { return config_; }
  // Rewrites the config's plugins section with `settings_yaml` (a flow map,
  // e.g. "{test_tasks: {k: v}}") as plugins.settings; for daemons started after.
  void set_plugin_settings(const std::string& settings_yaml);
  Publisher& publisher() { return *publisher_; }
  Broker& broker() { return *broker_; }

  Daemon& start_scheduler();
  Daemon& start_ntask(const std::string& topic = "t");
  Daemon& start_dtask(const std::string& topic = "t");
  void start_all(const std::string& topic = "t");

  std::vector<Execution> executions() const;
  // Queue depths of the config's topics, and sums over their rows: tasks
  // ready to run, events not yet routed.
  std::vector<QueueDepth> depths();
  uint64_t ready_tasks();
  uint64_t unrouted_events();
  // The dead letters now, newest first.
  std::vector<DeadLetterEntry> dead_letters();
  // Waits until there are at least `n` dead letters and returns them (REQUIREs they come).
  std::vector<DeadLetterEntry> wait_for_dead_letters(size_t n);
  // Results rows (status) from the results file, in order; whole lines only
  // (a last line still being written is left for the next call).
  std::vector<std::map<std::string, std::string>> results() const;
  // Polls `done` every 20ms until true or `timeout` passes; returns the last value.
  static bool wait_until(const std::function<bool()>& done, std::chrono::seconds timeout = std::chrono::seconds(60));
  // Runs ebatsctl with args; returns exit code and fills `out` with stdout.
  int ebatsctl(const std::vector<std::string>& args, std::string* out = nullptr) const;
  // Runs a program (argv[0] a path) to completion, with `env` added to the
  // environment; returns its exit code (-1 after a minute) and fills
  // `output` with what it wrote to stdout and stderr.
  int run(std::vector<std::string> argv, std::string* output,
          const std::map<std::string, std::string>& env = {}) const;
  // Replaces the first `from` in the config file with `to` (REQUIREs one);
  // for daemons started after.
  void edit_config(const std::string& from, const std::string& to);
  // RabbitMQ: the name prefix of this test's queues and exchanges.
  const std::string& prefix() const { return prefix_; }
  std::string log_of(const std::string& name) const;

 private:
  // Starts `argv` (program first) with --config added; logs to <name>.<n>.log.
  Daemon& start(const std::string& name, std::vector<std::string> argv);
  std::string plugins_line() const;  // the config's plugins line as written
  // The config's broker section for the backend under test (support/test_backend.h).
  std::string broker_section();
  std::string dir_, config_, record_;
  std::string plugins_dir_, settings_;
  std::string prefix_;  // RabbitMQ: this test's name prefix
  std::unique_ptr<Publisher> publisher_;
  std::unique_ptr<Clock> clock_;
  std::unique_ptr<Broker> broker_;
  std::vector<std::unique_ptr<Daemon>> daemons_;
  int next_log_ = 0;
  mutable int next_run_ = 0;
};

}  // namespace ebats::test
