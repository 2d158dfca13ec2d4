// Scheduler: the loop of ebats-scheduler. Claims events in batches, routes
// them (EventRouter) and commits tasks, dead letters and acks in one commit
// per batch. Unknown events are dead-lettered and logged (once per name per
// minute), never dropped. Single-threaded; not thread-safe.
#pragma once

#include <map>
#include <memory>

#include "daemon/logger.h"
#include "daemon/service_notifier.h"
#include "daemon/signal_fd.h"
#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"
#include "scheduler/event_router.h"

namespace ebats {

class Scheduler {
 public:
  Scheduler(std::shared_ptr<const Config> config, Broker& broker, const Clock& clock, const Logger& log,
            const ServiceNotifier& notifier);
  // Routes one batch of ready events. Returns how many events were handled.
  Result<size_t> route_once();
  // Runs until SIGTERM/SIGINT on `signals`.
  Status run(SignalFd& signals);

 private:
  void log_summary(const RouteSummary& s);
  std::shared_ptr<const Config> config_;
  Broker& broker_;
  const Clock& clock_;
  const Logger& log_;
  const ServiceNotifier& notifier_;
  std::map<std::string, WallMs> unknown_logged_at_;
};

}  // namespace ebats
