// The worker child (ebats-worker-child, supervisor/worker_child.h) driven
// over its socket as the worker parent drives it: here, the soft stop. The
// parent queues SIGUSR1 with the number of the task it means
// (ChildProcess::stop_task()); one sent as a task finished may reach the
// child while it already runs the next, which must not see should_stop()
// for it.
#include <poll.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include "supervisor/child_process.h"
#include "supervisor/child_program.h"
#include "supervisor/frame.h"

using namespace ebats;
using namespace std::chrono_literals;

namespace {

// One ebats-worker-child with the test plugins loaded, started as a worker
// starts it; killed and reaped at the end (ChildProcess).
class TestChild {
 public:
  TestChild() {
    auto program = ChildProgram::locate();
    REQUIRE(program.ok());
    sigset_t empty;
    sigemptyset(&empty);
    auto child = ChildProcess::spawn(*program, {"--plugins-dir", EBATS_TEST_PLUGIN_DIR, "--log-level", "error"}, empty,
                                     "");
    REQUIRE(child.ok());
    proc_.emplace(std::move(child).value());
    std::string settings;
    write_settings_frame(settings, PluginSettings{});
    REQUIRE(write_all(proc_->socket(), settings));
    REQUIRE(next_frame().type == FrameType::ready);
  }

  void run(uint64_t seq, const std::string& task, const std::string& params) {
    std::string out;
    FieldWriter w(out, FrameType::run);
    w.u64(seq).str("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b").str(task).str("t").str("").str(params);
    w.u32(0).u32(3).i64(60'000);
    w.finish();
    REQUIRE(write_all(proc_->socket(), out));
  }
  void stop(uint64_t seq) const { REQUIRE(proc_->stop_task(seq)); }
  void signal(int sig) const { REQUIRE(proc_->signal(sig)); }
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
      pollfd p{proc_->socket(), POLLIN, 0};  // the worker's end is non-blocking
      REQUIRE(::poll(&p, 1, 60'000) == 1);
      REQUIRE(in_.read_from(proc_->socket()) > 0);
    }
  }

  std::optional<ChildProcess> proc_;
  FrameBuffer in_{max_frame_bytes(1u << 20)};
};

}  // namespace

TEST_CASE("worker child: a soft stop meant for a finished task does not stop the next one", "[supervisor][child]") {
  TestChild child;
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
  TestChild child;
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
  TestChild child;
  child.run(7, "sleep_through", "{\"ms\":400}");
  std::this_thread::sleep_for(100ms);
  child.signal(SIGUSR1);  // as `kill -USR1` would
  CHECK(child.result() == "7 slept stop=1");
}
