// The backend the broker conformance tests and the integration tests run on:
// $EBATS_TEST_BACKEND is "sqlite" (the default) or "amqp". On "amqp" the
// broker is the private RabbitMQ node ctest started in EBATS_TEST_AMQP_NODE_DIR
// (tests/amqp/ctest-node.sh; its port in DIR/port), or the one
// $EBATS_TEST_AMQP_URL names; the password is $EBATS_BROKER_PASSWORD, "guest"
// when unset (the daemons a test starts inherit it).
// Every test gets a broker of its own: a new SQLite file, or on RabbitMQ a
// new name prefix (broker.amqp.prefix), so tests never see each other's queues.
#pragma once

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "ebats/broker.h"

namespace ebats {
namespace test {

inline bool amqp_backend() {
  const char* backend = std::getenv("EBATS_TEST_BACKEND");
  return backend != nullptr && std::string(backend) == "amqp";
}

// The folder of the private node (rabbitmq-node.sh's DIR).
inline std::string amqp_node_dir() {
  const char* dir = std::getenv("EBATS_TEST_AMQP_NODE_DIR");
  return dir != nullptr ? dir : EBATS_TEST_AMQP_NODE_DIR;
}

inline std::string amqp_url() {
  ::setenv("EBATS_BROKER_PASSWORD", "guest", 0);
  if (const char* url = std::getenv("EBATS_TEST_AMQP_URL")) return url;
  std::ifstream in(amqp_node_dir() + "/port");
  std::string port;
  in >> port;
  INFO("no RabbitMQ test node in " << amqp_node_dir() << ": run the amqp pass through ctest, or set "
                                   "EBATS_TEST_AMQP_URL");
  REQUIRE(!port.empty());
  return "amqp://guest@127.0.0.1:" + port + "/";
}

// A fresh prefix for this test's queues and exchanges: "t" and 12 hex digits.
inline std::string unique_prefix() {
  static std::mt19937_64 random{std::random_device{}()};
  char text[32];
  std::snprintf(text, sizeof text, "t%012llx", static_cast<unsigned long long>(random() & 0xffffffffffffULL));
  return text;
}

// Settings that keep AMQP tests quick: delays in units of 100 ms (10 levels:
// up to 102.3 s in one pass), short timeouts and reconnects.
inline AmqpConfig quick_amqp_config(const std::string& prefix) {
  AmqpConfig c;
  c.prefix = prefix;
  c.heartbeat_ms = 5'000;
  c.connect_timeout_ms = 5'000;
  c.confirm_timeout_ms = 10'000;
  c.delay_unit_ms = 100;
  c.delay_levels = 10;
  c.reconnect_min_ms = 100;
  c.reconnect_max_ms = 1'000;
  return c;
}

// The same as YAML, for configs the daemons read.
inline std::string quick_amqp_yaml(const std::string& prefix) {
  return "  amqp: {prefix: " + prefix +
         ", heartbeat: 5s, connect_timeout: 5s, confirm_timeout: 10s, delay_unit: 100ms, delay_levels: 10, "
         "reconnect: {min: 100ms, max: 1s}}\n";
}

// Broker options for a fresh broker of the backend under test. `sqlite_path`
// is the database file on SQLite; `prefix` the name prefix on RabbitMQ.
inline BrokerOptions test_broker_options(const std::string& sqlite_path, const std::string& prefix,
                                         const std::string& owner = "testhost/ntask/demo") {
  BrokerOptions options;
  options.owner = owner;
  if (amqp_backend()) {
    options.url = amqp_url();
    options.amqp = quick_amqp_config(prefix);
  } else {
    options.url = "sqlite://" + sqlite_path;
    options.sqlite.poll_interval_ms = 20;
  }
  return options;
}

}  // namespace test
}  // namespace ebats
