// The worker child's loop (supervisor/worker_child.h) driven over its socket
// as the worker parent drives it, in a forked process: here, the soft stop.
// The parent queues SIGUSR1 with the number of the task it means; one sent as
// a task finished may reach the child while it already runs the next, which
// must not see should_stop() for it.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "supervisor/frame.h"
#include "supervisor/worker_child.h"

using namespace ebats;
using namespace std::chrono_literals;

namespace {

// One forked child running run_worker_child() on a socketpair, with the test
// plugins loaded; killed and reaped at the end.
class ForkedChild {
 public:
  ForkedChild() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(fds[0]);
      WorkerChildOptions options;
      options.plugins_dir = EBATS_TEST_PLUGIN_DIR;
      options.topic = "t";
      options.log.level = LogLevel::error;
      ::_exit(run_worker_child(fds[1], options));
    }
    ::close(fds[1]);
    fd_ = fds[0];
    std::string settings;
    write_settings_frame(settings, PluginSettings{});
    REQUIRE(write_all(fd_, settings));
    REQUIRE(next_frame().type == FrameType::ready);
  }
  ~ForkedChild() {
    ::close(fd_);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  ForkedChild(const ForkedChild&) = delete;
  ForkedChild& operator=(const ForkedChild&) = delete;

  void run(uint64_t seq, const std::string& task, const std::string& params) {
    std::string out;
    FieldWriter w(out, FrameType::run);
    w.u64(seq).str("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b").str(task).str("t").str("").str(params);
    w.u32(0).u32(3).i64(60'000);
    w.finish();
    REQUIRE(write_all(fd_, out));
  }
  // The soft stop of task `seq`, as ChildProcess::stop_task() sends it.
  void stop(uint64_t seq) const {
    sigval value{};
    value.sival_ptr = reinterpret_cast<void*>(static_cast<uintptr_t>(seq));
    REQUIRE(::sigqueue(pid_, SIGUSR1, value) == 0);
  }
  pid_t pid() const { return pid_; }
  // The next RESULT: its task number and message, "2 slept stop=0".
  std::string result() {
    const FrameBuffer::Frame frame = next_frame();
    REQUIRE(frame.type == FrameType::result);
    FieldReader r(frame.payload);
    const uint64_t seq = r.u64();
    r.u8();   // outcome
    r.u8();   // has retry_after
    r.i64();
    r.u8();   // has retry limit
    r.u32();
    r.i64();  // started_at
    r.i64();  // finished_at
    r.i64();  // duration
    const std::string message(r.str());
    REQUIRE_FALSE(r.failed());
    return std::to_string(seq) + " " + message;
  }

 private:
  FrameBuffer::Frame next_frame() {
    for (;;) {
      if (auto frame = in_.next()) return *frame;
      REQUIRE(in_.read_from(fd_) > 0);
    }
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  FrameBuffer in_{max_frame_bytes(1u << 20)};
};

}  // namespace

TEST_CASE("worker child: a soft stop meant for a finished task does not stop the next one", "[supervisor][child]") {
  ForkedChild child;
  child.run(1, "noop", "{}");
  child.run(2, "sleep_through", "{\"ms\":400}");
  CHECK(child.result() == "1 ");
  std::this_thread::sleep_for(100ms);  // task 2 is in its sleep
  child.stop(1);                        // late: task 1 is done
  CHECK(child.result() == "2 slept stop=0");

  // The stop of the task that runs does reach it.
  child.run(3, "sleep_through", "{\"ms\":400}");
  std::this_thread::sleep_for(100ms);
  child.stop(3);
  CHECK(child.result() == "3 slept stop=1");
}

TEST_CASE("worker child: a soft stop that comes before its task starts stops it when it starts", "[supervisor][child]") {
  ForkedChild child;
  child.run(1, "sleep_through", "{\"ms\":400}");
  child.run(2, "check_stop", "{}");
  std::this_thread::sleep_for(100ms);  // task 1 runs, task 2 waits in the child
  child.stop(2);
  CHECK(child.result() == "1 slept stop=0");
  CHECK(child.result() == "2 stop=1");
  // And it is spent: the task after runs without it.
  child.run(3, "check_stop", "{}");
  CHECK(child.result() == "3 stop=0");
}

TEST_CASE("worker child: a plain SIGUSR1 stops whatever task runs", "[supervisor][child]") {
  ForkedChild child;
  child.run(7, "sleep_through", "{\"ms\":400}");
  std::this_thread::sleep_for(100ms);
  REQUIRE(::kill(child.pid(), SIGUSR1) == 0);
  CHECK(child.result() == "7 slept stop=1");
}
