#include "scheduler/routing_log.h"

namespace ebats {

namespace {
constexpr int64_t kUnknownEventLogEveryMs = 60'000;
}  // namespace

void RoutingLog::log(const RouteSummary& summary, const Config& config, WallMs now) {
  for (const auto& name : summary.unknown_events) {
    auto it = unknown_logged_at_.find(name);
    if (it != unknown_logged_at_.end() && now - it->second < kUnknownEventLogEveryMs) continue;
    unknown_logged_at_[name] = now;
    log_.warn("event has no registration; dead-lettered",
              {{"event", name}, {"config", config.path}, {"hint", "register it under events: and replay it"}});
  }
  for (const auto& d : summary.invalid_details) log_.error("invalid event dead-lettered", {{"detail", d}});
  log_.debug("routed", {{"events", std::to_string(summary.events)}, {"tasks", std::to_string(summary.tasks)}});
}

}  // namespace ebats
