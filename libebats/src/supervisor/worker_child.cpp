#include "supervisor/worker_child.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "ebats/clock.h"
#include "plugin/task_runner.h"
#include "supervisor/frame.h"

namespace ebats {
namespace {

// The soft stop: SIGUSR1 from the parent ("the soft timeout passed, or we are
// shutting down"), which handlers see through should_stop(). It is taken by a
// thread of its own with sigwaitinfo(), never by a signal handler, so it cuts
// no system call of a running task short (a handler's sleep() used to return
// early when a handler caught it). The parent queues it with the number of
// the task it means (ChildProcess::stop_task()): one sent as a task finished
// reaches the child when it may already run the next, which it must not
// stop. A plain SIGUSR1 (kill -USR1) stops whatever runs. REQUIRES: SIGUSR1
// blocked in every thread (block_stop_signal(), before any thread exists).
class StopListener {
 public:
  StopListener() : thread_([this] { listen(); }) {}
  ~StopListener() {
    quit_.store(true);
    ::pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }
  StopListener(const StopListener&) = delete;
  StopListener& operator=(const StopListener&) = delete;

  const std::atomic<bool>* flag() const { return &stop_; }
  // The task numbered `seq` starts (0: none runs): a stop asked for it
  // already, which came before the child got to it, takes effect now.
  void running(uint64_t seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    running_ = seq;
    stop_.store(seq != 0 && requested_ == seq);
  }

 private:
  void listen() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    for (;;) {
      siginfo_t info;
      if (::sigwaitinfo(&set, &info) < 0) continue;
      if (quit_.load()) return;
      std::lock_guard<std::mutex> lock(mutex_);
      if (info.si_code == SI_QUEUE) {
        requested_ = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(info.si_value.sival_ptr));
        stop_.store(running_ != 0 && requested_ == running_);
      } else {
        stop_.store(running_ != 0);
      }
    }
  }

  std::mutex mutex_;       // orders running() against a stop that comes in
  uint64_t running_ = 0;   // guarded by mutex_
  uint64_t requested_ = 0; // guarded by mutex_: the last task a stop named
  std::atomic<bool> stop_{false};
  std::atomic<bool> quit_{false};
  std::thread thread_;  // last: started once the flags exist
};

// Blocks SIGUSR1 for this thread and every thread started after (the plugins'
// too), so only the StopListener receives it. Its disposition is reset first:
// a signal ignored by the parent stays ignored across exec, and an ignored
// signal never reaches sigwait().
void block_stop_signal() {
  signal(SIGUSR1, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void install_child_signals() {
  block_stop_signal();
  // The parent coordinates shutdown: a Ctrl-C on the terminal or a SIGTERM
  // sent to the whole group must not kill a task mid-run.
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
}

std::string ready_frame(const TaskRunner& runner) {
  ReadyReport report;
  report.tasks = runner.registry().task_names();
  for (const auto& e : runner.registry().errors()) report.errors.push_back(e.message);
  for (const auto& p : runner.registry().plugins()) {
    report.plugins.push_back(p.name);
    report.versions.push_back(p.version);
    report.abis.push_back(std::to_string(p.abi_major) + "." + std::to_string(p.abi_minor));
    report.files.push_back(p.file);
  }
  std::string out;
  write_ready_frame(out, report);
  return out;
}

// The parent's first frame: the plugins' settings.
bool read_settings(int fd, FrameBuffer& in, PluginSettings* settings) {
  for (;;) {
    if (auto frame = in.next()) {
      return frame->type == FrameType::settings && read_settings_payload(frame->payload, settings);
    }
    if (in.oversized() || in.read_from(fd) <= 0) return false;
  }
}

}  // namespace

int run_worker_child(int fd, const WorkerChildOptions& options) {
  install_child_signals();
  StopListener stop;
  SystemClock clock;
  FrameBuffer in(options.max_frame_bytes);
  PluginSettings settings;
  if (!read_settings(fd, in, &settings)) return 2;
  const Logger log(options.log_name, options.log);
  TaskRunner runner(options.plugins_dir, settings, clock, stop.flag(), options.message_limit_bytes, &log);
  if (!write_all(fd, ready_frame(runner))) return 1;

  std::string out;
  TaskRequest req;
  for (;;) {
    while (auto frame = in.next()) {
      if (frame->type != FrameType::run) continue;
      FieldReader r(frame->payload);
      const uint64_t seq = r.u64();
      req.id = r.str();
      req.name = r.str();
      req.topic = r.str();
      req.trace = r.str();
      req.params = r.str();
      req.attempt = r.u32();
      req.max_attempts = r.u32();
      const int64_t timeout_ms = r.i64();
      if (r.failed()) return 2;

      // A stop meant for the task before (sent as it finished) is not this one's.
      stop.running(seq);
      const WallMs started = clock.wall_now();
      req.deadline_ms = timeout_ms > 0 ? started + timeout_ms : 0;
      const SteadyTime t0 = clock.steady_now();
      TaskRunResult res = runner.run(req);
      const SteadyTime t1 = clock.steady_now();
      const WallMs finished = clock.wall_now();
      stop.running(0);

      out.clear();
      FieldWriter w(out, FrameType::result);
      w.u64(seq).u8(static_cast<uint8_t>(res.outcome));
      w.u8(res.retry_after_ms.has_value() ? 1 : 0).i64(res.retry_after_ms.value_or(0));
      w.u8(res.retry_limit.has_value() ? 1 : 0).u32(res.retry_limit.value_or(0));
      w.i64(started).i64(finished);
      w.i64(std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count());
      w.str(res.message);
      w.finish();
      // One write per result, right away: if a later task crashes the child,
      // the parent still knows exactly which tasks finished.
      if (!write_all(fd, out)) return 1;
    }
    if (in.oversized()) return 2;
    const ssize_t n = in.read_from(fd);
    if (n == 0) return 0;  // the parent closed the socket: shut down
    if (n < 0) return 1;
  }
}

}  // namespace ebats
