// Broker calls the broker tests make over and over, each REQUIREing success
// (the failing Status is shown in the test's output).
#pragma once

#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ebats/broker.h"

namespace ebats {
namespace test {

// Commits `batch` and returns its report; the test fails if the commit did.
inline CommitReport commit_ok(Broker& broker, const Batch& batch) {
  auto report = broker.commit(batch);
  INFO(report.status().to_string());
  REQUIRE(report.ok());
  return *report;
}

// Publishes `msgs` in one committed batch.
inline void publish(Broker& broker, std::vector<OutMsg> msgs) {
  Batch batch;
  batch.publish = std::move(msgs);
  commit_ok(broker, batch);
}

// What a worker with route_events does in one look: read_events(), `route`
// on the events read, then commit_routed() with them; both calls REQUIREd to
// succeed.
inline Broker::RoutedClaim route_and_claim(Broker& broker, uint32_t max_events, const Broker::RouteFn& route,
                                           const std::string& claim_topic, uint32_t claim_max) {
  auto read = broker.read_events(max_events);
  INFO(read.status().to_string());
  REQUIRE(read.ok());
  const Batch batch = read->empty() ? Batch() : route(*read);
  auto committed = broker.commit_routed(std::move(read).value(), batch, claim_topic, claim_max);
  INFO(committed.status().to_string());
  REQUIRE(committed.ok());
  return std::move(committed).value();
}

}  // namespace test
}  // namespace ebats
