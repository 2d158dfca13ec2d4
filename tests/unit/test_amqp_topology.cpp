// Topology: the names and queue arguments ebats declares on RabbitMQ, and the
// delay levels checked as a property: RabbitMQ's routing (topic and direct
// exchanges, exchange-to-exchange bindings, TTL expiry dead-lettering with
// the same routing key) is simulated over the declared spec, and every delay
// must arrive once, in its own topic's dtask queue, after exactly its delay.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "broker/amqp/topology.h"
#include "ebats/broker.h"
#include "ebats/config.h"

using ebats::AmqpConfig;
using ebats::Lane;
using ebats::WallMs;
using ebats::amqp::Argument;
using ebats::amqp::BindingSpec;
using ebats::amqp::kMaxMessageTtlMs;
using ebats::amqp::QueueSpec;
using ebats::amqp::Route;
using ebats::amqp::Topology;
using ebats::amqp::TopologySpec;

namespace {

AmqpConfig config_of(const std::string& prefix, uint32_t levels, int64_t unit_ms, uint32_t delivery_limit = 20) {
  AmqpConfig c;
  c.prefix = prefix;
  c.delay_levels = levels;
  c.delay_unit_ms = unit_ms;
  c.delivery_limit = delivery_limit;
  return c;
}

const Argument* argument(const QueueSpec& q, const std::string& key) {
  for (const Argument& a : q.arguments) {
    if (a.key == key) return &a;
  }
  return nullptr;
}

std::optional<std::string> text_argument(const QueueSpec& q, const std::string& key) {
  const Argument* a = argument(q, key);
  if (a == nullptr || !a->is_text) return std::nullopt;
  return a->text;
}

std::optional<int64_t> number_argument(const QueueSpec& q, const std::string& key) {
  const Argument* a = argument(q, key);
  if (a == nullptr || a->is_text) return std::nullopt;
  return a->number;
}

const QueueSpec* find_queue(const TopologySpec& spec, const std::string& name) {
  for (const QueueSpec& q : spec.queues) {
    if (q.name == name) return &q;
  }
  return nullptr;
}

bool has_binding(const TopologySpec& spec, bool to_exchange, const std::string& destination,
                 const std::string& source, const std::string& key) {
  for (const BindingSpec& b : spec.bindings) {
    if (b.to_exchange == to_exchange && b.destination == destination && b.source == source && b.key == key) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t dot = s.find('.', start);
    out.push_back(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return out;
    start = dot + 1;
  }
}

bool words_match(const std::vector<std::string>& pattern, size_t p, const std::vector<std::string>& key, size_t k) {
  if (p == pattern.size()) return k == key.size();
  if (pattern[p] == "#") {
    for (size_t rest = k; rest <= key.size(); ++rest) {
      if (words_match(pattern, p + 1, key, rest)) return true;
    }
    return false;
  }
  if (k == key.size()) return false;
  return (pattern[p] == "*" || pattern[p] == key[k]) && words_match(pattern, p + 1, key, k + 1);
}

// AMQP topic matching: words split on '.', '*' is exactly one word, '#' zero
// or more.
bool topic_matches(const std::string& pattern, const std::string& key) {
  return words_match(words(pattern), 0, words(key), 0);
}

// RabbitMQ's routing over a declared spec.
class SimulatedRabbit {
 public:
  explicit SimulatedRabbit(const TopologySpec& spec) : spec_(spec) {
    for (const auto& e : spec.exchanges) types_[e.name] = e.type;
  }

  // Every queue a publish to (exchange, key) reaches, once per path: a queue
  // listed twice is reached by two bindings (RabbitMQ would deliver it once,
  // but the levels are meant to leave one way only). A cycle of exchange
  // bindings shows as "(cycle)".
  std::vector<std::string> route(const std::string& exchange, const std::string& key) const {
    std::vector<std::string> reached;
    route_into(exchange, key, 0, &reached);
    return reached;
  }

  const QueueSpec* queue(const std::string& name) const { return find_queue(spec_, name); }

 private:
  void route_into(const std::string& exchange, const std::string& key, size_t depth,
                  std::vector<std::string>* reached) const {
    if (depth > types_.size()) {
      reached->push_back("(cycle)");
      return;
    }
    const auto type = types_.find(exchange);
    if (type == types_.end()) return;  // undeclared: nothing routes
    for (const BindingSpec& b : spec_.bindings) {
      if (b.source != exchange) continue;
      const bool matches = type->second == "direct" ? b.key == key : topic_matches(b.key, key);
      if (!matches) continue;
      if (b.to_exchange) {
        route_into(b.destination, key, depth + 1, reached);
      } else {
        reached->push_back(b.destination);
      }
    }
  }

  const TopologySpec& spec_;
  std::map<std::string, std::string> types_;
};

// Where a message published to `start` ends: the queues it passed through,
// the TTLs it waited, or why it got lost on the way.
struct Trip {
  std::vector<std::string> queues;
  int64_t waited_ms = 0;
  std::string failure;  // empty when it reached a queue without a TTL
};

Trip follow(const SimulatedRabbit& broker, const Route& start, size_t max_hops) {
  Trip trip;
  std::string exchange = start.exchange;
  for (size_t hop = 0; hop <= max_hops; ++hop) {
    const std::vector<std::string> reached = broker.route(exchange, start.routing_key);
    if (reached.size() != 1) {
      trip.failure = "exchange '" + exchange + "' routed key '" + start.routing_key + "' to " +
                     std::to_string(reached.size()) + " queues:";
      for (const std::string& q : reached) trip.failure += " " + q;
      return trip;
    }
    trip.queues.push_back(reached[0]);
    const QueueSpec* q = broker.queue(reached[0]);
    if (q == nullptr) {
      trip.failure = "queue '" + reached[0] + "' is bound but not declared";
      return trip;
    }
    const std::optional<int64_t> ttl = number_argument(*q, "x-message-ttl");
    if (!ttl) return trip;  // a queue with consumers: the end
    const std::optional<std::string> next = text_argument(*q, "x-dead-letter-exchange");
    if (!next) {
      trip.failure = "queue '" + q->name + "' expires messages but dead-letters them nowhere";
      return trip;
    }
    trip.waited_ms += *ttl;
    exchange = *next;  // dead-lettered with the same routing key
  }
  trip.failure = "more than " + std::to_string(max_hops) + " hops";
  return trip;
}

int popcount(uint64_t v) {
  int n = 0;
  for (; v != 0; v &= v - 1) ++n;
  return n;
}

// The same queues, in the same order, with the same arguments.
void check_same_queues(const TopologySpec& a, const TopologySpec& b) {
  REQUIRE(a.queues.size() == b.queues.size());
  for (size_t i = 0; i < a.queues.size(); ++i) {
    INFO("queue " << a.queues[i].name);
    CHECK(a.queues[i].name == b.queues[i].name);
    REQUIRE(a.queues[i].arguments.size() == b.queues[i].arguments.size());
    for (size_t k = 0; k < a.queues[i].arguments.size(); ++k) {
      const Argument& x = a.queues[i].arguments[k];
      const Argument& y = b.queues[i].arguments[k];
      CHECK((x.key == y.key && x.is_text == y.is_text && x.text == y.text && x.number == y.number));
    }
  }
}

const std::vector<std::string> kTopics = {"t", "at", "demo-2"};

// The delay levels plus the topics, as `ebatsctl setup` would declare them.
TopologySpec delays_and_topics(const Topology& topology) {
  TopologySpec spec = topology.delay_levels();
  for (const std::string& t : kTopics) spec.append(topology.topic(t));
  return spec;
}

// Sends a delay of `units` for every topic through the levels and checks it
// arrives once, in that topic's dtask queue, after exactly `units` units.
void check_delay_arrives(const Topology& topology, const SimulatedRabbit& broker, uint64_t units) {
  const uint64_t expected = std::min(units, topology.max_delay_units());
  for (const std::string& topic : kTopics) {
    const Route start = topology.delay_route(units, topic);
    INFO("delay " << units << " units, topic '" << topic << "': published to " << start.exchange << " with key '"
                  << start.routing_key << "'");
    const Trip trip = follow(broker, start, topology.levels() + 1);
    REQUIRE(trip.failure == "");
    REQUIRE(!trip.queues.empty());
    CHECK(trip.queues.back() == topology.dtask_queue(topic));
    CHECK(trip.waited_ms == static_cast<int64_t>(expected) * topology.unit_ms());
    // One delay queue for each binary digit set, the dtask queue at the end.
    CHECK(trip.queues.size() == static_cast<size_t>(popcount(expected)) + 1);
  }
}

}  // namespace

TEST_CASE("amqp topology: the test's topic matcher follows AMQP's rules", "[amqp][topology]") {
  CHECK(topic_matches("#", "a.b.c"));
  CHECK(topic_matches("#", "a"));
  CHECK(topic_matches("#.t", "t"));  // '#' is zero words too
  CHECK(topic_matches("#.t", "0.1.t"));
  CHECK_FALSE(topic_matches("#.t", "at"));
  CHECK_FALSE(topic_matches("#.t", "0.1.at"));
  CHECK_FALSE(topic_matches("#.t", "t.x"));
  CHECK(topic_matches("*.1.#", "0.1.t"));
  CHECK(topic_matches("*.1.#", "0.1"));
  CHECK_FALSE(topic_matches("*.1.#", "1.t"));   // '*' is exactly one word
  CHECK_FALSE(topic_matches("*.1.#", "0.0.1.t"));
  CHECK(topic_matches("*", "a"));
  CHECK_FALSE(topic_matches("*", "a.b"));
  CHECK(topic_matches("demo-2", "demo-2"));
  CHECK_FALSE(topic_matches("demo", "demo-2"));
}

TEST_CASE("amqp topology: every name carries the prefix", "[amqp][topology]") {
  const Topology t(config_of("acme", 24, 1000));
  CHECK(t.events_exchange() == "acme.events");
  CHECK(t.events_queue() == "acme.events");
  CHECK(t.ntask_exchange() == "acme.ntask");
  CHECK(t.ntask_queue("demo") == "acme.ntask.demo");
  CHECK(t.dtask_exchange() == "acme.dtask");
  CHECK(t.dtask_queue("demo") == "acme.dtask.demo");
  CHECK(t.delay_queue(0) == "acme.delay.00");
  CHECK(t.delay_queue(7) == "acme.delay.07");
  CHECK(t.delay_queue(23) == "acme.delay.23");
  CHECK(t.dead_exchange() == "acme.dead");
  CHECK(t.dead_stream() == "acme.dead");
  CHECK(t.results_exchange() == "acme.results");
  CHECK(t.results_stream() == "acme.results");
  CHECK(t.queue_of(Lane::events, "ignored") == "acme.events");
  CHECK(t.queue_of(Lane::ntask, "demo") == "acme.ntask.demo");
  CHECK(t.queue_of(Lane::dtask, "demo") == "acme.dtask.demo");
  CHECK(t.event_route("order.created").exchange == "acme.events");
  CHECK(t.event_route("order.created").routing_key == "order.created");

  CHECK(t.is_delay_exchange("acme.delay.00"));
  CHECK(t.is_delay_exchange("acme.delay.23"));
  CHECK_FALSE(t.is_delay_exchange("acme.delay"));
  CHECK_FALSE(t.is_delay_exchange("acme.delay."));
  CHECK_FALSE(t.is_delay_exchange("acme.dtask"));
  CHECK_FALSE(t.is_delay_exchange("ebats.delay.00"));

  // Everything declared is named under the prefix.
  const TopologySpec all = t.all({"demo", "mail"});
  for (const auto& e : all.exchanges) CHECK_THAT(e.name, Catch::Matchers::StartsWith("acme."));
  for (const auto& q : all.queues) CHECK_THAT(q.name, Catch::Matchers::StartsWith("acme."));
}

TEST_CASE("amqp topology: every queue is quorum, and dead-letters at least once with reject-publish",
          "[amqp][topology]") {
  const Topology t(config_of("ebats", 24, 1000, 20));
  const TopologySpec all = t.all({"demo", "mail"});
  const std::set<std::string> streams = {t.dead_stream(), t.results_stream()};
  size_t quorum = 0;
  for (const QueueSpec& q : all.queues) {
    INFO("queue " << q.name);
    if (streams.count(q.name)) {
      CHECK(text_argument(q, "x-queue-type") == std::optional<std::string>("stream"));
      CHECK(q.name == t.dead_stream());  // the results stream only with results_stream
      CHECK(q.arguments.size() == 1);    // dead letters are kept however long they wait
      continue;
    }
    ++quorum;
    CHECK(text_argument(q, "x-queue-type") == std::optional<std::string>("quorum"));
    // Every quorum queue hands what it drops to someone: a delay level's
    // expired messages, the others' messages over the delivery limit.
    const auto dlx = text_argument(q, "x-dead-letter-exchange");
    REQUIRE(dlx);
    CHECK(text_argument(q, "x-dead-letter-strategy") == std::optional<std::string>("at-least-once"));
    CHECK(text_argument(q, "x-overflow") == std::optional<std::string>("reject-publish"));
    if (t.is_delay_exchange(q.name)) {
      CHECK_FALSE(argument(q, "x-delivery-limit"));  // nobody consumes a delay level
    } else {
      CHECK(*dlx == t.dead_exchange());
      CHECK(number_argument(q, "x-delivery-limit") == std::optional<int64_t>(20));
      CHECK_FALSE(argument(q, "x-message-ttl"));
    }
  }
  // events, two topics' ntask and dtask queues, 24 delay levels
  CHECK(quorum == 1 + 2 * 2 + 24);
}

TEST_CASE("amqp topology: delivery limit 0 declares no x-delivery-limit", "[amqp][topology]") {
  const Topology t(config_of("ebats", 4, 1000, 0));
  for (const QueueSpec& q : t.all({"demo"}).queues) {
    INFO("queue " << q.name);
    CHECK_FALSE(argument(q, "x-delivery-limit"));
  }
}

TEST_CASE("amqp topology: two topologies of one config declare identical queues", "[amqp][topology]") {
  const Topology a(config_of("ebats", 24, 1000));
  const Topology b(config_of("ebats", 24, 1000));
  check_same_queues(a.all({"demo"}), b.all({"demo"}));
}

TEST_CASE("amqp topology: delay level LL waits unit * 2^LL and dead-letters to level LL-1, level 00 to dtask",
          "[amqp][topology]") {
  const int64_t unit = 1000;
  const Topology t(config_of("ebats", 24, unit));
  const TopologySpec spec = t.delay_levels();
  CHECK(spec.queues.size() == 24);
  for (uint32_t level = 0; level < 24; ++level) {
    INFO("level " << level);
    const QueueSpec* q = find_queue(spec, t.delay_queue(level));
    REQUIRE(q != nullptr);
    CHECK(number_argument(*q, "x-message-ttl") == std::optional<int64_t>(unit << level));
    const std::string below = level == 0 ? t.dtask_exchange() : t.delay_queue(level - 1);
    CHECK(text_argument(*q, "x-dead-letter-exchange") == std::optional<std::string>(below));
  }
  CHECK(number_argument(*find_queue(spec, "ebats.delay.23"), "x-message-ttl") ==
        std::optional<int64_t>(8'388'608'000));  // 97 days

  // One topic exchange per level, and the dtask exchange level 00 ends in.
  std::map<std::string, std::string> types;
  for (const auto& e : spec.exchanges) types[e.name] = e.type;
  CHECK(types.size() == 25);
  CHECK(types[t.dtask_exchange()] == "topic");
  for (uint32_t level = 0; level < 24; ++level) CHECK(types[t.delay_queue(level)] == "topic");
}

TEST_CASE("amqp topology: the delay bindings test one binary digit each, most significant first",
          "[amqp][topology]") {
  const Topology t(config_of("p", 4, 1000));
  const TopologySpec spec = t.delay_levels();
  CHECK(spec.bindings.size() == 8);
  CHECK(has_binding(spec, false, "p.delay.03", "p.delay.03", "1.#"));
  CHECK(has_binding(spec, true, "p.delay.02", "p.delay.03", "0.#"));
  CHECK(has_binding(spec, false, "p.delay.02", "p.delay.02", "*.1.#"));
  CHECK(has_binding(spec, true, "p.delay.01", "p.delay.02", "*.0.#"));
  CHECK(has_binding(spec, false, "p.delay.01", "p.delay.01", "*.*.1.#"));
  CHECK(has_binding(spec, true, "p.delay.00", "p.delay.01", "*.*.0.#"));
  CHECK(has_binding(spec, false, "p.delay.00", "p.delay.00", "*.*.*.1.#"));
  CHECK(has_binding(spec, true, "p.dtask", "p.delay.00", "*.*.*.0.#"));
}

TEST_CASE("amqp topology: the delay queues a consumer checks at start are the levels' exchanges and queues, "
          "arguments and all, without the bindings",
          "[amqp][topology]") {
  const Topology t(config_of("p", 6, 1000));
  const TopologySpec all = t.delay_levels();
  const TopologySpec checked = t.delay_queues();
  CHECK(checked.bindings.empty());
  REQUIRE(checked.exchanges.size() == all.exchanges.size());
  for (size_t i = 0; i < all.exchanges.size(); ++i) {
    CHECK(checked.exchanges[i].name == all.exchanges[i].name);
    CHECK(checked.exchanges[i].type == all.exchanges[i].type);
  }
  check_same_queues(checked, all);
}

TEST_CASE("amqp topology: a topic's queues, the events queue and the streams, with their bindings",
          "[amqp][topology]") {
  const Topology t(config_of("p", 4, 1000));

  const TopologySpec topic = t.topic("demo-2");
  CHECK(find_queue(topic, "p.ntask.demo-2") != nullptr);
  CHECK(find_queue(topic, "p.dtask.demo-2") != nullptr);
  CHECK(has_binding(topic, false, "p.ntask.demo-2", "p.ntask", "demo-2"));
  CHECK(has_binding(topic, false, "p.dtask.demo-2", "p.dtask", "#.demo-2"));
  std::map<std::string, std::string> types;
  for (const auto& e : topic.exchanges) types[e.name] = e.type;
  CHECK(types["p.ntask"] == "direct");
  CHECK(types["p.dtask"] == "topic");
  // A topic's queues dead-letter, so it brings the dead-letter exchange along.
  CHECK(types["p.dead"] == "topic");
  CHECK(find_queue(topic, "p.dead") != nullptr);

  const TopologySpec events = t.events();
  CHECK(find_queue(events, "p.events") != nullptr);
  CHECK(has_binding(events, false, "p.events", "p.events", "#"));
  CHECK(find_queue(events, "p.dead") != nullptr);

  const TopologySpec dead = t.dead_letters();
  REQUIRE(dead.queues.size() == 1);
  CHECK(text_argument(dead.queues[0], "x-queue-type") == std::optional<std::string>("stream"));
  CHECK(has_binding(dead, false, "p.dead", "p.dead", "#"));

  // Results go to an exchange for whoever binds a queue to it; the stream
  // that keeps them all comes only with results_stream.
  const TopologySpec results = t.results();
  CHECK(results.queues.empty());
  REQUIRE(results.exchanges.size() == 1);
  CHECK(results.exchanges[0].name == "p.results");
  AmqpConfig with_stream = config_of("p", 24, 1000);
  with_stream.results_stream = true;
  const TopologySpec kept = Topology(with_stream).results();
  REQUIRE(kept.queues.size() == 1);
  CHECK(kept.queues[0].name == "p.results");
  CHECK(text_argument(kept.queues[0], "x-queue-type") == std::optional<std::string>("stream"));
  CHECK(text_argument(kept.queues[0], "x-max-age") == std::optional<std::string>("604800s"));
  CHECK(has_binding(kept, false, "p.results", "p.results", "#"));
}

TEST_CASE("amqp topology: every binding of all() names an exchange and a queue the spec declares",
          "[amqp][topology]") {
  const Topology t(config_of("ebats", 24, 1000));
  const TopologySpec all = t.all({"demo", "mail"});
  std::set<std::string> exchanges, queues;
  for (const auto& e : all.exchanges) exchanges.insert(e.name);
  for (const auto& q : all.queues) queues.insert(q.name);
  for (const BindingSpec& b : all.bindings) {
    INFO("binding " << b.source << " -> " << b.destination << " '" << b.key << "'");
    CHECK(exchanges.count(b.source) == 1);
    CHECK((b.to_exchange ? exchanges : queues).count(b.destination) == 1);
  }
  // Each topic's queues are there.
  for (const std::string topic : {"demo", "mail"}) {
    CHECK(queues.count(t.ntask_queue(topic)) == 1);
    CHECK(queues.count(t.dtask_queue(topic)) == 1);
  }
}

TEST_CASE("amqp topology: max_delay_units() is 2^levels - 1 and delay_route() clamps to it",
          "[amqp][topology]") {
  CHECK(Topology(config_of("p", 1, 1000)).max_delay_units() == 1);
  CHECK(Topology(config_of("p", 5, 1000)).max_delay_units() == 31);
  CHECK(Topology(config_of("p", 24, 1000)).max_delay_units() == (uint64_t{1} << 24) - 1);
  CHECK(Topology(config_of("p", 0, 1000)).levels() == 1);  // at least one level

  const Topology t(config_of("p", 5, 1000));
  const Route max = t.delay_route(31, "t");
  CHECK(max.exchange == "p.delay.04");
  CHECK(max.routing_key == "1.1.1.1.1.t");
  for (uint64_t beyond : {uint64_t{32}, uint64_t{1000}, UINT64_MAX}) {
    const Route r = t.delay_route(beyond, "t");
    CHECK(r.exchange == max.exchange);
    CHECK(r.routing_key == max.routing_key);
  }
  const Route none = t.delay_route(0, "t");
  CHECK(none.exchange == "p.dtask");
  CHECK(none.routing_key == "t");
  const Route five = t.delay_route(5, "t");
  CHECK(five.exchange == "p.delay.02");  // the highest digit set
  CHECK(five.routing_key == "0.0.1.0.1.t");
}

TEST_CASE("amqp topology: no delay level waits longer than RabbitMQ accepts (ten years)", "[amqp][topology]") {
  struct Case {
    uint32_t levels;
    int64_t unit_ms;
    uint32_t usable;
  };
  // 1 s units: 2^28 s is 8.5 years, 2^29 s 17 years. One day: 2^11 days is
  // 5.6 years, 2^12 days 11 years.
  for (const Case c : {Case{24, 1000, 24}, Case{29, 1000, 29}, Case{30, 1000, 29}, Case{32, 1000, 29},
                       Case{63, 1000, 29}, Case{24, 86'400'000, 12}, Case{32, 100, 32},
                       Case{32, int64_t{1} << 50, 1}}) {
    INFO(c.levels << " levels of " << c.unit_ms << " ms");
    const Topology t(config_of("p", c.levels, c.unit_ms));
    CHECK(t.levels() == c.usable);
    CHECK(t.max_delay_units() == (uint64_t{1} << c.usable) - 1);
    const TopologySpec spec = t.delay_levels();
    CHECK(spec.queues.size() == c.usable);
    for (const QueueSpec& q : spec.queues) {
      const auto ttl = number_argument(q, "x-message-ttl");
      REQUIRE(ttl);
      CHECK(*ttl > 0);
      CHECK(*ttl <= kMaxMessageTtlMs);
    }
  }
}

TEST_CASE("amqp topology: every delay of 5 levels reaches its own dtask queue once, after exactly its delay",
          "[amqp][topology][property]") {
  const Topology topology(config_of("ebats", 5, 1000));
  const TopologySpec spec = delays_and_topics(topology);
  const SimulatedRabbit broker(spec);
  for (uint64_t d = 0; d <= topology.max_delay_units(); ++d) check_delay_arrives(topology, broker, d);
  // Beyond the levels: the longest delay they hold.
  check_delay_arrives(topology, broker, topology.max_delay_units() + 1);
}

TEST_CASE("amqp topology: delays of 24 levels reach their own dtask queue once, after exactly their delay",
          "[amqp][topology][property]") {
  const Topology topology(config_of("ebats", 24, 1000));
  REQUIRE(topology.levels() == 24);
  const TopologySpec spec = delays_and_topics(topology);
  const SimulatedRabbit broker(spec);
  const uint64_t max = topology.max_delay_units();
  std::vector<uint64_t> delays = {0,    1,     2,        3,       59,      60,      3600,   7800 /* 2h10m */,
                                  86400, 604800, 1u << 22, 1u << 23, (1u << 23) - 1, max - 1, max, max + 1};
  std::mt19937_64 random(20261);
  for (int i = 0; i < 200; ++i) delays.push_back(random() % (max + 1));
  for (uint64_t d : delays) check_delay_arrives(topology, broker, d);
}

TEST_CASE("amqp topology: a delay of 7800 s (2h10m) waits in the levels of its binary digits, highest first",
          "[amqp][topology]") {
  const Topology topology(config_of("ebats", 24, 1000));
  const TopologySpec spec = delays_and_topics(topology);
  const Route start = topology.delay_route(7800, "at");
  // 7800 = 0b1111001111000 = 4096 + 2048 + 1024 + 512 + 64 + 32 + 16 + 8
  CHECK(start.exchange == "ebats.delay.12");
  CHECK(start.routing_key == "0.0.0.0.0.0.0.0.0.0.0.1.1.1.1.0.0.1.1.1.1.0.0.0.at");
  const Trip trip = follow(SimulatedRabbit(spec), start, 30);
  REQUIRE(trip.failure == "");
  CHECK(trip.queues == std::vector<std::string>{"ebats.delay.12", "ebats.delay.11", "ebats.delay.10",
                                                "ebats.delay.09", "ebats.delay.06", "ebats.delay.05",
                                                "ebats.delay.04", "ebats.delay.03", "ebats.dtask.at"});
  CHECK(trip.waited_ms == 7'800'000);
}

TEST_CASE("amqp topology: task_route() sends ntask to its exchange and dtask through the levels, never late",
          "[amqp][topology]") {
  const int64_t unit = 1000;
  const Topology topology(config_of("ebats", 5, unit));
  const WallMs now = 1'700'000'000'000;

  SECTION("the ntask lane: the ntask exchange, keyed by topic, whatever the due time") {
    for (WallMs due : {now, now + 5 * unit, now - unit}) {
      const Route r = topology.task_route(Lane::ntask, "demo-2", due, now);
      CHECK(r.exchange == "ebats.ntask");
      CHECK(r.routing_key == "demo-2");
    }
  }
  SECTION("due within a unit and a half, or past: the dtask exchange, keyed by topic") {
    for (WallMs due : {now - 60'000, now - 1, now, now + 1, now + unit - 1, now + unit, now + unit + unit / 2 - 1}) {
      const Route r = topology.task_route(Lane::dtask, "t", due, now);
      CHECK(r.exchange == "ebats.dtask");
      CHECK(r.routing_key == "t");
    }
  }
  SECTION("due further: whole units, rounded down after half a unit of slack") {
    Route r = topology.task_route(Lane::dtask, "t", now + unit + unit / 2, now);
    CHECK(r.exchange == "ebats.delay.00");
    CHECK(r.routing_key == "0.0.0.0.1.t");
    r = topology.task_route(Lane::dtask, "t", now + 2 * unit + unit / 2 - 1, now);
    CHECK(r.routing_key == "0.0.0.0.1.t");
    r = topology.task_route(Lane::dtask, "t", now + 2 * unit + unit / 2, now);
    CHECK(r.exchange == "ebats.delay.01");
    CHECK(r.routing_key == "0.0.0.1.0.t");
  }
  SECTION("beyond the levels: the longest delay they hold (the arrival guard sends it round again)") {
    const Route r = topology.task_route(Lane::dtask, "t", now + 1000 * unit, now);
    CHECK(r.exchange == "ebats.delay.04");
    CHECK(r.routing_key == "1.1.1.1.1.t");
  }
  SECTION("routed through the levels: half a unit to a unit and a half early, never late") {
    const TopologySpec spec = delays_and_topics(topology);
    const SimulatedRabbit broker(spec);
    const int64_t max_ms = static_cast<int64_t>(topology.max_delay_units()) * unit;
    for (int64_t ahead = -2 * unit; ahead <= max_ms + 3 * unit; ahead += 97) {
      INFO("due in " << ahead << " ms");
      const Trip trip = follow(broker, topology.task_route(Lane::dtask, "at", now + ahead, now), 10);
      REQUIRE(trip.failure == "");
      CHECK(trip.queues.back() == "ebats.dtask.at");
      if (ahead <= max_ms + unit / 2) {
        // Out of the levels with at least half a unit to spare (hops that run
        // late do not make it late), at most hold_ms() early (else it would
        // go round again).
        CHECK(trip.waited_ms <= std::max<int64_t>(ahead - unit / 2, 0));
        CHECK(ahead - trip.waited_ms < topology.hold_ms());
      } else {
        CHECK(trip.waited_ms == max_ms);
      }
    }
  }
}
