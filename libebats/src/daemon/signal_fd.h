// SignalFd: the daemon's SIGTERM / SIGINT / SIGHUP arrive as a readable fd
// (signalfd(2)) that the main loop polls, instead of async handlers touching
// global state. Constructing one blocks those signals in the calling thread;
// the destructor closes the fd and restores the previous mask.
// REQUIRES: construct before any thread starts, so all threads inherit the mask.
#pragma once

#include <signal.h>

#include <vector>

#include "daemon/unique_fd.h"
#include "ebats/status.h"

namespace ebats {

class SignalFd {
 public:
  static Result<SignalFd> open(const std::vector<int>& signals);
  SignalFd(SignalFd&&) = default;
  SignalFd& operator=(SignalFd&&) = default;
  ~SignalFd();

  int fd() const { return fd_.get(); }
  // Reads every pending signal without blocking.
  std::vector<int> drain();
  // The mask in force before open(); children restore it before exec.
  const sigset_t& previous_mask() const { return previous_; }

 private:
  SignalFd() = default;
  UniqueFd fd_;
  sigset_t previous_{};
  bool restore_ = false;
};

}  // namespace ebats
