#include "broker/amqp/amqp_connection.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>

namespace ebats {
namespace amqp {
namespace {

amqp_bytes_t bytes(const std::string& s) { return amqp_bytes_t{s.size(), const_cast<char*>(s.data())}; }
std::string text(amqp_bytes_t b) { return b.bytes ? std::string(static_cast<const char*>(b.bytes), b.len) : ""; }

timeval to_timeval(int64_t ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

// An amqp_table_t over entries that borrow their strings from the caller.
class Table {
 public:
  explicit Table(const std::vector<Argument>& entries) {
    for (const Argument& a : entries) {
      amqp_table_entry_t e{};
      e.key = bytes(a.key);
      if (a.is_text) {
        e.value.kind = AMQP_FIELD_KIND_UTF8;
        e.value.value.bytes = bytes(a.text);
      } else {
        e.value.kind = AMQP_FIELD_KIND_I64;
        e.value.value.i64 = a.number;
      }
      entries_.push_back(e);
    }
  }
  amqp_table_t get() {
    amqp_table_t t;
    t.num_entries = static_cast<int>(entries_.size());
    t.entries = entries_.empty() ? nullptr : entries_.data();
    return t;
  }

 private:
  std::vector<amqp_table_entry_t> entries_;
};

amqp_table_entry_t bool_entry(const char* key, bool value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  e.value.value.boolean = value ? 1 : 0;
  return e;
}

amqp_table_entry_t text_entry(const char* key, const std::string& value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = bytes(value);
  return e;
}

amqp_table_entry_t table_entry(const char* key, const amqp_table_t& table) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_TABLE;
  e.value.value.table = table;
  return e;
}

void read_headers(const amqp_table_t& table, std::vector<HeaderValue>* out) {
  for (int i = 0; i < table.num_entries; ++i) {
    const amqp_table_entry_t& e = table.entries[i];
    HeaderValue h;
    h.key = text(e.key);
    h.is_text = false;  // unless it is text
    const amqp_field_value_t& v = e.value;
    switch (v.kind) {
      case AMQP_FIELD_KIND_UTF8:
      case AMQP_FIELD_KIND_BYTES:
        h.is_text = true;
        h.text = text(v.value.bytes);
        break;
      case AMQP_FIELD_KIND_I8: h.number = v.value.i8; break;
      case AMQP_FIELD_KIND_U8: h.number = v.value.u8; break;
      case AMQP_FIELD_KIND_I16: h.number = v.value.i16; break;
      case AMQP_FIELD_KIND_U16: h.number = v.value.u16; break;
      case AMQP_FIELD_KIND_I32: h.number = v.value.i32; break;
      case AMQP_FIELD_KIND_U32: h.number = v.value.u32; break;
      case AMQP_FIELD_KIND_I64: h.number = v.value.i64; break;
      case AMQP_FIELD_KIND_U64:
      case AMQP_FIELD_KIND_TIMESTAMP:
        h.number = static_cast<int64_t>(std::min<uint64_t>(v.value.u64, INT64_MAX));
        break;
      default:
        continue;  // arrays, tables (x-death), floats: not read
    }
    out->push_back(std::move(h));
  }
}

void read_properties(const amqp_basic_properties_t& p, MessageProperties* out) {
  if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) out->message_id = text(p.message_id);
  if (p._flags & AMQP_BASIC_TYPE_FLAG) out->type = text(p.type);
  if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) out->content_type = text(p.content_type);
  if (p._flags & AMQP_BASIC_TIMESTAMP_FLAG) out->timestamp = static_cast<int64_t>(p.timestamp);
  out->persistent = (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) && p.delivery_mode == 2;
  if (p._flags & AMQP_BASIC_HEADERS_FLAG) read_headers(p.headers, &out->headers);
}

std::string close_text(const amqp_method_t& method) {
  if (method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    const auto* m = static_cast<const amqp_channel_close_t*>(method.decoded);
    return std::to_string(m->reply_code) + " " + text(m->reply_text);
  }
  if (method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    const auto* m = static_cast<const amqp_connection_close_t*>(method.decoded);
    return std::to_string(m->reply_code) + " " + text(m->reply_text);
  }
  return "unexpected method " + std::to_string(method.id);
}

uint16_t close_code(const amqp_method_t& method) {
  if (method.id == AMQP_CHANNEL_CLOSE_METHOD) return static_cast<const amqp_channel_close_t*>(method.decoded)->reply_code;
  if (method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    return static_cast<const amqp_connection_close_t*>(method.decoded)->reply_code;
  }
  return 0;
}

// TCP_USER_TIMEOUT: unacknowledged data older than this fails the socket, so
// a write to a dead peer errors out instead of waiting for TCP's 15 minutes.
// Keepalive probes find a dead peer on an idle connection.
void harden_socket(int fd, int64_t heartbeat_ms, int64_t timeout_ms) {
  if (fd < 0) return;
  const int64_t base = heartbeat_ms > 0 ? 2 * heartbeat_ms : 2 * timeout_ms;
  const unsigned user_timeout = static_cast<unsigned>(std::clamp<int64_t>(base, 5'000, 600'000));
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  const int idle = static_cast<int>(std::clamp<int64_t>(user_timeout / 2000, 5, 300));
  const int interval = std::max(1, idle / 3);
  const int count = 3;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

}  // namespace

std::string status_text(int status) { return amqp_error_string2(status); }

const HeaderValue* MessageProperties::header(std::string_view key) const {
  for (const HeaderValue& h : headers) {
    if (h.key == key) return &h;
  }
  return nullptr;
}

AmqpConnection::AmqpConnection(amqp_connection_state_t state, std::string where, int64_t timeout_ms)
    : state_(state), where_(std::move(where)), timeout_ms_(timeout_ms) {}

AmqpConnection::~AmqpConnection() {
  if (state_ == nullptr) return;
  // A polite close when the connection still works; a short wait when not.
  timeval tv = to_timeval(1000);
  amqp_set_rpc_timeout(state_, &tv);
  if (amqp_get_socket(state_) != nullptr && amqp_get_sockfd(state_) >= 0) {
    amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(state_);
}

Result<std::unique_ptr<AmqpConnection>> AmqpConnection::open(const ConnectOptions& o) {
  const AmqpEndpoint& e = o.endpoint;
  amqp_connection_state_t state = amqp_new_connection();
  if (state == nullptr) return Status::io("cannot allocate an AMQP connection");
  std::unique_ptr<AmqpConnection> c(new AmqpConnection(state, e.display(), o.timeout_ms));
  const std::string where = c->where_;

  amqp_socket_t* socket = nullptr;
  if (e.tls) {
    socket = amqp_ssl_socket_new(state);
    if (socket == nullptr) return Status::io("cannot create a TLS socket for " + where);
    if (!o.tls.ca_file.empty()) {
      int rc = amqp_ssl_socket_set_cacert(socket, o.tls.ca_file.c_str());
      if (rc != AMQP_STATUS_OK) {
        return Status::invalid("cannot load the CA certificates of broker.amqp.tls.ca_file " + o.tls.ca_file + ": " +
                               status_text(rc));
      }
    } else {
      auto* context = static_cast<SSL_CTX*>(amqp_ssl_socket_get_context(socket));
      if (context != nullptr) SSL_CTX_set_default_verify_paths(context);
    }
    if (!o.tls.cert_file.empty()) {
      int rc = amqp_ssl_socket_set_key(socket, o.tls.cert_file.c_str(), o.tls.key_file.c_str());
      if (rc != AMQP_STATUS_OK) {
        return Status::invalid("cannot load the client certificate " + o.tls.cert_file + " with key " +
                               o.tls.key_file + ": " + status_text(rc));
      }
    }
    amqp_ssl_socket_set_verify_peer(socket, o.tls.verify_peer ? 1 : 0);
    amqp_ssl_socket_set_verify_hostname(socket, o.tls.verify_hostname ? 1 : 0);
  } else {
    socket = amqp_tcp_socket_new(state);
    if (socket == nullptr) return Status::io("cannot create a socket for " + where);
  }

  timeval tv = to_timeval(o.timeout_ms);
  int rc = amqp_socket_open_noblock(socket, e.host.c_str(), e.port, &tv);
  if (rc != AMQP_STATUS_OK) {
    std::string why = status_text(rc);
    if (rc == AMQP_STATUS_SOCKET_ERROR || rc == AMQP_STATUS_TCP_ERROR) {
      why += " (refused, or no route to the host); is RabbitMQ running and listening there?";
    } else if (rc == AMQP_STATUS_TIMEOUT) {
      why = "no answer within " + std::to_string(o.timeout_ms) + " ms (broker.amqp.connect_timeout)";
    } else if (rc == AMQP_STATUS_SSL_PEER_VERIFY_FAILED) {
      why += "; the broker's certificate is not signed by a CA in " +
             (o.tls.ca_file.empty() ? std::string("the system's trust store") : o.tls.ca_file) +
             " (broker.amqp.tls.ca_file)";
    } else if (rc == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED) {
      why += "; the broker's certificate is not for host '" + e.host + "' (use the name it was issued for)";
    }
    return Status::io("cannot connect to " + where + ": " + why);
  }
  harden_socket(amqp_get_sockfd(state), o.heartbeat_ms, o.timeout_ms);
  amqp_set_handshake_timeout(state, &tv);
  amqp_set_rpc_timeout(state, &tv);

  const std::string product = "ebats";
  const std::string version = EBATS_VERSION;
  amqp_table_entry_t capabilities[] = {
      bool_entry("consumer_cancel_notify", true),
      bool_entry("connection.blocked", true),
      bool_entry("publisher_confirms", true),
      bool_entry("basic.nack", true),
      bool_entry("authentication_failure_close", true),
  };
  amqp_table_t capability_table{static_cast<int>(sizeof capabilities / sizeof capabilities[0]), capabilities};
  amqp_table_entry_t properties[] = {
      text_entry("connection_name", o.connection_name),
      text_entry("product", product),
      text_entry("version", version),
      table_entry("capabilities", capability_table),
  };
  amqp_table_t property_table{static_cast<int>(sizeof properties / sizeof properties[0]), properties};
  const int heartbeat_s = static_cast<int>(o.heartbeat_ms / 1000);
  amqp_rpc_reply_t login =
      amqp_login_with_properties(state, e.vhost.c_str(), 0, 131072, heartbeat_s, &property_table,
                                 AMQP_SASL_METHOD_PLAIN, e.user.c_str(), o.password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    std::string why;
    if (login.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
      const uint16_t code = close_code(login.reply);
      why = close_text(login.reply);
      if (code == AMQP_ACCESS_REFUSED) {
        why += "; check the user and its password (broker.password_file or EBATS_BROKER_PASSWORD)";
      } else if (code == AMQP_NOT_ALLOWED) {
        why += "; does vhost '" + e.vhost + "' exist, and may user '" + e.user + "' use it?";
      }
    } else {
      why = status_text(login.library_error);
      if (login.library_error == AMQP_STATUS_CONNECTION_CLOSED || login.library_error == AMQP_STATUS_SOCKET_CLOSED) {
        why += "; the broker refused the login (wrong user or password, or no access to vhost '" + e.vhost + "')";
      }
    }
    return Status::io("cannot log in to " + where + ": " + why);
  }
  return c;
}

int AmqpConnection::fd() const { return amqp_get_sockfd(state_); }

bool AmqpConnection::buffered() const { return amqp_frames_enqueued(state_) || amqp_data_in_buffer(state_); }

Status AmqpConnection::rpc_error(amqp_rpc_reply_t reply, const std::string& what, uint16_t channel) {
  last_refusal_ = 0;
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return Status();
    case AMQP_RESPONSE_NONE:
      return Status::io(what + " on " + where_ + ": no reply");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return Status::io(what + " on " + where_ + ": " + status_text(reply.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      break;
  }
  const std::string detail = close_text(reply.reply);
  const uint16_t code = close_code(reply.reply);
  last_refusal_ = code;
  if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    // The broker closed the channel: confirm, so the channel number can be opened again.
    amqp_channel_close_ok_t ok{};
    amqp_send_method(state_, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
  } else if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_ok_t ok{};
    amqp_send_method(state_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    return Status::io(what + " on " + where_ + ": the broker closed the connection: " + detail);
  }
  if (code == AMQP_PRECONDITION_FAILED) return Status::invalid(what + ": " + detail);
  if (code == AMQP_NOT_FOUND) return Status::not_found(what + ": " + detail);
  if (code == AMQP_RESOURCE_LOCKED) return Status::error(StatusCode::busy, what + ": " + detail);
  return Status::io(what + " on " + where_ + ": " + detail);
}

Status AmqpConnection::check_reply(const std::string& what, uint16_t channel) {
  return rpc_error(amqp_get_rpc_reply(state_), what, channel);
}

Status AmqpConnection::open_channel(uint16_t channel) {
  amqp_channel_open(state_, channel);
  return check_reply("opening channel " + std::to_string(channel), channel);
}

Status AmqpConnection::close_channel(uint16_t channel) {
  return rpc_error(amqp_channel_close(state_, channel, AMQP_REPLY_SUCCESS), "closing channel " + std::to_string(channel),
                   channel);
}

Status AmqpConnection::confirm_select(uint16_t channel) {
  amqp_confirm_select(state_, channel);
  return check_reply("turning on publisher confirms", channel);
}

Status AmqpConnection::declare(uint16_t channel, const TopologySpec& spec) {
  // Every declare but the last goes with `nowait` (no reply), the last one
  // as an RPC: the channel handles methods in order, so its reply means all
  // of them were done, in one round trip instead of one each (a worker
  // declares some 60 objects when it starts and after every reconnect). A
  // refusal closes the channel; RabbitMQ ignores what follows on it, and the
  // last RPC gets the close, whose text names the refused object:
  //   PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'p.delay.03' in vhost '/': ...
  struct Step {
    enum class Kind : uint8_t { exchange, queue, binding } kind;
    std::string what;  // for messages
    std::string name;  // the exchange or queue named in a refusal
    std::function<amqp_rpc_reply_t(bool nowait)> send;  // the reply when not `nowait`
  };
  std::vector<Step> steps;
  std::vector<std::unique_ptr<Table>> tables;  // argument tables, alive until every method is sent
  for (const ExchangeSpec& x : spec.exchanges) {
    auto send = [this, channel, &x](bool nowait) {
      amqp_exchange_declare_t m{};
      m.exchange = bytes(x.name);
      m.type = bytes(x.type);
      m.durable = 1;
      m.nowait = nowait;
      m.arguments = amqp_empty_table;
      return send_declare(channel, AMQP_EXCHANGE_DECLARE_METHOD, &m, nowait, AMQP_EXCHANGE_DECLARE_OK_METHOD);
    };
    steps.push_back({Step::Kind::exchange, "declaring exchange '" + x.name + "'", x.name, send});
  }
  for (const QueueSpec& q : spec.queues) {
    tables.push_back(std::make_unique<Table>(q.arguments));
    Table* args = tables.back().get();
    auto send = [this, channel, &q, args](bool nowait) {
      amqp_queue_declare_t m{};
      m.queue = bytes(q.name);
      m.durable = 1;
      m.nowait = nowait;
      m.arguments = args->get();
      return send_declare(channel, AMQP_QUEUE_DECLARE_METHOD, &m, nowait, AMQP_QUEUE_DECLARE_OK_METHOD);
    };
    steps.push_back({Step::Kind::queue, "declaring queue '" + q.name + "'", q.name, send});
  }
  for (const BindingSpec& b : spec.bindings) {
    auto send = [this, channel, &b](bool nowait) {
      if (b.to_exchange) {
        amqp_exchange_bind_t m{};
        m.destination = bytes(b.destination);
        m.source = bytes(b.source);
        m.routing_key = bytes(b.key);
        m.nowait = nowait;
        m.arguments = amqp_empty_table;
        return send_declare(channel, AMQP_EXCHANGE_BIND_METHOD, &m, nowait, AMQP_EXCHANGE_BIND_OK_METHOD);
      }
      amqp_queue_bind_t m{};
      m.queue = bytes(b.destination);
      m.exchange = bytes(b.source);
      m.routing_key = bytes(b.key);
      m.nowait = nowait;
      m.arguments = amqp_empty_table;
      return send_declare(channel, AMQP_QUEUE_BIND_METHOD, &m, nowait, AMQP_QUEUE_BIND_OK_METHOD);
    };
    std::string what = "binding '" + b.destination + "' to exchange '" + b.source + "' with key '" + b.key + "'";
    steps.push_back({Step::Kind::binding, std::move(what), b.destination, send});
  }
  if (steps.empty()) return Status();
  for (size_t i = 0; i + 1 < steps.size(); ++i) steps[i].send(true);
  Status s = rpc_error(steps.back().send(false), steps.back().what, channel);
  if (s.ok()) return s;

  // Which object was refused: the first whose name the broker's text quotes.
  const std::string prefix = steps.back().what + ": ";
  const std::string detail =
      s.message().compare(0, prefix.size(), prefix) == 0 ? s.message().substr(prefix.size()) : s.message();
  const Step* refused = &steps.back();
  for (const Step& step : steps) {
    const char* noun = step.kind == Step::Kind::exchange ? "exchange '" : "queue '";
    if (detail.find(noun + step.name + "'") != std::string::npos) {
      refused = &step;
      break;
    }
  }
  if (s.code() == StatusCode::invalid_argument && refused->kind == Step::Kind::exchange) {
    s = Status::invalid("exchange '" + refused->name +
                        "' exists with another type or other flags than ebats declares: " + detail +
                        "; delete it or change broker.amqp.prefix");
  } else if (s.code() == StatusCode::invalid_argument && refused->kind == Step::Kind::queue) {
    s = Status::invalid("queue '" + refused->name + "' exists with other arguments than this config gives it: " +
                        detail + "; a queue's arguments cannot change: drain and delete the queue (rabbitmqctl " +
                        "delete_queue " + refused->name + ") or restore the broker.amqp settings that created it");
  } else if (s.code() == StatusCode::invalid_argument || s.code() == StatusCode::not_found) {
    s = Status::error(s.code(), refused->what + ": " + detail);
  }
  // A refusal closed the channel; reopen it so the caller can go on (the
  // declare channel holds no deliveries).
  if (s.code() == StatusCode::invalid_argument || s.code() == StatusCode::not_found ||
      s.code() == StatusCode::busy) {
    Status reopened = open_channel(channel);
    if (!reopened.ok()) return reopened;
  }
  return s;
}

amqp_rpc_reply_t AmqpConnection::send_declare(uint16_t channel, amqp_method_number_t method, void* decoded,
                                              bool nowait, amqp_method_number_t reply) {
  if (nowait) {
    // A failed send shows in the reply of the last declare.
    amqp_send_method(state_, channel, method, decoded);
    amqp_rpc_reply_t none{};
    none.reply_type = AMQP_RESPONSE_NORMAL;
    return none;
  }
  amqp_method_number_t replies[] = {reply, 0};
  return amqp_simple_rpc(state_, channel, method, replies, decoded);
}

Result<QueueCounts> AmqpConnection::inspect(uint16_t channel, const std::string& queue) {
  amqp_queue_declare_ok_t* ok = amqp_queue_declare(state_, channel, bytes(queue), 1, 0, 0, 0, amqp_empty_table);
  Status s = check_reply("looking up queue '" + queue + "'", channel);
  if (!s.ok()) {
    if (s.code() == StatusCode::not_found) {
      Status reopened = open_channel(channel);
      if (!reopened.ok()) return reopened;
    }
    return s;
  }
  QueueCounts counts;
  counts.messages = ok->message_count;
  counts.consumers = ok->consumer_count;
  return counts;
}

Status AmqpConnection::declare_exclusive(uint16_t channel, const std::string& queue) {
  amqp_queue_declare(state_, channel, bytes(queue), /*passive=*/0, /*durable=*/0, /*exclusive=*/1,
                     /*auto_delete=*/1, amqp_empty_table);
  Status s = check_reply("declaring the exclusive queue '" + queue + "'", channel);
  // A refusal closed the channel: held by another connection, or a queue of
  // that name that is not exclusive (RabbitMQ answers both with 405).
  if (s.code() == StatusCode::busy) {
    Status reopened = open_channel(channel);
    if (!reopened.ok()) return reopened;
  }
  return s;
}

Status AmqpConnection::delete_queue(uint16_t channel, const std::string& queue) {
  amqp_queue_delete(state_, channel, bytes(queue), /*if_unused=*/0, /*if_empty=*/0);
  Status s = check_reply("deleting queue '" + queue + "'", channel);
  if (s.code() == StatusCode::not_found || s.code() == StatusCode::busy) {
    Status reopened = open_channel(channel);
    if (!reopened.ok()) return reopened;
  }
  return s.code() == StatusCode::not_found ? Status() : s;
}

Status AmqpConnection::qos(uint16_t channel, uint32_t prefetch) {
  // AMQP 0-9-1 counts prefetch in 16 bits.
  const auto count = static_cast<uint16_t>(std::clamp<uint32_t>(prefetch, 1, 65535));
  amqp_basic_qos(state_, channel, 0, count, 0);
  return check_reply("setting the prefetch (basic.qos)", channel);
}

Result<std::string> AmqpConnection::consume(uint16_t channel, const std::string& queue,
                                            const std::vector<Argument>& arguments) {
  Table args(arguments);
  amqp_basic_consume_ok_t* ok = amqp_basic_consume(state_, channel, bytes(queue), amqp_empty_bytes, 0, 0, 0, args.get());
  // A refusal closes the channel, and with it every delivery it held goes
  // back to its queue: the caller decides what that means (it does not get
  // the channel back quietly reopened).
  Status s = check_reply("consuming from queue '" + queue + "'", channel);
  if (!s.ok()) return s;
  return text(ok->consumer_tag);
}

Status AmqpConnection::cancel(uint16_t channel, const std::string& consumer_tag) {
  amqp_basic_cancel(state_, channel, bytes(consumer_tag));
  return check_reply("cancelling consumer " + consumer_tag, channel);
}

Status AmqpConnection::publish(uint16_t channel, const OutMessage& m) {
  amqp_basic_properties_t p{};
  const MessageProperties& mp = m.properties;
  p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
  p.delivery_mode = mp.persistent ? 2 : 1;
  p.content_type = bytes(mp.content_type);
  p.message_id = bytes(mp.message_id);
  if (!mp.type.empty()) {
    p._flags |= AMQP_BASIC_TYPE_FLAG;
    p.type = bytes(mp.type);
  }
  if (mp.timestamp > 0) {
    p._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
    p.timestamp = static_cast<uint64_t>(mp.timestamp);
  }
  Table headers(mp.headers);
  if (!mp.headers.empty()) {
    p._flags |= AMQP_BASIC_HEADERS_FLAG;
    p.headers = headers.get();
  }
  const int rc = amqp_basic_publish(state_, channel, bytes(m.exchange), bytes(m.routing_key), m.mandatory ? 1 : 0, 0,
                                    &p, bytes(m.body));
  if (rc != AMQP_STATUS_OK) return Status::io("publishing to exchange '" + m.exchange + "' on " + where_ + ": " + status_text(rc));
  return Status();
}

Status AmqpConnection::ack(uint16_t channel, uint64_t delivery_tag, bool multiple) {
  const int rc = amqp_basic_ack(state_, channel, delivery_tag, multiple ? 1 : 0);
  if (rc != AMQP_STATUS_OK) return Status::io("acknowledging a delivery on " + where_ + ": " + status_text(rc));
  return Status();
}

Status AmqpConnection::read_content(Incoming* in) {
  // The header frame and the body frames follow the method frame. They are
  // read here one by one rather than with amqp_read_message(), which gives
  // each message a memory pool of its own (a zeroed 4 KiB page and three
  // allocations a delivery: bench/notes.md); these frames' memory is the
  // connection's, recycled by amqp_maybe_release_buffers() in next(). RabbitMQ
  // writes a message's method, header and body frames back to back, so a
  // frame of another kind or channel in between is a protocol error.
  auto wait = [&](amqp_frame_t* frame) {
    timeval tv = to_timeval(timeout_ms_);
    const int rc = amqp_simple_wait_frame_noblock(state_, frame, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) {
      return Status::io("reading a message's content on " + where_ + ": nothing came for " +
                        std::to_string(timeout_ms_) + " ms");
    }
    if (rc != AMQP_STATUS_OK) return Status::io("reading a message's content on " + where_ + ": " + status_text(rc));
    return Status();
  };
  amqp_frame_t frame;
  if (Status s = wait(&frame); !s.ok()) return s;
  if (frame.frame_type != AMQP_FRAME_HEADER || frame.channel != in->channel) {
    return Status::io("reading a message's content on " + where_ + ": expected its header frame on channel " +
                      std::to_string(in->channel) + ", got a frame of type " + std::to_string(frame.frame_type) +
                      " on channel " + std::to_string(frame.channel));
  }
  const uint64_t body_size = frame.payload.properties.body_size;
  read_properties(*static_cast<const amqp_basic_properties_t*>(frame.payload.properties.decoded), &in->properties);
  in->body.clear();
  in->body.reserve(std::min<uint64_t>(body_size, uint64_t{16} << 20));  // past that, grown as it comes
  while (in->body.size() < body_size) {
    if (Status s = wait(&frame); !s.ok()) return s;
    if (frame.frame_type != AMQP_FRAME_BODY || frame.channel != in->channel ||
        frame.payload.body_fragment.len > body_size - in->body.size()) {
      return Status::io("reading a message's content on " + where_ + ": expected " +
                        std::to_string(body_size - in->body.size()) + " more body bytes on channel " +
                        std::to_string(in->channel) + ", got a frame of type " + std::to_string(frame.frame_type) +
                        " on channel " + std::to_string(frame.channel));
    }
    in->body.append(static_cast<const char*>(frame.payload.body_fragment.bytes), frame.payload.body_fragment.len);
  }
  return Status();
}

Result<std::optional<Incoming>> AmqpConnection::next(int timeout_ms) {
  // What the last frames decoded into is copied out already; freeing it
  // between bursts rather than after each frame saves a walk of the pools.
  if (++reads_since_release_ >= 64 || !buffered()) {
    amqp_maybe_release_buffers(state_);
    reads_since_release_ = 0;
  }
  amqp_frame_t frame;
  timeval tv = to_timeval(std::max(timeout_ms, 0));
  const int rc = amqp_simple_wait_frame_noblock(state_, &frame, &tv);
  if (rc == AMQP_STATUS_TIMEOUT) return std::optional<Incoming>();
  if (rc != AMQP_STATUS_OK) return Status::io(status_text(rc));  // the caller says whose connection
  Incoming in;
  in.channel = frame.channel;
  if (frame.frame_type != AMQP_FRAME_METHOD) return std::optional<Incoming>(std::move(in));  // stray content: ignored
  const amqp_method_t& method = frame.payload.method;
  switch (method.id) {
    case AMQP_BASIC_DELIVER_METHOD: {
      const auto* m = static_cast<const amqp_basic_deliver_t*>(method.decoded);
      in.kind = Incoming::Kind::deliver;
      in.delivery_tag = m->delivery_tag;
      in.redelivered = m->redelivered != 0;
      in.consumer_tag = text(m->consumer_tag);
      in.exchange = text(m->exchange);
      in.routing_key = text(m->routing_key);
      Status s = read_content(&in);
      if (!s.ok()) return s;
      break;
    }
    case AMQP_BASIC_RETURN_METHOD: {
      const auto* m = static_cast<const amqp_basic_return_t*>(method.decoded);
      in.kind = Incoming::Kind::returned;
      in.reply_code = m->reply_code;
      in.reply_text = text(m->reply_text);
      in.exchange = text(m->exchange);
      in.routing_key = text(m->routing_key);
      Status s = read_content(&in);
      if (!s.ok()) return s;
      break;
    }
    case AMQP_BASIC_ACK_METHOD: {
      const auto* m = static_cast<const amqp_basic_ack_t*>(method.decoded);
      in.kind = Incoming::Kind::ack;
      in.delivery_tag = m->delivery_tag;
      in.multiple = m->multiple != 0;
      break;
    }
    case AMQP_BASIC_NACK_METHOD: {
      const auto* m = static_cast<const amqp_basic_nack_t*>(method.decoded);
      in.kind = Incoming::Kind::nack;
      in.delivery_tag = m->delivery_tag;
      in.multiple = m->multiple != 0;
      break;
    }
    case AMQP_BASIC_CANCEL_METHOD: {
      const auto* m = static_cast<const amqp_basic_cancel_t*>(method.decoded);
      in.kind = Incoming::Kind::cancelled;
      in.consumer_tag = text(m->consumer_tag);
      break;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      const auto* m = static_cast<const amqp_channel_close_t*>(method.decoded);
      in.kind = Incoming::Kind::channel_closed;
      in.reply_code = m->reply_code;
      in.reply_text = text(m->reply_text);
      amqp_channel_close_ok_t ok{};
      amqp_send_method(state_, frame.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      break;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      const auto* m = static_cast<const amqp_connection_close_t*>(method.decoded);
      in.kind = Incoming::Kind::connection_closed;
      in.reply_code = m->reply_code;
      in.reply_text = text(m->reply_text);
      amqp_connection_close_ok_t ok{};
      amqp_send_method(state_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      break;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD: {
      const auto* m = static_cast<const amqp_connection_blocked_t*>(method.decoded);
      in.kind = Incoming::Kind::blocked;
      in.reply_text = text(m->reason);
      break;
    }
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
      in.kind = Incoming::Kind::unblocked;
      break;
    default:
      break;
  }
  return std::optional<Incoming>(std::move(in));
}

}  // namespace amqp
}  // namespace ebats
