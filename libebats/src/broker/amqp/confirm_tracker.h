// ConfirmTracker: what RabbitMQ said about each message published on a
// channel in confirm mode. Pure bookkeeping, driven by the frames the I/O
// thread reads, and unit-tested with scripted frames.
//
// After confirm.select the broker numbers publishes 1, 2, 3, ... on the
// channel. basic.ack / basic.nack carry such a tag and a `multiple` flag
// (every unsettled tag up to it). Every ebats publish is `mandatory`: one no
// queue takes comes back as basic.return, which carries no tag but arrives
// before the ack of the same message, so it is matched to the oldest
// unsettled publish with that message id; that publish fails as returned
// although an ack follows. rabbitmq-c 0.11 has no confirm wait of its own.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace ebats {
namespace amqp {

class ConfirmTracker {
 public:
  enum class Outcome : uint8_t { confirmed, nacked, returned };
  struct Settled {
    uint64_t cookie = 0;  // what the publisher passed to on_publish
    Outcome outcome = Outcome::confirmed;
    std::string detail;   // nack / return reason
  };

  // Starts over, as a channel does after confirm.select: the next publish is
  // tag 1 and whatever was unsettled is forgotten (returned by reset()).
  std::vector<uint64_t> reset();
  // Records the next publish; returns its delivery tag.
  uint64_t on_publish(std::string message_id, uint64_t cookie);
  // basic.return of a mandatory publish (reply_text says why, e.g. NO_ROUTE).
  void on_return(std::string_view message_id, std::string_view reply_text);
  void on_ack(uint64_t tag, bool multiple);
  void on_nack(uint64_t tag, bool multiple);

  // Publishes settled since the last call, in the order they were published
  // (tag order; those settled before a reset() first), however the broker
  // ordered its acks. Empty when nothing settled since the last call.
  std::vector<Settled> take_settled();
  size_t outstanding() const { return pending_.size(); }
  uint64_t last_tag() const { return next_tag_ - 1; }

 private:
  struct Pending {
    uint64_t tag = 0;
    uint64_t cookie = 0;
    std::string message_id;
    bool returned = false;
    std::string return_reason;
  };
  // A settled publish waiting for take_settled(), with what orders it.
  struct Done {
    uint64_t generation = 0;  // reset() calls before its publish
    uint64_t tag = 0;
    Settled settled;
  };
  void settle(uint64_t tag, bool multiple, bool ack);

  uint64_t next_tag_ = 1;
  uint64_t generation_ = 0;
  std::deque<Pending> pending_;  // unsettled, in tag order
  std::vector<Done> settled_;    // in the order they settled
};

}  // namespace amqp
}  // namespace ebats
