// open_broker(): picks the backend from the URL scheme.
#include <string>

#include "broker/amqp/amqp_broker.h"
#include "broker/sqlite/sqlite_broker.h"
#include "ebats/broker.h"

namespace ebats {

BrokerOptions broker_options(const Config& config, std::string owner) {
  BrokerOptions bo;
  bo.url = config.broker_url;
  bo.sqlite = config.sqlite;
  bo.amqp = config.amqp;
  bo.password_file = config.broker_password_file;
  bo.sources = config.sources;
  bo.max_message_bytes = config.max_message_bytes;
  if (config.is_amqp()) bo.amqp_max_unclaimed_ms = config.amqp_max_unclaimed_ms();
  bo.owner = std::move(owner);
  return bo;
}

Result<std::unique_ptr<Broker>> open_broker(const BrokerOptions& options, const Clock& clock) {
  const std::string& url = options.url;
  const size_t separator = url.find("://");
  if (separator == std::string::npos || separator == 0) {
    // Not echoed: a mistyped AMQP URL may hold a password.
    return Status::invalid("the broker URL has no scheme; expected sqlite:///path/to/ebats.db or "
                           "amqp://user@host:5672/vhost (set broker.url in the config)");
  }
  // Only the scheme is echoed back: the rest of a URL may hold credentials.
  const std::string scheme = url.substr(0, separator);
  if (scheme == "sqlite") {
    auto broker = sqlite::SqliteBroker::open(options, clock);
    if (!broker.ok()) return broker.status();
    return std::unique_ptr<Broker>(std::move(*broker));
  }
  if (scheme == "amqp" || scheme == "amqps") {
    auto broker = amqp::AmqpBroker::open(options, clock);
    if (!broker.ok()) return broker.status();
    return std::unique_ptr<Broker>(std::move(*broker));
  }
  return Status::error(StatusCode::unsupported,
                       "broker URL scheme '" + scheme +
                           "://' is not supported; use sqlite:///path/to/ebats.db or amqp://user@host:5672/vhost (set "
                           "broker.url in the config)");
}

}  // namespace ebats
