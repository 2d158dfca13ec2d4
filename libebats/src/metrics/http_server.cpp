// Boost.Asio's fenced blocks call std::atomic_thread_fence, which GCC 12
// warns about under -fsanitize=thread (-Wtsan) in every function it inlines
// them into; the CI's TSan build has -Werror. TSan does see Asio's own
// locking; the fences order nothing this file relies on.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wtsan"
#endif

#include "metrics/http_server.h"

#include <fcntl.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <exception>
#include <thread>

namespace ebats::metrics {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr uint32_t kHeaderLimit = 8 * 1024;
constexpr uint64_t kBodyLimit = 1024;
constexpr std::chrono::seconds kRequestTimeout{5};
constexpr std::chrono::seconds kWriteTimeout{10};
constexpr int kMaxConnections = 16;

std::string endpoint_text(const tcp::endpoint& ep) {
  const std::string host = ep.address().to_string();
  return (ep.address().is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(ep.port());
}

}  // namespace

Result<ListenAddress> parse_listen_address(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return Status::invalid("'" + text + "' is not HOST:PORT");
  ListenAddress out;
  out.host = text.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  } else if (out.host.find(':') != std::string::npos) {
    return Status::invalid("'" + text + "': write an IPv6 address in brackets, as [::1]:9464");
  }
  if (out.host.empty()) out.host = "127.0.0.1";
  const std::string port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535) {
    return Status::invalid("'" + text + "': the port must be a number 0-65535 (0: any free port)");
  }
  out.port = static_cast<uint16_t>(std::stoul(port));
  return out;
}

class MetricsServer::Impl {
 public:
  Impl(const Registry& registry, const Logger& log) : registry_(registry), log_(log), acceptor_(ioc_) {}

  Status bind(const ListenAddress& address) {
    beast::error_code ec;
    tcp::resolver resolver(ioc_);
    auto results = resolver.resolve(address.host, std::to_string(address.port),
                                    tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
      return Status::invalid("metrics address " + address.host + ": " + (ec ? ec.message() : "no address"));
    }
    const tcp::endpoint ep = results.begin()->endpoint();
    acceptor_.open(ep.protocol(), ec);
    // Not inherited by programs the daemon runs (children close it anyway).
    if (!ec) ::fcntl(acceptor_.native_handle(), F_SETFD, FD_CLOEXEC);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::io("metrics: cannot listen on " + endpoint_text(ep) + ": " + ec.message());
    bound_ = acceptor_.local_endpoint(ec);
    if (ec) return Status::io("metrics: " + ec.message());
    address_ = endpoint_text(bound_);
    return Status::ok_status();
  }

  void run_thread() {
    accept();
    thread_ = std::thread([this] {
      for (;;) {
        try {
          ioc_.run();
          return;
        } catch (const std::exception& e) {
          log_.error("metrics server error", {{"error", e.what()}});
        } catch (...) {
          log_.error("metrics server error", {{"error", "unknown exception"}});
        }
      }
    });
  }

  void stop() {
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }

  const std::string& address() const { return address_; }
  uint16_t port() const { return bound_.port(); }

 private:
  class Session : public std::enable_shared_from_this<Session> {
   public:
    Session(Impl* server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {
      ++server_->connections_;
    }
    ~Session() { --server_->connections_; }

    void start() {
      parser_.header_limit(kHeaderLimit);
      parser_.body_limit(kBodyLimit);
      stream_.expires_after(kRequestTimeout);
      http::async_read(stream_, buffer_, parser_,
                       [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
    }

   private:
    void on_read(beast::error_code ec) {
      if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
          ec == asio::error::connection_reset || ec == asio::error::eof) {
        return close();  // gone, or never sent a whole request: nothing to answer
      }
      if (ec) return respond(http::status::bad_request, "bad request: " + ec.message() + "\n");
      const auto& req = parser_.get();
      const beast::string_view target = req.target();
      const bool metrics_path = target == "/metrics" || target.starts_with("/metrics?");
      if (!metrics_path) return respond(http::status::not_found, "not found: try /metrics\n");
      if (req.method() != http::verb::get && req.method() != http::verb::head) {
        return respond(http::status::method_not_allowed, "only GET\n", /*allow=*/true);
      }
      respond(http::status::ok, server_->registry_.render(), false, req.method() == http::verb::head);
    }

    void respond(http::status status, std::string body, bool allow = false, bool head = false) {
      res_.result(status);
      res_.version(11);
      res_.set(http::field::server, "ebats");
      res_.set(http::field::content_type,
               status == http::status::ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8");
      if (allow) res_.set(http::field::allow, "GET, HEAD");
      res_.keep_alive(false);
      res_.body() = std::move(body);
      res_.prepare_payload();
      if (head) res_.body().clear();
      stream_.expires_after(kWriteTimeout);
      http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code, size_t) { self->close(); });
    }

    void close() {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      stream_.close();
    }

    Impl* server_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_{kHeaderLimit};
    http::request_parser<http::string_body> parser_;
    http::response<http::string_body> res_;
  };

  void accept() {
    acceptor_.async_accept(ioc_, [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (connections_ >= kMaxConnections) {
          beast::error_code ignored;
          socket.close(ignored);
        } else {
          std::make_shared<Session>(this, std::move(socket))->start();
        }
      }
      accept();
    });
  }

  const Registry& registry_;
  const Logger& log_;
  int connections_ = 0;  // the io thread's alone (and the destructor's, once it has joined)
  // Before the acceptor and sockets, so destroyed after them; the sessions
  // that pending handlers own go with it.
  asio::io_context ioc_{1};
  tcp::acceptor acceptor_;
  tcp::endpoint bound_;
  std::string address_;
  std::thread thread_;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() { stop(); }

void MetricsServer::stop() {
  if (impl_) impl_->stop();
}

const std::string& MetricsServer::address() const { return impl_->address(); }
uint16_t MetricsServer::port() const { return impl_->port(); }

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const ListenAddress& address, const Registry& registry,
                                                           const Logger& log) {
  auto impl = std::make_unique<Impl>(registry, log);
  Status s = impl->bind(address);
  if (!s.ok()) return s;
  impl->run_thread();
  log.info("metrics listening", {{"address", impl->address()}});
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

}  // namespace ebats::metrics
