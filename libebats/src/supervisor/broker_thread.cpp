#include "supervisor/broker_thread.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <iterator>
#include <system_error>

namespace ebats {

Result<std::unique_ptr<BrokerThread>> BrokerThread::start(Broker& broker) {
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return Status::io(std::string("eventfd for the broker thread: ") + std::strerror(errno));
  std::unique_ptr<BrokerThread> self(new BrokerThread(broker, std::move(wake)));
  try {
    self->thread_ = std::thread([raw = self.get()] { raw->loop(); });
  } catch (const std::system_error& e) {
    return Status::io(std::string("cannot start the broker thread: ") + e.what());
  }
  return self;
}

BrokerThread::BrokerThread(Broker& broker, UniqueFd wake) : broker_(broker), wake_(std::move(wake)) {}

BrokerThread::~BrokerThread() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_one();
  thread_.join();
}

void BrokerThread::post(Call call) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    calls_.push_back(std::move(call));
  }
  ++in_flight_;
  work_ready_.notify_one();
}

void BrokerThread::loop() {
  for (;;) {
    Call call;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [this] { return stopping_ || !calls_.empty(); });
      if (calls_.empty()) return;  // stopping, and every posted call has run
      call = std::move(calls_.front());
      calls_.pop_front();
    }
    Completion done;
    try {
      done = call(broker_);
    } catch (...) {
      done = [error = std::current_exception()] { std::rethrow_exception(error); };
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      completions_.push_back(std::move(done));
    }
    wake_owner();
  }
}

void BrokerThread::wake_owner() {
  const uint64_t one = 1;
  // Cannot fail short of a closed fd: the counter is far from overflowing.
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

size_t BrokerThread::run_completions() {
  uint64_t count = 0;
  [[maybe_unused]] ssize_t n = ::read(wake_.get(), &count, sizeof count);  // reset; EAGAIN when none
  std::deque<Completion> ready;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ready.swap(completions_);
  }
  size_t ran = 0;
  while (!ready.empty()) {
    Completion done = std::move(ready.front());
    ready.pop_front();
    --in_flight_;
    ++ran;
    try {
      if (done) done();
    } catch (...) {
      // A call's exception leaves through the owner; the completions behind
      // it go back to the front of the queue, to run at the next call.
      requeue(std::move(ready));
      throw;
    }
  }
  return ran;
}

void BrokerThread::requeue(std::deque<Completion> front) {
  if (front.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::move(completions_.begin(), completions_.end(), std::back_inserter(front));
    completions_.swap(front);
  }
  wake_owner();  // they are waiting: readable again
}

bool BrokerThread::wait(std::chrono::milliseconds timeout) const {
  pollfd fd{wake_.get(), POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&fd, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

}  // namespace ebats
