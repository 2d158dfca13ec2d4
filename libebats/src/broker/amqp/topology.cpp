#include "broker/amqp/topology.h"

#include <algorithm>
#include <cstdio>

namespace ebats {
namespace amqp {
namespace {

Argument text(std::string key, std::string value) { return Argument{std::move(key), true, std::move(value), 0}; }
Argument number(std::string key, int64_t value) { return Argument{std::move(key), false, "", value}; }

int64_t usable_unit(int64_t unit_ms) { return std::clamp<int64_t>(unit_ms, 1, kMaxMessageTtlMs); }

// The configured levels, fewer when the TTL of the top one, unit * 2^(levels-1),
// would pass kMaxMessageTtlMs (compared without computing it: it may not fit
// in 64 bits).
uint32_t usable_levels(uint32_t levels, int64_t unit_ms) {
  levels = std::clamp<uint32_t>(levels, 1, 63);
  while (levels > 1 && usable_unit(unit_ms) > (kMaxMessageTtlMs >> (levels - 1))) --levels;
  return levels;
}

}  // namespace

void TopologySpec::append(const TopologySpec& other) {
  exchanges.insert(exchanges.end(), other.exchanges.begin(), other.exchanges.end());
  queues.insert(queues.end(), other.queues.begin(), other.queues.end());
  bindings.insert(bindings.end(), other.bindings.begin(), other.bindings.end());
}

Topology::Topology(const AmqpConfig& config, std::map<std::string, SourceConfig> sources)
    : prefix_(config.prefix),
      events_(prefix_ + ".events"),
      ntask_(prefix_ + ".ntask"),
      dtask_(prefix_ + ".dtask"),
      delay_(prefix_ + ".delay"),
      dead_(prefix_ + ".dead"),
      results_(prefix_ + ".results"),
      levels_(usable_levels(config.delay_levels, config.delay_unit_ms)),
      unit_ms_(usable_unit(config.delay_unit_ms)),
      delivery_limit_(config.delivery_limit),
      results_max_age_ms_(config.results_max_age_ms),
      results_stream_(config.results_stream),
      sources_(std::move(sources)) {}

std::string Topology::delay_exchange(uint32_t level) const {
  char digits[8];
  std::snprintf(digits, sizeof digits, "%02u", level);
  return delay_ + "." + digits;
}

std::string Topology::delay_queue(uint32_t level) const { return delay_exchange(level); }

bool Topology::is_delay_exchange(const std::string& exchange) const {
  return exchange.size() > delay_.size() + 1 && exchange.compare(0, delay_.size() + 1, delay_ + ".") == 0;
}

std::string Topology::queue_of(Lane lane, const std::string& topic) const {
  switch (lane) {
    case Lane::events:
      return events_;
    case Lane::ntask:
      return ntask_queue(topic);
    case Lane::dtask:
      return dtask_queue(topic);
    case Lane::source:
      return topic;  // the source's name
  }
  return events_;
}

// The one place queue arguments are made. Every queue is a durable quorum
// queue. Where RabbitMQ dead-letters for us (TTL expiry in the delay levels,
// the delivery limit elsewhere) it does so at-least-once, which needs
// reject-publish: a hop then keeps the message until the next queue has it.
QueueSpec Topology::quorum_queue(const std::string& name, const std::string& dead_letter_exchange, int64_t ttl_ms,
                                 uint32_t delivery_limit) const {
  QueueSpec q;
  q.name = name;
  q.arguments.push_back(text("x-queue-type", "quorum"));
  if (!dead_letter_exchange.empty()) {
    q.arguments.push_back(text("x-dead-letter-exchange", dead_letter_exchange));
    q.arguments.push_back(text("x-dead-letter-strategy", "at-least-once"));
    q.arguments.push_back(text("x-overflow", "reject-publish"));
  }
  if (ttl_ms > 0) q.arguments.push_back(number("x-message-ttl", ttl_ms));
  if (delivery_limit > 0) q.arguments.push_back(number("x-delivery-limit", delivery_limit));
  return q;
}

QueueSpec Topology::stream(const std::string& name, int64_t max_age_ms) {
  QueueSpec q;
  q.name = name;
  q.arguments.push_back(text("x-queue-type", "stream"));
  if (max_age_ms > 0) {
    // RabbitMQ drops whole segments older than the age: segments of 64 MiB
    // (not the default 500 MB) let it drop them at a modest volume too.
    q.arguments.push_back(text("x-max-age", std::to_string((max_age_ms + 999) / 1000) + "s"));
    q.arguments.push_back(number("x-stream-max-segment-size-bytes", int64_t{64} << 20));
  }
  return q;
}

TopologySpec Topology::events() const {
  TopologySpec t;
  t.exchanges.push_back({events_, "topic"});
  t.queues.push_back(quorum_queue(events_, dead_, 0, delivery_limit_));
  t.bindings.push_back({false, events_, events_, "#"});
  t.append(dead_letters());
  return t;
}

TopologySpec Topology::topic(const std::string& topic) const {
  TopologySpec t = dead_letters();
  t.exchanges.push_back({ntask_, "direct"});
  t.exchanges.push_back({dtask_, "topic"});
  t.queues.push_back(quorum_queue(ntask_queue(topic), dead_, 0, delivery_limit_));
  t.queues.push_back(quorum_queue(dtask_queue(topic), dead_, 0, delivery_limit_));
  t.bindings.push_back({false, ntask_queue(topic), ntask_, topic});
  t.bindings.push_back({false, dtask_queue(topic), dtask_, "#." + topic});
  return t;
}

TopologySpec Topology::delay_levels() const {
  TopologySpec t;
  t.exchanges.push_back({dtask_, "topic"});
  for (uint32_t level = 0; level < levels_; ++level) t.exchanges.push_back({delay_exchange(level), "topic"});
  for (uint32_t level = 0; level < levels_; ++level) {
    const std::string below = level == 0 ? dtask_ : delay_exchange(level - 1);
    const int64_t ttl = unit_ms_ << level;
    t.queues.push_back(quorum_queue(delay_queue(level), below, ttl, 0));
    // Digits are written most significant first: digit `level` is word
    // (levels - 1 - level) of the key.
    std::string skip;
    for (uint32_t i = 0; i + 1 + level < levels_; ++i) skip += "*.";
    t.bindings.push_back({false, delay_queue(level), delay_exchange(level), skip + "1.#"});
    t.bindings.push_back({true, below, delay_exchange(level), skip + "0.#"});
  }
  return t;
}

TopologySpec Topology::delay_queues() const {
  TopologySpec t = delay_levels();
  t.bindings.clear();
  return t;
}

TopologySpec Topology::dead_letters() const {
  TopologySpec t;
  t.exchanges.push_back({dead_, "topic"});
  t.queues.push_back(stream(dead_, 0));  // dead letters wait for an operator, however long
  t.bindings.push_back({false, dead_, dead_, "#"});
  return t;
}

TopologySpec Topology::results() const {
  TopologySpec t;
  t.exchanges.push_back({results_, "topic"});
  if (results_stream_) {
    t.queues.push_back(stream(results_, results_max_age_ms_));
    t.bindings.push_back({false, results_, results_, "#"});
  }
  return t;
}

TopologySpec Topology::source(const std::string& name) const {
  TopologySpec t;
  const auto it = sources_.find(name);
  if (it == sources_.end()) return t;
  const SourceConfig& s = it->second;
  t.exchanges.push_back({s.exchange, s.exchange_type});
  // Like the events queue: what RabbitMQ itself gives up on (the delivery
  // limit) goes to the dead letters, never nowhere.
  t.queues.push_back(quorum_queue(s.name, dead_, 0, delivery_limit_));
  for (const std::string& key : s.bindings) t.bindings.push_back({false, s.name, s.exchange, key});
  t.append(dead_letters());
  return t;
}

TopologySpec Topology::all(const std::vector<std::string>& topics) const {
  TopologySpec t = events();
  t.append(delay_levels());
  t.append(results());
  for (const std::string& topic_name : topics) t.append(topic(topic_name));
  for (const auto& [name, s] : sources_) t.append(source(name));
  return t;
}

uint64_t Topology::max_delay_units() const { return (uint64_t{1} << levels_) - 1; }

Route Topology::delay_route(uint64_t units, const std::string& topic) const {
  units = std::min(units, max_delay_units());
  if (units == 0) return {dtask_, topic};
  std::string key;
  key.reserve(2 * levels_ + topic.size());
  for (uint32_t level = levels_; level-- > 0;) key += ((units >> level) & 1) ? "1." : "0.";
  key += topic;
  uint32_t highest = 0;
  while ((units >> (highest + 1)) != 0) ++highest;
  return {delay_exchange(highest), key};
}

Route Topology::task_route(Lane lane, const std::string& topic, WallMs due_at, WallMs now) const {
  if (lane == Lane::ntask) return {ntask_, topic};
  const int64_t ahead = due_at - now;
  if (ahead < hold_ms()) return {dtask_, topic};
  return delay_route(static_cast<uint64_t>((ahead - unit_ms_ / 2) / unit_ms_), topic);
}

}  // namespace amqp
}  // namespace ebats
