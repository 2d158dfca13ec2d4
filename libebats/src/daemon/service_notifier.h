// ServiceNotifier: tells systemd about the daemon's state through libsystemd's
// sd_notify (READY=1, STOPPING=1, STATUS=..., WATCHDOG=1). Without
// NOTIFY_SOCKET (not run by systemd) every call is a cheap no-op.
#pragma once

#include <chrono>
#include <string>

namespace ebats {

class ServiceNotifier {
 public:
  ServiceNotifier();
  void ready(const std::string& status) const;
  void stopping() const;
  void reloading() const;
  void status(const std::string& status) const;
  void watchdog() const;
  // Half the WatchdogSec interval, or zero when no watchdog is configured.
  std::chrono::milliseconds watchdog_interval() const { return watchdog_interval_; }

 private:
  std::chrono::milliseconds watchdog_interval_{0};
};

}  // namespace ebats
