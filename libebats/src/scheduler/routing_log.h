// RoutingLog: the log lines of routed events, for ebats-scheduler and for a
// worker that routes events itself (workers.<topic>.route_events). An event
// with no registration is named once a minute at most, an invalid one every
// time, and each batch gets a debug line. Not thread-safe.
#pragma once

#include <map>
#include <string>

#include "daemon/logger.h"
#include "ebats/clock.h"
#include "ebats/config.h"
#include "scheduler/event_router.h"

namespace ebats {

class RoutingLog {
 public:
  explicit RoutingLog(const Logger& log) : log_(log) {}
  // Logs what routing `summary` did with `config` at `now`.
  void log(const RouteSummary& summary, const Config& config, WallMs now);

 private:
  const Logger& log_;
  std::map<std::string, WallMs> unknown_logged_at_;  // event name -> when last named
};

}  // namespace ebats
