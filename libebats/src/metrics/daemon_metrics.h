// The metrics each daemon exports (docs/METRICS.md lists them): named once
// here so the worker and the scheduler update them in one line each. Every
// method runs on the daemon's loop thread; the Registry's HTTP thread only
// reads. With no Registry given (no metrics server), every update is a no-op,
// so a daemon that serves no metrics pays nothing per task.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ebats/broker.h"
#include "metrics/registry.h"

namespace ebats::metrics {

class WorkerMetrics {
 public:
  WorkerMetrics(Registry* registry, Lane lane);

  // A task handed to a child; `late_s`: how long after its due time (the dtask lane's delay lateness).
  void dispatched(const std::string& topic, double late_s);
  // An attempt's end. `status` as in the results file: ok, retry, failed or dead;
  // `wait_s` from its due time to its start.
  void finished(const std::string& topic, const std::string& task, const char* status, double run_s, double wait_s);
  void started(const std::string& topic, const std::string& task);
  void dead_lettered(const std::string& topic, const std::string& task);
  void dead_lettered_unrun(const std::string& topic, const std::string& reason);
  void children(size_t busy, size_t idle, size_t starting);
  void child_restart(const char* cause);
  void commit(double seconds, bool ok);
  void reload(const char* outcome);
  bool on() const { return on_; }

 private:
  const bool on_;
  std::unique_ptr<Registry> own_;
  Registry& r_;
  const std::string lane_;
  CounterFamily& started_;
  CounterFamily& finished_;
  CounterFamily& dead_;
  CounterFamily& dead_unrun_;
  HistogramFamily& duration_;
  HistogramFamily& wait_;
  HistogramFamily* lateness_;  // dtask lane only
  GaugeFamily& children_;
  CounterFamily& restarts_;
  HistogramFamily& commit_;
  CounterFamily& commit_errors_;
  CounterFamily& reloads_;
};

// What routing did with the events: the scheduler's, and a worker's with
// workers.<topic>.route_events.
class RoutingMetrics {
 public:
  explicit RoutingMetrics(Registry* registry);
  void routed(uint64_t events, uint64_t unregistered, uint64_t invalid, uint64_t tasks);

 private:
  const bool on_;
  std::unique_ptr<Registry> own_;
  Registry& r_;
  CounterFamily& received_;
  CounterFamily& routed_;
  CounterFamily& unregistered_;
  CounterFamily& invalid_;
  CounterFamily& tasks_;
};

class SchedulerMetrics {
 public:
  explicit SchedulerMetrics(Registry* registry);

  void routed(uint64_t events, uint64_t unregistered, uint64_t invalid, uint64_t tasks) {
    routing_.routed(events, unregistered, invalid, tasks);
  }
  void depths(const std::vector<QueueDepth>& rows);
  void commit(double seconds, bool ok);
  void reload(const char* outcome);
  bool on() const { return on_; }

 private:
  const bool on_;
  std::unique_ptr<Registry> own_;
  Registry& r_;
  RoutingMetrics routing_;
  GaugeFamily& depth_;
  GaugeFamily& events_depth_;
  HistogramFamily& commit_;
  CounterFamily& commit_errors_;
  CounterFamily& reloads_;
};

}  // namespace ebats::metrics
