#include "broker/amqp/amqp_broker.h"

#include <unistd.h>

#include <algorithm>
#include <map>

#include "broker/amqp/amqp_dead_letters.h"
#include "broker/amqp/amqp_messages.h"
#include "broker/amqp/credentials.h"

namespace ebats {
namespace amqp {
namespace {

constexpr size_t kResultMessageBytes = 1 << 20;

}  // namespace

Result<std::unique_ptr<AmqpBroker>> AmqpBroker::open(const BrokerOptions& options, const Clock& clock) {
  auto endpoint = parse_amqp_url(options.url);
  if (!endpoint.ok()) return endpoint.status();
  auto password = read_password(options.password_file);
  if (!password.ok()) return password.status();
  SessionOptions so;
  so.connect.endpoint = *endpoint;
  so.connect.password = *password;
  so.connect.tls = options.amqp.tls;
  so.connect.heartbeat_ms = options.amqp.heartbeat_ms;
  so.connect.timeout_ms = options.amqp.connect_timeout_ms;
  so.connect.connection_name = options.owner + " pid " + std::to_string(::getpid());
  so.config = options.amqp;
  so.sources = options.sources;
  so.max_message_bytes = options.max_message_bytes;
  so.max_unclaimed_ms = options.amqp_max_unclaimed_ms;
  so.clock = &clock;
  so.on_event = options.on_event;
  auto session = AmqpSession::start(std::move(so));
  if (!session.ok()) return session.status();
  return std::unique_ptr<AmqpBroker>(new AmqpBroker(std::move(session).value(), options));
}

AmqpBroker::AmqpBroker(std::unique_ptr<AmqpSession> session, const BrokerOptions& options)
    : session_(std::move(session)),
      read_budget_bytes_(options.read_budget_bytes),
      dead_letters_(std::make_unique<AmqpDeadLetters>(*session_)) {}

AmqpBroker::~AmqpBroker() {
  dead_letters_.reset();
  session_.reset();
}

DeadLetterStore& AmqpBroker::dead_letters() { return *dead_letters_; }

Result<std::vector<ResultRow>> AmqpBroker::read_results(const ResultQuery&) {
  const std::string& name = session_->topology().results_exchange();
  return Status::error(StatusCode::unsupported,
                       "RabbitMQ keeps no results table to read: results go to the exchange '" + name +
                           "' (and the stream of that name with broker.amqp.results_stream) and to each worker's "
                           "results file (results.file)");
}

Status AmqpBroker::setup(const std::vector<std::string>& topics) {
  Status result = Status::internal("setup did not complete (the process is stopping, or out of memory)");
  session_->run([&] {
    AmqpSession& s = *session_;
    if (!s.connected_by(s.deadline())) {
      result = Status::io("RabbitMQ is unavailable: " + s.last_error());
      return;
    }
    const Topology& t = s.topology();
    result = s.declare("events", t.events());
    if (result.ok()) result = s.declare("delays", t.delay_levels());
    if (result.ok()) result = s.declare("results", t.results());
    for (const std::string& topic : topics) {
      if (result.ok()) result = s.declare("topic:" + topic, t.topic(topic));
    }
    // The sources' queues and bindings too: upstream messages wait in them
    // from now on, before the scheduler consumes them.
    for (const auto& [name, source] : t.sources()) {
      if (result.ok()) result = s.declare("source:" + name, t.source(name));
    }
  });
  return result;
}

Status AmqpBroker::subscribe(Lane lane, const std::string& topic, uint32_t prefetch) {
  Status result = Status::internal("subscribe did not complete (the process is stopping, or out of memory)");
  session_->run([&] { result = session_->subscribe(lane, topic, prefetch); });
  return result;
}

Result<std::vector<Delivery>> AmqpBroker::claim_ahead(Lane lane, const std::string& topic, uint32_t max,
                                                      int64_t /*lookahead_ms*/) {
  return session_->take(lane, topic, max, UINT64_MAX);
}

Result<size_t> AmqpBroker::claim_and_commit(Lane lane, const std::string& topic, uint32_t max, const RouteFn& route) {
  std::vector<Delivery> deliveries = session_->take(lane, topic, max, read_budget_bytes_);
  if (deliveries.empty()) return size_t{0};
  const size_t read = deliveries.size();
  const Batch batch = route(deliveries);
  auto report = commit_taken(std::move(deliveries), batch);
  if (!report.ok()) return report.status();
  return read;
}

Result<CommitReport> AmqpBroker::commit_taken(std::vector<Delivery> read, const Batch& batch) {
  Result<CommitReport> report = Status::internal("commit did not run");
  std::vector<Delivery> unsettled;
  session_->run([&] {
    report = commit_on_io(batch);
    // What was not acknowledged (its replacement failed) is routed again next time.
    for (Delivery& d : read) {
      if (session_->held_copy(d.token) != nullptr) unsettled.push_back(std::move(d));
    }
  });
  if (!unsettled.empty()) session_->give_back(std::move(unsettled));
  return report;
}

Result<std::vector<Delivery>> AmqpBroker::read_events(uint32_t max) {
  return session_->take(Lane::events, "", max, read_budget_bytes_);
}

Result<Broker::RoutedClaim> AmqpBroker::commit_routed(std::vector<Delivery> read, const Batch& routed,
                                                      const std::string& claim_topic, uint32_t claim_max) {
  RoutedClaim out;
  out.events = read.size();
  if (!read.empty()) {
    auto report = commit_taken(std::move(read), routed);
    if (!report.ok()) return report.status();
  }
  if (claim_max == 0) return out;
  auto claimed = claim(Lane::ntask, claim_topic, claim_max);
  if (!claimed.ok()) return claimed.status();
  out.claimed = std::move(claimed).value();
  return out;
}

Result<CommitReport> AmqpBroker::commit(const Batch& batch) {
  Result<CommitReport> result = Status::internal("commit did not run");
  session_->run([&] { result = commit_on_io(batch); });
  return result;
}

Result<CommitReport> AmqpBroker::commit_on_io(const Batch& batch) {
  AmqpSession& s = *session_;
  const Topology& topology = s.topology();
  const WallMs now = s.clock().wall_now();
  const SteadyTime deadline = s.deadline();
  CommitReport report;
  if (batch.empty()) return report;
  if (!s.connected_by(deadline)) return Status::io("RabbitMQ is unavailable: " + s.last_error());

  std::vector<Publish> messages;
  std::vector<int> owner;  // settle index of each message, -1 for the batch's own
  auto add = [&](OutMessage m, bool resend, int settle) {
    Publish p;
    p.message = std::move(m);
    p.resend_after_reconnect = resend;
    messages.push_back(std::move(p));
    owner.push_back(settle);
  };
  // A replacement, by kind and id: what an earlier try of this commit had
  // confirmed already is not published again.
  auto replacement_key = [](const OutMessage& m) { return m.properties.type + "|" + m.properties.message_id; };
  auto add_replacement = [&](OutMessage m, uint64_t token, int settle) {
    if (s.replacement_confirmed(token, replacement_key(m))) return;
    add(std::move(m), false, settle);
  };
  for (const OutMsg& m : batch.publish) add(out_message(m, topology, now), true, -1);
  const size_t own_publishes = messages.size();
  for (const DeadLetter& d : batch.dead) add(dead_letter_message(d, topology), true, -1);
  const bool one_topic = std::all_of(batch.results.begin(), batch.results.end(), [&](const ResultRecord& r) {
    return r.topic == batch.results.front().topic;
  });
  std::vector<OutMessage> results =
      !batch.results_jsonl.empty() && one_topic
          ? result_messages(batch.results_jsonl, batch.results.empty() ? "" : batch.results.front().topic, topology,
                            kResultMessageBytes, now)
          : result_messages(batch.results, topology, kResultMessageBytes, now);
  std::vector<bool> live(batch.settle.size(), false);
  for (size_t k = 0; k < batch.settle.size(); ++k) {
    const Settle& st = batch.settle[k];
    const OutMsg* held = s.held_copy(st.token);
    if (held == nullptr) {
      ++report.stale;  // its channel closed: RabbitMQ hands the message out again
      continue;
    }
    live[k] = true;
    const int settle = static_cast<int>(k);
    if (st.kind == Settle::Kind::release) {
      // Back to its queue as a new message: a nack would count as a lost attempt.
      add(out_message(*held, topology, now), false, settle);
      continue;
    }
    for (const OutMsg& m : st.then_publish) add_replacement(out_message(m, topology, now), st.token, settle);
    if (st.then_dead) add_replacement(dead_letter_message(*st.then_dead, topology), st.token, settle);
  }

  s.publish_all(messages, deadline);

  std::vector<bool> settle_ok(batch.settle.size(), true);
  size_t failed = 0;
  std::string first_failure;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].confirmed) {
      if (i < own_publishes) ++report.published;
      if (owner[i] >= 0) {
        s.note_replacement_confirmed(batch.settle[static_cast<size_t>(owner[i])].token,
                                     replacement_key(messages[i].message));
      }
      continue;
    }
    ++failed;
    if (first_failure.empty()) first_failure = messages[i].failure;
    if (owner[i] >= 0) settle_ok[static_cast<size_t>(owner[i])] = false;
  }
  std::vector<uint64_t> to_ack;
  for (size_t k = 0; k < batch.settle.size(); ++k) {
    if (live[k] && settle_ok[k]) to_ack.push_back(batch.settle[k].token);
  }
  const uint32_t acked = s.ack(to_ack);
  report.settled = acked;
  report.stale += static_cast<uint32_t>(to_ack.size() - acked);
  // Result records go out after the acks, and their confirms are not waited
  // for: they are notices for whoever listens, not what replaces a delivery
  // (the results file, written before the commit, is the record). Waiting
  // made each commit a round trip longer and cost about a tenth of the
  // drain rate (bench/notes.md). Only once the whole commit went through:
  // the worker sends a failed commit again, records and all, and a queue
  // bound to the results exchange got them once per try.
  if (!results.empty() && failed == 0) {
    std::vector<Publish> notices;
    for (OutMessage& m : results) {
      Publish p;
      p.message = std::move(m);
      p.resend_after_reconnect = false;
      p.await_confirm = false;
      notices.push_back(std::move(p));
    }
    s.publish_all(notices, deadline);
  }
  if (failed > 0) {
    return Status::io(std::to_string(failed) + " of " + std::to_string(messages.size()) +
                      " messages were not confirmed by RabbitMQ: " + first_failure);
  }
  return report;
}

Result<std::vector<QueueDepth>> AmqpBroker::depths(const std::vector<std::string>& topics, DeadLetterCount dead) {
  Result<std::vector<QueueDepth>> result = Status::internal("depths did not run");
  session_->run([&] {
    AmqpSession& s = *session_;
    const Topology& t = s.topology();
    if (!s.connected_by(s.clock().steady_now() + std::chrono::seconds(10))) {
      result = Status::io("RabbitMQ is unavailable: " + s.last_error());
      return;
    }
    auto count = [&](const std::string& queue) -> Result<uint64_t> {
      auto c = s.inspect(queue);
      if (!c.ok()) return c.status().code() == StatusCode::not_found ? Result<uint64_t>(0) : c.status();
      return uint64_t{c->messages};
    };
    std::vector<QueueDepth> out;
    QueueDepth events;
    events.row = QueueDepth::Row::events;
    events.leased_known = events.done_known = false;
    auto ready = count(t.events_queue());
    if (!ready.ok()) {
      result = ready.status();
      return;
    }
    events.ready = *ready;
    QueueDepth delays;
    delays.row = QueueDepth::Row::delay_levels;
    delays.leased_known = delays.done_known = false;
    for (uint32_t level = 0; level < t.levels(); ++level) {
      auto n = count(t.delay_queue(level));
      if (!n.ok()) {
        result = n.status();
        return;
      }
      delays.delayed += *n;
    }
    std::map<std::string, QueueDepth> by_topic;
    for (const std::string& topic : topics) {
      QueueDepth& d = by_topic[topic];
      d.topic = topic;
      d.leased_known = d.done_known = false;
      auto n = count(t.ntask_queue(topic));
      auto dn = n.ok() ? count(t.dtask_queue(topic)) : n;
      if (!dn.ok()) {
        result = dn.status();
        return;
      }
      d.ready = *n;
      d.delayed = *dn;
    }
    if (dead == DeadLetterCount::counted) {
      // Dead letters per topic, from the dead-letter stream.
      AmqpDeadLetters reader(s);
      auto snapshot = reader.read_on_io();
      if (!snapshot.ok()) {
        result = snapshot.status();
        return;
      }
      for (const DeadLetterEntry& e : snapshot->entries) {
        if (e.letter.topic.empty()) {
          ++events.dead;
          continue;
        }
        QueueDepth& d = by_topic[e.letter.topic];
        if (d.topic.empty()) {
          d.topic = e.letter.topic;
          d.leased_known = d.done_known = false;
        }
        ++d.dead;
      }
    } else {
      events.dead_known = delays.dead_known = false;
      for (auto& [topic, d] : by_topic) d.dead_known = false;
    }
    out.push_back(events);
    for (auto& [topic, d] : by_topic) out.push_back(d);
    out.push_back(delays);
    result = std::move(out);
  });
  return result;
}

}  // namespace amqp
}  // namespace ebats
