// AmqpConnection: one RabbitMQ connection through rabbitmq-c 0.11, owned by
// one thread (the AMQP backend's I/O thread), with the calls ebats needs.
//
// It knows the protocol, not ebats: open (TCP or TLS, timeouts, keepalive,
// TCP_USER_TIMEOUT so a dead peer fails writes instead of hanging them,
// login with capabilities), channels, declares from a TopologySpec, publish,
// ack, consume, and reading the next frame with its content. Every error is
// a Status that names what failed and where; a queue that exists with other
// arguments is invalid_argument. Not thread-safe; the destructor closes the
// connection and frees every rabbitmq-c resource.
#pragma once

#include <amqp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/amqp/amqp_url.h"
#include "broker/amqp/topology.h"
#include "ebats/config.h"
#include "ebats/status.h"

namespace ebats {
namespace amqp {

struct ConnectOptions {
  AmqpEndpoint endpoint;
  std::string password;
  AmqpTlsConfig tls;
  int64_t heartbeat_ms = 30'000;
  int64_t timeout_ms = 10'000;  // connect, TLS and AMQP handshake, each RPC
  std::string connection_name;  // shown by `rabbitmqctl list_connections client_properties`
};

// A message header: text or integer (headers of other kinds are not read),
// the same shape as a queue argument.
using HeaderValue = Argument;

struct MessageProperties {
  std::string message_id;
  std::string type;
  std::string content_type;
  int64_t timestamp = 0;  // seconds
  bool persistent = true;
  std::vector<HeaderValue> headers;
  const HeaderValue* header(std::string_view key) const;
};

// What the next frame meant.
struct Incoming {
  enum class Kind : uint8_t {
    deliver,           // basic.deliver with its message
    ack,               // basic.ack (publisher confirm)
    nack,              // basic.nack (publisher confirm)
    returned,          // basic.return with its message
    cancelled,         // basic.cancel from the broker (queue deleted, node down)
    channel_closed,    // channel.close from the broker (answered already)
    connection_closed, // connection.close from the broker (answered already)
    blocked,           // connection.blocked
    unblocked,         // connection.unblocked
    other,
  } kind = Kind::other;
  uint16_t channel = 0;
  uint64_t delivery_tag = 0;
  bool multiple = false;
  bool redelivered = false;
  std::string consumer_tag;
  std::string exchange;
  std::string routing_key;
  uint16_t reply_code = 0;
  std::string reply_text;  // close / return / blocked reason
  MessageProperties properties;
  std::string body;
};

struct OutMessage {
  std::string exchange;
  std::string routing_key;
  std::string body;
  MessageProperties properties;
  bool mandatory = true;
};

struct QueueCounts {
  uint32_t messages = 0;   // ready messages (a stream: all it holds)
  uint32_t consumers = 0;
};

class AmqpConnection {
 public:
  static Result<std::unique_ptr<AmqpConnection>> open(const ConnectOptions& options);
  ~AmqpConnection();
  AmqpConnection(const AmqpConnection&) = delete;
  AmqpConnection& operator=(const AmqpConnection&) = delete;

  int fd() const;
  // True when frames are already read or buffered: poll() on fd() would not see them.
  bool buffered() const;
  const std::string& where() const { return where_; }  // "amqp://user@host:port/vhost"
  // The reply code of the broker's refusal (channel.close or
  // connection.close) that answered the last RPC, e.g. 403 ACCESS_REFUSED or
  // 541 INTERNAL_ERROR; 0 when that RPC was answered or failed otherwise.
  uint16_t last_refusal() const { return last_refusal_; }

  Status open_channel(uint16_t channel);
  Status close_channel(uint16_t channel);
  Status confirm_select(uint16_t channel);
  // Declares exchanges, queues and bindings in order on `channel`, in one
  // round trip, reopening it after a refusal (which RabbitMQ answers by
  // closing the channel); the error names the refused object.
  Status declare(uint16_t channel, const TopologySpec& spec);
  // Passive queue.declare. not_found when the queue does not exist.
  Result<QueueCounts> inspect(uint16_t channel, const std::string& queue);
  // Declares `queue` exclusive to this connection (not durable, gone when
  // the connection closes): a lock across processes and hosts. busy when
  // another connection holds it, or a queue of that name exists that is not
  // exclusive (405 RESOURCE_LOCKED either way); the channel is reopened
  // after that refusal.
  Status declare_exclusive(uint16_t channel, const std::string& queue);
  // queue.delete (a queue that is not there is no error).
  Status delete_queue(uint16_t channel, const std::string& queue);
  Status qos(uint16_t channel, uint32_t prefetch);
  // basic.consume without auto-ack; returns the consumer tag. A refusal
  // leaves the channel closed (RabbitMQ closes it).
  Result<std::string> consume(uint16_t channel, const std::string& queue, const std::vector<Argument>& arguments);
  Status cancel(uint16_t channel, const std::string& consumer_tag);

  Status publish(uint16_t channel, const OutMessage& message);
  Status ack(uint16_t channel, uint64_t delivery_tag, bool multiple);

  // Waits up to `timeout_ms` (0: only what is at hand) for the next frame
  // that means something; heartbeats are sent and consumed on the way.
  // nullopt: nothing came. An error means the connection is unusable.
  Result<std::optional<Incoming>> next(int timeout_ms);

 private:
  AmqpConnection(amqp_connection_state_t state, std::string where, int64_t timeout_ms);
  Status check_reply(const std::string& what, uint16_t channel);
  // Sends one declare or bind method; with `nowait` returns at once (a
  // normal reply), otherwise waits for `reply` and returns what came.
  amqp_rpc_reply_t send_declare(uint16_t channel, amqp_method_number_t method, void* decoded, bool nowait,
                                amqp_method_number_t reply);
  // The Status of an RPC's reply; answers a channel.close (on `channel`) or
  // connection.close the broker sent instead of the reply.
  Status rpc_error(amqp_rpc_reply_t reply, const std::string& what, uint16_t channel);
  Status read_content(Incoming* in);

  amqp_connection_state_t state_;
  int reads_since_release_ = 0;
  uint16_t last_refusal_ = 0;
  std::string where_;
  int64_t timeout_ms_;
};

// The rabbitmq-c status text, e.g. "a socket error occurred".
std::string status_text(int status);

}  // namespace amqp
}  // namespace ebats
