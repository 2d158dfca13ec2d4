// AmqpEndpoint: an amqp:// or amqps:// broker URL, parsed by rabbitmq-c's
// amqp_parse_url (percent-decoding included).
//
// ebats never takes a password from a URL: it would show in configs, logs and
// `ps`. parse_amqp_url() refuses one and says where the password goes
// (broker.password_file or EBATS_BROKER_PASSWORD). An empty path means the
// vhost "/"; write %2F for it explicitly if you prefer.
#pragma once

#include <string>

#include "ebats/status.h"

namespace ebats {
namespace amqp {

struct AmqpEndpoint {
  bool tls = false;
  std::string user = "guest";
  std::string host = "localhost";
  int port = 5672;
  std::string vhost = "/";
  // "amqp://user@host:port/vhost" (never a password): what messages name.
  // A URL parse_amqp_url() reads back as this endpoint: user and vhost
  // percent-encoded (vhost "/" as the empty path), an IPv6 host in brackets.
  std::string display() const;
};

Result<AmqpEndpoint> parse_amqp_url(const std::string& url);

}  // namespace amqp
}  // namespace ebats
