#include "daemon/service_notifier.h"

#ifdef EBATS_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace ebats {
namespace {
void notify(const std::string& text) {
#ifdef EBATS_HAVE_SYSTEMD
  sd_notify(0, text.c_str());
#else
  (void)text;
#endif
}
}  // namespace

ServiceNotifier::ServiceNotifier() {
#ifdef EBATS_HAVE_SYSTEMD
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_interval_ = std::chrono::milliseconds(usec / 2000);
#endif
}

void ServiceNotifier::ready(const std::string& s) const { notify("READY=1\nSTATUS=" + s); }
void ServiceNotifier::stopping() const { notify("STOPPING=1\nSTATUS=stopping"); }
void ServiceNotifier::reloading() const { notify("RELOADING=1"); }
void ServiceNotifier::status(const std::string& s) const { notify("STATUS=" + s); }
void ServiceNotifier::watchdog() const { notify("WATCHDOG=1"); }

}  // namespace ebats
