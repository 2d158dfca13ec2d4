// Scheduler: the loop of ebats-scheduler. Claims events in batches, routes
// them (EventRouter) and commits tasks, dead letters and acks in one commit
// per batch. Unknown events are dead-lettered and logged (once per name per
// minute), never dropped. On RabbitMQ it also consumes the config's
// `sources` (SourceRouter): each upstream message becomes a task or an event,
// or a dead letter. Single-threaded; not thread-safe.
#pragma once

#include <memory>

#include "daemon/logger.h"
#include "daemon/service_notifier.h"
#include "daemon/signal_fd.h"
#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"
#include "metrics/daemon_metrics.h"
#include "scheduler/event_router.h"
#include "scheduler/results_pruner.h"
#include "scheduler/routing_log.h"
#include "scheduler/source_router.h"

namespace ebats {

class Scheduler {
 public:
  Scheduler(std::shared_ptr<const Config> config, Broker& broker, const Clock& clock, const Logger& log,
            const ServiceNotifier& notifier, metrics::Registry* metrics = nullptr);
  // Routes one batch of ready events, then one of each source's messages.
  // Returns how many were handled; `full` (may be null) is set when events
  // were read, so that more may be waiting (a batch ends at 512 events or at
  // the broker's read budget) and the loop looks again at once.
  Result<size_t> route_once(bool* full = nullptr);
  // Runs until SIGTERM/SIGINT on `signals`; SIGHUP reloads the config file
  // (reload()).
  Status run(SignalFd& signals);

 private:
  // Loads the config file again and routes with it from the next batch on; a
  // file with errors (or new topics the broker refuses) keeps the running
  // config. sd_notify: RELOADING=1, then READY=1 with a STATUS= saying which.
  void reload();
  Result<size_t> route_source(const SourceConfig& source, bool* full);
  std::shared_ptr<const Config> config_;
  Broker& broker_;
  const Clock& clock_;
  const Logger& log_;
  const ServiceNotifier& notifier_;
  RoutingLog routing_log_;
  metrics::SchedulerMetrics metrics_;  // docs/METRICS.md
  ResultsPruner pruner_;  // results.keep / keep_rows: one batch per turn when due
};

}  // namespace ebats
