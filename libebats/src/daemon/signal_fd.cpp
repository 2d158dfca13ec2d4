#include "daemon/signal_fd.h"

#include <sys/signalfd.h>

#include <cerrno>
#include <cstring>

namespace ebats {

Result<SignalFd> SignalFd::open(const std::vector<int>& signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  SignalFd out;
  if (pthread_sigmask(SIG_BLOCK, &set, &out.previous_) != 0) {
    return Status::io(std::string("cannot block signals: ") + std::strerror(errno));
  }
  out.restore_ = true;
  int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return Status::io(std::string("signalfd: ") + std::strerror(errno));
  out.fd_.reset(fd);
  return out;
}

SignalFd::~SignalFd() {
  if (restore_ && fd_.valid()) pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

std::vector<int> SignalFd::drain() {
  std::vector<int> out;
  signalfd_siginfo info;
  while (::read(fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    out.push_back(static_cast<int>(info.ssi_signo));
  }
  return out;
}

}  // namespace ebats
