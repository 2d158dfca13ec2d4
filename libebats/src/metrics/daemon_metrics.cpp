#include "metrics/daemon_metrics.h"

namespace ebats::metrics {
namespace {

Registry& or_own(Registry* given, std::unique_ptr<Registry>* own) {
  if (given) return *given;
  *own = std::make_unique<Registry>();
  return **own;
}

const std::vector<double>& commit_buckets() {
  static const std::vector<double> b = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return b;
}

double non_negative(double v) { return v < 0 ? 0 : v; }

}  // namespace

WorkerMetrics::WorkerMetrics(Registry* registry, Lane lane)
    : on_(registry != nullptr),
      r_(or_own(registry, &own_)),
      lane_(lane_name(lane)),
      started_(r_.counter("ebats_tasks_started_total", "Task attempts handed to a child process.",
                          {"lane", "topic", "task"})),
      finished_(r_.counter("ebats_tasks_finished_total",
                           "Task attempts ended, by status as in the results file: ok, retry (retried later), "
                           "failed (dead-lettered: the handler failed or no handler), dead (dead-lettered: out of "
                           "attempts).",
                           {"lane", "topic", "task", "status"})),
      dead_(r_.counter("ebats_tasks_dead_lettered_total", "Tasks the worker dead-lettered after running them.",
                       {"lane", "topic", "task"})),
      dead_unrun_(r_.counter("ebats_tasks_dead_lettered_unrun_total",
                             "Messages the worker dead-lettered without running them (undecodable, wrong topic, "
                             "too many attempts, worker lost), by reason.",
                             {"lane", "topic", "reason"})),
      duration_(r_.histogram("ebats_task_duration_seconds", "How long a task attempt ran.",
                             {"lane", "topic", "task"}, duration_buckets())),
      wait_(r_.histogram("ebats_task_queue_wait_seconds",
                         "From a task's due time to the start of its attempt in a child.", {"lane", "topic"},
                         duration_buckets())),
      lateness_(lane == Lane::dtask
                    ? &r_.histogram("ebats_delay_lateness_seconds",
                                    "dtask lane: from a delayed task's or retry's due time to its hand-off to a "
                                    "child.",
                                    {"topic"}, duration_buckets())
                    : nullptr),
      children_(r_.gauge("ebats_children", "Worker child processes now, by state: busy (running a task), idle "
                                           "(ready, no task) or starting (not ready yet).",
                         {"state"})),
      restarts_(r_.counter("ebats_child_restarts_total",
                           "Child processes that exited and are started again, by cause: task_timeout (killed "
                           "after a task's timeout), start_timeout (not ready in time), died_starting (exited "
                           "before ready), died (exited while ready).",
                           {"cause"})),
      commit_(r_.histogram("ebats_broker_commit_duration_seconds",
                           "How long a broker commit of finished tasks took (posted to completed).", {},
                           commit_buckets())),
      commit_errors_(r_.counter("ebats_broker_commit_errors_total", "Broker commits that failed (retried).")),
      reloads_(r_.counter("ebats_reloads_total",
                          "Config reloads (SIGHUP) by outcome: ok, refused (config errors), unchanged (nothing "
                          "changed), abandoned (the new children could not run; the old config stays).",
                          {"outcome"})) {
  for (const char* state : {"busy", "idle", "starting"}) children_.labels({state});
  commit_errors_.labels();
}

void WorkerMetrics::dispatched(const std::string& topic, double late_s) {
  if (!on_) return;
  if (lateness_) lateness_->labels({topic}).observe(non_negative(late_s));
}

void WorkerMetrics::started(const std::string& topic, const std::string& task) {
  if (!on_) return;
  started_.labels({lane_, topic, task}).inc();
}

void WorkerMetrics::finished(const std::string& topic, const std::string& task, const char* status, double run_s,
                             double wait_s) {
  if (!on_) return;
  finished_.labels({lane_, topic, task, status}).inc();
  duration_.labels({lane_, topic, task}).observe(non_negative(run_s));
  wait_.labels({lane_, topic}).observe(non_negative(wait_s));
}

void WorkerMetrics::dead_lettered(const std::string& topic, const std::string& task) {
  if (!on_) return;
  dead_.labels({lane_, topic, task}).inc();
}

void WorkerMetrics::dead_lettered_unrun(const std::string& topic, const std::string& reason) {
  if (!on_) return;
  dead_unrun_.labels({lane_, topic, reason}).inc();
}

void WorkerMetrics::children(size_t busy, size_t idle, size_t starting) {
  if (!on_) return;
  children_.labels({"busy"}).set(static_cast<double>(busy));
  children_.labels({"idle"}).set(static_cast<double>(idle));
  children_.labels({"starting"}).set(static_cast<double>(starting));
}

void WorkerMetrics::child_restart(const char* cause) {
  if (!on_) return;
  restarts_.labels({cause}).inc();
}

void WorkerMetrics::commit(double seconds, bool ok) {
  if (!on_) return;
  commit_.labels().observe(non_negative(seconds));
  if (!ok) commit_errors_.labels().inc();
}

void WorkerMetrics::reload(const char* outcome) {
  if (!on_) return;
  reloads_.labels({outcome}).inc();
}

RoutingMetrics::RoutingMetrics(Registry* registry)
    : on_(registry != nullptr),
      r_(or_own(registry, &own_)),
      received_(r_.counter("ebats_events_received_total",
                           "Events taken from the events queue (by the scheduler, or a worker with route_events).")),
      routed_(r_.counter("ebats_events_routed_total", "Events routed into their registered tasks.")),
      unregistered_(r_.counter("ebats_events_unregistered_total",
                               "Events with no registration under events: (dead-lettered).")),
      invalid_(r_.counter("ebats_events_invalid_total",
                          "Events dead-lettered as invalid (malformed, too large, unsupported).")),
      tasks_(r_.counter("ebats_event_tasks_published_total", "Tasks published for routed events.")) {
  for (auto* c : {&received_, &routed_, &unregistered_, &invalid_, &tasks_}) c->labels();
}

void RoutingMetrics::routed(uint64_t events, uint64_t unregistered, uint64_t invalid, uint64_t tasks) {
  if (!on_) return;
  received_.labels().inc(events);
  unregistered_.labels().inc(unregistered);
  invalid_.labels().inc(invalid);
  routed_.labels().inc(events - std::min(events, unregistered + invalid));
  tasks_.labels().inc(tasks);
}

SchedulerMetrics::SchedulerMetrics(Registry* registry)
    : on_(registry != nullptr),
      r_(or_own(registry, &own_)),
      routing_(registry),
      depth_(r_.gauge("ebats_queue_depth",
                      "Tasks per topic by state: ready (due, not claimed), delayed (not yet due, or waiting in the "
                      "dtask lane), leased (claimed by a worker; SQLite only), dead (dead letters). Refreshed "
                      "every 5 s.",
                      {"topic", "state"})),
      events_depth_(r_.gauge("ebats_events_queue_depth",
                             "Events by state: ready (not yet routed), delayed, leased (SQLite only), dead.",
                             {"state"})),
      commit_(r_.histogram("ebats_broker_commit_duration_seconds",
                           "How long a broker commit took (the scheduler: a batch of events claimed, routed and "
                           "committed).",
                           {}, commit_buckets())),
      commit_errors_(r_.counter("ebats_broker_commit_errors_total", "Broker commits that failed (retried).")),
      reloads_(r_.counter("ebats_reloads_total",
                          "Config reloads (SIGHUP) by outcome: ok, refused (config errors or the broker refused "
                          "the new topics).",
                          {"outcome"})) {
  commit_errors_.labels();
}

void SchedulerMetrics::depths(const std::vector<QueueDepth>& rows) {
  if (!on_) return;
  for (const auto& row : rows) {
    if (row.row == QueueDepth::Row::delay_levels) continue;
    auto set = [&](const char* state, uint64_t v) {
      if (row.row == QueueDepth::Row::events) {
        events_depth_.labels({state}).set(static_cast<double>(v));
      } else {
        depth_.labels({row.topic, state}).set(static_cast<double>(v));
      }
    };
    set("ready", row.ready);
    set("delayed", row.delayed);
    if (row.leased_known) set("leased", row.leased);
    if (row.dead_known) set("dead", row.dead);
  }
}

void SchedulerMetrics::commit(double seconds, bool ok) {
  if (!on_) return;
  commit_.labels().observe(non_negative(seconds));
  if (!ok) commit_errors_.labels().inc();
}

void SchedulerMetrics::reload(const char* outcome) {
  if (!on_) return;
  reloads_.labels({outcome}).inc();
}

}  // namespace ebats::metrics
