// test_tasks.so: the C++ SDK plugin the unit and integration tests run.
//
// Every task first appends "<id> <attempt> <task>\n" to the file named by
// $EBATS_TEST_RECORD (one O_APPEND write, so concurrent children never mix
// lines), which lets tests count executions and duplicates.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include <ebats/plugin.hpp>

namespace {

void record(ebats::Task& t) {
  const char* path = std::getenv("EBATS_TEST_RECORD");
  if (path == nullptr || *path == '\0') return;
  const std::string line =
      std::string(t.id()) + " " + std::to_string(t.attempt()) + " " + std::string(t.name()) + "\n";
  const int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(std::string("cannot open EBATS_TEST_RECORD file ") + path);
  const ssize_t n = ::write(fd, line.data(), line.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size())) throw std::runtime_error("short write to EBATS_TEST_RECORD file");
}

int64_t int_param(ebats::Task& t, const char* key, int64_t fallback) {
  const auto& p = t.params();
  if (!p.IsObject() || !p.HasMember(key) || !p[key].IsInt64()) return fallback;
  return p[key].GetInt64();
}

std::string string_param(ebats::Task& t, const char* key) {
  const auto& p = t.params();
  if (!p.IsObject() || !p.HasMember(key) || !p[key].IsString()) return "";
  return std::string(p[key].GetString(), p[key].GetStringLength());
}

// Wraps a task body so that it records the execution first.
template <class Body>
auto recorded(Body body) {
  return [body](ebats::Task& t) {
    record(t);
    body(t);
  };
}

void sleep_ms(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string g_settings;  // what init() got; reported by the "settings" task

}  // namespace

EBATS_PLUGIN(
    "test_tasks", "1.0.0",
    {"noop", recorded([](ebats::Task&) {})},
    {"record", recorded([](ebats::Task&) {})},
    {"retry_once", recorded([](ebats::Task& t) {
       const auto delay = std::chrono::milliseconds(int_param(t, "retry_after_ms", 200));
       if (t.attempt() == 0) throw ebats::Retry(delay, "not yet");
     })},
    {"fail", recorded([](ebats::Task&) { throw ebats::Fail("permanent failure"); })},
    {"throw", recorded([](ebats::Task&) { throw std::runtime_error("boom"); })},
    {"retry_always", recorded([](ebats::Task& t) {
       throw ebats::Retry(std::chrono::milliseconds(int_param(t, "retry_after_ms", 50)), "again");
     })},
    {"segfault", recorded([](ebats::Task&) { std::raise(SIGSEGV); })},
    {"segfault_once", recorded([](ebats::Task& t) {
       if (t.attempt() == 0) std::raise(SIGSEGV);
     })},
    {"abort", recorded([](ebats::Task&) { std::abort(); })},
    // Closes the child's end of its socket to the worker (fd 3) and lingers, so
    // the worker's next writes to this child fail with EPIPE while it still lives.
    {"close_worker_socket", recorded([](ebats::Task&) {
       ::close(3);
       sleep_ms(300);
     })},
    {"hang", recorded([](ebats::Task&) {
       for (;;) sleep_ms(50);  // ignores should_stop() on purpose: the worker must kill it
     })},
    {"sleep", recorded([](ebats::Task& t) {
       for (int64_t left = int_param(t, "ms", 0); left > 0; left -= 10) {
         if (t.should_stop()) throw ebats::Retry("stopped");
         sleep_ms(left < 10 ? left : 10);
       }
     })},
    // Starts `sleep 300` and leaves it running; its pid is the message.
    {"spawn_sleeper", recorded([](ebats::Task& t) {
       const pid_t pid = ::fork();
       if (pid == 0) {
         ::execl("/bin/sleep", "sleep", "300", static_cast<char*>(nullptr));
         ::_exit(127);
       }
       t.message(std::to_string(pid));
     })},
    // One nanosleep of params.ms: the soft stop must not cut it short.
    {"sleep_through", recorded([](ebats::Task& t) {
       const int64_t ms = int_param(t, "ms", 0);
       struct timespec ts {};
       ts.tv_sec = static_cast<time_t>(ms / 1000);
       ts.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
       const bool interrupted = ::nanosleep(&ts, nullptr) != 0;
       t.message(std::string(interrupted ? "interrupted" : "slept") + " stop=" + (t.should_stop() ? "1" : "0"));
     })},
    {"message", recorded([](ebats::Task& t) { t.message("hello " + string_param(t, "name")); })},
    // Used by the unit tests of the task runner and the SDK.
    {"retry_limited", recorded([](ebats::Task&) {
       throw ebats::Retry(std::chrono::milliseconds(int64_t{1500}), "limited").max_retries(2);
     })},
    {"retry_plain", recorded([](ebats::Task&) { throw ebats::Retry("no delay"); })},
    {"check_stop", recorded([](ebats::Task& t) { t.message(t.should_stop() ? "stop=1" : "stop=0"); })},
    {"describe", recorded([](ebats::Task& t) {
       t.message(std::string(t.id()) + "|" + std::string(t.name()) + "|" + std::string(t.topic()) + "|" +
                 std::string(t.trace()) + "|" + std::to_string(t.attempt()) + "/" + std::to_string(t.max_attempts()) +
                 "|" + std::string(t.params_json()));
     })},
    {"log", recorded([](ebats::Task& t) {
       t.log(ebats::LogLevel::warn, string_param(t, "text"));
       t.message("logged");
     })},
    {"settings", recorded([](ebats::Task& t) { t.message(g_settings); })},
    // Kills the worker parent (and so its own child process, which dies with
    // the parent): a task that takes down every worker that runs it.
    {"kill_worker", recorded([](ebats::Task&) {
       ::kill(::getppid(), SIGKILL);
       sleep_ms(5000);
     })});

// Keeps the settings init() got (plugins.settings.test_tasks) for the "settings" task.
static bool remember_settings(const ebats_host*, std::string_view settings) {
  g_settings = std::string(settings);
  return true;
}
EBATS_PLUGIN_INIT(remember_settings)
