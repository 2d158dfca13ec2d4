// route_source_messages(): turns the messages a `sources` entry consumed from
// an upstream exchange into one commit: a task (or an event) per message whose
// params are the message body, or a dead letter with the reason and the raw
// bytes when the body cannot be params; each message acknowledged with what
// replaces it (RabbitMQ: after the replacement is confirmed).
//
// The params also receive the routing key and the headers the source names
// (sources.NAME.params). The new task's id is derived from the message's id
// when that is a UUID (a redelivered message yields the same task id), else a
// new UUIDv7. Pure decision logic, like route_events(); thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"

namespace ebats {

struct SourceSummary {
  uint32_t messages = 0;
  uint32_t published = 0;                   // tasks or events
  uint32_t dead = 0;                        // dead-lettered
  std::vector<std::string> dead_details;    // "<routing key>: <reason>: <detail>", for the log
};

Batch route_source_messages(const SourceConfig& source, const std::vector<Delivery>& messages, const Config& config,
                            WallMs now, SourceSummary* summary);

}  // namespace ebats
