// Scheduler::route_once on a real SQLite file: what it tells its loop.
#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "daemon/logger.h"
#include "daemon/service_notifier.h"
#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"
#include "ebats/publisher.h"
#include "scheduler/scheduler.h"
#include "support/temp_dir.h"

using namespace ebats;
using ebats::test::TempDir;

TEST_CASE("scheduler: a batch cut short by the read budget says more may wait", "[scheduler][sqlite]") {
  // Only a full batch of 512 said so: one cut by the bytes read (large
  // events) left the loop asleep until its next look, a second later, so a
  // backlog of large events was routed a few per second.
  TempDir dir;
  SystemClock clock;
  const ConfigLoad l = load_config_from_string("version: 1\nbroker: {url: \"sqlite://" + dir.path() +
                                                   "/q.db\"}\nplugins: {dir: /p}\nevents:\n  e: [{task: t, topic: demo}]\n",
                                               dir.path() + "/ebats.yaml");
  INFO(l.error_text());
  REQUIRE(l.config);
  {
    auto pub = Publisher::open(l.config);
    REQUIRE(pub.ok());
    const std::string params = "{\"pad\":\"" + std::string(600, 'x') + "\"}";
    for (int i = 0; i < 6; ++i) REQUIRE((*pub)->publish("e", params).ok());
  }
  BrokerOptions o = broker_options(*l.config, "testhost/scheduler");
  o.read_budget_bytes = 1000;  // two such events per read
  auto broker = open_broker(o, clock);
  REQUIRE(broker.ok());
  const Logger log("scheduler");
  const ServiceNotifier notifier;
  Scheduler scheduler(l.config, **broker, clock, log, notifier);
  size_t routed = 0;
  for (int look = 0; look < 3; ++look) {
    bool more = false;
    auto n = scheduler.route_once(&more);
    REQUIRE(n.ok());
    CHECK(*n == 2);
    CHECK(more);
    routed += *n;
  }
  CHECK(routed == 6);
  bool more = true;
  auto none = scheduler.route_once(&more);
  REQUIRE(none.ok());
  CHECK(*none == 0);
  CHECK_FALSE(more);
}
