// AmqpSession: the I/O thread of the RabbitMQ backend and everything it
// owns: the connection (AmqpConnection), its channels, the subscriptions, the
// deliveries received but not yet claimed, the publisher confirms.
//
// One thread owns the connection, as rabbitmq-c requires. Between calls it
// keeps the connection alive: it reads deliveries into a buffer (so claim()
// costs no round trip), services heartbeats however long handlers run,
// answers the broker's channel and connection closes, notices a dead peer
// (no data for two heartbeats), and reconnects with backoff and jitter,
// then declares again what it had declared and consumes again what it had
// consumed. Deliveries of a closed channel are stale: alive() says so, and
// settling one does nothing (RabbitMQ has already given it to someone else).
//
// Channels: 1 publishes in confirm mode, 2 consumes (acks go back on it), 3
// carries declares and lookups, 4 reads a stream now and then.
//
// The owner's thread posts work with run(): a function that runs on the I/O
// thread with the session (the Io methods below), while the owner waits. The
// Io methods may only be used there. take(), wake_fd() and alive() may be
// used from any one other thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "broker/amqp/amqp_connection.h"
#include "broker/amqp/confirm_tracker.h"
#include "broker/amqp/topology.h"
#include "daemon/unique_fd.h"
#include "ebats/broker.h"
#include "ebats/clock.h"

namespace ebats {
namespace amqp {

struct SessionOptions {
  ConnectOptions connect;
  AmqpConfig config;
  std::map<std::string, SourceConfig> sources;  // the config's custom schedulers
  uint64_t max_message_bytes = uint64_t{1} << 20;
  // A task delivery unclaimed this long goes back to its queue (0: never);
  // see send_back_long_unclaimed().
  int64_t max_unclaimed_ms = 0;
  const Clock* clock = nullptr;  // thread-safe (read on the I/O thread)
  std::function<void(const BrokerEvent&)> on_event;
};

// One message of a publish_all(): where it goes and whether it may be sent
// again on a new connection (not when it rides on a settle of a delivery of
// the old one: that delivery comes back and is handled again).
struct Publish {
  OutMessage message;
  bool resend_after_reconnect = true;
  // false: sent and counted as done without waiting for its confirm (a
  // notice for whoever listens, like a result record; its confirm, when it
  // comes, is ignored).
  bool await_confirm = true;
  // Set by publish_all():
  bool confirmed = false;
  std::string failure;  // why not, when not confirmed
};

// A message read from a stream, with its offset.
struct StreamEntry {
  uint64_t offset = 0;
  Incoming message;
};

class AmqpSession {
 public:
  // Connects once (a failure is returned, not retried: a wrong host or
  // password must not hang a daemon) and starts the I/O thread.
  static Result<std::unique_ptr<AmqpSession>> start(SessionOptions options);
  // Stops consuming, puts back what was received but not claimed, closes the
  // connection and joins the thread.
  ~AmqpSession();
  AmqpSession(const AmqpSession&) = delete;
  AmqpSession& operator=(const AmqpSession&) = delete;

  // Runs `work` on the I/O thread and returns when it has run.
  void run(const std::function<void()>& work);
  // Up to `max` received deliveries of (lane, topic), oldest first, stopping
  // once their bodies reach `budget_bytes` (always at least one).
  std::vector<Delivery> take(Lane lane, const std::string& topic, uint32_t max, uint64_t budget_bytes);
  // Puts deliveries taken but not settled back in front, for the next take().
  void give_back(std::vector<Delivery> deliveries);
  int wake_fd() const { return deliveries_ready_.get(); }
  bool alive(uint64_t token) const { return (token >> kTagBits) == epoch_.load(std::memory_order_acquire); }

  // ---- the I/O thread only (inside run()) ----
  const Topology& topology() const { return topology_; }
  const Clock& clock() const { return *options_.clock; }
  uint64_t max_message_bytes() const { return options_.max_message_bytes; }
  // When a commit or other call gives up: now + broker.amqp.confirm_timeout.
  SteadyTime deadline() const {
    return clock().steady_now() + std::chrono::milliseconds(options_.config.confirm_timeout_ms);
  }
  // Connected now, or reconnected before `deadline`.
  bool connected_by(SteadyTime deadline);
  // The last connection error (for messages).
  const std::string& last_error() const { return last_error_; }
  // Declares a part of the topology once per connection (`key` names it).
  Status declare(const std::string& key, const TopologySpec& spec);
  // Declares what these messages need (the events queue, a topic's queues,
  // the delay levels, the streams) before they are published.
  Status declare_for(const std::vector<Publish>& messages);
  // Publishes and waits for every confirm until `deadline`. Nacked messages
  // are sent again after a pause doubling from 20 ms to 1 s, while the
  // deadline leaves a second for the confirm; a task no queue takes has its
  // topic's queues declared and is sent once more. Returns false if any
  // failed.
  bool publish_all(std::vector<Publish>& messages, SteadyTime deadline);
  // Acknowledges deliveries of the live channel; stale tokens are skipped.
  // Returns how many were settled. The oldest unacknowledged deliveries go
  // in one basic.ack with `multiple`; one settled out of order (a lower tag
  // still runs) waits for the next call, which covers it with `multiple` or,
  // if it still cannot, acknowledges it alone: never later than one more
  // call or 50 ms. One basic.ack per task cost the I/O thread a
  // send() and RabbitMQ a settlement each (bench/notes.md).
  uint32_t ack(const std::vector<uint64_t>& tokens);
  // Acknowledges every deferred delivery now.
  void flush_deferred_acks();
  // How many of the sorted `tags` are the oldest unacknowledged deliveries,
  // in a row: those one basic.ack with `multiple` covers.
  size_t oldest_unacked_among(const std::vector<uint64_t>& tags) const;
  // Replacements already confirmed for a held delivery whose settle did not
  // complete (another of its replacements failed): a retry of the commit
  // must not publish them again. `key` names one replacement (its kind and
  // message id). Forgotten when the delivery is acknowledged or its channel closes.
  bool replacement_confirmed(uint64_t token, const std::string& key) const;
  void note_replacement_confirmed(uint64_t token, const std::string& key);
  // A delivery not yet acknowledged, as a message to publish it again
  // (release), due at its due time, with the attempts its redeliveries cost;
  // nullptr when the token is stale or unknown.
  const OutMsg* held_copy(uint64_t token) const;
  Status subscribe(Lane lane, const std::string& topic, uint32_t prefetch);
  Result<QueueCounts> inspect(const std::string& queue);
  // Takes the lock `queue` names: an exclusive queue (AmqpConnection::
  // declare_exclusive), which one connection at a time may hold, on any
  // host. While another holds it, tries again after pauses doubling from
  // 20 ms to 500 ms (heartbeats serviced meanwhile) until `deadline`, then
  // returns busy. The lock ends with release_lock() or with the connection.
  Status take_lock(const std::string& queue, SteadyTime deadline);
  // The incarnation of the connection: a lock taken on an earlier one is gone.
  uint64_t connection_generation() const { return connection_generation_; }
  void release_lock(const std::string& queue);
  // Every entry of a stream from its first offset up to what it held when the
  // read began (markers left out). `exchange` is the one the stream is bound
  // to ('#'): the read's marker goes through it.
  Result<std::vector<StreamEntry>> read_stream(const std::string& stream, const std::string& exchange);

  static constexpr int kTagBits = 40;

 private:
  struct Subscription {
    Lane lane = Lane::events;
    std::string topic;
    uint32_t prefetch = 0;
    std::string consumer_tag;  // empty while not consuming
  };

  explicit AmqpSession(SessionOptions options);
  void loop();
  void run_calls();
  // Reads and dispatches frames for up to `timeout_ms`; returns early when a
  // call is posted (if `wake_on_call`).
  void pump(int timeout_ms, bool wake_on_call);
  void dispatch(Incoming& in);
  void on_delivery(Incoming& in);
  void connection_lost(const std::string& why);
  bool reconnect();
  Status open_channels();
  Status consume(Subscription& s);
  // Declares what a subscription consumes from.
  Status declare_subscription(const Subscription& s);
  std::chrono::milliseconds jittered(std::chrono::milliseconds base);
  // Sends tasks that arrived far before their due time back through the
  // delay levels, and on shutdown puts unclaimed deliveries back: published
  // again, then acknowledged. Returns those still held that could not be.
  std::vector<Delivery> send_back(std::vector<Delivery> deliveries, const char* why);
  // Task deliveries that waited unclaimed longer than max_unclaimed_ms go
  // back to their queues (send_back: published again with their attempt,
  // then acknowledged), so that RabbitMQ's consumer_timeout does not close
  // the channel and count an attempt against each. Those whose attempts are
  // used up stay, for the worker to dead-letter. True if any went.
  bool send_back_long_unclaimed();
  void shut_down();
  void report(BrokerEvent::Level level, const std::string& message) const;
  uint64_t token_of(uint64_t delivery_tag) const { return (uint64_t{epoch_.load()} << kTagBits) | delivery_tag; }

  SessionOptions options_;
  Topology topology_;

  // I/O thread only.
  std::unique_ptr<AmqpConnection> connection_;
  ConfirmTracker confirms_;
  uint64_t publish_calls_ = 0;  // publish_all() calls so far: the high half of every confirm cookie
  std::vector<Subscription> subscriptions_;
  std::set<std::string> declared_;
  uint16_t lost_on_refusal_ = 0;  // the refusal code that took the last connection (0: none)
  uint64_t connection_generation_ = 0;  // +1 for every connection opened
  std::unordered_map<uint64_t, OutMsg> held_;   // unacknowledged deliveries: how to publish them again
  std::set<uint64_t> unacked_tags_;              // their delivery tags on the consuming channel, in order
  // Settled deliveries whose ack waits for a lower tag to be settled too, so
  // that one basic.ack with `multiple` covers them (see ack()); sent on their
  // own at the next ack() or 50 ms after deferral, whichever is first.
  std::vector<uint64_t> deferred_acks_;
  SteadyTime deferred_since_{};
  std::unordered_map<uint64_t, std::set<std::string>> confirmed_replacements_;  // see replacement_confirmed()
  std::map<std::string, std::pair<Lane, std::string>> consumers_;  // consumer tag -> (lane, topic)
  uint64_t next_stream_ack_ = 0;
  std::vector<Delivery> early_;                 // arrived too early: back into the delay levels
  // (token, when it came) of each task delivery, oldest first, while held;
  // see send_back_long_unclaimed().
  std::deque<std::pair<uint64_t, SteadyTime>> arrivals_;
  SteadyTime next_unclaimed_check_{};
  SteadyTime early_retry_at_{};                 // when to try early_ again after a failed send-back
  std::vector<StreamEntry>* stream_sink_ = nullptr;
  bool blocked_ = false;
  std::string last_error_;
  SteadyTime next_reconnect_{};
  std::chrono::milliseconds reconnect_backoff_{0};
  SteadyTime last_received_{};
  bool announced_lost_ = false;

  std::atomic<uint32_t> epoch_{1};  // incarnation of the consuming channel
  UniqueFd calls_ready_;            // eventfd: a call was posted
  UniqueFd deliveries_ready_;       // eventfd: readable while deliveries_ is not empty

  std::mutex mutex_;
  std::condition_variable call_done_;
  std::deque<std::function<void()>*> calls_;  // guarded by mutex_
  std::deque<Delivery> deliveries_;           // guarded by mutex_
  bool stopping_ = false;                     // guarded by mutex_
  std::thread thread_;
  uint32_t jitter_state_ = 0;
};

}  // namespace amqp
}  // namespace ebats
