// EventRouter: turns claimed events into one commit — a task per registration,
// dead letters for what cannot be routed, and the acks of the events.
//
// Pure decision logic (no I/O): given the deliveries, the registrations and the
// time, it builds the Batch. Task ids are task_uuid(event id, event, task, topic),
// so routing the same event twice yields the same tasks. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"

namespace ebats {

struct RouteSummary {
  uint32_t events = 0;
  uint32_t tasks = 0;
  uint32_t unroutable = 0;          // no registration: dead-lettered
  uint32_t invalid = 0;             // malformed / too large / unsupported: dead-lettered
  std::vector<std::string> unknown_events;  // names, for the log
  std::vector<std::string> invalid_details; // "<id>: <reason>: <detail>"
};

// Events due more than this far in the future are taken as clock skew: their
// delays count from now instead.
constexpr int64_t kMaxEventClockSkewMs = 5 * 60 * 1000;

// Events routed in one commit at most (by the scheduler, or by a worker that
// routes them itself).
constexpr uint32_t kEventBatch = 512;

Batch route_events(const std::vector<Delivery>& events, const Config& config, WallMs now, RouteSummary* summary);

// The task `reg` makes of `event` at `now`: what route_events() publishes, and
// what a producer sizes before it publishes the event.
Envelope task_for(const Envelope& event, const Registration& reg, WallMs now);

}  // namespace ebats
