// Topology: the names and arguments of every RabbitMQ object ebats uses, and
// where each message is published. Pure: no connection, tested with values.
//
// Every queue argument is built here and nowhere else (queue_arguments()), so
// two processes with the same config declare identical queues, and one with
// another config gets RabbitMQ's PRECONDITION_FAILED instead of a queue that
// silently behaves differently. With prefix P (broker.amqp.prefix, "ebats"):
//
//   exchange P.events   topic    events, routing key = event name
//   queue    P.events   quorum   bound '#'; consumed by the schedulers
//   exchange P.ntask    direct   tasks due now, routing key = topic
//   queue    P.ntask.T  quorum   bound 'T'; consumed by ebats-ntask-worker@T
//   exchange P.dtask    topic    delayed tasks once due and every retry
//   queue    P.dtask.T  quorum   bound '#.T'; consumed by ebats-dtask-worker@T
//   exchange P.delay.LL topic    LL = 00 .. levels-1: the delay levels below
//   queue    P.delay.LL quorum   x-message-ttl = 2^LL units, dead-letters to
//                                P.delay.(LL-1), P.dtask below level 00
//   exchange P.dead     topic    dead letters (ebats' and the broker's)
//   stream   P.dead              bound '#'; browsed by `ebatsctl dead`
//   queue    P.dead.lock classic exclusive, only while `ebatsctl dead replay`
//                                or `purge` runs: one at a time, on any host
//   exchange P.results  topic    result records, routing key = topic; a
//                                consumer anywhere binds a queue of its own
//   stream   P.results           only with broker.amqp.results_stream: bound
//                                '#', kept broker.amqp.results_max_age (7 days)
//
// Delays (after NServiceBus' delay infrastructure): a task due in d units
// gets the routing key of d's `levels` binary digits, most significant first,
// then the topic: "0.….1.0.1.T". It is published to P.delay.h, h = d's
// highest set bit. Queue LL takes keys whose digit LL is 1; exchange LL
// passes keys whose digit LL is 0 down to exchange LL-1. A message waits 2^LL
// units in each queue whose digit is set and reaches P.dtask after d units.
// One TTL per queue keeps expiry in queue order.
//
// d = floor((due_at - now - slack) / unit), slack = half a unit: a task comes
// out of the levels between half a unit and a unit and a half before its due
// time, so hops that run late (a few ms each, up to ~100 ms under load) never
// make it late; the dtask worker holds it until due_at. A task due within
// hold_ms() (unit + slack) skips the levels. RabbitMQ refuses a
// TTL above ten years, so there are fewer levels than configured when the top
// one would wait longer (levels() says how many); a task due later goes round
// again (the arrival guard).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ebats/broker.h"
#include "ebats/clock.h"
#include "ebats/config.h"

namespace ebats {
namespace amqp {

// The longest x-message-ttl RabbitMQ accepts: ten years
// (rabbit_misc:check_expiry; a larger one fails the queue declare).
constexpr int64_t kMaxMessageTtlMs = int64_t{315'360'000'000};

// One entry of an AMQP table (a queue argument, a message header): text or
// a 64-bit integer.
struct Argument {
  std::string key;
  bool is_text = true;
  std::string text;
  int64_t number = 0;
};

struct QueueSpec {
  std::string name;
  std::vector<Argument> arguments;
};

struct ExchangeSpec {
  std::string name;
  std::string type;  // "topic" | "direct"
};

struct BindingSpec {
  bool to_exchange = false;  // exchange-to-exchange binding
  std::string destination;   // queue or exchange
  std::string source;        // exchange
  std::string key;
};

// Objects to declare, in order: exchanges, then queues, then bindings.
struct TopologySpec {
  std::vector<ExchangeSpec> exchanges;
  std::vector<QueueSpec> queues;
  std::vector<BindingSpec> bindings;
  void append(const TopologySpec& other);
};

struct Route {
  std::string exchange;
  std::string routing_key;
};

class Topology {
 public:
  // `sources`: the config's custom schedulers, whose queues source() declares.
  explicit Topology(const AmqpConfig& config, std::map<std::string, SourceConfig> sources = {});

  const std::string& events_exchange() const { return events_; }
  const std::string& ntask_exchange() const { return ntask_; }
  const std::string& dtask_exchange() const { return dtask_; }
  // True for the exchange of a delay level.
  bool is_delay_exchange(const std::string& exchange) const;
  const std::string& events_queue() const { return events_; }
  std::string ntask_queue(const std::string& topic) const { return ntask_ + "." + topic; }
  std::string dtask_queue(const std::string& topic) const { return dtask_ + "." + topic; }
  std::string delay_queue(uint32_t level) const;
  const std::string& dead_exchange() const { return dead_; }
  const std::string& dead_stream() const { return dead_; }
  // The lock of `ebatsctl dead replay` and `purge`: an exclusive queue
  // (AmqpSession::take_lock), declared only while one holds it.
  std::string dead_lock_queue() const { return dead_ + ".lock"; }
  const std::string& results_exchange() const { return results_; }
  const std::string& results_stream() const { return results_; }
  // The queue a subscription to (lane, topic) consumes.
  std::string queue_of(Lane lane, const std::string& topic) const;

  // What to declare before publishing to or consuming from each part.
  TopologySpec events() const;
  TopologySpec topic(const std::string& topic) const;  // its ntask and dtask queues
  TopologySpec delay_levels() const;                    // and the dtask exchange they end in
  // delay_levels() without its bindings: what a consumer checks when it
  // starts (each queue's arguments, each exchange's type). A binding cannot
  // differ, only be missing, and re-declaring 48 of them costs RabbitMQ more
  // than the rest of a worker's start (bench/notes.md): they are declared
  // with the first delayed publish of each connection.
  TopologySpec delay_queues() const;
  TopologySpec dead_letters() const;
  TopologySpec results() const;
  // A source's upstream exchange (declared as the config gives it, durable),
  // its queue and the queue's bindings; empty when there is no such source.
  TopologySpec source(const std::string& name) const;
  const std::map<std::string, SourceConfig>& sources() const { return sources_; }
  // Everything for these topics, and every source: what `ebatsctl setup` declares.
  TopologySpec all(const std::vector<std::string>& topics) const;

  // Where a task of `topic` due at `due_at` goes when published at `now`:
  // the ntask exchange for Lane::ntask, else the delay chain (or the dtask
  // exchange when it is due within one unit).
  Route task_route(Lane lane, const std::string& topic, WallMs due_at, WallMs now) const;
  Route event_route(const std::string& event) const { return {events_, event}; }
  // A source's message published again: straight to its queue (the default exchange).
  Route source_route(const std::string& name) const { return {"", name}; }
  // Delay routing key of `units` (clamped to the largest the levels hold)
  // followed by the topic, and the exchange it enters.
  Route delay_route(uint64_t units, const std::string& topic) const;
  // The most units one pass through the levels delays: 2^levels - 1.
  uint64_t max_delay_units() const;
  int64_t unit_ms() const { return unit_ms_; }
  // The earliest before its due time a task leaves the levels (unit + slack):
  // one that arrives earlier than that (a delay beyond the levels, clock skew)
  // goes round again; up to that, the worker holds it.
  int64_t hold_ms() const { return unit_ms_ + unit_ms_ / 2; }
  // broker.amqp.delay_levels (1 to 63), less those whose TTL would pass
  // kMaxMessageTtlMs.
  uint32_t levels() const { return levels_; }

 private:
  QueueSpec quorum_queue(const std::string& name, const std::string& dead_letter_exchange, int64_t ttl_ms,
                         uint32_t delivery_limit) const;
  // A stream keeping what it holds for `max_age_ms` (0: for ever).
  static QueueSpec stream(const std::string& name, int64_t max_age_ms);
  std::string delay_exchange(uint32_t level) const;

  std::string prefix_, events_, ntask_, dtask_, delay_, dead_, results_;
  uint32_t levels_;
  int64_t unit_ms_;
  uint32_t delivery_limit_;
  int64_t results_max_age_ms_;
  bool results_stream_;
  std::map<std::string, SourceConfig> sources_;
};

}  // namespace amqp
}  // namespace ebats
