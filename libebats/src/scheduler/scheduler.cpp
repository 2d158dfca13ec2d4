#include "scheduler/scheduler.h"

#include <poll.h>

#include <algorithm>
#include <optional>

#include <boost/algorithm/string/join.hpp>

#include "core/poll_backoff.h"
#include "daemon/config_reload.h"
#include "daemon/file_identity.h"
#include "supervisor/child_process.h"

namespace ebats {

namespace {
constexpr std::chrono::seconds kDepthsEvery{5};
}  // namespace

Scheduler::Scheduler(std::shared_ptr<const Config> config, Broker& broker, const Clock& clock, const Logger& log,
                     const ServiceNotifier& notifier, metrics::Registry* metrics)
    : config_(std::move(config)),
      broker_(broker),
      clock_(clock),
      log_(log),
      notifier_(notifier),
      routing_log_(log),
      metrics_(metrics),
      pruner_(ResultsPruner::settings_of(*config_), broker, clock, log) {}

Result<size_t> Scheduler::route_once(bool* full) {
  // Claim, fan out and ack in one transaction: on SQLite the tasks of an event
  // and its removal are committed together, so fan-out is exactly-once.
  RouteSummary summary;
  const auto commit_started = clock_.steady_now();
  auto handled = broker_.claim_and_commit(Lane::events, "", kEventBatch, [&](const std::vector<Delivery>& events) {
    return route_events(events, *config_, clock_.wall_now(), &summary);
  });
  if (!handled.ok() || *handled > 0) {
    metrics_.commit(std::chrono::duration<double>(clock_.steady_now() - commit_started).count(), handled.ok());
  }
  if (!handled.ok()) return handled.status().with_context("routing events");
  if (*handled > 0) {
    metrics_.routed(summary.events, summary.unroutable, summary.invalid, summary.tasks);
    routing_log_.log(summary, *config_, clock_.wall_now());
  }
  // Whatever was read, more may wait: a batch stops at kEventBatch events or
  // at the broker's read budget of bytes (large events), whichever comes
  // first. The next look costs one read when nothing waits.
  if (full) *full = *handled > 0;
  size_t total = *handled;
  for (const auto& [name, source] : config_->sources) {
    auto routed = route_source(source, full);
    if (!routed.ok()) return routed.status();
    total += *routed;
  }
  return total;
}

Result<size_t> Scheduler::route_source(const SourceConfig& source, bool* full) {
  SourceSummary summary;
  auto handled =
      broker_.claim_and_commit(Lane::source, source.name, kEventBatch, [&](const std::vector<Delivery>& messages) {
        return route_source_messages(source, messages, *config_, clock_.wall_now(), &summary);
      });
  if (!handled.ok()) return handled.status().with_context("routing the messages of source '" + source.name + "'");
  if (full && *handled == kEventBatch) *full = true;
  for (const auto& d : summary.dead_details) {
    log_.error("upstream message dead-lettered", {{"source", source.name}, {"detail", d}});
  }
  if (*handled > 0) {
    log_.debug("source routed", {{"source", source.name}, {"messages", std::to_string(summary.messages)},
                                 {"published", std::to_string(summary.published)}});
  }
  return *handled;
}

void Scheduler::reload() {
  notifier_.reloading();
  ConfigReload r = reload_config(*config_);
  if (!r.config) {
    log_.error("reload refused: the config has errors; still routing with the previous one",
               {{"config", config_->path}, {"errors", boost::algorithm::join(r.errors, "; ")}});
    notifier_.ready("routing events; reload refused (config errors), running the previous configuration");
    metrics_.reload("refused");
    return;
  }
  for (const auto& what : r.restart_needed) {
    log_.warn("reload: a setting changed that applies only at a restart; keeping its running value",
              {{"setting", what}});
  }
  // The queues of new topics exist before an event is routed to them.
  Status setup = r.config->topics() == config_->topics() ? Status() : broker_.setup(r.config->topics());
  if (!setup.ok()) {
    log_.error("reload refused: cannot declare the new topics' queues; still routing with the previous config",
               {{"error", setup.message()}});
    notifier_.ready("routing events; reload refused (broker), running the previous configuration");
    metrics_.reload("refused");
    return;
  }
  config_ = std::move(r.config);
  log_.info("config reloaded", {{"config", config_->path}, {"events", std::to_string(config_->events.size())}});
  metrics_.reload("ok");
  notifier_.ready("routing events; configuration reloaded");
}

Status Scheduler::run(SignalFd& signals) {
  const auto poll_interval = std::chrono::milliseconds(config_->sqlite.poll_interval_ms);
  const auto lease = std::chrono::milliseconds(config_->sqlite.lease_ms);
  auto next_recover = clock_.steady_now();
  // Everything the registered tasks go to exists before the first is routed
  // (RabbitMQ: the topics' queues, the delay levels; a queue declared with
  // other arguments is a config error), then events flow in.
  Status setup = broker_.setup(config_->topics());
  if (!setup.ok()) return setup.with_context("declaring the broker's queues");
  Status subscribed = broker_.subscribe(Lane::events, "", 2 * kEventBatch);
  if (!subscribed.ok()) return subscribed.with_context("subscribing to the events queue");
  for (const auto& [name, source] : config_->sources) {
    subscribed = broker_.subscribe(Lane::source, name, 2 * kEventBatch);
    if (!subscribed.ok()) {
      return subscribed.with_context("consuming source '" + name + "' (queue '" + name + "' bound to exchange '" +
                                     source.exchange + "')");
    }
  }
  notifier_.ready("routing events");
  log_.info("ready", {{"config", config_->path}, {"events", std::to_string(config_->events.size())},
                      {"sources", std::to_string(config_->sources.size())}});
  std::chrono::milliseconds error_backoff(0);
  PollBackoff idle(poll_interval);
  std::optional<FileIdentity> database;  // SQLite: the file opened, checked now and then
  if (!config_->sqlite_path().empty()) {
    auto identity = FileIdentity::of(config_->sqlite_path());
    if (identity.ok()) database.emplace(std::move(identity).value());
  }
  auto next_database_check = clock_.steady_now();
  auto next_depths = clock_.steady_now();
  for (;;) {
    bool more = false;
    std::chrono::milliseconds wait = poll_interval;
    bool full = false;
    auto handled = route_once(&full);
    if (!handled.ok()) {
      error_backoff = std::min(std::chrono::milliseconds(5000), std::max(poll_interval, error_backoff * 2));
      log_.error("routing failed; retrying", {{"error", handled.status().message()},
                                              {"retry_in", std::to_string(error_backoff.count()) + "ms"}});
    } else {
      error_backoff = std::chrono::milliseconds(0);
      more = full;
      wait = idle.after_look(*handled > 0);
    }
    if (clock_.steady_now() >= next_recover) {
      auto n = broker_.recover_expired(Lane::events, "");
      if (n.ok() && *n > 0) log_.warn("recovered events with expired leases", {{"count", std::to_string(*n)}});
      next_recover = clock_.steady_now() + lease / 2;
    }
    if (database && clock_.steady_now() >= next_database_check) {
      Status still = database->unchanged();
      if (!still.ok()) return still;
      next_database_check = clock_.steady_now() + std::chrono::seconds(2);
    }
    if (metrics_.on() && clock_.steady_now() >= next_depths) {
      // Queue depths for the metrics: one read (SQLite) or a passive declare
      // per queue (RabbitMQ), so every few seconds, here alone (workers do not
      // poll them). Not RabbitMQ's dead letters: counting them reads the whole
      // dead-letter stream and appends a marker to it, each time.
      auto rows = broker_.depths(config_->topics(), DeadLetterCount::skipped_if_costly);
      if (rows.ok()) metrics_.depths(*rows);
      next_depths = clock_.steady_now() + kDepthsEvery;
    }
    pruner_.follow(*config_);  // a reload may have changed results.keep
    (void)pruner_.tick();      // logs its own errors
    // A broker that signals new events (RabbitMQ, SQLite's wake sockets)
    // wakes the loop at once; then a look every second (or poll_interval, if
    // longer) only guards against a missed signal. Without signals: polled,
    // every poll_interval at most.
    const bool signalled = broker_.wake_fd() >= 0;
    if (signalled && error_backoff.count() == 0) wait = std::max(poll_interval, std::chrono::milliseconds(1000));
    int timeout = more ? 0 : static_cast<int>(std::max(error_backoff, wait).count());
    // A pruning round in progress goes on after its pause, not at the next
    // event or look (one batch a second, idle, was 2,000 rows a second).
    const SteadyTime prune_at = pruner_.next_due();
    if (prune_at != SteadyTime::max()) {
      const auto until = std::chrono::ceil<std::chrono::milliseconds>(prune_at - clock_.steady_now()).count();
      timeout = std::min<int>(timeout, static_cast<int>(std::max<int64_t>(until, 0)));
    }
    pollfd pfd[2] = {{signals.fd(), POLLIN, 0}, {signalled && error_backoff.count() == 0 ? broker_.wake_fd() : -1, POLLIN, 0}};
    if (::poll(pfd, 2, timeout) > 0 && (pfd[0].revents & POLLIN)) {
      const std::vector<int> caught = signals.drain();
      if (std::count(caught.begin(), caught.end(), SIGHUP) > 0) reload();
      for (int sig : caught) {
        if (sig == SIGHUP) continue;
        log_.info("signal received; stopping", {{"signal", signal_name(sig)}});
        notifier_.stopping();
        return Status();
      }
    }
  }
}

}  // namespace ebats
