// BrokerThread: runs a worker's broker calls on a thread of their own, so
// the worker's event loop keeps feeding children and reading results while
// SQLite claims and commits.
//
// Calls run one at a time, in the order posted, and the thread is the only
// user of the broker from start() until the BrokerThread is destroyed. One
// thread (one connection, one AMQP channel) also keeps a broker's rule that
// a delivery is settled where it was received.
//
// Each call returns a completion: a function the owner runs on its own
// thread, in order, from run_completions() once wake_fd() is readable. A
// call that throws hands its exception to the owner: its completion rethrows
// it, so it leaves through the owner's stack like any other, and the
// completions behind it wait for the next run_completions().
//
// Thread-safety: post(), wake_fd(), run_completions(), in_flight() and
// wait() are for the owner's thread only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "daemon/unique_fd.h"
#include "ebats/broker.h"
#include "ebats/status.h"

namespace ebats {

class BrokerThread {
 public:
  using Completion = std::function<void()>;
  using Call = std::function<Completion(Broker&)>;

  // Starts the thread. Fails (with the reason) when no eventfd or thread can
  // be had. `broker` must outlive the BrokerThread.
  static Result<std::unique_ptr<BrokerThread>> start(Broker& broker);

  // Runs the calls posted so far (their completions are dropped), then joins.
  ~BrokerThread();
  BrokerThread(const BrokerThread&) = delete;
  BrokerThread& operator=(const BrokerThread&) = delete;

  void post(Call call);
  // Readable while completions wait to be run; level-triggered.
  int wake_fd() const { return wake_.get(); }
  // Runs the completions that are ready; returns how many ran.
  size_t run_completions();
  // Calls posted whose completion has not run yet.
  size_t in_flight() const { return in_flight_; }
  // Blocks until a completion is ready or `timeout` passes; true if one is.
  bool wait(std::chrono::milliseconds timeout) const;

 private:
  BrokerThread(Broker& broker, UniqueFd wake);
  void loop();
  // Puts completions taken by run_completions() back in front of the queue.
  void requeue(std::deque<Completion> front);
  // Makes wake_fd() readable.
  void wake_owner();

  Broker& broker_;
  UniqueFd wake_;
  size_t in_flight_ = 0;  // owner's thread only

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::deque<Call> calls_;              // guarded by mutex_
  std::deque<Completion> completions_;  // guarded by mutex_
  bool stopping_ = false;               // guarded by mutex_
  std::thread thread_;                  // last: started once the rest exists
};

}  // namespace ebats
