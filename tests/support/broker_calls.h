// Broker calls the broker tests make over and over, each REQUIREing success
// (the failing Status is shown in the test's output).
#pragma once

#include <catch2/catch.hpp>
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

}  // namespace test
}  // namespace ebats
