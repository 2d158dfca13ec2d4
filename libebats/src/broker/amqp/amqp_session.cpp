#include "broker/amqp/amqp_session.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <unordered_set>

#include "broker/amqp/amqp_messages.h"
#include "ebats/duration.h"

namespace ebats {
namespace amqp {
namespace {

using std::chrono::milliseconds;

constexpr uint16_t kPublishChannel = 1;
constexpr uint16_t kConsumeChannel = 2;
constexpr uint16_t kRpcChannel = 3;
constexpr uint16_t kStreamChannel = 4;
// A refused publish (basic.nack) goes again after a pause that doubles from
// the first to the longest, for as long as the call's deadline leaves the
// longest pause for its confirm. A quorum queue refuses while no leader takes
// it: while its members start (just after another client declared it), while
// a cluster elects one, while a policy keeps it full.
constexpr int64_t kFirstNackPauseMs = 20;
constexpr int64_t kLongestNackPauseMs = 1'000;
constexpr milliseconds kStreamStall{10'000};
constexpr int64_t kDeferredAckMaxMs = 50;  // see ack()

void signal_fd(int fd) {
  const uint64_t one = 1;
  while (::write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void clear_fd(int fd) {
  uint64_t value = 0;
  while (::read(fd, &value, sizeof value) < 0 && errno == EINTR) {
  }
}

int64_t ms_between(SteadyTime from, SteadyTime to) {
  return std::chrono::duration_cast<milliseconds>(to - from).count();
}

std::string lane_part(Lane lane, const std::string& topic) {
  return lane == Lane::events ? "events" : (lane == Lane::source ? "source:" : "topic:") + topic;
}

}  // namespace

AmqpSession::AmqpSession(SessionOptions options)
    : options_(std::move(options)),
      topology_(options_.config, options_.sources),
      calls_ready_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      deliveries_ready_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  try {
    std::random_device random;
    jitter_state_ = random();
  } catch (...) {
    jitter_state_ = static_cast<uint32_t>(::getpid());
  }
}

Result<std::unique_ptr<AmqpSession>> AmqpSession::start(SessionOptions options) {
  if (options.clock == nullptr) return Status::internal("AmqpSession needs a clock");
  std::unique_ptr<AmqpSession> session(new AmqpSession(std::move(options)));
  if (!session->calls_ready_.valid() || !session->deliveries_ready_.valid()) {
    return Status::io(std::string("eventfd: ") + std::strerror(errno));
  }
  // The first connection is made here, on the caller's thread, so that a
  // wrong URL or password is an error now; from here on only the I/O thread
  // touches it.
  auto connection = AmqpConnection::open(session->options_.connect);
  if (!connection.ok()) return connection.status();
  session->connection_ = std::move(connection).value();
  ++session->connection_generation_;
  Status channels = session->open_channels();
  if (!channels.ok()) return channels;
  session->last_received_ = session->clock().steady_now();
  try {
    session->thread_ = std::thread([s = session.get()] { s->loop(); });
  } catch (const std::system_error& e) {
    return Status::io(std::string("cannot start the AMQP I/O thread: ") + e.what());
  }
  return session;
}

AmqpSession::~AmqpSession() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  signal_fd(calls_ready_.get());
  if (thread_.joinable()) thread_.join();
  connection_.reset();  // when the thread never ran
}

void AmqpSession::report(BrokerEvent::Level level, const std::string& message) const {
  if (!options_.on_event) return;
  try {
    options_.on_event(BrokerEvent{level, message});
  } catch (...) {  // a report must not end the I/O thread
  }
}

std::chrono::milliseconds AmqpSession::jittered(milliseconds base) {
  // +-20 %, from a small LCG: the point is only that hosts do not reconnect in step.
  jitter_state_ = jitter_state_ * 1664525u + 1013904223u;
  const double factor = 0.8 + 0.4 * (static_cast<double>(jitter_state_ >> 8) / static_cast<double>(1u << 24));
  return milliseconds(static_cast<int64_t>(static_cast<double>(base.count()) * factor));
}

// ------------------------------------------------------------ owner's side

void AmqpSession::run(const std::function<void()>& work) {
  bool done = false;
  std::function<void()> wrapped = [&] {
    // No exception leaves the I/O thread: a call that throws (out of memory)
    // returns with its result unset, which every caller initialises to an
    // error.
    try {
      work();
    } catch (...) {
    }
    std::lock_guard<std::mutex> lock(mutex_);
    done = true;
  };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    calls_.push_back(&wrapped);
  }
  signal_fd(calls_ready_.get());
  std::unique_lock<std::mutex> lock(mutex_);
  call_done_.wait(lock, [&] { return done; });
}

std::vector<Delivery> AmqpSession::take(Lane lane, const std::string& topic, uint32_t max, uint64_t budget_bytes) {
  std::vector<Delivery> out;
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t bytes = 0;
  const bool any_topic = lane == Lane::events;
  for (auto it = deliveries_.begin(); it != deliveries_.end() && out.size() < max && (out.empty() || bytes < budget_bytes);) {
    if (it->lane != lane || (!any_topic && it->topic != topic)) {
      ++it;
      continue;
    }
    bytes += it->body.size();
    out.push_back(std::move(*it));
    it = deliveries_.erase(it);
  }
  if (deliveries_.empty()) clear_fd(deliveries_ready_.get());
  return out;
}

void AmqpSession::give_back(std::vector<Delivery> deliveries) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = deliveries.rbegin(); it != deliveries.rend(); ++it) {
    if (!alive(it->token)) continue;  // its channel is gone: RabbitMQ hands it out again
    deliveries_.push_front(std::move(*it));
  }
  if (!deliveries_.empty()) signal_fd(deliveries_ready_.get());
}

// ---------------------------------------------------------------- I/O loop

void AmqpSession::run_calls() {
  for (;;) {
    std::function<void()>* call = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (calls_.empty()) {
        clear_fd(calls_ready_.get());
        return;
      }
      call = calls_.front();
      calls_.pop_front();
    }
    (*call)();
    call_done_.notify_all();
  }
}

void AmqpSession::loop() {
  const int64_t heartbeat = options_.config.heartbeat_ms;
  const int idle_wait = static_cast<int>(heartbeat > 0 ? std::min<int64_t>(heartbeat / 2, 1000) : 1000);
  for (;;) {
    run_calls();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) break;
    }
    if (connection_ && !early_.empty() && clock().steady_now() >= early_retry_at_) {
      std::vector<Delivery> early;
      early.swap(early_);
      // What could not be sent back is tried again a second later; it stays
      // held (and counted against the prefetch) meanwhile, never stranded.
      // Early arrivals that came in while send_back() waited for its confirms
      // are in early_ already: kept beside them, not over them.
      std::vector<Delivery> kept = send_back(std::move(early), "early arrivals going round the delay levels again");
      if (!kept.empty()) early_retry_at_ = clock().steady_now() + std::chrono::seconds(1);
      for (Delivery& d : kept) early_.push_back(std::move(d));
      continue;
    }
    if (connection_ && options_.max_unclaimed_ms > 0 && clock().steady_now() >= next_unclaimed_check_) {
      next_unclaimed_check_ =
          clock().steady_now() + milliseconds(std::clamp<int64_t>(options_.max_unclaimed_ms / 4, 10, 1000));
      if (send_back_long_unclaimed()) continue;
    }
    if (!connection_) {
      const SteadyTime now = clock().steady_now();
      if (now >= next_reconnect_ && reconnect()) continue;
      pollfd wake{calls_ready_.get(), POLLIN, 0};
      const int64_t wait = std::clamp<int64_t>(ms_between(clock().steady_now(), next_reconnect_), 1, 1000);
      ::poll(&wake, 1, static_cast<int>(wait));
      continue;
    }
    int wait = idle_wait;
    if (!early_.empty()) wait = static_cast<int>(std::clamp<int64_t>(ms_between(clock().steady_now(), early_retry_at_), 1, idle_wait));
    if (options_.max_unclaimed_ms > 0) {
      wait = std::min(wait, static_cast<int>(std::clamp<int64_t>(
                                ms_between(clock().steady_now(), next_unclaimed_check_), 1, idle_wait)));
    }
    if (!deferred_acks_.empty()) {
      const SteadyTime due = deferred_since_ + milliseconds(kDeferredAckMaxMs);
      if (clock().steady_now() >= due) {
        flush_deferred_acks();
        continue;
      }
      wait = std::min(wait, static_cast<int>(std::clamp<int64_t>(ms_between(clock().steady_now(), due), 1, idle_wait)));
    }
    pump(wait, true);
  }
  shut_down();
}

void AmqpSession::pump(int timeout_ms, bool wake_on_call) {
  if (!connection_) return;
  if (!connection_->buffered() && timeout_ms > 0) {
    pollfd fds[2] = {{connection_->fd(), POLLIN, 0}, {calls_ready_.get(), POLLIN, 0}};
    const int rc = ::poll(fds, wake_on_call ? 2 : 1, timeout_ms);
    if (rc > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) last_received_ = clock().steady_now();
  }
  // Everything at hand; this also sends a heartbeat when one is due.
  for (int i = 0; i < 100'000 && connection_; ++i) {
    auto next = connection_->next(0);
    if (!next.ok()) {
      connection_lost(next.status().message());
      return;
    }
    if (!next->has_value()) break;
    last_received_ = clock().steady_now();
    dispatch(**next);
  }
  const int64_t heartbeat = options_.config.heartbeat_ms;
  if (connection_ && heartbeat > 0 && ms_between(last_received_, clock().steady_now()) > 2 * heartbeat + 1000) {
    connection_lost("nothing from the broker for " + std::to_string(2 * heartbeat / 1000) +
                    " s, two heartbeats: the broker or the network is gone");
  }
}

void AmqpSession::dispatch(Incoming& in) {
  using Kind = Incoming::Kind;
  switch (in.kind) {
    case Kind::deliver:
      if (in.channel == kConsumeChannel) {
        on_delivery(in);
      } else if (in.channel == kStreamChannel && stream_sink_ != nullptr) {
        const HeaderValue* offset = in.properties.header(kStreamOffsetHeader);
        StreamEntry e;
        e.offset = offset && !offset->is_text ? static_cast<uint64_t>(offset->number) : 0;
        e.message = std::move(in);
        stream_sink_->push_back(std::move(e));
      }
      break;
    case Kind::ack:
      if (in.channel == kPublishChannel) confirms_.on_ack(in.delivery_tag, in.multiple);
      break;
    case Kind::nack:
      if (in.channel == kPublishChannel) confirms_.on_nack(in.delivery_tag, in.multiple);
      break;
    case Kind::returned:
      if (in.channel == kPublishChannel) {
        confirms_.on_return(in.properties.message_id, std::to_string(in.reply_code) + " " + in.reply_text +
                                                          " (exchange '" + in.exchange + "', routing key '" +
                                                          in.routing_key + "')");
      }
      break;
    case Kind::cancelled:
      for (Subscription& s : subscriptions_) {
        if (s.consumer_tag != in.consumer_tag) continue;
        s.consumer_tag.clear();
        report(BrokerEvent::Level::warn, "RabbitMQ cancelled the consumer of queue '" +
                                             topology_.queue_of(s.lane, s.topic) +
                                             "' (deleted, or its node went down); consuming again");
        declared_.erase(lane_part(s.lane, s.topic));
        Status again = consume(s);
        if (!again.ok()) connection_lost("cannot consume again after a cancel: " + again.message());
        return;  // (consume() has handled a refusal on the consuming channel)
      }
      break;
    case Kind::channel_closed: {
      const std::string why = std::to_string(in.reply_code) + " " + in.reply_text;
      if (in.channel == kConsumeChannel) {
        std::string hint;
        if (in.reply_text.find("acknowledgement") != std::string::npos) {
          hint = "; a task held longer than RabbitMQ's consumer_timeout: raise it (and broker.amqp.consumer_timeout) "
                 "or shorten the task timeout";
        }
        report(BrokerEvent::Level::error, "RabbitMQ closed the consuming channel: " + why + hint +
                                              "; its deliveries go back to their queues");
      } else {
        report(BrokerEvent::Level::warn, "RabbitMQ closed channel " + std::to_string(in.channel) + ": " + why);
      }
      // Simplest and safe: start over on a fresh connection.
      connection_lost("channel " + std::to_string(in.channel) + " closed by the broker: " + why);
      break;
    }
    case Kind::connection_closed:
      connection_lost("the broker closed the connection: " + std::to_string(in.reply_code) + " " + in.reply_text);
      break;
    case Kind::blocked:
      blocked_ = true;
      report(BrokerEvent::Level::warn, "RabbitMQ blocks publishing (" + in.reply_text +
                                           ": a memory or disk alarm); publishes wait until it unblocks");
      break;
    case Kind::unblocked:
      blocked_ = false;
      report(BrokerEvent::Level::info, "RabbitMQ unblocked publishing");
      break;
    case Kind::other:
      break;
  }
}

void AmqpSession::on_delivery(Incoming& in) {
  auto consumer = consumers_.find(in.consumer_tag);
  if (consumer == consumers_.end()) return;  // of a consumer before a reconnect: the broker took it back
  const auto& [lane, topic] = consumer->second;
  const uint64_t token = token_of(in.delivery_tag);
  Delivery d = delivery_from_message(lane, topic, in, token, options_.max_message_bytes);
  OutMsg copy;
  copy.lane = lane;
  copy.topic = topic;
  copy.id = d.id;
  copy.name = d.name;
  copy.due_at = d.due_at;
  copy.attempt = d.attempt;
  copy.max_attempts = d.max_attempts;
  copy.body = d.redeliveries > 0 ? with_attempt(in.body, d.attempt, options_.max_message_bytes) : std::move(in.body);
  held_[token] = std::move(copy);
  unacked_tags_.insert(in.delivery_tag);
  if (options_.max_unclaimed_ms > 0 && (lane == Lane::ntask || lane == Lane::dtask)) {
    arrivals_.emplace_back(token, last_received_);
  }
  // The arrival guard: a task that comes earlier than the levels let it (a
  // delay beyond the levels, clock skew between hosts) goes back through the
  // delay levels instead of waiting in a worker's memory.
  if ((lane == Lane::ntask || lane == Lane::dtask) && d.attempt < d.max_attempts &&
      d.due_at - clock().wall_now() > topology_.hold_ms()) {
    early_.push_back(std::move(d));
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (deliveries_.empty()) signal_fd(deliveries_ready_.get());
  deliveries_.push_back(std::move(d));
}

std::vector<Delivery> AmqpSession::send_back(std::vector<Delivery> deliveries, const char* why) {
  std::vector<Publish> messages;
  std::vector<Delivery> sent;
  const WallMs now = clock().wall_now();
  for (Delivery& d : deliveries) {
    const OutMsg* copy = held_copy(d.token);
    if (copy == nullptr) continue;  // its channel closed: RabbitMQ has it back
    // A source's message goes back when the connection closes, with its
    // routing key and headers (an upstream message counts no attempts).
    if (copy->lane == Lane::source) continue;
    OutMsg m = *copy;
    if (m.lane == Lane::dtask || (m.lane == Lane::ntask && m.due_at - now > topology_.hold_ms())) m.lane = Lane::dtask;
    Publish p;
    p.message = out_message(m, topology_, now);
    p.resend_after_reconnect = false;
    messages.push_back(std::move(p));
    sent.push_back(std::move(d));
  }
  std::vector<Delivery> kept;
  if (messages.empty()) return kept;
  publish_all(messages, deadline());
  std::vector<uint64_t> done;
  std::string failure;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].confirmed) {
      done.push_back(sent[i].token);
    } else if (held_copy(sent[i].token) != nullptr) {
      kept.push_back(std::move(sent[i]));  // still ours: the caller decides
      if (failure.empty()) failure = messages[i].failure;
    }
  }
  ack(done);
  if (!kept.empty()) {
    report(BrokerEvent::Level::warn, std::to_string(kept.size()) + " deliveries could not be sent back (" + why +
                                         "): " + failure);
  }
  return kept;
}

bool AmqpSession::send_back_long_unclaimed() {
  const SteadyTime cutoff = clock().steady_now() - milliseconds(options_.max_unclaimed_ms);
  // Forget the settled and those of a closed channel. A long task at the
  // front holds its place, so the others are swept out too once they are
  // most of the list: it stays within twice what is held (a prefetch).
  auto gone = [&](const std::pair<uint64_t, SteadyTime>& a) { return !alive(a.first) || held_.count(a.first) == 0; };
  while (!arrivals_.empty() && gone(arrivals_.front())) arrivals_.pop_front();
  if (arrivals_.size() > 2 * held_.size() + 64) {
    arrivals_.erase(std::remove_if(arrivals_.begin(), arrivals_.end(), gone), arrivals_.end());
  }
  if (arrivals_.empty() || arrivals_.front().second > cutoff) return false;
  std::unordered_set<uint64_t> waited_long;  // those the worker may have taken meanwhile too
  for (const auto& [token, at] : arrivals_) {
    if (at > cutoff) break;
    waited_long.insert(token);
  }
  std::vector<Delivery> unclaimed;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = deliveries_.begin(); it != deliveries_.end();) {
      if (waited_long.count(it->token) != 0 && it->attempt < it->max_attempts) {
        unclaimed.push_back(std::move(*it));
        it = deliveries_.erase(it);
      } else {
        ++it;
      }
    }
    if (deliveries_.empty()) clear_fd(deliveries_ready_.get());
  }
  if (unclaimed.empty()) return false;
  const size_t taken = unclaimed.size();
  std::vector<Delivery> kept = send_back(std::move(unclaimed), "waited unclaimed too long");
  if (kept.size() < taken) {
    report(BrokerEvent::Level::warn,
           std::to_string(taken - kept.size()) + " tasks waited unclaimed in this worker for over " +
               format_duration(milliseconds(options_.max_unclaimed_ms)) +
               " (more were delivered than its children could start): sent back to their queue, so that RabbitMQ's "
               "consumer_timeout does not close the channel and count an attempt against each; a smaller "
               "workers.<topic>.prefetch keeps fewer waiting");
  }
  if (!kept.empty()) give_back(std::move(kept));  // tried again at the next check
  return true;
}

void AmqpSession::shut_down() {
  if (connection_) {
    for (Subscription& s : subscriptions_) {
      if (!s.consumer_tag.empty()) connection_->cancel(kConsumeChannel, s.consumer_tag);
      s.consumer_tag.clear();
    }
    pump(20, false);  // deliveries already on the way
    std::vector<Delivery> unclaimed(early_.begin(), early_.end());
    early_.clear();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (Delivery& d : deliveries_) unclaimed.push_back(std::move(d));
      deliveries_.clear();
      clear_fd(deliveries_ready_.get());
    }
    // Put them back without the redelivery that closing the channel would
    // count against each as an attempt. What fails goes back when the
    // connection closes, one attempt more. Those whose redeliveries used up
    // their attempts go back that way too: published again, they would carry
    // attempt = max_attempts in the body, which reads as a forged count,
    // while a redelivery is dead-lettered as "worker lost", which it is.
    unclaimed.erase(std::remove_if(unclaimed.begin(), unclaimed.end(),
                                   [](const Delivery& d) { return d.attempt >= d.max_attempts; }),
                    unclaimed.end());
    if (connection_) send_back(std::move(unclaimed), "the process stops; RabbitMQ takes them back as it closes");
    flush_deferred_acks();
  }
  connection_.reset();
}

// ------------------------------------------------------- connection life

Status AmqpSession::open_channels() {
  for (uint16_t channel : {kPublishChannel, kConsumeChannel, kRpcChannel}) {
    Status s = connection_->open_channel(channel);
    if (!s.ok()) return s;
  }
  confirms_.reset();
  return connection_->confirm_select(kPublishChannel);
}

void AmqpSession::connection_lost(const std::string& why) {
  if (!connection_) {  // lost already (a caller reporting what a callee handled)
    if (last_error_.empty()) last_error_ = why;
    return;
  }
  last_error_ = why;
  lost_on_refusal_ = connection_->last_refusal();
  connection_.reset();
  epoch_.fetch_add(1, std::memory_order_acq_rel);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    deliveries_.clear();
    clear_fd(deliveries_ready_.get());
  }
  held_.clear();
  unacked_tags_.clear();
  deferred_acks_.clear();
  confirmed_replacements_.clear();
  early_.clear();
  consumers_.clear();
  for (Subscription& s : subscriptions_) s.consumer_tag.clear();
  declared_.clear();
  confirms_.reset();
  blocked_ = false;
  const milliseconds min(options_.config.reconnect_min_ms);
  const milliseconds max(options_.config.reconnect_max_ms);
  reconnect_backoff_ = reconnect_backoff_.count() == 0 ? min : std::min(max, reconnect_backoff_ * 2);
  const milliseconds wait = jittered(reconnect_backoff_);
  next_reconnect_ = clock().steady_now() + wait;
  report(BrokerEvent::Level::warn, "connection to " + options_.connect.endpoint.display() + " lost: " + why +
                                       "; reconnecting in " + std::to_string(wait.count()) + " ms");
  announced_lost_ = true;
}

bool AmqpSession::reconnect() {
  auto connection = AmqpConnection::open(options_.connect);
  if (!connection.ok()) {
    last_error_ = connection.status().message();
    const milliseconds min(options_.config.reconnect_min_ms);
    const milliseconds max(options_.config.reconnect_max_ms);
    reconnect_backoff_ = reconnect_backoff_.count() == 0 ? min : std::min(max, reconnect_backoff_ * 2);
    const milliseconds wait = jittered(reconnect_backoff_);
    next_reconnect_ = clock().steady_now() + wait;
    report(BrokerEvent::Level::warn, last_error_ + "; next try in " + std::to_string(wait.count()) + " ms");
    return false;
  }
  connection_ = std::move(connection).value();
  ++connection_generation_;
  last_received_ = clock().steady_now();
  Status s = open_channels();
  for (Subscription& sub : subscriptions_) {
    if (!s.ok()) break;
    s = consume(sub);
  }
  if (!s.ok()) {
    connection_lost("after reconnecting: " + s.message());
    return false;
  }
  reconnect_backoff_ = milliseconds(0);
  report(BrokerEvent::Level::info, "connected to " + options_.connect.endpoint.display() + " again" +
                                       (subscriptions_.empty() ? "" : "; consuming again"));
  return true;
}

bool AmqpSession::connected_by(SteadyTime deadline) {
  while (!connection_) {
    const SteadyTime now = clock().steady_now();
    if (now >= deadline) return false;
    if (now >= next_reconnect_) {
      if (reconnect()) break;
      continue;
    }
    const int64_t wait = std::max<int64_t>(1, ms_between(now, std::min(next_reconnect_, deadline)));
    ::usleep(static_cast<useconds_t>(std::min<int64_t>(wait, 1000) * 1000));
  }
  return true;
}

// ---------------------------------------------------------- declarations

Status AmqpSession::declare(const std::string& key, const TopologySpec& spec) {
  if (declared_.count(key)) return Status();
  if (!connection_) return Status::io("not connected to " + options_.connect.endpoint.display() + ": " + last_error_);
  Status s = connection_->declare(kRpcChannel, spec);
  if (!s.ok()) {
    if (s.code() == StatusCode::io_error) connection_lost(s.message());
    return s;
  }
  declared_.insert(key);
  return Status();
}

Status AmqpSession::declare_for(const std::vector<Publish>& messages) {
  for (const Publish& p : messages) {
    const OutMessage& m = p.message;
    Status s;
    if (m.exchange == topology_.events_exchange()) {
      s = declare("events", topology_.events());
    } else if (m.exchange == topology_.dead_exchange()) {
      s = declare("dead", topology_.dead_letters());
    } else if (m.exchange == topology_.results_exchange()) {
      s = declare("results", topology_.results());
    } else if (m.properties.type == "task") {
      // The topic is the last word of the routing key (ntask: the whole key).
      const size_t dot = m.routing_key.rfind('.');
      const std::string topic = dot == std::string::npos ? m.routing_key : m.routing_key.substr(dot + 1);
      s = declare("topic:" + topic, topology_.topic(topic));
      if (s.ok() && topology_.is_delay_exchange(m.exchange)) s = declare("delays", topology_.delay_levels());
    }
    if (!s.ok()) return s;
  }
  return Status();
}

Status AmqpSession::declare_subscription(const Subscription& s) {
  if (s.lane == Lane::events) return declare("events", topology_.events());
  if (s.lane == Lane::source) {
    if (topology_.sources().count(s.topic) == 0) {
      return Status::invalid("no source named '" + s.topic + "' in the config");
    }
    return declare("source:" + s.topic, topology_.source(s.topic));
  }
  Status status = declare("topic:" + s.topic, topology_.topic(s.topic));
  // Retries go through the delay levels: a level that exists with other
  // arguments stops the worker now, not at its first retry. Their bindings
  // come with the first delayed publish (declare_for).
  if (status.ok() && declared_.count("delays") == 0) status = declare("delay-queues", topology_.delay_queues());
  return status;
}

Status AmqpSession::consume(Subscription& s) {
  Status status = declare_subscription(s);
  if (!status.ok()) return status;
  if (!connection_) return Status::io("not connected: " + last_error_);
  // Any refusal on the consuming channel closes it, and RabbitMQ takes back
  // every delivery it held: the same as a lost connection (a new epoch makes
  // every token of the old channel stale), never a quietly reopened channel
  // whose delivery tags start over.
  auto consuming_failed = [&](const Status& failure) {
    connection_lost("consuming from queue '" + topology_.queue_of(s.lane, s.topic) + "': " + failure.message());
    return failure;
  };
  status = connection_->qos(kConsumeChannel, s.prefetch);
  if (!status.ok()) return consuming_failed(status);
  auto tag = connection_->consume(kConsumeChannel, topology_.queue_of(s.lane, s.topic), {});
  if (!tag.ok()) return consuming_failed(tag.status());
  consumers_[*tag] = {s.lane, s.topic};
  const std::string old = s.consumer_tag;
  s.consumer_tag = *tag;
  // A new prefetch applies to new consumers: the old one goes once the new
  // one runs; what it delivered is still ours to settle.
  if (!old.empty()) {
    status = connection_->cancel(kConsumeChannel, old);
    if (!status.ok()) return consuming_failed(status);
  }
  return Status();
}

Status AmqpSession::subscribe(Lane lane, const std::string& topic, uint32_t prefetch) {
  const std::string t = lane == Lane::events ? "" : topic;
  auto it = std::find_if(subscriptions_.begin(), subscriptions_.end(),
                         [&](const Subscription& s) { return s.lane == lane && s.topic == t; });
  if (it == subscriptions_.end()) {
    subscriptions_.push_back(Subscription{lane, t, prefetch, ""});
    it = subscriptions_.end() - 1;
  } else if (it->prefetch == prefetch && !it->consumer_tag.empty()) {
    return Status();
  }
  it->prefetch = prefetch;
  if (!connection_) return Status();  // consumed once connected again
  Status consumed = consume(*it);
  // What the config asks for and RabbitMQ refuses (a queue with other
  // arguments, one that is not there, no access to it) is the caller's to
  // fix. A failure that took the connection with it otherwise is RabbitMQ's
  // or the network's: a quorum queue whose member is still starting (the
  // moment after another daemon declared it) answers a consume with
  // 541 INTERNAL_ERROR and closes the connection. The subscription stays and
  // is consumed once connected again, as when subscribing while disconnected.
  if (!consumed.ok() && !connection_ && consumed.code() == StatusCode::io_error &&
      lost_on_refusal_ != AMQP_ACCESS_REFUSED) {
    return Status();
  }
  return consumed;
}

// ------------------------------------------------------------- publishing

bool AmqpSession::publish_all(std::vector<Publish>& messages, SteadyTime deadline) {
  for (Publish& p : messages) {
    p.confirmed = false;
    p.failure.clear();
  }
  // Cookies name this call and the message: confirms of an earlier call that
  // gave up on them (a memory alarm) are told apart and ignored.
  const uint64_t call = ++publish_calls_;
  auto cookie_of = [&](size_t i) { return (call << 32) | i; };
  std::vector<size_t> todo(messages.size());
  for (size_t i = 0; i < todo.size(); ++i) todo[i] = i;
  std::vector<int> nacks(messages.size(), 0);
  std::vector<std::string> refusals(messages.size());  // the last basic.nack's detail
  const SteadyTime started = clock().steady_now();
  std::vector<bool> redeclared(messages.size(), false);
  const uint32_t start_epoch = epoch_.load();
  auto fail = [&](size_t i, const std::string& why) {
    if (messages[i].failure.empty()) messages[i].failure = why;
  };
  auto refused_until_now = [&](size_t i) {
    return refusals[i] + ", " + std::to_string(nacks[i]) + " times in " +
           std::to_string(ms_between(started, clock().steady_now())) +
           " ms (tried again until broker.amqp.confirm_timeout)";
  };
  auto blocked_failure = [&] {
    return "RabbitMQ blocks publishing (a memory or disk alarm) and did not unblock within " +
           std::to_string(options_.config.confirm_timeout_ms) + " ms (broker.amqp.confirm_timeout)";
  };

  while (!todo.empty()) {
    if (!connected_by(deadline)) {
      for (size_t i : todo) fail(i, "RabbitMQ is unavailable: " + last_error_);
      break;
    }
    // A message riding on a settle of a delivery of the connection this call
    // began on is not sent on another: that delivery comes back and is
    // handled again, replacement and all.
    std::vector<size_t> round;
    for (size_t i : todo) {
      if (!messages[i].resend_after_reconnect && epoch_.load() != start_epoch) {
        fail(i, "the connection was lost before RabbitMQ confirmed it: " + last_error_);
      } else {
        round.push_back(i);
      }
    }
    if (round.empty()) break;
    Status declared = declare_for(messages);
    if (!declared.ok()) {
      for (size_t i : round) fail(i, declared.message());
      break;
    }
    // While RabbitMQ blocks publishers, nothing is sent: a publish would only
    // sit in the socket. The connection stays; the caller tries again later.
    while (blocked_ && connection_ && clock().steady_now() < deadline) pump(50, false);
    if (blocked_ && connection_) {
      for (size_t i : round) fail(i, blocked_failure());
      break;
    }
    const uint32_t epoch = epoch_.load();
    std::vector<size_t> sent;
    for (size_t i : round) {
      if (!connection_ || epoch_.load() != epoch) break;
      Status s = connection_->publish(kPublishChannel, messages[i].message);
      if (!s.ok()) {
        connection_lost(s.message());
        break;
      }
      confirms_.on_publish(messages[i].message.properties.message_id, cookie_of(i));
      sent.push_back(i);
    }
    std::vector<size_t> again(round.begin() + static_cast<std::ptrdiff_t>(sent.size()), round.end());
    std::vector<bool> waiting(messages.size(), false);
    std::vector<size_t> refused;  // nacked in this round
    size_t unsettled = 0;
    for (size_t i : sent) {
      if (!messages[i].message.mandatory && !messages[i].await_confirm) {
        messages[i].confirmed = true;  // handed to the broker; not waited for
        continue;
      }
      waiting[i] = true;
      ++unsettled;
    }
    while (unsettled > 0 && connection_ && epoch_.load() == epoch && clock().steady_now() < deadline) {
      const int64_t left = ms_between(clock().steady_now(), deadline);
      pump(static_cast<int>(std::clamp<int64_t>(left, 1, 200)), false);
      for (const ConfirmTracker::Settled& settled : confirms_.take_settled()) {
        if ((settled.cookie >> 32) != call) continue;  // an earlier call's
        const size_t i = settled.cookie & 0xffffffffu;
        if (i >= messages.size() || !waiting[i]) continue;
        waiting[i] = false;
        --unsettled;
        switch (settled.outcome) {
          case ConfirmTracker::Outcome::confirmed:
            messages[i].confirmed = true;
            break;
          case ConfirmTracker::Outcome::nacked:
            ++nacks[i];
            refusals[i] = settled.detail;
            refused.push_back(i);
            break;
          case ConfirmTracker::Outcome::returned:
            // No queue took it: one was deleted meanwhile. Declare everything
            // again (once per message) and send it once more; a second return
            // is a failure the caller sees, never a silent drop.
            if (!redeclared[i]) {
              redeclared[i] = true;
              declared_.clear();
              again.push_back(i);
            } else {
              fail(i, "no queue took it: " + settled.detail);
            }
            break;
        }
      }
    }
    if (unsettled > 0) {
      const bool same_connection = connection_ && epoch_.load() == epoch;
      if (same_connection && blocked_) {
        // Sent before the alarm began: RabbitMQ confirms them once it
        // unblocks. Give up on them for now, keep the connection (dropping it
        // would cost every held delivery an attempt).
        for (size_t i : sent) {
          if (waiting[i]) fail(i, blocked_failure());
        }
        break;
      }
      if (same_connection) {
        connection_lost("RabbitMQ did not confirm " + std::to_string(unsettled) + " publishes within " +
                        std::to_string(options_.config.confirm_timeout_ms) + " ms (broker.amqp.confirm_timeout)");
      }
      for (size_t i : sent) {
        if (waiting[i]) again.push_back(i);  // resent next round, if it may be
      }
    }
    if (!refused.empty()) {
      int most = 0;
      for (size_t i : refused) most = std::max(most, nacks[i]);
      const int64_t pause = std::min(kLongestNackPauseMs, kFirstNackPauseMs << std::min(most - 1, 16));
      const SteadyTime resend_at = clock().steady_now() + milliseconds(pause);
      if (ms_between(resend_at, deadline) < kLongestNackPauseMs) {
        for (size_t i : refused) fail(i, refused_until_now(i));
      } else {
        again.insert(again.end(), refused.begin(), refused.end());
        // The connection goes on being served meanwhile (heartbeats,
        // deliveries, confirms of earlier calls).
        while (connection_ && clock().steady_now() < resend_at) {
          pump(static_cast<int>(std::max<int64_t>(1, ms_between(clock().steady_now(), resend_at))), false);
        }
      }
    }
    todo.swap(again);
    if (clock().steady_now() >= deadline) {
      for (size_t i : todo) {
        fail(i, refusals[i].empty() ? "not confirmed within broker.amqp.confirm_timeout" : refused_until_now(i));
      }
      break;
    }
  }
  return std::all_of(messages.begin(), messages.end(), [](const Publish& p) { return p.confirmed; });
}

uint32_t AmqpSession::ack(const std::vector<uint64_t>& tokens) {
  if (!connection_) return 0;
  constexpr uint64_t kTagMask = (uint64_t{1} << kTagBits) - 1;
  const uint64_t epoch_bits = uint64_t{epoch_.load()} << kTagBits;
  std::vector<uint64_t> settled;  // tags newly settled by this call
  for (uint64_t token : tokens) {
    if (connection_ && alive(token) && held_.count(token)) settled.push_back(token & kTagMask);
  }
  std::sort(settled.begin(), settled.end());
  settled.erase(std::unique(settled.begin(), settled.end()), settled.end());
  if (settled.empty() && deferred_acks_.empty()) return 0;
  // The worker is done with these: what is left is RabbitMQ's ack.
  for (uint64_t tag : settled) {
    held_.erase(epoch_bits | tag);
    confirmed_replacements_.erase(epoch_bits | tag);
  }
  std::vector<uint64_t> tags;  // what may be acknowledged now, in order
  std::merge(settled.begin(), settled.end(), deferred_acks_.begin(), deferred_acks_.end(), std::back_inserter(tags));
  const std::vector<uint64_t> deferred_before = std::move(deferred_acks_);
  deferred_acks_.clear();
  // The oldest deliveries still unacknowledged, when all of them go now,
  // take one basic.ack with `multiple` (tasks mostly finish in the order
  // they came).
  const size_t prefix = oldest_unacked_among(tags);
  auto send = [&](uint64_t tag, bool multiple) {
    Status s = connection_->ack(kConsumeChannel, tag, multiple);
    if (!s.ok()) connection_lost(s.message());
    return s.ok();
  };
  bool ok = true;
  std::vector<uint64_t> acked(tags.begin(), tags.begin() + static_cast<std::ptrdiff_t>(prefix));
  if (prefix > 0) ok = send(tags[prefix - 1], prefix > 1);
  // The rest wait once for the tags below them; what waited already goes alone.
  for (size_t i = prefix; ok && i < tags.size(); ++i) {
    if (std::binary_search(deferred_before.begin(), deferred_before.end(), tags[i])) {
      ok = send(tags[i], false);
      acked.push_back(tags[i]);
    } else {
      deferred_acks_.push_back(tags[i]);
    }
  }
  if (!ok) return 0;  // the connection closed: RabbitMQ hands them all out again
  if (!deferred_acks_.empty()) deferred_since_ = clock().steady_now();
  for (uint64_t tag : acked) unacked_tags_.erase(tag);
  return static_cast<uint32_t>(settled.size());
}

size_t AmqpSession::oldest_unacked_among(const std::vector<uint64_t>& tags) const {
  size_t n = 0;
  for (auto it = unacked_tags_.begin(); n < tags.size() && it != unacked_tags_.end() && *it == tags[n]; ++it) ++n;
  return n;
}

void AmqpSession::flush_deferred_acks() {
  if (deferred_acks_.empty() || !connection_) return;
  std::vector<uint64_t> tags;
  tags.swap(deferred_acks_);
  const size_t prefix = oldest_unacked_among(tags);
  for (size_t i = prefix == 0 ? 0 : prefix - 1; i < tags.size(); ++i) {
    Status s = connection_->ack(kConsumeChannel, tags[i], i + 1 == prefix && prefix > 1);
    if (!s.ok()) {
      connection_lost(s.message());
      return;
    }
  }
  for (uint64_t tag : tags) unacked_tags_.erase(tag);
}

bool AmqpSession::replacement_confirmed(uint64_t token, const std::string& key) const {
  auto it = confirmed_replacements_.find(token);
  return it != confirmed_replacements_.end() && it->second.count(key) > 0;
}

void AmqpSession::note_replacement_confirmed(uint64_t token, const std::string& key) {
  if (held_.count(token)) confirmed_replacements_[token].insert(key);
}

const OutMsg* AmqpSession::held_copy(uint64_t token) const {
  if (!alive(token)) return nullptr;
  auto it = held_.find(token);
  return it == held_.end() ? nullptr : &it->second;
}

// ----------------------------------------------------------------- lookups

Result<QueueCounts> AmqpSession::inspect(const std::string& queue) {
  if (!connection_) return Status::io("not connected to " + options_.connect.endpoint.display() + ": " + last_error_);
  auto counts = connection_->inspect(kRpcChannel, queue);
  if (!counts.ok() && counts.status().code() == StatusCode::io_error) connection_lost(counts.status().message());
  return counts;
}

Status AmqpSession::take_lock(const std::string& queue, SteadyTime deadline) {
  milliseconds pause(20);
  for (;;) {
    if (!connected_by(deadline)) return Status::io("RabbitMQ is unavailable: " + last_error_);
    Status s = connection_->declare_exclusive(kRpcChannel, queue);
    if (s.code() == StatusCode::io_error) connection_lost(s.message());
    if (s.code() != StatusCode::busy) return s;
    if (clock().steady_now() + pause >= deadline) return s;
    pump(static_cast<int>(pause.count()), false);
    pause = std::min(pause * 2, milliseconds(500));
  }
}

void AmqpSession::release_lock(const std::string& queue) {
  if (!connection_) return;  // gone with the connection
  Status s = connection_->delete_queue(kRpcChannel, queue);
  if (s.code() == StatusCode::io_error) connection_lost(s.message());
}

Result<std::vector<StreamEntry>> AmqpSession::read_stream(const std::string& stream, const std::string& exchange) {
  // A stream's message count lags by seconds, so the end of what it holds now
  // is marked: a marker is appended (and confirmed), and the read goes up to it.
  std::vector<Publish> marker(1);
  marker[0].message = marker_message(exchange);
  const std::string marker_id = marker[0].message.properties.message_id;
  if (!publish_all(marker, deadline())) return Status::io("reading stream '" + stream + "': " + marker[0].failure);
  Status s = connection_->open_channel(kStreamChannel);
  if (s.ok()) s = connection_->qos(kStreamChannel, 1000);
  if (!s.ok()) {
    connection_lost(s.message());
    return s;
  }
  Argument from_first;
  from_first.key = kStreamOffsetHeader;
  from_first.text = "first";
  auto tag = connection_->consume(kStreamChannel, stream, {from_first});
  if (!tag.ok()) {
    // A refusal closed the channel; a failure that did not (no answer in
    // time) leaves it open in a state not known: as any other such RPC.
    if (connection_ && connection_->last_refusal() == 0) connection_lost(tag.status().message());
    return tag.status();
  }
  std::vector<StreamEntry> entries;
  stream_sink_ = &entries;
  SteadyTime progress_at = clock().steady_now();
  size_t seen = 0;
  bool found = false;
  Status result;
  while (!found) {
    pump(50, false);
    if (!connection_) {
      result = Status::io("reading stream '" + stream + "': " + last_error_);
      break;
    }
    if (entries.size() > seen) {
      for (size_t i = seen; i < entries.size(); ++i) {
        found = found || (entries[i].message.properties.type == kMarkerType &&
                          entries[i].message.properties.message_id == marker_id);
      }
      seen = entries.size();
      progress_at = clock().steady_now();
      // A stream consumer gets more only as it acknowledges.
      connection_->ack(kStreamChannel, entries.back().message.delivery_tag, true);
    } else if (clock().steady_now() - progress_at > kStreamStall) {
      result = Status::io("reading stream '" + stream + "' stalled after " + std::to_string(entries.size()) +
                          " entries");
      break;
    }
  }
  stream_sink_ = nullptr;
  if (connection_) {
    Status closed = connection_->close_channel(kStreamChannel);
    if (!closed.ok() && closed.code() == StatusCode::io_error) connection_lost(closed.message());
  }
  if (!result.ok()) return result;
  // Up to our marker, without markers (ours and other readers').
  std::vector<StreamEntry> out;
  for (StreamEntry& e : entries) {
    const bool ours = e.message.properties.message_id == marker_id;
    if (e.message.properties.type != kMarkerType) out.push_back(std::move(e));
    if (ours) break;
  }
  return out;
}

}  // namespace amqp
}  // namespace ebats
