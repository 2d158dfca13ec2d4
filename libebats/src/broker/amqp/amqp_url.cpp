#include "broker/amqp/amqp_url.h"

#include <amqp.h>

#include <vector>

namespace ebats {
namespace amqp {

namespace {

// `text` with every byte but RFC 3986's unreserved ones as %XX, so a user
// "a:b" does not read as a password and a vhost "/prod" not as two slashes.
std::string percent_encoded(const std::string& text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

}  // namespace

std::string AmqpEndpoint::display() const {
  // An IPv6 address goes in brackets, as in the URL: "::1:5672" would not say
  // where the port starts.
  const bool ipv6 = host.find(':') != std::string::npos;
  return std::string(tls ? "amqps://" : "amqp://") + percent_encoded(user) + "@" + (ipv6 ? "[" + host + "]" : host) +
         ":" + std::to_string(port) + "/" + (vhost == "/" ? "" : percent_encoded(vhost));
}

Result<AmqpEndpoint> parse_amqp_url(const std::string& url) {
  const size_t scheme_end = url.find("://");
  const std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "amqp" && scheme != "amqps") {
    return Status::invalid("broker URL is not an amqp:// or amqps:// URL");
  }
  // The userinfo is what precedes an '@' in the authority (before the path).
  const size_t authority = scheme_end + 3;
  const size_t path = url.find('/', authority);
  const size_t at = url.find('@', authority);
  if (at != std::string::npos && (path == std::string::npos || at < path)) {
    if (url.substr(authority, at - authority).find(':') != std::string::npos) {
      return Status::invalid(
          "the broker URL holds a password; remove it from the URL (user@host only) and put it in the file named by "
          "broker.password_file (mode 0600 or 0640) or in the environment variable EBATS_BROKER_PASSWORD");
    }
  }
  std::vector<char> text(url.begin(), url.end());
  text.push_back('\0');
  amqp_connection_info info{};
  if (amqp_parse_url(text.data(), &info) != AMQP_STATUS_OK) {
    return Status::invalid("broker URL is not a valid AMQP URL; expected amqp://user@host:5672/vhost or "
                           "amqps://user@host:5671/vhost");
  }
  AmqpEndpoint e;
  e.tls = info.ssl != 0;
  e.user = info.user;
  e.host = info.host;
  e.port = info.port;
  e.vhost = info.vhost;
  if (e.vhost.empty()) e.vhost = "/";
  if (e.host.empty()) return Status::invalid("broker URL names no host; expected amqp://user@host:5672/vhost");
  if (e.port <= 0) return Status::invalid("broker URL has port 0; expected a port from 1 to 65535");
  return e;
}

}  // namespace amqp
}  // namespace ebats
