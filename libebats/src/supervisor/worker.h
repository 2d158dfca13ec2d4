// Worker: the parent process of ebats-ntask-worker / ebats-dtask-worker.
//
// It claims due tasks of one (lane, topic) from the broker in batches, hands
// them to `processes` supervised child processes over socketpairs, and for
// every outcome writes the result record and commits ack / retry / dead
// letter, many tasks per transaction. It never runs plugin code itself.
//
// Delivery rules it keeps:
// - a task leaves the broker only in the same commit as its replacement
//   (retry row or dead letter) and its result row;
// - a child that crashes or times out costs the running task one attempt;
//   tasks queued behind it in that child go back to the queue unharmed;
// - SIGTERM/SIGINT: stop claiming, release what has not started, let running
//   tasks finish (drain_timeout), then interrupt them (released, not counted);
// - leases of held tasks are extended every lease/3; expired leases of the
//   lane (a killed worker) are recovered every lease/2 and at startup;
// - SIGHUP reloads the config file: a file with errors changes nothing; else
//   the children are replaced one at a time (one extra child starts, and once
//   it is ready an old one takes no new task, finishes what it has and exits)
//   so they run the new config and the plugin files now in the folder. A new
//   child that cannot run the topic's registered tasks, or dies before it is
//   ready, ends the roll: the old children and the old config stay.
// run() owns the event loop; every broker call after startup runs on a
// BrokerThread of its own (claims, commits, lease extension and recovery, in
// the order posted), so children are fed while SQLite works. Not
// thread-safe; `broker` is used by that thread alone while run() runs.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/logger.h"
#include "daemon/service_notifier.h"
#include "daemon/signal_fd.h"
#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"
#include "metrics/registry.h"
#include "supervisor/child_program.h"

namespace ebats {

struct WorkerSetup {
  Lane lane = Lane::ntask;
  std::string topic;
  std::shared_ptr<const Config> config;
  // The program the children run (ebats-worker-child), and its options for a
  // config, e.g. {"--plugins-dir", "/usr/lib/ebats/plugins", ...}.
  std::optional<ChildProgram> child_program;
  std::function<std::vector<std::string>(const Config&)> child_args;
  // Where the worker's metrics go (docs/METRICS.md); null: nowhere. Outlives the Worker.
  metrics::Registry* metrics = nullptr;
};

class Worker {
 public:
  Worker(WorkerSetup setup, Broker& broker, const Clock& clock, const Logger& log, const ServiceNotifier& notifier);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs until a stop signal arrives on `signals` and the drain is done.
  // Returns an error only when the worker cannot go on (e.g. no child can be
  // started at all for a long time is NOT such a case: it keeps retrying).
  Status run(SignalFd& signals);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ebats
